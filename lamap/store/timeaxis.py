"""The store's time axis: its dates in chronological order, each new date inserted in place.

``ds.sel(time=slice(...))`` needs a sorted axis, so a date earlier than some mapped ones
is inserted before them, not appended. ``lai`` and ``source`` keep one folder of shards
per date (``lai/c/<index>/``); inserting at index ``k`` of ``n`` dates moves the folders of
the dates ``k … n-1`` one index up, last first (on a local disk each move is one rename; on
an object store a copy and a delete of each shard object). The shards' bytes do not change,
only their keys. Appending a date after the last one moves nothing.

Every change is made under the store's metadata lock (:mod:`lamap.store.lock`), and only
when no live run is writing a date whose folder moves (:class:`lamap.store.LaiStore` waits
for such runs). An insertion records what it moves in ``lamap/lock/insert.json`` before
moving anything and removes the record after its commit (the root ``zarr.json``); if it is
interrupted in between, the next change of the store (:func:`recover`) moves the folders
back, so the store is again exactly as it was and the same command inserts the date again.
Readers that open the store while an insertion moves folders may see a date's shards under
its neighbour's index until the commit.

A store written by an earlier lamap whose dates are out of order keeps appending.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem

from lamap.errors import StoreError
from lamap.runtime.atomic import write_atomic
from lamap.store import schema
from lamap.store.fs import filesystem
from lamap.store.lock import LOCK_NODE, Held
from lamap.store.schema import array, open_group

__all__ = [
    "Placement",
    "date_index",
    "insert",
    "interrupted",
    "place",
    "read_dates",
    "recover",
    "rollback",
]

EPOCH = dt.date(1970, 1, 1)
#: Arrays with a time dimension (grown by one step per date); ``lai_sd`` is not in stores
#: made before it (:func:`growing`).
GROWING = ("lai", "source", "lai_sd", "time")
#: Arrays with one folder of shards per date, moved by an insertion (and, in a store with a
#: pyramid, the same arrays of every overview level: :func:`slotted`).
SLOTTED = ("lai", "source", "lai_sd")
#: The overview arrays with a time dimension (:mod:`lamap.store.pyramid`).
_LEVEL_SLOTTED = ("lai", "source", "valid_count", "observed_count")
#: The record of an insertion in progress.
INSERT_RECORD = f"{LOCK_NODE}/insert.json"


# --------------------------------------------------------------------------- reading


def read_dates(group: zarr.Group) -> list[dt.date]:
    """Return the dates of the time axis, in index order (chronological for new stores)."""
    values = np.asarray(array(group, "time")[...], dtype=np.int64)
    return [EPOCH + dt.timedelta(days=int(value)) for value in values]


def date_index(url: str, group: zarr.Group, day: dt.date) -> int:
    """Return the index of ``day`` on the time axis.

    Raises
    ------
    StoreError
        If the date was not added; the message lists the dates held and the fix.
    """
    dates = read_dates(group)
    if day not in dates:
        raise StoreError(
            f"date {day} is not in the store {url}, which holds {_dates_text(dates)}: "
            f"add it with store.add_date('{day}') (in the driver process) before writing"
        )
    return dates.index(day)


def _dates_text(dates: list[dt.date]) -> str:
    if not dates:
        return "no date yet"
    shown = ", ".join(day.isoformat() for day in dates[:5])
    return f"{len(dates)} date(s): {shown}{', ...' if len(dates) > 5 else ''}"


@dataclass(frozen=True)
class Placement:
    """Where a date goes on the time axis.

    Attributes
    ----------
    day : datetime.date
        The date.
    index : int
        Its index (existing, or where it will be inserted).
    dates : tuple of datetime.date
        The dates held now.
    """

    day: dt.date
    index: int
    dates: tuple[dt.date, ...]

    @property
    def exists(self) -> bool:
        """Whether the date is on the axis already."""
        return self.day in self.dates

    @property
    def moved(self) -> tuple[dt.date, ...]:
        """The dates whose shards an insertion moves (none for an existing or last date)."""
        return () if self.exists else self.dates[self.index :]


def place(group: zarr.Group, day: dt.date) -> Placement:
    """Return where ``day`` is, or goes (in order; at the end of an unsorted legacy axis)."""
    dates = read_dates(group)
    if day in dates:
        return Placement(day, dates.index(day), tuple(dates))
    ordered = all(a < b for a, b in zip(dates, dates[1:], strict=False))
    index = bisect.bisect(dates, day) if ordered else len(dates)
    return Placement(day, index, tuple(dates))


# --------------------------------------------------------------------------- changing


def insert(url: str, options: Mapping[str, Any], placement: Placement, held: Held) -> int:
    """Insert a new date (metadata lock held, no live writer of a moved date); return its index.

    An exception moves the shards back and rolls the metadata back before it propagates.

    Raises
    ------
    StoreError
        If the store cannot be written (the store is left as it was).
    """
    fs, root = filesystem(url, options)
    count = len(placement.dates)
    try:
        if placement.moved:
            _clear_slot(fs, root, count)
            record = {"date": placement.day.isoformat(), "index": placement.index,
                      "count": count, "moved_from": count}  # fmt: skip
            _write_record(fs, root, record)
            names = slotted(fs, root)
            for index in reversed(range(placement.index, count)):
                for name in names:
                    _move(fs, _slot(root, name, index), _slot(root, name, index + 1))
                _write_record(fs, root, record | {"moved_from": index})
        _grow(url, options, placement, held)
    except BaseException as err:
        with contextlib.suppress(Exception):  # the original error is the one to report
            recover(url, options)
            rollback(url, options)
        if isinstance(err, OSError):
            raise StoreError(f"cannot add date {placement.day} to the store {url}: {err}") from err
        raise
    _remove_record(fs, root)
    return placement.index


def _grow(url: str, options: Mapping[str, Any], placement: Placement, held: Held) -> None:
    """Grow the arrays from their committed shapes, write the time values, commit."""
    group = open_group(url, options, write=True)
    dates = [*placement.dates[: placement.index], placement.day,
             *placement.dates[placement.index :]]  # fmt: skip
    arrays = {name: array(group, name) for name in growing(group)}
    for grown in arrays.values():
        grown.resize((len(dates), *grown.shape[1:]))
    arrays["time"][:] = np.array([(day - EPOCH).days for day in dates], dtype=np.int64)
    held.check()
    schema.commit(url, options, tuple(arrays))


def growing(group: zarr.Group) -> tuple[str, ...]:
    """Return the arrays of :data:`GROWING` the store has."""
    return tuple(name for name in GROWING if name in group)


def rollback(url: str, options: Mapping[str, Any]) -> None:
    """Rewrite the growing arrays' metadata from the committed (consolidated) one.

    Resizing to the same shape writes the metadata and deletes no chunk; shrinking with
    ``Array.resize`` would enumerate every shard of the old shape.
    """
    group = open_group(url, options, write=True)
    for name in growing(group):
        kept = array(group, name)
        kept.resize(kept.shape)


def interrupted(url: str, options: Mapping[str, Any]) -> bool:
    """Return whether an insertion stopped before its commit (its record is there)."""
    fs, root = filesystem(url, options)
    path = f"{root}/{INSERT_RECORD}"
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def recover(url: str, options: Mapping[str, Any]) -> None:
    """Undo an insertion that stopped before its commit (call with the metadata lock held).

    Nothing happens when no insertion was interrupted. The moved shard folders go back to
    their indices, last moved first, and the arrays' metadata back to the committed state.
    """
    fs, root = filesystem(url, options)
    record = _read_record(fs, root)
    if record is None:
        return
    day = dt.date.fromisoformat(str(record["date"]))
    if day not in read_dates(open_group(url, options, write=False)):
        _move_back(fs, root, int(record["index"]), int(record["count"]),
                   int(record["moved_from"]))  # fmt: skip
        rollback(url, options)
    _remove_record(fs, root)


def _move_back(fs: fsspec.AbstractFileSystem, root: str, index: int, count: int,
               moved_from: int) -> None:  # fmt: skip
    """Move folders ``index+1 … count`` back down, including a move begun but not recorded."""
    begun = moved_from - 1  # its target was empty before: anything there came from it
    names = slotted(fs, root)
    for name in names if begun >= index else ():
        if _exists(fs, _slot(root, name, begun + 1)):
            _move(fs, _slot(root, name, begun + 1), _slot(root, name, begun))
    for slot in range(moved_from, count):
        for name in names:
            _move(fs, _slot(root, name, slot + 1), _slot(root, name, slot))


# --------------------------------------------------------------------------- folders


def slotted(fs: fsspec.AbstractFileSystem, root: str) -> tuple[str, ...]:
    """Return the arrays whose shard folders an insertion moves.

    ``lai``, ``source``, ``lai_sd`` (where the store has it) and the time-dimensioned
    arrays of every overview level the store has (``overviews/<k>/...``), so a pyramid
    stays aligned with its time axis.
    """
    pyramid = f"{root}/overviews"
    levels = sorted(int(p.rsplit("/", 1)[-1]) for p in _listing(fs, pyramid)
                    if p.rsplit("/", 1)[-1].isdigit())  # fmt: skip
    own = tuple(name for name in SLOTTED if _exists(fs, f"{root}/{name}/zarr.json"))
    return own + tuple(f"overviews/{k}/{name}" for k in levels for name in _LEVEL_SLOTTED)


def _listing(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    if isinstance(fs, LocalFileSystem):
        if not os.path.isdir(folder):
            return []
        return [os.path.join(folder, name) for name in os.listdir(folder)]
    fs.invalidate_cache(folder)
    try:
        return [str(p).rstrip("/") for p in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []


def _slot(root: str, name: str, index: int) -> str:
    return f"{root}/{name}/c/{index}"


def _exists(fs: fsspec.AbstractFileSystem, folder: str) -> bool:
    if isinstance(fs, LocalFileSystem):
        return os.path.exists(folder)
    fs.invalidate_cache(folder)
    return bool(fs.find(folder))


def _clear_slot(fs: fsspec.AbstractFileSystem, root: str, index: int) -> None:
    """Remove shards left beyond the time axis (none unless something broke the protocol)."""
    for name in slotted(fs, root):
        folder = _slot(root, name, index)
        if not _exists(fs, folder):
            continue
        if isinstance(fs, LocalFileSystem):
            shutil.rmtree(folder)
        else:
            fs.rm(fs.find(folder))


def _move(fs: fsspec.AbstractFileSystem, source: str, target: str) -> None:
    """Move every shard under ``source`` to the same key under ``target`` (bytes unchanged)."""
    if isinstance(fs, LocalFileSystem):
        _move_local(Path(source), Path(target))
        return
    fs.invalidate_cache(source)
    files = [str(path) for path in fs.find(source)]
    for path in files:
        fs.copy(path, target + path[len(source) :])
    if files:
        fs.rm(files)


def _move_local(source: Path, target: Path) -> None:
    if not source.exists():
        return
    if not target.exists():
        os.rename(source, target)  # one atomic rename of the whole folder
        return
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        moved = target / path.relative_to(source)
        moved.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, moved)
    shutil.rmtree(source)


def _write_record(fs: fsspec.AbstractFileSystem, root: str, record: dict[str, Any]) -> None:
    write_atomic(f"{root}/{INSERT_RECORD}", json.dumps(record).encode(), fs=fs, make_dirs=True)


def _read_record(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, Any] | None:
    path = f"{root}/{INSERT_RECORD}"
    fs.invalidate_cache(path)
    try:
        return dict(json.loads(fs.cat_file(path)))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise StoreError(
            f"the insertion record {path} is unreadable ({err}): the store may be damaged; "
            "if no lamap process is running, check its dates with `lamap info` and remove "
            "the record"
        ) from err


def _remove_record(fs: fsspec.AbstractFileSystem, root: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(f"{root}/{INSERT_RECORD}")
