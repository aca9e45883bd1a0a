"""Bad tiles do not sink a run: a corrupt COG fails one tile, the others land, a rerun completes.

A real LocalCluster with worker processes and real COGs: the test corrupts one Sentinel-2
COG of the tiny world that only one of four tiles reads, maps the four tiles, repairs the
file and maps again. A second test kills a worker process in the middle of a run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lamap.grid import Grid
from lamap.mapping import MapOptions, map_lai
from lamap.runtime import ClusterSpec
from lamap.store import LaiStore
from lamap.synthetic.world import World

DATE = dt.date(2024, 4, 28)
EDGE = 64  # tiles of one shard each: column 1 alone reads the western product of 04-13


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield local


@pytest.fixture(scope="module")
def small_grid(tiny_world: World) -> Grid:
    return Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=EDGE, shard=EDGE, tile=EDGE)


def _row_bbox(grid: Grid) -> tuple[float, ...]:
    """Tiles r0 c1..c4, inside their edges (lon/lat is turned ~3° against EPSG:3035 here)."""
    first, last = grid.get_tile(0, 1).bounds, grid.get_tile(0, 4).bounds
    pad_x, pad_y = 0.1 * EDGE * grid.resolution, 0.4 * EDGE * grid.resolution
    inner = (first[0] + pad_x, first[1] + pad_y, last[2] - pad_x, last[3] - pad_y)
    return grid.bounds_to_lonlat(inner).to_tuple()


def _cog(world: World) -> Path:
    """The B04 COG of the western product of 2024-04-13 (t-2 of column 1 only)."""
    item = next(p for p in world.item_paths if "20240413" in p.name and "T31ULU" in p.name)
    return Path(json.loads(item.read_text())["assets"]["B04"]["href"])


def test_a_corrupt_cog_fails_one_tile_and_a_rerun_completes_it(
    tiny_world: World, small_grid: Grid, cluster, model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    bbox, spec = _row_bbox(small_grid), ClusterSpec(scheduler=cluster.scheduler_address)
    out, reference = tmp_path / "lai.zarr", tmp_path / "reference.zarr"
    run = dict(catalog=str(tiny_world.root), model=model, cluster=spec,
               options=MapOptions(retries=1))  # fmt: skip
    good = map_lai(bbox, DATE, reference, grid=small_grid, **run)  # type: ignore[arg-type]
    assert len(good.mapped) == 4 and not good.failed
    cog = _cog(tiny_world)
    original = cog.read_bytes()
    try:
        cog.write_bytes(original[:1024] + b"\0" * (len(original) - 1024))
        first = map_lai(bbox, DATE, out, grid=small_grid, **run)  # type: ignore[arg-type]
    finally:
        cog.write_bytes(original)  # the repair
    assert list(first.failed) == ["r0000c0001"], first.failed
    assert first.failed["r0000c0001"].startswith("reading inputs of block")
    assert "T31ULU_20240413T103021_B04_10m.tif" in first.failed["r0000c0001"]
    assert sorted(first.mapped) == ["r0000c0002", "r0000c0003", "r0000c0004"]
    store = LaiStore.open(out)
    assert store.failed_tiles(DATE) == first.failed
    assert "r0000c0001" not in store.done_tiles(DATE)
    from lamap.export import info

    assert "3 of 25 tiles done, 1 failed" in info(out)
    assert "r0000c0001 failed: reading inputs of block" in info(out)
    ds = xr.open_zarr(out).sel(time=np.datetime64(DATE))
    rows, cols = small_grid.get_tile(0, 1).window.to_slices()
    assert np.isnan(ds["lai"].values[rows, cols]).all()  # reset to "no input", not half a tile
    assert (ds["source"].values[rows, cols] == 0).all()
    level1 = xr.open_zarr(out, group="overviews/1")["lai"].sel(time=np.datetime64(DATE)).values
    assert np.isnan(level1[rows.start // 2: rows.stop // 2, cols.start // 2: cols.stop // 2]).all()

    again = map_lai(bbox, DATE, out, **run)  # type: ignore[arg-type]
    assert again.mapped == ["r0000c0001"] and not again.failed
    assert sorted(again.skipped) == ["r0000c0002", "r0000c0003", "r0000c0004"]
    assert store.failed_tiles(DATE) == {}
    mine = xr.open_zarr(out)["lai"].sel(time=np.datetime64(DATE)).values
    theirs = xr.open_zarr(reference)["lai"].sel(time=np.datetime64(DATE)).values
    np.testing.assert_array_equal(mine, theirs)
    levels = (xr.open_zarr(path, group="overviews/1")["lai"].values for path in (out, reference))
    np.testing.assert_array_equal(*levels)  # the overviews too


def test_cli_lists_failed_tiles_and_exits_non_zero(
    tiny_world: World, small_grid: Grid, cluster, model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner as TyperRunner

    from lamap.cli.main import app

    grid_json = tmp_path / "grid.json"
    grid_json.write_text(json.dumps(small_grid.to_dict()))
    bbox = ",".join(f"{v:.6f}" for v in _row_bbox(small_grid))
    cog = _cog(tiny_world)
    original = cog.read_bytes()
    try:
        cog.write_bytes(original[:1024] + b"\0" * (len(original) - 1024))
        result = TyperRunner().invoke(app, [
            "map", "--bbox", bbox, "--date", DATE.isoformat(), "--out", str(tmp_path / "c.zarr"),
            "--catalog", str(tiny_world.root), "--model", str(model), "--grid", str(grid_json),
            "--scheduler", cluster.scheduler_address,
        ])  # fmt: skip
    finally:
        cog.write_bytes(original)
    assert result.exit_code == 1, result.output
    assert "1 failed" in result.output
    assert "r0000c0001: failed: reading inputs" in result.output
    assert "rerun the same command" in result.output


def test_killing_a_worker_mid_run_gives_the_same_store(
    tiny_world: World, small_grid: Grid, cluster, model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client

    spec = ClusterSpec(scheduler=cluster.scheduler_address)
    run = dict(catalog=str(tiny_world.root), model=model, cluster=spec, grid=small_grid,
               options=MapOptions(tiles_in_flight=2))  # fmt: skip
    bbox = _row_bbox(small_grid)
    calm = map_lai(bbox, DATE, tmp_path / "calm.zarr", **run)  # type: ignore[arg-type]
    with Client(cluster.scheduler_address) as client:
        pids = list(client.run(os.getpid).values())
        killed: list[int] = []
        killer = threading.Thread(target=_kill_when_busy, args=(client, pids[0], killed),
                                  daemon=True)
        killer.start()
        hit = map_lai(bbox, DATE, tmp_path / "hit.zarr", **run)  # type: ignore[arg-type]
        killer.join()
    assert killed == [pids[0]], "the worker was not killed during the run"
    assert len(calm.mapped) == 4
    assert sorted(hit.mapped) == sorted(calm.mapped) and not hit.failed
    calm_ds, hit_ds = xr.open_zarr(tmp_path / "calm.zarr"), xr.open_zarr(tmp_path / "hit.zarr")
    np.testing.assert_array_equal(hit_ds["lai"].values, calm_ds["lai"].values)
    np.testing.assert_array_equal(hit_ds["source"].values, calm_ds["source"].values)


def _kill_when_busy(client, pid: int, killed: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Kill one worker process as soon as the scheduler has lamap tasks in processing."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = client.run_on_scheduler(
            lambda dask_scheduler: sum(len(ws.processing) for ws in dask_scheduler.workers.values())
        )
        if tasks:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)
