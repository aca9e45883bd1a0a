"""Concurrent runs on one store, on a local folder and on S3 (a real S3 API on 127.0.0.1).

Each trial starts four worker processes at the same instant on one store: two write the same
date (overlapping and neighbouring tiles), two write other dates that go before it (so their
insertions move its shards while it may be written). Half the trials start from nothing (four
creations at once), half from a store that already holds a later date. Every trial must end
with every job done, every date present and in order, and a store equal to the one the same
jobs give one after the other. Killed processes (during an insertion, holding the lock,
registered as writers, during a creation) must leave a store that the next run repairs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import fsspec
import pytest

from lamap.store import LaiStore
from tests._trials import Job, assert_same, create_on, run_job, snapshot
from tests.conftest import new_bucket

REPO = Path(__file__).resolve().parents[1]
#: Trials per test (raise them with LAMAP_TRIALS / LAMAP_S3_TRIALS for a longer hunt): a
#: local trial takes about 1.5 s on 2 cores, an S3 one about 8 s (moto answers ~150
#: requests a second, all on one core).
TRIALS = int(os.environ.get("LAMAP_TRIALS", "20"))
S3_TRIALS = int(os.environ.get("LAMAP_S3_TRIALS", "8"))
JOBS = (
    Job("2024-06-15", ("r0000c0000", "r0000c0001")),
    Job("2024-06-15", ("r0000c0001", "r0001c0001")),
    Job("2024-06-01", ("r0001c0000",)),
    Job("2024-06-10", ("r0000c0000", "r0002c0002")),
)
SEED = Job("2024-06-20", ("r0000c0000", "r0001c0001", "r0002c0001"))


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """Four spawned worker processes with lamap imported, kept for the module."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as executor:
        list(executor.map(time.sleep, [0.0] * 4))
        yield executor


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, dict[str, Any]]:
    """The stores the jobs give one after the other: from nothing, and after SEED."""
    out = {}
    for seeded in (False, True):
        url = str(tmp_path_factory.mktemp("sequential") / "lai.zarr")
        for job in ((SEED,) if seeded else ()) + JOBS:
            run_job(url, job)
        out[seeded] = snapshot(LaiStore.open(url))
    return out


def s3_options(endpoint: str) -> dict[str, Any]:
    return {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint}}


def race(pool: ProcessPoolExecutor, url: str, options: dict[str, Any] | None,
         seeded: bool, rng: random.Random) -> dict[str, Any]:  # fmt: skip
    """Run the four jobs at once (in a random order of submission); return the store."""
    if seeded:
        run_job(url, SEED, options)
    jobs = list(JOBS)
    rng.shuffle(jobs)
    start = time.time() + 0.3
    futures = [pool.submit(run_job, url, job, options, start + rng.uniform(0, 0.05))
               for job in jobs]  # fmt: skip
    done = [future.result(timeout=180) for future in futures]
    assert sorted(d["date"] for d in done) == sorted(j.date for j in jobs)
    return snapshot(LaiStore.open(url, storage_options=options))


def leftovers(url: str, options: dict[str, Any] | None) -> list[str]:
    """Lock records still in the store (there should be none after the runs)."""
    fs, root = fsspec.core.url_to_fs(url, **(options or {}))
    fs.invalidate_cache()
    found = [str(p) for p in fs.find(f"{root}/lamap/lock")]
    return [p for p in found if not p.endswith(("zarr.json", "metadata.lock"))]


@pytest.mark.slow
def test_concurrent_runs_on_a_local_store_equal_the_sequential_result(
    pool: ProcessPoolExecutor, sequential: dict[bool, dict[str, Any]], tmp_path: Path
) -> None:
    rng, started = random.Random(15), time.perf_counter()
    for trial in range(TRIALS):
        url, seeded = str(tmp_path / f"trial-{trial}.zarr"), trial % 2 == 1
        assert_same(race(pool, url, None, seeded, rng), sequential[seeded])
        assert leftovers(url, None) == []
    print(f"{TRIALS} local trials in {time.perf_counter() - started:.1f} s")


@pytest.mark.slow
def test_concurrent_runs_on_s3_equal_the_sequential_result(
    pool: ProcessPoolExecutor, sequential: dict[bool, dict[str, Any]], s3_endpoint: str
) -> None:
    rng, started, options = random.Random(51), time.perf_counter(), s3_options(s3_endpoint)
    bucket = new_bucket(s3_endpoint)
    for trial in range(S3_TRIALS):
        url, seeded = f"s3://{bucket}/trial-{trial}.zarr", trial % 2 == 1
        assert_same(race(pool, url, options, seeded, rng), sequential[seeded])
        assert leftovers(url, options) == []
    print(f"{S3_TRIALS} S3 trials in {time.perf_counter() - started:.1f} s")


# --------------------------------------------------------------------------- killed processes


def killed(url: str, options: dict[str, Any] | None, setup: str, action: str) -> int:
    """Run ``setup`` then ``action`` in a new process that ends with os._exit(3) midway."""
    script = (
        "import os, lamap.store as s, lamap.store.timeaxis as timeaxis\n"
        "from tests._trials import TRIAL_GRID, Job, run_job\n"
        f"url, options = {url!r}, {options or {}!r}\n"
        f"{setup}\n{action}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 3, done.stderr[-2000:]
    return done.returncode


def stores(tmp_path: Path, endpoint: str | None) -> Iterator[tuple[str, dict[str, Any] | None]]:
    yield str(tmp_path / f"{uuid.uuid4().hex[:6]}.zarr"), None
    if endpoint is not None:
        yield f"s3://{new_bucket(endpoint)}/lai.zarr", s3_options(endpoint)


@pytest.fixture
def both(tmp_path: Path, s3_endpoint: str) -> list[tuple[str, dict[str, Any] | None]]:
    return list(stores(tmp_path, s3_endpoint))


def test_an_insertion_killed_midway_is_undone_by_the_next_change(
    both: list[tuple[str, dict[str, Any] | None]], sequential: dict[bool, dict[str, Any]]
) -> None:
    for url, options in both:
        for job in (SEED, *JOBS[:2]):  # 06-15 and 06-20 written
            run_job(url, job, options)
        before = snapshot(LaiStore.open(url, storage_options=options))
        # dies after moving the folders of 06-20, before those of 06-15 and the commit
        stop_midway = (
            "record = timeaxis._write_record\n"
            "def write(fs, root, rec):\n"
            "    record(fs, root, rec)\n"
            "    if rec['moved_from'] < rec['count']: os._exit(3)\n"
            "timeaxis._write_record = write\n"
        )
        killed(url, options, stop_midway,
               "s.LaiStore.open(url, storage_options=options).add_date('2024-06-01')")
        # the next open (any run) moves the folders back: the store is as it was
        assert_same(snapshot(LaiStore.open(url, storage_options=options)), before)
        assert leftovers(url, options) == []
        for job in JOBS[2:]:
            run_job(url, job, options)
        assert_same(snapshot(LaiStore.open(url, storage_options=options)), sequential[True])


def test_dead_lock_holders_and_dead_writers_do_not_block(
    both: list[tuple[str, dict[str, Any] | None]],
) -> None:
    for url, options in both:
        run_job(url, JOBS[0], options)
        killed(url, options, "store = s.LaiStore.open(url, storage_options=options)",
               "with store.writing('2024-06-15'):\n    os._exit(3)")
        killed(url, options, "from lamap.store.concurrency import locked",
               "with locked(url, options, 'testing'):\n    os._exit(3)")
        started = time.perf_counter()
        store = LaiStore.open(url, storage_options=options)
        assert store.add_date("2024-06-01") == 0  # moves 06-15: its dead writer is ignored
        assert time.perf_counter() - started < 10
        assert leftovers(url, options) == []


def test_a_creation_killed_midway_is_done_again(
    both: list[tuple[str, dict[str, Any] | None]],
) -> None:
    for url, options in both:
        die_at_the_fifth_object = (
            "import lamap.store.schema as schema\n"
            "written, write = [], schema.write_atomic\n"
            "def dying(*a, **k):\n"
            "    written.append(a[0])\n"
            "    if len(written) == 5: os._exit(3)\n"
            "    write(*a, **k)\n"
            "schema.write_atomic = dying\n"
        )
        killed(url, options, die_at_the_fifth_object,
               "s.LaiStore.create(url, TRIAL_GRID, storage_options=options)")
        fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        fs.invalidate_cache()
        assert not fs.exists(f"{root}/zarr.json")  # nothing committed
        with pytest.raises(Exception, match="no lamap store"):
            LaiStore.open(url, storage_options=options)
        run_job(url, JOBS[0], options)  # the same command again
        assert LaiStore.open(url, storage_options=options).dates[0].isoformat() == "2024-06-15"
        meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
        assert meta["consolidated_metadata"]["metadata"]["lai"]["shape"][0] == 1


def test_creations_on_different_grids_at_once_give_one_store_and_a_clear_error(
    tmp_path: Path, pool: ProcessPoolExecutor
) -> None:
    url, shards = str(tmp_path / "lai.zarr"), (64, 128, 64, 128)
    start = time.time() + 0.3
    futures = [pool.submit(create_on, url, shard, start) for shard in shards]
    outcomes = [future.result(timeout=60) for future in futures]
    kept = LaiStore.open(url).grid.shard
    assert [o == "created" for o in outcomes] == [shard == kept for shard in shards]
    assert set(outcomes) == {"created", "GridError"}
