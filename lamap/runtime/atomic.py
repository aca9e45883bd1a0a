"""lamap's one atomic file writer: readers see the old content or the new, never a part.

Local files
    The content goes to a temporary file next to the target (same folder, so the same file
    system, named ``.<name>.<random>.tmp``), which is flushed and fsync'd, then renamed over
    the target with :func:`os.replace` (atomic on POSIX and Windows); on POSIX the folder is
    fsync'd as well, so that the rename survives a power cut. An exception at any point
    before the rename leaves the old target as it was and removes the temporary file; a
    process killed meanwhile leaves the old target too, and at most a stray ``.tmp`` file.
    The new file gets the permissions :func:`open` would give it (``0o666`` less the umask).

fsspec URLs (``s3://``, ``gs://``, ``az://``, ``memory://``...)
    A rename there is a copy and a delete, not atomic. The content is built in memory and
    written with one :meth:`fsspec.spec.AbstractFileSystem.pipe_file`: an object store
    publishes an object whole, so readers see the previous object or the new one. A failing
    content callback writes nothing. Remote file systems that are not object stores (sftp,
    ftp) give no such guarantee.

:func:`write_atomic` writes bytes or whatever a callback writes to a binary stream
(``torch.save``, ``numpy.savez``); :func:`atomic_path` is the same local protocol for writers
that need a file name (GDAL).
"""

from __future__ import annotations

import errno
import io
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeAlias

import fsspec
from fsspec.implementations.local import LocalFileSystem

from lamap.errors import InputError

__all__ = ["Content", "atomic_path", "write_atomic"]

#: What :func:`write_atomic` writes: bytes, or a callback writing to a binary stream.
Content: TypeAlias = "bytes | Callable[[IO[bytes]], object]"


def write_atomic(
    target: str | os.PathLike[str],
    content: Content,
    *,
    fs: fsspec.AbstractFileSystem | None = None,
    storage_options: Mapping[str, Any] | None = None,
    make_dirs: bool = False,
) -> None:
    """Replace the file at ``target`` with ``content`` atomically.

    Parameters
    ----------
    target : str or os.PathLike
        Local path or fsspec URL; with ``fs``, a path on that file system.
    content : bytes or callable
        The bytes to write, or a callback ``write(stream)`` writing them to a binary stream,
        e.g. ``functools.partial(torch.save, payload)``. An exception raised by the
        callback propagates and leaves the target untouched.
    fs : fsspec.AbstractFileSystem, optional
        The file system of ``target``, when the caller already has it.
    storage_options : mapping, optional
        fsspec options for a remote ``target`` (credentials, endpoint); not with ``fs``.
    make_dirs : bool
        Create the missing parent folders of a local target (object stores have none).
        Without it, a missing folder raises FileNotFoundError.

    Raises
    ------
    InputError
        If both ``fs`` and ``storage_options`` are given.
    OSError
        If the file cannot be written (missing folder, no permission, disk full); the old
        target is then untouched.
    """
    if fs is not None and storage_options:
        raise InputError(
            "give write_atomic either fs or storage_options, not both: the file system "
            "already carries its options"
        )
    if fs is None:
        fs, path = fsspec.core.url_to_fs(os.fspath(target), **dict(storage_options or {}))
    else:
        path = os.fspath(target)
    if isinstance(fs, LocalFileSystem):
        _write_local(Path(path), content, make_dirs=make_dirs)
    else:
        fs.pipe_file(path, _as_bytes(content))  # one PUT: published whole or not at all


@contextmanager
def atomic_path(target: str | os.PathLike[str], *, make_dirs: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to a local ``target``; publish it there on success.

    For writers that take a file name rather than a stream (``rasterio.open(path, "w")``):
    write the complete file to the yielded path and close it inside the ``with`` block. On a
    normal exit the file is fsync'd and renamed over ``target``; on an exception it is
    removed and ``target`` stays as it was.

    Parameters
    ----------
    target : str or os.PathLike
        Local path of the file to replace.
    make_dirs : bool
        Create the missing parent folders of ``target``.

    Yields
    ------
    pathlib.Path
        Where to write; it does not exist yet.

    Raises
    ------
    OSError
        If the folder does not exist (without ``make_dirs``) or the rename fails.
    """
    final = Path(target)
    if make_dirs:
        final.parent.mkdir(parents=True, exist_ok=True)
    elif not final.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"no folder to write {final.name} in: create it first", str(final.parent)
        )
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(final.parent)


def _write_local(target: Path, content: Content, *, make_dirs: bool) -> None:
    with atomic_path(target, make_dirs=make_dirs) as temporary, temporary.open("xb") as stream:
        _write(stream, content)


def _write(stream: IO[bytes], content: Content) -> None:
    if isinstance(content, bytes):
        stream.write(content)
    elif callable(content):
        content(stream)
    else:
        raise InputError(
            f"content is a {type(content).__name__}: give bytes or a callback that writes "
            "to a binary stream, e.g. functools.partial(torch.save, payload)"
        )


def _as_bytes(content: Content) -> bytes:
    if isinstance(content, bytes):
        return content
    buffer = io.BytesIO()
    _write(buffer, content)
    return buffer.getvalue()


def _fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk (POSIX fsync works on a read-only descriptor)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX only: Windows cannot open folders).

    File systems that cannot sync a folder (some network and FUSE mounts answer EINVAL) are
    let be: the rename has happened, only its durability across a power cut is theirs.
    """
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(descriptor)
