"""The viewer's web server: one page, its assets, XYZ tiles and a JSON API, on 127.0.0.1.

A small threaded server from the standard library (:class:`http.server.ThreadingHTTPServer`)
over :class:`lamap.view.tiles.StoreTiles`; nothing is fetched from the internet: the page's
map library is Leaflet from the ``xstatic-leaflet`` package, served from here. Routes:

=====================================================  ===================================
``/``                                                  the page
``/static/<file>``                                     the page's script and style
``/leaflet/<file>``                                    Leaflet (``leaflet.js``, its CSS, icons)
``/tiles/<lai|source>/<YYYY-MM-DD>/<z>/<x>/<y>.png``   XYZ tiles in Web Mercator
``/api/info``                                          dates, extents, levels, ramp (JSON)
``/api/point?lon=…&lat=…``                             a pixel's time series (JSON)
``/api/stats``                                         bytes read from the store (JSON)
``/wmts/1.0.0/WMTSCapabilities.xml``                   the tiles as a WMTS service (for GIS)
=====================================================  ===================================
"""

from __future__ import annotations

import errno
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lamap._inputs import as_date
from lamap.errors import InputError, LamapError
from lamap.view.tiles import StoreTiles
from lamap.view.wmts import capabilities

__all__ = ["ViewServer"]

_LOG = logging.getLogger("lamap.view")
_TILE = re.compile(r"^/tiles/(lai|source)/([0-9-]{10})/(\d+)/(\d+)/(\d+)\.png$")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png"}  # fmt: skip
_LEAFLET_FILES = ("leaflet.js", "leaflet.css", "images/layers.png", "images/layers-2x.png",
                  "images/marker-icon.png", "images/marker-icon-2x.png",
                  "images/marker-shadow.png")  # fmt: skip
_STATIC_FILES = ("index.html", "view.js", "view.css")
#: Threads answering requests (browsers keep about six connections open per server).
_THREADS = 16


def _leaflet_dir() -> Path:
    try:
        from xstatic.pkg import leaflet
    except ImportError as err:  # pragma: no cover - a dependency of lamap
        raise LamapError(
            "lamap view needs the xstatic-leaflet package (Leaflet's files): "
            "pip install xstatic-leaflet"
        ) from err
    return Path(leaflet.BASE_DIR)


class ViewServer:
    """Serve a store's map on 127.0.0.1 in a background thread.

    Parameters
    ----------
    tiles : StoreTiles
        The opened store.
    port : int
        TCP port; 0 picks a free one.

    Raises
    ------
    InputError
        If the port is in use (or not allowed).
    """

    def __init__(self, tiles: StoreTiles, *, port: int = 0) -> None:
        self.tiles = tiles
        handler = type("Handler", (_Handler,), {"tiles": tiles, "leaflet": _leaflet_dir()})
        try:
            self._httpd = _PooledServer(("127.0.0.1", port), handler)
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                raise InputError(
                    f"port {port} on 127.0.0.1 cannot be used ({err.strerror}): choose another "
                    "with --port, or --port 0 for a free one"
                ) from err
            raise
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The page's address, ``http://127.0.0.1:<port>/``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def start(self) -> ViewServer:
        """Start serving (returns self)."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PooledServer(ThreadingHTTPServer):
    """A threaded server whose threads are reused.

    A thread per connection would pay pyproj's per-thread set-up (tens of milliseconds)
    on every new connection.
    """

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="lamap-view")
        super().__init__(address, handler)  # closes the socket (and the pool) if bind fails

    def process_request(self, request: Any, client_address: Any) -> None:
        """Handle a connection on a pooled thread."""
        self._pool.submit(self.process_request_thread, request, client_address)

    def server_close(self) -> None:
        """Close the socket and let the pooled threads finish."""
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Handler(BaseHTTPRequestHandler):
    """Answers the viewer's GET requests (the class attributes are set per server)."""

    tiles: StoreTiles
    leaflet: Path
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection gives its thread back
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        """Route one request."""
        parts = urlsplit(self.path)
        try:
            self._route(parts.path, parse_qs(parts.query))
        except (LamapError, ValueError, KeyError) as err:
            self._send(HTTPStatus.NOT_FOUND, str(err).encode(), "text/plain; charset=utf-8")
        except Exception as err:  # noqa: BLE001 - a broken read must not kill the server
            _LOG.warning("%s failed", self.path, exc_info=True)
            message = f"{type(err).__name__}: {err}".encode()
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, message, "text/plain; charset=utf-8")

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        if (match := _TILE.match(path)) is not None:
            layer, day, z, x, y = match.groups()
            png = self.tiles.render(layer, as_date(day), int(z), int(x), int(y))  # type: ignore[arg-type]
            self._send(HTTPStatus.OK, png, "image/png", cache=True)
        elif path == "/api/info":
            self._json(self.tiles.info())
        elif path == "/api/point":
            self._json(self.tiles.series(float(query["lon"][0]), float(query["lat"][0])))
        elif path == "/api/stats":
            self._json({"bytes_read": self.tiles.bytes_read})
        elif path == "/wmts/1.0.0/WMTSCapabilities.xml":
            base = f"http://127.0.0.1:{self.server.server_address[1]}/"  # type: ignore[index]
            self._send(HTTPStatus.OK, capabilities(self.tiles, base), "application/xml")
        elif path in ("/", "/index.html"):
            self._file(resources.files("lamap.view").joinpath("static/index.html"))
        elif path.startswith("/static/") and path[8:] in _STATIC_FILES:
            self._file(resources.files("lamap.view").joinpath(f"static/{path[8:]}"))
        elif path.startswith("/leaflet/") and path[9:] in _LEAFLET_FILES:
            self._file(self.leaflet / path[9:], cache=True)
        else:
            raise InputError(f"nothing at {path}: open / for the map")

    def _json(self, payload: dict[str, Any]) -> None:
        self._send(HTTPStatus.OK, json.dumps(payload).encode(), "application/json")

    def _file(self, path: Any, *, cache: bool = False) -> None:
        suffix = Path(str(path)).suffix
        self._send(HTTPStatus.OK, path.read_bytes(), _TYPES[suffix], cache=cache)

    def _send(self, status: HTTPStatus, body: bytes, kind: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        """Keep quiet: one line per tile would flood the terminal."""
