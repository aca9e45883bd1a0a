"""A :class:`Tile` of a grid: the unit of planning, STAC search, resumption and bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from affine import Affine
from odc.geo.geobox import GeoBox

from lamap._inputs import BBox
from lamap.errors import GridError
from lamap.grid._checks import is_int
from lamap.grid.crs import Bounds
from lamap.grid.window import Window

if TYPE_CHECKING:
    from lamap.grid.lattice import Grid

__all__ = ["Tile"]


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
            if not is_int(index) or not 0 <= index < count:
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
        return Window.from_slices(*self.grid.tiling.roi[self.row, self.col])

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the tile (smaller than the tile edge for partial tiles)."""
        return self.window.shape

    @property
    def geobox(self) -> GeoBox:
        """The tile as an odc-geo GeoBox (e.g. for ``odc.stac.load(..., geobox=...)``)."""
        return self.grid.window_geobox(self.window)

    @property
    def bounds(self) -> Bounds:
        """``(xmin, ymin, xmax, ymax)`` of the tile in the grid CRS, metres."""
        return self.grid.window_bounds(self.window)

    @property
    def transform(self) -> Affine:
        """Affine transform of the tile's pixel array."""
        return self.geobox.affine

    def lonlat_bounds(self) -> BBox:
        """Return the tile's lon/lat envelope, edges densified: the STAC search bbox."""
        return self.grid.bounds_to_lonlat(self.bounds)

    def with_halo(self, pixels: int) -> Window:
        """Return the tile window grown by a halo on every side.

        The result is not clipped: at the grid edge it extends beyond the grid (negative
        starts, stops past the shape), because input imagery exists there and the network
        needs it. :meth:`Grid.window_geobox`, :meth:`Grid.window_bounds` and
        :meth:`Grid.window_transform` give its geometry, :meth:`Window.relative_to` crops
        the tile back out.
        """
        return self.window.grow(pixels)

    def shards(self) -> list[Window]:
        """Return the shard windows inside the tile, row-major (clipped at the grid edge)."""
        return self.window.split(self.grid.shard)

    def __repr__(self) -> str:
        """Return ``Tile('r0012c0034', grid='europe')``."""
        return f"Tile({self.id!r}, grid={self.grid.name!r})"
