"""Sentinel-2 surface reflectance to Leaf Area Index with the SNAP biophysical network.

The network is the one of the SNAP Sentinel-2 Toolbox biophysical processor (Weiss &
Baret): eight L2A bands and three angles, normalised to [-1, 1], a hidden layer of
five ``tanh`` neurons and a linear output, denormalised to LAI in m²/m². Its
coefficients live in ``lamap/data/snap_lai_s2.json``.

The function is written with NumPy ufuncs and broadcasting only, so it works on
NumPy arrays, dask arrays and xarray objects alike, lazily for the latter two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, TypeVar, cast

import numpy as np
import xarray as xr

from lamap.errors import InputError

__all__ = ["SNAP_BANDS", "SnapNetwork", "s2_lai", "snap_lai", "snap_network"]

#: Angle coordinates of a reflectance cube, in the order :func:`snap_lai` takes them.
_ANGLES = ("view_zenith", "sun_zenith", "relative_azimuth")

#: Band order of the reflectance's last axis.
SNAP_BANDS: tuple[str, ...] = ("B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12")

ArrayT = TypeVar("ArrayT")


@dataclass(frozen=True)
class SnapNetwork:
    """Coefficients of the SNAP LAI network.

    Attributes
    ----------
    input_min, input_max : numpy.ndarray
        Normalisation bounds of the 8 bands, cos(view zenith) and cos(sun zenith).
    hidden_weights : numpy.ndarray
        Shape (5, 11): 8 bands, cos(view zenith), cos(sun zenith), cos(relative azimuth).
    hidden_bias : numpy.ndarray
        Shape (5,).
    output_weights : numpy.ndarray
        Shape (5,).
    output_bias, output_min, output_max : float
        Output layer bias and denormalisation bounds.
    """

    input_min: np.ndarray
    input_max: np.ndarray
    hidden_weights: np.ndarray
    hidden_bias: np.ndarray
    output_weights: np.ndarray
    output_bias: float
    output_min: float
    output_max: float

    @classmethod
    def from_dict(cls, coefficients: dict[str, Any]) -> SnapNetwork:
        """Build the network from the published JSON coefficients."""
        return cls(
            input_min=np.asarray(coefficients["input_min"], dtype=np.float64),
            input_max=np.asarray(coefficients["input_max"], dtype=np.float64),
            hidden_weights=np.asarray(coefficients["hidden_weights"], dtype=np.float64),
            hidden_bias=np.asarray(coefficients["hidden_bias"], dtype=np.float64),
            output_weights=np.asarray(coefficients["output_weights"], dtype=np.float64),
            output_bias=float(coefficients["output_bias"]),
            output_min=float(coefficients["output_min"]),
            output_max=float(coefficients["output_max"]),
        )


@cache
def snap_network() -> SnapNetwork:
    """Return the SNAP LAI network shipped with lamap (loaded once)."""
    text = files("lamap.data").joinpath("snap_lai_s2.json").read_text()
    return SnapNetwork.from_dict(json.loads(text))


def _normalise(value: Any, low: float, high: float) -> Any:
    return 2.0 * (value - low) / (high - low) - 1.0


def snap_lai(
    reflectance: ArrayT,
    view_zenith: Any,
    sun_zenith: Any,
    relative_azimuth: Any,
) -> ArrayT:
    """Compute LAI (m²/m²) from Sentinel-2 L2A reflectance with the SNAP network.

    Parameters
    ----------
    reflectance : array-like
        Surface reflectance in [0, 1]; the last axis holds B03, B04, B05, B06, B07, B8A,
        B11, B12 (see :data:`SNAP_BANDS`). NumPy, dask or xarray; for xarray the last
        dimension is taken as the band dimension.
    view_zenith, sun_zenith, relative_azimuth : array-like or float
        Angles in degrees, broadcastable against ``reflectance[..., 0]``.

    Returns
    -------
    array-like
        LAI with the shape of ``reflectance[..., 0]``, of the same array type, unclipped
        (the network saturates near 4 and can go slightly negative; clip in products).

    Raises
    ------
    InputError
        If the last axis of ``reflectance`` does not have 8 bands.
    """
    n_bands = reflectance.shape[-1]  # type: ignore[attr-defined]
    if n_bands != len(SNAP_BANDS):
        raise InputError(
            f"snap_lai needs {len(SNAP_BANDS)} bands {SNAP_BANDS} on the last axis, "
            f"got {n_bands}; select the bands in that order first."
        )
    net = snap_network()
    inputs = [_band(reflectance, i) for i in range(n_bands)]
    inputs.append(np.cos(np.deg2rad(view_zenith)))
    inputs.append(np.cos(np.deg2rad(sun_zenith)))
    normalised = [
        _normalise(value, net.input_min[i], net.input_max[i]) for i, value in enumerate(inputs)
    ]
    normalised.append(np.cos(np.deg2rad(relative_azimuth)))
    output: Any = net.output_bias
    for neuron in range(len(net.hidden_bias)):
        weights = net.hidden_weights[neuron]
        total: Any = net.hidden_bias[neuron]
        for weight, value in zip(weights, normalised, strict=True):
            total = total + weight * value
        output = output + net.output_weights[neuron] * np.tanh(total)
    return 0.5 * (output + 1.0) * (net.output_max - net.output_min) + net.output_min  # type: ignore[no-any-return]


def _band(reflectance: Any, index: int) -> Any:
    """Select one band of the last axis, for NumPy, dask and xarray alike."""
    if hasattr(reflectance, "isel") and hasattr(reflectance, "dims"):
        return reflectance.isel({reflectance.dims[-1]: index}, drop=True)
    return reflectance[..., index]


# --------------------------------------------------------------------------- cubes


def s2_lai(s2: xr.DataArray) -> xr.DataArray:
    """SNAP LAI (m²/m², unclipped, lazy) of a reflectance cube from :mod:`lamap.cube`.

    One task per block (the network runs on each NumPy block), not one per operation.

    Parameters
    ----------
    s2 : xarray.DataArray
        Reflectance with dimensions ``band``, ``y``, ``x`` (and optionally others, e.g.
        ``time``), the 8 SNAP bands, and ``view_zenith``, ``sun_zenith``,
        ``relative_azimuth`` coordinates in degrees (per time step or scalar).

    Returns
    -------
    xarray.DataArray
        float32 LAI without the ``band`` dimension, with only ``y``/``x`` coordinates.

    Raises
    ------
    InputError
        If a dimension, band or angle coordinate is missing.
    """
    missing = [name for name in _ANGLES if name not in s2.coords]
    if missing or "band" not in s2.dims:
        raise InputError(
            f"s2 needs a band dimension and coordinates {list(_ANGLES)} in degrees (as "
            f"lamap.cube.s2_cube sets them); got dims {s2.dims}, "
            f"coords {sorted(map(str, s2.coords))}"
        )
    angles = [_yx_only(s2[name]) for name in _ANGLES]
    bands = _yx_only(_snap_bands(s2))
    if bands.chunks is not None:  # the network needs all bands of a pixel in one block
        bands = bands.chunk({"band": -1})
    lai = xr.apply_ufunc(
        _snap_lai_f32, bands, *angles,
        input_core_dims=[["band"], [], [], []],
        dask="parallelized", output_dtypes=[np.float32],
    )
    return cast(xr.DataArray, lai)


def _snap_lai_f32(reflectance: np.ndarray, view: np.ndarray, sun: np.ndarray,
                  azimuth: np.ndarray) -> np.ndarray:
    """One block of :func:`s2_lai`: NumPy in (band last), float32 out.

    The network runs over pieces of :data:`_PIECE` pixels: the same operations in the same
    order (so the same bits) on arrays that stay in the CPU's cache, about 3× faster than
    over the whole block at once.
    """
    shape = reflectance.shape[:-1]
    flat = reflectance.reshape(-1, reflectance.shape[-1])
    angles = [np.broadcast_to(a, shape).reshape(-1) for a in (view, sun, azimuth)]
    out = np.empty(flat.shape[0], dtype=np.float32)
    for start in range(0, flat.shape[0], _PIECE):
        piece = slice(start, start + _PIECE)
        out[piece] = snap_lai(flat[piece], *(a[piece] for a in angles))
    return out.reshape(shape)


#: Pixels per piece of :func:`_snap_lai_f32` (a float64 temporary of 256 KiB).
_PIECE = 32_768


def _snap_bands(s2: xr.DataArray) -> xr.DataArray:
    if "band" not in s2.coords:
        if s2.sizes["band"] != len(SNAP_BANDS):
            raise InputError(f"s2 has {s2.sizes['band']} bands, SNAP needs {list(SNAP_BANDS)}")
        return s2
    absent = sorted(set(SNAP_BANDS) - {str(b) for b in s2.indexes["band"]})
    if absent:
        raise InputError(f"s2 lacks bands {absent}: build the cube with lamap.cube.SNAP_BANDS")
    return s2.sel(band=list(SNAP_BANDS))


def _yx_only(arr: xr.DataArray) -> xr.DataArray:
    """Drop every coordinate but ``y`` and ``x`` (inputs are matched by position in time)."""
    return arr.drop_vars([name for name in arr.coords if name not in ("y", "x")])
