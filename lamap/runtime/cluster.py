"""Getting a Dask client, and tagging inference tasks for the GPU workers.

:func:`get_client` takes the first of:

1. the caller's own ``distributed.Client`` (a notebook's ``client = Client(...)``, or the
   ``with Client(...)`` block around the call): used as it is, never closed;
2. an explicit scheduler address (``ClusterSpec(scheduler=...)``, ``--scheduler``), which
   wins over an existing client of another scheduler;
3. ``$DASK_SCHEDULER_ADDRESS``, then dask's configuration key ``scheduler-address``;
4. a new ``distributed.LocalCluster`` of worker processes sized to the machine (one thread
   per worker, so PyTorch and GDAL inside a task do not fight over cores), its dashboard
   bound to 127.0.0.1, closed on exit. A busy dashboard port is reported in one
   :class:`~lamap.errors.DashboardPortWarning` line that names the port taken instead.

:func:`gpu_resource` decides whether inference tasks carry ``resources={"GPU": 1}``: always
for ``cuda``/``cuda:N`` (and then the cluster must have a worker advertising the resource,
else :class:`~lamap.errors.LamapError` at once instead of tasks that wait forever), and for
``auto`` whenever a worker advertises it.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lamap.errors import DashboardPortWarning, InputError, LamapError
from lamap.runtime.allocator import worker_settings

__all__ = [
    "ClusterSpec",
    "current_client",
    "runs_locally",
    "dashboard_link",
    "get_client",
    "gpu_resource",
    "gpu_workers",
    "local_cuda",
]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
#: The dask configuration key of a scheduler address (``dask.config.set``, YAML, env).
SCHEDULER_CONFIG = "scheduler-address"
#: Seconds to wait for a first worker before deciding that a cluster has no GPU worker.
WORKER_WAIT_S = 30.0
_BUSY_PORT = re.compile(r"Port (\d+) is already in use.*on port (\d+) instead", re.DOTALL)


@dataclass(frozen=True)
class ClusterSpec:
    """How to get a Dask client when the caller has none.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://…``); default: ``$DASK_SCHEDULER_ADDRESS``,
        then dask's ``scheduler-address`` configuration, else a local cluster.
    workers : int, optional
        Worker processes of the local cluster (default: one per core, at most 8).
    threads_per_worker : int
        Threads per local worker.
    memory_limit : str
        Memory limit per local worker (``"auto"`` shares the machine's memory).
    dashboard_address : str
        Where the local dashboard listens (``127.0.0.1:8787``; ``:0`` picks a free port).
    gpu_workers : bool, optional
        Give local workers a ``GPU=1`` resource; default (None): when the run's device is
        CUDA on this machine (:func:`local_cuda`).
    """

    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    dashboard_address: str = "127.0.0.1:8787"
    gpu_workers: bool | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.threads_per_worker < 1:
            raise InputError(
                f"threads per worker must be at least 1, got {self.threads_per_worker}"
            )

    @property
    def address(self) -> str | None:
        """The scheduler to connect to, if any: explicit, environment, dask config."""
        import dask

        configured = dask.config.get(SCHEDULER_CONFIG, None)
        return self.scheduler or os.environ.get(SCHEDULER_ENV) or configured or None


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def current_client() -> Any | None:
    """Return the caller's running ``distributed.Client`` (the notebook case), if any."""
    from distributed import Client

    try:
        client = Client.current(allow_global=True)
    except ValueError:
        return None
    return client if client.status == "running" else None


@contextmanager
def get_client(spec: ClusterSpec | None = None, *, device: str = "cpu") -> Iterator[Any]:
    """Yield a ``distributed.Client``: the caller's, a scheduler's, or a local cluster's.

    Only what this function started (a connection, a local cluster) is closed on exit.

    Parameters
    ----------
    spec : ClusterSpec, optional
        Defaults to :class:`ClusterSpec` ``()``.
    device : str
        The run's device; with ``gpu_workers=None`` a local cluster's workers get
        ``GPU=1`` when it is CUDA here (:func:`local_cuda`).

    Yields
    ------
    distributed.Client

    Raises
    ------
    LamapError
        If the scheduler cannot be reached (names the address and the fix).
    InputError
        If ``device`` asks for CUDA that this machine lacks (local cluster only).
    """
    spec = spec or ClusterSpec()
    existing = current_client()
    if existing is not None and (spec.scheduler is None or _same(existing, spec.scheduler)):
        yield existing
        return
    if spec.address:
        with _connect(spec.address) as client:
            yield client
        return
    gpu = spec.gpu_workers if spec.gpu_workers is not None else local_cuda(device)
    with _local_cluster(spec, gpu) as client:
        yield client


def runs_locally(spec: ClusterSpec | None = None) -> bool:
    """Tell whether :func:`get_client` would start a local cluster for ``spec``.

    False when a caller's client will be used or a scheduler address is given: then the
    workers, not this process, decide what devices exist.
    """
    spec = spec or ClusterSpec()
    existing = current_client()
    if existing is not None and (spec.scheduler is None or _same(existing, spec.scheduler)):
        return False
    return not spec.address


def _same(client: Any, address: str) -> bool:
    return str(client.scheduler.address).rstrip("/") == address.rstrip("/")


@contextmanager
def _connect(address: str) -> Iterator[Any]:
    from distributed import Client

    try:
        client = Client(address, timeout="20s")
    except OSError as err:
        raise LamapError(
            f"cannot reach the Dask scheduler at {address} ({err}); start it with "
            f"`dask scheduler`, or unset --scheduler, ${SCHEDULER_ENV} and dask's "
            f"'{SCHEDULER_CONFIG}' to run on a local cluster"
        ) from err
    try:
        yield client
    finally:
        client.close()


@contextmanager
def _local_cluster(spec: ClusterSpec, gpu: bool) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with warnings.catch_warnings(record=True) as caught, worker_settings():
        warnings.simplefilter("always")
        cluster = LocalCluster(
            n_workers=spec.workers or _default_workers(),
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            memory_limit=spec.memory_limit,
            dashboard_address=spec.dashboard_address,
            host="127.0.0.1",
            resources={"GPU": 1} if gpu else None,
            silence_logs=logging.ERROR,
        )
    _report_busy_port(caught)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _report_busy_port(caught: list[warnings.WarningMessage]) -> None:
    """Turn distributed's multi-line busy-port warning into one lamap line; re-emit others."""
    for record in caught:
        match = _BUSY_PORT.search(str(record.message))
        if match is None:
            warnings.warn_explicit(
                record.message, record.category, record.filename, record.lineno
            )
            continue
        wanted, used = match.groups()
        warnings.warn(
            f"dashboard port {wanted} is busy (another Dask cluster?): this run's dashboard "
            f"is on port {used}; pass --dashboard-address 127.0.0.1:0 to pick a free port",
            DashboardPortWarning,
            stacklevel=4,
        )


def dashboard_link(client: object) -> str | None:
    """Return the dashboard URL of ``client``'s scheduler, if it serves one."""
    link = getattr(client, "dashboard_link", None)
    return str(link) if link else None


# --------------------------------------------------------------------------- GPU tagging


def local_cuda(device: str) -> bool:
    """Tell whether ``device`` means CUDA on this machine (``auto`` with a GPU, ``cuda:N``).

    Raises
    ------
    InputError
        If ``device`` is not a device, or asks for CUDA that is not available here.
    """
    if device.strip().lower() == "cpu":
        return False
    from lamap.model.device import resolve_device

    return resolve_device(device).type == "cuda"


def gpu_workers(client: Any) -> list[str]:
    """Return the addresses of the client's workers that advertise the resource ``GPU``."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return sorted(
        address
        for address, worker in workers.items()
        if float((worker.get("resources") or {}).get("GPU", 0)) >= 1
    )


def gpu_resource(client: Any, device: str, *, wait: float = WORKER_WAIT_S) -> bool:
    """Decide whether a run's inference tasks carry ``resources={"GPU": 1}``.

    Parameters
    ----------
    client : distributed.Client
        The run's cluster.
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
    wait : float
        Seconds to wait for a first worker when the cluster has none yet.

    Returns
    -------
    bool
        True for ``cuda``/``cuda:N``, and for ``auto`` when a worker advertises ``GPU``.

    Raises
    ------
    LamapError
        For ``cuda``/``cuda:N`` when no worker advertises ``GPU`` (the tasks would wait for
        ever): names the scheduler and the fix.
    """
    kind = device.strip().lower()
    if kind == "cpu":
        return False
    if not client.scheduler_info(n_workers=-1).get("workers"):
        try:
            client.wait_for_workers(1, timeout=wait)
        except TimeoutError:
            pass
    found = gpu_workers(client)
    if kind == "auto":
        return bool(found)
    if not found:
        count = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        raise LamapError(
            f"device {device!r} needs workers with the Dask resource GPU, but none of the "
            f"{count} workers of the scheduler at {client.scheduler.address} advertises it: "
            "start GPU workers with `dask worker ... --resources GPU=1`, or map with "
            "--device auto (or cpu)"
        )
    return True
