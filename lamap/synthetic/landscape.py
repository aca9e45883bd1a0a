"""The landscape of the synthetic world: land cover, fields and their LAI on any day.

The landscape is a temperate European farmland mosaic at about 48.7°N (the Upper Rhine,
Swabia, Lower Austria): "estates" (Voronoi cells of about 1.5 km, each with its own
ploughing direction) cut into blocks and strips of typical field sizes (1–20 ha), with
roads along some estate boundaries, irregular deciduous forests, a meandering river with
tributaries, lakes, villages and sometimes a town. Every pixel belongs to one field (or
patch), and every field has its land cover, canopy and soil parameters and phenology.

This module lays out the land (:func:`make_landscape`) and maps the LAI of a day
(:func:`lai_map`). The fields' covers, parameters and seasons are drawn and evaluated in
:mod:`lamap.synthetic.phenology`, the smooth random fields come from
:mod:`lamap.synthetic.noise`; their public names can be imported from here too.

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

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage, spatial

from lamap.errors import InputError
from lamap.synthetic.noise import check_shape, fractal_noise, smooth_noise
from lamap.synthetic.phenology import (
    CROP_CALENDAR,
    FARM_COVERS,
    Cover,
    CropCalendar,
    DateLike,
    FieldTable,
    day_of_year,
    draw_fields,
    field_lai,
)

__all__ = [
    "CROP_CALENDAR",
    "CROP_MIXES",
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

#: Shares of the farmland covers: a cereal-dominated rotation with maize, oilseeds,
#: sugar beet, permanent grassland and some fallow, as in south-west Germany / Alsace.
_FARM_SHARES: Final = (0.28, 0.18, 0.06, 0.10, 0.06, 0.22, 0.10)
#: Crop mixes by name: shares of the farmland covers in :data:`FARM_COVERS` order (wheat,
#: maize, sunflower, rapeseed, sugar beet, grassland, bare). ``default`` is the demo
#: world's; the others are rough regional caricatures for a family of worlds.
CROP_MIXES: Final = {
    "default": _FARM_SHARES,
    "cereal": (0.42, 0.08, 0.02, 0.18, 0.10, 0.12, 0.08),  # Paris basin, Saxony
    "maize": (0.18, 0.38, 0.10, 0.04, 0.04, 0.18, 0.08),  # Po valley, Aquitaine
    "grassland": (0.14, 0.14, 0.00, 0.04, 0.04, 0.58, 0.06),  # Ireland, the Netherlands
    "steppe": (0.26, 0.24, 0.24, 0.08, 0.02, 0.08, 0.08),  # Pannonian and Danube plains
}


# Sizes of the layout, in metres.
_ESTATE_SPACING: Final = 1500.0
_BLOCK_LENGTH: Final = (280.0, 520.0)
_STRIP_WIDTH: Final = (80.0, 320.0)
_ROAD_SHARE: Final = 0.6
_RIVER_FLOODPLAIN_M: Final = 250.0


# --------------------------------------------------------------------------- the landscape


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
    estate: np.ndarray, seeds: np.ndarray, rng: np.random.Generator, resolution: float,
    scale: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Cut each estate into blocks and strips along its own direction: (key, n_keys)."""
    n = len(seeds)
    reach = 1.3 * _ESTATE_SPACING * scale / resolution
    angle = rng.uniform(0, np.pi, n).astype(np.float32)
    block_length, strip_width = _scaled(_BLOCK_LENGTH, scale), _scaled(_STRIP_WIDTH, scale)
    length = rng.uniform(*block_length, n).astype(np.float32) / np.float32(resolution)
    n_blocks = int(np.ceil(2 * reach / length.min())) + 2
    width = rng.uniform(*strip_width, (n, n_blocks)).astype(np.float32) / np.float32(resolution)
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


def _scaled(bounds: tuple[float, float], scale: float) -> tuple[float, float]:
    """Return a size range in metres times ``scale`` (the same floats for 1)."""
    return bounds if scale == 1.0 else (bounds[0] * scale, bounds[1] * scale)


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
    noise = fractal_noise(shape, rng, scales, (1.0, 0.5, 0.25))
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
    shape: tuple[int, int], rng: np.random.Generator, *, resolution: float = 10.0,
    field_scale: float = 1.0, crops: str = "default",
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
    field_scale : float, optional
        Multiplies the sizes of estates, blocks and strips (1: fields of 0.2-2 ha to a few
        ha, as in south-west Germany; 2: twice as long and wide).
    crops : str, optional
        A crop mix of :data:`CROP_MIXES`.

    Returns
    -------
    Landscape
        Cover, field ids, within-field texture and the field table.

    Raises
    ------
    InputError
        If ``shape`` is not two positive integers, ``resolution`` or ``field_scale`` is not
        positive, or ``crops`` is not a known mix.
    """
    check_shape(shape)
    if not resolution > 0 or not field_scale > 0:
        raise InputError(f"resolution ({resolution}) and field_scale ({field_scale}) must be "
                         "positive numbers.")
    if crops not in CROP_MIXES:
        raise InputError(f"unknown crop mix {crops!r}: use one of {sorted(CROP_MIXES)}.")
    shape = (int(shape[0]), int(shape[1]))
    estate, seeds = _estates(shape, rng, _ESTATE_SPACING * field_scale / resolution)
    key, n_base = _strips(estate, seeds, rng, resolution, field_scale)
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
        CROP_MIXES[crops],
    )
    fields = draw_fields(cover, n_pixels, _field_estate(keys, n_base, len(seeds)), len(seeds), rng)
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
    shares: tuple[float, ...] = _FARM_SHARES,
) -> np.ndarray:
    """Cover of each field: drawn for farmland, fixed for the overlays."""
    special = 2 * n_base + n_estates
    farm = keys < n_base
    cover = np.select(
        [farm, keys < 2 * n_base, keys < special, keys == special, keys == special + 1],
        [0, Cover.BUILT, Cover.FOREST, Cover.WATER, Cover.WATER],
        Cover.BUILT,
    ).astype(np.uint8)
    drawn = rng.choice(np.array(FARM_COVERS, dtype=np.uint8), size=len(keys), p=shares)
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
    for wanted in FARM_COVERS:
        counts = np.bincount(cover, minlength=max(Cover) + 1)
        if counts[wanted]:
            continue
        candidates = np.flatnonzero(eligible & (counts[cover] >= 2))
        if len(candidates):
            cover[rng.choice(candidates)] = wanted


def _texture(shape: tuple[int, int], rng: np.random.Generator, resolution: float) -> np.ndarray:
    """Smooth multiplicative LAI variation, mean 1, about ±12 % (one standard deviation)."""
    noise = fractal_noise(shape, rng, (80.0 / resolution, 250.0 / resolution), (0.7, 1.0))
    noise *= np.float32(0.12)
    noise += np.float32(1.0)
    return np.clip(noise, 0.6, 1.4, out=noise)


# --------------------------------------------------------------------------- LAI map


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
