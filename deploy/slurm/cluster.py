r"""A Dask cluster of GPU workers on SLURM (dask-jobqueue), for ``lamap map --scheduler``.

Run it on a login node, in the Python environment lamap is installed in (the same one the
batch jobs will activate), with dask-jobqueue installed (``pip install dask-jobqueue``)::

    python deploy/slurm/cluster.py --jobs 4 --partition gpu --account myproject \
        --scheduler-file ~/lamap-scheduler.json

It starts the scheduler in this process, submits one SLURM job per GPU worker
(``--gres=gpu:1``, Dask resource ``GPU=1``, one thread), prints the scheduler address and
the dashboard link, and keeps the cluster until Ctrl-C. From another shell on the login
node::

    lamap map --scheduler tcp://LOGIN-NODE:PORT --device cuda --bbox ... --date ... \
        --out /shared/lai.zarr

or give the map arguments after ``--`` to run ``lamap map`` once and stop::

    python deploy/slurm/cluster.py --jobs 4 --partition gpu -- --catalog planetary-computer \
        --bbox 5.9,47.3,10.5,55.1 --date 2024-06-15 --out /shared/lai.zarr --device cuda

The store (``--out``), the model (``--model``) and a demo world must be on a file system
every node sees. The dashboard listens on the login node's 127.0.0.1: reach it with
``ssh -N -L 8787:127.0.0.1:8787 you@login-node`` and open http://127.0.0.1:8787/status.

This file imports dask-jobqueue only inside :func:`main`, so it can be read and tested
without it.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from lamap.runtime.allocator import WORKER_ENVIRON

__all__ = ["build_parser", "cluster_kwargs", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of this recipe."""
    parser = argparse.ArgumentParser(
        description="Dask cluster of GPU workers on SLURM for `lamap map --scheduler`.",
        epilog="Arguments after -- are passed to `lamap map`, which then runs once.",
    )
    parser.add_argument("--jobs", type=int, default=2, help="GPU worker jobs (one GPU each)")
    parser.add_argument("--partition", default=None, help="SLURM partition (queue)")
    parser.add_argument("--account", default=None, help="SLURM account to charge")
    parser.add_argument("--walltime", default="04:00:00", help="job time limit, HH:MM:SS")
    parser.add_argument("--cpus", type=int, default=8, help="CPUs booked per job")
    parser.add_argument("--memory", default="32GB", help="memory per job")
    parser.add_argument("--interface", default=None, help="network interface, e.g. ib0")
    parser.add_argument("--local-directory", default=None, help="worker spill directory")
    parser.add_argument("--prologue", action="append", default=[], help="job script line(s)")
    parser.add_argument("--dashboard-port", type=int, default=8787, help="dashboard port")
    parser.add_argument("--scheduler-file", default=None, help="write the address here")
    return parser


def cluster_kwargs(options: argparse.Namespace) -> dict[str, Any]:
    """Return the ``SLURMCluster`` keyword arguments for GPU workers.

    One worker process per job with one thread (``cores=1``), so one model call at a time
    per GPU; ``job_cpu`` books more CPUs for reading and features. Workers advertise
    ``GPU=1``, the resource that lamap's inference tasks ask for with ``--device cuda``.

    Parameters
    ----------
    options : argparse.Namespace
        Parsed by :func:`build_parser`.

    Returns
    -------
    dict
        Keyword arguments of ``dask_jobqueue.SLURMCluster``.
    """
    prologue = [
        "export OMP_NUM_THREADS=1",
        "export GDAL_CACHEMAX=512",
        # lamap.runtime.allocator: keep block-sized buffers instead of re-faulting them
        *(f"export {name}={value}" for name, value in WORKER_ENVIRON.items()),
        *options.prologue,
    ]
    return {
        "cores": 1,
        "processes": 1,
        "job_cpu": options.cpus,
        "memory": options.memory,
        "walltime": options.walltime,
        "queue": options.partition,
        "account": options.account,
        "interface": options.interface,
        "local_directory": options.local_directory,
        "job_extra_directives": ["--gres=gpu:1"],
        "worker_extra_args": ["--resources", "GPU=1"],
        "job_script_prologue": prologue,
        "scheduler_options": {"dashboard_address": f"127.0.0.1:{options.dashboard_port}"},
    }


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split our own arguments from the ``lamap map`` arguments after ``--``."""
    args = list(argv)
    if "--" in args:
        cut = args.index("--")
        return args[:cut], args[cut + 1 :]
    return args, []


def _dashboard_hint(link: str) -> str:
    """Say how to reach the dashboard, bound to the login node's 127.0.0.1, from a laptop."""
    port = urlsplit(link).port or 8787
    return (
        f"dashboard: http://127.0.0.1:{port}/status on this node; from your machine run "
        f"`ssh -N -L {port}:127.0.0.1:{port} you@$(hostname)` and open that link"
    )


def _wait_for_workers(client: Any, jobs: int) -> None:
    print(f"waiting for {jobs} GPU worker(s) to start (SLURM queue)...", flush=True)
    client.wait_for_workers(jobs)


def _serve_until_interrupted() -> None:
    print("cluster ready; Ctrl-C to stop it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the cluster, then run ``lamap map`` once or wait for Ctrl-C.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code (that of ``lamap map`` when it was run).
    """
    own, map_args = _split(sys.argv[1:] if argv is None else argv)
    options = build_parser().parse_args(own)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("this recipe needs dask-jobqueue: pip install dask-jobqueue", file=sys.stderr)
        return 2
    from distributed import Client

    with SLURMCluster(**cluster_kwargs(options)) as cluster, Client(cluster) as client:
        if options.scheduler_file:
            client.write_scheduler_file(options.scheduler_file)
        print(f"scheduler: {cluster.scheduler_address}", flush=True)
        print(_dashboard_hint(cluster.dashboard_link), flush=True)
        cluster.scale(jobs=options.jobs)
        _wait_for_workers(client, options.jobs)
        if not map_args:
            _serve_until_interrupted()
            return 0
        command = ["lamap", "map", "--scheduler", cluster.scheduler_address, *map_args]
        print("running:", shlex.join(command), flush=True)
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
