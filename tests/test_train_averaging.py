"""Weight averaging over the last end-to-end epochs (tiny model, fake cache, CPU)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from lamap.errors import InputError
from lamap.features import FeatureSpec
from lamap.model import ModelConfig, load_checkpoint, seeded_model
from lamap.train.averaging import recompute_batchnorm
from lamap.train.cache import Cache, open_cache
from lamap.train.data import PatchDataset
from lamap.train.loop import TrainConfig, state_path, train, validate
from tests._fake_cache import make_fake_cache

SPEC = FeatureSpec().to_dict()
TINY = ModelConfig.tiny()
CONFIG = TrainConfig(epochs_enc1=0, epochs_enc2=0, epochs=4, batch_size=8, lr=1e-2,
                     device="cpu", threads=1, seed=3, average_epochs=3)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    return open_cache(make_fake_cache(tmp_path_factory.mktemp("cache"), n=40, patch=32))


@pytest.fixture(scope="module")
def data(cache: Cache) -> tuple[PatchDataset, PatchDataset]:
    return (PatchDataset(cache, cache.split_indices("train"), in_memory=True),
            PatchDataset(cache, cache.split_indices("validation"), in_memory=True))


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The learned parameters (BatchNorm statistics left out: averaging re-estimates them)."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_the_mean_of_the_last_epochs_is_a_candidate(
        tmp_path: Path, data: tuple[PatchDataset, PatchDataset]) -> None:
    out = tmp_path / "m.pt"
    model = seeded_model(0, TINY)
    snapshots = []
    for epoch in range(1, 5):  # one epoch per call: the weights after each
        train(model, data[0], data[1], CONFIG, out=out, feature_spec=SPEC, progress=False,
              stop_after=1, resume=epoch > 1)
        snapshots.append(torch.load(state_path(out), weights_only=True)["model"])
    result = train(model, data[0], data[1], CONFIG, out=out, feature_spec=SPEC, progress=False,
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
    whole = train(seeded_model(0, TINY), data[0], data[1], CONFIG, out=tmp_path / "a.pt",
                  feature_spec=SPEC, progress=False)
    part = train(seeded_model(0, TINY), data[0], data[1], CONFIG, out=tmp_path / "b.pt",
                 feature_spec=SPEC, progress=False, stop_after=4)
    assert not part.complete and not any(r.averaged for r in part.history)
    rest = train(seeded_model(5, TINY), data[0], data[1], CONFIG, out=tmp_path / "b.pt",
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
        replace(CONFIG, average_epochs=5)
    assert replace(CONFIG, epochs=0, epochs_sigma=1, average_epochs=5).average_epochs == 5


def test_the_averaged_record_is_selected_even_when_an_epoch_validated_better() -> None:
    from lamap.train.loop import EpochRecord, ValMetrics
    from lamap.train.state import is_best, selected_epoch

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
