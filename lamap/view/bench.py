"""What ``lamap view`` costs: bytes read for a whole-extent view, tile latency on loopback.

:func:`measure_view` answers the two questions of a map viewer at continental scale:

- how many bytes a view of the whole store reads (the tiles that cover the grid at the
  zoom where it spans at most ``2 x 2`` tiles) from the pyramid, against the bytes of the
  date's level-0 ``lai`` that the same view would read without a pyramid;
- how long a tile request takes after the first, over HTTP on 127.0.0.1: ``requests``
  distinct tiles on one keep-alive connection (a zoom-in walk over the mapped extent),
  stopped after ``seconds`` whatever the count.
"""

from __future__ import annotations

import http.client
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import morecantile
import numpy as np

from lamap.store import LaiStore
from lamap.store.fs import filesystem
from lamap.view.server import ViewServer
from lamap.view.tiles import StoreTiles

__all__ = ["ViewBench", "measure_view"]

_TMS = morecantile.tms.get("WebMercatorQuad")


@dataclass(frozen=True)
class ViewBench:
    """The figures of :func:`measure_view`.

    Attributes
    ----------
    extent_tiles : int
        Tiles of the whole-extent view.
    extent_zoom : int
        Their zoom.
    extent_bytes : int
        Bytes they read from the pyramid.
    level0_bytes : int
        Stored bytes of the date's level-0 ``lai`` (what the view reads without a pyramid).
    requests : int
        Tile requests timed.
    p50_ms, p95_ms : float
        Their latency percentiles (milliseconds).
    """

    extent_tiles: int
    extent_zoom: int
    extent_bytes: int
    level0_bytes: int
    requests: int
    p50_ms: float
    p95_ms: float

    def lines(self) -> list[str]:
        """Return the figures as text."""
        return [
            f"whole extent: {self.extent_tiles} tiles at zoom {self.extent_zoom} read "
            f"{self.extent_bytes:,} bytes from the pyramid; level 0 of the date holds "
            f"{self.level0_bytes:,} bytes",
            f"tile latency over {self.requests} requests on 127.0.0.1: "
            f"p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms",
        ]


def measure_view(
    store: LaiStore, *, requests: int = 200, seconds: float = 60.0
) -> ViewBench:
    """Measure a store's viewer (see the module docstring).

    Parameters
    ----------
    store : LaiStore
        A store with overviews and at least one date.
    requests : int
        Tile requests to time.
    seconds : float
        Stop timing after this long.

    Returns
    -------
    ViewBench
    """
    tiles = StoreTiles(store)  # a fresh one: nothing cached yet
    day = tiles.dates[-1]
    zoom, extent = _extent_tiles(list(store.grid.lonlat_extent()))
    before = tiles.bytes_read
    for tile in extent:
        tiles.render("lai", day, tile.z, tile.x, tile.y)
    from_pyramid = tiles.bytes_read - before
    from_level0 = _level0_bytes(store, store.time_index(day))
    latencies = _latencies(tiles, day.isoformat(), requests, seconds)
    p50, p95 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 95))
    return ViewBench(len(extent), zoom, from_pyramid, from_level0, len(latencies), p50, p95)


def _level0_bytes(store: LaiStore, index: int) -> int:
    """Return the stored bytes of one date's level-0 ``lai``: what drawing it all would read.

    (Rendering the whole extent from level 0 would read every one of these objects; doing
    it to count them would hold the whole grid in memory.)
    """
    fs, root = filesystem(store.url, store.storage_options)
    folder = f"{root}/lai/c/{index}"
    return int(fs.du(folder, total=True)) if fs.exists(folder) else 0


def _extent_tiles(bounds: list[float]) -> tuple[int, list[morecantile.Tile]]:
    """Return the deepest zoom at which the bounds span at most 2 x 2 tiles, and the tiles."""
    west, south, east, north = bounds
    zoom = 0
    while zoom < 24:
        upper_left = _TMS.tile(west, north, zoom + 1)
        lower_right = _TMS.tile(east, south, zoom + 1)
        span = (lower_right.x - upper_left.x + 1) * (lower_right.y - upper_left.y + 1)
        if span > 4:
            break
        zoom += 1
    return zoom, list(_TMS.tiles(west, south, east, north, [zoom]))


def _walk(bounds: list[float], count: int) -> Iterator[morecantile.Tile]:
    """Yield distinct tiles zooming into the bounds, ``count`` at most, level by level."""
    west, south, east, north = bounds
    seen = 0
    for zoom in range(2, 23):
        for tile in _TMS.tiles(west, south, east, north, [zoom]):
            yield tile
            seen += 1
            if seen >= count:
                return


def _latencies(tiles: StoreTiles, day: str, count: int, seconds: float) -> list[float]:
    with ViewServer(tiles) as server:
        port = int(server.url.rstrip("/").rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            bounds = tiles.info()["data_bounds"]
            first = _TMS.tile((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 2)
            _get(connection, f"/tiles/lai/{day}/{first.z}/{first.x}/{first.y}.png")
            out: list[float] = []
            stop = time.perf_counter() + seconds
            for tile in _walk(bounds, count):
                started = time.perf_counter()
                _get(connection, f"/tiles/lai/{day}/{tile.z}/{tile.x}/{tile.y}.png")
                out.append(time.perf_counter() - started)
                if started > stop:
                    break
            return out if out else [math.nan]
        finally:
            connection.close()


def _get(connection: http.client.HTTPConnection, path: str) -> bytes:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
    return body
