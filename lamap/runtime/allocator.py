"""The C allocator of worker processes: keep block-sized buffers instead of re-faulting them.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (its
``distributed.nanny.pre-spawn-environ``, to hand freed memory back to the OS). Setting any
glibc malloc threshold switches off glibc's dynamic mmap threshold, so every buffer above
128 KiB is a fresh ``mmap`` that the kernel zero-fills page by page when first touched and
unmaps when freed; and a worker's task thread has its own arena, whose heaps shrink and grow
again. A block's buffers (a dozen warped bands of 1088² floats, the network's activations
of a 1088² window, hundreds of MiB) are allocated and freed again for every block, so a
worker spends a large part of its time in the kernel (measured on the bench's blocks, one
process: the inputs took 2.0× the CPU time, the network 1.7×).

A lamap worker processes blocks of one size all day, so it keeps its memory instead:

* :data:`WORKER_ENVIRON`: one arena, no mmap, the heap's free top kept up to 1 GiB. glibc
  reads these when the process starts, so lamap's local cluster passes them to its workers
  (:func:`worker_settings`); for workers started elsewhere (``dask worker``, Kubernetes,
  Slurm) set them in the workers' environment, as ``deploy/`` does.
* :func:`tune_allocator`, called by the block tasks, sets the same with ``mallopt`` where the
  environment did not (threads that already have their own arena keep it, so it recovers
  the inputs' share but less of the network's).

The price: a worker's resident memory stays at its peak (about 2.5 GB for the fused model's
1088² window on a CPU) instead of falling between blocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from contextlib import AbstractContextManager
from functools import cache
from typing import Any

__all__ = ["TRIM_THRESHOLD", "WORKER_ENVIRON", "tune_allocator", "worker_settings"]

_LOG = logging.getLogger(__name__)

#: Free memory at the top of the heap beyond this goes back to the OS.
TRIM_THRESHOLD = 2**30
#: glibc's environment for lamap's worker processes (read when a process starts).
WORKER_ENVIRON = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                  "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}  # fmt: skip
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's mallopt parameters


def worker_settings() -> AbstractContextManager[Any]:
    """Dask config under which a ``LocalCluster`` starts workers with :data:`WORKER_ENVIRON`.

    Returns
    -------
    context manager
        ``dask.config.set`` of ``distributed.nanny.pre-spawn-environ``; variables already
        in this process's environment win (Dask's own rule), so a user's choice stands.
    """
    import dask

    return dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": value
                            for name, value in WORKER_ENVIRON.items()})  # fmt: skip


@cache
def tune_allocator() -> bool:
    """Set :data:`WORKER_ENVIRON`'s thresholds with ``mallopt`` in this process, once.

    Does nothing where the environment already set them (a worker of lamap's local cluster
    or of ``deploy/``) or where the C library is not glibc.

    Returns
    -------
    bool
        Whether the allocator runs with lamap's settings.
    """
    if all(os.environ.get(name) == value for name, value in WORKER_ENVIRON.items()):
        return True
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt, Windows)
        return False
    done = all(bool(mallopt(param, value)) for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))  # fmt: skip
    _LOG.debug("malloc settings applied: %s", done)
    return done
