"""The output grid: one fixed pixel lattice per store, with its tiles, shards and chunks.

A :class:`Grid` is a north-up, pixel-is-area lattice of square pixels in a projected CRS
with metre units. Its upper-left corner, ``origin``, lies on a multiple of the resolution.
Three nested block edges, all in pixels and all counted from the origin, partition it:

``chunk``
    the inner Zarr chunk and the dask chunk of stored arrays: the unit of reading;
``shard``
    the Zarr v3 shard, a multiple of ``chunk``: the unit of writing. Dask write blocks
    are aligned with shards, so no two tasks ever write the same shard;
``tile``
    a multiple of ``shard``: the unit of planning, STAC search, resumption and
    bookkeeping (a :class:`Tile`).

So a tile holds whole shards and a shard whole chunks. Where the grid shape is not a
multiple of a block edge, the blocks at the right and bottom edges are partial: their
windows are clipped to the grid.

Lon/lat bounding boxes are normalised once, at the boundary, by :func:`lamap._inputs.as_bbox` into a
:class:`BBox`; everything inward takes exact types. Pixel windows are :class:`Window`
objects in grid pixel indices (row 0 at the top, column 0 at the left).

Presets live in :data:`GRIDS`; :func:`get_grid` resolves a preset name, a UTM zone name such
as ``"utm32n"`` or a JSON file written from :meth:`Grid.to_dict`, and :func:`resolve_grid`
implements the command-line choice between ``--grid``, ``--crs`` and ``--resolution``.

The ``europe`` preset
---------------------
EPSG:3035 (ETRS89-extended / LAEA Europe) at 10 m on the extent of the EEA reference grid
used by the Copernicus Land Monitoring Service for its EEA39 products (CORINE Land Cover
rasters, High Resolution Layers): x 900 000 to 7 400 000 m, y 900 000 to 5 500 000 m, that is
65 000 x 46 000 pixels at 100 m, or 460 000 rows x 650 000 columns at 10 m. Its pixels
coincide with those of the CLMS 10 m layers. It covers the EEA39 countries from the Azores,
Madeira and the Canary Islands to eastern Türkiye, Cyprus and Iceland, and the lon/lat
envelope of the grid is roughly 56.5° W to 72.9° E, 24.3° N to 72.6° N. Svalbard (y above
6 000 000 m) lies outside it, as in the CLMS products.

Block edges: chunk 500 px (5 km), shard 1000 px (10 km), tile 2000 px (20 km).

* All three nest in the EEA reference grid: a shard is one EEA 10 km cell, a tile 2 x 2 of
  them, and 5 x 5 tiles make one EEA 100 km cell, since the origin is a multiple of 100 km.
* A 500 px chunk of float32 LAI is 1 MB before compression: small enough for a point or
  time-series read (``ds.lai.sel(x=..., y=..., method="nearest")`` reads one chunk per
  date), large enough not to flood an object store with tiny objects.
* A 1000 px shard is one 4 MB write per date and variable (before compression).
* A 2000 px tile is 4 Mpx: a field-scale request computes at most a few tiles, the halo of
  the network (about 42 px, MODEL.md) adds about 10 % per tile, losing a tile to a crash
  loses little work, and the full extent has 230 x 325 = 74 750 tiles, few enough for a
  bookkeeping array.
* Every block offset is a multiple of 500, hence of the network's down-sampling factor 4,
  which the seamless-tiling contract requires.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, TypeGuard

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

from lamap._inputs import BBox, BBoxLike, as_bbox, is_real
from lamap.errors import GridError

__all__ = [
    "DEFAULT_GRID",
    "EUROPE",
    "GRIDS",
    "Bounds",
    "CRSLike",
    "Grid",
    "Snap",
    "Tile",
    "Window",
    "get_grid",
    "normalise_crs",
    "resolve_grid",
]

#: Anything :func:`normalise_crs` accepts: an EPSG code, an authority string, WKT, PROJ.
CRSLike: TypeAlias = "int | str | CRS"
#: Projected bounds ``(xmin, ymin, xmax, ymax)`` in the grid CRS, metres.
Bounds: TypeAlias = tuple[float, float, float, float]
#: The block edge a window is snapped outward to.
Snap: TypeAlias = Literal["pixel", "chunk", "shard", "tile"]

#: Default block edges in pixels (see the module docstring).
DEFAULT_CHUNK = 500
DEFAULT_SHARD = 1000
DEFAULT_TILE = 2000

_LONLAT = "EPSG:4326"
_DENSIFY = 21
# A coordinate within this many pixels of a pixel edge is on that edge (float noise).
_EPS = 1e-6
_UTM_NAME = re.compile(r"^utm(\d{1,2})([ns])$")
_TILE_ID = re.compile(r"^r(\d+)c(\d+)$")


# --------------------------------------------------------------------------- small helpers


def _is_int(value: object) -> TypeGuard[int]:
    """Integers, NumPy's included, but not bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _floor(value: float) -> int:
    """Floor, treating values within ``_EPS`` of an integer as that integer."""
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < _EPS else math.floor(value)


def _ceil(value: float) -> int:
    """Ceil, treating values within ``_EPS`` of an integer as that integer."""
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < _EPS else math.ceil(value)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _fmt(value: float) -> str:
    return format(value, ".10g")


def _extent_text(bounds: Sequence[float]) -> str:
    west, south, east, north = bounds
    return f"lon {west:.2f} to {east:.2f}, lat {south:.2f} to {north:.2f}"


# ---------------------------------------------------------------------------------- CRS


def normalise_crs(crs: CRSLike) -> str:
    """Return the canonical text of a projected, metre-based CRS.

    Parameters
    ----------
    crs : int or str or pyproj.CRS
        An EPSG code (``3035``), an authority string (``"EPSG:3035"``), WKT or a PROJ string.

    Returns
    -------
    str
        ``"EPSG:<code>"`` where the CRS is exactly an EPSG CRS, its WKT2 otherwise.

    Raises
    ------
    GridError
        If pyproj does not understand it, or it is not projected in metres.
    """
    if isinstance(crs, CRS):
        return _normalise_parsed(crs, crs.name)
    return _normalise_text(crs)


@lru_cache(maxsize=256)
def _normalise_text(crs: int | str) -> str:
    try:
        parsed = CRS.from_user_input(crs)
    except (CRSError, TypeError) as err:
        raise GridError(
            f"crs {crs!r} is not a coordinate reference system pyproj understands ({err}): "
            "give an EPSG code such as 'EPSG:3035' or 'EPSG:32632'"
        ) from None
    return _normalise_parsed(parsed, str(crs))


def _normalise_parsed(parsed: CRS, label: str) -> str:
    if not parsed.is_projected:
        kind = "geographic (degrees)" if parsed.is_geographic else "not projected"
        raise GridError(
            f"crs {label} is {kind}: a lamap grid needs a projected CRS in metres, such as "
            "EPSG:3035 (Europe) or a UTM zone (EPSG:326NN north, EPSG:327NN south)"
        )
    units = sorted({axis.unit_name for axis in parsed.axis_info} - {"metre", "meter"})
    if units:
        raise GridError(
            f"crs {label} has axes in {', '.join(units)}: a lamap grid needs a projected CRS "
            "in metres, such as EPSG:3035 or a UTM zone (EPSG:326NN)"
        )
    authority = parsed.to_authority(min_confidence=100)
    if authority is not None and authority[0] == "EPSG":
        return f"EPSG:{authority[1]}"
    return str(parsed.to_wkt())


@lru_cache(maxsize=256)
def _pyproj_crs(crs: str) -> CRS:
    return CRS.from_user_input(crs)


@lru_cache(maxsize=256)
def _transformer(source: str, target: str) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def _transform_bounds(source: str, target: str, bounds: Sequence[float]) -> Bounds:
    """Transform bounds, densifying edges; raise GridError where PROJ cannot."""
    transformer = _transformer(source, target)
    left, bottom, right, top = bounds
    try:
        result = transformer.transform_bounds(left, bottom, right, top, densify_pts=_DENSIFY)
    except ProjError as err:
        raise GridError(
            f"bounds {tuple(bounds)} cannot be transformed from {_crs_label(source)} to "
            f"{_crs_label(target)} ({err})"
        ) from None
    if not all(math.isfinite(value) for value in result):
        raise GridError(
            f"bounds {tuple(bounds)} cannot be transformed from {_crs_label(source)} to "
            f"{_crs_label(target)}: part of them lies where that projection is undefined"
        )
    return (float(result[0]), float(result[1]), float(result[2]), float(result[3]))


def _crs_label(crs: str) -> str:
    return crs if crs.startswith("EPSG:") else str(_pyproj_crs(crs).name)


# ------------------------------------------------------------------------------- Window


@dataclass(frozen=True)
class Window:
    """A non-empty rectangle of grid pixels, ``[row_start, row_stop) x [col_start, col_stop)``.

    Indices count from the grid's upper-left pixel. Starts may be negative and stops may
    exceed the grid shape (a window grown by a halo at the grid edge); such a window cannot
    be turned into array slices.

    Parameters
    ----------
    row_start, row_stop, col_start, col_stop : int
        Half-open pixel ranges with ``start < stop``.

    Raises
    ------
    GridError
        If an index is not an integer or a range is empty.
    """

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    def __post_init__(self) -> None:
        """Validate and convert to Python ints."""
        for name in ("row_start", "row_stop", "col_start", "col_stop"):
            value = getattr(self, name)
            if not _is_int(value):
                raise GridError(f"window {name} {value!r} is not an integer pixel index")
            object.__setattr__(self, name, int(value))
        if self.row_stop <= self.row_start or self.col_stop <= self.col_start:
            raise GridError(
                f"window rows {self.row_start}:{self.row_stop}, cols "
                f"{self.col_start}:{self.col_stop} is empty: each stop must exceed its start"
            )

    @property
    def height(self) -> int:
        """Number of rows."""
        return self.row_stop - self.row_start

    @property
    def width(self) -> int:
        """Number of columns."""
        return self.col_stop - self.col_start

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.height, self.width)

    def to_slices(self) -> tuple[slice, slice]:
        """Return ``(rows, cols)`` slices for indexing a grid-shaped array.

        Raises
        ------
        GridError
            If the window starts before the grid (negative index), which NumPy would
            silently read from the other end.
        """
        if self.row_start < 0 or self.col_start < 0:
            raise GridError(
                f"{self} starts before the grid, so it cannot index an array: "
                "clip it to the grid first (Window.intersection with grid.window)"
            )
        return (slice(self.row_start, self.row_stop), slice(self.col_start, self.col_stop))

    def intersection(self, other: Window) -> Window | None:
        """Return the overlap of two windows, or None if they do not overlap."""
        rows = (max(self.row_start, other.row_start), min(self.row_stop, other.row_stop))
        cols = (max(self.col_start, other.col_start), min(self.col_stop, other.col_stop))
        if rows[0] >= rows[1] or cols[0] >= cols[1]:
            return None
        return Window(rows[0], rows[1], cols[0], cols[1])

    def contains(self, other: Window) -> bool:
        """Return whether ``other`` lies entirely inside this window."""
        return (
            self.row_start <= other.row_start
            and other.row_stop <= self.row_stop
            and self.col_start <= other.col_start
            and other.col_stop <= self.col_stop
        )

    def grow(self, pixels: int) -> Window:
        """Return the window enlarged by ``pixels`` on every side (not clipped)."""
        if not _is_int(pixels) or pixels < 0:
            raise GridError(f"halo {pixels!r} must be a non-negative number of pixels")
        return Window(
            self.row_start - pixels,
            self.row_stop + pixels,
            self.col_start - pixels,
            self.col_stop + pixels,
        )

    def snap(self, edge: int) -> Window:
        """Return the smallest window of whole ``edge``-sized blocks containing this one.

        Blocks are counted from pixel 0, as grid chunks, shards and tiles are.
        """
        return Window(
            (self.row_start // edge) * edge,
            _ceil_div(self.row_stop, edge) * edge,
            (self.col_start // edge) * edge,
            _ceil_div(self.col_stop, edge) * edge,
        )

    def is_aligned(self, edge: int, shape: tuple[int, int] | None = None) -> bool:
        """Return whether the window's edges fall on multiples of ``edge``.

        Parameters
        ----------
        edge : int
            Block edge in pixels.
        shape : tuple of int, optional
            Grid shape; a stop equal to it counts as aligned (partial edge blocks).
        """
        rows, cols = shape if shape is not None else (None, None)
        return (
            self.row_start % edge == 0
            and self.col_start % edge == 0
            and (self.row_stop % edge == 0 or self.row_stop == rows)
            and (self.col_stop % edge == 0 or self.col_stop == cols)
        )

    def split(self, edge: int) -> list[Window]:
        """Return the parts of this window in each ``edge``-sized block, row-major.

        Blocks are counted from pixel 0; parts at the window's sides may be partial.
        """
        outer = self.snap(edge)
        parts = []
        for row in range(outer.row_start, outer.row_stop, edge):
            for col in range(outer.col_start, outer.col_stop, edge):
                part = self.intersection(Window(row, row + edge, col, col + edge))
                if part is not None:
                    parts.append(part)
        return parts

    def relative_to(self, outer: Window) -> Window:
        """Return this window in the pixel indices of ``outer`` (e.g. a tile inside its halo)."""
        return Window(
            self.row_start - outer.row_start,
            self.row_stop - outer.row_start,
            self.col_start - outer.col_start,
            self.col_stop - outer.col_start,
        )

    def __str__(self) -> str:
        """Return ``"window rows a:b, cols c:d"``."""
        return (
            f"window rows {self.row_start}:{self.row_stop}, cols {self.col_start}:{self.col_stop}"
        )


# --------------------------------------------------------------------------------- Grid


def _check_resolution(resolution: object) -> float:
    if not is_real(resolution) or not math.isfinite(resolution) or resolution <= 0:
        raise GridError(
            f"grid resolution {resolution!r} must be a positive number of metres, e.g. 10"
        )
    return float(resolution)


def _check_origin(origin: object, resolution: float) -> tuple[float, float]:
    if not isinstance(origin, Sequence | np.ndarray) or len(origin) != 2:
        raise GridError(
            f"grid origin {origin!r} must be two numbers (x_min, y_max) in metres: the "
            "upper-left corner of the upper-left pixel"
        )
    for axis, value in zip(("x", "y"), origin, strict=True):
        if not is_real(value) or not math.isfinite(value):
            raise GridError(f"grid origin {axis} {value!r} is not a finite number of metres")
        steps = value / resolution
        if abs(steps - round(steps)) > _EPS:
            raise GridError(
                f"grid origin {axis} {_fmt(value)} m is not a multiple of the resolution "
                f"{_fmt(resolution)} m: use {_fmt(math.floor(steps) * resolution)} or "
                f"{_fmt(math.ceil(steps) * resolution)}, so pixels line up across stores"
            )
    return (float(origin[0]), float(origin[1]))


def _check_shape(shape: object) -> tuple[int, int]:
    if not isinstance(shape, Sequence | np.ndarray) or len(shape) != 2:
        raise GridError(f"grid shape {shape!r} must be two integers (rows, cols)")
    for axis, value in zip(("rows", "cols"), shape, strict=True):
        if not _is_int(value) or value <= 0:
            raise GridError(f"grid shape {axis} {value!r} must be a positive integer")
    return (int(shape[0]), int(shape[1]))


def _check_block(name: str, value: object) -> int:
    if not _is_int(value) or value <= 0:
        raise GridError(f"grid {name} {value!r} must be a positive integer number of pixels")
    return int(value)


def _check_blocks(chunk_: object, shard_: object, tile_: object) -> None:
    chunk, shard = _check_block("chunk", chunk_), _check_block("shard", shard_)
    tile = _check_block("tile", tile_)
    if shard % chunk:
        raise GridError(
            f"grid shard {shard} px is not a multiple of the chunk {chunk} px: a Zarr shard "
            f"holds whole chunks; choose e.g. shard {_ceil_div(shard, chunk) * chunk} px"
        )
    if tile % shard:
        raise GridError(
            f"grid tile {tile} px is not a multiple of the shard {shard} px: a tile must hold "
            f"whole shards so that no two tiles write one shard; choose e.g. tile "
            f"{_ceil_div(tile, shard) * shard} px"
        )


@dataclass(frozen=True)
class Grid:
    """The output grid of a store: a north-up, pixel-is-area lattice of square pixels.

    Parameters
    ----------
    crs : str
        Projected CRS in metres; any :data:`CRSLike` is accepted and normalised to
        ``"EPSG:<code>"`` (or WKT2 where no EPSG code matches exactly).
    resolution : float
        Pixel edge in metres.
    origin : tuple of float
        ``(x_min, y_max)``, the upper-left corner of the upper-left pixel, in metres; each a
        multiple of ``resolution``.
    shape : tuple of int
        ``(rows, cols)`` of the whole grid.
    chunk, shard, tile : int
        Block edges in pixels: the Zarr/dask chunk, the Zarr shard (a multiple of ``chunk``,
        the unit of writing) and the tile (a multiple of ``shard``, the unit of planning,
        search, resumption and bookkeeping).
    name : str
        Label for messages; not part of equality, so a grid read back from a store equals
        the preset it came from.

    Raises
    ------
    GridError
        If any parameter is invalid; the message names it and how to fix it.

    Examples
    --------
    >>> grid = get_grid("europe")
    >>> [tile.id for tile in grid.tiles_for_bbox("11.0,48.0,11.1,48.05")]
    ['r0136c0174', 'r0136c0175']
    """

    crs: str
    resolution: float
    origin: tuple[float, float]
    shape: tuple[int, int]
    chunk: int = DEFAULT_CHUNK
    shard: int = DEFAULT_SHARD
    tile: int = DEFAULT_TILE
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        """Validate and normalise (CRS text, floats, int tuples)."""
        object.__setattr__(self, "crs", normalise_crs(self.crs))
        object.__setattr__(self, "resolution", _check_resolution(self.resolution))
        object.__setattr__(self, "origin", _check_origin(self.origin, self.resolution))
        object.__setattr__(self, "shape", _check_shape(self.shape))
        _check_blocks(self.chunk, self.shard, self.tile)
        if not isinstance(self.name, str) or not self.name:
            raise GridError(f"grid name {self.name!r} must be a non-empty string")

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_bounds(
        cls,
        bounds: Sequence[float],
        *,
        crs: CRSLike,
        resolution: float = 10.0,
        chunk: int = DEFAULT_CHUNK,
        shard: int = DEFAULT_SHARD,
        tile: int = DEFAULT_TILE,
        name: str = "custom",
    ) -> Grid:
        """Define a grid covering projected bounds, snapped outward to whole tiles.

        The origin is a multiple of the tile edge in metres, so grids of one CRS and
        resolution built from different bounds share their pixels and tile boundaries.

        Parameters
        ----------
        bounds : sequence of float
            ``(xmin, ymin, xmax, ymax)`` in ``crs`` metres.
        crs : int or str or pyproj.CRS
            Projected CRS in metres.
        resolution : float
            Pixel edge in metres.
        chunk, shard, tile : int
            Block edges in pixels (see :class:`Grid`).
        name : str
            Label for messages.

        Returns
        -------
        Grid

        Raises
        ------
        GridError
            If the bounds or any grid parameter is invalid.
        """
        xmin, ymin, xmax, ymax = _check_bounds(bounds)
        res = _check_resolution(resolution)
        _check_blocks(chunk, shard, tile)
        step = tile * res
        x0, y1 = _floor(xmin / step) * step, _ceil(ymax / step) * step
        cols = _ceil((xmax - x0) / step) * tile
        rows = _ceil((y1 - ymin) / step) * tile
        return cls(normalise_crs(crs), res, (x0, y1), (rows, cols), chunk, shard, tile, name)

    @classmethod
    def from_bbox(
        cls,
        bbox: BBoxLike,
        *,
        crs: CRSLike,
        resolution: float = 10.0,
        chunk: int = DEFAULT_CHUNK,
        shard: int = DEFAULT_SHARD,
        tile: int = DEFAULT_TILE,
        name: str = "custom",
    ) -> Grid:
        """Define a grid covering a lon/lat bbox (edges densified), snapped to whole tiles.

        Parameters
        ----------
        bbox : str or sequence of float or BBox
            ``W,S,E,N`` in degrees.
        crs, resolution, chunk, shard, tile, name
            As for :meth:`from_bounds`.

        Returns
        -------
        Grid

        Raises
        ------
        GridError
            If the bbox is invalid or cannot be projected, or a grid parameter is invalid.
        """
        target = normalise_crs(crs)
        bounds = _transform_bounds(_LONLAT, target, as_bbox(bbox).to_tuple())
        return cls.from_bounds(
            bounds,
            crs=target,
            resolution=resolution,
            chunk=chunk,
            shard=shard,
            tile=tile,
            name=name,
        )

    @classmethod
    def from_crs(
        cls,
        crs: CRSLike,
        *,
        resolution: float = 10.0,
        chunk: int = DEFAULT_CHUNK,
        shard: int = DEFAULT_SHARD,
        tile: int = DEFAULT_TILE,
        name: str | None = None,
    ) -> Grid:
        """Define a grid covering a CRS's area of use (what ``--crs`` gives).

        Parameters
        ----------
        crs : int or str or pyproj.CRS
            Projected CRS in metres with a known area of use (all EPSG CRSs have one).
        resolution, chunk, shard, tile
            As for :meth:`from_bounds`.
        name : str, optional
            Label for messages; defaults to the CRS (e.g. ``"EPSG:32632"``).

        Returns
        -------
        Grid

        Raises
        ------
        GridError
            If the CRS is invalid, has no area of use, or its area crosses the antimeridian.
        """
        target = normalise_crs(crs)
        area = _pyproj_crs(target).area_of_use
        if area is None:
            raise GridError(
                f"crs {_crs_label(target)} has no area of use to take the grid extent from: "
                "define the grid with Grid.from_bbox(bbox, crs=...) instead"
            )
        if area.west >= area.east:
            raise GridError(
                f"the area of use of crs {_crs_label(target)} crosses the antimeridian, "
                "which lamap grids do not support: define the grid with Grid.from_bbox"
            )
        bbox = BBox(area.west, area.south, area.east, area.north)
        return cls.from_bbox(
            bbox,
            crs=target,
            resolution=resolution,
            chunk=chunk,
            shard=shard,
            tile=tile,
            name=name or _crs_label(target),
        )

    @classmethod
    def utm(
        cls,
        zone: int,
        *,
        south: bool = False,
        resolution: float = 10.0,
        chunk: int = DEFAULT_CHUNK,
        shard: int = DEFAULT_SHARD,
        tile: int = DEFAULT_TILE,
    ) -> Grid:
        """Define the grid of one WGS 84 UTM zone (EPSG:326NN or 327NN), named ``utmNNn``/``s``.

        Parameters
        ----------
        zone : int
            UTM zone, 1 to 60.
        south : bool
            Southern hemisphere (EPSG:327NN) rather than northern (EPSG:326NN).
        resolution, chunk, shard, tile
            As for :meth:`from_bounds`.

        Returns
        -------
        Grid

        Raises
        ------
        GridError
            If the zone is not an integer from 1 to 60.
        """
        if not _is_int(zone) or not 1 <= zone <= 60:
            raise GridError(f"UTM zone {zone!r} must be an integer from 1 to 60")
        epsg = (32700 if south else 32600) + int(zone)
        return cls.from_crs(
            epsg,
            resolution=resolution,
            chunk=chunk,
            shard=shard,
            tile=tile,
            name=f"utm{int(zone)}{'s' if south else 'n'}",
        )

    def with_resolution(self, resolution: float) -> Grid:
        """Return the same extent at another resolution, with the same block edges in pixels.

        Parameters
        ----------
        resolution : float
            New pixel edge in metres; the grid's width and height and its origin must be
            multiples of it.

        Returns
        -------
        Grid
            ``self`` if the resolution is unchanged, else a grid named ``"<name>-<res>m"``.

        Raises
        ------
        GridError
            If the extent is not a whole number of new pixels.
        """
        res = _check_resolution(resolution)
        if res == self.resolution:
            return self
        rows, cols = (size * self.resolution / res for size in self.shape)
        if abs(rows - round(rows)) > _EPS or abs(cols - round(cols)) > _EPS:
            raise GridError(
                f"the extent of grid {self.label} ({self.shape[1] * self.resolution:g} x "
                f"{self.shape[0] * self.resolution:g} m) is not a whole number of "
                f"{_fmt(res)} m pixels: choose a resolution that divides it"
            )
        return Grid(
            self.crs,
            res,
            self.origin,
            (round(rows), round(cols)),
            self.chunk,
            self.shard,
            self.tile,
            f"{self.name}-{_fmt(res)}m",
        )

    # ----------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description that :meth:`from_dict` reads back exactly."""
        return {
            "name": self.name,
            "crs": self.crs,
            "resolution": self.resolution,
            "origin": list(self.origin),
            "shape": list(self.shape),
            "chunk": self.chunk,
            "shard": self.shard,
            "tile": self.tile,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grid:
        """Build a grid from :meth:`to_dict` output (e.g. a store's attributes).

        Raises
        ------
        GridError
            If keys are missing or unknown, or the values are invalid.
        """
        if not isinstance(data, Mapping):
            raise GridError(f"grid description {data!r} is not a mapping (a JSON object)")
        required = {"crs", "resolution", "origin", "shape", "chunk", "shard", "tile"}
        missing, unknown = required - set(data), set(data) - required - {"name"}
        if missing or unknown:
            raise GridError(
                f"grid description has missing keys {sorted(missing)} and unknown keys "
                f"{sorted(unknown)}: expected {sorted(required | {'name'})}, as written "
                "by Grid.to_dict()"
            )
        return cls(
            data["crs"],
            data["resolution"],
            tuple(data["origin"]),
            tuple(data["shape"]),
            data["chunk"],
            data["shard"],
            data["tile"],
            data.get("name", "custom"),
        )

    def check_same(self, other: Grid, *, what: str = "the store") -> None:
        """Raise unless ``other`` describes the same pixels and blocks as this grid.

        Names are ignored; CRSs are compared by equivalence.

        Parameters
        ----------
        other : Grid
            The grid requested now.
        what : str
            What this grid belongs to, for the message.

        Raises
        ------
        GridError
            Listing every difference.
        """
        differences = [
            f"{name} {getattr(other, name)!r} (requested) != {getattr(self, name)!r} ({what})"
            for name in ("resolution", "origin", "shape", "chunk", "shard", "tile")
            if getattr(other, name) != getattr(self, name)
        ]
        if other.crs != self.crs and not self.pyproj_crs.equals(other.pyproj_crs):
            differences.insert(0, f"crs {other.crs_label} (requested) != {self.crs_label} ({what})")
        if differences:
            raise GridError(
                f"the requested grid {other.label} differs from the grid {self.label} of "
                f"{what}: {'; '.join(differences)}. Leave out --grid/--crs/--resolution to "
                f"use the grid of {what}, or write to a new store"
            )

    # ----------------------------------------------------------------- geometry

    @property
    def pyproj_crs(self) -> CRS:
        """The CRS as a :class:`pyproj.CRS` (parsed once per process)."""
        return _pyproj_crs(self.crs)

    @property
    def epsg(self) -> int | None:
        """The EPSG code, or None for a CRS without one."""
        return int(self.crs[5:]) if self.crs.startswith("EPSG:") else None

    @property
    def crs_label(self) -> str:
        """Short CRS text for messages: ``"EPSG:3035"`` or the CRS name."""
        return _crs_label(self.crs)

    @property
    def label(self) -> str:
        """``'name' (crs, resolution)``, for messages."""
        return f"'{self.name}' ({self.crs_label}, {_fmt(self.resolution)} m)"

    @property
    def transform(self) -> Affine:
        """Affine transform from (col, row) pixel indices to x, y (pixel corners)."""
        x0, y0 = self.origin
        return Affine(self.resolution, 0.0, x0, 0.0, -self.resolution, y0)

    @property
    def bounds(self) -> Bounds:
        """``(xmin, ymin, xmax, ymax)`` of the whole grid in metres."""
        return self.window_bounds(self.window)

    @property
    def window(self) -> Window:
        """The window of the whole grid."""
        return Window(0, self.shape[0], 0, self.shape[1])

    @property
    def tiles_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the tile lattice (edge tiles may be partial)."""
        return (_ceil_div(self.shape[0], self.tile), _ceil_div(self.shape[1], self.tile))

    @property
    def n_tiles(self) -> int:
        """Number of tiles in the whole grid."""
        rows, cols = self.tiles_shape
        return rows * cols

    def lonlat_extent(self) -> Bounds:
        """Return the lon/lat envelope ``(west, south, east, north)`` of the grid, densified."""
        return _lonlat_extent(self)

    def block(self, unit: Snap) -> int:
        """Return the edge in pixels of a block unit (``"pixel"`` is 1)."""
        sizes = {"pixel": 1, "chunk": self.chunk, "shard": self.shard, "tile": self.tile}
        if unit not in sizes:
            raise GridError(f"block unit {unit!r} must be one of {sorted(sizes)}")
        return sizes[unit]

    def window_bounds(self, window: Window) -> Bounds:
        """Return ``(xmin, ymin, xmax, ymax)`` of a window's outer pixel edges, in metres."""
        x0, y0 = self.origin
        res = self.resolution
        return (
            x0 + window.col_start * res,
            y0 - window.row_stop * res,
            x0 + window.col_stop * res,
            y0 - window.row_start * res,
        )

    def window_transform(self, window: Window) -> Affine:
        """Return the affine transform of a window: the grid's, translated to its corner."""
        return self.transform @ Affine.translation(window.col_start, window.row_start)

    def x_coords(self, window: Window) -> np.ndarray:
        """Return the x of the window's pixel centres (float64, increasing).

        A pixel gets the same float whatever window it is read through.
        """
        return self.origin[0] + (np.arange(window.col_start, window.col_stop) + 0.5) * (
            self.resolution
        )

    def y_coords(self, window: Window) -> np.ndarray:
        """Return the y of the window's pixel centres (float64, decreasing: north-up)."""
        return self.origin[1] - (np.arange(window.row_start, window.row_stop) + 0.5) * (
            self.resolution
        )

    def is_aligned(self, window: Window, unit: Snap = "shard") -> bool:
        """Return whether a window inside the grid falls on whole ``unit`` blocks.

        A stop at the grid's last row or column counts as aligned (partial edge blocks).
        A region write into the store must be shard-aligned.
        """
        return self.window.contains(window) and window.is_aligned(self.block(unit), self.shape)

    def bounds_to_lonlat(self, bounds: Sequence[float]) -> BBox:
        """Return the lon/lat envelope of projected bounds, edges densified (for STAC search).

        Raises
        ------
        GridError
            If the envelope crosses the antimeridian or cannot be computed.
        """
        lonlat = _transform_bounds(self.crs, _LONLAT, bounds)
        if lonlat[0] >= lonlat[2]:
            raise GridError(
                f"bounds {tuple(bounds)} in grid {self.label} cross the antimeridian (180°), "
                "which lamap does not support: use a grid that keeps the area on one side"
            )
        return as_bbox(lonlat)

    # ----------------------------------------------------------------- bbox -> windows/tiles

    def project_bbox(self, bbox: BBoxLike) -> Bounds:
        """Return the envelope of a lon/lat bbox in the grid CRS, edges densified.

        Raises
        ------
        GridError
            If the bbox is invalid or cannot be projected to the grid CRS.
        """
        return _transform_bounds(_LONLAT, self.crs, as_bbox(bbox).to_tuple())

    def window_for_bounds(self, bounds: Sequence[float], *, snap: Snap = "pixel") -> Window:
        """Return the grid window covering projected bounds, clipped to the grid.

        Parameters
        ----------
        bounds : sequence of float
            ``(xmin, ymin, xmax, ymax)`` in the grid CRS.
        snap : {"pixel", "chunk", "shard", "tile"}
            Block edge to snap the window outward to before clipping.

        Returns
        -------
        Window
            Every pixel the bounds touch, inside the grid.

        Raises
        ------
        GridError
            If the bounds do not overlap the grid.
        """
        window = self._clipped(self._raw_window(_check_bounds(bounds)), snap)
        if window is None:
            raise GridError(
                f"bounds {tuple(bounds)} lie outside the grid {self.label}, whose bounds are "
                f"{self.bounds}: choose bounds inside it or another grid"
            )
        return window

    def window_for_bbox(self, bbox: BBoxLike, *, snap: Snap = "pixel") -> Window:
        """Return the grid window covering a lon/lat bbox, clipped to the grid.

        The bbox is projected with densified edges (:meth:`project_bbox`), so the window
        covers its curved outline; the part of the bbox outside the grid is dropped.

        Parameters
        ----------
        bbox : str or sequence of float or BBox
            ``W,S,E,N`` in degrees.
        snap : {"pixel", "chunk", "shard", "tile"}
            Block edge to snap the window outward to before clipping.

        Returns
        -------
        Window

        Raises
        ------
        GridError
            If the bbox is invalid or lies outside the grid.
        """
        box = as_bbox(bbox)
        window = self._clipped(self._raw_window(self.project_bbox(box)), snap)
        if window is None:
            raise GridError(
                f"bbox {box} lies outside the grid {self.label}, lon/lat extent "
                f"{_extent_text(self.lonlat_extent())}: choose another --grid (or --crs) that "
                "covers it, or a bbox inside that extent"
            )
        return window

    def tiles_for_window(self, window: Window) -> list[Tile]:
        """Return the tiles a window touches, sorted by (row, col); empty if outside."""
        inside = window.intersection(self.window)
        if inside is None:
            return []
        rows = range(inside.row_start // self.tile, _ceil_div(inside.row_stop, self.tile))
        cols = range(inside.col_start // self.tile, _ceil_div(inside.col_stop, self.tile))
        return [Tile(self, row, col) for row in rows for col in cols]

    def tiles_for_bbox(self, bbox: BBoxLike) -> list[Tile]:
        """Return the tiles a lon/lat bbox touches, sorted by (row, col).

        Raises
        ------
        GridError
            If the bbox is invalid or lies outside the grid.
        """
        return self.tiles_for_window(self.window_for_bbox(bbox))

    def get_tile(self, row: int, col: int) -> Tile:
        """Return the tile at a tile-lattice position (see :attr:`tiles_shape`)."""
        return Tile(self, row, col)

    def tile_from_id(self, tile_id: str) -> Tile:
        """Return the tile with a :attr:`Tile.id` such as ``"r0012c0034"``.

        Raises
        ------
        GridError
            If the id is malformed or outside the grid.
        """
        match = _TILE_ID.match(tile_id) if isinstance(tile_id, str) else None
        if match is None:
            raise GridError(f"tile id {tile_id!r} is not of the form 'r0012c0034'")
        return Tile(self, int(match[1]), int(match[2]))

    def iter_tiles(self) -> Iterator[Tile]:
        """Yield every tile of the grid in (row, col) order."""
        rows, cols = self.tiles_shape
        for row in range(rows):
            for col in range(cols):
                yield Tile(self, row, col)

    def _raw_window(self, bounds: Bounds) -> Window:
        xmin, ymin, xmax, ymax = bounds
        x0, y0 = self.origin
        res = self.resolution
        row_start, col_start = _floor((y0 - ymax) / res), _floor((xmin - x0) / res)
        row_stop = max(_ceil((y0 - ymin) / res), row_start + 1)
        col_stop = max(_ceil((xmax - x0) / res), col_start + 1)
        return Window(row_start, row_stop, col_start, col_stop)

    def _clipped(self, window: Window, snap: Snap) -> Window | None:
        return window.snap(self.block(snap)).intersection(self.window)

    def __str__(self) -> str:
        """Return a one-line description."""
        return (
            f"grid {self.label}: {self.shape[0]} x {self.shape[1]} px, origin "
            f"({_fmt(self.origin[0])}, {_fmt(self.origin[1])}), chunk {self.chunk}, "
            f"shard {self.shard}, tile {self.tile} px"
        )


def _check_bounds(bounds: Sequence[float]) -> Bounds:
    values = list(bounds) if isinstance(bounds, Sequence | np.ndarray) else []
    if len(values) != 4 or not all(is_real(v) and math.isfinite(v) for v in values):
        raise GridError(
            f"bounds {bounds!r} must be four finite numbers (xmin, ymin, xmax, ymax) in metres"
        )
    xmin, ymin, xmax, ymax = (float(v) for v in values)
    if xmin >= xmax or ymin >= ymax:
        raise GridError(
            f"bounds {tuple(values)} are empty or inverted: need xmin < xmax and ymin < ymax"
        )
    return (xmin, ymin, xmax, ymax)


@lru_cache(maxsize=64)
def _lonlat_extent(grid: Grid) -> Bounds:
    return _transform_bounds(grid.crs, _LONLAT, grid.bounds)


# --------------------------------------------------------------------------------- Tile


@dataclass(frozen=True, repr=False)
class Tile:
    """One tile of a grid: the unit of planning, STAC search, resumption and bookkeeping.

    Tiles at the right and bottom edge are partial when the grid shape is not a multiple
    of the tile edge: their window is clipped to the grid.

    Parameters
    ----------
    grid : Grid
        The grid the tile belongs to.
    row, col : int
        Position in the tile lattice, ``0 <= row < grid.tiles_shape[0]`` (same for col).

    Raises
    ------
    GridError
        If the position is outside the tile lattice.
    """

    grid: Grid
    row: int
    col: int

    def __post_init__(self) -> None:
        """Validate the position against the grid's tile lattice."""
        for axis, index, count in zip(
            ("row", "col"), (self.row, self.col), self.grid.tiles_shape, strict=True
        ):
            if not _is_int(index) or not 0 <= index < count:
                raise GridError(
                    f"tile {axis} {index!r} is outside the grid {self.grid.label}, which has "
                    f"{count} tile {axis}s (0 to {count - 1})"
                )
            object.__setattr__(self, axis, int(index))

    @property
    def id(self) -> str:
        """Stable, sortable id such as ``"r0012c0034"`` (zero-padded to at least 4 digits)."""
        width = max(4, len(str(max(self.grid.tiles_shape) - 1)))
        return f"r{self.row:0{width}d}c{self.col:0{width}d}"

    @property
    def window(self) -> Window:
        """The tile's pixels in the grid, clipped at the grid edge."""
        size, (rows, cols) = self.grid.tile, self.grid.shape
        return Window(
            self.row * size,
            min((self.row + 1) * size, rows),
            self.col * size,
            min((self.col + 1) * size, cols),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the tile (smaller than the tile edge for partial tiles)."""
        return self.window.shape

    @property
    def bounds(self) -> Bounds:
        """``(xmin, ymin, xmax, ymax)`` of the tile in the grid CRS, metres."""
        return self.grid.window_bounds(self.window)

    @property
    def transform(self) -> Affine:
        """Affine transform of the tile's pixel array."""
        return self.grid.window_transform(self.window)

    def lonlat_bounds(self) -> BBox:
        """Return the tile's lon/lat envelope, edges densified: the STAC search bbox."""
        return self.grid.bounds_to_lonlat(self.bounds)

    def with_halo(self, pixels: int) -> Window:
        """Return the tile window grown by a halo on every side.

        The result is not clipped: at the grid edge it extends beyond the grid (negative
        starts, stops past the shape), because input imagery exists there and the network
        needs it. Use :meth:`Grid.window_bounds` and :meth:`Grid.window_transform` for its
        geometry and :meth:`Window.relative_to` to crop the tile back out.
        """
        return self.window.grow(pixels)

    def shards(self) -> list[Window]:
        """Return the shard windows inside the tile, row-major (clipped at the grid edge)."""
        return self.window.split(self.grid.shard)

    def __repr__(self) -> str:
        """Return ``Tile('r0012c0034', grid='europe')``."""
        return f"Tile({self.id!r}, grid={self.grid.name!r})"


# ------------------------------------------------------------------------------ presets

#: The EEA39 grid: EPSG:3035, 10 m, EEA reference grid extent (see the module docstring).
EUROPE = Grid(
    crs="EPSG:3035",
    resolution=10.0,
    origin=(900_000.0, 5_500_000.0),
    shape=(460_000, 650_000),
    chunk=DEFAULT_CHUNK,
    shard=DEFAULT_SHARD,
    tile=DEFAULT_TILE,
    name="europe",
)

#: Named grid presets.
GRIDS: Mapping[str, Grid] = MappingProxyType({"europe": EUROPE})

#: The grid used when none is given.
DEFAULT_GRID = "europe"


def get_grid(name_or_path: str | Path) -> Grid:
    """Return a grid by preset name, UTM zone name or JSON file.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A key of :data:`GRIDS` (``"europe"``), ``"utmNNn"``/``"utmNNs"`` for a WGS 84 UTM zone
        (e.g. ``"utm32n"``), or a ``.json`` file holding :meth:`Grid.to_dict` output.

    Returns
    -------
    Grid

    Raises
    ------
    GridError
        If the name is unknown or the file cannot be read as a grid.
    """
    text = str(name_or_path)
    if text in GRIDS:
        return GRIDS[text]
    match = _UTM_NAME.match(text.lower())
    if match is not None:
        return Grid.utm(int(match[1]), south=match[2] == "s")
    path = Path(text)
    if path.suffix == ".json" and path.is_file():
        return _read_grid_json(path)
    raise GridError(
        f"unknown grid {text!r}: use one of {sorted(GRIDS)}, a UTM zone such as 'utm32n' or "
        "'utm33s', or the path of a .json file written from Grid.to_dict()"
    )


def _read_grid_json(path: Path) -> Grid:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise GridError(f"cannot read grid file {path}: {err}") from err
    return Grid.from_dict(data)


def resolve_grid(
    *,
    grid: str | Path | None = None,
    crs: CRSLike | None = None,
    resolution: float | None = None,
) -> Grid:
    """Choose the grid from the command-line options ``--grid``, ``--crs``, ``--resolution``.

    Parameters
    ----------
    grid : str or pathlib.Path, optional
        A name or file for :func:`get_grid`; :data:`DEFAULT_GRID` when neither it nor
        ``crs`` is given.
    crs : int or str or pyproj.CRS, optional
        A projected CRS; the grid covers its area of use (:meth:`Grid.from_crs`).
    resolution : float, optional
        Pixel edge in metres: overrides the grid's (:meth:`Grid.with_resolution`) or sets
        the ``crs`` grid's (10 m by default).

    Returns
    -------
    Grid

    Raises
    ------
    GridError
        If both ``grid`` and ``crs`` are given, or either is invalid.
    """
    if grid is not None and crs is not None:
        raise GridError(
            f"give either --grid ({grid}) or --crs ({crs}), not both: --grid names a whole "
            "grid, --crs defines one over the CRS's area of use"
        )
    if crs is not None:
        return Grid.from_crs(crs, resolution=10.0 if resolution is None else resolution)
    chosen = get_grid(DEFAULT_GRID if grid is None else grid)
    return chosen if resolution is None else chosen.with_resolution(resolution)
