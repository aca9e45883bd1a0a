"""Sentinel-2 L2A surface reflectance of the synthetic world.

Canopies are simulated with PROSAIL through a lookup table (LUT) of band-averaged,
soil-independent canopy terms, built and cached by :mod:`lamap.synthetic.prosail_lut`
(whose names can be imported from here too). :func:`canopy_reflectance` evaluates it per
pixel and couples the soil analytically, so soil brightness and wetness are exact, not
interpolated. Evaluation is multilinear over the table axes; axes whose argument is one
value for all pixels (typically the angles of a scene) are interpolated once up front.

Clouds, cirrus and cloud shadows, water and built-up surfaces are simple empirical
spectra (:func:`cloudy_reflectance`, :func:`water_reflectance`,
:func:`builtup_reflectance`).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from lamap.errors import InputError
from lamap.synthetic.prosail_lut import (
    S2_BANDS,
    S2_BANDWIDTH_NM,
    S2_CENTRE_NM,
    CanopyLut,
    CanopyLutSpec,
    band_weights,
    canopy_lut,
)

__all__ = [
    "S2_BANDS",
    "S2_BANDWIDTH_NM",
    "S2_CENTRE_NM",
    "CanopyLut",
    "CanopyLutSpec",
    "band_weights",
    "builtup_reflectance",
    "canopy_lut",
    "canopy_reflectance",
    "cloudy_reflectance",
    "psoil_from_moisture",
    "water_reflectance",
]

_N_BANDS = len(S2_BANDS)


def _fold_azimuth(relative_azimuth: np.ndarray) -> np.ndarray:
    """Fold any relative azimuth (degrees) into [0, 180]."""
    return np.abs((relative_azimuth + 180.0) % 360.0 - 180.0)


def _fractional_index(
    values: np.ndarray, nodes: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Lower node index and weight of the upper node; values are clamped to the grid."""
    position = np.interp(values, nodes, np.arange(len(nodes), dtype=np.float64))
    position[np.isnan(position)] = 0.0  # NaN pixels are set to NaN after interpolation
    lower = np.minimum(position.astype(np.intp), len(nodes) - 2)
    return lower, (position - lower).astype(np.float32)


def _collapse_axis(
    table: np.ndarray, axis: int, nodes: tuple[float, ...], value: float
) -> np.ndarray:
    """Interpolate ``table`` along ``axis`` at one value, dropping that axis."""
    lower, upper_weight = _fractional_index(np.asarray([value]), nodes)
    low = np.take(table, lower[0], axis=axis)
    high = np.take(table, lower[0] + 1, axis=axis)
    return low + upper_weight[0] * (high - low)


def _multilinear(
    table: np.ndarray, coords: list[tuple[np.ndarray, np.ndarray]], points: int
) -> np.ndarray:
    """Interpolate the leading axes of ``table`` at ``points`` scattered points, (P, terms)."""
    flat = table.reshape(-1, table.shape[-1])
    strides = [int(np.prod(table.shape[axis + 1 : len(coords)])) for axis in range(len(coords))]
    base = np.zeros(points, dtype=np.intp)
    for (lower, _), stride in zip(coords, strides, strict=True):
        base += lower * stride
    result = np.zeros((points, table.shape[-1]), dtype=np.float32)
    row = np.empty_like(result)
    for corner in itertools.product((0, 1), repeat=len(coords)):
        weight = np.ones(points, dtype=np.float32)
        for bit, (_, upper_weight) in zip(corner, coords, strict=True):
            weight *= upper_weight if bit else 1.0 - upper_weight
        offset = sum(bit * stride for bit, stride in zip(corner, strides, strict=True))
        np.take(flat, base + offset, axis=0, out=row, mode="clip")
        row *= weight[:, None]
        result += row
    return result


def _couple_soil(terms: np.ndarray, soil: np.ndarray) -> np.ndarray:
    """Top-of-canopy reflectance from canopy terms (P, 41) and soil reflectance (P, 10)."""
    rso, c, e, rdd = (terms[:, k * _N_BANDS : (k + 1) * _N_BANDS] for k in range(4))
    tsstoo = terms[:, -1:]
    return rso + tsstoo * soil + soil * (c + e * soil) / (1.0 - rdd * soil)


def _check_canopy_inputs(values: dict[str, np.ndarray]) -> None:
    limits = {"lai": (0.0, np.inf), "cab": (0.0, np.inf), "cm": (1e-6, np.inf),
              "rsoil": (0.0, np.inf), "psoil": (0.0, 1.0), "sun_zenith": (0.0, 90.0),
              "view_zenith": (0.0, 90.0)}  # fmt: skip
    for name, (low, high) in limits.items():
        value = values[name]
        if value.size and (np.nanmin(value) < low or np.nanmax(value) > high):
            raise InputError(
                f"canopy_reflectance: {name} must lie in [{low}, {high}], found "
                f"{np.nanmin(value):.4g}..{np.nanmax(value):.4g}; clip or fix the inputs."
            )


def canopy_reflectance(
    lai: ArrayLike,
    cab: ArrayLike,
    cm: ArrayLike,
    rsoil: ArrayLike,
    psoil: ArrayLike,
    sun_zenith: ArrayLike,
    view_zenith: ArrayLike,
    relative_azimuth: ArrayLike,
    *,
    lut: CanopyLut | None = None,
    chunk_size: int = 8192,
    threads: int | None = None,
) -> np.ndarray:
    """Sentinel-2 L2A reflectance of a canopy over soil, from the PROSAIL lookup table.

    Parameters
    ----------
    lai : array-like
        Leaf area index (m²/m²); values above the table's last node (8) are clamped.
    cab : array-like
        Leaf chlorophyll a+b (µg/cm²); clamped to the table (5..90).
    cm : array-like
        Leaf dry matter (g/cm²); clamped to the table (0.002..0.015).
    rsoil : array-like
        Soil brightness factor (PROSAIL ``rsoil``, about 0.5..1.5).
    psoil : array-like
        PROSAIL soil mixing weight in [0, 1]: 1 is the dry soil spectrum, 0 the wet one
        (see :func:`psoil_from_moisture`).
    sun_zenith, view_zenith : array-like
        Zenith angles in degrees; clamped to the table (sun 0..80, view 0..14).
    relative_azimuth : array-like
        Sun azimuth minus view azimuth, degrees (any range; 0 is the backscatter side).
    lut : CanopyLut, optional
        Lookup table; :func:`canopy_lut` when omitted.
    chunk_size : int
        Pixels interpolated at a time (bounds the temporary memory).
    threads : int, optional
        Threads interpolating chunks in parallel; all cores when omitted. Pass 1 inside
        tasks that already run in parallel (e.g. on a multi-threaded Dask worker).

    Returns
    -------
    numpy.ndarray
        Float32 reflectance of shape ``S + (10,)`` for :data:`S2_BANDS`, where ``S`` is
        the broadcast shape of the arguments; NaN where any argument is NaN.

    Raises
    ------
    InputError
        If an argument is out of its physical range (negative LAI, ``psoil`` outside
        [0, 1], zenith angles outside [0, 90], ...).
    """
    lut = canopy_lut() if lut is None else lut
    raw = (lai, cab, cm, sun_zenith, view_zenith, relative_azimuth, rsoil, psoil)
    values = {
        name: np.asarray(value, dtype=np.float64) for name, value in zip(_ARGS, raw, strict=True)
    }
    _check_canopy_inputs(values)
    values["relative_azimuth"] = _fold_azimuth(values["relative_azimuth"])
    shape = np.broadcast_shapes(*(value.shape for value in values.values()))
    table, varying = _collapse_constant_axes(lut, [values[name] for name in _ARGS[:6]])
    flat = {name: _flatten(value, shape) for name, value in values.items()}
    out = np.empty((int(np.prod(shape)), _N_BANDS), dtype=np.float32)
    chunks = [slice(start, start + chunk_size) for start in range(0, out.shape[0], chunk_size)]
    evaluate = partial(_evaluate_chunk, lut, table, varying, flat, out)
    workers = min(os.cpu_count() or 1, len(chunks)) if threads is None else threads
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(evaluate, chunks))
    else:
        for part in chunks:
            evaluate(part)
    _mark_missing(out, flat)
    return out.reshape(*shape, _N_BANDS)


def _flatten(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One value per pixel, flattened; a single value stays a 1-element array."""
    if value.size == 1:
        return value.reshape(1)
    return np.broadcast_to(value, shape).reshape(-1)


def _chunk(value: np.ndarray, part: slice) -> np.ndarray:
    return value if value.size == 1 else value[part]


def _evaluate_chunk(
    lut: CanopyLut,
    table: np.ndarray,
    varying: list[int],
    flat: dict[str, np.ndarray],
    out: np.ndarray,
    part: slice,
) -> None:
    """Interpolate the canopy terms of one chunk of pixels and couple their soil."""
    points = len(out[part])
    coords = [
        _fractional_index(_chunk(flat[_ARGS[axis]], part), lut.spec.axes[axis]) for axis in varying
    ]
    terms = _multilinear(table, coords, points)
    dry = _chunk(flat["psoil"], part)[:, None]
    soil = _chunk(flat["rsoil"], part)[:, None] * (dry * lut.soil_dry + (1.0 - dry) * lut.soil_wet)
    out[part] = _couple_soil(terms, soil.astype(np.float32))


# Argument names: the six table axes first, then the soil.
_ARGS = ("lai", "cab", "cm", "sun_zenith", "view_zenith", "relative_azimuth", "rsoil", "psoil")


def _collapse_constant_axes(
    lut: CanopyLut, values: list[np.ndarray]
) -> tuple[np.ndarray, list[int]]:
    """Interpolate once along axes whose argument is one value; return the varying axes."""
    table = lut.terms
    varying: list[int] = []
    for axis in reversed(range(len(values))):
        value = values[axis]
        if value.size and np.nanmin(value) == np.nanmax(value):
            table = _collapse_axis(table, axis, lut.spec.axes[axis], float(np.nanmin(value)))
        else:
            varying.insert(0, axis)
    return table, varying


def _mark_missing(out: np.ndarray, flat: dict[str, np.ndarray]) -> None:
    missing = np.zeros(out.shape[0], dtype=bool)
    for value in flat.values():
        missing |= np.isnan(value)
    out[missing] = np.nan


def psoil_from_moisture(
    soil_moisture: ArrayLike, *, dry: float = 0.12, wet: float = 0.38
) -> np.ndarray:
    """PROSAIL ``psoil`` (1 dry, 0 wet) from volumetric soil moisture (m³/m³).

    Parameters
    ----------
    soil_moisture : array-like
        Volumetric soil moisture, e.g. from :func:`lamap.synthetic.radar.soil_moisture_series`.
    dry, wet : float
        Moisture mapped to ``psoil`` 1 and 0; values beyond are clipped.

    Returns
    -------
    numpy.ndarray
        ``psoil`` in [0, 1], so optical soil darkening follows the radar's soil moisture.

    Raises
    ------
    InputError
        If ``wet`` is not above ``dry``.
    """
    if not wet > dry:
        raise InputError(f"psoil_from_moisture needs wet > dry, got dry={dry}, wet={wet}.")
    moisture = np.asarray(soil_moisture, dtype=np.float64)
    return np.clip((wet - moisture) / (wet - dry), 0.0, 1.0)


# Empirical spectra (reflectance, S2_BANDS order) of the non-canopy surfaces.
_WATER = np.array([0.055, 0.060, 0.040, 0.030, 0.020, 0.015, 0.012, 0.010, 0.005, 0.003])
_BUILTUP = np.array([0.130, 0.150, 0.170, 0.185, 0.195, 0.205, 0.215, 0.220, 0.260, 0.230])
_CLOUD = np.array([0.720, 0.700, 0.680, 0.675, 0.670, 0.665, 0.660, 0.655, 0.520, 0.400])
_CIRRUS = np.array([0.090, 0.085, 0.080, 0.080, 0.078, 0.076, 0.075, 0.074, 0.030, 0.015])
_SHADOW = np.array([0.25, 0.27, 0.29, 0.31, 0.33, 0.35, 0.36, 0.36, 0.38, 0.40])


def water_reflectance(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Inland water reflectance: dark, varying turbidity in the visible, ~0.01 in NIR/SWIR.

    Parameters
    ----------
    shape : tuple of int
        Pixel shape ``S``.
    rng : numpy.random.Generator
        Source of the per-pixel turbidity and noise.

    Returns
    -------
    numpy.ndarray
        Float32 reflectance of shape ``S + (10,)``.
    """
    turbidity = rng.lognormal(0.0, 0.25, size=(*shape, 1))
    visible = np.linspace(1.0, 0.0, _N_BANDS) ** 2  # turbidity matters most in the blue-red
    spectrum = _WATER * (1.0 + (turbidity - 1.0) * visible)
    noise = rng.normal(0.0, 0.002, size=(*shape, _N_BANDS))
    return np.clip(spectrum + noise, 0.0005, 1.0).astype(np.float32)


def builtup_reflectance(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Built-up reflectance: bright, spectrally flat-ish (0.13..0.26), varying per pixel.

    Parameters
    ----------
    shape : tuple of int
        Pixel shape ``S``.
    rng : numpy.random.Generator
        Source of the per-pixel brightness and noise.

    Returns
    -------
    numpy.ndarray
        Float32 reflectance of shape ``S + (10,)``.
    """
    brightness = rng.lognormal(0.0, 0.15, size=(*shape, 1))
    noise = rng.normal(0.0, 0.006, size=(*shape, _N_BANDS))
    return np.clip(_BUILTUP * brightness + noise, 0.01, 1.0).astype(np.float32)


def cloudy_reflectance(
    clear: ArrayLike,
    opacity: ArrayLike,
    cirrus: ArrayLike,
    shadow: ArrayLike,
) -> np.ndarray:
    """Add clouds, thin cirrus and cloud shadows to clear-sky reflectance.

    The surface is first darkened where shadowed (more in the visible, whose light is
    mostly direct, than in the SWIR), then mixed linearly with a bright, flat cloud
    spectrum by ``opacity``, then a thin-cirrus layer adds mostly visible/NIR reflectance.

    Parameters
    ----------
    clear : array-like
        Clear-sky reflectance, shape ``S + (10,)``.
    opacity : array-like
        Cloud optical fraction in [0, 1] (0 clear, 1 opaque), broadcastable to ``S``.
    cirrus : array-like
        Cirrus thickness in [0, 1] (1 adds ~0.09 in the blue), broadcastable to ``S``.
    shadow : array-like
        Boolean cloud-shadow mask, broadcastable to ``S``.

    Returns
    -------
    numpy.ndarray
        Float32 reflectance of shape ``S + (10,)``, within [0, 1].

    Raises
    ------
    InputError
        If ``clear`` does not end with 10 bands or ``opacity``/``cirrus`` leave [0, 1].
    """
    surface = np.asarray(clear, dtype=np.float32)
    if surface.shape[-1:] != (_N_BANDS,):
        raise InputError(
            f"cloudy_reflectance needs clear reflectance with {_N_BANDS} bands {S2_BANDS} "
            f"on the last axis, got shape {surface.shape}."
        )
    weight = _unit_interval(opacity, "opacity")[..., None]
    thin = _unit_interval(cirrus, "cirrus")[..., None]
    dark = np.where(np.asarray(shadow, dtype=bool)[..., None], _SHADOW, 1.0)
    mixed = (1.0 - weight) * (surface * dark) + weight * _CLOUD + thin * _CIRRUS
    return np.clip(mixed, 0.0, 1.0).astype(np.float32)


def _unit_interval(value: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise InputError(
            f"cloudy_reflectance: {name} must lie in [0, 1], found "
            f"{array.min():.3g}..{array.max():.3g}."
        )
    return array
