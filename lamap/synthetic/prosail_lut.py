"""The PROSAIL lookup table behind the synthetic world's Sentinel-2 canopy reflectance.

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

:func:`lamap.synthetic.optical.canopy_reflectance` evaluates the table per pixel.

The table is cached in memory and on disk (``$LAMAP_CACHE_DIR``, else
``$XDG_CACHE_HOME/lamap``, else ``~/.cache/lamap``), keyed by a hash of its definition.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import prosail

from lamap.errors import InputError, LamapWarning
from lamap.runtime import write_atomic

__all__ = [
    "S2_BANDS",
    "S2_BANDWIDTH_NM",
    "S2_CENTRE_NM",
    "CanopyLut",
    "CanopyLutSpec",
    "band_weights",
    "canopy_lut",
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
