"""Readers of warped COG windows, for stackstac: one warp per read, and fewer of them.

stackstac's reader opens a ``WarpedVRT`` per asset and reads it ``masked=True``. For the
block engine (one synchronous task reads a whole block), lamap swaps in readers that:

* read each warped window once instead of twice (:class:`UnmaskedReader`: a masked read
  warps the nodata mask band a second time);
* close the dataset right after its one read, so GDAL's reprojection transformer goes back
  to its cache for the next asset (:class:`OneReadReader`);
* inside an item's footprint of valid data, warp without GDAL's nodata path when the source
  window holds no nodata (half the warp time, the same array);
* warp the bands of one item that share a source grid in one multi-band warp (the first
  asset's read warps its siblings too, which later take their arrays from a small
  per-thread stash): GDAL computes each output pixel's source coordinates and bilinear
  weights once for all bands (:data:`GROUPS`);
* optionally warp exactly (:class:`ExactWarpReader`: a pixel's value does not depend on
  the window it is read through).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence
from functools import cached_property, lru_cache
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.windows
from rasterio._path import _parse_path
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from stackstac.raster_spec import RasterSpec
from stackstac.rio_reader import DEFAULT_GDAL_ENV, AutoParallelRioReader

__all__ = [
    "COVERED",
    "GDAL_ENV",
    "GROUPS",
    "WARP_TOLERANCE",
    "CoveredWindows",
    "ExactOneReadReader",
    "ExactSpec",
    "ExactWarpReader",
    "OneReadReader",
    "ReadGroups",
    "UnmaskedReader",
    "reader_for",
]

#: Largest error (pixels) allowed to GDAL's approximate transformer; 0 is refused by
#: rasterio's WarpedVRT, and 1e-4 px is as good as exact for every value we read.
WARP_TOLERANCE = 1e-4
#: GDAL's own HTTP retries of a failed request (5xx, 429, timeouts), with back-off: the
#: delay starts at 1 s and GDAL doubles it on each retry. A read that still fails is
#: retried by Dask (``MapOptions.retries``), then its tile is recorded as failed.
GDAL_ENV = DEFAULT_GDAL_ENV.updated(
    always={"GDAL_HTTP_MAX_RETRY": "4", "GDAL_HTTP_RETRY_DELAY": "1"}
)


class ExactSpec(RasterSpec):
    """A stackstac raster spec whose warped reads use GDAL's exact transformer.

    GDAL's default approximate transformer (``tolerance`` 0.125 px) interpolates
    coordinates across the warped extent, so a pixel's value depended on the cube's window
    (up to 0.09 dB in S1 between two tiles' halos). With :data:`WARP_TOLERANCE` every pixel
    is computed (all but) exactly, the same whatever window it is read through, so
    neighbouring tiles agree in their overlap.
    """

    @cached_property
    def vrt_params(self) -> dict[str, Any]:
        """Return stackstac's ``WarpedVRT`` parameters plus the exact-warp tolerance."""
        params = RasterSpec.vrt_params.func(self)  # type: ignore[attr-defined]
        return {**params, "tolerance": WARP_TOLERANCE}


class UnmaskedReader(AutoParallelRioReader):
    """stackstac's reader, reading each warped window once instead of twice.

    stackstac reads ``masked=True``; on a ``WarpedVRT`` with a nodata value GDAL computes
    that mask from the nodata mask band, which warps the window a second time (measured:
    a 1088² bilinear read of a 20-m band takes 2× as long). Where the source has a nodata
    value (every Sentinel COG) the mask is exactly "value == nodata" (NaN-aware), so this
    reads once and fills those pixels, giving the same array (tested); anything else
    (no nodata, scales or offsets, a dataset not read through stackstac's thread-local
    wrapper) goes through stackstac's own read.
    """

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        """Read one window: the warped values, ``fill_value`` where the source has nodata."""
        wrapper = self.dataset
        inner = getattr(wrapper, "dataset", None)
        nodata = getattr(inner, "nodata", None)
        if nodata is None or kwargs or tuple(self.scale_offset) != (1, 0):
            return super().read(window, **kwargs)  # type: ignore[no-any-return]
        try:
            values = wrapper.read(window=window, out_dtype=self.dtype, masked=False)
        except Exception as err:
            raise RuntimeError(f"Error reading {window} from {self.url!r}: {err!r}") from err
        band = values[0]
        invalid = np.isnan(band) if np.isnan(nodata) else band == nodata
        band[invalid] = self.fill_value
        return band  # type: ignore[no-any-return]


class ExactWarpReader(UnmaskedReader):
    """stackstac's reader with exact (window-independent) reprojection."""

    def __init__(self, *, spec: RasterSpec, **kwargs: Any) -> None:
        exact = ExactSpec(spec.epsg, spec.bounds, spec.resolutions_xy)
        super().__init__(spec=exact, **kwargs)


class OneReadReader(UnmaskedReader):
    """A reader for a one-chunk cube: it reads its window once, then closes its dataset.

    GDAL keeps reprojection transformers in a cache, but a live ``WarpedVRT`` holds its
    transformer out of that cache. stackstac keeps every reader of a chunk open until the
    chunk is done, so in a one-chunk block each of its ~40 ``WarpedVRT`` opens rebuilt its
    transformer from the PROJ database (measured: 17 ms per open, a quarter of a block's
    inputs). Closed after its read, a reader hands the transformer back to the next one.
    Only for cubes computed on the synchronous scheduler, where no other thread shares it.
    """

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        """Read the window, then close the dataset (a later read reopens it).

        A sibling's group read may already have warped this asset's window: it is taken
        from the stash. Otherwise the asset's group (:data:`GROUPS`) is warped in one pass,
        or, alone, the asset itself.
        """
        try:
            if kwargs:
                return super().read(window, **kwargs)  # type: ignore[no-any-return]
            stashed = _stash().pop(self._stash_key(self.url, window), None)
            if stashed is not None:
                return stashed
            values = self._group_read(window)
            if values is None:
                values = self._clean_read(window)
            return values if values is not None else super().read(window, **kwargs)
        finally:
            self.close()

    def _stash_key(self, url: str, window: Any) -> tuple[Any, ...]:
        spec = self.spec
        return (url, spec.epsg, tuple(spec.bounds), tuple(spec.resolutions_xy),
                _window_key(window), self.resampling, self.dtype.str, repr(self.fill_value),
                type(self).__name__)  # fmt: skip

    def _group_read(self, window: Any) -> np.ndarray | None:
        """Warp this asset and its siblings on the same source grid in one multi-band warp.

        Returns this asset's band (the siblings' go to the stash), or None where there is
        no group: no siblings, another source grid, no nodata value, no warp needed, or
        any error (the single read then reports it against its own asset).
        """
        group = GROUPS.get(self.url, tuple(self.spec.bounds))
        if group is None or tuple(self.scale_offset) != (1, 0):
            return None
        try:
            with contextlib.ExitStack() as stack:
                with self.gdal_env.open:
                    datasets = [stack.enter_context(rasterio.open(url, sharing=False))
                                for url in group]  # fmt: skip
                members = _same_grid(datasets, group.index(self.url), self.spec)
                if len(members) < 2:
                    return None
                values = self._warp_members([datasets[i] for i in members], window)
        except Exception:  # noqa: BLE001 - the asset's own read raises it, named
            return None
        stash = _stash()
        for band, index in zip(values, members, strict=True):
            if group[index] != self.url:
                stash[self._stash_key(group[index], window)] = band
        while len(stash) > _STASH_SIZE:
            del stash[next(iter(stash))]
        return values[[group[i] for i in members].index(self.url)]  # type: ignore[no-any-return]

    def _warp_members(self, datasets: Sequence[Any], window: Any) -> np.ndarray:
        """One warp of the stacked datasets: ``(bands, y, x)`` with ``fill_value`` at nodata.

        The nodata check and the warp read through the same stacked dataset, so the
        source blocks are decoded once (GDAL's block cache serves the warp).
        """
        nodata = datasets[0].nodata
        with rasterio.open(_stacked_vrt(datasets)) as stacked:
            clean = self._is_clean(stacked)
            with self.gdal_env.open_vrt:
                nodata_args = {"src_nodata": None, "nodata": None} if clean else {}
                vrt = WarpedVRT(stacked, resampling=self.resampling, add_alpha=False,
                                **nodata_args, **self.spec.vrt_params)  # fmt: skip
            with vrt, self.gdal_env.read:
                values = vrt.read(window=window, out_dtype=self.dtype)
        if not clean:
            invalid = np.isnan(values) if np.isnan(nodata) else values == nodata
            values[invalid] = self.fill_value
        return values  # type: ignore[no-any-return]

    def _is_clean(self, stacked: Any) -> bool:
        """Tell whether no source pixel the warp needs is nodata, in any band.

        Then GDAL's nodata path can be skipped: the same values at a fraction of the cost.
        Only tried inside the item's footprint (:data:`COVERED`) and for interpolating
        resampling (nearest's nodata path costs less than the check).
        """
        if not self._may_be_clean():
            return False
        source = _source_window(stacked, self.spec)
        with self.gdal_env.read:
            return source is not None and not _has_nodata(stacked.read(window=source),
                                                          stacked.nodata)  # fmt: skip

    def _may_be_clean(self) -> bool:
        """Whether the nodata check is worth its decode for this read.

        Only inside the item's footprint of valid data (elsewhere nodata is likely), and not
        for nearest resampling (its nodata path costs less than the check: 30 vs 80 ms).
        """
        covered = (self.url, tuple(self.spec.bounds)) in COVERED
        return covered and self.resampling != Resampling.nearest

    def _clean_read(self, window: Any) -> np.ndarray | None:
        """Warp without nodata handling where the source under the window has no nodata.

        GDAL's warper takes a per-pixel validity path as soon as the source has a nodata
        value (measured: 2× the time of a bilinear 1088² warp). Where every source pixel
        the window needs is valid, both paths compute the same weights over the same
        pixels, so this path reads the same array at half the cost; anywhere else
        (a window reaching past the raster or over nodata) it returns None and the
        nodata-aware read runs. Only windows inside the item's footprint of valid data are
        tried (:mod:`lamap.cube` records them in :data:`COVERED`), so blocks at a swath or
        tile edge pay nothing; the check decodes the source window once and the warp then
        reads it from GDAL's block cache, so a footprint that is wrong costs time, never a
        wrong value.
        """
        if not self._may_be_clean() or tuple(self.scale_offset) != (1, 0):
            return None
        with self.gdal_env.open, rasterio.open(self.url, sharing=False) as ds:
            source = _source_window(ds, self.spec)
            if ds.count != 1 or ds.nodata is None or source is None:
                return None
            if _has_nodata(ds.read(1, window=source), ds.nodata):
                return None
            with self.gdal_env.open_vrt:
                vrt = WarpedVRT(ds, src_nodata=None, nodata=None, resampling=self.resampling,
                                add_alpha=False, **self.spec.vrt_params)  # fmt: skip
            with vrt, self.gdal_env.read:
                return vrt.read(1, window=window, out_dtype=self.dtype)  # type: ignore[no-any-return]


def _source_window(ds: Any, spec: RasterSpec) -> rasterio.windows.Window | None:
    """Return the source pixels a warp of ``spec`` reads (2 px to spare).

    None if they reach past the raster.
    """
    west, south, east, north = _bounds_in(ds.crs.to_wkt(), spec.epsg, tuple(spec.bounds))
    inverse = ~ds.transform
    cols, rows = zip(*(inverse @ xy for xy in ((west, north), (east, north), (west, south),
                                               (east, south))), strict=True)  # fmt: skip
    col0, row0 = math.floor(min(cols)) - 2, math.floor(min(rows)) - 2
    col1, row1 = math.ceil(max(cols)) + 2, math.ceil(max(rows)) + 2
    if col0 < 0 or row0 < 0 or col1 > ds.width or row1 > ds.height:
        return None
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


@lru_cache(maxsize=256)
def _bounds_in(crs_wkt: str, epsg: int, bounds: tuple[float, ...]) -> tuple[float, ...]:
    """Return ``bounds`` (in ``epsg``) in another CRS.

    Cached: building the transformation costs about 15 ms, and every asset of a block asks
    for the same few.
    """
    return tuple(transform_bounds(CRS.from_epsg(epsg), CRS.from_wkt(crs_wkt), *bounds,
                                  densify_pts=21))  # fmt: skip


def _window_key(window: Any) -> tuple[int, int, int, int]:
    return (int(window.col_off), int(window.row_off), int(window.width), int(window.height))


def _same_grid(datasets: Sequence[Any], own: int, spec: RasterSpec) -> list[int]:
    """Indexes of the datasets a multi-band warp can take with ``datasets[own]``.

    Single-band, the same grid, data type and nodata value, and a warp needed at all
    (where the source grid is the spec's, stackstac reads without one). Empty if the
    asset itself does not qualify.
    """
    ref = datasets[own]
    if ref.count != 1 or ref.nodata is None or _is_spec_grid(ref, spec):
        return []

    def same(ds: Any) -> bool:
        return bool(ds.count == 1 and ds.crs == ref.crs and ds.transform == ref.transform
                    and ds.shape == ref.shape and ds.dtypes == ref.dtypes
                    and ds.nodata is not None and _same_value(ds.nodata, ref.nodata))  # fmt: skip

    return [i for i, ds in enumerate(datasets) if same(ds)]


def _same_value(a: float, b: float) -> bool:
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


def _is_spec_grid(ds: Any, spec: RasterSpec) -> bool:
    return bool(ds.crs == CRS.from_epsg(spec.epsg) and ds.transform == spec.transform
                and ds.shape == spec.shape)  # fmt: skip


def _stacked_vrt(datasets: Sequence[Any]) -> str:
    """GDAL VRT XML stacking single-band datasets of one grid as the bands of one dataset."""
    ref = datasets[0]
    width, height = ref.width, ref.height
    t = ref.transform
    dtype = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
             "int32": "Int32", "float32": "Float32", "float64": "Float64"}[ref.dtypes[0]]
    rect = f'xOff="0" yOff="0" xSize="{width}" ySize="{height}"'
    bands = "".join(
        f'<VRTRasterBand dataType="{dtype}" band="{n}">'
        f"<NoDataValue>{ref.nodata!r}</NoDataValue><SimpleSource>"
        f'<SourceFilename relativeToVRT="0">{escape(_parse_path(ds.name).as_vsi())}'
        f"</SourceFilename><SourceBand>1</SourceBand><SrcRect {rect}/><DstRect {rect}/>"
        f"</SimpleSource></VRTRasterBand>"
        for n, ds in enumerate(datasets, start=1)
    )
    return (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
            f"<SRS>{escape(ref.crs.to_wkt())}</SRS>"
            f"<GeoTransform>{t.c!r},{t.a!r},{t.b!r},{t.f!r},{t.d!r},{t.e!r}</GeoTransform>"
            f"{bands}</VRTDataset>")  # fmt: skip


def _has_nodata(values: np.ndarray, nodata: float) -> bool:
    return bool(np.isnan(values).any() if np.isnan(nodata) else (values == nodata).any())


class ExactOneReadReader(ExactWarpReader, OneReadReader):
    """:class:`OneReadReader` with exact reprojection."""


class CoveredWindows:
    """Which assets' valid data cover which window: a hint for :class:`OneReadReader`.

    Filled while a block's cubes are built, read when they are computed (same process,
    same task); bounded, so a long-lived worker does not grow it.
    """

    def __init__(self, size: int = 4096) -> None:
        self._keys: dict[tuple[str, tuple[float, ...]], None] = {}
        self._size = size

    def add(self, bounds: tuple[float, ...], item: dict[str, Any]) -> None:
        """Record that every asset of ``item`` has valid data all over ``bounds``."""
        for asset in item.get("assets", {}).values():
            self._keys[(str(asset.get("href")), tuple(bounds))] = None
        while len(self._keys) > self._size:
            del self._keys[next(iter(self._keys))]

    def __contains__(self, key: tuple[str, tuple[float, ...]]) -> bool:
        return key in self._keys


#: The registry :func:`lamap.cube` fills and :class:`OneReadReader` reads.
COVERED = CoveredWindows()


class ReadGroups:
    """Which assets a one-chunk cube reads together from one item.

    A hint for :class:`OneReadReader`, which warps those on a common source grid in one pass.

    Filled while a block's cubes are built, read when they are computed (same process,
    same task); bounded like :class:`CoveredWindows`.
    """

    def __init__(self, size: int = 4096) -> None:
        self._groups: dict[tuple[str, tuple[float, ...]], tuple[str, ...]] = {}
        self._size = size

    def add(self, bounds: tuple[float, ...], hrefs: Sequence[str]) -> None:
        """Record that the assets at ``hrefs`` are read over ``bounds`` by one cube."""
        group = tuple(dict.fromkeys(str(h) for h in hrefs))
        if len(group) < 2:
            return
        for href in group:
            self._groups[(href, tuple(bounds))] = group
        while len(self._groups) > self._size:
            del self._groups[next(iter(self._groups))]

    def get(self, href: str, bounds: tuple[float, ...]) -> tuple[str, ...] | None:
        """Return the group ``href`` is read with over ``bounds``, or None."""
        return self._groups.get((href, tuple(bounds)))


#: The registry :func:`lamap.cube` fills and :class:`OneReadReader` reads.
GROUPS = ReadGroups()
#: Sibling bands a group read warped ahead of their own reads, per thread; bounded, since
#: stackstac skips assets whose bounding box misses the window (their bands would linger).
_STASH_SIZE = 32
_LOCAL = threading.local()


def _stash() -> dict[tuple[Any, ...], np.ndarray]:
    if not hasattr(_LOCAL, "stash"):
        _LOCAL.stash = {}
    return _LOCAL.stash  # type: ignore[no-any-return]


def reader_for(*, one_chunk: bool, exact: bool) -> type[UnmaskedReader]:
    """Return the reader class for a cube: one read per dataset for one-chunk blocks."""
    if one_chunk:
        return ExactOneReadReader if exact else OneReadReader
    return ExactWarpReader if exact else UnmaskedReader
