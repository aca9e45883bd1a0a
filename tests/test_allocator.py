"""Worker processes keep block-sized buffers instead of re-faulting them (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lamap.runtime.allocator import tune_allocator

_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from lamap.runtime.allocator import tune_allocator
    assert tune_allocator()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(2**20).sum()  # warm up
before = faults()
for _ in range(50):
    np.ones(2**20).sum()  # 8 MiB, allocated, touched and freed, as a block's buffers are
print(faults() - before)
"""


def _faults(mode: str) -> int:
    env = {"MALLOC_TRIM_THRESHOLD_": "65536", "PATH": "/usr/bin:/bin"}  # Dask's nanny's
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_workers_reuse_block_buffers() -> None:
    """Under Dask's MALLOC_TRIM_THRESHOLD_, each 8 MiB buffer is a fresh mmap that faults in
    its pages (hundreds of faults each); tuned, the heap keeps it and 50 rounds fault almost
    nothing."""
    plain, tuned = _faults("plain"), _faults("tuned")
    assert plain > 50 * 200, plain
    assert tuned < plain / 20, (tuned, plain)
    assert tune_allocator() is True


def test_local_cluster_workers_start_with_lamaps_allocator_settings() -> None:
    """lamap's local cluster hands its workers WORKER_ENVIRON (instead of Dask's trim
    threshold), and a block task then finds nothing left to set."""
    import os

    from lamap.runtime import ClusterSpec, get_client
    from lamap.runtime.allocator import WORKER_ENVIRON

    spec = ClusterSpec(workers=1, dashboard_address="127.0.0.1:0")
    with get_client(spec) as client:
        seen = client.run(lambda: {name: os.environ.get(name) for name in WORKER_ENVIRON})
        tuned = client.run(tune_allocator)
    assert list(seen.values()) == [WORKER_ENVIRON]
    assert list(tuned.values()) == [True]
