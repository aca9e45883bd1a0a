"""The Sentinel-1 time series: spec, planner, cubes and features (missing passes masked)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import dask
import numpy as np
import pytest
import xarray as xr

from lamap.catalog import open_catalog, search
from lamap.cube import CubeWindow, tile_cubes
from lamap.errors import InputError
from lamap.feature_spec import FeatureSpec
from lamap.features import build_features, features_from_arrays
from lamap.model import ARCHITECTURES, TRAINING_CACHE_SPEC
from lamap.radar_series import series_variables
from lamap.tileplan import PlanOptions, SceneIndex, iter_plans
from lamap.timesteps import S1Pass, TimeSteps, choose_series, plan_time_steps, search_window

DATE = dt.date(2024, 4, 28)
SERIES = ARCHITECTURES["li2025"].spec


def _pass(day: int, hour: int = 6) -> S1Pass:
    when = dt.datetime(2024, 4, day, hour, tzinfo=dt.UTC)
    return S1Pass(when, "sentinel-1a", "ascending", 15, (f"S1_{day}_{hour}",), 1.0)


def test_the_spec_leaves_the_fused_model_as_it_was() -> None:
    fused = FeatureSpec()
    assert "s1_passes" not in fused.to_dict()  # fused checkpoints and cache keys unchanged
    assert FeatureSpec.from_dict(fused.to_dict()) == fused
    assert FeatureSpec.from_dict(SERIES.to_dict()) == SERIES
    assert SERIES.to_dict()["s1_window_days"] == 36 and SERIES.series_labels[-1] == "p-0"
    assert TRAINING_CACHE_SPEC.provides(fused) and TRAINING_CACHE_SPEC.provides(SERIES)
    assert not SERIES.provides(fused) and not fused.provides(SERIES)
    assert not TRAINING_CACHE_SPEC.provides(dataclasses.replace(SERIES, lai_scale=4.0))
    with pytest.raises(InputError, match="both be 0"):
        FeatureSpec(s1_window_days=36)
    with pytest.raises(InputError, match="no Sentinel-1 input"):
        FeatureSpec(s1_at_steps=False)


def test_the_series_is_the_latest_passes_in_the_window_oldest_first() -> None:
    passes = [_pass(d) for d in (1, 7, 13, 19, 25, 28)] + [_pass(29)]
    chosen = choose_series(passes, DATE, 36, 3)
    assert [p.day.day for p in chosen] == [19, 25, 28]  # D itself counts, D+1 does not
    assert [p.day.day for p in choose_series(passes, DATE, 10, 6)] == [19, 25, 28]
    assert choose_series(passes, DATE, 36, 0) == ()


def test_time_steps_with_a_series_round_trip_and_keep_the_fused_form() -> None:
    from lamap.timesteps import S2Day

    t2, t1 = (S2Day(dt.date(2024, 4, d), (f"S2_{d}",), 1.0) for d in (18, 23))
    steps = TimeSteps(DATE, t2, t1, None, (), 20, 6, 0.5, 36, 6, (_pass(13), _pass(25)))
    data = json.loads(json.dumps(steps.to_dict()))
    assert TimeSteps.from_dict(data) == steps and data["s1"] == {}
    assert steps.series_days() == (-15, -3)
    assert steps.s1_item_ids == ("S1_13_6", "S1_25_6")
    plain = TimeSteps(DATE, t2, t1, None, (_pass(18), _pass(22), _pass(28)))
    assert "s1_series" not in plain.to_dict()
    assert "s1_passes" not in plain.to_dict()["options"]
    with pytest.raises(InputError, match="must lie in"):
        TimeSteps(DATE, t2, t1, None, (), 20, 6, 0.5, 10, 6, (_pass(13),))


def test_series_padding_masks_missing_passes() -> None:
    values = xr.DataArray(np.full((2, 2, 3, 4), 0.5, np.float32), dims=("time", "band", "y", "x"))
    finite = xr.DataArray(np.ones((2, 3, 4), bool), dims=("time", "y", "x"))
    finite[1, 0, 0] = False
    found = series_variables(values, finite, [-12, -6], [10, 5], SERIES)
    assert found["s1_series"].shape == (6, 2, 3, 4)
    assert found["s1_series"].values[:4].max() == 0.0 == SERIES.s1_fill  # empty slots
    valid = found["s1_series_valid"].values
    assert valid[:4].max() == 0.0 and valid[4].min() == 1.0 and valid[5, 0, 0] == 0.0
    assert found["s1_days"].values.tolist() == [-36, -36, -36, -36, -12, -6]
    assert found["past_days"].values.tolist() == [10, 5]
    with pytest.raises(InputError, match="3 passes and 2 days"):
        series_variables(values.isel(time=[0, 1, 1]), finite.isel(time=[0, 1, 1]), [-12, -6],
                         [10, 5], SERIES)


@pytest.fixture(scope="module")
def result(tiny_world, tiny_api):  # type: ignore[no-untyped-def]
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    start, end = search_window([DATE], s1_window_days=36)
    return search(profile, tiny_world.bbox, start, end)


def test_the_planner_chooses_steps_and_series_from_the_spec(result, grid) -> None:  # type: ignore[no-untyped-def]
    tiles = grid.tiles_for_bbox(result.s2[0].footprint.bounds)[:1]
    index = SceneIndex.from_result(result)
    both = next(iter_plans(index, tiles, DATE, PlanOptions().with_spec(TRAINING_CACHE_SPEC)))
    only = next(iter_plans(index, tiles, DATE, PlanOptions().with_spec(SERIES)))
    fused = next(iter_plans(index, tiles, DATE, PlanOptions()))
    assert isinstance(both.steps, TimeSteps) and isinstance(only.steps, TimeSteps)
    assert both.steps.s1 == fused.steps.s1 and len(both.steps.s1) == 3  # type: ignore[union-attr]
    assert only.steps.s1 == () and only.steps.s1_series == both.steps.s1_series
    days = only.steps.series_days()
    assert days and all(-36 <= d <= 0 for d in days) and list(days) == sorted(days)
    early = plan_time_steps(result.s2, result.s1, DATE, tiles[0].lonlat_bounds().to_tuple(),
                            s1_steps=False, s1_window_days=1, s1_series_passes=2)
    assert early.missing == "sentinel-1" and "radar series" in early.reason  # type: ignore[union-attr]


def test_series_features_from_the_cubes(result, grid) -> None:  # type: ignore[no-untyped-def]
    tile = grid.tiles_for_bbox(result.s2[0].footprint.bounds)[0]
    plan = next(iter_plans(SceneIndex.from_result(result), [tile], DATE,
                           PlanOptions().with_spec(TRAINING_CACHE_SPEC)))
    assert isinstance(plan.steps, TimeSteps)
    cubes = tile_cubes(plan.steps, result.s2, result.s1, CubeWindow.for_tile(tile))
    with dask.config.set(scheduler="synchronous"):
        both = build_features(cubes, TRAINING_CACHE_SPEC).compute()
        only = build_features(dataclasses.replace(cubes, s1=None), SERIES).compute()
    assert "s1" not in only and both["s1_series"].shape[:2] == (6, 2)
    np.testing.assert_array_equal(both["s1_series"].values, only["s1_series"].values)
    assert both["s1_days"].values.tolist()[-len(plan.steps.s1_series):] == list(
        plan.steps.series_days())
    expected = only["s1_series_valid"].max("s1_pass").values
    np.testing.assert_array_equal(only["s1_valid"].values, expected)
    with pytest.raises(InputError, match="takes s1_series"):
        features_from_arrays(cubes.s2, cubes.scl, cubes.s1, DATE, spec=SERIES)
