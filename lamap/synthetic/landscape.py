"""The landscape of the synthetic world: land cover, fields and their LAI through the year.

The landscape is a temperate European farmland mosaic at about 48.7°N (the Upper Rhine,
Swabia, Lower Austria): "estates" (Voronoi cells of about 1.5 km, each with its own
ploughing direction) cut into blocks and strips of typical field sizes (1–20 ha), with
roads along some estate boundaries, irregular deciduous forests, a meandering river with
tributaries, lakes, villages and sometimes a town. Every pixel belongs to one field (or
patch), and every field has its land cover, canopy and soil parameters and phenology.

Everything here is a pure function of its arguments and of the ``numpy.random.Generator``
it is given, on a regular north-up grid described by its shape and resolution (metres).

Examples
--------
>>> import numpy as np
>>> land = make_landscape((256, 256), np.random.default_rng(0))
>>> lai = lai_map(land, np.datetime64("2024-05-15"))
>>> lai.shape, lai.dtype
((256, 256), dtype('float32'))
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeAlias

import numpy as np
from scipy import ndimage, spatial, special

from lamap.errors import InputError

__all__ = [
    "CROP_CALENDAR",
    "Cover",
    "CropCalendar",
    "DateLike",
    "FieldTable",
    "Landscape",
    "day_of_year",
    "field_lai",
    "lai_map",
    "make_landscape",
    "smooth_noise",
]

#: A date: ``datetime.date``/``datetime.datetime`` (pandas Timestamps too),
#: ``numpy.datetime64`` or an ISO 8601 string.
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
_FARM_COVERS: Final = (
    Cover.WHEAT,
    Cover.MAIZE,
    Cover.SUNFLOWER,
    Cover.RAPESEED,
    Cover.SUGARBEET,
    Cover.GRASSLAND,
    Cover.BARE,
)
#: Shares of the farmland covers: a cereal-dominated rotation with maize, oilseeds,
#: sugar beet, permanent grassland and some fallow, as in south-west Germany / Alsace.
_FARM_SHARES: Final = (0.28, 0.18, 0.06, 0.10, 0.06, 0.22, 0.10)


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

# Sizes of the layout, in metres.
_ESTATE_SPACING: Final = 1500.0
_BLOCK_LENGTH: Final = (280.0, 520.0)
_STRIP_WIDTH: Final = (80.0, 320.0)
_ROAD_SHARE: Final = 0.6
_RIVER_FLOODPLAIN_M: Final = 250.0


# --------------------------------------------------------------------------- value objects


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


@dataclass(frozen=True)
class Landscape:
    """The land of the synthetic world on a north-up pixel grid.

    Attributes
    ----------
    cover : numpy.ndarray
        uint8 (H, W) :class:`Cover` of each pixel.
    field_id : numpy.ndarray
        int32 (H, W) field of each pixel, an index into ``fields``.
    texture : numpy.ndarray
        float32 (H, W) smooth multiplicative within-field LAI variation, mean ~1.
    fields : FieldTable
        The parameters of each field.
    resolution : float
        Pixel size in metres.
    """

    cover: np.ndarray
    field_id: np.ndarray
    texture: np.ndarray
    fields: FieldTable
    resolution: float

    def __post_init__(self) -> None:
        """Check the shapes of the arrays and that the field ids index the table."""
        shape = self.cover.shape
        if len(shape) != 2:
            raise InputError(f"Landscape.cover must be 2-D, found shape {shape}.")
        for name in ("field_id", "texture"):
            found = getattr(self, name).shape
            if found != shape:
                raise InputError(f"Landscape.{name} has shape {found}, expected {shape}.")
        if self.field_id.size and not 0 <= self.field_id.min() <= self.field_id.max() < len(
            self.fields
        ):
            raise InputError(
                f"Landscape.field_id must index the {len(self.fields)} fields, found ids "
                f"{self.field_id.min()}..{self.field_id.max()}."
            )

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape (rows, columns)."""
        return (int(self.cover.shape[0]), int(self.cover.shape[1]))


# --------------------------------------------------------------------------- noise


def smooth_noise(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    scale_px: float,
    elongation: float = 1.0,
    angle_deg: float = 0.0,
) -> np.ndarray:
    """Smooth Gaussian random field of zero mean and about unit variance.

    White noise on a coarse lattice is Gaussian-filtered and bilinearly interpolated to
    the grid, so the cost barely depends on the scale.

    Parameters
    ----------
    shape : tuple of int
        Output shape (rows, columns).
    rng : numpy.random.Generator
        Source of randomness.
    scale_px : float
        Correlation length (Gaussian sigma) in pixels, across the streaks if elongated.
    elongation : float, optional
        Ratio of the correlation length along the streaks to ``scale_px`` (>= 1).
    angle_deg : float, optional
        Direction of the streaks, degrees counter-clockwise from the column axis.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.

    Raises
    ------
    InputError
        If ``shape`` is not two positive sizes, ``scale_px`` <= 0 or ``elongation`` < 1.
    """
    _check_shape(shape)
    if not scale_px > 0 or not elongation >= 1:
        raise InputError(
            f"smooth_noise needs scale_px > 0 and elongation >= 1, got {scale_px} and {elongation}."
        )
    step = max(1.0, scale_px / 3.0)
    sigma = (scale_px / step, scale_px * elongation / step)
    margin = int(np.ceil(4 * max(sigma))) + 2
    lattice = (
        int(np.ceil(shape[0] / step)) + 2 * margin,
        int(np.ceil(shape[1] / step)) + 2 * margin,
    )
    if elongation > 1:
        coarse = _streaks(lattice, rng, sigma, angle_deg)
    else:
        coarse = rng.standard_normal(lattice, dtype=np.float32)
        coarse = ndimage.gaussian_filter(coarse, sigma[0], mode="reflect")
        coarse /= np.float32(_filtered_std(sigma[0]) ** 2)
    origin = margin - 1 + rng.random(2)
    return _bilinear(coarse, shape, step, (float(origin[0]), float(origin[1])))


def _filtered_std(sigma: float) -> float:
    """Return the standard deviation of unit white noise after a 1-D Gaussian filter.

    The kernel is scipy's: truncated at 4 sigma and normalised.
    """
    radius = int(4.0 * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights /= weights.sum()
    return float(np.sqrt((weights**2).sum()))


def _streaks(
    lattice: tuple[int, int], rng: np.random.Generator, sigma: tuple[float, float], angle: float
) -> np.ndarray:
    """Anisotropic lattice noise, rotated by ``angle`` degrees, unit variance."""
    side = int(np.ceil(np.hypot(*lattice))) + 2
    noise = rng.standard_normal((side, side), dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    noise = ndimage.rotate(noise, angle, reshape=False, order=1, mode="wrap")
    r0, c0 = (side - lattice[0]) // 2, (side - lattice[1]) // 2
    coarse = noise[r0 : r0 + lattice[0], c0 : c0 + lattice[1]]
    return (coarse - coarse.mean()) / max(float(coarse.std()), 1e-12)


def _bilinear(
    coarse: np.ndarray, shape: tuple[int, int], step: float, origin: tuple[float, float]
) -> np.ndarray:
    """Sample ``coarse`` at ``origin + index / step`` on each axis, bilinearly."""
    rows = _interp_axis(coarse, shape[0], step, origin[0], axis=0)
    return _interp_axis(rows, shape[1], step, origin[1], axis=1)


def _interp_axis(array: np.ndarray, n: int, step: float, origin: float, axis: int) -> np.ndarray:
    position = origin + np.arange(n) / step
    lower = np.floor(position).astype(np.intp)
    weight = (position - lower).astype(np.float32)
    if axis == 0:
        weight = weight[:, None]
    out = np.take(array, lower + 1, axis=axis)
    low = np.take(array, lower, axis=axis)
    out -= low
    out *= weight
    out += low
    return out


def _fractal_noise(
    shape: tuple[int, int],
    rng: np.random.Generator,
    scales_px: tuple[float, ...],
    weights: tuple[float, ...],
) -> np.ndarray:
    """Weighted sum of smooth noises at several scales, about unit variance."""
    total = np.zeros(shape, dtype=np.float32)
    for scale, weight in zip(scales_px, weights, strict=True):
        total += np.float32(weight) * smooth_noise(shape, rng, scale_px=scale)
    total /= np.float32(np.sqrt(np.sum(np.square(weights))))
    return total


def _check_shape(shape: tuple[int, int]) -> None:
    if len(shape) != 2 or min(shape) < 1 or any(int(s) != s for s in shape):
        raise InputError(f"a grid shape must be two positive integers (rows, cols), got {shape}.")


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    """Geometry of the farmland before covers are drawn."""

    estate: np.ndarray  # int32 (H, W) Voronoi cell
    key: np.ndarray  # int64 (H, W) field key (see _KeySpace)
    n_estates: int
    n_base: int  # keys below this are farmland fields; then settlement parts, then the rest


def _estates(
    shape: tuple[int, int], rng: np.random.Generator, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of seeds jittered on a square lattice: (cell per pixel, seeds)."""
    ny, nx = int(np.ceil(shape[0] / spacing)), int(np.ceil(shape[1] / spacing))
    gy, gx = np.meshgrid(np.arange(-1, ny + 1), np.arange(-1, nx + 1), indexing="ij")
    jitter = rng.uniform(-0.3, 0.3, size=(2, *gy.shape))
    seeds = np.stack([(gy + 0.5 + jitter[0]) * spacing, (gx + 0.5 + jitter[1]) * spacing], -1)
    cell = np.empty(shape, dtype=np.int32)
    for i in range(ny):
        for j in range(nx):
            _nearest_in_tile(cell, seeds, spacing, i, j)
    return cell, seeds.reshape(-1, 2)


def _nearest_in_tile(cell: np.ndarray, seeds: np.ndarray, spacing: float, i: int, j: int) -> None:
    """Fill one lattice tile of ``cell`` with the nearest of its 3x3 neighbouring seeds."""
    r0, r1 = int(np.ceil(i * spacing)), min(int(np.ceil((i + 1) * spacing)), cell.shape[0])
    c0, c1 = int(np.ceil(j * spacing)), min(int(np.ceil((j + 1) * spacing)), cell.shape[1])
    rows = np.arange(r0, r1, dtype=np.float32)[:, None]
    cols = np.arange(c0, c1, dtype=np.float32)[None, :]
    best = np.full((r1 - r0, c1 - c0), np.inf, dtype=np.float32)
    out = cell[r0:r1, c0:c1]
    closer = np.empty(best.shape, dtype=bool)
    width = seeds.shape[1]
    for di in range(3):
        for dj in range(3):
            sy, sx = seeds[i + di, j + dj]
            dist = (rows - np.float32(sy)) ** 2 + (cols - np.float32(sx)) ** 2
            np.less(dist, best, out=closer)
            np.copyto(best, dist, where=closer)
            np.copyto(out, (i + di) * width + j + dj, where=closer)


def _strips(
    estate: np.ndarray, seeds: np.ndarray, rng: np.random.Generator, resolution: float
) -> tuple[np.ndarray, int]:
    """Cut each estate into blocks and strips along its own direction: (key, n_keys)."""
    n = len(seeds)
    reach = 1.3 * _ESTATE_SPACING / resolution
    angle = rng.uniform(0, np.pi, n).astype(np.float32)
    length = rng.uniform(*_BLOCK_LENGTH, n).astype(np.float32) / np.float32(resolution)
    n_blocks = int(np.ceil(2 * reach / length.min())) + 2
    width = rng.uniform(*_STRIP_WIDTH, (n, n_blocks)).astype(np.float32) / np.float32(resolution)
    n_strips = int(np.ceil(2 * reach / width.min())) + 2
    phase = rng.random((n, 1 + n_blocks)).astype(np.float32)

    seed_rows, seed_cols = seeds.astype(np.float32).T
    rows = np.arange(estate.shape[0], dtype=np.float32)[:, None] - seed_rows[estate]
    cols = np.arange(estate.shape[1], dtype=np.float32)[None, :] - seed_cols[estate]
    cos, sin = np.cos(angle)[estate], np.sin(angle)[estate]
    along = cols * cos + rows * sin
    across = rows * cos - cols * sin
    del rows, cols, cos, sin
    block = _bin(along / length[estate] + phase[estate, 0], n_blocks)
    block += estate * n_blocks
    strip = _bin(across / width.ravel()[block] + phase[:, 1:].ravel()[block], n_strips)
    return block.astype(np.int64) * n_strips + strip, n * n_blocks * n_strips


def _bin(position: np.ndarray, n: int) -> np.ndarray:
    """Integer bin of centred ``position``, clipped to [0, n)."""
    index = np.floor(position).astype(np.int32)
    index += n // 2
    return np.clip(index, 0, n - 1, out=index)


def _roads(estate: np.ndarray, rng: np.random.Generator, resolution: float) -> np.ndarray:
    """One-pixel roads along a random share of the estate boundaries (10-15 m grids only)."""
    road = np.zeros(estate.shape, dtype=bool)
    if resolution > 15.0:
        return road
    draw = rng.random(int(estate.max()) + 1)
    for a, b, target in (
        (estate[:-1], estate[1:], road[:-1]),
        (estate[:, :-1], estate[:, 1:], road[:, :-1]),
    ):
        rows, cols = np.nonzero(a != b)
        low = np.minimum(a[rows, cols], b[rows, cols])
        high = np.maximum(a[rows, cols], b[rows, cols])
        chosen = (draw[low] + 0.618 * draw[high]) % 1.0 < _ROAD_SHARE
        target[rows[chosen], cols[chosen]] = True
    return road


def _forest(shape: tuple[int, int], rng: np.random.Generator, resolution: float) -> np.ndarray:
    """Irregular forest patches covering 10-25 % of the land."""
    scales = tuple(s / resolution for s in (1500.0, 500.0, 150.0))
    noise = _fractal_noise(shape, rng, scales, (1.0, 0.5, 0.25))
    share = rng.uniform(0.10, 0.25)
    threshold = np.quantile(_subsample(noise), 1.0 - share)
    return noise >= threshold


def _subsample(array: np.ndarray, size: int = 1_000_000) -> np.ndarray:
    step = max(1, int(np.sqrt(array.size / size)))
    return array[::step, ::step]


# --------------------------------------------------------------------------- water, settlements


def _river_line(
    rng: np.random.Generator,
    start: tuple[float, float],
    direction: float,
    span: tuple[float, float],
    resolution: float,
) -> np.ndarray:
    """Centre line (k, 2) in pixels of a meandering river through ``start``.

    The lateral offset sums a broad bend (km scale) and tighter meanders (hundreds of m).
    """
    along = np.arange(span[0], span[1], 0.25)
    offset = np.zeros_like(along)
    bends = ((400.0, rng.uniform(150.0, 500.0)), (80.0, rng.uniform(20.0, 80.0)))
    for knot_m, amplitude_m in bends:
        knot = knot_m / resolution
        wiggle = ndimage.gaussian_filter1d(rng.standard_normal(int(np.ptp(span) / knot) + 8), 2.0)
        wiggle /= max(float(np.abs(wiggle).max()), 1e-9)
        knots = knot * (np.arange(len(wiggle)) - 4) + span[0]
        offset += amplitude_m / resolution * np.interp(along, knots, wiggle)
    offset -= np.interp(0.0, along, offset)
    cos, sin = np.cos(direction), np.sin(direction)
    rows = start[0] + along * sin + offset * cos
    return np.stack([rows, start[1] + along * cos - offset * sin], 1)


def _stamp(mask: np.ndarray, line: np.ndarray, half_width: float) -> None:
    """Set the pixels within ``half_width`` pixels of the points of ``line``."""
    reach = int(np.ceil(half_width))
    dr, dc = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    disc = dr**2 + dc**2 <= max(half_width, 0.5) ** 2
    centre = np.rint(line).astype(np.int64)
    rows = (centre[:, 0:1] + dr[disc][None, :]).ravel()
    cols = (centre[:, 1:2] + dc[disc][None, :]).ravel()
    inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    mask[rows[inside], cols[inside]] = True


def _rivers(
    shape: tuple[int, int], rng: np.random.Generator, resolution: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a main river across the frame and its tributaries: (mask, centre-line points)."""
    mask = np.zeros(shape, dtype=bool)
    reach = float(np.hypot(*shape)) / 2 + 10
    centre = (
        shape[0] / 2 + rng.uniform(-0.2, 0.2) * shape[0],
        shape[1] / 2 + rng.uniform(-0.2, 0.2) * shape[1],
    )
    direction = rng.uniform(0, 2 * np.pi)
    main = _river_line(rng, centre, direction, (-reach, reach), resolution)
    _stamp(mask, main, rng.uniform(15.0, 40.0) / resolution)
    lines = [main]
    area_km2 = shape[0] * shape[1] * resolution**2 / 1e6
    for _ in range(rng.poisson(area_km2 / 300.0)):
        start = main[rng.integers(len(main))]
        turn = direction + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2) + rng.choice([0, np.pi])
        line = _river_line(rng, (start[0], start[1]), turn, (0.0, 2 * reach), resolution)
        _stamp(mask, line, rng.uniform(6.0, 15.0) / resolution)
        lines.append(line)
    return mask, np.concatenate(lines)


def _blob(
    mask: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], radius: float
) -> None:
    """Set an irregular round patch of ``radius`` pixels around ``centre`` in ``mask``."""
    reach = int(np.ceil(1.5 * radius)) + 1
    r0, c0 = max(int(centre[0]) - reach, 0), max(int(centre[1]) - reach, 0)
    r1, c1 = (
        min(int(centre[0]) + reach + 1, mask.shape[0]),
        min(int(centre[1]) + reach + 1, mask.shape[1]),
    )
    if r1 <= r0 or c1 <= c0:
        return
    rows = np.arange(r0, r1)[:, None] - centre[0]
    cols = np.arange(c0, c1)[None, :] - centre[1]
    box = (r1 - r0, c1 - c0)
    wobble = 0.3 * smooth_noise(box, rng, scale_px=max(radius / 3.0, 1.0))
    wobble += 0.12 * smooth_noise(box, rng, scale_px=max(radius / 10.0, 1.0))
    mask[r0:r1, c0:c1] |= np.hypot(rows, cols) / radius + wobble < 1.0


def _lakes(shape: tuple[int, int], rng: np.random.Generator, resolution: float) -> np.ndarray:
    """Draw a few lakes and ponds of 100-400 m radius."""
    mask = np.zeros(shape, dtype=bool)
    area_km2 = shape[0] * shape[1] * resolution**2 / 1e6
    for _ in range(rng.poisson(max(area_km2 / 60.0, 0.5))):
        centre = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
        _blob(mask, rng, centre, rng.uniform(100.0, 400.0) / resolution)
    return mask


def _settlements(shape: tuple[int, int], rng: np.random.Generator, resolution: float) -> np.ndarray:
    """Villages (200-450 m radius, about one per 15 km²) and, in large worlds, a town."""
    mask = np.zeros(shape, dtype=bool)
    area_km2 = shape[0] * shape[1] * resolution**2 / 1e6
    radii = list(rng.uniform(200.0, 450.0, max(1, rng.poisson(area_km2 / 15.0))))
    if area_km2 > 50:
        radii.append(rng.uniform(700.0, 1300.0))
    for radius in radii:
        centre = (rng.uniform(0.1, 0.9) * shape[0], rng.uniform(0.1, 0.9) * shape[1])
        _blob(mask, rng, centre, radius / resolution)
    return mask


# --------------------------------------------------------------------------- assembly


def make_landscape(
    shape: tuple[int, int], rng: np.random.Generator, *, resolution: float = 10.0
) -> Landscape:
    """Make a temperate European agricultural landscape.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (rows, columns); rows grow southward.
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same landscape.
    resolution : float, optional
        Pixel size in metres (10 by default, Sentinel-2's finest).

    Returns
    -------
    Landscape
        Cover, field ids, within-field texture and the field table.

    Raises
    ------
    InputError
        If ``shape`` is not two positive integers or ``resolution`` is not positive.
    """
    _check_shape(shape)
    if not resolution > 0:
        raise InputError(f"resolution must be a positive number of metres, got {resolution}.")
    shape = (int(shape[0]), int(shape[1]))
    estate, seeds = _estates(shape, rng, _ESTATE_SPACING / resolution)
    key, n_base = _strips(estate, seeds, rng, resolution)
    masks = _overlays(shape, rng, resolution, estate)
    key = _apply_overlays(key, estate, masks, n_base, len(seeds))
    field_id, keys = _compact(key)
    n_pixels = np.bincount(field_id.ravel(), minlength=len(keys))
    cover = _field_covers(
        keys,
        n_base,
        len(seeds),
        n_pixels,
        rng,
        _near_river(field_id, len(keys), masks["river_line"], resolution),
    )
    fields = _field_table(cover, n_pixels, _field_estate(keys, n_base, len(seeds)), len(seeds), rng)
    texture = _texture(shape, rng, resolution)
    return Landscape(cover[field_id], field_id, texture, fields, float(resolution))


def _overlays(
    shape: tuple[int, int], rng: np.random.Generator, resolution: float, estate: np.ndarray
) -> dict[str, np.ndarray]:
    """Masks of forest, roads, settlements, rivers and lakes (and the river centre lines)."""
    forest = _forest(shape, rng, resolution)
    road = _roads(estate, rng, resolution)
    built = _settlements(shape, rng, resolution)
    river, line = _rivers(shape, rng, resolution)
    lake = _lakes(shape, rng, resolution)
    return {
        "forest": forest,
        "road": road,
        "built": built,
        "river": river,
        "lake": lake,
        "river_line": line,
    }


def _apply_overlays(
    key: np.ndarray, estate: np.ndarray, masks: dict[str, np.ndarray], n_base: int, n_estates: int
) -> np.ndarray:
    """Give overlay pixels their keys; later overlays win (water over settlements over ...).

    Keys: [0, n) farmland fields; [n, 2n) the settled parts of farmland fields;
    2n + estate: forest stands; then the rivers, the lakes and the roads. Settlements
    clear the forest; roads cross both; water comes last.
    """
    special_key = 2 * n_base + n_estates
    np.copyto(key, key + n_base, where=masks["built"])
    np.copyto(key, 2 * n_base + estate, where=masks["forest"] & ~masks["built"])
    np.copyto(key, special_key + 2, where=masks["road"])
    np.copyto(key, special_key + 1, where=masks["lake"])
    np.copyto(key, special_key, where=masks["river"])
    return key


def _compact(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber keys to 0..n-1 in key order: (field id per pixel, key of each field)."""
    used = np.zeros(int(key.max()) + 1, dtype=bool)
    used[key.ravel()] = True
    ids = np.cumsum(used, dtype=np.int32) - 1
    return ids[key], np.flatnonzero(used)


def _field_estate(keys: np.ndarray, n_base: int, n_estates: int) -> np.ndarray:
    """Estate of each field (its own for farmland and forest, 0 for water and roads)."""
    per_estate = n_base // n_estates
    estate = np.where(keys < 2 * n_base, (keys % n_base) // per_estate, keys - 2 * n_base)
    return np.where(keys >= 2 * n_base + n_estates, 0, estate)


def _near_river(
    field_id: np.ndarray, n_fields: int, line: np.ndarray, resolution: float
) -> np.ndarray:
    """Whether each field's centroid (estimated on every 4th pixel) is in a floodplain."""
    step = 4
    sample = field_id[::step, ::step]
    rows, cols = np.indices(sample.shape)
    ids = sample.ravel()
    count = np.bincount(ids, minlength=n_fields)
    centroid = np.stack(
        [
            np.bincount(ids, rows.ravel(), n_fields) * step / np.maximum(count, 1),
            np.bincount(ids, cols.ravel(), n_fields) * step / np.maximum(count, 1),
        ],
        1,
    )
    distance, _ = spatial.cKDTree(line[::8]).query(centroid)
    return np.asarray((count > 0) & (distance * resolution < _RIVER_FLOODPLAIN_M))


def _field_covers(
    keys: np.ndarray,
    n_base: int,
    n_estates: int,
    n_pixels: np.ndarray,
    rng: np.random.Generator,
    floodplain: np.ndarray,
) -> np.ndarray:
    """Cover of each field: drawn for farmland, fixed for the overlays."""
    special = 2 * n_base + n_estates
    farm = keys < n_base
    cover = np.select(
        [farm, keys < 2 * n_base, keys < special, keys == special, keys == special + 1],
        [0, Cover.BUILT, Cover.FOREST, Cover.WATER, Cover.WATER],
        Cover.BUILT,
    ).astype(np.uint8)
    drawn = rng.choice(np.array(_FARM_COVERS, dtype=np.uint8), size=len(keys), p=_FARM_SHARES)
    meadow = floodplain & (rng.random(len(keys)) < 0.6)
    drawn[meadow] = Cover.GRASSLAND
    cover[farm] = drawn[farm]
    _ensure_every_farm_cover(cover, farm & (n_pixels >= np.median(n_pixels[farm])), rng)
    return cover


def _ensure_every_farm_cover(
    cover: np.ndarray, eligible: np.ndarray, rng: np.random.Generator
) -> None:
    """Give each missing farmland cover to a random eligible field (in place).

    Only fields whose cover is shared by another field are taken, so no cover vanishes.
    """
    for wanted in _FARM_COVERS:
        counts = np.bincount(cover, minlength=max(Cover) + 1)
        if counts[wanted]:
            continue
        candidates = np.flatnonzero(eligible & (counts[cover] >= 2))
        if len(candidates):
            cover[rng.choice(candidates)] = wanted


def _texture(shape: tuple[int, int], rng: np.random.Generator, resolution: float) -> np.ndarray:
    """Smooth multiplicative LAI variation, mean 1, about ±12 % (one standard deviation)."""
    noise = _fractal_noise(shape, rng, (80.0 / resolution, 250.0 / resolution), (0.7, 1.0))
    noise *= np.float32(0.12)
    noise += np.float32(1.0)
    return np.clip(noise, 0.6, 1.4, out=noise)


# --------------------------------------------------------------------------- field parameters


def _field_table(
    cover: np.ndarray,
    n_pixels: np.ndarray,
    estate: np.ndarray,
    n_estates: int,
    rng: np.random.Generator,
) -> FieldTable:
    """Draw the canopy, soil and phenology parameters of every field."""
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
    is_crop = np.isin(cover, [c for c in _FARM_COVERS if c not in (Cover.GRASSLAND, Cover.BARE)])
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


# --------------------------------------------------------------------------- phenology


def day_of_year(date: DateLike) -> float:
    """Day of year (1 on 1 January) of a date, with the time of day as a fraction.

    Parameters
    ----------
    date : datetime.date, datetime.datetime, numpy.datetime64 or str
        The date; strings are ISO 8601 (``"2024-05-15"``).

    Returns
    -------
    float
        Day of year in [1, 367).

    Raises
    ------
    InputError
        If ``date`` is none of the accepted types or not a valid date.
    """
    moment = _to_datetime(date)
    start = dt.datetime(moment.year, 1, 1, tzinfo=moment.tzinfo)
    return 1.0 + (moment - start).total_seconds() / 86400.0


def _to_datetime(date: DateLike) -> dt.datetime:
    if isinstance(date, dt.datetime):
        return date
    if isinstance(date, dt.date):
        return dt.datetime(date.year, date.month, date.day)
    try:
        if isinstance(date, str):
            return dt.datetime.fromisoformat(date)
        if isinstance(date, np.datetime64) and not np.isnat(date):
            return _to_datetime(date.astype("datetime64[us]").item())
    except (ValueError, OverflowError) as err:
        raise InputError(f"could not read {date!r} as a date; use ISO 'YYYY-MM-DD'.") from err
    raise InputError(
        f"expected a date (datetime.date, numpy.datetime64 or 'YYYY-MM-DD'), got {date!r}."
    )


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


def lai_map(landscape: Landscape, date: DateLike) -> np.ndarray:
    """Return the true LAI of every pixel at a date: field LAI times the texture.

    Parameters
    ----------
    landscape : Landscape
        The landscape.
    date : datetime.date, numpy.datetime64 or str
        The date.

    Returns
    -------
    numpy.ndarray
        float32 (H, W) LAI in m²/m², >= 0 and exactly 0 on water.
    """
    per_field = field_lai(landscape.fields, date)
    lai = per_field[landscape.field_id]
    lai *= landscape.texture
    lai[landscape.cover == Cover.WATER] = 0.0
    return np.clip(lai, 0.0, None, out=lai)
