"""Web Mercator map tiles, pixel time series and a summary, read from a store's pyramid.

:class:`StoreTiles` opens a store once (its consolidated metadata, so every array is known
without another read) and answers the viewer's requests:

- :meth:`StoreTiles.render`: an XYZ tile (``WebMercatorQuad``, 256 px) as a PNG. The level
  is the coarsest whose pixel is not larger than the tile's pixel on the ground, so a view
  of the whole continent reads the top of the pyramid (kilobytes) and a field reads level
  0. Each tile pixel takes the nearest level pixel (its centre projected to the store's
  CRS); ``lai`` is coloured with the quick-look's ramp, ``source`` by flag, and pixels
  without an estimate are transparent.
- :meth:`StoreTiles.series`: the level-0 time series of the pixel under a lon/lat.
- :meth:`StoreTiles.info`: dates, extent, levels and the ramp, for the page.

Reads go through a byte-counting wrapper of the store (:attr:`StoreTiles.bytes_read`).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import morecantile
import numpy as np
import zarr
from PIL import Image
from pyproj import Transformer
from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from lamap.errors import InputError
from lamap.export import LAI_RAMP
from lamap.grid import Window
from lamap.store import LAI_VALID_RANGE, LaiStore, Source
from lamap.store.fs import zarr_store
from lamap.store.overviews import built_tiles
from lamap.store.pyramid import PyramidSpec, level_arrays, pyramid_spec

__all__ = ["SOURCE_COLOURS", "TILE_SIZE", "Layer", "StoreTiles"]

#: Edge of a map tile in pixels.
TILE_SIZE = 256
#: RGBA of the ``source`` layer by flag (no_input stays transparent).
SOURCE_COLOURS = {
    int(Source.OBSERVED): (44, 123, 182, 255),
    int(Source.FILLED): (230, 97, 1, 255),
}
#: A tile layer.
Layer = Literal["lai", "source"]
_TMS = morecantile.tms.get("WebMercatorQuad")
#: Tile pixels between exactly projected points (see StoreTiles._project).
_LATTICE = 16
#: Most pixels read per level when finding the data's extent for the page.
_BOUNDS_PIXELS = 1024 * 1024
#: Colour lookup steps per unit of LAI (a ramp colour differs from its step by < 1 unit).
_LUT_STEPS = 256


class CountingStore(WrapperStore[Any]):
    """A Zarr store that counts the bytes it returns (what a view costs to read)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self.bytes_read = 0

    def _count(self, buffers: Iterable[Buffer | None]) -> None:
        with self._lock:
            self.bytes_read += sum(len(b) for b in buffers if b is not None)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read one object (or a range of it), counting its bytes."""
        value = await self._store.get(key, prototype, byte_range)
        self._count([value])
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """Read several ranges, counting their bytes."""
        values = await self._store.get_partial_values(prototype, key_ranges)
        self._count(values)
        return values


class ChunkCache:
    """Decoded chunks of 2-D slices, least recently used first out, within a byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._chunks: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def read(
        self, data: zarr.Array, name: tuple[Any, ...], index: int, window: Window
    ) -> np.ndarray:
        """Return ``data[index, window]``, reading only the chunks not cached (in one read).

        Parameters
        ----------
        data : zarr.Array
            A ``(time, y, x)`` array.
        name : tuple
            Names the array and the time step in the cache.
        index : int
            The time step.
        window : Window
            The pixels wanted (inside the array).
        """
        edge = data.chunks[1]
        rows, cols = data.shape[1:]
        whole = Window(0, rows, 0, cols)
        parts = (block.intersection(whole) for block in window.snap(edge).split(edge))
        blocks = [part for part in parts if part is not None]
        with self._lock:
            cached = {b: self._chunks.get((*name, b)) for b in blocks}
        found = {b: chunk for b, chunk in cached.items() if chunk is not None}
        missing = [b for b in blocks if b not in found]
        if missing:
            span = Window(min(b.row_start for b in missing), max(b.row_stop for b in missing),
                          min(b.col_start for b in missing), max(b.col_stop for b in missing))
            values = np.asarray(data[(index, *span.to_slices())])
            for block in missing:
                found[block] = values[block.relative_to(span).to_slices()].copy()
            self._keep(name, {b: found[b] for b in missing})
        out = np.empty(window.shape, dtype=data.dtype)
        for block, chunk in found.items():
            part = block.intersection(window)
            if part is not None:
                inner = chunk[part.relative_to(block).to_slices()]
                out[part.relative_to(window).to_slices()] = inner
        return out

    def _keep(self, name: tuple[Any, ...], chunks: dict[Window, Any]) -> None:
        with self._lock:
            for block, chunk in chunks.items():
                key = (*name, block)
                if key not in self._chunks:
                    self._chunks[key] = chunk
                    self._size += chunk.nbytes
                self._chunks.move_to_end(key)
            while self._size > self.budget and self._chunks:
                self._size -= self._chunks.popitem(last=False)[1].nbytes


@dataclass(frozen=True)
class _Level:
    """One level of the pyramid, as the renderer needs it."""

    index: int
    size: float
    shape: tuple[int, int]
    lai: zarr.Array
    source: zarr.Array


class StoreTiles:
    """Map tiles and time series of one store (thread-safe; open once, serve many).

    Parameters
    ----------
    store : LaiStore
        The store; it must have a pyramid.
    cache_bytes : int
        Memory for decoded chunks, so that neighbouring and repeated tiles read nothing.

    Raises
    ------
    StoreError
        If the store has no pyramid (the message offers ``lamap overviews``).
    """

    def __init__(self, store: LaiStore, *, cache_bytes: int = 256 * 2**20) -> None:
        self.store = store
        self._counter = CountingStore(zarr_store(store.url, store.storage_options,
                                                 read_only=True))  # fmt: skip
        group = zarr.open_group(self._counter, mode="r", use_consolidated=True, zarr_format=3)
        self.spec: PyramidSpec = pyramid_spec(store, group)
        self.levels = [self._level(group, k) for k in range(self.spec.levels + 1)]
        self._cache = ChunkCache(cache_bytes)
        dates = store.dates
        self.dates: list[dt.date] = sorted(dates)
        self._index = {day: dates.index(day) for day in dates}
        crs = store.grid.crs
        self._from_mercator = Transformer.from_crs("EPSG:3857", crs, always_xy=True)
        self._from_lonlat = Transformer.from_crs("EPSG:4326", crs, always_xy=True)

    def _level(self, group: zarr.Group, k: int) -> _Level:
        lai, source = level_arrays(group, k, ("lai", "source"))
        grid = self.store.grid
        return _Level(k, grid.resolution * 2**k, PyramidSpec.shape(grid, k), lai, source)

    @property
    def bytes_read(self) -> int:
        """Bytes read from the store so far (metadata and data)."""
        return self._counter.bytes_read

    # ----------------------------------------------------------------- tiles

    def level_for(self, z: int, x: int, y: int) -> int:
        """Return the pyramid level for a tile: the coarsest not coarser than its pixels."""
        bounds = _TMS.xy_bounds(morecantile.Tile(x, y, z))
        lat = _TMS.lnglat((bounds.left + bounds.right) / 2, (bounds.bottom + bounds.top) / 2).y
        ground = (bounds.right - bounds.left) / TILE_SIZE * math.cos(math.radians(lat))
        ratio = ground / self.store.grid.resolution
        level = math.floor(math.log2(ratio)) if ratio > 0 else 0
        return min(max(level, 0), self.spec.levels)

    def render(
        self, layer: Layer, date: dt.date, z: int, x: int, y: int, *, level: int | None = None
    ) -> bytes:
        """Return a tile as PNG bytes (RGBA; transparent where there is no estimate).

        Parameters
        ----------
        layer : {"lai", "source"}
            What to draw.
        date : datetime.date
            A date of the store.
        z, x, y : int
            The XYZ tile.
        level : int, optional
            Force a pyramid level (default: :meth:`level_for`).

        Raises
        ------
        InputError
            If the layer, date or tile does not exist.
        """
        index = self._time(date)
        chosen = self.levels[self.level_for(z, x, y) if level is None else level]
        rows, cols = self._tile_pixels(chosen, z, x, y)
        rgba = np.zeros((TILE_SIZE, TILE_SIZE, 4), dtype=np.uint8)
        window = _bounding(rows, cols)
        if window is not None and index < chosen.lai.shape[0]:  # else: not in the pyramid yet
            data = chosen.lai if layer == "lai" else chosen.source
            block = self._cache.read(data, (layer, chosen.index, index), index, window)
            inside = rows >= 0
            values = block[rows[inside] - window.row_start, cols[inside] - window.col_start]
            rgba[inside] = _colour_lai(values) if layer == "lai" else _colour_flags(values)
        return _png(rgba)

    def _tile_pixels(self, level: _Level, z: int, x: int, y: int) -> tuple[np.ndarray, ...]:
        """Return the level's row and column under each tile pixel (-1 outside the level)."""
        if not 0 <= z <= 24 or not (0 <= x < 2**z and 0 <= y < 2**z):
            raise InputError(f"there is no tile {z}/{x}/{y}: x and y run from 0 to 2**z - 1")
        gx, gy = self._project(_TMS.xy_bounds(morecantile.Tile(x, y, z)))
        x0, y0 = self.store.grid.origin
        with np.errstate(invalid="ignore"):
            col = np.floor((gx - x0) / level.size)
            row = np.floor((y0 - gy) / level.size)
        inside = (row >= 0) & (row < level.shape[0]) & (col >= 0) & (col < level.shape[1])
        return (np.where(inside, row, -1).astype(np.int64),
                np.where(inside, col, -1).astype(np.int64))  # fmt: skip

    def _project(self, bounds: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return the store-CRS coordinates of a tile's pixel centres.

        Every ``_LATTICE``-th centre is projected exactly and the rest interpolated
        bilinearly, like GDAL's approximate transformer: within a tile the projection is
        smooth, and this is twenty times cheaper than projecting all 65,536 centres.
        """
        step = (bounds.right - bounds.left) / TILE_SIZE
        knots = np.arange(0, TILE_SIZE + _LATTICE, _LATTICE) + 0.5
        mx, my = np.meshgrid(bounds.left + knots * step, bounds.top - knots * step)
        coarse = self._from_mercator.transform(mx, my, errcheck=False)
        where = (np.arange(TILE_SIZE) + 0.5 - knots[0]) / _LATTICE
        index = np.minimum(where.astype(np.int64), knots.size - 2)
        frac = where - index
        out = []
        for values in coarse:
            grid = np.asarray(values, dtype=np.float64)
            rows = grid[index] * (1 - frac)[:, None] + grid[index + 1] * frac[:, None]
            out.append(rows[:, index] * (1 - frac) + rows[:, index + 1] * frac)
        return out[0], out[1]

    def _time(self, date: dt.date) -> int:
        if date not in self._index:
            held = ", ".join(day.isoformat() for day in self.dates) or "none"
            raise InputError(f"the store has no date {date} (it holds {held})")
        return self._index[date]

    # ----------------------------------------------------------------- series and info

    def series(self, lon: float, lat: float) -> dict[str, Any]:
        """Return the level-0 LAI and source of the pixel under a lon/lat, by date.

        Returns
        -------
        dict
            ``inside`` (bool); when inside: ``row``, ``col``, ``x``, ``y`` (pixel centre in
            the store's CRS) and ``series``: ``[{"date", "lai" (None if NaN), "source"}]``
            in date order.
        """
        gx, gy = self._from_lonlat.transform(lon, lat, errcheck=False)
        grid = self.store.grid
        x0, y0 = grid.origin
        if not (math.isfinite(gx) and math.isfinite(gy)):
            return {"inside": False}
        row = math.floor((y0 - gy) / grid.resolution)
        col = math.floor((gx - x0) / grid.resolution)
        if not (0 <= row < grid.shape[0] and 0 <= col < grid.shape[1]) or not self.dates:
            return {"inside": False}
        lai = np.asarray(self.levels[0].lai[:, row, col], dtype=np.float64)
        flags = np.asarray(self.levels[0].source[:, row, col])
        points = [
            {"date": day.isoformat(),
             "lai": None if np.isnan(lai[i]) else round(float(lai[i]), 4),
             "source": int(flags[i])}
            for day in self.dates
            for i in [self._index[day]]
        ]  # fmt: skip
        return {"inside": True, "row": row, "col": col,
                "x": x0 + (col + 0.5) * grid.resolution, "y": y0 - (row + 0.5) * grid.resolution,
                "series": points}  # fmt: skip

    def stale(self) -> dict[str, int]:
        """Return, per date, the done tiles whose overviews are not built (or not grown).

        Only the latest date is listed tile by tile (a listing of its markers).
        """
        held = self.levels[-1].lai.shape[0]
        out = {day.isoformat(): len(self.store.done_tiles(day))
               for day in self.dates if self._index[day] >= held}  # fmt: skip
        if self.dates and self._index[self.dates[-1]] < held:
            latest = self.dates[-1]
            missing = set(self.store.done_tiles(latest)) - built_tiles(self.store, latest)
            if missing:
                out[latest.isoformat()] = len(missing)
        return out

    def info(self) -> dict[str, Any]:
        """Return what the page needs: dates, extents, levels, ramp and flag colours."""
        grid = self.store.grid
        return {
            "store": self.store.url,
            "dates": [day.isoformat() for day in self.dates],
            "grid_bounds": list(grid.lonlat_extent()),
            "data_bounds": self._data_bounds(),
            "levels": self.spec.levels,
            "resolution": grid.resolution,
            "ramp": [[stop, list(rgb)] for stop, rgb in LAI_RAMP],
            "range": list(LAI_VALID_RANGE),
            "source_colours": {str(flag): list(rgba) for flag, rgba in SOURCE_COLOURS.items()},
        }

    def _data_bounds(self) -> list[float]:
        """Return the lon/lat bounds of the latest date's data, read down the pyramid.

        From the top level (one chunk) down, each level reads only the pixels under the
        data found one level up, while they are at most ``_BOUNDS_PIXELS``: kilobytes for a
        continent, a field's extent to the pixel for a small store.
        """
        grid = self.store.grid
        index, found = self._index[self.dates[-1]] if self.dates else -1, None
        if not 0 <= index < self.levels[-1].lai.shape[0]:
            return list(grid.lonlat_extent())
        window = Window(0, self.levels[-1].shape[0], 0, self.levels[-1].shape[1])
        for level in reversed(self.levels):
            values = self._cache.read(level.lai, ("lai", level.index, index), index, window)
            rows, cols = np.nonzero(np.isfinite(values))
            if rows.size == 0:
                break
            found = (level.index, Window(window.row_start + int(rows.min()),
                                         window.row_start + int(rows.max()) + 1,
                                         window.col_start + int(cols.min()),
                                         window.col_start + int(cols.max()) + 1))  # fmt: skip
            if level.index == 0 or 4 * found[1].height * found[1].width > _BOUNDS_PIXELS:
                break
            below = self.levels[level.index - 1].shape
            window = Window(2 * found[1].row_start, min(2 * found[1].row_stop, below[0]),
                            2 * found[1].col_start, min(2 * found[1].col_stop, below[1]))
        if found is None:
            return list(grid.lonlat_extent())
        size, box = 2 ** found[0], found[1]
        level0 = Window(box.row_start * size, min(box.row_stop * size, grid.shape[0]),
                        box.col_start * size, min(box.col_stop * size, grid.shape[1]))
        return list(grid.bounds_to_lonlat(grid.window_bounds(level0)).to_tuple())


def _bounding(rows: np.ndarray, cols: np.ndarray) -> Window | None:
    inside = rows >= 0
    if not inside.any():
        return None
    r, c = rows[inside], cols[inside]
    return Window(int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1)


def _lai_lut() -> np.ndarray:
    """Return the ramp's RGBA at every ``1 / _LUT_STEPS`` of LAI over the valid range."""
    low, high = LAI_VALID_RANGE
    values = np.linspace(low, high, int((high - low) * _LUT_STEPS) + 1)
    stops = np.array([stop for stop, _ in LAI_RAMP])
    colours = np.array([rgb for _, rgb in LAI_RAMP], dtype=np.float64)
    lut = np.full((values.size, 4), 255, dtype=np.uint8)
    for band in range(3):
        lut[:, band] = np.round(np.interp(values, stops, colours[:, band]))
    return lut


_LUT = _lai_lut()


def _colour_lai(values: np.ndarray) -> np.ndarray:
    """Return RGBA along the quick-look's ramp; NaN (no estimate) is transparent."""
    low, high = LAI_VALID_RANGE
    finite = np.isfinite(values)
    steps = np.round((np.clip(np.where(finite, values, low), low, high) - low) * _LUT_STEPS)
    rgba = _LUT[steps.astype(np.int64)]
    rgba[~finite] = 0
    return rgba


def _colour_flags(values: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*values.shape, 4), dtype=np.uint8)
    for flag, colour in SOURCE_COLOURS.items():
        rgba[values == flag] = colour
    return rgba


def _png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
