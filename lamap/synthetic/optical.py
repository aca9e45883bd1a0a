"""Sentinel-2 L2A surface reflectance of the synthetic world.

Canopies are simulated with PROSAIL (PROSPECT-D leaf optics and 4SAIL canopy
radiative transfer, PyPI ``prosail``) through a lookup table (LUT), so that millions of
pixels cost seconds:

1. PROSPECT gives leaf reflectance and transmittance on a grid of leaf chlorophyll
   ``cab`` and dry matter ``cm`` (leaf water tied to dry matter by a fixed water
   fraction of the fresh leaf, carotenoids tied to chlorophyll).
2. 4SAIL is run on a grid of LAI, sun zenith, view zenith and relative azimuth. It is
   run once per grid node without soil; the soil-independent canopy terms are averaged
   over each band's spectral response (a boxcar of the band's documented width,
   weighted by the direct solar irradiance shipped with ``prosail``).
3. The soil is coupled analytically, per pixel, with the 4SAIL soil-interaction
   equations applied to band-averaged terms:
   ``R = rso + tsstoo·ρs + ρs·(c + e·ρs) / (1 − rdd·ρs)``, with
   ``c = (tss + tsd)·tdo + tsd·too`` and ``e = tss·too·rdd``; ``ρs`` is PROSAIL's soil
   model ``rsoil·(psoil·dry + (1 − psoil)·wet)``. Soil brightness and wetness are
   therefore exact, not interpolated.

Evaluation is multilinear over the table axes; axes whose argument is one value for
all pixels (typically the angles of a scene) are interpolated once up front.

The table is cached in memory and on disk (``$LAMAP_CACHE_DIR``, else
``$XDG_CACHE_HOME/lamap``, else ``~/.cache/lamap``), keyed by a hash of its definition.

Clouds, cirrus and cloud shadows, water and built-up surfaces are simple empirical
spectra (:func:`cloudy_reflectance`, :func:`water_reflectance`,
:func:`builtup_reflectance`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Literal

import numpy as np
import prosail
from numpy.typing import ArrayLike

from lamap.errors import InputError, LamapWarning
from lamap.runtime import write_atomic

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

#: The synthetic world's Sentinel-2 bands, in the order of the reflectance's last axis.
S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: Central wavelengths of Sentinel-2A MSI (nm), in :data:`S2_BANDS` order.
S2_CENTRE_NM: tuple[float, ...] = (492, 560, 665, 704, 740, 783, 833, 865, 1614, 2202)
#: Bandwidths of Sentinel-2A MSI (nm), in :data:`S2_BANDS` order.
S2_BANDWIDTH_NM: tuple[float, ...] = (66, 36, 31, 15, 15, 20, 106, 21, 91, 175)

_N_BANDS = len(S2_BANDS)
_FIRST_NM = 400  # PROSAIL spectra: 400..2500 nm at 1 nm
_N_SPECTRUM = 2101
_LUT_FORMAT = 1  # bump when the meaning of the stored terms changes
# Layout of the last LUT axis: rso, c, e, rdd per band, then tsstoo.
_N_TERMS = 4 * _N_BANDS + 1


def _increasing(values: tuple[float, ...], name: str, low: float, high: float) -> None:
    if len(values) < 2 or any(b <= a for a, b in itertools.pairwise(values)):
        raise InputError(
            f"CanopyLutSpec.{name} must hold at least two strictly increasing values, "
            f"got {values}; list the grid nodes in increasing order."
        )
    if values[0] < low or values[-1] > high:
        raise InputError(
            f"CanopyLutSpec.{name} must lie within [{low}, {high}], got {values[0]}.."
            f"{values[-1]}; choose nodes inside that range."
        )


@dataclass(frozen=True)
class CanopyLutSpec:
    """Definition of the PROSAIL lookup table: its grid and its fixed parameters.

    Attributes
    ----------
    lai : tuple of float
        LAI nodes (m²/m²), denser where reflectance changes fastest (low LAI).
    cab : tuple of float
        Leaf chlorophyll a+b nodes (µg/cm²).
    cm : tuple of float
        Leaf dry matter nodes (g/cm²).
    sun_zenith, view_zenith : tuple of float
        Zenith angle nodes (degrees).
    relative_azimuth : tuple of float
        Relative azimuth nodes (degrees, folded into [0, 180]; 0 is the backscatter side).
    n : float
        PROSPECT leaf structure parameter.
    car_per_cab : float
        Carotenoids as a fraction of chlorophyll (Car = ``car_per_cab`` · Cab).
    cbrown : float
        Brown pigments (green leaves: 0).
    water_fraction : float
        Water fraction of the fresh leaf mass: Cw = Cm · f / (1 − f).
    leaf_angle : float
        Mean leaf inclination (degrees) of the ellipsoidal distribution.
    hotspot : float
        Hotspot size parameter.
    prospect_version : {"D", "5"}
        PROSPECT version.
    """

    lai: tuple[float, ...] = (
        0.0, 0.1, 0.25, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0,
        6.0, 7.0, 8.0,
    )  # fmt: skip
    cab: tuple[float, ...] = (5.0, 10.0, 16.0, 23.0, 32.0, 43.0, 56.0, 72.0, 90.0)
    cm: tuple[float, ...] = (0.002, 0.004, 0.006, 0.0085, 0.0115, 0.015)
    sun_zenith: tuple[float, ...] = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)
    view_zenith: tuple[float, ...] = (0.0, 7.0, 14.0)
    relative_azimuth: tuple[float, ...] = (0.0, 90.0, 180.0)
    n: float = 1.5
    car_per_cab: float = 0.25
    cbrown: float = 0.0
    water_fraction: float = 0.75
    leaf_angle: float = 57.0
    hotspot: float = 0.2
    prospect_version: Literal["D", "5"] = "D"

    def __post_init__(self) -> None:
        """Check that every axis is a valid grid."""
        _increasing(self.lai, "lai", 0.0, 15.0)
        _increasing(self.cab, "cab", 0.0, 150.0)
        _increasing(self.cm, "cm", 1e-5, 0.1)
        _increasing(self.sun_zenith, "sun_zenith", 0.0, 89.0)
        _increasing(self.view_zenith, "view_zenith", 0.0, 60.0)
        _increasing(self.relative_azimuth, "relative_azimuth", 0.0, 180.0)
        if not 0.0 < self.water_fraction < 1.0:
            raise InputError(
                f"CanopyLutSpec.water_fraction must be in (0, 1), got {self.water_fraction}."
            )

    @property
    def axes(self) -> tuple[tuple[float, ...], ...]:
        """Grid nodes of the table axes, in table order."""
        return (
            self.lai,
            self.cab,
            self.cm,
            self.sun_zenith,
            self.view_zenith,
            self.relative_azimuth,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the table: one axis per grid, then the canopy terms."""
        return (*(len(axis) for axis in self.axes), _N_TERMS)

    @property
    def key(self) -> str:
        """Hash of everything the table depends on (used as the disk-cache key)."""
        definition = {
            "spec": asdict(self),
            "bands": [S2_BANDS, S2_CENTRE_NM, S2_BANDWIDTH_NM],
            "prosail": prosail.__version__,
            "format": _LUT_FORMAT,
        }
        text = json.dumps(definition, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class CanopyLut:
    """A PROSAIL lookup table of band-averaged, soil-independent canopy terms.

    Attributes
    ----------
    spec : CanopyLutSpec
        The grid and fixed parameters.
    terms : numpy.ndarray
        Float32 array of shape ``spec.shape``: per node, ``rso``, ``c``, ``e``, ``rdd``
        for each band, then ``tsstoo`` (see the module docstring).
    soil_dry, soil_wet : numpy.ndarray
        Band-averaged dry and wet soil spectra, shape (10,).
    """

    spec: CanopyLutSpec
    terms: np.ndarray
    soil_dry: np.ndarray = field(repr=False)
    soil_wet: np.ndarray = field(repr=False)


def band_weights() -> tuple[np.ndarray, np.ndarray]:
    """Spectral response of the Sentinel-2 bands on PROSAIL's 1-nm grid.

    Each band is a boxcar of its documented width around its centre wavelength, weighted
    by the direct solar irradiance, so band averages are irradiance-weighted reflectances.

    Returns
    -------
    wavelengths : numpy.ndarray
        The wavelengths (nm) where at least one band responds, shape (W,).
    weights : numpy.ndarray
        Shape (W, 10); each column sums to 1.
    """
    grid = np.arange(_FIRST_NM, _FIRST_NM + _N_SPECTRUM, dtype=np.float64)
    centre = np.asarray(S2_CENTRE_NM, dtype=np.float64)
    half = 0.5 * np.asarray(S2_BANDWIDTH_NM, dtype=np.float64)
    upper = np.minimum(grid[:, None] + 0.5, centre + half)
    lower = np.maximum(grid[:, None] - 0.5, centre - half)
    overlap = np.clip(upper - lower, 0.0, 1.0)
    weights = overlap * prosail.spectral_lib.light.es[:, None]
    used = weights.sum(axis=1) > 0
    weights = weights[used]
    return grid[used], weights / weights.sum(axis=0)


def _leaf_optics(spec: CanopyLutSpec, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PROSPECT reflectance and transmittance, shape (n_cab, n_cm, W)."""
    shape = (len(spec.cab), len(spec.cm), index.size)
    rho, tau = np.empty(shape), np.empty(shape)
    water_per_dry = spec.water_fraction / (1.0 - spec.water_fraction)
    for (i, cab), (j, cm) in itertools.product(enumerate(spec.cab), enumerate(spec.cm)):
        _, refl, trans = prosail.run_prospect(
            spec.n,
            cab,
            spec.car_per_cab * cab,
            spec.cbrown,
            cm * water_per_dry,
            cm,
            prospect_version=spec.prospect_version,
        )
        rho[i, j], tau[i, j] = refl[index], trans[index]
    return rho, tau


def _sail_terms(
    rho: np.ndarray,
    tau: np.ndarray,
    weights: np.ndarray,
    spec: CanopyLutSpec,
    geometry: tuple[float, float, float, float],
) -> np.ndarray:
    """Band-averaged soil-independent 4SAIL terms for all leaves, shape (..., 41)."""
    lai, tts, tto, psi = geometry
    flat_rho, flat_tau = rho.reshape(-1), tau.reshape(-1)
    out = prosail.run_sail(
        flat_rho,
        flat_tau,
        lai,
        spec.leaf_angle,
        spec.hotspot,
        tts,
        tto,
        psi,
        typelidf=2,
        rsoil0=np.zeros_like(flat_rho),
        factor="ALLALL",
    )
    tss, too, tsstoo, rdd, _, _, tsd, _, tdo, rso = out[:10]
    c = (tss + tsd) * tdo + tsd * too
    e = tss * too * rdd
    spectral = [
        np.broadcast_to(term, flat_rho.shape).reshape(rho.shape) for term in (rso, c, e, rdd)
    ]
    banded = [term @ weights for term in spectral]
    hot = np.broadcast_to(np.float64(tsstoo), (*rho.shape[:-1], 1))
    return np.concatenate([*banded, hot], axis=-1)


def _build_terms(spec: CanopyLutSpec) -> np.ndarray:
    """Run PROSAIL on every node of the table (the slow part, a few seconds)."""
    wavelengths, weights = band_weights()
    rho, tau = _leaf_optics(spec, (wavelengths - _FIRST_NM).astype(np.intp))
    terms = np.empty(spec.shape, dtype=np.float32)
    sizes = [range(len(axis)) for axis in (spec.lai, *spec.axes[3:])]
    for i, k, m, n in itertools.product(*sizes):
        geometry = (spec.lai[i], spec.sun_zenith[k], spec.view_zenith[m], spec.relative_azimuth[n])
        terms[i, :, :, k, m, n] = _sail_terms(rho, tau, weights, spec, geometry)
    return terms


def _band_soils() -> tuple[np.ndarray, np.ndarray]:
    """Band-averaged dry and wet soil spectra of PROSAIL, shape (10,) each."""
    wavelengths, weights = band_weights()
    index = (wavelengths - _FIRST_NM).astype(np.intp)
    soil = prosail.spectral_lib.soil
    return soil.rsoil1[index] @ weights, soil.rsoil2[index] @ weights


def _cache_dir() -> Path:
    if "LAMAP_CACHE_DIR" in os.environ:
        return Path(os.environ["LAMAP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lamap"


def _load_terms(path: Path, spec: CanopyLutSpec) -> np.ndarray | None:
    """Read a cached table, or None when it is missing or unusable."""
    if not path.exists():
        return None
    try:
        with np.load(path) as stored:
            terms = np.asarray(stored["terms"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(
            f"Ignoring unreadable PROSAIL table cache {path}: {err}", LamapWarning, stacklevel=3
        )
        return None
    return terms if terms.shape == spec.shape else None


def _save_terms(path: Path, terms: np.ndarray) -> None:
    """Write the table atomically: to a temporary file in the same folder, then rename."""
    try:
        write_atomic(path, lambda stream: np.savez(stream, terms=terms), make_dirs=True)
    except OSError as err:
        warnings.warn(
            f"Could not cache the PROSAIL table in {path.parent} ({err}); it will be rebuilt "
            "next time. Set LAMAP_CACHE_DIR to a writable folder to keep it.",
            LamapWarning,
            stacklevel=3,
        )


@cache
def canopy_lut(spec: CanopyLutSpec | None = None, *, disk_cache: bool = True) -> CanopyLut:
    """Return the PROSAIL lookup table, built once and cached in memory and on disk.

    Parameters
    ----------
    spec : CanopyLutSpec, optional
        Grid and fixed parameters; the default spec when omitted.
    disk_cache : bool
        Read and write the table under the cache folder (see the module docstring).

    Returns
    -------
    CanopyLut
        The table; building it takes a few seconds, loading it a few milliseconds.
    """
    spec = CanopyLutSpec() if spec is None else spec
    path = _cache_dir() / f"prosail-s2-lut-{spec.key}.npz"
    terms = _load_terms(path, spec) if disk_cache else None
    if terms is None:
        terms = _build_terms(spec)
        if disk_cache:
            _save_terms(path, terms)
    soil_dry, soil_wet = _band_soils()
    return CanopyLut(spec, terms, soil_dry.astype(np.float32), soil_wet.astype(np.float32))


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
