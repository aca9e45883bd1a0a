"""Where a store lives: its normalised location, its Zarr store and its fsspec file system."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import fsspec
import zarr
from zarr.abc.store import Store

from lamap.errors import InputError

__all__ = ["ProbeState", "check_protocol", "filesystem", "normalise_url", "probe", "zarr_store"]

#: What lies at a store's location (see :func:`probe`).
ProbeState: TypeAlias = Literal["absent", "complete", "incomplete", "foreign"]


def normalise_url(url: str | os.PathLike[str]) -> str:
    """Return an absolute local path, or the URL without a trailing slash.

    Raises
    ------
    InputError
        If ``url`` is empty or not a path.
    """
    text = os.fspath(url)
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"store location {url!r} must be a path or a URL such as s3://bucket/lai")
    protocol = fsspec.utils.get_protocol(text)
    if protocol in ("file", "local"):
        return os.path.abspath(os.path.expanduser(fsspec.core.strip_protocol(text)))
    check_protocol(protocol, text)
    return text.rstrip("/")


#: The lamap extra that installs each cloud file system (``pip install "lamap[s3]"``).
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "az", "abfs": "az",
           "abfss": "az", "adl": "az"}  # fmt: skip


def check_protocol(protocol: str, url: str) -> None:
    """Refuse a URL whose fsspec file system is unknown or not installed.

    Raises
    ------
    InputError
        Naming the lamap extra (``s3``, ``gcs``, ``az``) or package to install.
    """
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        extra = _EXTRAS.get(protocol)
        fix = f'pip install "lamap[{extra}]"' if extra else f"install the package it names ({err})"
        raise InputError(
            f"{url}: no file system for {protocol}:// is installed; {fix}"
        ) from err
    except ValueError as err:
        raise InputError(
            f"{url}: {protocol}:// is not a file system fsspec knows; use a local path or a "
            "URL such as s3://bucket/lai.zarr, gs://… or az://…"
        ) from err


def zarr_store(url: str, options: Mapping[str, Any], *, read_only: bool) -> Store:
    """Return the Zarr store at a normalised location (local, or fsspec with ``options``)."""
    if url.startswith("/"):
        return zarr.storage.LocalStore(url, read_only=read_only)
    return zarr.storage.FsspecStore.from_url(
        url, storage_options=dict(options), read_only=read_only
    )


def filesystem(url: str, options: Mapping[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the fsspec file system of a location and the store's root path on it."""
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, str(root).rstrip("/")


def probe(url: str, options: Mapping[str, Any], nodes: tuple[str, ...] = ()) -> ProbeState:
    """Say what lies at ``url``: nothing, a (complete or half-created) lamap store, or else.

    Without a root ``zarr.json``, a folder holding only names from ``nodes`` (lamap's own,
    left by a creation that stopped or being made by another process) is ``incomplete``; an
    empty one is ``absent``. Hidden names (``.zarr.json.<random>.tmp`` while the root is
    written) are not counted.

    Raises
    ------
    InputError
        If ``url`` is a file, or cannot be read.
    """
    fs, root = filesystem(url, options)
    fs.invalidate_cache(root)
    try:
        meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
    except (FileNotFoundError, NotADirectoryError):
        return _without_root(fs, url, root, nodes)
    except PermissionError as err:
        raise InputError(f"cannot read {url} ({err.strerror}): check its permissions") from err
    except ValueError:
        return "foreign"
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if not isinstance(attrs, dict) or "lamap_grid" not in attrs:
        return "foreign"
    return "complete" if meta.get("consolidated_metadata") else "incomplete"


def _without_root(fs: fsspec.AbstractFileSystem, url: str, root: str,
                  nodes: tuple[str, ...]) -> ProbeState:  # fmt: skip
    if fs.isfile(root):
        raise InputError(f"{url} is a file, not a folder for a Zarr store: choose another path")
    try:
        names = {str(path).rstrip("/").rsplit("/", 1)[-1] for path in fs.ls(root, detail=False)}
    except FileNotFoundError:
        return "absent"
    except NotADirectoryError as err:
        raise InputError(f"{url} lies inside a file: choose a folder path") from err
    names = {name for name in names if not name.startswith(".")}  # temporary files too
    if not names:
        return "absent"
    # the root may have been committed since it was read: look again under the lock
    return "incomplete" if names <= {*nodes, "zarr.json"} else "foreign"
