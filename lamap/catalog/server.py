"""A real STAC API on 127.0.0.1: ``rustac serve`` over local collection and item files.

lamap's tests, demo and benchmarks have no internet, so they query this server with
pystac-client exactly as they would query Planetary Computer or Earth Search. A demo world is
served through :mod:`lamap.catalog.local` (``with open_catalog(world_dir) as profile:``).

Examples
--------
>>> from pystac_client import Client
>>> with serve_directory("world") as server:  # doctest: +SKIP
...     client = Client.open(server.url)
...     items = list(client.search(collections=["sentinel-2-l2a"], bbox=bbox).items())

What ``rustac serve`` (PyPI ``rustac`` 0.9, memory backend) does, as measured:

- It advertises the conformance classes ``core``, ``ogcapi-features``, ``collections`` and
  ``item-search`` (STAC API v1.0.0), so pystac-client searches it without warnings. It does
  not advertise ``sort``, ``fields``, ``query``, ``filter`` or ``context``: ``sortby`` and
  ``fields`` are silently ignored, ``query`` returns nothing, ``numberMatched`` is absent.
- Results come collection by collection (in an order that changes from one server process
  to the next) and, within a collection, in file order. Nothing is sorted.
- Paging uses ``skip``: the default ``limit`` is 10, with no maximum. A ``next`` link comes
  back as POST with the search body, which is how pystac-client searches by default.
- GET ``/search`` with ``bbox``, ``intersects`` or ``collections`` answers HTTP 500
  ("unsupported value") as soon as there is a next page; use POST (pystac-client's
  default; never pass ``method="GET"``).
- ``datetime`` must be full RFC 3339 (date-only strings get HTTP 400); pystac-client
  expands dates for you. Items span ``start_datetime``..``end_datetime`` when present, else
  ``datetime``; the Planetary Computer Sentinel-1 format with a space
  (``2024-04-19 04:59:04.220006+00:00``) is read correctly.
- A bbox crossing the antimeridian (west > east) gets HTTP 400.
- Items of a collection without a collection file get a generated collection, whether or
  not ``--create-collections`` is given; items without a ``collection`` field are refused.
  Duplicate ids are all served.
- It follows the ``item`` links of collection files, with or without
  ``--load-collection-items``, resolving relative ones against its working directory (not
  the collection file) and loading items given as files a second time. This module
  therefore serves copies of the collection files without ``item`` links, and items only
  from the item files.
- Start-up is fast: about 0.3–0.8 s for 2000 items (single files, FeatureCollections or
  ndjson alike), about 5 s for 20 000; everything is loaded before the port opens.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from lamap.errors import CatalogError, InputError

__all__ = ["StacServer", "find_rustac", "serve_directory"]

HOST = "127.0.0.1"
"""The only address the server ever binds to."""

ITEM_SUFFIXES = (".json", ".geojson", ".ndjson")
"""File name endings that :func:`serve_directory` reads as items."""

_PORT_ATTEMPTS = 5
_STOP_TIMEOUT_S = 5.0
_POLL_INTERVAL_S = 0.05
_MAX_ARGV_BYTES = 100_000
_TAIL_BYTES = 2000
_PR_SET_PDEATHSIG = 1


class StacServer:
    """A ``rustac serve`` STAC API on a free 127.0.0.1 port, as a context manager.

    Parameters
    ----------
    items
        Files of STAC items: single Items, FeatureCollections / ItemCollections (``.json``,
        ``.geojson``) or newline-delimited items (``.ndjson``).
    collections
        STAC Collection JSON files. Without any, rustac generates a collection for each
        ``collection`` id found in the items.
    startup_timeout
        Seconds to wait for the API to answer before giving up.
    executable
        The ``rustac`` program; by default the one next to :data:`sys.executable`, then the
        one on ``PATH``.

    Notes
    -----
    The server is stopped (terminate, then kill) when the ``with`` block ends, also on an
    exception, when the object is garbage collected and at interpreter exit. Started from
    the main thread on Linux, it is also killed if the Python process itself dies.
    """

    def __init__(
        self,
        items: Iterable[str | os.PathLike[str]] = (),
        *,
        collections: Iterable[str | os.PathLike[str]] = (),
        startup_timeout: float = 60.0,
        executable: str | os.PathLike[str] | None = None,
    ) -> None:
        self.item_files = [_existing_file(p, "item") for p in items]
        self.collection_files = [_existing_file(p, "collection") for p in collections]
        if not self.item_files and not self.collection_files:
            raise InputError("StacServer needs at least one item or collection file")
        if startup_timeout <= 0:
            raise InputError(f"startup_timeout must be positive, got {startup_timeout}")
        self.startup_timeout = float(startup_timeout)
        self.executable = Path(executable) if executable is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._finalizer: weakref.finalize[Any, StacServer] | None = None

    def __repr__(self) -> str:
        """Describe the server and its state."""
        state = f"running at {self.url}" if self.running else "stopped"
        return (
            f"StacServer({len(self.collection_files)} collection files, "
            f"{len(self.item_files)} item files, {state})"
        )

    def __enter__(self) -> StacServer:
        """Start the server; see :meth:`start`."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server, whether or not the block raised."""
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def port(self) -> int:
        """The port the API listens on."""
        if self._port is None or not self.running:
            raise CatalogError(
                "the STAC server is not running; use `with StacServer(...) as server:`"
            )
        return self._port

    @property
    def url(self) -> str:
        """The API root, such as ``http://127.0.0.1:40123``."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id, or None before it was started."""
        return None if self._process is None else self._process.pid

    def start(self) -> StacServer:
        """Start ``rustac serve`` and wait until its API answers.

        Returns
        -------
        StacServer
            This server, running.

        Raises
        ------
        CatalogError
            If rustac is missing, exits, or does not answer within ``startup_timeout``;
            the message names the command, the port and the end of rustac's output.
        """
        if self.running:
            return self
        executable = find_rustac(self.executable)
        workdir = tempfile.TemporaryDirectory(prefix="lamap-stac-server-")
        try:
            files = self._input_files(Path(workdir.name))
            for _ in range(_PORT_ATTEMPTS):
                if self._launch(executable, files, workdir):
                    return self
            raise CatalogError(
                f"rustac found every port taken on {HOST} after {_PORT_ATTEMPTS} attempts"
            )
        except BaseException:
            self.stop()
            workdir.cleanup()
            raise

    def stop(self) -> None:
        """Stop the server and wait for it to exit; does nothing if it is not running."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._port = None

    def _input_files(self, workdir: Path) -> list[Path]:
        """Return the files for the command line, bundling items if it would be too long."""
        (workdir / "collections").mkdir()
        collections = [
            _unlinked_collection(path, workdir / "collections" / f"{i}-{path.name}")
            for i, path in enumerate(self.collection_files)
        ]
        files = [*collections, *self.item_files]
        if sum(len(str(p)) + 1 for p in files) <= _MAX_ARGV_BYTES:
            return files
        bundle = workdir / "items.ndjson"
        _bundle_items(self.item_files, bundle)
        return [*collections, bundle]

    def _command(self, executable: Path, files: Sequence[Path], port: int) -> list[str]:
        """Return the ``rustac serve`` command line."""
        command = [str(executable), "serve", "--addr", f"{HOST}:{port}"]
        if not self.collection_files:
            command.append("--create-collections")
        return command + [str(p) for p in files]

    def _launch(
        self, executable: Path, files: Sequence[Path], workdir: tempfile.TemporaryDirectory[str]
    ) -> bool:
        """Start rustac on a free port; return False if another process took the port."""
        port = _free_port()
        command = self._command(executable, files, port)
        log = tempfile.TemporaryFile(dir=workdir.name)
        try:
            process = _spawn(command, log)
        except BaseException:
            log.close()
            raise
        self._process, self._port = process, port
        self._finalizer = weakref.finalize(self, _shutdown, process, log, workdir)
        failure = _wait_until_ready(process, f"http://{HOST}:{port}", self.startup_timeout)
        if failure is None:
            return True
        output = _tail(log)
        self._finalizer.detach()
        _shutdown(process, log, None)
        self._process, self._port, self._finalizer = None, None, None
        if "address already in use" in output.lower():
            return False
        raise CatalogError(_failure_message(failure, command, port, output, self.item_files))


def serve_directory(
    path: str | os.PathLike[str],
    *,
    startup_timeout: float = 60.0,
    executable: str | os.PathLike[str] | None = None,
) -> StacServer:
    """Return a (not yet started) server over a directory of STAC files.

    The directory holds ``collections/*.json`` (optional) and ``items/**`` with items as
    single Item files, one FeatureCollection per collection, or ``.ndjson`` files, in any
    mix and sub-folder layout.

    Parameters
    ----------
    path
        The directory.
    startup_timeout, executable
        Passed to :class:`StacServer`.

    Returns
    -------
    StacServer
        Use it as ``with serve_directory(path) as server: ...``.

    Raises
    ------
    InputError
        If the directory does not exist or holds neither collections nor items.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"STAC directory {root} does not exist or is not a directory")
    collections = sorted((root / "collections").glob("*.json"))
    items = sorted(
        p for p in (root / "items").rglob("*") if p.suffix in ITEM_SUFFIXES and p.is_file()
    )
    if not collections and not items:
        raise InputError(
            f"no STAC files under {root}: expected collections/*.json and "
            f"items/**/*{{{','.join(ITEM_SUFFIXES)}}}"
        )
    return StacServer(
        items,
        collections=collections,
        startup_timeout=startup_timeout,
        executable=executable,
    )


def find_rustac(executable: str | os.PathLike[str] | None = None) -> Path:
    """Locate the ``rustac`` command-line program.

    Parameters
    ----------
    executable
        An explicit program to use instead of searching.

    Returns
    -------
    Path
        The program, looked up next to :data:`sys.executable` first (the active virtual
        environment), then on ``PATH``.

    Raises
    ------
    CatalogError
        If no ``rustac`` program can be found.
    """
    if executable is not None:
        found = shutil.which(str(executable))
        if found is None:
            raise CatalogError(f"rustac program {executable} does not exist or is not executable")
        return Path(found)
    beside_python = shutil.which("rustac", path=str(Path(sys.executable).parent))
    found = beside_python or shutil.which("rustac")
    if found is None:
        raise CatalogError(
            f"the `rustac` program was found neither next to {sys.executable} nor on PATH; "
            "install lamap with its dependencies: pip install rustac"
        )
    return Path(found)


def _existing_file(path: str | os.PathLike[str], kind: str) -> Path:
    """Return ``path`` as an absolute path, checking that the file exists."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise InputError(f"STAC {kind} file {path} does not exist")
    return resolved


def _free_port() -> int:
    """Return a port that is free on 127.0.0.1 right now (another process may take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _die_with_parent() -> Callable[[], Any] | None:
    """Return a pre-exec hook that kills the child when this process dies, where possible.

    Linux sends the signal when the *thread* that forked exits, so the hook is only used
    from the main thread, whose end is the end of the process.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return functools.partial(libc.prctl, _PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _spawn(command: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start the server process with its output going to ``log``."""
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),
        )
    except OSError as err:
        raise CatalogError(f"could not start {_short_command(command)}: {err}") from err


def _get_json(url: str, timeout: float) -> Any:
    """GET a JSON document from the loopback server, bypassing any proxy settings."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return json.load(response)


def _answers(url: str, timeout: float) -> bool:
    """Tell whether the API answers its landing page and collections."""
    try:
        root = _get_json(url + "/", timeout)
        collections = _get_json(url + "/collections", timeout)
    except (OSError, ValueError):
        return False
    return isinstance(root, dict) and isinstance(collections, dict)


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, timeout: float) -> str | None:
    """Poll the API until it answers; return None, or why it did not."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if process.poll() is not None:
            return f"exited with code {process.returncode}"
        if _answers(url, timeout=min(5.0, max(left, 0.1))):
            return None
        time.sleep(_POLL_INTERVAL_S)
    return f"did not answer within {timeout:g} s"


def _shutdown(
    process: subprocess.Popen[bytes],
    log: IO[bytes],
    workdir: tempfile.TemporaryDirectory[str] | None,
) -> None:
    """Terminate the process (kill it if it lingers) and release its files."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()
    if workdir is not None:
        workdir.cleanup()


def _tail(log: IO[bytes]) -> str:
    """Return the end of the server's output."""
    log.flush()
    size = log.seek(0, os.SEEK_END)
    log.seek(max(0, size - _TAIL_BYTES))
    return log.read().decode("utf-8", errors="replace").strip()


def _short_command(command: Sequence[str], shown: int = 8) -> str:
    """Return the command for a message, eliding long file lists."""
    if len(command) <= shown:
        return " ".join(command)
    return " ".join(command[:shown]) + f" ... ({len(command) - shown} more files)"


def _failure_message(
    failure: str, command: Sequence[str], port: int, output: str, item_files: Sequence[Path]
) -> str:
    """Explain why the server did not start, pointing at a bad input file if there is one."""
    lines = [
        f"the STAC API server {failure} on port {port}.",
        f"command: {_short_command(command)}",
        f"rustac output: {output or '(none)'}",
    ]
    culprit = _find_bad_item_file(item_files)
    if culprit is not None:
        lines.append(f"bad input: {culprit}")
    return "\n".join(lines)


def _find_bad_item_file(item_files: Iterable[Path]) -> str | None:
    """Return a description of the first item file rustac cannot load, if any."""
    for path in item_files:
        try:
            for feature in _read_features(path):
                if not isinstance(feature, dict) or feature.get("type") != "Feature":
                    return f"{path} holds something that is not a STAC Item (GeoJSON Feature)"
                if not feature.get("collection"):
                    return f"{path}: item {feature.get('id')!r} has no 'collection' field"
        except (OSError, ValueError) as err:
            return f"{path} is not valid JSON: {err}"
    return None


def _read_features(path: Path) -> list[Any]:
    """Read the items of a single-Item, FeatureCollection or ndjson file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ndjson":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    document = json.loads(text)
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        return list(document.get("features") or [])
    return [document]


def _unlinked_collection(path: Path, copy: Path) -> Path:
    """Copy a collection file to ``copy`` without its ``item`` links.

    rustac follows a collection's ``item`` links on its own, resolving relative ones
    against its working directory instead of the collection file, and would load items
    passed as files a second time; so items only ever come from the item files.
    """
    try:
        collection = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CatalogError(f"cannot read STAC collection file {path}: {err}") from err
    if not isinstance(collection, dict) or collection.get("type") != "Collection":
        raise CatalogError(f"{path} is not a STAC Collection (its 'type' must be 'Collection')")
    links = collection.get("links") or []
    collection["links"] = [k for k in links if not isinstance(k, dict) or k.get("rel") != "item"]
    copy.write_text(json.dumps(collection), encoding="utf-8")
    return copy


def _bundle_items(item_files: Iterable[Path], bundle: Path) -> None:
    """Write all items of ``item_files`` into one ndjson file, one item per line."""
    with bundle.open("w", encoding="utf-8") as out:
        for path in item_files:
            try:
                features = _read_features(path)
            except (OSError, ValueError) as err:
                raise CatalogError(f"cannot read STAC item file {path}: {err}") from err
            for feature in features:
                out.write(json.dumps(feature, separators=(",", ":")) + "\n")
