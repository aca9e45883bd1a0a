"""Changes of a store's metadata under its lock, so that concurrent runs never collide.

- **Creation** (:func:`create`): whoever takes the lock first builds the store; the others
  find it complete and join it. Nobody removes what another process is creating: a half
  created store (no root ``zarr.json``) is only built again under the lock.
- **Adding a date** (:func:`add_date`): under the lock, so two processes adding different
  dates at once both get them, each at its place in time. An insertion that would move the
  shards of a date that a live run is writing waits for that run to end
  (:mod:`lamap.store.timeaxis`).
- **Writing** (:func:`writing`): a run registers as the writer of its date while holding
  the lock, and ends its registration when it is done; block writes need no lock (they are
  shard-exclusive).
- **Run records** (:func:`locked`): the root attributes are rewritten under the lock.

Every section under the lock first undoes an insertion that a killed process left half done.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lamap.errors import StoreError
from lamap.grid import Grid
from lamap.store import schema, timeaxis
from lamap.store.fs import probe
from lamap.store.lock import Held, Holder, Registration, store_locks

__all__ = ["add_date", "create", "locked", "registered", "repair"]

_LOG = logging.getLogger("lamap.store")
#: Longest pause between two looks at the runs an insertion waits for.
_POLL_S = 2.0


def _refuse_foreign(url: str) -> StoreError:
    return StoreError(
        f"{url} exists and is not a lamap store (no zarr.json with a lamap grid at its root): "
        "refusing to overwrite it; choose another output path or remove it"
    )


def create(url: str, options: Mapping[str, Any], grid: Grid, extra: Mapping[str, Any]) -> None:
    """Build the store at ``url`` unless a complete one is there (then nothing happens).

    Raises
    ------
    StoreError
        If something else than a lamap store is at ``url``, or it cannot be written.
    """
    if probe(url, options, schema.STORE_NODES) == "foreign":
        raise _refuse_foreign(url)  # checked before the lock writes anything there
    try:
        with store_locks(url, options).exclusive("creating the store"):
            state = probe(url, options, schema.STORE_NODES)
            if state == "foreign":
                raise _refuse_foreign(url)
            if state != "complete":
                schema.build(url, options, grid, extra)
    except OSError as err:
        raise StoreError(
            f"cannot create the store {url} ({err}): choose an output path you can write to"
        ) from err


@contextlib.contextmanager
def locked(url: str, options: Mapping[str, Any], purpose: str) -> Iterator[Held]:
    """Hold the store's metadata lock, after undoing an interrupted insertion."""
    with store_locks(url, options).exclusive(purpose) as held:
        timeaxis.recover(url, options)
        yield held


def repair(url: str, options: Mapping[str, Any]) -> None:
    """Undo an insertion that a killed process left half done, if any (one look otherwise).

    Raises
    ------
    StoreError
        If there is one to undo and the store cannot be written.
    """
    if timeaxis.interrupted(url, options):
        with locked(url, options, "undoing an interrupted insertion"):
            pass


def add_date(
    url: str,
    options: Mapping[str, Any],
    day: dt.date,
    *,
    register: bool = False,
    say: Callable[[str], None] | None = None,
) -> tuple[int, Registration | None]:
    """Put ``day`` on the time axis (if new) and optionally register as its writer.

    Parameters
    ----------
    url, options : str, mapping
        The store.
    day : datetime.date
        The date.
    register : bool
        Also register this process as a writer of the date (close the registration after
        the last write).
    say : callable, optional
        Told (once) when the insertion waits for runs writing later dates.

    Returns
    -------
    tuple
        The date's index, and the registration (None unless ``register``).

    Raises
    ------
    StoreError
        If the store cannot be opened or written.
    """
    locks, pause, told = store_locks(url, options), 0.05, False
    while True:
        with locked(url, options, f"adding date {day}") as held:
            placement = timeaxis.place(schema.open_group(url, options, write=False), day)
            busy = _writers_of(locks.writers(), placement.moved)
            if not busy:
                index = placement.index
                if not placement.exists:
                    index = timeaxis.insert(url, options, placement, held)
                return index, locks.register(day) if register else None
        if not told:
            told = True
            _tell(say, f"date {day} goes before {busy[0].date}, which {busy[0].describe()} "
                  "is writing: waiting for that run to end")  # fmt: skip
        time.sleep(pause)
        pause = min(_POLL_S, pause * 2)


def _writers_of(writers: list[Holder], dates: tuple[dt.date, ...]) -> list[Holder]:
    moved = {day.isoformat() for day in dates}
    return [holder for holder in writers if holder.date in moved]


def _tell(say: Callable[[str], None] | None, message: str) -> None:
    _LOG.info("%s", message)
    if say is not None:
        say(message)


@contextlib.contextmanager
def registered(url: str, options: Mapping[str, Any], day: dt.date) -> Iterator[int]:
    """Register as a writer of a date already on the axis; yield its index.

    Raises
    ------
    StoreError
        If the date is not on the time axis.
    """
    locks = store_locks(url, options)
    with locked(url, options, f"registering a writer of {day}"):
        index = timeaxis.date_index(url, schema.open_group(url, options, write=False), day)
        registration = locks.register(day)
    try:
        yield index
    finally:
        registration.close()
