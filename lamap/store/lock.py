"""Who may change a store's metadata, and which runs are writing which date.

Two kinds of record live in ``lamap/lock/``, the folder of a 0-d array (Zarr never lists
an array's folder, so they never make it warn):

``metadata``
    One exclusive lock, held while a process creates the store, adds a date (which may move
    later dates' shards, see :mod:`lamap.store.timeaxis`), records a run or adds a ledger
    node. Everything that rewrites the root ``zarr.json`` or the arrays' metadata holds it,
    so two processes never interleave those changes.
``writers/<token>.json``
    One registration per run writing a date (:meth:`Locks.register`, taken while holding
    the metadata lock): an insertion that would move a date's shards waits until no live
    run writes that date.

Local folders (POSIX)
    ``fcntl.flock`` locks on ``metadata.lock`` and on each registration file. The kernel
    releases them when their process dies, however it dies, so a killed run never blocks
    the next one; a registration file whose lock is free is a dead run's and is removed.
Object stores (S3) and other fsspec file systems
    Leases: small JSON objects created with a conditional write (``If-None-Match: *``,
    :mod:`lamap.store.objects`), renewed by a background thread every quarter of their
    lifetime with ``If-Match``, deleted with ``If-Match``. A lease that expired, or whose
    process on this host is gone, is broken (deleted if unchanged) by whoever waits for it.
    A holder whose lease could not be renewed has lost the lock: :meth:`Held.check` raises
    before it commits anything. Expiry compares wall clocks: the hosts sharing a store must
    agree on the time within a lease's lifetime (NTP does far better).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import fsspec
from fsspec.implementations.local import LocalFileSystem

from lamap.errors import StoreError
from lamap.store import objects
from lamap.store.fs import filesystem

__all__ = ["LOCK_NODE", "Held", "Holder", "Locks", "Registration", "store_locks"]

#: The lock records' folder in a store (the folder of a 0-d array).
LOCK_NODE = "lamap/lock"
#: Seconds a process waits for the metadata lock before giving up.
LOCK_WAIT_S = 3600.0
#: Lifetime of an object-store lease; renewed every quarter of it.
LEASE_TTL_S = 60.0

_LOG = logging.getLogger("lamap.store")


@dataclass(frozen=True)
class Holder:
    """Who holds a lock or a registration (what waiting processes are told)."""

    token: str
    purpose: str
    host: str
    pid: int
    since: str
    date: str | None = None
    expires: float = 0.0

    @classmethod
    def new(cls, purpose: str, date: dt.date | None = None) -> Holder:
        """Describe this process (and thread: a fresh token) as a holder."""
        return cls(
            token=uuid.uuid4().hex, purpose=purpose, host=socket.gethostname(), pid=os.getpid(),
            since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            date=None if date is None else date.isoformat(),
        )  # fmt: skip

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """Read a holder record (None if it is not one: a broken write)."""
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None

    def to_bytes(self, ttl: float = 0.0) -> bytes:
        """Return the record, with an expiry ``ttl`` seconds from now when given."""
        record = asdict(self) | ({"expires": time.time() + ttl} if ttl else {})
        return json.dumps(record).encode()

    def describe(self) -> str:
        """``adding date 2024-06-15 (pid 123 on host, since ...)``."""
        return f"{self.purpose} (pid {self.pid} on {self.host}, since {self.since})"

    def gone(self) -> bool:
        """Whether the holder's process is known to be dead (same host only) or expired."""
        if self.expires and self.expires < time.time():
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Held(Protocol):
    """A held lock."""

    def check(self) -> None:
        """Raise StoreError if the lock was lost (an object-store lease not renewed)."""


class Registration(Protocol):
    """A run's registration as the writer of a date; ``close()`` ends it."""

    def close(self) -> None:
        """End the registration."""


class Locks(Protocol):
    """The locks of one store (see the module docstring)."""

    def exclusive(self, purpose: str, *, timeout: float = LOCK_WAIT_S) -> Any:
        """Return a context manager holding the metadata lock (yields a :class:`Held`)."""

    def register(self, date: dt.date) -> Registration:
        """Register this process as a writer of ``date`` (hold the metadata lock to call)."""

    def writers(self) -> list[Holder]:
        """Return the live writers' registrations, removing dead ones."""


def store_locks(url: str, options: Mapping[str, Any]) -> Locks:
    """Return the locks of the store at a normalised location."""
    fs, root = filesystem(url, options)
    if isinstance(fs, LocalFileSystem) and _has_flock():
        return FileLocks(url, Path(root))
    return LeaseLocks(url, fs, root)


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not POSIX
        return False
    return True


def _waited_too_long(url: str, holder: Holder | None, timeout: float) -> StoreError:
    who = holder.describe() if holder else "another lamap process"
    return StoreError(
        f"the store {url} is locked by {who} for more than {timeout:.0f} s: let that run "
        "finish and try again (a lock whose process died is released by itself)"
    )


def _backoff(attempt: int) -> float:
    return min(0.5, 0.01 * 2**attempt) * (0.5 + 0.5 * (uuid.uuid4().int % 1000) / 1000)


def _wait_for(
    url: str, take: Callable[[], bool], holder: Callable[[], Holder | None], timeout: float
) -> None:
    """Call ``take`` until it succeeds, backing off; log who is waited for, now and then."""
    started, attempt, told = time.monotonic(), 0, 0.0
    while not take():
        waited = time.monotonic() - started
        if waited > timeout:
            raise _waited_too_long(url, holder(), timeout)
        if waited - told > 10.0:
            told = waited
            current = holder()
            _LOG.info("waiting for the lock of %s, held by %s", url,
                      current.describe() if current else "another process")  # fmt: skip
        time.sleep(_backoff(attempt))
        attempt += 1


# --------------------------------------------------------------------------- local folders


@dataclass(frozen=True)
class _NeverLost:
    def check(self) -> None:
        return None


@dataclass
class _FileRegistration:
    path: Path
    descriptor: int

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.descriptor)


class FileLocks:
    """POSIX ``flock`` locks in a local store's ``lamap/lock`` folder."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.folder = root / LOCK_NODE

    @contextlib.contextmanager
    def exclusive(self, purpose: str, *, timeout: float = LOCK_WAIT_S) -> Iterator[Held]:
        """Hold ``metadata.lock``; the holder's record is written into it for waiters."""
        import fcntl

        path = self._ensure(self.folder) / "metadata.lock"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _wait_for(self.url, lambda: _try_flock(descriptor),
                      lambda: Holder.parse(path.read_bytes()), timeout)  # fmt: skip
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, Holder.new(purpose).to_bytes(), 0)
            yield _NeverLost()
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def register(self, date: dt.date) -> Registration:
        """Create and lock ``writers/<token>.json`` (locked before it gets its name)."""
        holder = Holder.new(f"writing {date}", date)
        folder = self._ensure(self.folder / "writers")
        temporary = folder / f".{holder.token}.tmp"
        descriptor = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        _try_flock(descriptor)
        os.write(descriptor, holder.to_bytes())
        final = folder / f"{holder.token}.json"
        os.rename(temporary, final)
        return _FileRegistration(final, descriptor)

    def writers(self) -> list[Holder]:
        """Return the registrations whose lock is held; remove those of dead processes."""
        folder = self.folder / "writers"
        live = []
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            holder = _live_registration(path)
            if holder is not None:
                live.append(holder)
        return live

    def _ensure(self, folder: Path) -> Path:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"cannot write to the store {self.url} ({err.strerror}: {err.filename}): "
                "choose an output path you can write to"
            ) from err
        return folder


def _try_flock(descriptor: int) -> bool:
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _live_registration(path: Path) -> Holder | None:
    """Return the registration at ``path`` if its process holds its lock; else remove it."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(descriptor):  # nobody holds it: a dead run's
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        return Holder.parse(path.read_bytes()) if path.suffix == ".json" else None
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------- object stores


class _Lease:
    """A lease object held by this process, renewed by a daemon thread until released."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, holder: Holder,
                 version: str) -> None:  # fmt: skip
        self.fs, self.path, self.holder, self.version = fs, path, holder, version
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="lamap-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_TTL_S / 4):
            try:
                version = objects.replace(
                    self.fs, self.path, self.holder.to_bytes(LEASE_TTL_S), self.version
                )
            except OSError:  # a network error: try again at the next beat
                _LOG.warning("could not renew the lease %s", self.path, exc_info=True)
                continue
            if version is None:
                self.lost = True
                return
            self.version = version

    def check(self) -> None:
        """Raise StoreError if the lease was lost."""
        if self.lost:
            raise StoreError(
                f"lost the lease {self.path} (it could not be renewed in time, and another "
                "process may have taken it): nothing more was committed; run again"
            )

    def close(self) -> None:
        """Stop renewing and delete the lease (if it is still this one)."""
        self._stop.set()
        self._thread.join()
        if not self.lost:
            with contextlib.suppress(OSError):
                objects.delete(self.fs, self.path, self.version)


class LeaseLocks:
    """Leases in an object store's ``lamap/lock/`` prefix."""

    def __init__(self, url: str, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.url, self.fs = url, fs
        self.folder = f"{root}/{LOCK_NODE}"

    @contextlib.contextmanager
    def exclusive(self, purpose: str, *, timeout: float = LOCK_WAIT_S) -> Iterator[Held]:
        """Hold the lease ``metadata.json``."""
        path, holder = f"{self.folder}/metadata.json", Holder.new(purpose)
        taken: list[_Lease] = []

        def take() -> bool:
            version = objects.create(self.fs, path, holder.to_bytes(LEASE_TTL_S))
            if version is not None:
                taken.append(_Lease(self.fs, path, holder, version))
                return True
            self._break_if_gone(path)
            return False

        _wait_for(self.url, take, lambda: self._holder(path), timeout)
        try:
            yield taken[0]
        finally:
            taken[0].close()

    def register(self, date: dt.date) -> Registration:
        """Create the lease ``writers/<token>.json``, renewed while the run lives."""
        holder = Holder.new(f"writing {date}", date)
        path = f"{self.folder}/writers/{holder.token}.json"
        version = objects.create(self.fs, path, holder.to_bytes(LEASE_TTL_S))
        if version is None:  # pragma: no cover - a fresh random name
            raise StoreError(f"could not register a writer at {path}: it exists; run again")
        return _Lease(self.fs, path, holder, version)

    def writers(self) -> list[Holder]:
        """Return the live writers' leases; break expired ones and those of dead processes."""
        folder = f"{self.folder}/writers"
        self.fs.invalidate_cache(folder)
        try:
            paths = sorted(str(p) for p in self.fs.ls(folder, detail=False))
        except FileNotFoundError:
            return []
        live = []
        for path in (p for p in paths if p.endswith(".json")):
            holder = self._break_if_gone(path)
            if holder is not None:
                live.append(holder)
        return live

    def _holder(self, path: str) -> Holder | None:
        current = objects.read(self.fs, path)
        return None if current is None else Holder.parse(current.data)

    def _break_if_gone(self, path: str) -> Holder | None:
        """Return the live holder of a lease, deleting the lease if its holder is gone."""
        current = objects.read(self.fs, path)
        if current is None:
            return None
        holder = Holder.parse(current.data)
        if holder is None or holder.gone():
            who = holder.describe() if holder else "an unreadable record"
            if objects.delete(self.fs, path, current.version):
                _LOG.warning("broke the stale lease %s of %s", path, who)
            return None
        return holder
