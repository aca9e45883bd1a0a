"""Sharpening the 20-m bands with the 10-m bands (lamap.sharpen) and its place in the spec."""

from __future__ import annotations

from dataclasses import replace

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from lamap.errors import InputError
from lamap.feature_spec import DEFAULT_SPEC, FeatureSpec
from lamap.features import sharpened
from lamap.lai import SNAP_BANDS, s2_lai
from lamap.sharpen import GUIDE_BANDS, SHARPENED_BANDS, sharpen_20m

BANDS = (*SNAP_BANDS, "B08")
#: Reflectance of three covers in BANDS order (a crop, bare soil, a forest).
SPECTRA = np.array([
    [0.05, 0.03, 0.09, 0.28, 0.36, 0.40, 0.20, 0.10, 0.39],
    [0.09, 0.12, 0.15, 0.18, 0.20, 0.22, 0.30, 0.25, 0.21],
    [0.04, 0.03, 0.06, 0.17, 0.22, 0.25, 0.13, 0.06, 0.24],
], dtype=np.float32)


def _fields(size: int = 96, seed: int = 0) -> np.ndarray:
    """A 10-m class map of rectangular fields of three covers."""
    rng = np.random.default_rng(seed)
    classes = np.zeros((size, size), dtype=np.intp)
    for _ in range(30):
        r, c = rng.integers(0, size, 2)
        h, w = rng.integers(6, 30, 2)
        classes[r:r + h, c:c + w] = rng.integers(0, 3)
    return classes


def _observed(truth: np.ndarray) -> np.ndarray:
    """The loader's view of 10-m truth ``(band, y, x)``: 20-m bands as 2×2 means, spread back."""
    out = truth.copy()
    for b, name in enumerate(BANDS):
        if name in SHARPENED_BANDS:
            block = truth[b].reshape(truth.shape[1] // 2, 2, truth.shape[2] // 2, 2).mean((1, 3))
            out[b] = ndimage.zoom(block, 2, order=1, mode="nearest", grid_mode=True)
    return out


def _cube(values: np.ndarray, chunks: int | None = None) -> xr.DataArray:
    data = da.from_array(values, chunks=(-1, chunks, chunks)) if chunks else values
    return xr.DataArray(
        data, dims=("band", "y", "x"), coords={
            "band": list(BANDS), "view_zenith": 5.0, "sun_zenith": 35.0,
            "relative_azimuth": 90.0})


def _scene(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    truth = np.moveaxis(SPECTRA[_fields(size)], -1, 0)
    return truth, _observed(truth)


def test_sharpening_recovers_field_edges_that_interpolation_mixes() -> None:
    truth, seen = _scene()
    lai = lambda bands: s2_lai(_cube(bands)).values  # noqa: E731
    sharp = sharpen_20m(_cube(seen), 3).values
    blurred = np.sqrt(np.mean((lai(seen) - lai(truth)) ** 2))
    fixed = np.sqrt(np.mean((lai(sharp) - lai(truth)) ** 2))
    assert fixed < 0.5 * blurred, (fixed, blurred)
    for b, name in enumerate(BANDS):  # the 10-m bands are untouched
        if name not in SHARPENED_BANDS:
            np.testing.assert_array_equal(sharp[b], seen[b])


def test_a_uniform_field_keeps_its_spectrum() -> None:
    flat = np.broadcast_to(SPECTRA[0][:, None, None], (len(BANDS), 40, 40)).copy()
    np.testing.assert_allclose(sharpen_20m(_cube(flat), 3).values, flat, atol=1e-6)


def test_dask_blocks_give_the_one_block_result() -> None:
    _, seen = _scene(100)
    seen += np.random.default_rng(1).normal(0.0, 0.002, seen.shape).astype(np.float32)
    whole = sharpen_20m(_cube(seen), 3).values
    for chunks in (31, 50):
        blocks = sharpen_20m(_cube(seen, chunks), 3)
        assert isinstance(blocks.data, da.Array)
        np.testing.assert_allclose(blocks.values, whole, atol=2e-6)


def test_missing_pixels_stay_missing_and_do_not_spread() -> None:
    _, seen = _scene()
    holed = seen.copy()
    holed[:, :, :20] = np.nan  # a swath edge
    holed[4, 50, 50] = np.nan  # one band missing at one pixel
    sharp = sharpen_20m(_cube(holed), 3).values
    assert np.isnan(sharp[:, :, :20]).all()
    assert np.isnan(sharp[4, 50, 50])
    inside = np.isfinite(holed).all(axis=0)
    assert np.isfinite(sharp[:, inside]).all()


def test_sharpening_refuses_a_cube_without_its_bands() -> None:
    _, seen = _scene(16)
    snap_only = _cube(seen).sel(band=list(SNAP_BANDS))
    with pytest.raises(InputError, match="B08"):
        sharpen_20m(snap_only, 3)
    with pytest.raises(InputError, match="radius"):
        sharpen_20m(_cube(seen), 0)


def test_the_spec_records_the_radius_and_reads_b08_only_then() -> None:
    spec = replace(DEFAULT_SPEC, s2_sharpen=3)
    assert spec.s2_bands == (*SNAP_BANDS, "B08")
    assert DEFAULT_SPEC.s2_bands == SNAP_BANDS
    assert "s2_sharpen" not in DEFAULT_SPEC.to_dict()  # older checkpoints read as before
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert not DEFAULT_SPEC.provides(spec) and not spec.provides(DEFAULT_SPEC)
    with pytest.raises(InputError, match="s2_sharpen"):
        replace(DEFAULT_SPEC, s2_sharpen=-1)
    _, seen = _scene(16)
    cube = _cube(seen)
    assert sharpened(cube, DEFAULT_SPEC) is cube
    assert not np.array_equal(sharpened(cube, spec).values, seen)
    assert set(GUIDE_BANDS) <= set(spec.s2_bands)
