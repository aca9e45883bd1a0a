"""lamap map on a separately started Dask scheduler, GPU resources, and the dashboard.

A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (one advertising
``GPU=1``, one not, so that placement by resource is observable), started from the venv's
``dask`` command and always stopped. No GPU is needed: the model runs on the CPU while the
tasks carry the GPU resource.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from dask.utils import key_split

from lamap.catalog import open_catalog, search
from lamap.features import FeatureSpec
from lamap.grid import Grid
from lamap.infer import ModelRef
from lamap.mapping import MapOptions, MapReport, tile_arrays
from lamap.mapping import map_lai as run_map
from lamap.model import ModelConfig, recommended_halo
from lamap.runtime import ClusterSpec, Event, Reporter
from lamap.store import LaiStore
from lamap.synthetic.world import World
from lamap.timesteps import TimeSteps, plan_time_steps, search_window

DATE = dt.date(2024, 4, 28)
DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT = 60.0
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bbox(tiny_world: World, grid: Grid) -> tuple[float, float, float, float]:
    """The western part of the world: two tiles, to keep the runs short."""
    west, south, east, north = tiny_world.bbox
    area = (west, south, west + 0.4 * (east - west), north)
    assert len(grid.tiles_for_bbox(area)) == 2
    return area


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _address(scheduler_file: Path, process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited: {log.read_text()[-2000:]}")
        if scheduler_file.exists():
            try:
                return str(json.loads(scheduler_file.read_text())["address"])
            except (ValueError, KeyError):
                pass  # written but not complete yet
        time.sleep(0.1)
    raise RuntimeError(f"dask scheduler did not start: {log.read_text()[-2000:]}")


def _worker_args(address: str, name: str, *extra: str) -> list[str]:
    return [str(DASK), "worker", address, "--name", name, "--host", "127.0.0.1",
            "--nthreads", "1", "--no-nanny", "--no-dashboard", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` + workers ``gpu`` (``--resources GPU=1``) and ``cpu``; the address."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(_start(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
            folder / "scheduler.log",
        ))  # fmt: skip
        address = _address(scheduler_file, processes[0], folder / "scheduler.log")
        assert address.startswith("tcp://127.0.0.1:")
        processes.append(
            _start(_worker_args(address, "gpu", "--resources", "GPU=1"), folder / "gpu.log")
        )
        processes.append(_start(_worker_args(address, "cpu"), folder / "cpu.log"))
        with Client(address) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield address
    finally:
        _stop(processes)


class DashboardPoller:
    """A ``progress`` callback that polls the dashboard link from a thread during the run."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.events: list[Event] = []
        self.pages: list[tuple[float, int, str, bytes]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        self.lines.append(event.message)
        self.events.append(event)
        if event.kind == "link" and self._thread is None:
            url = event.message.split(": ", 1)[1]
            self._thread = threading.Thread(target=self._poll, args=(url,), daemon=True)
            self._thread.start()

    def _poll(self, url: str) -> None:
        while not self._stop.is_set():
            try:
                with NO_PROXY.open(url, timeout=30) as response:
                    page = response.read()
                    kind = response.headers.get_content_type()
                    self.pages.append((time.monotonic(), response.status, kind, page))
            except (OSError, urllib.error.URLError) as err:
                self.errors.append(repr(err))
            self._stop.wait(1.0 if not self.pages else 3.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


def _map(
    world: World, out: Path, model: Path, grid: Grid, bbox: Any, cluster: ClusterSpec,
    progress: Any = None,
) -> MapReport:  # fmt: skip
    return run_map(
        bbox, DATE, out, catalog=str(world.root), model=model, grid=grid, cluster=cluster,
        progress=progress,
    )  # fmt: skip


@pytest.fixture(scope="module")
def local_run(tiny_world, model, grid, bbox, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The default path, a LocalCluster of worker processes, while polling its dashboard."""
    out = tmp_path_factory.mktemp("local") / "lai.zarr"
    poller = DashboardPoller()
    cluster = ClusterSpec(workers=2, dashboard_address="127.0.0.1:0")
    started = time.monotonic()
    try:
        report = _map(tiny_world, out, model, grid, bbox, cluster, progress=poller)
    finally:
        poller.stop()
    return out, report, poller, (started, time.monotonic())


@pytest.fixture(scope="module")
def external_run(tiny_world, model, grid, bbox, scheduler, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The same map through ``--scheduler tcp://127.0.0.1:PORT``."""
    out = tmp_path_factory.mktemp("external") / "lai.zarr"
    report = _map(tiny_world, out, model, grid, bbox, ClusterSpec(scheduler=scheduler))
    return out, report


# --------------------------------------------------------------------------- map on a scheduler


def test_map_on_a_scheduler_equals_the_local_cluster(local_run, external_run, scheduler) -> None:  # type: ignore[no-untyped-def]
    local_out, local_report = local_run[:2]
    remote_out, remote_report = external_run
    assert sorted(remote_report.mapped) == sorted(local_report.mapped) == local_report.tiles
    assert remote_report.dashboard and remote_report.dashboard.startswith("http://127.0.0.1:")
    local, remote = xr.open_zarr(local_out), xr.open_zarr(remote_out)
    np.testing.assert_array_equal(remote["time"].values, local["time"].values)
    lai = remote["lai"].values
    assert np.isfinite(lai).sum() > 10_000, "the run should have mapped something"
    np.testing.assert_array_equal(lai, local["lai"].values)
    np.testing.assert_array_equal(remote["source"].values, local["source"].values)
    stores = (LaiStore.open(local_out), LaiStore.open(remote_out))
    assert stores[0].done_tiles(DATE) == stores[1].done_tiles(DATE) == sorted(local_report.tiles)


# --------------------------------------------------------------------------- GPU resources


def _recorder() -> Any:
    """A scheduler plugin recording the resource annotations of every graph it receives.

    Defined inside a function so that cloudpickle ships it by value to the scheduler
    process (which cannot import this test module).
    """
    from distributed.diagnostics.plugin import SchedulerPlugin

    class AnnotationRecorder(SchedulerPlugin):  # type: ignore[misc]
        name = "lamap-test-annotations"

        def __init__(self) -> None:
            self.graphs: list[dict[str, Any]] = []

        def update_graph(self, scheduler: Any, *, tasks: Any, annotations: Any, **_: Any) -> None:
            resources = annotations.get("resources", {})
            self.graphs.append({str(k): resources.get(k) for k in tasks})

    return AnnotationRecorder()


def _infer_annotations(client: Any) -> dict[str, Any]:
    """The resources of the inference tasks in the last graph the scheduler received."""
    graphs = client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.plugins["lamap-test-annotations"].graphs
    )
    last = graphs[-1]
    infer = {key: value for key, value in last.items() if "infer" in key_split(key)}
    assert infer, f"no inference task among {sorted({key_split(k) for k in last})}"
    return infer


@pytest.fixture(scope="module")
def gpu_client(scheduler: str) -> Iterator[Any]:
    from distributed import Client

    with Client(scheduler) as client:
        client.register_plugin(_recorder())
        yield client


@pytest.fixture(scope="module")
def tile_plan(tiny_world, tiny_api, grid, bbox):  # type: ignore[no-untyped-def]
    """What map_lai plans for the first tile: (tile, steps, search result, profile)."""
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    start, end = search_window([DATE])
    result = search(profile, bbox, start, end)
    tile = grid.tiles_for_bbox(bbox)[0]
    steps = plan_time_steps(result.s2, result.s1, DATE, tile.lonlat_bounds().to_tuple(),
                            tile_id=tile.id)  # fmt: skip
    assert isinstance(steps, TimeSteps)
    return tile, steps, result, profile


def _gpu_arrays(tile_plan, model: Path) -> tuple[Any, Any]:  # type: ignore[no-untyped-def]
    tile, steps, result, profile = tile_plan
    ref = ModelRef.from_path(str(model), device="cpu")
    halo = recommended_halo(ModelConfig.tiny())
    return tile_arrays(steps, result, tile, ref, halo=halo, spec=FeatureSpec(),
                       signer=profile.signer, gpu=True)  # fmt: skip


def test_gpu_tasks_run_only_on_gpu_workers(gpu_client, tile_plan, model, external_run) -> None:  # type: ignore[no-untyped-def]
    from distributed import get_task_stream

    lai, source = _gpu_arrays(tile_plan, model)
    with get_task_stream(gpu_client) as stream:
        # computed unoptimised here on purpose; the next test checks the optimised map graph
        lai_values, source_values = gpu_client.compute([lai, source], optimize_graph=False)
        lai_values, source_values = lai_values.result(), source_values.result()
    infer = _infer_annotations(gpu_client)
    assert all(value == {"GPU": 1} for value in infer.values()), infer
    names = {addr: w["name"] for addr, w in gpu_client.scheduler_info()["workers"].items()}
    ran = {names[task["worker"]] for task in stream.data if "infer" in key_split(task["key"])}
    assert ran == {"gpu"}
    others = {names[task["worker"]] for task in stream.data}
    assert others == {"gpu", "cpu"}, "other tasks may use every worker"
    stored = xr.open_zarr(external_run[0]).isel(time=0)
    rows, cols = tile_plan[0].window.to_slices()
    # the map's block engine warps with GDAL's approximate transformer, this graph exactly
    assert (source_values == stored["source"].values[rows, cols]).mean() > 0.99
    both = np.isfinite(lai_values) & np.isfinite(stored["lai"].values[rows, cols])
    close = np.abs(lai_values - stored["lai"].values[rows, cols])[both] < 0.05
    assert close.mean() > 0.99


def test_block_engine_runs_inference_only_on_gpu_workers(
    gpu_client, tile_plan, model, grid, external_run, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from distributed import get_task_stream

    from lamap.runner import RunContext, run_tiles
    from lamap.tileplan import SceneIndex, iter_plans

    tile, _steps, result, profile = tile_plan
    store = LaiStore.create(tmp_path / "lai.zarr", grid)
    store.add_date(DATE)
    ref = ModelRef.from_path(str(model), device="cpu", window=grid.shard)
    ctx = RunContext(store, DATE, store.block_writer(DATE), ref,
                     recommended_halo(ModelConfig.tiny()), FeatureSpec(), {},
                     signer=profile.signer, gpu=True)  # fmt: skip
    with get_task_stream(gpu_client) as stream:
        outcome = run_tiles(gpu_client, iter_plans(SceneIndex.from_result(result), [tile], DATE),
                            ctx, limit=2, total=1, say=Reporter(None))  # fmt: skip
    assert outcome.mapped == [tile.id] and not outcome.failed
    names = {addr: w["name"] for addr, w in gpu_client.scheduler_info()["workers"].items()}
    stages = {key_split(task["key"]) for task in stream.data}
    assert {"lamap-inputs", "lamap-infer", "lamap-write", "lamap-done"} <= stages, stages
    ran = {names[task["worker"]] for task in stream.data if key_split(task["key"]) == "lamap-infer"}
    assert ran == {"gpu"}
    stored, mine = xr.open_zarr(external_run[0]).isel(time=0), xr.open_zarr(store.url).isel(time=0)
    rows, cols = tile.window.to_slices()
    np.testing.assert_array_equal(mine["lai"].values[rows, cols], stored["lai"].values[rows, cols])


def test_map_graph_keeps_gpu_annotation(gpu_client, tile_plan, model, grid, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lai, source = _gpu_arrays(tile_plan, model)
    store = LaiStore.create(tmp_path / "lai.zarr", grid)
    store.add_date(DATE)
    marker = store.write_tile(DATE, tile_plan[0], lai, source, compute=False)
    gpu_client.compute(marker).result()  # as lamap.mapping._run computes a tile
    infer = _infer_annotations(gpu_client)
    assert all(value == {"GPU": 1} for value in infer.values()), infer


def test_auto_device_puts_inference_on_the_gpu_workers(
    gpu_client, tiny_world, model, grid, bbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """``device="auto"`` tags inference when a worker advertises GPU (it did not before)."""
    from distributed import get_task_stream

    with get_task_stream(gpu_client) as stream:  # gpu_client: the caller's client, used
        report = run_map(bbox, DATE, tmp_path / "lai.zarr", catalog=str(tiny_world.root),
                         model=model, grid=grid, options=MapOptions(device="auto"))  # fmt: skip
    assert report.dashboard == gpu_client.dashboard_link and len(report.mapped) == 2
    names = {addr: w["name"] for addr, w in gpu_client.scheduler_info()["workers"].items()}
    ran = {names[task["worker"]] for task in stream.data if key_split(task["key"]) == "lamap-infer"}
    assert ran == {"gpu"}
    assert {names[task["worker"]] for task in stream.data} == {"gpu", "cpu"}


# --------------------------------------------------------------------------- dashboard


def test_dashboard_is_served_on_127_0_0_1_during_the_run(local_run) -> None:  # type: ignore[no-untyped-def]
    _, report, poller, (started, finished) = local_run
    links = [line for line in poller.lines if line.startswith("dashboard: ")]
    assert links == [f"dashboard: {report.dashboard}"]
    assert report.dashboard.startswith("http://127.0.0.1:") and report.dashboard.endswith("/status")
    assert poller.pages, f"the dashboard never answered: {poller.errors[-3:]}"
    moment, status, kind, page = poller.pages[0]
    assert started < moment < finished, "fetched while map_lai was running"
    assert status == 200 and kind == "text/html"
    assert b"<html" in page.lower() and b"dask" in page.lower()
    with pytest.raises(urllib.error.URLError):  # the local cluster is closed after the run
        NO_PROXY.open(report.dashboard, timeout=5)


def test_a_run_reports_blocks_and_tiles_as_progress_events(local_run) -> None:  # type: ignore[no-untyped-def]
    _, report, poller, _ = local_run
    tiles = [e for e in poller.events if e.kind == "step" and e.task == "tiles"]
    blocks = [e for e in poller.events if e.kind == "step" and e.task == "blocks"]
    n = len(report.mapped) + len(report.no_input)
    assert [e.done for e in tiles] == list(range(1, n + 1)) and {e.total for e in tiles} == {n}
    assert all(e.message.startswith("tile ") for e in tiles)
    assert [e.done for e in blocks] == list(range(1, len(blocks) + 1)) and len(blocks) >= n
