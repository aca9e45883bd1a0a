"""What a map run checks before it creates a store or adds a date (validate, then write).

:func:`lamap.map_lai` calls these in order; each refuses a run that cannot succeed with one
:class:`~lamap.errors.LamapError` that names the problem and the fix, and none of them writes:

1. :func:`find_target`: the output is a lamap store on the requested grid, or nothing (or a
   store whose creation stopped) in a folder that can be written; never a file or a foreign
   folder.
2. the bbox is inside the grid (:meth:`lamap.grid.Grid.tiles_for_bbox`), the model loads,
   the catalog answers (mapping).
3. :func:`check_device`: CUDA exists where the run's local workers would need it.
4. :func:`with_input`: at least one tile of the plan has input; a date with none anywhere
   (and no tile done yet) is refused with the planner's reason and fix.
5. :func:`check_workers`: the cluster has workers, with a GPU resource for ``device="cuda"``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamap.errors import InputError, NoInputError, StoreError
from lamap.grid import Grid
from lamap.store import LaiStore
from lamap.store.fs import normalise_url, probe
from lamap.store.schema import STORE_NODES
from lamap.tileplan import TilePlan

__all__ = ["Target", "check_device", "check_workers", "find_target", "with_input"]

#: Seconds a run waits for a first worker of a cluster that has none yet.
_WORKER_WAIT_S = 30.0


@dataclass(frozen=True)
class Target:
    """Where a run writes: an existing store, or the location and grid of a new one.

    Attributes
    ----------
    url : str
        The normalised location.
    grid : Grid
        The existing store's grid, or the grid a new store gets.
    store : LaiStore or None
        The store, if it exists (complete).
    """

    url: str
    grid: Grid
    store: LaiStore | None

    def open_or_create(self) -> LaiStore:
        """Return the store, creating it now if it does not exist (the first write)."""
        return self.store or LaiStore.create(self.url, self.grid)


def find_target(out: str | os.PathLike[str], grid: Grid | None, default: Grid) -> Target:
    """Look at the output location without writing anything.

    Parameters
    ----------
    out : path-like
        The store's location.
    grid : Grid, optional
        The grid asked for; an existing store must be on it.
    default : Grid
        The grid of a new store when ``grid`` is None.

    Raises
    ------
    InputError
        If ``out`` is a file, lies inside one, or its folder cannot be written.
    StoreError
        If something else than a lamap store is there.
    GridError
        If the existing store is on another grid than ``grid``.
    """
    url = normalise_url(out)
    state = probe(url, {}, STORE_NODES)
    if state == "foreign":
        raise StoreError(
            f"{url} exists and is not a lamap store (no zarr.json with a lamap grid at its "
            "root): refusing to overwrite it; choose another output path or remove it"
        )
    if state == "complete":
        store = LaiStore.open(url, grid=grid)
        return Target(url, store.grid, store)
    if url.startswith("/"):
        _check_writable(Path(url))
    return Target(url, grid or default, None)


def _check_writable(path: Path) -> None:
    """Refuse a local store path that cannot be created or written."""
    folder = path if path.exists() else path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"--out {path} lies inside {folder}, a file: choose a folder path")
    try:  # a real try: permissions, read-only mounts, quotas (root passes os.access)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise InputError(
            f"cannot write the store {path}: cannot write in {folder} ({err.strerror}); "
            "choose an output path you can write to"
        ) from err


def check_device(device: str, local: bool) -> None:
    """Refuse ``cuda`` (or ``cuda:N``) when the run's local workers would have no such GPU.

    Parameters
    ----------
    device : str
        The run's device.
    local : bool
        Whether the workers are started on this machine (no scheduler address).

    Raises
    ------
    InputError
        If CUDA (or that device) is not available here.
    """
    if local and device.startswith("cuda"):
        from lamap.model import resolve_device

        resolve_device(device)


def with_input(plans: Iterator[TilePlan], day: dt.date, total: int) -> Iterator[TilePlan]:
    """Return the plans, lazily, once one of them has input (planning up to it).

    Raises
    ------
    NoInputError
        If no tile has input for the date: the planner's commonest reason (with its fix).
    """
    held = []
    for plan in plans:
        held.append(plan)
        if plan.has_input:
            return itertools.chain(held, plans)
    reasons = Counter(getattr(plan.steps, "reason", "") for plan in held)
    reason, count = reasons.most_common(1)[0] if reasons else ("no tile to plan", 0)
    raise NoInputError(
        f"no input for {day} in any of the {total} tiles, so nothing was written "
        f"({count} of {total} tiles: {reason})"
    )


def check_workers(client: Any, device: str) -> int:
    """Return the number of workers; refuse a cluster that cannot run the tasks.

    Raises
    ------
    InputError
        If the cluster has no worker, or ``device`` is ``cuda`` and no worker offers a
        ``GPU`` resource (the inference tasks would wait for one forever).
    """
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if not workers:
        try:
            client.wait_for_workers(1, timeout=_WORKER_WAIT_S)
        except TimeoutError as err:
            raise InputError(
                f"the Dask cluster has no worker after {_WORKER_WAIT_S:.0f} s: start workers "
                "(`dask worker ADDRESS`) or drop --scheduler to run on a local cluster"
            ) from err
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    gpus = [w for w in workers.values() if (w.get("resources") or {}).get("GPU")]
    if device.startswith("cuda") and not gpus:
        raise InputError(
            "--device cuda needs workers with a GPU resource, and none of the cluster's "
            f"{len(workers)} workers has one: start them with `dask worker ADDRESS "
            "--resources GPU=1`, or use --device cpu"
        )
    return len(workers)
