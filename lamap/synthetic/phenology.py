"""The fields of the synthetic world: covers, crop calendars, parameters and seasons.

Every field has a land :class:`Cover`, canopy and soil parameters, and a phenology drawn
around its cover's :data:`CROP_CALENDAR` (:func:`draw_fields`); :func:`field_lai` gives
the green LAI of every field on any day, from crop-specific double-logistic curves,
harvests, the autumn emergence of winter crops and grassland cuts. Only the day of year
matters: the phenology repeats every year.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeAlias

import numpy as np
from scipy import special

from lamap._inputs import as_date
from lamap.errors import InputError

__all__ = [
    "CROP_CALENDAR",
    "FARM_COVERS",
    "Cover",
    "CropCalendar",
    "DateLike",
    "FieldTable",
    "day_of_year",
    "draw_fields",
    "field_lai",
]

#: A date: ``datetime.date``/``datetime.datetime`` (pandas Timestamps too),
#: ``numpy.datetime64`` or a ``YYYY-MM-DD`` string.
DateLike: TypeAlias = dt.date | np.datetime64 | str


class Cover(IntEnum):
    """Land cover classes of the synthetic world (0 is unused)."""

    WHEAT = 1  #: winter wheat
    MAIZE = 2  #: grain/silage maize
    SUNFLOWER = 3  #: sunflower
    RAPESEED = 4  #: winter oilseed rape
    SUGARBEET = 5  #: sugar beet
    GRASSLAND = 6  #: permanent meadow, mown once or twice
    FOREST = 7  #: deciduous broadleaf forest
    WATER = 8  #: rivers and lakes
    BARE = 9  #: bare soil and fallow
    BUILT = 10  #: villages, towns and roads (with their gardens and verges)


#: Covers drawn for farmland fields (the rest come from forests, water and settlements).
FARM_COVERS: Final = (
    Cover.WHEAT,
    Cover.MAIZE,
    Cover.SUNFLOWER,
    Cover.RAPESEED,
    Cover.SUGARBEET,
    Cover.GRASSLAND,
    Cover.BARE,
)
@dataclass(frozen=True)
class CropCalendar:
    """Typical phenology of one cover, as days of year (DOY) of a common year.

    The green LAI follows a double logistic: it rises from ``winter`` LAI around the
    green-up inflection day, peaks, falls towards ``senescent`` LAI around the senescence
    inflection day, and drops to ``residual`` LAI at harvest; winter crops then emerge
    again in autumn (the next season's crop) back to their winter LAI.

    Attributes
    ----------
    sowing : float or None
        Sowing day (informative; winter crops are sown the previous autumn).
    green_up, k_up : float
        Inflection day and time constant (days) of the spring rise.
    senescence, k_down : float
        Inflection day and time constant (days) of the decline.
    harvest : float or None
        Harvest (or mowing-to-stubble) day; None for covers never harvested.
    autumn : float or None
        Inflection day of the autumn emergence of a winter crop; None otherwise.
    peak, winter : tuple of float
        Ranges (low, high) from which each field draws its peak and winter LAI.
    senescent : float or None
        Green LAI left after senescence, before harvest; None means back to winter LAI.
    residual : float
        LAI of the stubble just after harvest.
    """

    sowing: float | None
    green_up: float
    k_up: float
    senescence: float
    k_down: float
    harvest: float | None
    autumn: float | None
    peak: tuple[float, float]
    winter: tuple[float, float]
    senescent: float | None
    residual: float


# Typical dates for lowland central Europe around 48.7°N (Upper Rhine plain, Swabia,
# Lower Austria), rounded, from general agronomy knowledge of the crop calendars (as in the
# FAO GIEWS country crop calendars for France and Germany and the usual BBCH stage dates),
# and LAI levels typical of field measurements and Sentinel-2 LAI time series:
# - winter wheat: sown mid-October, ~0.5 LAI over winter, green-up in March, stem
#   elongation in April, peak LAI 4.5-6 at heading in May, senescence in June, harvest
#   mid-July, then stubble;
# - maize: sown late April, canopy closure in July, peak 4-5 late July-August, harvest
#   late September (silage) to October (grain);
# - sunflower: sown mid-April, peak 2.5-3.5 in July at flowering, harvest September;
# - winter oilseed rape: sown late August, rosette LAI ~1 over winter, peak 3-4 in April,
#   harvest early July;
# - sugar beet: sown late March/early April, peak 4-5 in July-August, green until the
#   harvest in October;
# - meadows: green-up in March, 1.5-3.5, first cut in May, often a second in June/July;
# - deciduous forest (plant area index): leaf-out late April, ~5 in summer, leaf fall in
#   late October/November, 0.5-1 (stems and branches) in winter.
CROP_CALENDAR: Final[dict[Cover, CropCalendar]] = {
    Cover.WHEAT: CropCalendar(285, 100, 10, 170, 7, 197, 310, (4.5, 6.0), (0.4, 0.9), 0.5, 0.2),
    Cover.MAIZE: CropCalendar(118, 172, 9, 252, 10, 280, None, (3.8, 5.2), (0.05, 0.2), 0.8, 0.3),
    Cover.SUNFLOWER: CropCalendar(
        105, 160, 8, 215, 8, 255, None, (2.5, 3.5), (0.05, 0.2), 0.5, 0.3
    ),
    Cover.RAPESEED: CropCalendar(240, 75, 8, 150, 10, 188, 265, (3.0, 4.0), (0.8, 1.3), 0.5, 0.3),
    Cover.SUGARBEET: CropCalendar(
        90, 158, 10, 285, 15, 290, None, (4.0, 5.0), (0.05, 0.2), 2.0, 0.2
    ),
    Cover.GRASSLAND: CropCalendar(
        None, 85, 10, 290, 15, None, None, (2.0, 3.5), (0.8, 1.3), None, 0.0
    ),
    Cover.FOREST: CropCalendar(None, 118, 5, 298, 7, None, None, (4.5, 5.5), (0.6, 1.0), None, 0.0),
    Cover.WATER: CropCalendar(
        None, 150, 10, 250, 10, None, None, (0.0, 0.0), (0.0, 0.0), None, 0.0
    ),
    Cover.BARE: CropCalendar(
        None, 120, 15, 260, 15, None, None, (0.05, 0.2), (0.0, 0.08), None, 0.0
    ),
    Cover.BUILT: CropCalendar(
        None, 110, 10, 290, 12, None, None, (0.3, 0.5), (0.15, 0.25), None, 0.0
    ),
}

#: LAI of tilled bare soil between the harvest and the autumn emergence of a winter crop.
_TILLED_LAI: Final = 0.05
#: Days over which the stubble LAI decays after harvest (ploughing, weeds dying).
_STUBBLE_DAYS: Final = 30.0
#: Share of the LAI left just after a grassland cut, and the regrowth delay/rate in days.
_CUT_LEFT: Final = 0.25
_REGROWTH_DELAY: Final = 18.0
_REGROWTH_DAYS: Final = 4.0

#: Leaf chlorophyll (µg/cm²) and dry matter (g/cm²) ranges per cover.
_CAB_RANGE: Final = {Cover.FOREST: (35.0, 55.0), Cover.GRASSLAND: (30.0, 50.0)}
_CAB_CROPS: Final = (35.0, 65.0)
_CAB_OTHER: Final = (20.0, 40.0)
_CM_RANGE: Final = {Cover.FOREST: (0.008, 0.012)}
_CM_DEFAULT: Final = (0.003, 0.008)


@dataclass(frozen=True)
class FieldTable:
    """Per-field parameters, each a 1-D array indexed by field id.

    Attributes
    ----------
    cover : numpy.ndarray
        uint8 :class:`Cover` of each field.
    n_pixels : numpy.ndarray
        int64 number of pixels of each field.
    cab, cm : numpy.ndarray
        Leaf chlorophyll (µg/cm², 20-70) and dry matter (g/cm², 0.003-0.012).
    rsoil, psoil : numpy.ndarray
        Soil brightness (0.5-1.5) and soil wetness (0 wet - 1 dry) of PROSAIL's soil model.
    soil_moisture_factor : numpy.ndarray
        Multiplier (0.7-1.3) of the regional soil moisture for the radar.
    sowing_doy : numpy.ndarray
        Sowing day of year (NaN where nothing is sown).
    green_up_doy, senescence_doy : numpy.ndarray
        Inflection days of the spring rise and of the decline, with per-field shifts.
    k_up, k_down : numpy.ndarray
        Time constants (days) of the rise and the decline.
    harvest_doy, autumn_doy : numpy.ndarray
        Harvest day and autumn emergence day of winter crops (NaN where none).
    peak_lai, winter_lai, senescent_lai, residual_lai : numpy.ndarray
        LAI at the peak, over winter, after senescence and just after harvest.
    cut_doy : numpy.ndarray
        Shape (n, 2): grassland mowing days (NaN where no cut).
    """

    cover: np.ndarray
    n_pixels: np.ndarray
    cab: np.ndarray
    cm: np.ndarray
    rsoil: np.ndarray
    psoil: np.ndarray
    soil_moisture_factor: np.ndarray
    sowing_doy: np.ndarray
    green_up_doy: np.ndarray
    senescence_doy: np.ndarray
    k_up: np.ndarray
    k_down: np.ndarray
    harvest_doy: np.ndarray
    autumn_doy: np.ndarray
    peak_lai: np.ndarray
    winter_lai: np.ndarray
    senescent_lai: np.ndarray
    residual_lai: np.ndarray
    cut_doy: np.ndarray

    def __post_init__(self) -> None:
        """Check that every array has one entry per field."""
        n = len(self.cover)
        for name, value in vars(self).items():
            expected = (n, 2) if name == "cut_doy" else (n,)
            if np.shape(value) != expected:
                raise InputError(
                    f"FieldTable.{name} must have shape {expected} like `cover`, "
                    f"found {np.shape(value)}."
                )

    def __len__(self) -> int:
        """Return the number of fields."""
        return len(self.cover)


# --------------------------------------------------------------------------- drawing the fields


def draw_fields(
    cover: np.ndarray,
    n_pixels: np.ndarray,
    estate: np.ndarray,
    n_estates: int,
    rng: np.random.Generator,
) -> FieldTable:
    """Draw the canopy, soil and phenology parameters of every field.

    Parameters
    ----------
    cover : numpy.ndarray
        uint8 :class:`Cover` of each field.
    n_pixels : numpy.ndarray
        Number of pixels of each field.
    estate : numpy.ndarray
        Estate of each field, an index below ``n_estates``: fields of one estate share
        their regional soil brightness and moisture.
    n_estates : int
        Number of estates.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    FieldTable
        The parameters of every field.
    """
    n = len(cover)
    regional = rng.standard_normal((2, n_estates))[:, estate]
    water = cover == Cover.WATER
    return FieldTable(
        cover=cover,
        n_pixels=n_pixels.astype(np.int64),
        cab=_draw_per_cover(cover, rng, _CAB_RANGE, _CAB_CROPS, _CAB_OTHER),
        cm=_draw_per_cover(cover, rng, _CM_RANGE, _CM_DEFAULT, _CM_DEFAULT),
        rsoil=np.clip(0.95 + 0.2 * regional[0] + 0.12 * rng.standard_normal(n), 0.5, 1.5),
        psoil=rng.uniform(0.0, 1.0, n),
        soil_moisture_factor=np.where(
            water, 1.0, np.clip(1.0 + 0.1 * regional[1] + 0.06 * rng.standard_normal(n), 0.7, 1.3)
        ),
        **_phenology(cover, rng),
    )


def _draw_per_cover(
    cover: np.ndarray,
    rng: np.random.Generator,
    specific: dict[Cover, tuple[float, float]],
    crops: tuple[float, float],
    other: tuple[float, float],
) -> np.ndarray:
    """Uniform draws whose range depends on the cover."""
    low = np.full(len(cover), other[0])
    high = np.full(len(cover), other[1])
    is_crop = np.isin(cover, [c for c in FARM_COVERS if c not in (Cover.GRASSLAND, Cover.BARE)])
    low[is_crop], high[is_crop] = crops
    for kind, (lo, hi) in specific.items():
        low[cover == kind], high[cover == kind] = lo, hi
    return rng.uniform(low, high)


def _calendar_column(cover: np.ndarray, name: str) -> np.ndarray:
    """Look up the calendar value ``name`` of each field's cover (NaN where None)."""
    table = np.full(max(Cover) + 1, np.nan)
    for kind, calendar in CROP_CALENDAR.items():
        value = getattr(calendar, name)
        table[kind] = np.nan if value is None else value
    return table[cover]


def _calendar_range(cover: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """Uniform draws within the calendar range ``name`` of each field's cover."""
    bounds = np.zeros((max(Cover) + 1, 2))
    for kind, calendar in CROP_CALENDAR.items():
        bounds[kind] = getattr(calendar, name)
    return rng.uniform(bounds[cover, 0], bounds[cover, 1])


def _phenology(cover: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-field phenology: calendar days with per-field shifts and drawn LAI levels."""
    n = len(cover)
    shift_up = np.clip(rng.normal(0.0, 6.0, n), -15, 15)
    shift_down = np.clip(0.5 * shift_up + rng.normal(0.0, 5.0, n), -15, 15)
    senescence = _calendar_column(cover, "senescence") + shift_down
    harvest = _calendar_column(cover, "harvest") + shift_down
    harvest += np.clip(rng.normal(0, 4, n), -10, 10)
    winter = _calendar_range(cover, "winter", rng)
    senescent = _calendar_column(cover, "senescent")
    return {
        "sowing_doy": (_calendar_column(cover, "sowing") + shift_up - 1) % 365 + 1,
        "green_up_doy": _calendar_column(cover, "green_up") + shift_up,
        "senescence_doy": senescence,
        "k_up": _calendar_column(cover, "k_up"),
        "k_down": _calendar_column(cover, "k_down"),
        "harvest_doy": np.maximum(harvest, senescence + 5),
        "autumn_doy": _calendar_column(cover, "autumn") + np.clip(rng.normal(0, 7, n), -15, 15),
        "peak_lai": _calendar_range(cover, "peak", rng),
        "winter_lai": winter,
        "senescent_lai": np.where(np.isnan(senescent), winter, senescent),
        "residual_lai": _calendar_column(cover, "residual"),
        "cut_doy": _mowing_days(cover, rng),
    }


def _mowing_days(cover: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grassland cuts: the first in May (90 % of meadows), a second 30-45 days later (60 %)."""
    n = len(cover)
    first = np.where(rng.random(n) < 0.9, rng.uniform(128, 150, n), np.nan)
    second = np.where(rng.random(n) < 0.6, first + rng.uniform(30, 45, n), np.nan)
    days = np.stack([first, second], 1)
    days[cover != Cover.GRASSLAND] = np.nan
    return days


# --------------------------------------------------------------------------- LAI through the year


def day_of_year(date: DateLike) -> float:
    """Day of year (1 on 1 January) of a date, with the time of day as a fraction.

    Parameters
    ----------
    date : datetime.date, datetime.datetime, numpy.datetime64 or str
        The date; strings are ``YYYY-MM-DD``, read by :func:`lamap._inputs.as_date`.

    Returns
    -------
    float
        Day of year in [1, 367).

    Raises
    ------
    InputError
        If ``date`` is none of the accepted types or not a valid date.
    """
    moment = _as_datetime(date)
    start = dt.datetime(moment.year, 1, 1, tzinfo=moment.tzinfo)
    return 1.0 + (moment - start).total_seconds() / 86400.0


def _as_datetime(date: DateLike) -> dt.datetime:
    """Return ``date`` as a datetime, keeping the time of day of datetimes."""
    if isinstance(date, np.datetime64):
        date = date.astype("datetime64[us]").item()  # a datetime; None for NaT
    if isinstance(date, dt.datetime):
        return date
    day = as_date(date)  # type: ignore[arg-type]  # anything else is refused there
    return dt.datetime(day.year, day.month, day.day)


def field_lai(fields: FieldTable, date: DateLike) -> np.ndarray:
    """Green LAI of every field at a date, from its crop-specific double-logistic curve.

    Only the day of year matters: the phenology repeats every year.

    Parameters
    ----------
    fields : FieldTable
        The field parameters.
    date : datetime.date, numpy.datetime64 or str
        The date.

    Returns
    -------
    numpy.ndarray
        float32 LAI (m²/m²) of each field, >= 0.
    """
    t = day_of_year(date)
    with np.errstate(invalid="ignore"):
        harvested = t >= fields.harvest_doy
    lai = np.where(harvested, _after_harvest(fields, t), _season(fields, t))
    lai = lai * _mowing_factor(fields.cut_doy, t)
    return np.clip(lai, 0.0, None).astype(np.float32)


def _season(fields: FieldTable, t: float) -> np.ndarray:
    """LAI over the growing season: winter level -> peak -> senescent level."""
    peak_day = _peak_day(fields)
    shape = _rise_fall(fields, t) / _rise_fall(fields, peak_day)
    low = np.where(t < peak_day, fields.winter_lai, fields.senescent_lai)
    return low + (fields.peak_lai - low) * shape


def _rise_fall(fields: FieldTable, t: float | np.ndarray) -> np.ndarray:
    rise = special.expit((t - fields.green_up_doy) / fields.k_up)
    fall = special.expit((fields.senescence_doy - t) / fields.k_down)
    return np.asarray(rise * fall)


def _peak_day(fields: FieldTable) -> np.ndarray:
    """Day where the double logistic peaks, by bisection of its log-derivative."""
    low = np.minimum(fields.green_up_doy, fields.senescence_doy) - 60.0
    high = np.maximum(fields.green_up_doy, fields.senescence_doy) + 60.0
    for _ in range(40):
        middle = 0.5 * (low + high)
        rising = _log_slope(fields, middle) > 0
        low = np.where(rising, middle, low)
        high = np.where(rising, high, middle)
    return 0.5 * (low + high)


def _log_slope(fields: FieldTable, t: np.ndarray) -> np.ndarray:
    rise = special.expit((t - fields.green_up_doy) / fields.k_up)
    fall = special.expit((fields.senescence_doy - t) / fields.k_down)
    return np.asarray((1.0 - rise) / fields.k_up - (1.0 - fall) / fields.k_down)


def _after_harvest(fields: FieldTable, t: float) -> np.ndarray:
    """Stubble decaying to bare soil, then the autumn emergence of winter crops."""
    winter_crop = ~np.isnan(fields.autumn_doy)
    floor = np.where(winter_crop, _TILLED_LAI, fields.winter_lai)
    stubble = (fields.residual_lai - floor) * np.exp(-(t - fields.harvest_doy) / _STUBBLE_DAYS)
    emergence = special.expit((t - fields.autumn_doy) / 10.0) * (fields.winter_lai - floor)
    return np.asarray(floor + stubble + np.where(winter_crop, emergence, 0.0))


def _mowing_factor(cut_doy: np.ndarray, t: float) -> np.ndarray:
    """Share of the LAI left by the grassland cuts before ``t`` (1 where none)."""
    since = t - cut_doy
    with np.errstate(invalid="ignore"):
        after = since >= 0
    regrowth = _CUT_LEFT + (1.0 - _CUT_LEFT) * special.expit(
        (since - _REGROWTH_DELAY) / _REGROWTH_DAYS
    )
    return np.asarray(np.where(after, regrowth, 1.0).prod(axis=1))
