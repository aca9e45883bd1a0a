"""Tests of the three-stage training loop (tiny model, fake cache, CPU, a few seconds)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lamap.errors import InputError
from lamap.features import FeatureSpec
from lamap.model import (
    ModelConfig,
    load_checkpoint,
    receptive_field_radius,
    recommended_halo,
    seeded_model,
)
from lamap.train.averaging import recompute_batchnorm
from lamap.train.cache import Cache, open_cache
from lamap.train.data import PatchDataset
from lamap.train.loop import (
    STAGES,
    EpochRecord,
    Stage,
    TrainConfig,
    TrainingError,
    ValMetrics,
    batch_weight,
    init_head_biases,
    milestones,
    stage_loss,
    state_path,
    train,
    validate,
)
from lamap.train.state import is_best, selected_epoch
from tests._fake_cache import make_fake_cache

SPEC = FeatureSpec().to_dict()
TINY = ModelConfig.tiny()
QUICK = TrainConfig(epochs_enc1=1, epochs_enc2=1, epochs=2, batch_size=8, lr=1e-2,
                    device="cpu", threads=1, seed=3)
AVERAGING = TrainConfig(epochs_enc1=0, epochs_enc2=0, epochs=4, batch_size=8, lr=1e-2,
                        device="cpu", threads=1, seed=3, average_epochs=3)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    return open_cache(make_fake_cache(tmp_path_factory.mktemp("cache"), n=48, patch=32))


@pytest.fixture(scope="module")
def data(cache: Cache) -> tuple[PatchDataset, PatchDataset]:
    return (PatchDataset(cache, cache.split_indices("train"), augment=True, rng_seed=1,
                         in_memory=True),
            PatchDataset(cache, cache.split_indices("validation"), in_memory=True))


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-6, atol=1e-7) for k in sa)


# --------------------------------------------------------------------------- config


def test_milestones_are_two_evenly_spaced_decays() -> None:
    assert milestones(100) == [33, 67]
    assert milestones(20) == [7, 13]
    assert milestones(3) == [1, 2]
    assert milestones(2) == [1]
    assert milestones(1) == []


def test_config_defaults_are_the_paper_recipe_and_json_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.decay_factor) == (100, 32, 1e-3, 0.2)
    assert (cfg.alpha, cfg.beta) == (0.1, 0.15)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    demo = TrainConfig.cpu_demo()
    assert demo.device == "cpu" and demo.threads == 2 and demo.precision == "bfloat16"
    # about 75 minutes on the demo world's ~430 training and ~50 validation patches
    assert 60 * 60 < demo.estimate_cpu_seconds(256, train_patches=430, val_patches=50) < 85 * 60
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 7\nbatch_size: 4\ncloudy_weight: 3\n")
    assert TrainConfig.from_yaml(path) == TrainConfig(epochs=7, batch_size=4, cloudy_weight=3)


@pytest.mark.parametrize("changes, word", [
    ({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"), ({"decay_factor": 1.5}, "decay"),
    ({"epochs": 0, "epochs_enc1": 0, "epochs_enc2": 0}, "0 epochs"),
    ({"cloudy_weight": 0.0}, "cloudy_weight"), ({"max_steps_per_epoch": 0}, "max_steps"),
    ({"epochs": 2.5}, "epochs"), ({"precision": "float16"}, "precision"),
])
def test_config_rejects_bad_values(changes: dict[str, Any], word: str) -> None:
    with pytest.raises(InputError, match=word):
        TrainConfig(**changes)


def test_config_from_dict_names_unknown_keys() -> None:
    with pytest.raises(InputError, match="epoch_count"):
        TrainConfig.from_dict({"epoch_count": 3})


# --------------------------------------------------------------------------- losses


def test_batch_weight_multiplies_cloudy_samples_only() -> None:
    batch = {"weight": torch.tensor([1.0, 0.0, 1.0]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2),
             "cloudy": torch.tensor([True, True, False])}
    weight = batch_weight(batch, 4.0)
    assert weight[:, 0, 0, 0].tolist() == [4.0, 0.0, 1.0]
    assert torch.equal(batch_weight(batch, 1.0), batch["weight"])


def test_stage_loss_uses_each_head(data: tuple[PatchDataset, PatchDataset]) -> None:
    model = seeded_model(0, TINY)
    batch = torch.utils.data.default_collate([data[1][i] for i in range(2)])
    weight = batch["weight"]
    with torch.no_grad():
        out = model(batch["s1"], batch["lai"], batch["masks"], batch["season"])
        fused, pred = stage_loss(model, batch, "fused", weight)
        enc1, pred1 = stage_loss(model, batch, "enc1", weight)
    assert torch.allclose(pred, out.lai) and torch.allclose(pred1, out.enc1)
    assert not torch.isclose(fused, enc1)


# --------------------------------------------------------------------------- training


def test_training_lowers_validation_loss_and_checkpoints(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    train_data, val_data = data
    model = seeded_model(0, TINY)
    before = validate(model, val_data)
    config = TrainConfig(epochs_enc1=3, epochs_enc2=3, epochs=12, batch_size=8, lr=1e-2,
                         device="cpu", threads=1)
    result = train(model, train_data, val_data, config, out=tmp_path / "m.pt",
                   feature_spec=SPEC, data_info={"cache": "fake"}, progress=False)
    after = validate(model, val_data)
    assert result.complete and after.loss < 0.5 * before.loss and after.rmse < before.rmse
    assert after.r2 > before.r2
    assert [r.stage for r in result.history] == ["enc1"] * 3 + ["enc2"] * 3 + ["fused"] * 12
    assert result.last_val("fused") == pytest.approx(after)
    loaded = load_checkpoint(result.checkpoint)
    summary = loaded.training
    assert [s["name"] for s in summary["stages"]] == list(STAGES)
    assert summary["data"] == {"cache": "fake", "train_size": 28, "val_size": 5}
    assert summary["steps"] == 18 * 4 and len(summary["history"]) == 18
    assert summary["config"] == config.to_dict()
    # the checkpoint keeps the fused epoch with the lowest validation RMSE
    fused_rmse = [r.val.rmse for r in result.history if r.stage == "fused" and r.val]
    selected = summary["selected"]
    assert selected["stage"] == "fused" and selected["val_rmse"] == min(fused_rmse)
    assert fused_rmse[selected["epoch"] - 1] == min(fused_rmse)
    # the finished checkpoint records its receptive field: maps take the halo from it
    radius = loaded.extra["receptive_radius"]
    assert radius == receptive_field_radius(loaded.model)
    assert recommended_halo(loaded) == recommended_halo(loaded.config)
    recorded = replace(loaded, extra={"receptive_radius": 50})
    assert recommended_halo(recorded) == 52  # read, not measured again
    assert validate(loaded.model, val_data).rmse == pytest.approx(min(fused_rmse), rel=1e-3)
    if selected["epoch"] == len(fused_rmse):
        assert _states_equal(loaded.model, model)


def test_learning_rate_decays_at_the_milestones(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    config = replace(QUICK, epochs_enc1=3, epochs_enc2=0, epochs=6, max_steps_per_epoch=1)
    result = train(seeded_model(0, TINY), data[0], None, config, out=tmp_path / "m.pt",
                   feature_spec=SPEC, progress=False)
    lrs = {stage: [r.lr for r in result.history if r.stage == stage] for stage in STAGES}
    assert lrs["enc1"] == pytest.approx([1e-2, 2e-3, 4e-4])
    assert lrs["fused"] == pytest.approx([1e-2, 1e-2, 2e-3, 2e-3, 4e-4, 4e-4])
    assert lrs["enc2"] == [] and all(r.steps == 1 and r.val is None for r in result.history)


def test_checkpoint_is_written_after_every_epoch(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    out = tmp_path / "sub" / "m.pt"
    first = train(seeded_model(0, TINY), data[0], data[1], QUICK, out=out, feature_spec=SPEC,
                  progress=False, stop_after=1)
    assert not first.complete and len(first.history) == 1
    assert load_checkpoint(out).training["stages"][0]["epochs_done"] == 1
    state = torch.load(state_path(out), weights_only=True)
    assert (state["stage"], state["epoch"]) == ("enc1", 1)
    assert state_path(out).name == "m.state.pt"


def test_resume_gives_the_uninterrupted_result(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    tiny_dropout = replace(TINY, dropout=0.2)  # dropout draws from the global torch RNG
    config = replace(QUICK, epochs=3)
    whole = seeded_model(0, tiny_dropout)
    full = train(whole, data[0], data[1], config, out=tmp_path / "a.pt", feature_spec=SPEC,
                 progress=False)
    parts = seeded_model(0, tiny_dropout)
    for stop in (3, 1):  # stop inside the end-to-end stage, then once more
        train(parts, data[0], data[1], config, out=tmp_path / "b.pt", feature_spec=SPEC,
              progress=False, stop_after=stop, resume=stop == 1)
    fresh = seeded_model(9, tiny_dropout)  # weights come from the state file
    rest = train(fresh, data[0], data[1], config, out=tmp_path / "b.pt", feature_spec=SPEC,
                 progress=False, resume=True)
    assert rest.complete and len(rest.history) == len(full.history) == 5
    assert _states_equal(fresh, whole)
    assert [r.train_loss for r in rest.history] == pytest.approx(
        [r.train_loss for r in full.history], rel=1e-5)
    # both checkpoints keep their best-validated epoch: the same one, with the same weights
    assert _states_equal(load_checkpoint(tmp_path / "b.pt").model,
                         load_checkpoint(tmp_path / "a.pt").model)
    assert (load_checkpoint(tmp_path / "b.pt").training["selected"]
            == load_checkpoint(tmp_path / "a.pt").training["selected"])


def test_resume_refuses_another_config_or_no_state(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    with pytest.raises(InputError, match="does not exist"):
        train(seeded_model(0, TINY), data[0], None, QUICK, out=tmp_path / "m.pt",
              feature_spec=SPEC, progress=False, resume=True)
    train(seeded_model(0, TINY), data[0], None, QUICK, out=tmp_path / "m.pt",
          feature_spec=SPEC, progress=False, stop_after=1)
    with pytest.raises(TrainingError, match="lr"):
        train(seeded_model(0, TINY), data[0], None, replace(QUICK, lr=1e-3),
              out=tmp_path / "m.pt", feature_spec=SPEC, progress=False, resume=True)
    done = train(seeded_model(0, TINY), data[0], None, replace(QUICK, threads=None),
                 out=tmp_path / "m.pt", feature_spec=SPEC, progress=False, resume=True)
    assert done.complete  # runtime fields may change


def test_cloudy_weight_changes_the_loss_weighting(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    assert data[0].cloudy.any() and not data[0].cloudy.all()
    config = replace(QUICK, epochs_enc1=0, epochs_enc2=0, epochs=1, max_steps_per_epoch=2)
    plain, heavy = seeded_model(0, TINY), seeded_model(0, TINY)
    a = train(plain, data[0], None, config, out=tmp_path / "a.pt", feature_spec=SPEC,
              progress=False)
    b = train(heavy, data[0], None, replace(config, cloudy_weight=5.0), out=tmp_path / "b.pt",
              feature_spec=SPEC, progress=False)
    assert a.history[0].train_loss != pytest.approx(b.history[0].train_loss)
    assert not _states_equal(plain, heavy)


def test_time_limit_and_bad_data(tmp_path: Path,
                                 data: tuple[PatchDataset, PatchDataset]) -> None:
    none = train(seeded_model(0, TINY), data[0], None, QUICK, out=tmp_path / "m.pt",
                 feature_spec=SPEC, progress=False, time_limit_s=0)
    assert not none.complete and none.history == ()
    with pytest.raises(InputError, match="empty"):
        train(seeded_model(0, TINY), [], None, QUICK, out=tmp_path / "m.pt",  # type: ignore[arg-type]
              feature_spec=SPEC, progress=False)
    items = [{k: v for k, v in data[0][i].items() if k != "cloudy"} for i in range(4)]
    with pytest.raises(InputError, match="cloudy"):
        train(seeded_model(0, TINY), items, None, QUICK, out=tmp_path / "m.pt",  # type: ignore[arg-type]
              feature_spec=SPEC, progress=False)


def test_a_diverging_loss_stops_training(tmp_path: Path,
                                         data: tuple[PatchDataset, PatchDataset]) -> None:
    items = [data[0][i] for i in range(4)]
    items[0] = items[0] | {"s1": torch.full_like(items[0]["s1"], np.nan)}
    with pytest.raises(TrainingError, match="loss became nan"):
        train(seeded_model(0, TINY), items, None, replace(QUICK, batch_size=4),  # type: ignore[arg-type]
              out=tmp_path / "m.pt", feature_spec=SPEC, progress=False)


def test_bfloat16_autocast_trains_with_float32_weights(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    config = replace(QUICK, precision="bfloat16", max_steps_per_epoch=2)
    model = seeded_model(0, TINY)
    result = train(model, data[0], data[1], config, out=tmp_path / "m.pt", feature_spec=SPEC,
                   progress=False)
    assert result.complete and all(np.isfinite(r.train_loss) for r in result.history)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not _states_equal(model, seeded_model(0, TINY))


def test_head_biases_start_at_the_mean_target(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    items = [data[0][i] for i in range(len(data[0]))]
    weights = torch.stack([item["weight"] for item in items]).double()
    targets = torch.stack([item["target"] for item in items]).double()
    expected = float((weights * targets).sum() / weights.sum())
    model = seeded_model(0, TINY)
    assert init_head_biases(model, data[0], batch_size=8, max_batches=100) == pytest.approx(
        expected)
    for head in (model.enc1.head, model.enc2.head, model.decoder.out):
        assert head.bias is not None
        assert torch.allclose(head.bias, torch.tensor(expected, dtype=torch.float32))
    config = replace(QUICK, epochs_enc1=0, epochs_enc2=0, epochs=1, max_steps_per_epoch=1)
    on = train(seeded_model(0, TINY), data[0], None, config, out=tmp_path / "a.pt",
               feature_spec=SPEC, progress=False)
    off = train(seeded_model(0, TINY), data[0], None, replace(config, init_head_bias=False),
                out=tmp_path / "b.pt", feature_spec=SPEC, progress=False)
    assert 0.1 < on.summary["head_bias_init"] < 1.0 and off.summary["head_bias_init"] is None


def test_checkpoint_epoch_is_the_best_of_the_last_stage() -> None:
    def record(stage: Stage, epoch: int, rmse: float | None) -> EpochRecord:
        val = None if rmse is None else ValMetrics(rmse**2, rmse, 1 - rmse, 10)
        return EpochRecord(stage, epoch, 1, 1e-3, 0.1, val, 1.0)

    history = [record("enc1", 1, 0.05), record("fused", 1, 0.2), record("fused", 2, 0.1)]
    assert is_best(history, "fused") and selected_epoch(history)["epoch"] == 2  # type: ignore[index]
    history.append(record("fused", 3, 0.15))  # worse: the checkpoint stays at epoch 2
    assert not is_best(history, "fused")
    assert selected_epoch(history) == {"stage": "fused", "epoch": 2, "averaged": False,
                                       "val_rmse": 0.1, "val_r2": 0.9}
    history.append(record("fused", 4, 0.1))  # a tie moves to the newer weights
    assert is_best(history, "fused") and selected_epoch(history)["epoch"] == 4  # type: ignore[index]
    no_val = [record("enc2", 1, None), record("enc2", 2, None)]
    assert is_best(no_val, "enc2") and selected_epoch(no_val)["epoch"] == 2  # type: ignore[index]


# --------------------------------------------------------------------------- weight averaging


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The learned parameters (BatchNorm statistics left out: averaging re-estimates them)."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_the_mean_of_the_last_epochs_is_a_candidate(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    out = tmp_path / "m.pt"
    model = seeded_model(0, TINY)
    snapshots = []
    for epoch in range(1, 5):  # one epoch per call: the weights after each
        train(model, data[0], data[1], AVERAGING, out=out, feature_spec=SPEC, progress=False,
              stop_after=1, resume=epoch > 1)
        snapshots.append(torch.load(state_path(out), weights_only=True)["model"])
    result = train(model, data[0], data[1], AVERAGING, out=out, feature_spec=SPEC, progress=False,
                   resume=True)
    assert result.complete
    records = [r for r in result.history if r.stage == "fused"]
    assert [r.averaged for r in records] == [False] * 4 + [True]
    assert records[-1].epoch == 5 and records[-1].steps == 0 and records[-1].val is not None
    # the model holds the mean of epochs 2-4 (the last three), BatchNorm re-estimated
    for name, value in _weights(model).items():
        mean = sum(s[name] for s in snapshots[1:]) / 3
        assert torch.allclose(value, mean, atol=1e-6), name
    assert not torch.allclose(_running_mean(model.state_dict()), _running_mean(snapshots[-1]))
    # the checkpoint keeps the mean, whatever the single epochs scored, and says so
    summary = load_checkpoint(out).training
    assert summary["selected"]["epoch"] == 5 and summary["selected"]["averaged"] is True
    assert records[-1].val is not None
    assert validate(load_checkpoint(out).model, data[1]).rmse == pytest.approx(
        records[-1].val.rmse, rel=1e-4)


def _running_mean(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The first BatchNorm running mean of a state dict."""
    return next(v for k, v in state.items() if k.endswith("running_mean"))


def test_an_interrupted_average_resumes_to_the_same_checkpoint(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    whole = train(seeded_model(0, TINY), data[0], data[1], AVERAGING, out=tmp_path / "a.pt",
                  feature_spec=SPEC, progress=False)
    part = train(seeded_model(0, TINY), data[0], data[1], AVERAGING, out=tmp_path / "b.pt",
                 feature_spec=SPEC, progress=False, stop_after=4)
    assert not part.complete and not any(r.averaged for r in part.history)
    rest = train(seeded_model(5, TINY), data[0], data[1], AVERAGING, out=tmp_path / "b.pt",
                 feature_spec=SPEC, progress=False, resume=True)
    assert rest.complete and rest.history[-1].averaged
    assert rest.history[-1].val == pytest.approx(whole.history[-1].val)
    a, b = (load_checkpoint(tmp_path / name).model.state_dict() for name in ("a.pt", "b.pt"))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_recompute_batchnorm_is_independent_of_the_old_statistics(
        data: tuple[PatchDataset, PatchDataset]) -> None:
    model = seeded_model(0, TINY)
    recompute_batchnorm(model, data[0], batch_size=8)
    fresh = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    for k, v in model.state_dict().items():
        if "running_mean" in k:
            v.fill_(100.0)
    seen = recompute_batchnorm(model, data[0], batch_size=8)
    assert seen == -(-len(data[0]) // 8) and not model.training
    again = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(torch.allclose(fresh[k], again[k], atol=1e-5) for k in fresh)
    assert all(m.momentum == 0.1 for m in model.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_config_refuses_averaging_more_epochs_than_run() -> None:
    with pytest.raises(InputError, match="average_epochs"):
        replace(AVERAGING, average_epochs=5)
    assert replace(AVERAGING, epochs=0, epochs_sigma=1, average_epochs=5).average_epochs == 5


def test_the_averaged_record_is_selected_even_when_an_epoch_validated_better() -> None:
    def record(epoch: int, rmse: float, averaged: bool = False) -> EpochRecord:
        return EpochRecord("fused", epoch, 1, 1e-3, 0.1, ValMetrics(rmse**2, rmse, 0.9, 10),
                           1.0, averaged=averaged)

    history = [record(1, 0.2), record(2, 0.1), record(3, 0.15, averaged=True)]
    assert is_best(history, "fused")
    assert selected_epoch(history) == {"stage": "fused", "epoch": 3, "averaged": True,
                                       "val_rmse": 0.15, "val_r2": 0.9}
    assert EpochRecord.from_dict(history[-1].to_dict()) == history[-1]
    assert not EpochRecord.from_dict({**history[0].to_dict()} | {"averaged": None}).averaged


def test_recomputed_statistics_pool_every_pixel_whatever_the_batch_size(
        data: tuple[PatchDataset, PatchDataset]) -> None:
    first: dict[int, torch.Tensor] = {}
    for size in (2, 8):
        model = seeded_model(0, TINY)
        recompute_batchnorm(model, data[0], batch_size=size)
        norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert norm.running_var is not None
        first[size] = norm.running_var.clone()
    # the first BatchNorm sees the same pixels in any batching: the same variance
    assert torch.allclose(first[2], first[8], rtol=1e-4)
