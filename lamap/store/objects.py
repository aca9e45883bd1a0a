"""Conditional writes of small objects: create if absent, replace or delete if unchanged.

What the store's object-store locks (:mod:`lamap.store.lock`) are built on. Every function
takes an fsspec file system and a path on it, and works on whole small objects (a lease, a
record): a write publishes the object whole.

S3 (``s3fs``)
    Conditional requests, atomic on S3 itself: ``PutObject`` with ``If-None-Match: *``
    (create), ``PutObject`` and ``DeleteObject`` with ``If-Match: <ETag>`` (replace, delete);
    a read returns the content with its ETag in one ``GetObject``. Versions are ETags.
Any other fsspec file system (``memory://``...)
    The same operations under one lock of this process: exact for a file system that lives
    in this process (``memory://``), best effort for remote ones that have no conditional
    writes (two processes may both "win"). Versions are SHA-256 digests of the content.

Local folders do not come here: :mod:`lamap.store.lock` uses POSIX file locks on them.
"""

from __future__ import annotations

import errno
import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.asyn import sync

__all__ = ["Stamped", "create", "delete", "read", "replace"]

_EMULATED = threading.Lock()


@dataclass(frozen=True)
class Stamped:
    """An object's content and the version it was read at."""

    data: bytes
    version: str


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "s3" in protocol or "s3a" in protocol


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _failed_precondition(err: OSError) -> bool:
    """Whether s3fs's translation of an S3 error is a failed ``If-Match``/``If-None-Match``."""
    return isinstance(err, FileExistsError) or err.errno == errno.EINVAL


# --------------------------------------------------------------------------- reading


def read(fs: fsspec.AbstractFileSystem, path: str) -> Stamped | None:
    """Return an object's content and version, or None if it does not exist."""
    if _is_s3(fs):
        try:
            data, etag = sync(fs.loop, _s3_get, fs, path)
        except FileNotFoundError:
            return None
        return Stamped(data, etag)
    with _EMULATED:
        return _plain_read(fs, path)


async def _s3_get(fs: Any, path: str) -> tuple[bytes, str]:
    bucket, key, _ = fs.split_path(path)
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    body = response["Body"]
    try:
        data = await body.read()
    finally:
        body.close()
    return bytes(data), str(response["ETag"])


def _plain_read(fs: fsspec.AbstractFileSystem, path: str) -> Stamped | None:
    fs.invalidate_cache(path)
    try:
        data = bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None
    return Stamped(data, _digest(data))


# --------------------------------------------------------------------------- writing


def create(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> str | None:
    """Write an object only if none exists at ``path``; return its version, or None if one did."""
    if _is_s3(fs):
        bucket, key, _ = fs.split_path(path)
        try:
            response = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except OSError as err:
            if _failed_precondition(err):
                return None
            raise
        fs.invalidate_cache(path)
        return str(response["ETag"])
    with _EMULATED:
        if _plain_read(fs, path) is not None:
            return None
        fs.pipe_file(path, data)
        return _digest(data)


def replace(fs: fsspec.AbstractFileSystem, path: str, data: bytes, version: str) -> str | None:
    """Replace an object if it is still at ``version``; return the new version, or None."""
    if _is_s3(fs):
        bucket, key, _ = fs.split_path(path)
        try:
            response = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=version)
        except FileNotFoundError:
            return None
        except OSError as err:
            if _failed_precondition(err):
                return None
            raise
        fs.invalidate_cache(path)
        return str(response["ETag"])
    with _EMULATED:
        current = _plain_read(fs, path)
        if current is None or current.version != version:
            return None
        fs.pipe_file(path, data)
        return _digest(data)


def delete(fs: fsspec.AbstractFileSystem, path: str, version: str) -> bool:
    """Delete an object if it is still at ``version``; return whether it was deleted."""
    if _is_s3(fs):
        bucket, key, _ = fs.split_path(path)
        try:
            fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=version)
        except FileNotFoundError:
            return False
        except OSError as err:
            if _failed_precondition(err):
                return False
            raise
        fs.invalidate_cache(path)
        return True
    with _EMULATED:
        current = _plain_read(fs, path)
        if current is None or current.version != version:
            return False
        fs.rm_file(path)
        return True
