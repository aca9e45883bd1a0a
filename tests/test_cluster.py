"""Which Dask client lamap uses, GPU tagging that holds, and the busy dashboard port.

Real ``distributed`` clusters on 127.0.0.1 (in-process where the choice of client is all
that is checked, worker processes where the dashboard is). No GPU is needed: GPU workers are
workers that advertise the Dask resource ``GPU``.
"""

from __future__ import annotations

import datetime as dt
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest

from lamap.errors import DashboardPortWarning, LamapError
from lamap.grid import Grid
from lamap.mapping import MapOptions, map_lai
from lamap.runtime import ClusterSpec, get_client
from lamap.runtime.cluster import SCHEDULER_ENV, current_client, gpu_resource, gpu_workers
from lamap.synthetic.world import World

DATE = dt.date(2024, 4, 28)


def _cluster(**kwargs: Any) -> Any:
    from distributed import LocalCluster

    return LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                        host="127.0.0.1",
                        dashboard_address="127.0.0.1:0", **kwargs)  # fmt: skip


@pytest.fixture
def cpu_cluster() -> Iterator[Any]:
    with _cluster() as cluster:
        yield cluster


@pytest.fixture
def gpu_cluster() -> Iterator[Any]:
    with _cluster(resources={"GPU": 1}) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _no_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)


def test_the_callers_client_is_used_and_left_open(cpu_cluster) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client

    with Client(cpu_cluster) as mine:
        assert current_client() is mine
        with get_client(ClusterSpec(workers=3)) as client:
            assert client is mine
        assert mine.status == "running", "lamap must not close the caller's client"
        assert mine.submit(sum, [1, 2]).result() == 3
    assert current_client() is None


def test_an_explicit_other_scheduler_wins_over_the_callers_client(cpu_cluster) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client

    with _cluster() as other, Client(cpu_cluster) as mine:
        with get_client(ClusterSpec(scheduler=other.scheduler_address)) as client:
            assert client is not mine
            assert client.scheduler.address == other.scheduler_address
        with get_client(ClusterSpec(scheduler=cpu_cluster.scheduler_address)) as client:
            assert client is mine
        assert mine.status == "running"


@pytest.mark.parametrize("how", ["environment", "dask-config"])
def test_scheduler_address_from_environment_and_dask_config(
    how: str, cpu_cluster, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    address = cpu_cluster.scheduler_address
    assert current_client() is None
    with dask.config.set({"scheduler-address": address if how == "dask-config" else None}):
        if how == "environment":
            monkeypatch.setenv(SCHEDULER_ENV, address)
        with get_client() as client:
            assert client.scheduler.address == address
            assert client.submit(len, "abc").result() == 3
    assert cpu_cluster.status.name == "running", "a cluster lamap connected to stays up"


def test_an_unreachable_scheduler_is_one_clear_error() -> None:
    with dask.config.set({"scheduler-address": "tcp://127.0.0.1:9"}):
        with pytest.raises(LamapError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
            with get_client():
                pass


@pytest.mark.parametrize(
    ("device", "expected"), [("cpu", False), ("auto", True), ("cuda", True), ("cuda:1", True)]
)
def test_gpu_devices_tag_inference_on_a_cluster_with_gpu_workers(
    device: str, expected: bool, gpu_cluster
) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client

    with Client(gpu_cluster) as client:
        assert len(gpu_workers(client)) == 1
        assert gpu_resource(client, device) is expected


def test_cuda_on_a_cluster_without_gpu_workers_fails_at_once(cpu_cluster) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client

    with Client(cpu_cluster) as client:
        assert gpu_resource(client, "auto") is False, "auto falls back to untagged tasks"
        assert gpu_resource(client, "cpu") is False
        for device in ("cuda", "cuda:1"):
            with pytest.raises(LamapError, match=r"none of the 1 workers .* --resources GPU=1"):
                gpu_resource(client, device)


def test_map_with_cuda_and_no_gpu_worker_fails_before_touching_the_store(
    cpu_cluster, tiny_world: World, model: Path, grid: Grid, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client

    out = tmp_path / "lai.zarr"
    west, south, east, north = tiny_world.bbox
    needs_gpu = "needs workers with (the Dask|a GPU)"
    with Client(cpu_cluster), pytest.raises(LamapError, match=needs_gpu):
        map_lai((west, south, west + 0.1 * (east - west), north), DATE, out,
                catalog=str(tiny_world.root), model=model, grid=grid,
                options=MapOptions(device="cuda"))  # fmt: skip
    assert not out.exists(), "a run that could not start creates no store"


def test_a_busy_dashboard_port_is_one_lamap_warning() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = ClusterSpec(workers=1, dashboard_address=f"127.0.0.1:{port}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with get_client(spec) as client:
                link = str(client.dashboard_link)
    shown = [w for w in caught if issubclass(w.category, UserWarning)]  # not ResourceWarnings
    assert [w.category for w in shown] == [DashboardPortWarning], [str(w.message) for w in shown]
    text = str(shown[0].message)
    assert "\n" not in text and f"port {port} is busy" in text
    used = link.split(":")[2].split("/")[0]
    assert used != str(port) and f"on port {used}" in text
