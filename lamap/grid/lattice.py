"""The :class:`Grid`: a store's pixel lattice and its chunk ⊆ shard ⊆ tile nesting.

The geometry is odc-geo's: :attr:`Grid.geobox` is the whole grid as a GeoBox (shape, affine,
CRS), :meth:`Grid.window_geobox` the GeoBox of any window (a tile, a tile with its halo) and
:attr:`Grid.tiling` the tile lattice as GeoboxTiles. Window bounds and pixel-centre
coordinates stay lamap's arithmetic, counted from the grid origin rather than from a
window's corner, so that an edge or a centre is the same float through any window; windows
for bounds snap with a tolerance of 1e-6 pixel (float noise), which ``GeoBox.enclosing``
lacks.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, TypeAlias, TypedDict, Unpack

import numpy as np
import pyproj
from affine import Affine
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.geom import BoundingBox

from lamap._inputs import BBox, BBoxLike, as_bbox
from lamap.errors import GridError
from lamap.grid import _checks as check
from lamap.grid.crs import (
    LONLAT,
    Bounds,
    CRSLike,
    crs_label,
    normalise_crs,
    parse_crs,
    transform_bounds,
)
from lamap.grid.tile import Tile
from lamap.grid.window import Window

__all__ = ["DEFAULT_CHUNK", "DEFAULT_SHARD", "DEFAULT_TILE", "Grid", "GridBlocks", "Snap"]

#: The block edge a window is snapped outward to.
Snap: TypeAlias = Literal["pixel", "chunk", "shard", "tile"]

#: Default block edges in pixels (see :mod:`lamap.grid.presets`).
DEFAULT_CHUNK = 500
DEFAULT_SHARD = 1000
DEFAULT_TILE = 2000

_TILE_ID = re.compile(r"^r(\d+)c(\d+)$")


class GridBlocks(TypedDict, total=False):
    """Keyword options of the grid constructors, as for :meth:`Grid.from_bounds`."""

    resolution: float
    chunk: int
    shard: int
    tile: int


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
    >>> from lamap.grid import EUROPE
    >>> [tile.id for tile in EUROPE.tiles_for_bbox("11.0,48.0,11.1,48.05")]
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
        object.__setattr__(self, "resolution", check.check_resolution(self.resolution))
        object.__setattr__(self, "origin", check.check_origin(self.origin, self.resolution))
        object.__setattr__(self, "shape", check.check_shape(self.shape))
        check.check_blocks(self.chunk, self.shard, self.tile)
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
        crs, resolution, chunk, shard, tile, name
            As for :class:`Grid`.

        Raises
        ------
        GridError
            If the bounds or any grid parameter is invalid.
        """
        xmin, ymin, xmax, ymax = check.check_bounds(bounds)
        res = check.check_resolution(resolution)
        check.check_blocks(chunk, shard, tile)
        step = tile * res
        x0, y1 = check.floor(xmin / step) * step, check.ceil(ymax / step) * step
        cols = check.ceil((xmax - x0) / step) * tile
        rows = check.ceil((y1 - ymin) / step) * tile
        return cls(normalise_crs(crs), res, (x0, y1), (rows, cols), chunk, shard, tile, name)

    @classmethod
    def from_bbox(
        cls, bbox: BBoxLike, *, crs: CRSLike, name: str = "custom", **blocks: Unpack[GridBlocks]
    ) -> Grid:
        """Define a grid covering a lon/lat bbox ``W,S,E,N`` (edges densified), in whole tiles.

        Parameters are as for :meth:`from_bounds`.

        Raises
        ------
        GridError
            If the bbox is invalid or cannot be projected, or a grid parameter is invalid.
        """
        target = normalise_crs(crs)
        bounds = transform_bounds(LONLAT, target, as_bbox(bbox).to_tuple())
        return cls.from_bounds(bounds, crs=target, name=name, **blocks)

    @classmethod
    def from_crs(
        cls, crs: CRSLike, *, name: str | None = None, **blocks: Unpack[GridBlocks]
    ) -> Grid:
        """Define a grid covering a CRS's area of use (what ``--crs`` gives).

        Parameters are as for :meth:`from_bounds`; the name defaults to the CRS
        (``"EPSG:32632"``).

        Raises
        ------
        GridError
            If the CRS is invalid, has no area of use, or its area crosses the antimeridian.
        """
        target = normalise_crs(crs)
        area = parse_crs(target).proj.area_of_use
        if area is None:
            raise GridError(
                f"crs {crs_label(target)} has no area of use to take the grid extent from: "
                "define the grid with Grid.from_bbox(bbox, crs=...) instead"
            )
        if area.west >= area.east:
            raise GridError(
                f"the area of use of crs {crs_label(target)} crosses the antimeridian, "
                "which lamap grids do not support: define the grid with Grid.from_bbox"
            )
        bbox = BBox(area.west, area.south, area.east, area.north)
        return cls.from_bbox(bbox, crs=target, name=name or crs_label(target), **blocks)

    @classmethod
    def utm(cls, zone: int, *, south: bool = False, **blocks: Unpack[GridBlocks]) -> Grid:
        """Define the grid of WGS 84 UTM ``zone`` (EPSG:326NN, or 327NN if ``south``).

        The grid is named ``utmNNn`` or ``utmNNs``; block options are as for
        :meth:`from_bounds`.

        Raises
        ------
        GridError
            If the zone is not an integer from 1 to 60.
        """
        if not check.is_int(zone) or not 1 <= zone <= 60:
            raise GridError(f"UTM zone {zone!r} must be an integer from 1 to 60")
        epsg = (32700 if south else 32600) + int(zone)
        return cls.from_crs(epsg, name=f"utm{int(zone)}{'s' if south else 'n'}", **blocks)

    def with_resolution(self, resolution: float) -> Grid:
        """Return the same extent at another resolution, with the same block edges in pixels.

        The grid is ``self`` if the resolution is unchanged, else named ``"<name>-<res>m"``.

        Raises
        ------
        GridError
            If the extent is not a whole number of new pixels.
        """
        res = check.check_resolution(resolution)
        if res == self.resolution:
            return self
        rows, cols = (size * self.resolution / res for size in self.shape)
        if abs(rows - round(rows)) > check.EPS or abs(cols - round(cols)) > check.EPS:
            raise GridError(
                f"the extent of grid {self.label} ({self.shape[1] * self.resolution:g} x "
                f"{self.shape[0] * self.resolution:g} m) is not a whole number of "
                f"{check.fmt(res)} m pixels: choose a resolution that divides it"
            )
        shape, name = (round(rows), round(cols)), f"{self.name}-{check.fmt(res)}m"
        return Grid(self.crs, res, self.origin, shape, self.chunk, self.shard, self.tile, name)

    # ----------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description that :meth:`from_dict` reads back exactly."""
        keys = ("name", "crs", "resolution", "origin", "shape", "chunk", "shard", "tile")
        data = {key: getattr(self, key) for key in keys}
        return {**data, "origin": list(self.origin), "shape": list(self.shape)}

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
        values = {**data, "origin": tuple(data["origin"]), "shape": tuple(data["shape"])}
        return cls(**values)

    def check_same(self, other: Grid, *, what: str = "the store") -> None:
        """Raise unless ``other`` (requested now) has the same pixels and blocks as this grid.

        Names are ignored; CRSs are compared by equivalence; ``what`` names this grid's
        owner in the message.

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
        if other.crs != self.crs and parse_crs(other.crs) != parse_crs(self.crs):
            differences.insert(0, f"crs {other.crs_label} (requested) != {self.crs_label} ({what})")
        if differences:
            raise GridError(
                f"the requested grid {other.label} differs from the grid {self.label} of "
                f"{what}: {'; '.join(differences)}. Leave out --grid/--crs/--resolution to "
                f"use the grid of {what}, or write to a new store"
            )

    # ----------------------------------------------------------------- geometry

    @property
    def geobox(self) -> GeoBox:
        """The whole grid as an odc-geo GeoBox (built once per grid and process)."""
        return _geobox(self)

    @property
    def tiling(self) -> GeoboxTiles:
        """The tile lattice as odc-geo GeoboxTiles (edge tiles clipped to the grid)."""
        return _tiling(self)

    @property
    def pyproj_crs(self) -> pyproj.CRS:
        """The CRS as a :class:`pyproj.CRS` (parsed once per process)."""
        return parse_crs(self.crs).proj

    @property
    def epsg(self) -> int | None:
        """The EPSG code, or None for a CRS without one."""
        return int(self.crs[5:]) if self.crs.startswith("EPSG:") else None

    @property
    def crs_label(self) -> str:
        """Short CRS text for messages: ``"EPSG:3035"`` or the CRS name."""
        return crs_label(self.crs)

    @property
    def label(self) -> str:
        """``'name' (crs, resolution)``, for messages."""
        return f"'{self.name}' ({self.crs_label}, {check.fmt(self.resolution)} m)"

    @property
    def transform(self) -> Affine:
        """Affine transform from (col, row) pixel indices to x, y (pixel corners)."""
        return self.geobox.affine

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
        rows, cols = self.tiling.shape.yx
        return (rows, cols)

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

    def window_geobox(self, window: Window) -> GeoBox:
        """Return the GeoBox of a window, which may reach beyond the grid (a halo)."""
        corner = Affine.translation(window.col_start, window.row_start)
        return GeoBox(window.shape, self.transform @ corner, self.geobox.crs)

    def window_transform(self, window: Window) -> Affine:
        """Return the affine transform of a window: the grid's, translated to its corner."""
        return self.window_geobox(window).affine

    def window_bounds(self, window: Window) -> Bounds:
        """Return ``(xmin, ymin, xmax, ymax)`` of a window's outer pixel edges, in metres."""
        (x0, y0), res = self.origin, self.resolution
        return (
            x0 + window.col_start * res,
            y0 - window.row_stop * res,
            x0 + window.col_stop * res,
            y0 - window.row_start * res,
        )

    def x_coords(self, window: Window) -> np.ndarray:
        """Return the x of the window's pixel centres (float64, increasing)."""
        columns = np.arange(window.col_start, window.col_stop)
        return self.origin[0] + (columns + 0.5) * self.resolution

    def y_coords(self, window: Window) -> np.ndarray:
        """Return the y of the window's pixel centres (float64, decreasing: north-up)."""
        rows = np.arange(window.row_start, window.row_stop)
        return self.origin[1] - (rows + 0.5) * self.resolution

    def is_aligned(self, window: Window, unit: Snap = "shard") -> bool:
        """Return whether a window inside the grid falls on whole ``unit`` blocks.

        A stop at the grid's last row or column counts as aligned (partial edge blocks).
        A region write into the store must be shard-aligned.
        """
        return self.window.contains(window) and window.is_aligned(self.block(unit), self.shape)

    # ----------------------------------------------------------------- lon/lat, windows, tiles

    def bounds_to_lonlat(self, bounds: Sequence[float]) -> BBox:
        """Return the lon/lat envelope of projected bounds, edges densified (for STAC search).

        Raises
        ------
        GridError
            If the envelope crosses the antimeridian or cannot be computed.
        """
        lonlat = transform_bounds(self.crs, LONLAT, bounds)
        if lonlat[0] >= lonlat[2]:
            raise GridError(
                f"bounds {tuple(bounds)} in grid {self.label} cross the antimeridian (180°), "
                "which lamap does not support: use a grid that keeps the area on one side"
            )
        return as_bbox(lonlat)

    def project_bbox(self, bbox: BBoxLike) -> Bounds:
        """Return the envelope of a lon/lat bbox in the grid CRS, edges densified.

        Raises
        ------
        GridError
            If the bbox is invalid or cannot be projected to the grid CRS.
        """
        return transform_bounds(LONLAT, self.crs, as_bbox(bbox).to_tuple())

    def window_for_bounds(self, bounds: Sequence[float], *, snap: Snap = "pixel") -> Window:
        """Return the window of every pixel projected bounds touch, snapped, clipped to the grid.

        Parameters
        ----------
        bounds : sequence of float
            ``(xmin, ymin, xmax, ymax)`` in the grid CRS.
        snap : {"pixel", "chunk", "shard", "tile"}
            Block edge to snap the window outward to before clipping.

        Raises
        ------
        GridError
            If the bounds do not overlap the grid.
        """
        window = self._clipped(check.check_bounds(bounds), snap)
        if window is None:
            raise GridError(
                f"bounds {tuple(bounds)} lie outside the grid {self.label}, whose bounds are "
                f"{self.bounds}: choose bounds inside it or another grid"
            )
        return window

    def window_for_bbox(self, bbox: BBoxLike, *, snap: Snap = "pixel") -> Window:
        """Return the grid window covering a lon/lat bbox ``W,S,E,N``, clipped to the grid.

        The bbox is projected with densified edges (:meth:`project_bbox`), so the window
        covers its curved outline; ``snap`` is as for :meth:`window_for_bounds`.

        Raises
        ------
        GridError
            If the bbox is invalid or lies outside the grid.
        """
        box = as_bbox(bbox)
        window = self._clipped(self.project_bbox(box), snap)
        if window is None:
            west, south, east, north = self.lonlat_extent()
            raise GridError(
                f"bbox {box} lies outside the grid {self.label}, lon/lat extent lon "
                f"{west:.2f} to {east:.2f}, lat {south:.2f} to {north:.2f}: choose another "
                "--grid (or --crs) that covers it, or a bbox inside that extent"
            )
        return window

    def tiles_for_window(self, window: Window) -> list[Tile]:
        """Return the tiles a window touches, sorted by (row, col); empty if outside."""
        inside = window.intersection(self.window)
        if inside is None:
            return []
        pixels = BoundingBox(inside.col_start, inside.row_start, inside.col_stop, inside.row_stop)
        rows, cols = self.tiling.range_from_bbox(pixels)
        return [Tile(self, row, col) for row, col in itertools.product(rows, cols)]

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
        for row, col in itertools.product(range(rows), range(cols)):
            yield Tile(self, row, col)

    def _clipped(self, bounds: Bounds, snap: Snap) -> Window | None:
        """Return every pixel the bounds touch, snapped to ``snap`` blocks, inside the grid."""
        xmin, ymin, xmax, ymax = bounds
        (x0, y0), res = self.origin, self.resolution
        row_start, col_start = check.floor((y0 - ymax) / res), check.floor((xmin - x0) / res)
        row_stop = max(check.ceil((y0 - ymin) / res), row_start + 1)
        col_stop = max(check.ceil((xmax - x0) / res), col_start + 1)
        window = Window(row_start, row_stop, col_start, col_stop)
        return window.snap(self.block(snap)).intersection(self.window)

    def __str__(self) -> str:
        """Return a one-line description."""
        return (
            f"grid {self.label}: {self.shape[0]} x {self.shape[1]} px, origin "
            f"({check.fmt(self.origin[0])}, {check.fmt(self.origin[1])}), chunk {self.chunk}, "
            f"shard {self.shard}, tile {self.tile} px"
        )


@lru_cache(maxsize=64)
def _geobox(grid: Grid) -> GeoBox:
    (x0, y0), res = grid.origin, grid.resolution
    return GeoBox(grid.shape, Affine(res, 0.0, x0, 0.0, -res, y0), parse_crs(grid.crs))


@lru_cache(maxsize=64)
def _tiling(grid: Grid) -> GeoboxTiles:
    return GeoboxTiles(grid.geobox, (grid.tile, grid.tile))


@lru_cache(maxsize=64)
def _lonlat_extent(grid: Grid) -> Bounds:
    return transform_bounds(grid.crs, LONLAT, grid.bounds)
