"""Features: MODEL.md's inputs, lazily, identical on NumPy and xarray, never NaN."""

from __future__ import annotations

import datetime as dt
import json
import math

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lamap.cube import CubeWindow, TileCubes
from lamap.errors import InputError
from lamap.features import (
    DEFAULT_SPEC,
    MODEL_INPUTS,
    SPEC_ATTR,
    FeatureSpec,
    build_features,
    features_from_arrays,
    lai_channels,
    normalise_s1,
    observed_lai,
    s2_lai,
    scl_masks,
    season,
    target,
    to_tensors,
    valid_pixels,
)
from lamap.grid import Grid, Window
from lamap.lai import SNAP_BANDS, snap_lai
from lamap.timesteps import S1Pass, S2Day, TimeSteps
from tests._dask import raise_if_dask_computes

DATE = dt.date(2024, 6, 15)
H, W = 12, 16
GRID = Grid("EPSG:32632", 10.0, (500000.0, 5000000.0), (2000, 2000))
WHERE = CubeWindow(GRID, Window(0, H, 0, W))
ANGLES = {"sun_zenith": [30.0, 32.0], "view_zenith": [5.0, 8.0], "relative_azimuth": [100.0, 140.0]}


def _lazy(values: np.ndarray, dims: tuple[str, ...], **coords: object) -> xr.DataArray:
    chunks = tuple(1 if d in ("time", "band") else 8 for d in dims)
    return xr.DataArray(da.from_array(values, chunks=chunks), dims=dims,
                        coords={**WHERE.coords(), **coords})


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    """NumPy inputs with clouds, S1 borders and an S2 swath edge."""
    rng = np.random.default_rng(42)
    s2 = rng.uniform(0.01, 0.45, size=(2, 8, H, W)).astype(np.float32)
    s2[1, :, :, :3] = np.nan  # outside the swath at t-1 ...
    scl = rng.integers(0, 12, size=(2, H, W)).astype(np.uint8)
    scl[1, :, :2] = 4  # ... but SCL (nearest) says vegetation on two of its columns
    s1 = rng.uniform(-25.0, -3.0, size=(3, 2, H, W)).astype(np.float32)
    s1[2, :, :4, :] = np.nan  # S1 border at D
    s2_now = rng.uniform(0.01, 0.45, size=(1, 8, H, W)).astype(np.float32)
    s2_now[0, :, -1, :] = np.nan
    scl_now = rng.integers(0, 12, size=(1, H, W)).astype(np.uint8)
    return {"s2": s2, "scl": scl, "s1": s1, "s2_now": s2_now, "scl_now": scl_now}


def _arrays(raw: dict[str, np.ndarray], now: bool = True) -> dict[str, xr.DataArray]:
    days = np.array(["2024-06-05", "2024-06-10"], dtype="datetime64[ns]")
    angles = {k: ("time", v) for k, v in ANGLES.items()}
    arrays = {
        "s2": _lazy(raw["s2"], ("time", "band", "y", "x"), time=days, band=list(SNAP_BANDS),
                    **angles),
        "scl": _lazy(raw["scl"], ("time", "y", "x"), time=days),
        "s1": _lazy(raw["s1"], ("time", "band", "y", "x"), band=["vv", "vh"]),
    }
    if now:
        now_angles = {k: ("time", v[:1]) for k, v in ANGLES.items()}
        arrays["s2_now"] = _lazy(raw["s2_now"], ("time", "band", "y", "x"),
                                 band=list(SNAP_BANDS), **now_angles)
        arrays["scl_now"] = _lazy(raw["scl_now"], ("time", "y", "x"))
    return arrays


def _tile_cubes(raw: dict[str, np.ndarray]) -> TileCubes:
    def s1_pass(day: int) -> S1Pass:
        when = dt.datetime(2024, 6, day, 17, tzinfo=dt.UTC)
        return S1Pass(when, "sentinel-1a", "ascending", 15, (f"s1-{day}",), 1.0)

    def s2_day(day: int) -> S2Day:
        return S2Day(dt.date(2024, 6, day), (f"s2-{day}",), 1.0)

    steps = TimeSteps(DATE, s2_day(5), s2_day(10), s2_day(15),
                      (s1_pass(5), s1_pass(10), s1_pass(14)))
    a = _arrays(raw)
    return TileCubes(steps, WHERE, a["s2"], a["scl"], a["s1"], a["s2_now"], a["scl_now"])


@pytest.fixture(scope="module")
def features(raw: dict[str, np.ndarray]) -> xr.Dataset:
    return build_features(_tile_cubes(raw))


@pytest.fixture(scope="module")
def tensors(features: xr.Dataset) -> dict[str, np.ndarray]:
    return to_tensors(features)


def _snap(reflectance: np.ndarray, step: int) -> np.ndarray:
    """SNAP LAI of one time step of a (time, band, y, x) array, band moved last."""
    angles = (ANGLES["view_zenith"][step], ANGLES["sun_zenith"][step],
              ANGLES["relative_azimuth"][step])
    return np.asarray(snap_lai(np.moveaxis(reflectance[step], 0, -1), *angles))


# ----------------------------------------------------------------------------- laziness


def test_building_features_computes_nothing(raw: dict[str, np.ndarray]) -> None:
    cubes = _tile_cubes(raw)
    with raise_if_dask_computes():
        ds = build_features(cubes)
        past_only = features_from_arrays(cubes.s2, cubes.scl, cubes.s1, DATE)
    for name in ("s1", "lai", "masks", "target", "target_mask", "observed_lai", "s1_valid"):
        assert isinstance(ds[name].data, da.Array), f"{name} was computed while building"
    assert "target" not in past_only and isinstance(past_only["lai"].data, da.Array)


def test_to_tensors_computes_once(features: xr.Dataset) -> None:
    with raise_if_dask_computes(max_computes=1) as scheduler:
        arrays = to_tensors(features)
    assert scheduler.computes == 1
    assert {k: v.shape for k, v in arrays.items()} == {
        "s1": (6, H, W), "lai": (2, H, W), "masks": (2, 6, H, W), "season": (2,),
        "target": (H, W), "target_mask": (H, W),
    }
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in arrays.values())


def test_the_helper_catches_a_compute() -> None:
    lazy = xr.DataArray(da.zeros((4, 4), chunks=2), dims=("y", "x"))
    with pytest.raises(RuntimeError, match="computed"), raise_if_dask_computes():
        bool((lazy > 0).any())


# ----------------------------------------------------------------------------- layout


def test_layout_dims_and_channel_labels(features: xr.Dataset) -> None:
    assert features["s1"].dims == ("s1_channel", "y", "x")
    assert features["lai"].dims == ("lai_channel", "y", "x")
    assert features["masks"].dims == ("step", "mask_channel", "y", "x")
    assert features["season"].dims == ("season_channel",)
    assert list(features.s1_channel.values) == [
        "vv_t-2", "vh_t-2", "vv_t-1", "vh_t-1", "vv_t", "vh_t"]
    assert list(features.lai_channel.values) == ["lai_t-2", "lai_t-1"]
    assert list(features.step.values) == ["t-2", "t-1"]
    assert list(features.mask_channel.values) == [
        "valid", "dark_area", "cloud_shadow", "vegetation", "not_vegetated", "water"]
    assert list(features.season_channel.values) == ["sin", "cos"]
    np.testing.assert_array_equal(features.x.values, WHERE.coords()["x"])
    np.testing.assert_array_equal(features.y.values, WHERE.coords()["y"])
    assert all(features[v].dtype == np.float32 for v in features.data_vars)
    assert features.attrs["date"] == "2024-06-15"
    assert FeatureSpec.from_dict(json.loads(features.attrs[SPEC_ATTR])) == DEFAULT_SPEC


def test_model_input_sizes_match_model_md(tensors: dict[str, np.ndarray]) -> None:
    # encoder 1: 6 S1 + 2x2 mask embedding + 1 season; encoder 2: 2 LAI + 4 + 1
    assert tensors["s1"].shape[0] == 6 and tensors["lai"].shape[0] == 2
    assert tensors["masks"].shape[:2] == (2, 6) and tensors["season"].shape == (2,)


# ----------------------------------------------------------------------------- values


def test_s1_normalisation_values() -> None:
    db = np.array([-30.0, 0.0, -15.0, 3.0, np.nan, np.inf], dtype=np.float32)
    np.testing.assert_allclose(normalise_s1(db), [0.0, 1.0, 0.5, 1.1, 0.0, 0.0], rtol=1e-6)
    assert normalise_s1(db).dtype == np.float32


def test_s1_channels_follow_time_then_band(raw: dict[str, np.ndarray],
                                           tensors: dict[str, np.ndarray]) -> None:
    expected = np.nan_to_num(raw["s1"] / 30.0 + 1.0, nan=0.0).reshape(6, H, W)
    np.testing.assert_allclose(tensors["s1"], expected, rtol=1e-6)
    assert np.all(tensors["s1"][4:, :4] == 0.0), "S1 nodata is the documented fill"


def test_s1_valid_flags_missing_radar(raw: dict[str, np.ndarray], features: xr.Dataset) -> None:
    expected = np.isfinite(raw["s1"]).all(axis=(0, 1))
    np.testing.assert_array_equal(features["s1_valid"].values, expected.astype(np.float32))


def test_lai_channels_are_snap_lai_over_5_on_valid_pixels(
    raw: dict[str, np.ndarray], tensors: dict[str, np.ndarray]
) -> None:
    for step in range(2):
        lai = _snap(raw["s2"], step)
        valid = np.isin(raw["scl"][step], [2, 3, 4, 5, 6]) & np.isfinite(lai)
        assert valid.sum() > 20
        got = tensors["lai"][step]
        np.testing.assert_allclose(got[valid], np.clip(lai[valid], 0, 8) / 5, atol=1e-6)
        assert np.all(got[~valid] == 0.0), "LAI where not valid is the documented fill"
        assert np.all(tensors["masks"][step, 0] == valid)


def test_lai_inputs_are_clipped_to_the_product_range() -> None:
    lai = np.array([-0.4, 0.0, 2.5, 9.0, np.nan])
    scl = np.full(5, 4, dtype=np.uint8)
    np.testing.assert_allclose(lai_channels(lai, scl), [0.0, 0.0, 0.5, 1.6, 0.0], rtol=1e-6)


def test_unmasked_lai_keeps_cloud_values_but_fills_nan() -> None:
    lai = np.array([1.0, 2.0, np.nan])
    scl = np.array([9, 4, 4], dtype=np.uint8)
    np.testing.assert_allclose(lai_channels(lai, scl), [0.0, 0.4, 0.0], rtol=1e-6)
    keep = FeatureSpec(mask_invalid_lai=False)
    np.testing.assert_allclose(lai_channels(lai, scl, spec=keep), [0.2, 0.4, 0.0], rtol=1e-6)


def test_valid_needs_finite_lai_at_swath_edges(tensors: dict[str, np.ndarray]) -> None:
    # t-1: SCL says vegetation on columns 0-1, but reflectance is NaN on columns 0-2
    masks = tensors["masks"][1]
    assert np.all(masks[0, :, :3] == 0.0)
    assert np.all(masks[3, :, :2] == 1.0), "one-hot channels stay the SCL classes"


SCL_ARRAYS = hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=3, max_side=6),
                        elements=st.integers(0, 11))


@settings(max_examples=60, deadline=None)
@given(SCL_ARRAYS)
def test_masks_are_exactly_the_scl_classes(scl: np.ndarray) -> None:
    masks = scl_masks(scl)
    assert masks.shape == (*scl.shape[:-2], 6, *scl.shape[-2:]) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    np.testing.assert_array_equal(masks[..., 0, :, :], np.isin(scl, [2, 3, 4, 5, 6]))
    for channel, value in enumerate((2, 3, 4, 5, 6), start=1):
        np.testing.assert_array_equal(masks[..., channel, :, :], scl == value)
    # with the default classes the one-hot channels partition the valid pixels
    np.testing.assert_array_equal(masks[..., 1:, :, :].sum(axis=-3), masks[..., 0, :, :])


@settings(max_examples=30, deadline=None)
@given(SCL_ARRAYS)
def test_masks_agree_on_numpy_dask_and_xarray(scl: np.ndarray) -> None:
    dims = tuple(f"d{i}" for i in range(scl.ndim - 2)) + ("y", "x")
    lazy = xr.DataArray(da.from_array(scl, chunks=2), dims=dims)
    with raise_if_dask_computes():
        on_xarray = scl_masks(lazy)
        on_dask = scl_masks(da.from_array(scl, chunks=2))
    assert on_xarray.dims == (*dims[:-2], "mask_channel", "y", "x")
    assert list(on_xarray.mask_channel.values) == list(DEFAULT_SPEC.mask_labels)
    np.testing.assert_array_equal(on_xarray.values, scl_masks(scl))
    np.testing.assert_array_equal(on_dask.compute(), scl_masks(scl))


def test_other_onehot_classes_follow_the_spec() -> None:
    spec = FeatureSpec(onehot_classes=(4, 8, 9, 10))
    assert spec.mask_labels == ("valid", "vegetation", "cloud_medium", "cloud_high",
                                "thin_cirrus")
    scl = np.array([[4, 8, 9, 10, 0]], dtype=np.uint8)
    masks = scl_masks(scl, spec=spec)
    assert masks.shape == (5, 1, 5)
    np.testing.assert_array_equal(masks[0, 0], [1, 0, 0, 0, 0])  # only 4 is valid
    np.testing.assert_array_equal(masks[1:, 0], np.eye(5)[:4])


@pytest.mark.parametrize(("date", "doy"), [
    (dt.date(2023, 1, 1), 1),
    (dt.date(2023, 7, 2), 183),
    ("2024-12-31", 366),
    (np.datetime64("2024-06-15T10:30"), 167),
    (dt.datetime(2024, 3, 1, 23, 59), 61),
])
def test_season_is_sin_cos_of_the_day_of_year(date: object, doy: int) -> None:
    angle = 2 * math.pi * doy / 365.25
    got = season(date)  # type: ignore[arg-type]
    assert got.dtype == np.float32 and got.shape == (2,)
    np.testing.assert_allclose(got, [math.sin(angle), math.cos(angle)], atol=1e-6)


def test_season_near_new_year_and_midsummer() -> None:
    jan1, jul2 = season(dt.date(2023, 1, 1)), season(dt.date(2023, 7, 2))
    assert jan1[1] > 0.999 and 0 < jan1[0] < 0.02
    assert jul2[1] < -0.999 and abs(jul2[0]) < 0.01


def test_season_refuses_a_non_date() -> None:
    with pytest.raises(InputError, match="not a date"):
        season("mid June")


def test_season_in_the_dataset(features: xr.Dataset) -> None:
    np.testing.assert_array_equal(features["season"].values, season(DATE))


def test_target_mask_and_observed_lai(raw: dict[str, np.ndarray], features: xr.Dataset,
                                      tensors: dict[str, np.ndarray]) -> None:
    lai = _snap(raw["s2_now"], 0)
    valid = np.isin(raw["scl_now"][0], [2, 4, 5, 6]) & np.isfinite(lai)
    assert 20 < valid.sum() < H * W and not valid[-1].any(), "NaN reflectance is not valid"
    shadow = raw["scl_now"][0] == 3
    assert shadow.any() and not tensors["target_mask"][shadow].any(), "a cloud shadow is no label"
    np.testing.assert_array_equal(tensors["target_mask"], valid.astype(np.float32))
    np.testing.assert_allclose(tensors["target"][valid], np.clip(lai[valid], 0, 8) / 5,
                               atol=1e-6)
    assert np.all(tensors["target"][~valid] == 0.0)
    observed = features["observed_lai"].values
    np.testing.assert_allclose(observed[valid], np.clip(lai[valid], 0, 8), atol=1e-5)
    assert np.all(np.isnan(observed[~valid]))


def test_target_and_observed_on_numpy() -> None:
    lai = np.array([-0.5, 3.0, 12.0, np.nan, 2.0])
    scl = np.array([5, 4, 4, 4, 9], dtype=np.uint8)
    goal, mask = target(lai, scl)
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0])
    np.testing.assert_allclose(goal, [0.0, 0.6, 1.6, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(observed_lai(lai, scl), [0.0, 3.0, 8.0, np.nan, np.nan])


def test_model_inputs_never_hold_nan(tensors: dict[str, np.ndarray]) -> None:
    # the fixture has NaN in S2 (t-1 and D) and S1 (D) and clouds everywhere
    for name, array in tensors.items():
        assert np.isfinite(array).all(), name


def test_numpy_and_xarray_paths_agree(raw: dict[str, np.ndarray],
                                      tensors: dict[str, np.ndarray]) -> None:
    lai = np.stack([_snap(raw["s2"], step) for step in range(2)])
    np.testing.assert_allclose(lai_channels(lai, raw["scl"]), tensors["lai"], atol=1e-6)
    np.testing.assert_array_equal(scl_masks(raw["scl"], lai), tensors["masks"])
    np.testing.assert_allclose(normalise_s1(raw["s1"]).reshape(6, H, W), tensors["s1"])
    assert valid_pixels(raw["scl"], lai).sum() == tensors["masks"][:, 0].sum()


def test_s2_lai_matches_snap_lai(raw: dict[str, np.ndarray]) -> None:
    lai = s2_lai(_arrays(raw)["s2"])
    assert lai.dims == ("time", "y", "x") and lai.dtype == np.float32
    np.testing.assert_allclose(lai.values[0], _snap(raw["s2"], 0), atol=1e-5)


def test_band_order_is_taken_from_labels(raw: dict[str, np.ndarray]) -> None:
    arrays = _arrays(raw)
    shuffled = {**arrays, "s2": arrays["s2"].isel(band=[7, 6, 5, 4, 3, 2, 1, 0]),
                "s1": arrays["s1"].isel(band=[1, 0])}
    reference = to_tensors(features_from_arrays(arrays["s2"], arrays["scl"], arrays["s1"], DATE))
    reordered = to_tensors(features_from_arrays(shuffled["s2"], shuffled["scl"], shuffled["s1"],
                                                DATE))
    for name, array in reference.items():
        np.testing.assert_array_equal(reordered[name], array)


def test_to_tensors_keeps_a_batch_dimension(features: xr.Dataset,
                                            tensors: dict[str, np.ndarray]) -> None:
    batch = xr.concat([features, features], dim="sample")
    arrays = to_tensors(batch)
    assert arrays["masks"].shape == (2, 2, 6, H, W) and arrays["season"].shape == (2, 2)
    np.testing.assert_array_equal(arrays["s1"][1], tensors["s1"])


def test_to_tensors_refuses_incomplete_or_nan_features(features: xr.Dataset) -> None:
    with pytest.raises(InputError, match=r"lack \['season'\]"):
        to_tensors(features.drop_vars("season"))
    with pytest.raises(InputError, match="NaN"):
        to_tensors(features.assign(lai=features["lai"].where(features["lai"] > 0.1)))


# ----------------------------------------------------------------------------- bad inputs


def test_wrong_inputs_are_clear_errors(raw: dict[str, np.ndarray]) -> None:
    a = _arrays(raw, now=False)
    with pytest.raises(InputError, match="s1 must have sizes"):
        features_from_arrays(a["s2"], a["scl"], a["s1"].isel(time=[0, 1]), DATE)
    with pytest.raises(InputError, match="scl must have dims"):
        features_from_arrays(a["s2"], a["scl"].isel(time=0), a["s1"], DATE)
    with pytest.raises(InputError, match="coordinates.*view_zenith"):
        features_from_arrays(a["s2"].drop_vars("view_zenith"), a["scl"], a["s1"], DATE)
    with pytest.raises(InputError, match="lacks bands"):
        features_from_arrays(a["s2"].assign_coords(band=[f"B{i}" for i in range(8)]),
                             a["scl"], a["s1"], DATE)
    with pytest.raises(InputError, match="both s2_now and scl_now"):
        features_from_arrays(a["s2"], a["scl"], a["s1"], DATE, s2_now=a["s2"].isel(time=[0]))
    shifted = a["s1"].assign_coords(x=a["s1"].x + 10.0)
    with pytest.raises(InputError, match="different pixels"):
        features_from_arrays(a["s2"], a["scl"], shifted, DATE)


# ----------------------------------------------------------------------------- the spec


def test_spec_round_trips_through_json() -> None:
    spec = FeatureSpec(lai_scale=4.0, onehot_classes=[4, 9], lai_clip=[0, 7],  # type: ignore[arg-type]
                       mask_invalid_lai=False)
    assert spec.onehot_classes == (4, 9) and spec.lai_clip == (0.0, 7.0)
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec)
    assert FeatureSpec.from_dict(DEFAULT_SPEC.to_dict()) == FeatureSpec()
    assert DEFAULT_SPEC.to_dict()["valid_classes"] == [2, 3, 4, 5, 6]


def test_spec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_SPEC.lai_scale = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(("change", "message"), [
    ({"version": 2}, "version 2 is not supported"),
    ({"version": True}, "version True is not supported"),
    ({"colour": "red"}, r"unknown \['colour'\]"),
    ({"lai_scale": 0}, "lai_scale must be > 0"),
    ({"db_offset": float("nan")}, "db_offset must be finite"),
    ({"s1_fill": "zero"}, "s1_fill must be a number"),
    ({"valid_classes": [2, 12]}, "SCL classes from 0 to 11"),
    ({"onehot_classes": []}, "SCL classes from 0 to 11"),
    ({"onehot_classes": [4, 4]}, "distinct"),
    ({"lai_clip": [8, 0]}, "low < high"),
    ({"lai_clip": [0]}, r"\(low, high\)"),
    ({"mask_invalid_lai": 1}, "true or false"),
])
def test_spec_refuses_bad_dicts(change: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        FeatureSpec.from_dict({**DEFAULT_SPEC.to_dict(), **change})


def test_specs_without_target_classes_keep_their_loss_mask() -> None:
    old = {k: v for k, v in DEFAULT_SPEC.to_dict().items() if k != "target_classes"}
    spec = FeatureSpec.from_dict(old)
    assert spec.target_classes == spec.valid_classes == (2, 3, 4, 5, 6)
    scl = np.array([[3, 4, 8]])
    _, mask = target(np.ones((1, 3)), scl, spec=spec)
    np.testing.assert_array_equal(mask, [[1, 1, 0]])
    _, mask = target(np.ones((1, 3)), scl, spec=DEFAULT_SPEC)
    np.testing.assert_array_equal(mask, [[0, 1, 0]])


def test_spec_refuses_missing_keys_and_non_mappings() -> None:
    data = DEFAULT_SPEC.to_dict()
    del data["lai_fill"]
    with pytest.raises(InputError, match=r"missing \['lai_fill'\]"):
        FeatureSpec.from_dict(data)
    with pytest.raises(InputError, match="mapping"):
        FeatureSpec.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="version None"):
        FeatureSpec.from_dict({"lai_scale": 5.0})


def test_spec_parameters_change_the_features(raw: dict[str, np.ndarray]) -> None:
    a = _arrays(raw, now=False)
    spec = FeatureSpec(db_scale=20.0, db_offset=0.5, s1_fill=-1.0, lai_scale=10.0)
    ds = features_from_arrays(a["s2"], a["scl"], a["s1"], DATE, spec=spec)
    expected = np.nan_to_num(raw["s1"] / 20.0 + 0.5, nan=-1.0).reshape(6, H, W)
    np.testing.assert_allclose(ds["s1"].values, expected, rtol=1e-6)
    assert FeatureSpec.from_dict(json.loads(ds.attrs[SPEC_ATTR])) == spec
    assert set(MODEL_INPUTS) <= set(ds.data_vars)


def test_numpy_backed_cubes_give_the_same_features(raw: dict[str, np.ndarray],
                                                   tensors: dict[str, np.ndarray]) -> None:
    eager = {k: v.compute() for k, v in _arrays(raw).items()}
    ds = features_from_arrays(eager["s2"], eager["scl"], eager["s1"], DATE,
                              eager["s2_now"], eager["scl_now"])
    assert not any(isinstance(ds[v].data, da.Array) for v in ds.data_vars)
    for name, array in to_tensors(ds).items():
        np.testing.assert_array_equal(array, tensors[name])
