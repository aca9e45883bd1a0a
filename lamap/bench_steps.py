"""The measuring steps of ``lamap bench`` (see :mod:`lamap.bench` for what they mean)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import dask
import numpy as np

from lamap.blocks import BlockJob, block_windows
from lamap.catalog import SearchResult, open_catalog, search
from lamap.catalog.local import World
from lamap.features import FeatureSpec
from lamap.grid import Grid, Tile
from lamap.infer import ModelRef
from lamap.runtime import ClusterSpec
from lamap.tileplan import SceneIndex, TilePlan, plan_tile
from lamap.timesteps import TimeSteps, search_window

__all__ = [
    "BenchSetup",
    "compare_precisions",
    "map_once",
    "old_tasks",
    "peer_run",
    "stage_rates",
]


@dataclass(frozen=True)
class BenchSetup:
    """What every step measures on."""

    world: World
    grid: Grid
    tiles: list[Tile]
    date: dt.date
    checkpoint: str
    halo: int
    spec: FeatureSpec
    device: str
    precision: str = "auto"

    @cached_property
    def result(self) -> SearchResult:
        """Search the world's catalog once through its local STAC API, as a map does."""
        start, end = search_window([self.date])
        with open_catalog(self.world.root) as profile:
            return search(profile, self.world.bbox, start, end)

    def plans(self) -> list[TilePlan]:
        """Return the tiles' plans; every bench tile must have input."""
        index = SceneIndex.from_result(self.result)
        plans = [plan_tile(index, tile, self.date) for tile in self.tiles]
        missing = [p.tile.id for p in plans if not isinstance(p.steps, TimeSteps)]
        if missing:
            raise ValueError(f"bench tiles {missing} have no input on {self.date}")
        return plans

    def ref(self) -> ModelRef:
        """Return the model as the map's tasks see it (one window per block)."""
        return ModelRef.from_path(self.checkpoint, device=self.device, window=self.grid.shard,
                                  precision=self.precision)  # fmt: skip


def _jobs(setup: BenchSetup, plans: list[TilePlan], *, exact: bool) -> list[BlockJob]:
    jobs = []
    for plan in plans:
        assert isinstance(plan.steps, TimeSteps)
        s2, s1 = plan.used_scenes()
        for window in block_windows(setup.grid, plan.tile.window):
            jobs.append(BlockJob(plan.steps, s2, s1, setup.grid, window, setup.halo,
                                 setup.spec, exact_warp=exact))  # fmt: skip
    return jobs


def _busy_seconds(client: Any, futures: list[Any]) -> float:
    """Wait for the tasks; return the seconds they computed, summed over workers."""
    from distributed import get_task_stream, wait

    with get_task_stream(client) as stream:
        wait(futures)
        for future in futures:
            future.result()  # raise the first error
    keys = {future.key for future in futures}
    return sum(
        part["stop"] - part["start"]
        for task in stream.data if task["key"] in keys
        for part in task["startstops"] if part["action"] == "compute"
    )  # fmt: skip


def stage_rates(client: Any, setup: BenchSetup) -> dict[str, float]:
    """Worker-seconds of the inputs tasks (exact, approximate warp) and of the inference.

    The seconds are the tasks' compute time summed over workers and divided by the number
    of workers: the wall time of a cluster doing only that stage, whatever the placement.
    Every worker loads the model before the inference tasks are timed (as during a map,
    where a worker loads it once); the inference tasks take the approximate inputs.
    """
    from lamap.blocks import block_features, block_lai

    plans, ref = setup.plans(), setup.ref()
    workers = max(1, len(client.scheduler_info()["workers"]))
    seconds: dict[str, float] = {}
    for exact, name in ((True, "inputs_exact"), (False, "inputs")):
        inputs = [client.submit(block_features, job, pure=False)
                  for job in _jobs(setup, plans, exact=exact)]  # fmt: skip
        seconds[name] = _busy_seconds(client, inputs) / workers
    client.run(ref.load)
    lai = [client.submit(block_lai, block, ref, lai_scale=setup.spec.lai_scale, pure=False)
           for block in inputs]  # fmt: skip
    seconds["infer"] = _busy_seconds(client, lai) / workers
    return seconds


def map_once(
    setup: BenchSetup, bbox: tuple[float, ...], out: Path, cluster: ClusterSpec
) -> tuple[float, float, int]:
    """Return the seconds and tasks of ``map_lai`` over the bench tiles into a new store.

    The seconds are the whole call's and its tiles' streaming (``MapReport.tile_seconds``).
    """
    from lamap.mapping import MapOptions, map_lai

    started = time.perf_counter()
    report = map_lai(bbox, setup.date, out, catalog=str(setup.world.root),
                     model=setup.checkpoint, grid=setup.grid, cluster=cluster,
                     options=MapOptions(device=setup.device,
                                        precision=setup.precision))  # fmt: skip
    seconds = time.perf_counter() - started
    if sorted(report.mapped) != sorted(t.id for t in setup.tiles):
        raise RuntimeError(f"the bench map mapped {report.mapped}, failed {report.failed}")
    return seconds, report.tile_seconds, report.tasks


def old_tasks(setup: BenchSetup, out: Path) -> int:
    """Tasks of the previous per-tile map_overlap graph for the bench tiles (not computed).

    Built on the europe grid's chunking (shards cut in 2 × 2 chunks, unless that is
    narrower than the halo), optimised as
    ``client.compute`` would, and counted.
    """
    from lamap.mapping import tile_arrays
    from lamap.store import LaiStore

    half = setup.grid.shard // 2
    grid = replace(setup.grid, chunk=half if half >= setup.halo else setup.grid.shard)
    store = LaiStore.create(out, grid)
    store.add_date(setup.date)
    result = setup.result
    index = SceneIndex.from_result(result)
    ref = ModelRef.from_path(setup.checkpoint, device=setup.device)
    total = 0
    for tile in setup.tiles:
        same = grid.get_tile(tile.row, tile.col)
        plan = plan_tile(index, same, setup.date)
        assert isinstance(plan.steps, TimeSteps)
        lai, source = tile_arrays(plan.steps, result, same, ref, halo=setup.halo,
                                  spec=setup.spec)  # fmt: skip
        marker = store.write_tile(setup.date, same, lai, source, compute=False)
        (optimised,) = dask.optimize(marker)
        total += len(optimised.__dask_graph__())
    return total


def peer_run(setup: BenchSetup, stored: Path) -> tuple[float, float]:
    """Return the naive peer's px/s over the bench tiles and its agreement with the stored map."""
    import xarray as xr

    from lamap.peer import naive_map

    plans = setup.plans()
    lai = xr.open_zarr(stored)["lai"].sel(time=np.datetime64(setup.date)).values
    seconds, agree, count = 0.0, 0, 0
    for plan in plans:
        assert isinstance(plan.steps, TimeSteps)
        s2, s1 = plan.used_scenes()
        result = naive_map(plan.steps, s2, s1, setup.grid, plan.tile.window, setup.checkpoint,
                           halo=setup.halo, device=setup.device)  # fmt: skip
        seconds += result.seconds
        rows, cols = plan.tile.window.to_slices()
        mine = lai[rows, cols]
        same = (np.isnan(mine) & np.isnan(result.lai)) | (np.abs(mine - result.lai) < 0.05)
        agree, count = agree + int(same.sum()), count + same.size
    area = sum(t.shape[0] * t.shape[1] for t in setup.tiles)
    return area / seconds, agree / count


def compare_precisions(setup: BenchSetup) -> dict[str, Any]:
    """Float32 vs bfloat16 on the first bench block, in this process, one thread.

    Returns the precision ``auto`` picks here, the bfloat16 speed-up and the mean and
    largest LAI difference (m²/m²) between the two.
    """
    import torch

    from lamap.blocks import block_features
    from lamap.infer import precision_for, predict_array, set_layout
    from lamap.model import load_checkpoint

    torch.set_num_threads(1)
    loaded = set_layout(load_checkpoint(setup.checkpoint, map_location=setup.device))
    block = block_features(_jobs(setup, setup.plans(), exact=False)[0])
    out, seconds = {}, {}
    for precision in ("float32", "bfloat16"):
        predict_array(block.inputs, block.context, setup.halo, loaded, window=setup.grid.shard,
                      batch=1, precision=precision)  # warm up; fmt: skip
        started = time.perf_counter()
        out[precision] = predict_array(block.inputs, block.context, setup.halo, loaded,
                                       window=setup.grid.shard, batch=1, precision=precision)
        seconds[precision] = time.perf_counter() - started
    difference = np.abs(out["float32"] - out["bfloat16"]) * setup.spec.lai_scale
    return {
        "auto": precision_for(loaded, setup.precision),
        "bf16_speedup": seconds["float32"] / seconds["bfloat16"],
        "bf16_mean_diff": float(difference.mean()),
        "bf16_max_diff": float(difference.max()),
    }
