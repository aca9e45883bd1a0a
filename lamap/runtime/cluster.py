"""Getting a Dask client: a local cluster of worker processes, or any scheduler.

- ``scheduler=None`` and no ``DASK_SCHEDULER_ADDRESS``: a ``distributed.LocalCluster``
  with worker processes sized to the machine (one thread per worker, so PyTorch and GDAL
  inside a task do not fight over cores), its dashboard bound to 127.0.0.1.
- ``scheduler="tcp://host:port"`` (or the environment variable): connect to it; workers
  started with ``--resources GPU=1`` run the inference tasks when ``device="cuda"``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lamap.errors import InputError, LamapError

__all__ = ["ClusterSpec", "dashboard_link", "get_client"]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


@dataclass(frozen=True)
class ClusterSpec:
    """How to get a Dask client.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://…``); default: ``$DASK_SCHEDULER_ADDRESS``,
        else a local cluster.
    workers : int, optional
        Worker processes of the local cluster (default: one per core, at most 8).
    threads_per_worker : int
        Threads per local worker.
    memory_limit : str
        Memory limit per local worker (``"auto"`` shares the machine's memory).
    dashboard_address : str
        Where the local dashboard listens (``127.0.0.1:8787``; ``:0`` picks a free port).
    gpu_workers : bool
        Give local workers a ``GPU=1`` resource (for ``device="cuda"`` on one machine).
    """

    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    dashboard_address: str = "127.0.0.1:8787"
    gpu_workers: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.threads_per_worker < 1:
            raise InputError(
                f"threads per worker must be at least 1, got {self.threads_per_worker}"
            )

    @property
    def address(self) -> str | None:
        """The scheduler to connect to, if any."""
        return self.scheduler or os.environ.get(SCHEDULER_ENV) or None


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@contextmanager
def get_client(spec: ClusterSpec | None = None) -> Iterator[object]:
    """Yield a ``distributed.Client`` for ``spec``; a local cluster is closed on exit.

    Parameters
    ----------
    spec : ClusterSpec, optional
        Defaults to a local cluster.

    Yields
    ------
    distributed.Client

    Raises
    ------
    LamapError
        If the scheduler cannot be reached (names the address and the fix).
    """
    from distributed import Client, LocalCluster

    spec = spec or ClusterSpec()
    if spec.address:
        try:
            client = Client(spec.address, timeout="20s")
        except OSError as err:
            raise LamapError(
                f"cannot reach the Dask scheduler at {spec.address} ({err}); start it with "
                "`dask scheduler` or drop --scheduler/DASK_SCHEDULER_ADDRESS to run locally"
            ) from err
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=spec.workers or _default_workers(),
        threads_per_worker=spec.threads_per_worker,
        processes=True,
        memory_limit=spec.memory_limit,
        dashboard_address=spec.dashboard_address,
        host="127.0.0.1",
        resources={"GPU": 1} if spec.gpu_workers else None,
        silence_logs=logging.ERROR,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def dashboard_link(client: object) -> str | None:
    """Return the dashboard URL of ``client``'s scheduler, if it serves one."""
    link = getattr(client, "dashboard_link", None)
    return str(link) if link else None
