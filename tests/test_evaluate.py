"""Tests of the evaluation against baselines (hand-made arrays, then a fake cache)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from lamap.errors import InputError
from lamap.features import FeatureSpec
from lamap.model import ModelConfig, save_checkpoint, seeded_model
from lamap.train.cache import open_cache
from lamap.train.evaluate import (
    METHODS,
    EvalResult,
    evaluate,
    label_steps,
    linear_interpolation,
    persistence,
    pixel_features,
    score,
)
from tests._fake_cache import make_patches, write_cache

TINY = ModelConfig.tiny()
FAST: dict[str, Any] = {"max_pixels": 4000, "rf_max_pixels": 2000, "rf_trees": 10, "rf_depth": 6,
        "threads": 1}


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return make_patches(n=40, patch=16, seed=5)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory, arrays: dict[str, np.ndarray]) -> Path:
    return write_cache(tmp_path_factory.mktemp("cache"), arrays, patch=16)


@pytest.fixture(scope="module")
def result(cache_dir: Path) -> EvalResult:
    return evaluate(seeded_model(0, TINY), cache_dir, **FAST)


# --------------------------------------------------------------------------- pure pieces


def test_score_on_hand_made_arrays() -> None:
    rmse, r2, n = score(np.array([1.0, 2.0, 3.0, np.nan]), np.array([1.0, 2.0, 4.0, 9.0]))
    assert n == 3
    assert rmse == pytest.approx(math.sqrt(1 / 3))
    assert r2 == pytest.approx(1 - 1 / (42 / 9))  # SST about the mean 7/3
    assert math.isnan(score(np.ones(3), np.ones(3))[1])  # constant reference: R² undefined


def _steps(l2: float, l1: float, v2: bool, v1: bool) -> tuple[np.ndarray, np.ndarray]:
    lai = np.array([l2, l1], dtype=np.float32).reshape(2, 1, 1)
    return lai, np.array([v2, v1]).reshape(2, 1, 1)


@pytest.mark.parametrize("l2, l1, v2, v1, expected", [
    (1.0, 2.0, True, True, 2.0), (1.0, 2.0, True, False, 1.0), (1.0, 2.0, False, True, 2.0),
    (1.0, 2.0, False, False, np.nan),
])
def test_persistence_takes_the_last_valid_step(l2: float, l1: float, v2: bool, v1: bool,
                                               expected: float) -> None:
    np.testing.assert_equal(persistence(*_steps(l2, l1, v2, v1))[0, 0], np.float32(expected))


@pytest.mark.parametrize("l2, l1, v2, v1, days, expected", [
    (1.0, 2.0, True, True, (10, 5), 3.0),      # slope 1/5 per day, 5 more days
    (3.0, 2.0, True, True, (9, 3), 1.5),       # falling: 2 - 1 · 3/6
    (1.0, 6.0, True, True, (6, 3), 8.0),       # 11 clipped to 8
    (6.0, 1.0, True, True, (6, 3), 0.0),       # -4 clipped to 0
    (1.0, 2.0, True, False, (10, 5), 1.0),     # one step valid: persistence
    (1.0, 2.0, True, True, (5, 5), 2.0),       # same day twice: persistence
    (1.0, 2.0, False, False, (10, 5), np.nan),
])
def test_linear_interpolation_on_constructed_cases(l2: float, l1: float, v2: bool, v1: bool,
                                                   days: tuple[int, int],
                                                   expected: float) -> None:
    lai, valid = _steps(l2, l1, v2, v1)
    out = linear_interpolation(lai[None], valid[None], np.array([days]))
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)


def test_pixel_features_stack_the_network_inputs() -> None:
    rng = np.random.default_rng(0)
    s1, lai = rng.random((2, 6, 4, 4)), rng.random((2, 2, 4, 4))
    masks, season = rng.random((2, 2, 6, 4, 4)), rng.random((2, 2))
    feats = pixel_features(s1, lai, masks, season)
    assert feats.shape == (2, 22, 4, 4) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[1, 6:8], lai[1], rtol=1e-6)
    np.testing.assert_allclose(feats[1, 8 + 6 + 2], masks[1, 1, 2], rtol=1e-6)
    np.testing.assert_allclose(feats[1, 21], season[1, 1], rtol=1e-6)


# --------------------------------------------------------------------------- on a cache


def _split_rows(arrays: dict[str, np.ndarray], split: str) -> np.ndarray:
    cloudy = arrays["cloudy_past"] >= 0.25
    test = arrays["split"] == 2
    unique = arrays["split"] == 3
    keep = {"cloudy": test & cloudy, "non-cloudy": test & ~cloudy, "unique": unique,
            "unique-cloudy": unique & cloudy, "unique-non-cloudy": unique & ~cloudy}[split]
    return np.flatnonzero(keep)


def test_every_method_and_scoring_set_is_reported(result: EvalResult,
                                                  arrays: dict[str, np.ndarray]) -> None:
    assert result.splits[:3] == ["non-cloudy", "cloudy", "unique"]
    held_out = [s for s in ("unique-non-cloudy", "unique-cloudy") if _split_rows(arrays, s).size]
    assert result.splits[3:] == held_out and held_out
    assert result.methods == list(METHODS)
    assert result.scorings("cloudy") == ["target", "target-common", "cloudy-t-clear",
                                         "cloudy-t-clear-common", "cloudy-t-snap",
                                         "cloudy-t-snap-common", "cloudy-t-truth",
                                         "cloudy-t-truth-common"]
    assert result.meta["synthetic_truth"] and result.meta["fit_pixels_forest"] == 2000


def test_clear_persistence_skips_cloud_shadows() -> None:
    masks = np.zeros((1, 2, 6, 1, 3), np.uint8)  # valid, SCL 2, 3, 4, 5, 6; 3 pixels
    masks[0, :, 0] = 1
    masks[0, :, 3] = 1                       # vegetation at t-2 and t-1 ...
    masks[0, 1, 3, 0, 0] = 0
    masks[0, 1, 2, 0, 0] = 1                 # ... but a cloud shadow at t-1 on pixel 0
    masks[0, :, 0, 0, 2] = 0                 # pixel 2 is never valid
    steps = label_steps(masks, FeatureSpec())
    np.testing.assert_array_equal(steps[0, :, 0], [[True, True, False], [False, True, False]])
    lai = np.array([[[[1.0, 1.0, 1.0]], [[2.0, 2.0, 2.0]]]], np.float32)
    np.testing.assert_array_equal(persistence(lai, steps)[0, 0], [1.0, 2.0, np.nan])
    old = FeatureSpec(target_classes=(2, 3, 4, 5, 6))  # a spec that labels shadows
    np.testing.assert_array_equal(label_steps(masks, old), masks[:, :, 0] > 0)


def test_persistence_matches_a_direct_computation(result: EvalResult,
                                                  arrays: dict[str, np.ndarray]) -> None:
    rows = _split_rows(arrays, "cloudy")
    valid = arrays["masks"][rows, :, 0] > 0
    pred = persistence(arrays["lai"][rows] * 5, valid)
    scored = arrays["target_mask"][rows] > 0
    covered = scored & np.isfinite(pred)
    rmse, r2, n = score(pred[covered], arrays["target"][rows][covered] * 5)
    got = result.get("cloudy", "target", "persistence")
    assert (got.pixels, got.rmse, got.r2) == (n, pytest.approx(rmse), pytest.approx(r2))
    assert got.rmse_scaled == pytest.approx(rmse / 5)
    assert got.coverage == pytest.approx(covered.sum() / scored.sum())
    assert 0 < got.coverage < 1  # the cloudy split has pixels with no valid past


def test_coverage_and_common_pixels(result: EvalResult, arrays: dict[str, np.ndarray]) -> None:
    for split in result.splits:
        own = {m: result.get(split, "target", m) for m in METHODS}
        common = {m: result.get(split, "target-common", m) for m in METHODS}
        assert own["model"].coverage == 1.0 and own["random forest"].coverage == 1.0
        assert own["linear interpolation"].pixels == own["persistence"].pixels
        assert {c.pixels for c in common.values()} == {own["persistence"].pixels}
        assert common["model"].coverage == pytest.approx(own["persistence"].coverage)


def test_cloudy_at_t_scoring_counts_only_cloudy_pixels(result: EvalResult,
                                                       arrays: dict[str, np.ndarray]) -> None:
    rows = _split_rows(arrays, "unique")
    cloudy = np.isin(arrays["truth_cloud"][rows], (1, 2, 3))
    assert cloudy.any()
    for scoring in ("cloudy-t-clear", "cloudy-t-snap", "cloudy-t-truth"):
        assert result.get("unique", scoring, "model").pixels == cloudy.sum()


def test_cloudy_at_t_scoring_reads_the_truth_only_under_clouds(
        tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    spoiled = dict(arrays)
    clear = ~np.isin(arrays["truth_cloud"], (1, 2, 3))
    for name in ("truth_snap", "truth_lai", "truth_clear"):
        spoiled[name] = np.where(clear, np.float32(1e6), arrays[name])
    kwargs: dict[str, Any] = {"splits": ("unique",), "baselines": False}
    a = evaluate(None, write_cache(tmp_path / "a", arrays, patch=16), **kwargs)
    b = evaluate(None, write_cache(tmp_path / "b", spoiled, patch=16), **kwargs)
    assert a.scores == b.scores
    rows = _split_rows(arrays, "unique")
    pred = persistence(arrays["lai"][rows] * 5, arrays["masks"][rows, :, 0] > 0)
    where = ~clear[rows] & np.isfinite(pred)
    for scoring, name in (("cloudy-t-snap", "truth_snap"), ("cloudy-t-clear", "truth_clear")):
        expected = score(pred[where], np.clip(arrays[name][rows][where], 0, 8))
        got = a.get("unique", scoring, "persistence")
        assert (got.rmse, got.pixels) == (pytest.approx(expected[0]), expected[2])


def test_regressions_learn_the_learnable_world(result: EvalResult) -> None:
    for method in ("linear regression", "random forest"):
        assert result.get("non-cloudy", "target", method).r2 > 0.5
    untrained = result.get("non-cloudy", "target", "model")
    assert untrained.rmse > result.get("non-cloudy", "target", "random forest").rmse


def test_outputs_parse(tmp_path: Path, result: EvalResult) -> None:
    text = result.to_markdown()
    header = "| method | RMSE (m²/m²) | RMSE (LAI/5) | R² | pixels | coverage |"
    assert text.count(header) == 8 * len(result.splits)  # 8 scoring sets per split
    gain = abs(result.gain("non-cloudy"))
    assert text.startswith(f"- non-cloudy: the model's RMSE is {gain:.0%}")
    table = next(c for c in text.split("\n\n") if c.startswith("| method"))
    frame = pd.read_csv(io.StringIO(table), sep="|", skiprows=[1], skipinitialspace=True)
    assert len(frame) == len(METHODS)
    long = pd.read_csv(result.to_csv(tmp_path / "scores.csv"))
    assert list(long.columns) == ["split", "scoring", "method", "metric", "value"]
    assert len(long) == 5 * len(result.scores)
    row = long.query("split == 'cloudy' and scoring == 'target' and method == 'model' "
                     "and metric == 'rmse'")
    assert row["value"].item() == pytest.approx(result.get("cloudy", "target", "model").rmse)
    assert json.loads(json.dumps(result.to_dict()))["scores"][0]["split"] == "non-cloudy"
    for scoring in ("cloudy-t-clear-common", "cloudy-t-snap-common"):
        expected = 1 - (result.get("cloudy", scoring, "model").rmse
                        / result.get("cloudy", scoring, "persistence").rmse)
        assert result.gain("cloudy", scoring) == pytest.approx(expected)
        assert f"{abs(expected):.0%}" in text.splitlines()[1]
    assert result.gain("cloudy") == result.gain("cloudy", "cloudy-t-clear-common")


def test_checkpoints_and_opened_caches_are_accepted(tmp_path: Path, cache_dir: Path) -> None:
    model = seeded_model(0, TINY)
    path = save_checkpoint(tmp_path / "m.pt", model, feature_spec=FeatureSpec().to_dict())
    kwargs: dict[str, Any] = {"splits": ("unique",), "baselines": False}
    from_path = evaluate(path, open_cache(cache_dir), **kwargs)
    assert from_path.scores == evaluate(model, cache_dir, **kwargs).scores
    assert from_path.meta["model_sha256"]
    other = save_checkpoint(tmp_path / "o.pt", model,
                            feature_spec=FeatureSpec(lai_scale=4.0).to_dict())
    with pytest.raises(InputError, match="feature spec"):
        evaluate(other, cache_dir, **kwargs)


def test_bad_requests_are_clear(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(InputError, match="unknown split 'tests'"):
        evaluate(None, cache_dir, splits=("tests",), baselines=False)
    with pytest.raises(InputError, match="no lamap training cache"):
        evaluate(None, tmp_path / "nowhere", baselines=False)
    quick = evaluate(None, cache_dir, splits=("cloudy",), baselines=False, max_patches=2)
    assert quick.meta["patches"] == {"cloudy": 2}
    assert quick.methods == ["persistence", "clear persistence", "linear interpolation"]


def test_the_label_is_scored_against_the_cloud_free_truth(tmp_path: Path) -> None:
    arrays = make_patches(n=24, patch=16, seed=9)
    noise = np.random.default_rng(2).normal(0.0, 0.1, arrays["target"].shape)
    arrays["target"] = np.where(arrays["target_mask"] > 0, arrays["target"] + noise,
                                0.0).astype(np.float32)  # a label 0.5 m²/m² off the truth
    result = evaluate(None, write_cache(tmp_path / "c", arrays, patch=16), baselines=False)
    for split in result.splits:
        rows = _split_rows(arrays, split)
        keep = (arrays["target_mask"][rows] > 0) & (arrays["truth_cloud"][rows] == 0)
        found = []
        for name in ("clear", "snap"):
            ref = np.clip(arrays[f"truth_{name}"][rows], 0.0, 8.0)
            diff = arrays["target"][rows][keep].astype(np.float64) * 5.0 - ref[keep]
            expected = math.sqrt(float(np.mean(diff**2)))
            assert 0.3 < expected < 0.7
            assert result.meta[f"label_vs_{name}_rmse"][split] == pytest.approx(expected,
                                                                               rel=1e-5)
            found.append(f"{expected:.3f} m²/m² from the {name} reference")
        assert f"the S2 LAI label itself is {', '.join(found)}" in result.to_markdown()
