"""The continental LAI store: one Zarr v3 store per grid, grown date by date.

A store is created from a :class:`~lamap.grid.Grid` as metadata only (the europe grid,
460 000 x 650 000 px, costs a fraction of a second and well under a megabyte), then receives
one time step per mapped date and region writes of whole shards. Anyone reads it with
``xr.open_zarr(path)``; after ``import rioxarray``, ``ds.rio.crs`` is the grid's CRS.

Layout
------
::

    lai.zarr/
      zarr.json        root group: CF and lamap attributes + consolidated metadata
      lai/             float32 (time, y, x) m2 m-2, NaN where nothing could be estimated
      source/          uint8 (time, y, x) flags, see :class:`Source`
      time/            int64 "days since 1970-01-01", one value per mapped date
      x/, y/           float64 pixel centres in the grid CRS (metres)
      spatial_ref/     0-d CF grid mapping (crs_wkt, spatial_ref, GeoTransform); no chunk
      lamap/           group for lamap's bookkeeping (``xr.open_zarr`` ignores subgroups)
        done/          0-d array holding only attributes, and the done markers:
          <YYYY-MM-DD>/<tile id>.json    one per finished tile and date

The markers live inside an array's folder because Zarr never lists an array's contents: in
a plain folder, zarr would warn about an unknown object whenever it walks the hierarchy.

``lai`` and ``source`` have inner chunks of ``(1, grid.chunk, grid.chunk)`` (the unit of
reading) inside shards of ``(1, grid.shard, grid.shard)`` (the unit of writing), compressed
with Blosc-zstd. Chunks that hold only the fill value (NaN, 0) are not written, and a shard
of only such chunks is not written either, so sea and unmapped land cost no disk.

Root attributes: ``Conventions``, ``title``, ``source``, ``history``, ``lamap_grid``
(:meth:`Grid.to_dict`), ``lamap_store_layout``, ``lamap_version``, ``lamap_model`` and
``lamap_dates`` (per date: tiles done, model, the acquisition days and number of items
used per sensor; see :meth:`LaiStore.record_run`). The exact inputs of every tile are in
its done marker (:meth:`LaiStore.date_info`).

Time
----
The time axis keeps the order in which dates were added (:meth:`LaiStore.add_date`), which
need not be chronological: mapping an earlier date later appends it at the end, because
inserting it would rewrite every shard. ``ds.sel(time="2024-06-15")`` works either way; use
``ds.sortby("time")`` (lazy) before ``method="nearest"`` or slicing by time.

Commits and crash safety
------------------------
The consolidated metadata in the root ``zarr.json`` is the commit record: ``xr.open_zarr``
reads it, and so does :class:`LaiStore`. Adding a date grows ``lai``, ``source`` and ``time``
(metadata only), writes the new time value, then re-consolidates, which replaces the root
``zarr.json`` in one atomic write (a rename on local disks, one PUT on object stores). Until
then readers see the previous dates; an exception rolls the arrays' own metadata back, and a
process killed in between leaves only uncommitted array metadata that the next
:meth:`LaiStore.add_date` overwrites. A date's slice is written only after its commit.

Region writes cover whole shards, and every shard object is replaced atomically, so a write
is idempotent and never touches pixels outside its window. :meth:`LaiStore.write_tile` clears
the tile's done marker, writes the region and only then writes the marker (atomically), so an
interrupted run leaves the tile not done and a rerun redoes it.

Concurrency: metadata changes (:meth:`LaiStore.create`, :meth:`LaiStore.add_date`,
:meth:`LaiStore.record_run`) are made by one process, the driver. Region writes and done
markers may come from any number of processes at once: dask write blocks must be aligned
with shards, so no two tasks ever write one shard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import dask
import dask.array as da
import fsspec
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store
from zarr.codecs import BloscCodec

import lamap
from lamap.errors import GridError, InputError, LamapError
from lamap.grid import Grid, Tile, Window

__all__ = [
    "LAI_VALID_RANGE",
    "STORE_LAYOUT",
    "ArrayLike",
    "BlockWriter",
    "DateLike",
    "LaiStore",
    "Source",
    "StoreError",
]

#: A 2-D ``(y, x)`` block of one date: NumPy, dask, or an xarray DataArray on the grid.
ArrayLike: TypeAlias = "np.ndarray | da.Array | xr.DataArray"
#: A date: ``datetime.date``, ``numpy.datetime64`` or ``"YYYY-MM-DD"``.
DateLike: TypeAlias = "dt.date | np.datetime64 | str"

#: Version of the on-disk layout, written into the store's attributes.
STORE_LAYOUT = 1
#: The CF ``valid_min``/``valid_max`` of ``lai``; writes outside it are refused.
LAI_VALID_RANGE = (0.0, 8.0)

TIME_UNITS = "days since 1970-01-01"
_EPOCH = dt.date(1970, 1, 1)
_TIME_CHUNK = 4096
_TIME_FILL = int(np.iinfo(np.int64).min)
_DONE = "lamap/done"
_FAILED = "lamap/failed"
_DIMS = ("time", "y", "x")
_GROWING = ("lai", "source", "time")
_REQUIRED = ("lai", "source", "time", "x", "y", "spatial_ref")
_FLOATS = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
_FLAGS = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
_ProbeState: TypeAlias = Literal["absent", "complete", "incomplete", "foreign"]


class StoreError(LamapError):
    """A store is missing, is not a lamap store, or does not hold what was asked for."""


class Source(IntEnum):
    """Flags of the ``source`` variable: where each LAI pixel comes from.

    ``lai`` is finite exactly where ``source`` is not ``NO_INPUT``; writes are checked.
    """

    #: No estimate: no usable input (outside the swaths, nodata) or not mapped; ``lai`` NaN.
    NO_INPUT = 0
    #: SNAP LAI from clear Sentinel-2 reflectance of the date itself.
    OBSERVED = 1
    #: Predicted by the fused model (cloud, shadow, or no Sentinel-2 at the date).
    FILLED = 2


# --------------------------------------------------------------------------- small helpers


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _as_day(value: object) -> dt.date:
    """Normalise a date at the boundary: date, datetime, numpy.datetime64 or ISO text."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64) and not np.isnat(value):
        return _EPOCH + dt.timedelta(days=int(value.astype("datetime64[D]").astype(np.int64)))
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(value.strip())
    raise InputError(f"{value!r} is not a date: give e.g. '2024-06-15'")


def _days(day: dt.date) -> int:
    return (day - _EPOCH).days


def _dates_text(dates: list[dt.date]) -> str:
    if not dates:
        return "no date yet"
    shown = ", ".join(day.isoformat() for day in dates[:5])
    return f"{len(dates)} date(s): {shown}{', ...' if len(dates) > 5 else ''}"


def _json_ready(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Return a JSON round-trip of a mapping, or raise InputError naming what is wrong."""
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


# --------------------------------------------------------------------------- locations


def _normalise_url(url: str | os.PathLike[str]) -> str:
    """Return an absolute local path, or the URL without a trailing slash."""
    text = os.fspath(url)
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"store location {url!r} must be a path or a URL such as s3://bucket/lai")
    if fsspec.utils.get_protocol(text) in ("file", "local"):
        return os.path.abspath(os.path.expanduser(fsspec.core.strip_protocol(text)))
    return text.rstrip("/")


def _is_local(url: str) -> bool:
    return url.startswith("/")


def _zarr_store(url: str, options: Mapping[str, Any], *, read_only: bool) -> Store:
    if _is_local(url):
        return zarr.storage.LocalStore(url, read_only=read_only)
    return zarr.storage.FsspecStore.from_url(
        url, storage_options=dict(options), read_only=read_only
    )


def _filesystem(url: str, options: Mapping[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, str(root).rstrip("/")


def _put_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a small object so that readers see all of it or nothing."""
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)  # one PUT: object stores publish whole objects
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with partial.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _probe(url: str, options: Mapping[str, Any]) -> _ProbeState:
    """Say what lies at ``url``: nothing, a (complete or half-created) lamap store, or else."""
    fs, root = _filesystem(url, options)
    try:
        meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
    except FileNotFoundError:
        return "foreign" if fs.exists(root) and fs.ls(root, detail=False) else "absent"
    except ValueError:
        return "foreign"
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if not isinstance(attrs, dict) or "lamap_grid" not in attrs:
        return "foreign"
    return "complete" if meta.get("consolidated_metadata") else "incomplete"


# --------------------------------------------------------------------------- metadata


def _root_attrs(grid: Grid, extra: Mapping[str, Any]) -> dict[str, Any]:
    version = lamap.__version__
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.10",
        "title": f"Leaf area index at {grid.resolution:g} m",
        "source": f"lamap {version}: Sentinel-1 and Sentinel-2 fused by a multi-temporal network",
        "history": f"{_now()} created by lamap {version}",
        "lamap_store_layout": STORE_LAYOUT,
        "lamap_version": version,
        "lamap_grid": grid.to_dict(),
        "lamap_dates": {},
    }
    attrs.update(extra)
    return attrs


def _check_user_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    extra = _json_ready(attrs or {}, "attrs")
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
        **shared,
    }
    source = {
        "long_name": "source of the leaf area index value",
        "flag_values": [int(flag) for flag in Source],
        "flag_meanings": " ".join(flag.name.lower() for flag in Source),
        "comment": (
            "no_input: no estimate, lai is NaN; observed: SNAP LAI of clear Sentinel-2 "
            "reflectance at the date; filled: predicted by the fused Sentinel-1/Sentinel-2 model"
        ),
        **shared,
    }
    return {"lai": lai, "source": source}


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


def _build(
    url: str, options: Mapping[str, Any], grid: Grid, extra: Mapping[str, Any], *, overwrite: bool
) -> None:
    """Create a store's metadata; the final consolidation commits it."""
    store = _zarr_store(url, options, read_only=False)
    attrs = _root_attrs(grid, extra)
    group = zarr.create_group(store, attributes=attrs, overwrite=overwrite, zarr_format=3)
    _create_arrays(group, grid)
    _commit(url, options)


def _create_arrays(group: zarr.Group, grid: Grid) -> None:
    """Create every node of the layout; only x, y (and no data chunk) are written."""
    _create_data_vars(group, grid)
    _create_coords(group, grid)
    bookkeeping = group.create_group("lamap", attributes={"description": "lamap bookkeeping"})
    bookkeeping.create_array(
        "done", shape=(), dtype="uint8", fill_value=0, attributes={
            "description": "tiles written completely, one marker per tile and date",
            "layout": "done/<YYYY-MM-DD>/<tile id>.json inside this array's folder",
        },
    )  # fmt: skip


def _create_data_vars(group: zarr.Group, grid: Grid) -> None:
    rows, cols = grid.shape
    chunks, shards = (1, grid.chunk, grid.chunk), (1, grid.shard, grid.shard)
    attrs = _data_attrs()
    for name, dtype, fill, codec in (
        ("lai", "float32", np.nan, _FLOATS),
        ("source", "uint8", int(Source.NO_INPUT), _FLAGS),
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
        array = group.create_array(
            axis, shape=values.shape, chunks=values.shape, dtype="float64", fill_value=np.nan,
            compressors=[_FLOATS], dimension_names=(axis,), attributes=_axis_attrs(axis),
        )  # fmt: skip
        array[:] = values


def _commit(url: str, options: Mapping[str, Any]) -> None:
    """Re-consolidate: publish every array's metadata in one atomic write of the root."""
    with _quiet_zarr():
        zarr.consolidate_metadata(_zarr_store(url, options, read_only=False))


def _open_group(url: str, options: Mapping[str, Any], *, write: bool) -> zarr.Group:
    """Open the root group on its committed (consolidated) metadata."""
    try:
        return zarr.open_group(
            _zarr_store(url, options, read_only=not write),
            mode="r+" if write else "r",
            use_consolidated=True,
            zarr_format=3,
        )
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise StoreError(
            f"no lamap store at {url} ({err}): create one with LaiStore.create(url, grid) "
            "(lamap map creates it), or check the path"
        ) from err


def _stored_grid(url: str, group: zarr.Group) -> Grid:
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
        grid = Grid.from_dict(cast(Mapping[str, Any], attrs["lamap_grid"]))
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
    shapes = {name: tuple(_array(group, name).shape[1:]) for name in ("lai", "source")}
    if any(shape != grid.shape for shape in shapes.values()):
        raise StoreError(
            f"the arrays of the store {url} have (y, x) shapes {shapes}, not the shape "
            f"{grid.shape} of its grid: the store is damaged; write to a new path"
        )


def _array(group: zarr.Group, name: str) -> zarr.Array:
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"'{name}' in the store at {group.store} is a group, not an array")
    return node


def _read_dates(group: zarr.Group) -> list[dt.date]:
    values = np.asarray(_array(group, "time")[...], dtype=np.int64)
    return [_EPOCH + dt.timedelta(days=int(value)) for value in values]


def _rollback(url: str, options: Mapping[str, Any]) -> None:
    """Rewrite the growing arrays' metadata from the committed (consolidated) one.

    Resizing to the same shape writes the metadata and deletes no chunk; shrinking with
    ``Array.resize`` would enumerate every shard of the old shape.
    """
    group = _open_group(url, options, write=True)
    for name in _GROWING:
        array = _array(group, name)
        array.resize(array.shape)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True, eq=False)
class _Target:
    """Where one date's blocks go: the committed arrays (pickled to workers) and the index."""

    url: str
    index: int
    lai: zarr.Array
    source: zarr.Array

    def __dask_tokenize__(self) -> object:
        return ("lamap-store-target", self.url, self.index)

    def write(self, window: Window, lai: np.ndarray, source: np.ndarray) -> Window:
        """Write one shard-aligned block of one date (checked against the store contract)."""
        return _write_block(self, window, lai, source)


#: What :meth:`LaiStore.block_writer` returns: ``write(window, lai, source)`` on a worker.
BlockWriter: TypeAlias = _Target


def _checked(window: Window, lai: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return the block as float32/uint8, or raise InputError where it breaks the contract."""
    values = np.asarray(lai, dtype=np.float32)
    flags = np.asarray(source)
    bad_flags = int(np.count_nonzero((flags < 0) | (flags > max(Source))))
    finite = np.isfinite(values)
    problems = {
        "source values outside the flags 0, 1, 2": bad_flags,
        "infinite lai values": int(np.count_nonzero(np.isinf(values))),
        "pixels where lai is finite but source is 0 (no_input), or lai is NaN but source is "
        "not 0": int(np.count_nonzero(finite != (flags != Source.NO_INPUT))),
        f"lai values outside the valid range {list(LAI_VALID_RANGE)}": int(
            np.count_nonzero(
                finite & ((values < LAI_VALID_RANGE[0]) | (values > LAI_VALID_RANGE[1]))
            )
        ),
    }
    found = [f"{count} {what}" for what, count in problems.items() if count]
    if found:
        raise InputError(
            f"the block for {window} breaks the store contract: {'; '.join(found)}. lai must "
            "be NaN exactly where source is 0, finite and clipped to the valid range elsewhere"
        )
    return values, flags.astype(np.uint8)


def _write_block(target: _Target, window: Window, lai: np.ndarray, source: np.ndarray) -> Window:
    """Write one shard-aligned block of both variables (each shard object replaced whole)."""
    values, flags = _checked(window, lai, source)
    rows, cols = window.to_slices()
    target.lai[target.index, rows, cols] = values
    target.source[target.index, rows, cols] = flags
    return window


def _write_dask_block(
    lai: np.ndarray,
    source: np.ndarray,
    *,
    target: _Target,
    origin: tuple[int, int],
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Locate a dask block in the grid and write it (the per-block task of a dask write)."""
    assert block_info is not None  # dask passes it because the signature asks for it
    (row0, row1), (col0, col1) = block_info[0]["array-location"]
    window = Window(origin[0] + row0, origin[0] + row1, origin[1] + col0, origin[1] + col1)
    _write_block(target, window, lai, source)
    return np.ones((1, 1), dtype=np.int64)


def _written(blocks: np.ndarray, window: Window) -> Window:
    """Join the block writes of one region; the region's window is the result."""
    return window


def _mark_after(
    store: LaiStore, day: dt.date, tile_id: str, info: dict[str, Any], written: Window
) -> dict[str, Any]:
    """Write a tile's done marker once its region is written (``written`` is the dependency)."""
    return store._write_marker(day, tile_id, info)


def _unwrap(name: str, value: object, window: Window, grid: Grid) -> np.ndarray | da.Array:
    """Return the array behind a block argument, checked against the window."""
    if isinstance(value, xr.DataArray):
        _check_dataarray(name, value, window, grid)
        value = value.data
    data = value if isinstance(value, np.ndarray | da.Array) else np.asarray(value)
    if data.shape != window.shape:
        raise InputError(
            f"{name} has shape {data.shape}, but {window} needs a 2-D (y, x) array of shape "
            f"{window.shape} for one date"
        )
    kinds, wanted = ("iub", "integer flags") if name == "source" else ("iuf", "floats")
    if data.dtype.kind not in kinds:
        raise InputError(f"{name} has dtype {data.dtype}: give {wanted}")
    return data


def _check_dataarray(name: str, value: xr.DataArray, window: Window, grid: Grid) -> None:
    if value.dims != ("y", "x"):
        raise InputError(f"{name} has dims {value.dims}: give a (y, x) DataArray for one date")
    for axis, expected in (("x", grid.x_coords(window)), ("y", grid.y_coords(window))):
        if axis in value.coords and not np.allclose(
            value[axis].values, expected, rtol=0.0, atol=grid.resolution * 1e-3
        ):
            raise InputError(
                f"the {axis} coordinates of {name} are not the pixel centres of {window} in "
                f"grid {grid.label}: the block is misplaced (off by some pixels?)"
            )


def _check_blocks(name: str, data: da.Array, window: Window, shard: int) -> None:
    """Refuse dask blocks that cut a shard: two tasks writing one shard lose data."""
    axes = (("row", window.row_start, data.chunks[0]), ("column", window.col_start, data.chunks[1]))
    for axis, start, sizes in axes:
        cuts = (start + np.cumsum(sizes))[:-1]
        bad = [int(cut) for cut in cuts if cut % shard]
        if bad:
            raise InputError(
                f"the dask blocks of {name} for {window} end at {axis}s {bad[:3]}, not on "
                f"multiples of the shard edge {shard} px: two tasks would write one shard and "
                f"lose data; rechunk with {name}.rechunk({shard}) before writing"
            )


def _as_blocks(
    lai: np.ndarray | da.Array, source: np.ndarray | da.Array, window: Window, shard: int
) -> tuple[da.Array, da.Array]:
    """Give both arrays the same shard-aligned dask blocks."""
    for name, data in (("lai", lai), ("source", source)):
        if isinstance(data, da.Array):
            _check_blocks(name, data, window, shard)
    chunks = lai.chunks if isinstance(lai, da.Array) else cast(da.Array, source).chunks
    lai_blocks = lai if isinstance(lai, da.Array) else da.from_array(lai, chunks=chunks)
    source_blocks = source if isinstance(source, da.Array) else da.from_array(source, chunks=chunks)
    if source_blocks.chunks != lai_blocks.chunks:
        source_blocks = source_blocks.rechunk(lai_blocks.chunks)
    return lai_blocks, source_blocks


def _dask_write(target: _Target, window: Window, lai: da.Array, source: da.Array) -> Delayed:
    token = tokenize(target, window, lai.name, source.name)
    blocks = da.map_blocks(
        _write_dask_block,
        lai,
        source,
        target=target,
        origin=(window.row_start, window.col_start),
        chunks=tuple((1,) * len(sizes) for sizes in lai.chunks),
        dtype=np.int64,
        meta=np.empty((0, 0), dtype=np.int64),
        name=f"lamap-write-{token}",
    )
    # A plain graph layer over the blocks, not dask.delayed(blocks): delayed would optimise
    # and materialise the array graph, and blockwise fusion drops layer annotations such as
    # the inference tasks' resources={"GPU": 1} (dask/dask#7036).
    name = f"lamap-region-{token}"
    layer: dict[Any, Any] = {name: (_written, blocks.__dask_keys__(), window)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[blocks])
    return Delayed(name, graph)


# --------------------------------------------------------------------------- summaries


def _collect(value: object, days: set[str], items: set[str]) -> None:
    """Gather acquisition days and item ids from a TimeSteps-like JSON tree."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key == "items" and isinstance(inner, list):
                items.update(str(item) for item in inner)
            elif key in ("day", "datetime") and isinstance(inner, str):
                days.add(inner[:10])
            else:
                _collect(inner, days, items)
    elif isinstance(value, list):
        for inner in value:
            _collect(inner, days, items)


def _summarise_inputs(markers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per top-level input key (``s2``, ``s1``): the days used and how many items."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for marker in markers.values():
        inputs = (marker.get("info") or {}).get("inputs")
        for key, value in inputs.items() if isinstance(inputs, Mapping) else ():
            days, items = found.setdefault(str(key), (set(), set()))
            _collect(value, days, items)
    return {
        key: {"days": sorted(days), "items": len(items)}
        for key, (days, items) in sorted(found.items())
        if days or items
    }


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class LaiStore:
    """A handle on a lamap LAI store: cheap, picklable, holding no open file.

    Get one with :meth:`create`, :meth:`open` or :meth:`open_or_create`; the constructor
    does no I/O and checks nothing.

    Parameters
    ----------
    url : str
        Absolute local path or fsspec URL (``s3://bucket/lai.zarr``) of the store.
    grid : Grid
        The store's grid, as recorded in its attributes.
    storage_options : dict
        Passed to fsspec for remote URLs (credentials, endpoint).
    """

    url: str
    grid: Grid
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(
        cls,
        url: str | os.PathLike[str],
        grid: Grid,
        *,
        attrs: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> LaiStore:
        """Create the store for a grid (metadata only), or open it if it exists on that grid.

        Creation writes array metadata, the x/y coordinates and the attributes, never a data
        chunk. A store left half-created by an interrupted creation holds no data and is
        created again.

        Parameters
        ----------
        url : str or os.PathLike
            Local path or fsspec URL.
        grid : Grid
            The output grid.
        attrs : mapping, optional
            Extra JSON-ready global attributes (``title``, ``institution``...), applied when
            the store is created; keys may not start with ``lamap_``.
        storage_options : mapping, optional
            fsspec options for remote URLs.

        Returns
        -------
        LaiStore

        Raises
        ------
        GridError
            If a store exists at ``url`` on a different grid (listing the differences).
        StoreError
            If something else than a lamap store exists at ``url``.
        InputError
            If ``attrs`` are not JSON-ready or use reserved keys.
        """
        location, options = _normalise_url(url), dict(storage_options or {})
        extra = _check_user_attrs(attrs)
        state = _probe(location, options)
        if state == "complete":
            return cls.open(location, grid=grid, storage_options=options)
        if state == "foreign":
            raise StoreError(
                f"{location} exists and is not a lamap store (no zarr.json with a lamap grid at "
                "its root): refusing to overwrite it; choose another output path or remove it"
            )
        _build(location, options, grid, extra, overwrite=state == "incomplete")
        return cls(location, grid, options)

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str],
        *,
        grid: Grid | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> LaiStore:
        """Open an existing store; its grid comes from its attributes.

        Parameters
        ----------
        url : str or os.PathLike
            Local path or fsspec URL.
        grid : Grid, optional
            The grid the caller expects; refused if it differs from the store's.
        storage_options : mapping, optional
            fsspec options for remote URLs.

        Returns
        -------
        LaiStore

        Raises
        ------
        StoreError
            If there is no lamap store at ``url``, or it is damaged.
        GridError
            If ``grid`` differs from the store's grid (listing the differences).
        """
        location, options = _normalise_url(url), dict(storage_options or {})
        stored = _stored_grid(location, _open_group(location, options, write=False))
        if grid is not None:
            stored.check_same(grid, what=f"the store {location}")
        return cls(location, stored, options)

    @classmethod
    def open_or_create(
        cls,
        url: str | os.PathLike[str],
        grid: Grid | None = None,
        *,
        attrs: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> LaiStore:
        """Open the store, or create it when ``grid`` is given and nothing is there.

        With ``grid=None`` the store must exist and its own grid is used (what a rerun
        without ``--grid`` wants); otherwise this is :meth:`create`.

        Raises
        ------
        StoreError, GridError, InputError
            As :meth:`open` and :meth:`create`.
        """
        if grid is None:
            return cls.open(url, storage_options=storage_options)
        return cls.create(url, grid, attrs=attrs, storage_options=storage_options)

    # ----------------------------------------------------------------- reading

    @property
    def attrs(self) -> dict[str, Any]:
        """The store's global attributes (committed state)."""
        return self._group().attrs.asdict()

    @property
    def dates(self) -> list[dt.date]:
        """The dates of the time axis, in the order they were added."""
        return _read_dates(self._group())

    def time_index(self, date: DateLike) -> int:
        """Return the index of ``date`` on the time axis.

        Raises
        ------
        StoreError
            If the date was not added (:meth:`add_date`).
        """
        return self._index(self._group(), _as_day(date))

    def dataset(self, **kwargs: Any) -> xr.Dataset:
        """Open the store lazily with :func:`xarray.open_zarr` (committed state).

        Parameters
        ----------
        **kwargs
            Passed to :func:`xarray.open_zarr` (``chunks``...).
        """
        store = _zarr_store(self.url, self.storage_options, read_only=True)
        return xr.open_zarr(store, consolidated=True, **kwargs)

    # ----------------------------------------------------------------- time axis

    def add_date(self, date: DateLike) -> int:
        """Return the index of ``date`` on the time axis, appending it if new.

        Appending grows ``lai``, ``source`` and ``time`` by one step (metadata only: the new
        slice reads as NaN / no_input) and commits; existing dates and data are untouched.
        Call it from one process (the driver) before building the writes of that date.

        Returns
        -------
        int
            The index of the date (existing dates keep theirs).

        Raises
        ------
        StoreError
            If the store cannot be opened or written.
        """
        day = _as_day(date)
        group = _open_group(self.url, self.storage_options, write=True)
        dates = _read_dates(group)
        if day in dates:
            return dates.index(day)
        try:
            self._append(group, day, len(dates))
        except BaseException as err:
            with contextlib.suppress(Exception):
                _rollback(self.url, self.storage_options)
            if isinstance(err, OSError):
                raise StoreError(f"cannot add date {day} to the store {self.url}: {err}") from err
            raise
        return len(dates)

    def _append(self, group: zarr.Group, day: dt.date, index: int) -> None:
        """Grow the arrays from their committed shapes, write the time value, commit."""
        arrays = {name: _array(group, name) for name in _GROWING}
        for array in arrays.values():
            array.resize((index + 1, *array.shape[1:]))
        arrays["time"][index] = _days(day)
        _commit(self.url, self.storage_options)

    # ----------------------------------------------------------------- writing

    def write_region(
        self,
        date: DateLike,
        window: Window,
        lai: ArrayLike,
        source: ArrayLike,
        *,
        compute: bool = True,
    ) -> Delayed | None:
        """Write ``lai`` and ``source`` of one date into a shard-aligned window.

        Only the shards inside the window change, each replaced whole, so writing the same
        window again is idempotent and neighbouring windows never interfere. Every block is
        checked against the store contract (flags 0-2, ``lai`` NaN exactly where
        ``source`` is 0, finite values in :data:`LAI_VALID_RANGE`) before it is written.

        Parameters
        ----------
        date : date or str
            A date already on the time axis (:meth:`add_date`).
        window : Window
            Inside the grid, with edges on shard boundaries (or the grid's last row/col).
        lai, source : numpy.ndarray or dask.array.Array or xarray.DataArray
            2-D ``(y, x)`` arrays of the window's shape: LAI (floats, cast to float32) and
            :class:`Source` flags (integers). Dask blocks must not cut a shard
            (``rechunk(grid.shard)`` makes them fit); each block is written by its own task.
        compute : bool
            Write now, or return a :class:`dask.delayed.Delayed` that writes when computed
            (and returns the window), for one compute over many regions.

        Returns
        -------
        Delayed or None
            None when ``compute`` is True.

        Raises
        ------
        GridError
            If the window is outside the grid or not aligned with its shards.
        StoreError
            If the date is not on the time axis.
        InputError
            If an array has the wrong shape, dtype or blocks, or breaks the contract (raised
            when the block is computed, for dask arrays).
        """
        self._check_window(window)
        target = self._target(date)
        lai_data = _unwrap("lai", lai, window, self.grid)
        source_data = _unwrap("source", source, window, self.grid)
        if isinstance(lai_data, da.Array) or isinstance(source_data, da.Array):
            blocks = _as_blocks(lai_data, source_data, window, self.grid.shard)
            delayed = _dask_write(target, window, *blocks)
        elif compute:
            _write_block(target, window, lai_data, source_data)
            return None
        else:
            delayed = dask.delayed(_write_block, pure=True)(target, window, lai_data, source_data)
        if compute:
            delayed.compute()
            return None
        return delayed

    def write_tile(
        self,
        date: DateLike,
        tile: Tile | str,
        lai: ArrayLike,
        source: ArrayLike,
        *,
        info: Mapping[str, Any] | None = None,
        compute: bool = True,
    ) -> Delayed | dict[str, Any]:
        """Write one tile of one date, then mark it done.

        The tile's done marker is cleared first (a rewrite that fails leaves the tile not
        done) and written after its region, by a task that depends on the region's writes.

        Parameters
        ----------
        date : date or str
            A date already on the time axis (:meth:`add_date`).
        tile : Tile or str
            A tile of the store's grid, or its id.
        lai, source : array-like
            As for :meth:`write_region`, with the tile's shape.
        info : mapping, optional
            JSON-ready record of what produced the tile, kept in the marker: by convention
            ``{"inputs": TimeSteps.to_dict(), "model": {"id": ..., "sha256": ...}}``.
        compute : bool
            Write now, or return a Delayed that writes region and marker when computed.

        Returns
        -------
        dict or Delayed
            The marker written (see :meth:`date_info`), or a Delayed giving it.

        Raises
        ------
        GridError, StoreError, InputError
            As :meth:`write_region`, and if the tile is not of this grid or ``info`` is not
            JSON-ready.
        """
        day, checked = _as_day(date), self._tile(tile)
        payload = _json_ready(info or {}, f"info of tile {checked.id}")
        written = self.write_region(day, checked.window, lai, source, compute=False)
        assert written is not None
        self.clear_done(day, checked)
        token = tokenize(self.url, day, checked.id, payload, written.key)
        marker = dask.delayed(_mark_after, pure=True)(
            self, day, checked.id, payload, written, dask_key_name=f"lamap-done-{token}"
        )
        return marker.compute() if compute else marker

    # ----------------------------------------------------------------- bookkeeping

    def mark_done(
        self, date: DateLike, tile: Tile | str, info: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record that a tile of a date is written (atomically; rewrites replace it).

        :meth:`write_tile` does this after the tile's data; call it yourself only after
        writing the tile's region with :meth:`write_region`.

        Returns
        -------
        dict
            The marker written: ``date``, ``tile``, ``window``, ``done_at``, ``lamap_version``
            and ``info``.

        Raises
        ------
        StoreError
            If the date is not on the time axis.
        GridError, InputError
            If the tile is not of this grid or ``info`` is not JSON-ready.
        """
        day, checked = _as_day(date), self._tile(tile)
        self.time_index(day)
        return self._write_marker(day, checked.id, _json_ready(info or {}, "info"))

    def clear_done(self, date: DateLike, tile: Tile | str) -> None:
        """Forget that a tile of a date is done (nothing happens if it was not)."""
        fs, path = self._marker(_as_day(date), self._tile(tile).id)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    def block_writer(self, date: DateLike) -> BlockWriter:
        """Return a small picklable writer of shard-aligned blocks of ``date``.

        Its ``write(window, lai, source)`` is what a block task calls on a worker; the
        window must be shard-aligned (one task per shard).

        Raises
        ------
        StoreError
            If the date is not on the time axis.
        """
        return self._target(date)

    def mark_failed(self, date: DateLike, tile: Tile | str, reason: str) -> dict[str, Any]:
        """Record in the store's ledger that a tile of a date failed, and why.

        A failed tile is not done: the next run of the date maps it again, and marking it
        done clears the record.
        """
        day, checked = _as_day(date), self._tile(tile)
        record = {"date": day.isoformat(), "tile": checked.id, "reason": str(reason),
                  "failed_at": _now(), "lamap_version": lamap.__version__}
        fs, path = self._ledger(_FAILED, day, checked.id)
        _put_atomic(fs, path, json.dumps(record, indent=1).encode())
        return record

    def failed_tiles(self, date: DateLike) -> dict[str, str]:
        """Return the tiles recorded as failed for a date (id → reason), sorted."""
        fs, folder = self._ledger(_FAILED, _as_day(date))
        fs.invalidate_cache(folder)
        try:
            paths = sorted(p for p in fs.ls(folder, detail=False) if str(p).endswith(".json"))
        except FileNotFoundError:
            return {}
        raw = fs.cat(paths, on_error="omit") if paths else {}
        records = {}
        for text in raw.values():
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(text)
                records[record["tile"]] = record["reason"]
        return dict(sorted(records.items()))

    def clear_failed(self, date: DateLike, tile: Tile | str) -> None:
        """Forget that a tile of a date failed (nothing happens if it did not)."""
        fs, path = self._ledger(_FAILED, _as_day(date), self._tile(tile).id)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    def is_done(self, date: DateLike, tile: Tile | str) -> bool:
        """Return whether a tile of a date is marked done."""
        fs, path = self._marker(_as_day(date), self._tile(tile).id)
        fs.invalidate_cache(path.rsplit("/", 1)[0])  # other processes write markers
        return bool(fs.exists(path))

    def done_tiles(self, date: DateLike) -> list[str]:
        """Return the ids of the tiles marked done for a date, sorted (row, col)."""
        fs, folder = self._done_folder(_as_day(date))
        fs.invalidate_cache(folder)  # other processes write markers
        try:
            paths = fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        names = (str(path).rstrip("/").rsplit("/", 1)[-1] for path in paths)
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and n[0] != ".")

    def date_info(self, date: DateLike) -> dict[str, dict[str, Any]]:
        """Return the done markers of a date by tile id: what produced every tile.

        Raises
        ------
        StoreError
            If a marker cannot be read (clear it with :meth:`clear_done` and remap the tile).
        """
        day = _as_day(date)
        fs, folder = self._done_folder(day)
        paths = [f"{folder}/{tile_id}.json" for tile_id in self.done_tiles(day)]
        try:
            raw = fs.cat(paths, on_error="raise") if paths else {}
            return {
                path.rsplit("/", 1)[-1][: -len(".json")]: json.loads(raw[path])
                for path in sorted(raw)
            }
        except (OSError, ValueError) as err:
            raise StoreError(
                f"cannot read the done markers of {day} in {folder} ({err}): clear the broken "
                "one with store.clear_done(date, tile) and map that tile again"
            ) from err

    def record_run(
        self, date: DateLike, *, model: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Summarise a date's done tiles into the attributes (end of a run, driver only).

        Sets ``lamap_version``, ``lamap_model`` (if given) and ``lamap_dates[date]`` =
        ``{"tiles_done", "model", "inputs", "lamap_version", "updated"}`` where ``inputs``
        maps each top-level key of the markers' ``info["inputs"]`` (``s1``, ``s2`` for
        :meth:`TimeSteps.to_dict`) to the acquisition ``days`` used and the number of
        distinct ``items``. The attributes are rewritten with the committed metadata in one
        atomic write.

        Parameters
        ----------
        date : date or str
            A date on the time axis.
        model : mapping, optional
            JSON-ready model identity, e.g. ``{"id": "fused-v1", "sha256": "..."}``.

        Returns
        -------
        dict
            The summary stored for the date.

        Raises
        ------
        StoreError
            If the date is not on the time axis or markers cannot be read.
        """
        day = _as_day(date)
        self.time_index(day)
        model_record = None if model is None else _json_ready(model, "model")
        markers = self.date_info(day)
        summary = {
            "tiles_done": len(markers),
            "model": model_record,
            "inputs": _summarise_inputs(markers),
            "lamap_version": lamap.__version__,
            "updated": _now(),
        }
        group = _open_group(self.url, self.storage_options, write=True)
        dates = dict(cast(Mapping[str, Any], group.attrs.get("lamap_dates") or {}))
        dates[day.isoformat()] = summary
        update: dict[str, Any] = {"lamap_dates": dates, "lamap_version": lamap.__version__}
        if model_record is not None:
            update["lamap_model"] = model_record
        group.update_attributes(update)
        return summary

    # ----------------------------------------------------------------- private

    def _group(self) -> zarr.Group:
        return _open_group(self.url, self.storage_options, write=False)

    def _index(self, group: zarr.Group, day: dt.date) -> int:
        dates = _read_dates(group)
        if day not in dates:
            raise StoreError(
                f"date {day} is not in the store {self.url}, which holds {_dates_text(dates)}: "
                f"add it with store.add_date('{day}') (in the driver process) before writing"
            )
        return dates.index(day)

    def _target(self, date: DateLike) -> _Target:
        group = _open_group(self.url, self.storage_options, write=True)
        index = self._index(group, _as_day(date))
        return _Target(self.url, index, _array(group, "lai"), _array(group, "source"))

    def _check_window(self, window: Window) -> None:
        if not isinstance(window, Window):
            raise InputError(f"window {window!r} is not a lamap.grid.Window")
        if not self.grid.window.contains(window):
            raise GridError(
                f"{window} is not inside the grid {self.grid.label} ({self.grid.window}): "
                "clip it with window.intersection(grid.window)"
            )
        if not self.grid.is_aligned(window, "shard"):
            shard = self.grid.shard
            raise GridError(
                f"{window} is not aligned with the {shard} px shards of grid {self.grid.label}: "
                f"its edges must be multiples of {shard} px (or the grid's last row/column), "
                f"so that no two writers share a shard; write whole tiles or window.snap({shard})"
            )

    def _tile(self, tile: Tile | str) -> Tile:
        if isinstance(tile, str):
            return self.grid.tile_from_id(tile)
        if not isinstance(tile, Tile) or tile.grid != self.grid:
            raise GridError(
                f"{tile!r} is not a tile of the store's grid {self.grid.label}: take tiles from "
                "store.grid (e.g. store.grid.tiles_for_bbox(bbox))"
            )
        return tile

    def _done_folder(self, day: dt.date) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, root = _filesystem(self.url, self.storage_options)
        return fs, f"{root}/{_DONE}/{day.isoformat()}"

    def _ledger(
        self, kind: str, day: dt.date, tile_id: str | None = None
    ) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, root = _filesystem(self.url, self.storage_options)
        folder = f"{root}/{kind}/{day.isoformat()}"
        return fs, folder if tile_id is None else f"{folder}/{tile_id}.json"

    def _marker(self, day: dt.date, tile_id: str) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, folder = self._done_folder(day)
        return fs, f"{folder}/{tile_id}.json"

    def _write_marker(self, day: dt.date, tile_id: str, info: dict[str, Any]) -> dict[str, Any]:
        window = self.grid.tile_from_id(tile_id).window
        marker = {
            "date": day.isoformat(),
            "tile": tile_id,
            "window": [window.row_start, window.row_stop, window.col_start, window.col_stop],
            "done_at": _now(),
            "lamap_version": lamap.__version__,
            "info": info,
        }
        fs, path = self._marker(day, tile_id)
        _put_atomic(fs, path, json.dumps(marker, indent=1).encode())
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(self._ledger(_FAILED, day, tile_id)[1])
        return marker

    def __repr__(self) -> str:
        """Return ``LaiStore('/data/lai.zarr', grid='europe')`` (no I/O)."""
        return f"LaiStore({self.url!r}, grid={self.grid.name!r})"
