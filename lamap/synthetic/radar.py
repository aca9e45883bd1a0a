"""Sentinel-1 RTC backscatter (gamma0, VV and VH) of the synthetic world.

Vegetated land follows the water-cloud model (WCM, Attema & Ulaby 1978): the canopy is a
cloud of water droplets that scatters (``A``) and attenuates (``B``) the signal, over a
soil whose backscatter grows with its moisture::

    σ° = A · V1 · cosθ · (1 − τ²) + τ² · σ°_soil,   τ² = exp(−2 · B · V2 / cosθ)
    σ°_soil [dB] = C + D · mv + S · (θ − 38°)

with ``V2 = LAI`` and ``V1 = LAI ** E``. The default ``E = 0`` (``V1 = 1``) makes
``A · cosθ`` the backscatter of a dense canopy, so VH rises with LAI and saturates near
LAI 4–5, as C-band does over crops; ``E = 1`` gives the ``V1 = V2 = LAI`` variant. The
coefficients are set so that gamma0 falls in the ranges Sentinel-1 observes over crops
(at 38° incidence, soil moisture 0.12–0.38 and LAI 0–8: VV −14.1…−7.9 dB, VH
−23.6…−14.6 dB; forests: VV ≈ −6.6 dB, VH ≈ −12 dB), with sensitivities to soil moisture
(0.2–0.24 dB per vol-%) and to incidence (−0.15…−0.2 dB per degree) of the order
reported for C band. RTC products are gamma0 = σ° / cosθ.

Water and built-up land have their own empirical models. Speckle is multiplicative,
gamma-distributed with mean 1 and variance ``1 / looks``.

Soil moisture follows a simple daily bucket: it jumps up on rain days and dries down
exponentially towards a residual value (:func:`soil_moisture_series`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from lamap.errors import InputError

__all__ = [
    "CROP",
    "FOREST",
    "Polarisation",
    "WaterCloud",
    "backscatter",
    "rain_series",
    "scale_soil_moisture",
    "soil_moisture_from_rain",
    "soil_moisture_series",
    "speckle",
    "to_db",
    "urban_backscatter",
    "water_backscatter",
]

Polarisation = Literal["VV", "VH"]
_REFERENCE_INCIDENCE = 38.0  # degrees, middle of the Sentinel-1 IW swath


@dataclass(frozen=True)
class WaterCloud:
    """Water-cloud model coefficients for one land cover and polarisation.

    Attributes
    ----------
    a : float
        Canopy scattering (linear); ``a · cosθ`` is the backscatter of a dense canopy.
    b : float
        Canopy attenuation per unit LAI.
    c : float
        Soil backscatter (dB) of completely dry soil at 38° incidence.
    d : float
        Soil-moisture sensitivity (dB per m³/m³).
    incidence_slope : float
        Soil backscatter change per degree of incidence (dB/°, negative).
    exponent : float
        ``V1 = LAI ** exponent`` (0: ``V1 = 1``; 1: ``V1 = LAI``).
    """

    a: float
    b: float
    c: float
    d: float
    incidence_slope: float = 0.0
    exponent: float = 0.0

    def __post_init__(self) -> None:
        """Check that the coefficients are physical."""
        if self.a < 0 or self.b < 0 or self.d < 0 or self.exponent < 0:
            raise InputError(
                f"WaterCloud coefficients a, b, d and exponent must be non-negative, got {self}."
            )


#: Coefficients over crops (and grass, bare soil at LAI 0).
CROP: dict[str, WaterCloud] = {
    "VV": WaterCloud(a=0.13, b=0.12, c=-18.0, d=24.0, incidence_slope=-0.20),
    "VH": WaterCloud(a=0.04, b=0.08, c=-27.0, d=20.0, incidence_slope=-0.15),
}
#: Coefficients over forests (stronger woody scattering and attenuation).
FOREST: dict[str, WaterCloud] = {
    "VV": WaterCloud(a=0.23, b=0.20, c=-18.0, d=24.0, incidence_slope=-0.20),
    "VH": WaterCloud(a=0.07, b=0.20, c=-27.0, d=20.0, incidence_slope=-0.15),
}


def to_db(power: ArrayLike) -> np.ndarray:
    """Convert linear power to decibels (``10·log10``)."""
    return 10.0 * np.log10(np.asarray(power, dtype=np.float64))


def _coefficients(polarisation: str, coefficients: WaterCloud | None) -> WaterCloud:
    if coefficients is not None:
        return coefficients
    if polarisation not in CROP:
        raise InputError(f"polarisation must be 'VV' or 'VH', got {polarisation!r}.")
    return CROP[polarisation]


def _incidence(incidence: ArrayLike) -> np.ndarray:
    """Incidence angles in degrees, checked to lie in [0, 90)."""
    theta = np.asarray(incidence, dtype=np.float64)
    if theta.size and (np.nanmin(theta) < 0.0 or np.nanmax(theta) >= 90.0):
        raise InputError(
            f"incidence must be in degrees within [0, 90), found {np.nanmin(theta):.3g}.."
            f"{np.nanmax(theta):.3g}; Sentinel-1 IW spans about 29..46°."
        )
    return theta


def _water_cloud(
    lai: np.ndarray, soil_moisture: np.ndarray, incidence: ArrayLike, wcm: WaterCloud
) -> np.ndarray:
    """Noise-free sigma0 (linear) of the water-cloud model."""
    theta = _incidence(incidence)
    cos_theta = np.cos(np.deg2rad(theta))
    soil_db = wcm.c + wcm.d * soil_moisture + wcm.incidence_slope * (theta - _REFERENCE_INCIDENCE)
    two_way = np.exp(-2.0 * wcm.b * lai / cos_theta)
    canopy = wcm.a * lai**wcm.exponent * cos_theta * (1.0 - two_way)
    return canopy + two_way * 10.0 ** (soil_db / 10.0)  # type: ignore[no-any-return]


def backscatter(
    lai: ArrayLike,
    soil_moisture: ArrayLike,
    incidence: ArrayLike,
    *,
    polarisation: Polarisation,
    coefficients: WaterCloud | None = None,
    rng: np.random.Generator | None = None,
    looks: float = 4.4,
) -> np.ndarray:
    """Sentinel-1 RTC gamma0 (linear power) of vegetation over soil, water-cloud model.

    Parameters
    ----------
    lai : array-like
        Leaf area index (m²/m²), 0 for bare soil.
    soil_moisture : array-like
        Volumetric soil moisture (m³/m³), e.g. from :func:`soil_moisture_series`.
    incidence : array-like
        Local incidence angle in degrees.
    polarisation : {"VV", "VH"}
        Polarisation; picks the :data:`CROP` coefficients unless ``coefficients`` is given.
    coefficients : WaterCloud, optional
        Model coefficients, e.g. ``FOREST["VH"]`` for forests.
    rng : numpy.random.Generator, optional
        When given, multiplicative speckle with ``looks`` looks is applied.
    looks : float
        Equivalent number of looks of the speckle (about 4.4 for IW GRD at 10 m).

    Returns
    -------
    numpy.ndarray
        Float32 gamma0 in linear power, with the broadcast shape of the arguments.

    Raises
    ------
    InputError
        On an unknown polarisation, negative LAI or soil moisture, or an incidence angle
        outside [0, 90).
    """
    wcm = _coefficients(polarisation, coefficients)
    leaf = np.asarray(lai, dtype=np.float64)
    moisture = np.asarray(soil_moisture, dtype=np.float64)
    for name, value in (("lai", leaf), ("soil_moisture", moisture)):
        if value.size and np.nanmin(value) < 0.0:
            raise InputError(f"backscatter: {name} must be >= 0, found {np.nanmin(value):.3g}.")
    gamma0 = _water_cloud(leaf, moisture, incidence, wcm) / np.cos(
        np.deg2rad(_incidence(incidence))
    )
    return _speckled(gamma0, rng, looks)


def speckle(shape: tuple[int, ...], rng: np.random.Generator, looks: float = 4.4) -> np.ndarray:
    """Multiplicative speckle: gamma-distributed, mean 1, variance ``1 / looks``.

    Parameters
    ----------
    shape : tuple of int
        Output shape.
    rng : numpy.random.Generator
        Random source.
    looks : float
        Equivalent number of looks (> 0).

    Returns
    -------
    numpy.ndarray
        Float32 speckle factors.
    """
    if not looks > 0:
        raise InputError(f"looks must be positive, got {looks}.")
    return rng.gamma(looks, 1.0 / looks, size=shape).astype(np.float32)


def _speckled(gamma0: np.ndarray, rng: np.random.Generator | None, looks: float) -> np.ndarray:
    if rng is None:
        return np.asarray(gamma0, dtype=np.float32)
    return (gamma0 * speckle(np.shape(gamma0), rng, looks)).astype(np.float32)


def water_backscatter(
    shape: tuple[int, ...],
    incidence: ArrayLike,
    polarisation: Polarisation,
    rng: np.random.Generator,
    *,
    wind_db: float | None = None,
    looks: float = 4.4,
) -> np.ndarray:
    """Gamma0 (linear) of open water: dark, falling with incidence, shifted by wind.

    VV is about −22 dB at 38° for a light breeze and VH about 7 dB lower; the wind of
    the scene shifts both by ``wind_db`` (drawn from N(0, 1.5 dB) when omitted), and
    capillary waves add a small per-pixel variation.

    Parameters
    ----------
    shape : tuple of int
        Pixel shape.
    incidence : array-like
        Incidence angle (degrees), broadcastable to ``shape``.
    polarisation : {"VV", "VH"}
        Polarisation.
    rng : numpy.random.Generator
        Random source (wind, texture and speckle).
    wind_db : float, optional
        Scene-wide wind offset in dB; pass the same value for VV and VH of one scene.
    looks : float
        Equivalent number of looks of the speckle.

    Returns
    -------
    numpy.ndarray
        Float32 gamma0 of shape ``shape``.
    """
    theta = _incidence(incidence)
    offset = rng.normal(0.0, 1.5) if wind_db is None else wind_db
    base = -22.0 - 0.3 * (theta - _REFERENCE_INCIDENCE) + offset
    if polarisation == "VH":
        base = base - 7.0
    elif polarisation != "VV":
        raise InputError(f"polarisation must be 'VV' or 'VH', got {polarisation!r}.")
    db = np.broadcast_to(base, shape) + rng.normal(0.0, 0.5, size=shape)
    return _speckled(10.0 ** (db / 10.0), rng, looks)


def urban_backscatter(
    shape: tuple[int, ...],
    incidence: ArrayLike,
    polarisation: Polarisation,
    rng: np.random.Generator,
    *,
    looks: float = 4.4,
) -> np.ndarray:
    """Gamma0 (linear) of built-up land: bright and heterogeneous (double bounce).

    VV is about −4.5 dB and VH about −12.5 dB on average, with a per-pixel lognormal
    spread of 2.5 dB (bright corner reflectors next to darker roofs and streets).

    Parameters
    ----------
    shape : tuple of int
        Pixel shape.
    incidence : array-like
        Incidence angle (degrees), broadcastable to ``shape``.
    polarisation : {"VV", "VH"}
        Polarisation.
    rng : numpy.random.Generator
        Random source (texture and speckle).
    looks : float
        Equivalent number of looks of the speckle.

    Returns
    -------
    numpy.ndarray
        Float32 gamma0 of shape ``shape``.
    """
    theta = _incidence(incidence)
    means = {"VV": -4.5, "VH": -12.5}
    if polarisation not in means:
        raise InputError(f"polarisation must be 'VV' or 'VH', got {polarisation!r}.")
    base = means[polarisation] - 0.05 * (theta - _REFERENCE_INCIDENCE)
    db = np.broadcast_to(base, shape) + rng.normal(0.0, 2.5, size=shape)
    return _speckled(10.0 ** (db / 10.0), rng, looks)


def _days(dates: ArrayLike | date) -> np.ndarray:
    """Dates as a strictly increasing ``datetime64[D]`` array."""
    if isinstance(dates, datetime):
        dates = dates.date()
    days = np.atleast_1d(np.asarray(dates, dtype="datetime64[D]"))
    if days.ndim != 1 or days.size == 0 or np.any(np.diff(days) <= np.timedelta64(0, "D")):
        raise InputError(
            f"dates must be a non-empty 1-D sequence of strictly increasing days, got {days!r}."
        )
    return days


def rain_series(
    dates: ArrayLike,
    rng: np.random.Generator,
    *,
    probability: float = 0.15,
    mean_depth_mm: float = 8.0,
) -> np.ndarray:
    """Daily rain (mm) on a daily axis: random rain days with exponential depths.

    Parameters
    ----------
    dates : array-like
        Consecutive days (anything ``numpy.datetime64`` understands).
    rng : numpy.random.Generator
        Random source; the wet days are drawn before the depths.
    probability : float
        Chance of a (significant) rain day.
    mean_depth_mm : float
        Mean rain depth of a rain day.

    Returns
    -------
    numpy.ndarray
        Rain in mm for each day, 0 on dry days.
    """
    days = _days(dates)
    if not 0.0 <= probability <= 1.0:
        raise InputError(f"probability must be within [0, 1], got {probability}.")
    wet = rng.random(days.size) < probability
    depth = rng.exponential(mean_depth_mm, size=days.size)
    return np.where(wet, depth + 0.5, 0.0)  # type: ignore[no-any-return]


def soil_moisture_from_rain(
    rain_mm: ArrayLike,
    *,
    dry: float = 0.12,
    wet: float = 0.38,
    e_folding_days: float = 4.0,
    saturation_mm: float = 15.0,
    initial: float | None = None,
) -> np.ndarray:
    """Daily surface soil moisture from daily rain: wetting jumps, exponential dry-down.

    On a rain day, a rain of ``r`` mm closes a fraction ``1 − exp(−r / saturation_mm)``
    of the gap to ``wet``; on a dry day the moisture relaxes towards ``dry`` by a factor
    ``exp(−1 / e_folding_days)`` of its excess. So it rises exactly on rain days, decays
    on all others and stays within (dry, wet).

    Parameters
    ----------
    rain_mm : array-like
        Daily rain (mm), e.g. from :func:`rain_series`.
    dry, wet : float
        Residual and field-capacity volumetric moisture (m³/m³).
    e_folding_days : float
        Dry-down time scale.
    saturation_mm : float
        Rain depth that closes 63 % of the gap to ``wet``.
    initial : float, optional
        Moisture before the first day; ``dry + 0.3 · (wet − dry)`` when omitted.

    Returns
    -------
    numpy.ndarray
        Volumetric soil moisture for each day.
    """
    if not wet > dry >= 0.0:
        raise InputError(f"soil moisture needs wet > dry >= 0, got dry={dry}, wet={wet}.")
    rain = np.asarray(rain_mm, dtype=np.float64)
    keep = np.exp(-1.0 / e_folding_days)
    fill = 1.0 - np.exp(-rain / saturation_mm)
    moisture = np.empty_like(rain)
    current = dry + 0.3 * (wet - dry) if initial is None else initial
    for day, fraction in enumerate(fill):
        if fraction > 0:
            current += (wet - current) * fraction
        else:
            current = dry + (current - dry) * keep
        moisture[day] = current
    return moisture


def soil_moisture_series(
    dates: ArrayLike,
    rng: np.random.Generator,
    *,
    dry: float = 0.12,
    wet: float = 0.38,
    e_folding_days: float = 4.0,
    probability: float = 0.15,
) -> np.ndarray:
    """Volumetric surface soil moisture at ``dates`` from a simulated daily rain series.

    Rain is simulated on every day from the first to the last date (so irregular dates,
    e.g. Sentinel-1 overpasses, see the same weather as a daily axis drawn with the same
    seed) with :func:`rain_series`, turned into moisture with
    :func:`soil_moisture_from_rain`, and sampled at ``dates``.

    Parameters
    ----------
    dates : array-like
        Strictly increasing dates (``datetime64``, ``datetime.date`` or ISO strings).
    rng : numpy.random.Generator
        Random source of the rain.
    dry, wet : float
        Residual and field-capacity moisture (m³/m³).
    e_folding_days : float
        Dry-down time scale (days).
    probability : float
        Chance of a rain day.

    Returns
    -------
    numpy.ndarray
        Moisture (m³/m³) for each date; add spatial variation with
        :func:`scale_soil_moisture`.
    """
    days = _days(dates)
    daily = np.arange(days[0], days[-1] + np.timedelta64(1, "D"), dtype="datetime64[D]")
    rain = rain_series(daily, rng, probability=probability)
    moisture = soil_moisture_from_rain(rain, dry=dry, wet=wet, e_folding_days=e_folding_days)
    return moisture[(days - days[0]).astype(np.int64)]


def scale_soil_moisture(
    series: ArrayLike,
    factor: ArrayLike,
    *,
    lowest: float = 0.02,
    highest: float = 0.50,
) -> np.ndarray:
    """Spread a soil-moisture series in space with a per-pixel or per-field factor.

    A factor above 1 is a wetter spot (heavier soil, hollow, irrigation), below 1 a
    drier one (sand, slope); rain and dry-down stay synchronous.

    Parameters
    ----------
    series : array-like
        Moisture series, shape (T,).
    factor : array-like
        Multiplicative factor, any shape ``S`` (e.g. 0.8..1.2 per field).
    lowest, highest : float
        Physical bounds (residual moisture, porosity) the result is clipped to.

    Returns
    -------
    numpy.ndarray
        Float32 moisture of shape ``(T,) + S``.
    """
    base = np.asarray(series, dtype=np.float64)
    scale = np.asarray(factor, dtype=np.float64)
    if base.ndim != 1:
        raise InputError(f"series must be 1-D (time), got shape {base.shape}.")
    spread = base.reshape(-1, *([1] * scale.ndim)) * scale
    return np.clip(spread, lowest, highest).astype(np.float32)
