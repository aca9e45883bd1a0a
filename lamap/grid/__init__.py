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

The geometry underneath is odc-geo's (the library under odc-stac): a grid is a
:class:`~odc.geo.geobox.GeoBox` (:attr:`Grid.geobox`), its tile lattice a
:class:`~odc.geo.geobox.GeoboxTiles` (:attr:`Grid.tiling`), a tile or a tile with its halo
a GeoBox cropped or padded from the grid's (:attr:`Tile.geobox`, :meth:`Grid.window_geobox`),
and CRSs are parsed and transformed through :class:`odc.geo.crs.CRS`. lamap keeps what is
its own: the chunk/shard/tile nesting, tile ids, the presets with the EEA39 extent, and
error messages that say what to fix.

Lon/lat bounding boxes are normalised once, at the boundary, by :func:`lamap._inputs.as_bbox`
into a :class:`~lamap._inputs.BBox`; everything inward takes exact types. Pixel windows are
:class:`Window` objects in grid pixel indices (row 0 at the top, column 0 at the left).

Presets live in :data:`GRIDS` (the ``europe`` grid is described in
:mod:`lamap.grid.presets`); :func:`get_grid` resolves a preset name, a UTM zone name such as
``"utm32n"`` or a JSON file written from :meth:`Grid.to_dict`, and :func:`resolve_grid`
implements the command-line choice between ``--grid``, ``--crs`` and ``--resolution``.
"""

from __future__ import annotations

from lamap.grid.crs import Bounds, CRSLike, normalise_crs
from lamap.grid.lattice import DEFAULT_CHUNK as DEFAULT_CHUNK  # default block edges, in px
from lamap.grid.lattice import DEFAULT_SHARD as DEFAULT_SHARD
from lamap.grid.lattice import DEFAULT_TILE as DEFAULT_TILE
from lamap.grid.lattice import Grid, Snap
from lamap.grid.presets import DEFAULT_GRID, EUROPE, GRIDS, get_grid, resolve_grid
from lamap.grid.tile import Tile
from lamap.grid.window import Window

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
