"""Concurrency trials on one store: jobs that worker processes run, and the sequential result.

A job is what one run does to a store: create (or join) it, register as the writer of its
date (adding the date), write some tiles with data that depend only on (date, tile), mark
them done and record the run. Importable by spawned worker processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from lamap.grid import Grid, Tile
from lamap.store import LAI_VALID_RANGE, LaiStore, Source

#: 300 x 260 px, 3 x 3 tiles of 128 px, 64-px shards (partial edge shards and tiles).
TRIAL_GRID = Grid(
    "EPSG:3035", 10.0, (4_000_000.0, 3_000_000.0), (300, 260), 32, 64, 128, name="trial"
)


@dataclass(frozen=True)
class Job:
    """One run: a date and the tiles it writes."""

    date: str
    tiles: tuple[str, ...]


def tile_data(date: str, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic LAI and flags of a tile on a date that satisfy the store contract."""
    rng = np.random.default_rng(zlib.crc32(f"{date}/{tile.id}".encode()))
    source = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=tile.shape, p=[0.2, 0.3, 0.5])
    lai = rng.uniform(*LAI_VALID_RANGE, size=tile.shape).astype(np.float32)
    lai[source == Source.NO_INPUT] = np.nan
    return lai, source


def run_job(url: str, job: Job, options: dict[str, Any] | None = None,
            start_at: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Do one job on the store at ``url`` (from ``start_at``, a ``time.time()``)."""
    time.sleep(max(0.0, start_at - time.time()))
    store = LaiStore.create(url, TRIAL_GRID, storage_options=options)
    with store.writing(job.date) as writer:
        for tile_id in job.tiles:
            tile = TRIAL_GRID.tile_from_id(tile_id)
            writer.write(tile.window, *tile_data(job.date, tile))
            store.mark_done(job.date, tile, {"job": job.date})
    store.record_run(job.date)
    return {"pid": os.getpid(), "date": job.date}


def snapshot(store: LaiStore) -> dict[str, Any]:
    """What two stores must share to be equal: dates, data per date, done tiles per date."""
    ds = store.dataset()
    days = [str(day) for day in store.dates]
    return {
        "dates": days,
        "lai": ds["lai"].values,
        "source": ds["source"].values,
        "done": {day: store.done_tiles(day) for day in days},
        "summaries": sorted(json.dumps(store.attrs.get("lamap_dates", {}).get(day, {}).get(
            "tiles_done")) for day in days),
    }


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Assert two snapshots are equal (NaN equal to NaN)."""
    assert got["dates"] == want["dates"], (got["dates"], want["dates"])
    np.testing.assert_array_equal(got["lai"], want["lai"])
    np.testing.assert_array_equal(got["source"], want["source"])
    assert got["done"] == want["done"]
    assert got["summaries"] == want["summaries"]


def as_day(text: str) -> dt.date:
    """Parse ``YYYY-MM-DD``."""
    return dt.date.fromisoformat(text)


def create_on(url: str, shard: int, start_at: float) -> str:
    """Create a store on the trial grid with another shard (and 128-px tiles)."""
    from lamap.errors import GridError

    time.sleep(max(0.0, start_at - time.time()))
    grid = Grid.from_dict(TRIAL_GRID.to_dict() | {"shard": shard, "tile": 128})
    try:
        LaiStore.create(url, grid)
    except GridError:
        return "GridError"
    return "created"
