"""Writing the pyramid: the overview pixels above a window, updated exactly and safely.

After a tile's level-0 shards are written, :meth:`PyramidWriter.update` recomputes, level
by level, only the overview pixels above the tile: level ``k`` from the ``2 x 2`` pixels
below it at level ``k - 1`` (read back from the store, so pixels shared with neighbouring
tiles see their data too). Each level keeps, besides the NaN-aware mean ``lai`` and the
majority ``source``, how many level-0 pixels below a pixel have an estimate
(``valid_count``) and how many were observed (``observed_count``): the mean of level ``k``
is then the count-weighted mean of level ``k - 1``, which equals the NaN-aware block mean
of level 0 (to float32 rounding), and the majority flag is exact.

Above a tile, coarse levels share shards with neighbouring tiles that may be written at
the same time by other workers. Every read-compute-write of a shard happens under a lock
named after it (:class:`distributed.Lock` on a cluster, a process lock otherwise), and each
tile updates level ``k - 1`` before level ``k``: the last update of a shard then always sees
every update below it. Locks are never nested, so they cannot deadlock.

The update ends by writing the tile's build marker (``overviews/built/<date>/<tile>.json``),
which :func:`build_overviews` (``lamap overviews``) uses to resume.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from dask.base import tokenize

from lamap.grid import Grid, Window
from lamap.runtime.atomic import write_atomic
from lamap.runtime.cluster import ClusterSpec, get_client
from lamap.runtime.progress import Progress, Reporter
from lamap.store.fs import filesystem
from lamap.store.laistore import LaiStore
from lamap.store.pyramid import (
    BUILT_NODE,
    PyramidSpec,
    ensure_pyramid,
    level_arrays,
    pyramid_spec,
)
from lamap.store.schema import Source, now, open_group

__all__ = [
    "OverviewReport",
    "PyramidWriter",
    "build_overviews",
    "built_tiles",
    "clear_built",
    "parent_window",
    "pyramid_writer",
    "reduce_children",
]

#: Distinct lock names; shards share a name only by chance, which costs waiting, not data.
_LOCK_BUCKETS = 4096
_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


@dataclass(frozen=True, eq=False)
class PyramidWriter:
    """Updates one date's pyramid above written windows; small and picklable.

    Get one with :func:`pyramid_writer`; it holds no open file.

    Attributes
    ----------
    url : str
        The store.
    storage_options : dict
        fsspec options of the store.
    grid : Grid
        The store's grid.
    spec : PyramidSpec
        The pyramid's layout.
    day : datetime.date
        The date.
    index : int
        The date's index on the time axis.
    arrays : tuple
        Per level, from 0: ``(lai, source)`` then ``(lai, source, valid_count,
        observed_count)``.
    """

    url: str
    storage_options: dict[str, Any] = field(hash=False)
    grid: Grid
    spec: PyramidSpec
    day: dt.date
    index: int
    arrays: tuple[tuple[zarr.Array, ...], ...]

    def __dask_tokenize__(self) -> object:
        return ("lamap-pyramid-writer", self.url, self.index)

    def update(self, window: Window, tile_id: str | None = None) -> Window:
        """Recompute the overview pixels above a level-0 window, then mark the tile built.

        Parameters
        ----------
        window : Window
            Level-0 pixels just written (inside the grid).
        tile_id : str, optional
            The tile whose build marker to write afterwards.

        Returns
        -------
        Window
            ``window``.
        """
        below = window
        for level in range(1, self.spec.levels + 1):
            above = parent_window(below, PyramidSpec.shape(self.grid, level))
            for piece in above.split(self.spec.shard):
                with _shard_lock(self._lock_name(level, piece)):
                    self._update_piece(level, piece)
            below = above
        if tile_id is not None:
            self._mark_built(tile_id)
        return window

    def _update_piece(self, level: int, piece: Window) -> None:
        """Recompute one level's pixels from the level below (the caller holds the lock)."""
        rows, cols = PyramidSpec.shape(self.grid, level - 1)
        children = Window(2 * piece.row_start, min(2 * piece.row_stop, rows),
                          2 * piece.col_start, min(2 * piece.col_stop, cols))  # fmt: skip
        sl = (self.index, *children.to_slices())
        source = self.arrays[level - 1]
        if level == 1:
            lai, flags = (np.asarray(a[sl]) for a in source[:2])
            valid = np.isfinite(lai).astype(np.uint32)
            observed = (flags == Source.OBSERVED).astype(np.uint32)
        else:
            lai, valid, observed = (np.asarray(source[i][sl]) for i in (0, 2, 3))
        reduced = reduce_children(lai, valid, observed, self._area(level, piece), piece.shape)
        target = (self.index, *piece.to_slices())
        for out, values in zip(self.arrays[level], reduced, strict=True):
            out[target] = values.astype(out.dtype, copy=False)

    def _area(self, level: int, piece: Window) -> np.ndarray:
        """Level-0 pixels inside the grid under each pixel of ``piece`` (grid edges clip)."""
        size = 2**level
        extents = []
        for start, stop, edge in ((piece.row_start, piece.row_stop, self.grid.shape[0]),
                                  (piece.col_start, piece.col_stop, self.grid.shape[1])):
            first = np.arange(start, stop) * size
            extents.append(np.minimum(first + size, edge) - first)
        return np.outer(extents[0], extents[1]).astype(np.int64)

    def _lock_name(self, level: int, piece: Window) -> str:
        shard = (piece.row_start // self.spec.shard, piece.col_start // self.spec.shard)
        bucket = int(tokenize(self.url, level, shard), 16) % _LOCK_BUCKETS
        return f"lamap-overviews-{bucket}"

    def _mark_built(self, tile_id: str) -> None:
        fs, path = _built_path(self.url, self.storage_options, self.day, tile_id)
        record = {"date": self.day.isoformat(), "tile": tile_id, "levels": self.spec.levels,
                  "built_at": now()}  # fmt: skip
        write_atomic(path, json.dumps(record).encode(), fs=fs, make_dirs=True)


def pyramid_writer(store: LaiStore, day: dt.date) -> PyramidWriter:
    """Return the writer of one date's pyramid (the date and the pyramid must exist).

    Raises
    ------
    StoreError
        If the store has no pyramid, or the date is not on its time axis.
    """
    group = open_group(store.url, store.storage_options, write=True)
    spec = pyramid_spec(store, group)
    arrays = tuple(level_arrays(group, level) for level in range(spec.levels + 1))
    return PyramidWriter(store.url, dict(store.storage_options), store.grid, spec, day,
                         store.time_index(day), arrays)  # fmt: skip


def parent_window(window: Window, shape: tuple[int, int]) -> Window:
    """Return the pixels of the next level that cover ``window`` (clipped to ``shape``)."""
    return Window(window.row_start // 2, min(-(-window.row_stop // 2), shape[0]),
                  window.col_start // 2, min(-(-window.col_stop // 2), shape[1]))  # fmt: skip


def reduce_children(
    lai: np.ndarray,
    valid: np.ndarray,
    observed: np.ndarray,
    area: np.ndarray,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``lai, source, valid_count, observed_count`` of the parents of ``2 x 2`` children.

    Parameters
    ----------
    lai : numpy.ndarray
        The children's mean LAI (NaN where ``valid`` is 0).
    valid, observed : numpy.ndarray
        Level-0 pixels with an estimate / observed below each child.
    area : numpy.ndarray
        Level-0 pixels inside the grid below each parent (``shape``).
    shape : tuple of int
        The parents' shape; children beyond ``2 * shape`` are absent (grid edge).

    Returns
    -------
    tuple of numpy.ndarray
        float32 mean LAI (NaN without any estimate), uint8 majority flag (ties go to the
        higher flag), int64 counts.
    """
    weight = valid.astype(np.int64)
    total = np.where(weight > 0, np.nan_to_num(lai.astype(np.float64)), 0.0) * weight
    sums = [_block_sum(values, shape) for values in (total, weight, observed.astype(np.int64))]
    lai_sum, valid_count, observed_count = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid_count > 0, lai_sum / valid_count, np.nan).astype(np.float32)
    counts = np.stack([area - valid_count, observed_count, valid_count - observed_count])
    flags = (2 - np.argmax(counts[::-1], axis=0)).astype(np.uint8)  # ties: the higher flag
    return mean, flags, valid_count, observed_count


def _block_sum(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sum ``2 x 2`` blocks, padding the children to ``2 * shape`` with zeros."""
    padded = np.zeros((2 * shape[0], 2 * shape[1]), dtype=values.dtype)
    padded[: values.shape[0], : values.shape[1]] = values
    return padded.reshape(shape[0], 2, shape[1], 2).sum(axis=(1, 3))


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def _shard_lock(name: str) -> Iterator[None]:
    """Hold the lock of one overview shard: distributed on a cluster, else in-process."""
    if _on_cluster():
        from distributed import Lock

        with Lock(name):
            yield
        return
    with _LOCAL_GUARD:
        lock = _LOCAL_LOCKS.setdefault(name, threading.Lock())
    with lock:
        yield


def _on_cluster() -> bool:
    try:
        from distributed import get_client

        get_client()
    except (ImportError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- markers


def _built_path(url: str, options: dict[str, Any], day: dt.date,
                tile_id: str | None = None) -> tuple[Any, str]:  # fmt: skip
    fs, root = filesystem(url, options)
    folder = f"{root}/{BUILT_NODE}/{day.isoformat()}"
    return fs, folder if tile_id is None else f"{folder}/{tile_id}.json"


def built_tiles(store: LaiStore, day: dt.date) -> set[str]:
    """Return the tiles of a date whose overviews are up to date (their build markers)."""
    fs, folder = _built_path(store.url, store.storage_options, day)
    fs.invalidate_cache(folder)  # workers write markers
    try:
        paths = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return set()
    names = (str(path).rstrip("/").rsplit("/", 1)[-1] for path in paths)
    return {name[: -len(".json")] for name in names if name.endswith(".json")}


def clear_built(store: LaiStore, day: dt.date, tile_ids: Sequence[str]) -> None:
    """Forget that the overviews above some tiles are up to date."""
    for tile_id in tile_ids:
        fs, path = _built_path(store.url, store.storage_options, day, tile_id)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)


# --------------------------------------------------------------------------- building


@dataclass
class OverviewReport:
    """What :func:`build_overviews` did.

    Attributes
    ----------
    built : dict
        Date (ISO) → tiles whose overviews were built by this run.
    skipped : int
        Done tiles whose overviews were already up to date.
    failed : dict
        ``"<date> <tile>"`` → the error (a rerun retries them).
    levels : int
        Overview levels of the pyramid.
    """

    built: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    levels: int = 0


def build_overviews(
    store: LaiStore,
    *,
    cluster: ClusterSpec | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> OverviewReport:
    """Give a store its pyramid, or bring it up to date; resumable.

    Creates the pyramid if the store has none and grows it to the store's dates, then
    updates the overviews above every done tile that has no build marker (all done tiles
    with ``rebuild``), tile by tile on a Dask cluster. An interrupted run leaves markers
    for the tiles it finished; running it again does the rest.

    Parameters
    ----------
    store : LaiStore
        The store.
    cluster : ClusterSpec, optional
        The Dask cluster (default: a local one).
    rebuild : bool
        Update the overviews above every done tile, markers or not.
    progress : callable, optional
        Receives a ``"tiles"`` step event per tile.

    Returns
    -------
    OverviewReport
    """
    say = Reporter(progress)
    ensure_pyramid(store, create=True)
    report = OverviewReport(levels=pyramid_spec(store).levels)
    jobs: list[tuple[PyramidWriter, str]] = []
    for day in store.dates:
        done = store.done_tiles(day)
        built = set() if rebuild else built_tiles(store, day)
        todo = [tile_id for tile_id in done if tile_id not in built]
        report.skipped += len(done) - len(todo)
        if todo:
            writer = pyramid_writer(store, day)
            jobs += [(writer, tile_id) for tile_id in todo]
    if report.skipped:
        say.info(f"{report.skipped} tiles already have up-to-date overviews: skipped")
    if jobs:
        with get_client(cluster) as client:
            _stream(client, store.grid, jobs, report, say)
    return report


def _update_task(writer: PyramidWriter, window: Window, tile_id: str) -> str:
    writer.update(window, tile_id)
    return tile_id


def _stream(
    client: Any,
    grid: Grid,
    jobs: list[tuple[PyramidWriter, str]],
    report: OverviewReport,
    say: Reporter,
) -> None:
    """Run the tile updates, a few per worker at once, recording each outcome."""
    from distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    pending = iter(jobs)
    queue = as_completed()
    running: dict[Any, tuple[PyramidWriter, str]] = {}

    def fill() -> None:
        while len(running) < 4 * workers and (job := next(pending, None)) is not None:
            writer, tile_id = job
            key = f"lamap-overviews-{tokenize(writer, tile_id)}"
            future = client.submit(_update_task, writer, grid.tile_from_id(tile_id).window,
                                   tile_id, key=key, retries=2)  # fmt: skip
            running[future] = job
            queue.add(future)

    fill()
    finished = 0
    while running:
        future = next(queue)
        writer, tile_id = running.pop(future)
        finished += 1
        day = writer.day.isoformat()
        if future.status == "finished":
            report.built[day] = report.built.get(day, 0) + 1
        else:
            report.failed[f"{day} {tile_id}"] = str(future.exception()).splitlines()[0][:300]
        say.step("tiles", finished, len(jobs), f"overviews of {tile_id} {day}")
        fill()
