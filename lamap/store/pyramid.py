"""The store's multiscale pyramid: its layout, creation, growth along time, and opening.

Level 0 is the store's own ``lai`` and ``source``; level ``k`` (1 … ``levels``) holds them
at ``2**k`` times the grid's pixel size, in the group ``overviews/<k>``::

    lai.zarr/
      zarr.json          root attributes gain "multiscales" and "zarr_conventions"
      overviews/         group: "lamap_pyramid" (chunk, shard, levels) and a description
        built/           0-d array; its folder holds the build markers
          <YYYY-MM-DD>/<tile id>.json    overviews above that tile are up to date
        1/ … L/          one group per level, each a dataset xr.open_zarr(group=...) reads:
          lai            float32 (time, y, x): NaN-aware mean of the level-0 pixels below
          source         uint8 (time, y, x): the most frequent level-0 flag (ties: higher)
          valid_count    level-0 pixels with an estimate below each pixel
          observed_count level-0 pixels observed (source 1) below each pixel
          x, y, time, spatial_ref

A level-``k`` pixel ``(i, j)`` covers the level-0 rows ``[i·2**k, (i+1)·2**k)`` and columns
alike (clipped at the grid's edge): pixel corners of every level fall on level-0 corners, so
the pyramid is north-up with the grid's origin. The two counts make a level exactly
computable from the level below it (a weighted mean and summed counts), which is what lets
a run update only the overview pixels above the tiles it wrote.

The layout follows the GeoZarr *multiscales* convention (zarr-conventions/multiscales
v0.1): the root's ``multiscales.layout`` lists ``lai`` and then ``overviews/<k>/lai``, each
``derived_from`` the level below with ``transform.scale`` ``[1, 2, 2]`` (time, y, x), plus
``proj:shape`` and ``proj:transform``. Level 0 stays the root's arrays (no 10 m copy, and
``xr.open_zarr(path)`` is unchanged); each level is a plain xarray dataset.

The driver creates and grows the pyramid (:func:`ensure_pyramid`); workers write it through
:class:`lamap.store.overviews.PyramidWriter`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from lamap.errors import StoreError
from lamap.grid import Grid
from lamap.store import concurrency
from lamap.store.laistore import LaiStore
from lamap.store.schema import array, commit, open_group

__all__ = [
    "COUNT_VARIABLES",
    "MULTISCALES_CONVENTION",
    "PYRAMID_GROUP",
    "PyramidSpec",
    "ensure_pyramid",
    "has_pyramid",
    "level_arrays",
    "level_group",
    "pyramid_spec",
]

#: The group holding the levels.
PYRAMID_GROUP = "overviews"
#: The 0-d array whose folder holds the build markers.
BUILT_NODE = f"{PYRAMID_GROUP}/built"
#: The per-level counts that make levels exactly computable from the level below.
COUNT_VARIABLES = ("valid_count", "observed_count")
#: The ``zarr_conventions`` entry of the GeoZarr multiscales convention.
MULTISCALES_CONVENTION = {
    "uuid": "d35379db-88df-4056-af3a-620245f8e347",
    "name": "multiscales",
    "schema_url": (
        "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v0.1/schema.json"
    ),
    "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v0.1/README.md",
    "description": "Multiscale layout of zarr datasets",
}
_DIMS = ("time", "y", "x")
_FLOATS = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
_INTS = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
#: Largest inner chunk edge of the levels; 256 px, the edge of a web map tile.
MAX_CHUNK = 256


@dataclass(frozen=True)
class PyramidSpec:
    """How a store's pyramid is cut.

    Parameters
    ----------
    levels : int
        Number of overview levels (level ``k`` has pixels ``2**k`` times larger).
    chunk : int
        Inner chunk edge of every level (the unit of reading).
    shard : int
        Shard edge (the unit of writing, and of the write locks), a multiple of ``chunk``.
    """

    levels: int
    chunk: int
    shard: int

    def __post_init__(self) -> None:
        """Refuse a spec that cannot be laid out."""
        if self.levels < 1 or self.chunk < 1 or self.shard < self.chunk or self.shard % self.chunk:
            raise StoreError(
                f"invalid pyramid {self}: levels and chunk must be positive and the shard a "
                "multiple of the chunk; the store's 'overviews' group is damaged, remove it "
                "and run `lamap overviews STORE` again"
            )

    @classmethod
    def for_grid(cls, grid: Grid, *, chunk: int | None = None) -> PyramidSpec:
        """Return the default pyramid of a grid: halve until one chunk holds the whole grid.

        Parameters
        ----------
        grid : Grid
            The store's grid.
        chunk : int, optional
            Inner chunk edge; default ``min(256, grid.chunk)``.
        """
        edge = chunk or min(MAX_CHUNK, grid.chunk)
        levels = max(1, math.ceil(math.log2(max(grid.shape) / edge)))
        return cls(levels=levels, chunk=edge, shard=4 * edge)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PyramidSpec:
        """Read a spec written by :meth:`to_dict`."""
        try:
            return cls(int(data["levels"]), int(data["chunk"]), int(data["shard"]))
        except (KeyError, TypeError, ValueError) as err:
            raise StoreError(
                f"the pyramid description {dict(data)} is incomplete ({err}): remove the "
                "store's 'overviews' group and run `lamap overviews STORE` again"
            ) from err

    def to_dict(self) -> dict[str, int]:
        """Return the JSON form stored in the pyramid group's attributes."""
        return {"levels": self.levels, "chunk": self.chunk, "shard": self.shard}

    @staticmethod
    def shape(grid: Grid, level: int) -> tuple[int, int]:
        """Return the ``(rows, cols)`` of a level (level 0: the grid's)."""
        rows, cols = grid.shape
        return (-(-rows // 2**level), -(-cols // 2**level))


def level_group(level: int) -> str:
    """Return the path of a level's group inside the store (level ≥ 1)."""
    return f"{PYRAMID_GROUP}/{level}"


def has_pyramid(store: LaiStore) -> bool:
    """Return whether the store's committed metadata holds a pyramid."""
    return PYRAMID_GROUP in open_group(store.url, store.storage_options, write=False)


def pyramid_spec(store: LaiStore, group: zarr.Group | None = None) -> PyramidSpec:
    """Return the spec of a store's pyramid.

    Raises
    ------
    StoreError
        If the store has none (the message says how to build one).
    """
    root = group if group is not None else open_group(store.url, store.storage_options,
                                                      write=False)
    if PYRAMID_GROUP not in root:
        raise StoreError(
            f"the store {store.url} has no overviews (multiscale pyramid): build them with "
            f"`lamap overviews {store.url}` (resumable), then try again"
        )
    attrs = root[PYRAMID_GROUP].attrs.asdict()
    return PyramidSpec.from_dict(cast(Mapping[str, Any], attrs.get("lamap_pyramid") or {}))


def level_arrays(
    group: zarr.Group, level: int, names: tuple[str, ...] = ("lai", "source", *COUNT_VARIABLES)
) -> tuple[zarr.Array, ...]:
    """Return arrays of a level of an open root group (level 0: the root's lai and source)."""
    if level == 0:
        return tuple(array(group, name) for name in names if name in ("lai", "source"))
    return tuple(array(group, f"{level_group(level)}/{name}") for name in names)


# --------------------------------------------------------------------------- creation


def ensure_pyramid(store: LaiStore, *, create: bool, chunk: int | None = None) -> bool:
    """Make the pyramid match the store's time axis, creating it if asked; commit if changed.

    Call it from the driver after :meth:`LaiStore.add_date`, before writing.

    Parameters
    ----------
    store : LaiStore
        The store.
    create : bool
        Create the pyramid if the store has none (else leave such a store alone).
    chunk : int, optional
        Inner chunk edge of a new pyramid (see :meth:`PyramidSpec.for_grid`).

    Returns
    -------
    bool
        Whether the store has a pyramid now.
    """
    # under the metadata lock: two runs starting on one new store both find no pyramid
    with concurrency.locked(store.url, store.storage_options, "creating the overviews"):
        group = open_group(store.url, store.storage_options, write=True)
        if PYRAMID_GROUP not in group:
            if not create:
                return False
            _create(group, store.grid, PyramidSpec.for_grid(store.grid, chunk=chunk))
            commit(store.url, store.storage_options)
            group = open_group(store.url, store.storage_options, write=True)
        if _grow(group, pyramid_spec(store, group)):
            commit(store.url, store.storage_options)
    return True


def _create(group: zarr.Group, grid: Grid, spec: PyramidSpec) -> None:
    node = group.create_group(PYRAMID_GROUP, attributes={
        "description": "multiscale pyramid of lai and source (see the root's multiscales)",
        "lamap_pyramid": spec.to_dict(),
    })  # fmt: skip
    node.create_array("built", shape=(), dtype="uint8", fill_value=0, attributes={
        "description": "overviews up to date above a tile, one marker per tile and date",
        "layout": "built/<YYYY-MM-DD>/<tile id>.json inside this array's folder",
    })  # fmt: skip
    for level in range(1, spec.levels + 1):
        _create_level(node.create_group(str(level)), grid, spec, level)
    held = cast(list[dict[str, Any]], group.attrs.asdict().get("zarr_conventions") or [])
    conventions = [c for c in held if c.get("uuid") != MULTISCALES_CONVENTION["uuid"]]
    group.update_attributes({
        "zarr_conventions": [*conventions, MULTISCALES_CONVENTION],
        "multiscales": multiscales_attrs(grid, spec),
    })  # fmt: skip


def _count_dtype(level: int) -> str:
    """Return the smallest unsigned type holding ``4**level`` (the most pixels under one)."""
    return "uint8" if level <= 3 else "uint16" if level <= 7 else "uint32"


def _create_level(node: zarr.Group, grid: Grid, spec: PyramidSpec, level: int) -> None:
    rows, cols = PyramidSpec.shape(grid, level)
    chunks, shards = (1, spec.chunk, spec.chunk), (1, spec.shard, spec.shard)
    shared = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
    variables: tuple[tuple[str, str, Any, BloscCodec, dict[str, Any]], ...] = (
        ("lai", "float32", np.nan, _FLOATS, {"standard_name": "leaf_area_index",
         "units": "m2 m-2", "cell_methods": "area: mean (NaN-aware)"}),
        ("source", "uint8", 0, _INTS, {"long_name": "most frequent source flag below",
         "flag_values": [0, 1, 2], "flag_meanings": "no_input observed filled"}),
        ("valid_count", _count_dtype(level), 0, _INTS,
         {"long_name": "level-0 pixels with an estimate below this pixel"}),
        ("observed_count", _count_dtype(level), 0, _INTS,
         {"long_name": "level-0 pixels observed (source 1) below this pixel"}),
    )  # fmt: skip
    for name, dtype, fill, codec, attrs in variables:
        node.create_array(
            name, shape=(0, rows, cols), dtype=dtype, fill_value=fill, compressors=[codec],
            chunks=chunks, shards=shards, dimension_names=_DIMS, attributes={**attrs, **shared},
        )  # fmt: skip
    _create_coords(node, grid, level)


def _create_coords(node: zarr.Group, grid: Grid, level: int) -> None:
    size = grid.resolution * 2**level
    x0, y0 = grid.origin
    rows, cols = PyramidSpec.shape(grid, level)
    node.create_array("time", shape=(0,), chunks=(4096,), dtype="int64",
                      fill_value=np.iinfo(np.int64).min, dimension_names=("time",),
                      attributes={"standard_name": "time", "axis": "T",
                                  "units": "days since 1970-01-01",
                                  "calendar": "proleptic_gregorian"})  # fmt: skip
    crs = dict(grid.pyproj_crs.to_cf())
    crs["spatial_ref"] = crs["crs_wkt"]
    crs["GeoTransform"] = f"{x0!r} {size!r} 0.0 {y0!r} 0.0 {-size!r}"
    node.create_array("spatial_ref", shape=(), dtype="int64", fill_value=0, attributes=crs)
    axes: tuple[tuple[Literal["x", "y"], np.ndarray], ...] = (
        ("x", x0 + (np.arange(cols) + 0.5) * size),
        ("y", y0 - (np.arange(rows) + 0.5) * size),
    )
    for axis, values in axes:
        coord = node.create_array(
            axis, shape=values.shape, chunks=values.shape, dtype="float64", fill_value=np.nan,
            compressors=[_FLOATS], dimension_names=(axis,),
            attributes={"standard_name": f"projection_{axis}_coordinate", "units": "m",
                        "axis": axis.upper()},
        )  # fmt: skip
        coord[:] = values


def multiscales_attrs(grid: Grid, spec: PyramidSpec) -> dict[str, Any]:
    """Return the root's ``multiscales`` attribute (GeoZarr multiscales convention v0.1)."""
    x0, y0 = grid.origin
    layout: list[dict[str, Any]] = []
    for level in range(spec.levels + 1):
        size = grid.resolution * 2**level
        entry: dict[str, Any] = {
            "asset": "lai" if level == 0 else f"{level_group(level)}/lai",
            "transform": {"scale": [1.0, 1.0, 1.0], "translation": [0.0, 0.0, 0.0]},
            "proj:shape": list(PyramidSpec.shape(grid, level)),
            "proj:transform": [size, 0.0, x0, 0.0, -size, y0],
        }
        if level:
            entry["derived_from"] = "lai" if level == 1 else f"{level_group(level - 1)}/lai"
            entry["transform"]["scale"] = [1.0, 2.0, 2.0]
            entry["resampling_method"] = "average"
        layout.append(entry)
    return {"layout": layout, "resampling_method": "average"}


def _grow(group: zarr.Group, spec: PyramidSpec) -> bool:
    """Give every level the root's time axis (metadata and time values); True if changed."""
    times = np.asarray(array(group, "time")[...], dtype=np.int64)
    changed = False
    for level in range(1, spec.levels + 1):
        node = level_group(level)
        coord = array(group, f"{node}/time")
        if coord.shape[0] == times.size and np.array_equal(coord[...], times):
            continue
        for name in ("lai", "source", *COUNT_VARIABLES):
            grown = array(group, f"{node}/{name}")
            grown.resize((times.size, *grown.shape[1:]))
        coord.resize(times.shape)
        if times.size:
            coord[:] = times
        changed = True
    return changed
