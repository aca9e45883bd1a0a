"""The store's schema: creating and opening it, CF and CRS metadata, commits.

The consolidated metadata in the root ``zarr.json`` is the commit record: :func:`commit`
re-consolidates, which replaces that object in one atomic write, and :func:`open_group`
opens the committed state only. See :mod:`lamap.store` for the layout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from enum import IntEnum
from typing import Any, Literal, TypeAlias, cast

import numpy as np
import zarr
from zarr.codecs import BloscCodec

import lamap
from lamap.errors import GridError, InputError, StoreError
from lamap.grid import Grid
from lamap.runtime.atomic import write_atomic
from lamap.store.attrs import decode_attrs, encode_attrs
from lamap.store.fs import filesystem, zarr_store

__all__ = [
    "DONE_NODE",
    "FAILED_NODE",
    "LAI_VALID_RANGE",
    "NO_INPUT_NODE",
    "SOURCE_FILL",
    "STORE_LAYOUT",
    "STORE_NODES",
    "TIME_UNITS",
    "DateLike",
    "Source",
    "add_missing_nodes",
    "array",
    "build",
    "check_user_attrs",
    "commit",
    "json_ready",
    "now",
    "open_group",
    "record_date",
    "stored_grid",
]

#: A date: ``datetime.date``, ``numpy.datetime64`` or ``"YYYY-MM-DD"``.
DateLike: TypeAlias = "dt.date | np.datetime64 | str"

#: Version of the on-disk layout, written into the store's attributes. Layout 2 stores
#: structured attributes as JSON strings (:mod:`lamap.store.attrs`) and fills ``source`` with
#: :data:`SOURCE_FILL`; layout-1 stores are read alike and upgraded by their next run.
STORE_LAYOUT = 2
#: ``source`` of a pixel never written ("not mapped"): the array's fill value.
SOURCE_FILL = 255
#: The CF ``valid_min``/``valid_max`` of ``lai``; writes outside it are refused.
LAI_VALID_RANGE = (0.0, 8.0)

TIME_UNITS = "days since 1970-01-01"
_TIME_CHUNK = 4096
_TIME_FILL = int(np.iinfo(np.int64).min)
_DIMS = ("time", "y", "x")
_REQUIRED = ("lai", "source", "time", "x", "y", "spatial_ref")
#: The ledger's folders: 0-d arrays' folders, whose contents Zarr never lists (see ledger).
LEDGER_GROUP = "lamap"
DONE_NODE = "lamap/done"
FAILED_NODE = "lamap/failed"
NO_INPUT_NODE = "lamap/no_input"
_LEDGER_NODES: dict[str, dict[str, Any]] = {
    "done": {
        "description": "tiles written completely, one marker per tile and date",
        "layout": "done/<YYYY-MM-DD>/<tile id>.json inside this array's folder",
    },
    "failed": {
        "description": "tiles that failed, one record (with the reason) per tile and date",
        "layout": "failed/<YYYY-MM-DD>/<tile id>.json inside this array's folder",
    },
    "no_input": {
        "description": "tiles without input, one record (reason, options) per tile and date; "
        "not done: the next run plans them again",
        "layout": "no_input/<YYYY-MM-DD>/<tile id>.json inside this array's folder",
    },
    "lock": {
        "description": "the metadata lock and the registrations of runs writing a date "
        "(see lamap.store.lock)",
        "layout": "metadata.lock or metadata.json, writers/<token>.json, insert.json",
    },
}
#: lamap's nodes at the root: a folder holding only these (and no zarr.json) is a store
#: whose creation stopped, created again by the next run.
STORE_NODES = ("lai", "source", "lai_sd", "time", "x", "y", "spatial_ref", "lamap")
_FLOATS = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
_FLAGS = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


class Source(IntEnum):
    """Flags of the ``source`` variable: where each LAI pixel comes from.

    ``lai`` is finite exactly where ``source`` is not ``NO_INPUT``; writes are checked.
    """

    #: No estimate: no usable input (outside the swaths, nodata); ``lai`` NaN. A pixel never
    #: mapped reads as :data:`SOURCE_FILL` (255, ``not_mapped``), the array's fill value.
    NO_INPUT = 0
    #: SNAP LAI from clear Sentinel-2 reflectance of the date itself.
    OBSERVED = 1
    #: Predicted by the fused model (cloud, shadow, or no Sentinel-2 at the date).
    FILLED = 2


# --------------------------------------------------------------------------- small helpers


def now() -> str:
    """Return the current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_ready(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Return a JSON round-trip of a mapping.

    Raises
    ------
    InputError
        If it holds something JSON cannot store (naming ``what``).
    """
    try:
        return dict(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as err:
        raise InputError(
            f"{what} cannot be stored as JSON ({err}): give only str, int, float (finite), "
            "bool, None, lists and dicts, e.g. TimeSteps.to_dict()"
        ) from err


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Silence zarr's warning that consolidated metadata is not in the v3 specification."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


# --------------------------------------------------------------------------- metadata


def _root_attrs(grid: Grid, extra: Mapping[str, Any]) -> dict[str, Any]:
    version = lamap.__version__
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.8",  # the newest version cf-checker (4.1) verifies; nothing newer used
        "title": f"Leaf area index at {grid.resolution:g} m",
        "source": f"lamap {version}: Sentinel-1 and Sentinel-2 fused by a multi-temporal network",
        "history": f"{now()} created by lamap {version}",
        "lamap_store_layout": STORE_LAYOUT,
        "lamap_version": version,
        "lamap_grid": grid.to_dict(),
        "lamap_dates": {},
    }
    attrs.update(extra)
    return encode_attrs(attrs)


def check_user_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a user's extra global attributes, JSON-ready.

    Raises
    ------
    InputError
        If they are not JSON-ready or use the reserved prefix ``lamap_``.
    """
    extra = json_ready(attrs or {}, "attrs")
    reserved = sorted(key for key in extra if key.startswith("lamap_"))
    if reserved:
        raise InputError(
            f"attrs {reserved} use the prefix 'lamap_', which the store keeps for itself: "
            "rename them"
        )
    return extra


def _data_attrs() -> dict[str, dict[str, Any]]:
    shared = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
    lai = {
        "standard_name": "leaf_area_index",
        "long_name": "leaf area index (one-sided green leaf area per unit ground area)",
        "units": "m2 m-2",
        "valid_min": LAI_VALID_RANGE[0],
        "valid_max": LAI_VALID_RANGE[1],
        "ancillary_variables": "source lai_sd",
        **shared,
    }
    lai_sd = {
        "standard_name": "leaf_area_index standard_error",
        "long_name": "standard error of the leaf area index (one standard deviation)",
        "units": "m2 m-2",
        "valid_min": 0.0,
        "comment": (
            "filled pixels: the spread the model predicts (calibrated on held-out pixels: "
            "lai within +-1 lai_sd for about 68 % of them); observed pixels: the S2 LAI "
            "label's own error scale recorded with the model; NaN where lai is NaN or the "
            "model predicts no spread"
        ),
        **shared,
    }
    source = {
        "long_name": "source of the leaf area index value",
        "flag_values": [*(int(flag) for flag in Source), SOURCE_FILL],
        "flag_meanings": " ".join([*(flag.name.lower() for flag in Source), "not_mapped"]),
        "comment": (
            "no_input: no estimate, lai is NaN; observed: SNAP LAI of clear Sentinel-2 "
            "reflectance at the date; filled: predicted by the fused Sentinel-1/Sentinel-2 "
            f"model; not_mapped ({SOURCE_FILL}, the fill value): never mapped, lai is NaN. "
            "flag_values have the variable's type (uint8): lamap.open_store gives them so"
        ),
        **shared,
    }
    return {"lai": lai, "source": source, "lai_sd": lai_sd}


def _axis_attrs(axis: Literal["x", "y"]) -> dict[str, Any]:
    return {
        "standard_name": f"projection_{axis}_coordinate",
        "long_name": f"{axis} coordinate of projection (pixel centre)",
        "units": "m",
        "axis": axis.upper(),
    }


def _crs_attrs(grid: Grid) -> dict[str, Any]:
    """CF grid mapping plus what GDAL and rioxarray read (``spatial_ref``, ``GeoTransform``)."""
    attrs = dict(grid.pyproj_crs.to_cf())
    attrs["spatial_ref"] = attrs["crs_wkt"]
    attrs["GeoTransform"] = " ".join(repr(float(v)) for v in grid.transform.to_gdal())
    return attrs


# --------------------------------------------------------------------------- creation


def build(url: str, options: Mapping[str, Any], grid: Grid, extra: Mapping[str, Any]) -> None:
    """Write a store's metadata (no data chunk); the root ``zarr.json`` last, as its commit.

    The hierarchy is built and consolidated in memory, then every object is written, the
    root last: until then the location holds no ``zarr.json`` at its root, and a creation
    that stops is simply done again (the caller holds the store's metadata lock).
    """
    staged: dict[str, Any] = {}
    group = zarr.create_group(
        zarr.storage.MemoryStore(staged), attributes=_root_attrs(grid, extra), zarr_format=3
    )
    _create_arrays(group, grid)
    with _quiet_zarr():
        zarr.consolidate_metadata(group.store)
    fs, root = filesystem(url, options)
    for key in sorted(staged, key=lambda key: key == "zarr.json"):
        write_atomic(f"{root}/{key}", staged[key].to_bytes(), fs=fs, make_dirs=True)


def _create_arrays(group: zarr.Group, grid: Grid) -> None:
    """Create every node of the layout; only x, y (and no data chunk) are written."""
    _create_data_vars(group, grid)
    _create_coords(group, grid)
    bookkeeping = group.create_group("lamap", attributes={"description": "lamap bookkeeping"})
    for name in _LEDGER_NODES:
        _create_ledger_node(bookkeeping, name)


def _create_ledger_node(group: zarr.Group, name: str) -> None:
    group.create_array(
        name, shape=(), dtype="uint8", fill_value=0, attributes=_LEDGER_NODES[name]
    )


def add_missing_nodes(url: str, options: Mapping[str, Any]) -> None:
    """Give a store the ledger arrays it lacks (earlier lamap had no 'failed', 'no_input').

    Records in a folder without array metadata make zarr warn that the folder "is not
    recognized as a component of a Zarr hierarchy" whenever it walks the hierarchy, as
    every commit does.
    """
    group = zarr.open_group(
        zarr_store(url, options, read_only=False),
        path="lamap",
        mode="r+",
        use_consolidated=False,
        zarr_format=3,
    )
    for name in _LEDGER_NODES:
        if name not in group:  # reads the node's zarr.json only; the records stay
            _create_ledger_node(group, name)


def _create_data_vars(group: zarr.Group, grid: Grid) -> None:
    rows, cols = grid.shape
    chunks, shards = (1, grid.chunk, grid.chunk), (1, grid.shard, grid.shard)
    attrs = _data_attrs()
    for name, dtype, fill, codec in (
        ("lai", "float32", np.nan, _FLOATS),
        ("source", "uint8", SOURCE_FILL, _FLAGS),
        ("lai_sd", "float32", np.nan, _FLOATS),
    ):
        group.create_array(
            name, shape=(0, rows, cols), dtype=dtype, fill_value=fill, compressors=[codec],
            chunks=chunks, shards=shards, dimension_names=_DIMS, attributes=attrs[name],
        )  # fmt: skip


def _create_coords(group: zarr.Group, grid: Grid) -> None:
    group.create_array(
        "time", shape=(0,), chunks=(_TIME_CHUNK,), dtype="int64", fill_value=_TIME_FILL,
        dimension_names=("time",), attributes={
            "standard_name": "time", "long_name": "mapped date", "axis": "T",
            "units": TIME_UNITS, "calendar": "proleptic_gregorian",
        },
    )  # fmt: skip
    group.create_array(
        "spatial_ref", shape=(), dtype="int64", fill_value=0, attributes=_crs_attrs(grid)
    )
    axes: tuple[tuple[Literal["x", "y"], np.ndarray], ...] = (
        ("x", grid.x_coords(grid.window)),
        ("y", grid.y_coords(grid.window)),
    )
    for axis, values in axes:
        coord = group.create_array(
            axis, shape=values.shape, chunks=values.shape, dtype="float64", fill_value=np.nan,
            compressors=[_FLOATS], dimension_names=(axis,), attributes=_axis_attrs(axis),
        )  # fmt: skip
        coord[:] = values


def commit(url: str, options: Mapping[str, Any], arrays: Sequence[str] | None = None) -> None:
    """Publish the arrays' metadata in the root ``zarr.json``, in one atomic write.

    With ``arrays``, only their entries of the consolidated metadata are refreshed from their
    own ``zarr.json`` (what adding a date changes: a few requests on an object store);
    without, or when a ledger node is missing (it is added), the hierarchy is walked again.
    """
    fs, root = filesystem(url, options)
    nodes = [f"{root}/{LEDGER_GROUP}/{name}/zarr.json" for name in _LEDGER_NODES]
    if arrays is None or not all(fs.exists(node) for node in nodes):
        add_missing_nodes(url, options)
        with _quiet_zarr():
            zarr.consolidate_metadata(zarr_store(url, options, read_only=False))
        return
    meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
    entries = meta["consolidated_metadata"]["metadata"]
    for name in arrays:
        entries[name] = json.loads(fs.cat_file(f"{root}/{name}/zarr.json"))
    write_atomic(f"{root}/zarr.json", json.dumps(meta, indent=2).encode(), fs=fs)


# --------------------------------------------------------------------------- opening


def open_group(url: str, options: Mapping[str, Any], *, write: bool) -> zarr.Group:
    """Open the root group on its committed (consolidated) metadata.

    Raises
    ------
    StoreError
        If there is no store at ``url``.
    """
    try:
        return zarr.open_group(
            zarr_store(url, options, read_only=not write),
            mode="r+" if write else "r",
            use_consolidated=True,
            zarr_format=3,
        )
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise StoreError(
            f"no lamap store at {url} ({err}): create one with LaiStore.create(url, grid) "
            "(lamap map creates it), or check the path"
        ) from err


def stored_grid(url: str, group: zarr.Group) -> Grid:
    """Return the grid recorded in an open store, checking its layout and arrays.

    Raises
    ------
    StoreError
        If the group is not a lamap store, is of a newer layout, or is damaged.
    """
    attrs = group.attrs.asdict()
    layout = attrs.get("lamap_store_layout")
    if "lamap_grid" not in attrs or not isinstance(layout, int):
        raise StoreError(
            f"{url} is a Zarr store but not a lamap store (no 'lamap_grid' attribute): "
            "write to a new path"
        )
    if layout > STORE_LAYOUT:
        raise StoreError(
            f"the store {url} has layout {layout}, newer than this lamap ({lamap.__version__}) "
            f"reads (layout {STORE_LAYOUT}): upgrade lamap"
        )
    try:
        grid = Grid.from_dict(cast(Mapping[str, Any], decode_attrs(attrs)["lamap_grid"]))
    except GridError as err:
        raise StoreError(f"the grid recorded in the store {url} is invalid: {err}") from err
    _check_members(url, group, grid)
    return grid


def _check_members(url: str, group: zarr.Group, grid: Grid) -> None:
    missing = [name for name in _REQUIRED if name not in group]
    if missing:
        raise StoreError(
            f"the store {url} lacks the arrays {missing}: it is damaged or not a lamap store; "
            "write to a new path"
        )
    shapes = {name: tuple(array(group, name).shape[1:]) for name in ("lai", "source")}
    if any(shape != grid.shape for shape in shapes.values()):
        raise StoreError(
            f"the arrays of the store {url} have (y, x) shapes {shapes}, not the shape "
            f"{grid.shape} of its grid: the store is damaged; write to a new path"
        )


def array(group: zarr.Group, name: str) -> zarr.Array:
    """Return the array ``name`` of a group (StoreError if it is a group)."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"'{name}' in the store at {group.store} is a group, not an array")
    return node


# --------------------------------------------------------------------------- run records


def record_date(
    url: str,
    options: Mapping[str, Any],
    day: dt.date,
    summary: Mapping[str, Any],
    model: Mapping[str, Any] | None,
) -> None:
    """Store a date's run summary (and the model, if given) in the root attributes."""
    group = open_group(url, options, write=True)
    attrs = decode_attrs(group.attrs.asdict())
    dates = dict(cast(Mapping[str, Any], attrs.get("lamap_dates") or {}))
    dates[day.isoformat()] = dict(summary)
    attrs.update(lamap_dates=dates, lamap_version=lamap.__version__,
                 lamap_store_layout=STORE_LAYOUT)  # a layout-1 store is upgraded here
    if model is not None:
        attrs["lamap_model"] = dict(model)
    group.update_attributes(encode_attrs(attrs))
