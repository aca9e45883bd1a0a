"""Per-pixel uncertainty: spread heads, their training, calibration, lai_sd in the store."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from lamap.blocks import combine
from lamap.export_zarr import export_zarr
from lamap.model import (
    ARCHITECTURES,
    TRAINING_CACHE_SPEC,
    Li2025Config,
    ModelConfig,
    gaussian_nll,
    load_checkpoint,
    save_checkpoint,
    seeded_network,
)
from lamap.store import Source
from lamap.train.config import TrainConfig
from lamap.train.data import PatchDataset
from lamap.train.evaluate import evaluate
from lamap.train.loop import train
from lamap.train.uncertainty import (
    Coverage,
    interval_factor,
    observed_error_scale,
    record_uncertainty,
)
from tests._fake_cache import make_patches, with_series, write_cache

FUSED, LI = ARCHITECTURES["lnb-fused"], ARCHITECTURES["li2025"]
TINY_FUSED = replace(ModelConfig.tiny(), sigma_head=True)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    arrays = with_series(make_patches(n=32, patch=32, seed=3))
    return write_cache(tmp_path_factory.mktemp("u"), arrays, patch=32, spec=TRAINING_CACHE_SPEC)


def test_coverage_counts_within_one_and_two_sigma() -> None:
    cover = Coverage()
    pred = np.zeros(5)
    ref = np.array([0.5, 1.5, 2.5, -0.9, np.nan])
    cover.add(pred, np.ones(5), ref, np.ones(5, bool))
    assert (cover.n, cover.within1, cover.within2) == (4, 2, 3)
    assert cover.cover1 == 0.5 and cover.cover2 == 0.75 and cover.mean_sd == 1.0
    assert cover.rms_z == pytest.approx(np.sqrt((0.25 + 2.25 + 6.25 + 0.81) / 4))


def test_gaussian_nll_is_lowest_at_the_errors_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn((1, 1, 64, 64), generator=gen) * 0.3
    mean, weight = torch.zeros_like(target), torch.ones_like(target)
    losses = {s: float(gaussian_nll(mean, torch.full_like(target, s), target, weight))
              for s in (0.1, 0.3, 0.9)}
    assert losses[0.3] < losses[0.1] and losses[0.3] < losses[0.9]


def test_the_spread_stage_leaves_the_mean_untouched(tmp_path: Path, cache_dir: Path) -> None:
    model = seeded_network(FUSED, 0, TINY_FUSED)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = PatchDataset(cache_dir, range(8))
    config = TrainConfig(epochs_enc1=0, epochs_enc2=0, epochs=0, epochs_sigma=3, batch_size=4,
                         lr=2e-2, device="cpu", threads=1)
    result = train(model, data, data, config, out=tmp_path / "s.pt",
                   feature_spec=FUSED.spec.to_dict(), progress=False, stage_data={"sigma": data})
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("sigma.") for k in changed)  # BatchNorm stats too
    losses = [r.train_loss for r in result.history]
    assert [r.stage for r in result.history] == ["sigma"] * 3 and losses[-1] < losses[0]


def test_the_spread_stage_freezes_the_selected_mean(tmp_path: Path, cache_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The spread head trains on, and the checkpoint keeps, the end-to-end epoch the
    checkpoint selected, not the last one (here the first is made the selected one)."""
    import lamap.train.state as state

    def first_of_stage(history):  # type: ignore[no-untyped-def]
        if not history:
            return None
        stage = history[-1].stage
        first = next(r for r in history if r.stage == stage)
        return {"stage": stage, "epoch": first.epoch, "val_rmse": None, "val_r2": None}

    monkeypatch.setattr(state, "selected_epoch", first_of_stage)
    data = PatchDataset(cache_dir, range(8))
    config = TrainConfig(epochs_enc1=0, epochs_enc2=0, epochs=2, epochs_sigma=1, batch_size=4,
                         lr=2e-2, device="cpu", threads=1)
    out, kwargs = tmp_path / "s.pt", {"feature_spec": FUSED.spec.to_dict(), "progress": False,
                                      "stage_data": {"sigma": data}}  # fmt: skip
    model = seeded_network(FUSED, 0, TINY_FUSED)
    train(model, data, data, config, out=out, stop_after=1, **kwargs)
    selected = load_checkpoint(out).model.state_dict()  # end-to-end epoch 1 of 2
    mean = [k for k in selected if not k.startswith("sigma.")]
    train(model, data, data, config, out=out, resume=True, **kwargs)  # epoch 2, then σ
    final = load_checkpoint(out).model.state_dict()
    assert all(torch.equal(final[k], selected[k]) for k in mean)
    assert any(not torch.equal(final[k], selected[k]) for k in final if k.startswith("sigma."))


def test_li2025_trains_every_stage_on_a_series_cache(tmp_path: Path, cache_dir: Path) -> None:
    names = (*LI.spatial_inputs, *LI.vector_inputs)
    data = PatchDataset(cache_dir, range(8), inputs=names, crop=32)
    config = TrainConfig(epochs_enc1=1, epochs_enc2=1, epochs=1, epochs_sigma=1, batch_size=4,
                         device="cpu", threads=1)
    result = train(seeded_network(LI, 0, Li2025Config.tiny()), data, data, config,
                   out=tmp_path / "li.pt", feature_spec=LI.spec.to_dict(), progress=False)
    assert [r.stage for r in result.history] == ["step1", "features", "step2", "sigma"]
    assert result.complete and load_checkpoint(tmp_path / "li.pt").architecture.name == "li2025"


def test_side_by_side_evaluation_with_gaps_and_calibration(tmp_path: Path,
                                                           cache_dir: Path) -> None:
    fused = save_checkpoint(tmp_path / "f.pt", seeded_network(FUSED, 0, TINY_FUSED),
                            feature_spec=FUSED.spec.to_dict())
    li = save_checkpoint(tmp_path / "l.pt", seeded_network(LI, 0, Li2025Config.tiny()),
                         feature_spec=LI.spec.to_dict())
    kwargs: dict[str, Any] = {"splits": ("unique",), "baselines": False, "threads": 1}
    result = evaluate([fused, li], cache_dir, **kwargs)
    assert result.models == ["model", "li2025"]
    assert result.methods[:6] == ["model", "encoder 1", "encoder 2", "li2025",
                                  "li2025 step 1", "li2025 step 2 (t-1 only)"]
    scorings = result.scorings("unique")
    assert {"cloudy-t-gap-le15", "cloudy-t-gap-gt15", "cloudy-t-gap-gt30"} <= set(scorings)
    same = {m: result.get("unique", "cloudy-t-clear-common", m).pixels for m in result.methods}
    assert len(set(same.values())) == 1  # every method on the same pixels
    rows = {(c.scoring, c.method): c for c in result.calibration}
    assert ("cloudy-t-clear", "model") in rows and ("cloudy-t-gap-gt30", "li2025") in rows
    clear = rows[("cloudy-t-clear", "model")]
    assert 0 <= clear.cover1 <= clear.cover2 <= 1 and clear.pixels > 0
    assert "calibration of the spread" in result.to_markdown()
    alone = evaluate(li, cache_dir, **kwargs)
    assert alone.get("unique", "target", "li2025").rmse == result.get(
        "unique", "target", "li2025").rmse
    twice = evaluate([fused, fused], cache_dir, **kwargs)
    assert twice.models == ["f (1): model", "f (2): model"]


def test_the_interval_factor_makes_gaussian_bands_hold_their_share() -> None:
    z = np.abs(np.random.default_rng(0).normal(0.0, 1.0, 200_000))
    assert interval_factor(z) == pytest.approx(1.0, abs=0.02)
    assert interval_factor(2.5 * z) == pytest.approx(2.5, rel=0.02)
    assert interval_factor(np.zeros(0)) == 1.0


def test_recording_calibrates_the_spread_and_the_observed_scale(tmp_path: Path,
                                                                cache_dir: Path) -> None:
    from lamap.train.patches import Cache, open_cache

    cache: Cache = open_cache(cache_dir)
    value, how = observed_error_scale(cache)
    rows = cache.split_indices("validation")
    a = {n: np.asarray(cache.group()[n].oindex[rows])
         for n in ("target", "target_mask", "truth_clear", "truth_cloud")}
    keep = (a["target_mask"] > 0) & (a["truth_cloud"] == 0)
    expected = np.sqrt(np.mean((a["target"] * 5.0 - a["truth_clear"])[keep] ** 2))
    assert value == pytest.approx(expected, rel=1e-4) and "cloud-free S2 label" in how
    path = save_checkpoint(tmp_path / "m.pt", seeded_network(FUSED, 0, TINY_FUSED),
                           feature_spec=FUSED.spec.to_dict())
    entry = record_uncertainty(path, cache)
    assert entry["observed_sd"] == pytest.approx(value) and 0.2 < entry["sd_scale"] < 5
    loaded = load_checkpoint(path)
    assert loaded.training["uncertainty"] == entry
    assert float(loaded.model.sigma.scale) == pytest.approx(entry["sd_scale"])


def test_checkpoints_from_before_the_calibration_factor_load_with_one(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", seeded_network(FUSED, 0, TINY_FUSED),
                           feature_spec=FUSED.spec.to_dict())
    data = torch.load(path, weights_only=True)
    del data["state_dict"]["sigma.scale"]
    torch.save(data, path)
    assert float(load_checkpoint(path).model.sigma.scale) == 1.0


def test_the_spread_follows_the_source() -> None:
    lai = np.array([[1.0, 2.0, 3.0]], np.float32)
    observed = np.array([[np.nan, 2.5, np.nan]], np.float32)
    has_input = np.array([[True, True, False]])
    block = combine(lai, has_input, observed, model_sd=np.full_like(lai, 0.4), observed_sd=0.3)
    assert block.source.tolist() == [[Source.FILLED, Source.OBSERVED, Source.NO_INPUT]]
    np.testing.assert_allclose(block.lai_sd, [[0.4, 0.3, np.nan]])


def test_map_writes_lai_sd_with_cf_attributes(tiny_world, grid, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from lamap.mapping import map_lai
    from lamap.runtime import ClusterSpec

    model = save_checkpoint(tmp_path / "li.pt", seeded_network(LI, 0, Li2025Config.tiny()),
                            feature_spec=LI.spec.to_dict(),
                            training={"uncertainty": {"observed_sd": 0.45}})
    out = tmp_path / "lai.zarr"
    date = dt.date(2024, 4, 28)
    report = map_lai(tiny_world.bbox, date, out, catalog=str(tiny_world.root), model=model,
                     grid=grid, cluster=ClusterSpec(workers=1, dashboard_address=":0"))
    assert report.mapped and not report.failed
    ds = xr.open_zarr(out).sel(time=np.datetime64(date))
    assert ds["lai"].attrs["ancillary_variables"] == "source lai_sd"
    attrs = ds["lai_sd"].attrs
    assert attrs["standard_name"] == "leaf_area_index standard_error"
    assert attrs["units"] == "m2 m-2"
    sd, source = ds["lai_sd"].values, ds["source"].values
    assert np.isnan(sd[source == Source.NO_INPUT]).all()
    np.testing.assert_allclose(sd[source == Source.OBSERVED], 0.45)
    filled = sd[source == Source.FILLED]
    assert filled.size and np.isfinite(filled).all() and (filled > 0).all()
    assert json.loads(ds.attrs["lamap_model"])["architecture"] == "li2025"
    cube = json.loads((tmp_path / "lai.collection.json").read_text())["cube:variables"]
    assert cube["lai_sd"]["unit"] == "m2 m-2"  # the STAC Collection lists it too
    copy = export_zarr(out, tmp_path / "v2.zarr", dates=[date])
    v2 = xr.open_zarr(copy, zarr_format=2)
    same = ds["lai_sd"].sel(x=v2["x"], y=v2["y"]).values
    np.testing.assert_array_equal(v2["lai_sd"].isel(time=0).values, same)


def test_the_cli_scores_models_side_by_side(tmp_path: Path, cache_dir: Path) -> None:
    import subprocess
    import sys

    fused = save_checkpoint(tmp_path / "f.pt", seeded_network(FUSED, 0, TINY_FUSED),
                            feature_spec=FUSED.spec.to_dict())
    li = save_checkpoint(tmp_path / "l.pt", seeded_network(LI, 0, Li2025Config.tiny()),
                         feature_spec=LI.spec.to_dict())
    done = subprocess.run(
        [sys.executable, "-m", "lamap.cli.main", "evaluate", "--model", str(fused), "--model",
         str(li), "--cache", str(cache_dir), "--no-baselines", "--max-patches", "2",
         "--csv", str(tmp_path / "m.csv")],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "| li2025 step 1 |" in done.stdout and "| encoder 1 |" in done.stdout
    assert "calibration of the spread" in done.stdout
    assert "cover1" in (tmp_path / "m.csv").read_text()
