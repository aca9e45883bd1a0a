"""Region writes: shard-aligned blocks of one date, checked against the store contract.

Every block covers whole shards and every shard object is replaced whole, so a write is
idempotent and never touches pixels outside its window; dask blocks that would cut a shard
(two tasks writing one shard lose data) are refused before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from lamap.errors import GridError, InputError
from lamap.grid import Grid, Window
from lamap.store.schema import LAI_VALID_RANGE, Source

__all__ = ["ArrayLike", "BlockWriter", "check_window", "write_region"]

#: A 2-D ``(y, x)`` block of one date: NumPy, dask, or an xarray DataArray on the grid.
ArrayLike: TypeAlias = "np.ndarray | da.Array | xr.DataArray"


@dataclass(frozen=True, eq=False)
class BlockWriter:
    """Where one date's blocks go: the committed arrays (pickled to workers) and the index.

    Get one with :meth:`lamap.store.LaiStore.block_writer`; it holds no open file.

    Parameters
    ----------
    url : str
        The store's location (names the writer in dask keys).
    index : int
        The date's index on the time axis.
    lai, source : zarr.Array
        The store's data arrays.
    lai_sd : zarr.Array, optional
        The spread of ``lai`` (stores made before it have none).
    """

    url: str
    index: int
    lai: zarr.Array
    source: zarr.Array
    lai_sd: zarr.Array | None = None

    def __dask_tokenize__(self) -> object:
        return ("lamap-store-target", self.url, self.index)

    def write(self, window: Window, lai: np.ndarray, source: np.ndarray,
              lai_sd: np.ndarray | None = None) -> Window:
        """Write one shard-aligned block of one date (checked against the store contract).

        ``lai_sd`` (NaN where no spread is known, the default) goes to the store's ``lai_sd``
        where it has one.

        Raises
        ------
        InputError
            If the block breaks the contract (flags, NaN where no input, valid range, a
            negative or infinite spread, a spread where there is no LAI).
        """
        values, flags = _checked(window, lai, source)
        rows, cols = window.to_slices()
        self.lai[self.index, rows, cols] = values
        self.source[self.index, rows, cols] = flags
        if self.lai_sd is not None:
            self.lai_sd[self.index, rows, cols] = _checked_sd(window, lai_sd, values)
        return window


def check_window(grid: Grid, window: Window) -> None:
    """Refuse a window outside the grid or not on its shard edges.

    Raises
    ------
    InputError
        If ``window`` is not a :class:`~lamap.grid.Window`.
    GridError
        If it is outside the grid or not aligned with the shards.
    """
    if not isinstance(window, Window):
        raise InputError(f"window {window!r} is not a lamap.grid.Window")
    if not grid.window.contains(window):
        raise GridError(
            f"{window} is not inside the grid {grid.label} ({grid.window}): "
            "clip it with window.intersection(grid.window)"
        )
    if not grid.is_aligned(window, "shard"):
        shard = grid.shard
        raise GridError(
            f"{window} is not aligned with the {shard} px shards of grid {grid.label}: "
            f"its edges must be multiples of {shard} px (or the grid's last row/column), "
            f"so that no two writers share a shard; write whole tiles or window.snap({shard})"
        )


def write_region(
    target: BlockWriter,
    grid: Grid,
    window: Window,
    lai: ArrayLike,
    source: ArrayLike,
    *,
    compute: bool,
) -> Delayed | None:
    """Write (or return a Delayed writing) one date's arrays into a checked window.

    Raises
    ------
    InputError
        If an array has the wrong shape, dtype or blocks, or breaks the contract.
    """
    lai_data = _unwrap("lai", lai, window, grid)
    source_data = _unwrap("source", source, window, grid)
    if isinstance(lai_data, da.Array) or isinstance(source_data, da.Array):
        blocks = _as_blocks(lai_data, source_data, window, grid.shard)
        delayed = _dask_write(target, window, *blocks)
    elif compute:
        target.write(window, lai_data, source_data)
        return None
    else:
        delayed = dask.delayed(_write_block, pure=True)(target, window, lai_data, source_data)
    if compute:
        delayed.compute()
        return None
    return delayed


# --------------------------------------------------------------------------- checks


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


def _checked_sd(window: Window, lai_sd: np.ndarray | None, lai: np.ndarray) -> np.ndarray:
    """Return the spread as float32, or raise InputError where it breaks the contract."""
    if lai_sd is None:
        return np.full(lai.shape, np.nan, dtype=np.float32)
    sd = np.asarray(lai_sd, dtype=np.float32)
    if sd.shape != lai.shape:
        raise InputError(f"lai_sd has shape {sd.shape}, lai {lai.shape}, for {window}")
    bad = int(np.count_nonzero(np.isinf(sd) | (sd < 0) | (np.isfinite(sd) & np.isnan(lai))))
    if bad:
        raise InputError(
            f"the lai_sd of the block for {window} has {bad} negative or infinite values, or "
            "values where lai is NaN: give a spread >= 0 (NaN where unknown) only where lai is"
        )
    return sd


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


# --------------------------------------------------------------------------- dask


def _write_block(
    target: BlockWriter, window: Window, lai: np.ndarray, source: np.ndarray
) -> Window:
    """Write one block (the task of a delayed NumPy write)."""
    return target.write(window, lai, source)


def _write_dask_block(
    lai: np.ndarray,
    source: np.ndarray,
    *,
    target: BlockWriter,
    origin: tuple[int, int],
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Locate a dask block in the grid and write it (the per-block task of a dask write)."""
    assert block_info is not None  # dask passes it because the signature asks for it
    (row0, row1), (col0, col1) = block_info[0]["array-location"]
    window = Window(origin[0] + row0, origin[0] + row1, origin[1] + col0, origin[1] + col1)
    target.write(window, lai, source)
    return np.ones((1, 1), dtype=np.int64)


def _written(blocks: np.ndarray, window: Window) -> Window:
    """Join the block writes of one region; the region's window is the result."""
    return window


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


def _dask_write(target: BlockWriter, window: Window, lai: da.Array, source: da.Array) -> Delayed:
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
