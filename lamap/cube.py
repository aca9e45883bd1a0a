"""Lazy xarray cubes of Sentinel-2 and Sentinel-1 on the output grid, with stackstac.

A cube covers a pixel window of the output grid (a tile grown by a halo). Its dask
chunks are cut on the grid's chunk boundaries; a halo ring's partial chunks are merged into
their neighbours, so every inner block is exactly one grid chunk. Building a cube computes nothing;
computing one block reads only the COGs whose footprint overlaps it (stackstac skips
the others from their ``proj:`` metadata).

- S2: the bands asked for, as surface reflectance ``(DN + BOA offset) / 10000`` with the
  offset of each item (from :class:`lamap.catalog.S2Scene`), resampled bilinearly;
  scenes of one UTC day are mosaicked; sun/view angles become ``time`` coordinates.
- SCL: nearest neighbour, never interpolated; 0 (no data) outside the swath.
- S1: ``vv``/``vh`` gamma0 converted to dB, bilinear; one pass = one time step.
- Nodata stays NaN (never 0 dB or 0 reflectance).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import dask.array as da
import numpy as np
import stackstac
import xarray as xr
from rasterio.enums import Resampling
from stackstac.raster_spec import RasterSpec
from stackstac.rio_reader import DEFAULT_GDAL_ENV, AutoParallelRioReader

from lamap.catalog import S1Scene, S2Scene
from lamap.errors import InputError, NoInputError
from lamap.grid import Grid, Tile, Window
from lamap.timesteps import S1Pass, S2Day, TimeSteps, select_scenes

__all__ = [
    "CubeWindow",
    "TileCubes",
    "s1_cube",
    "s2_cube",
    "scl_cube",
    "tile_cubes",
]

HrefSigner = Callable[[str], str]
SceneT = TypeVar("SceneT", S2Scene, S1Scene)

#: SNAP's bands, in the order :func:`lamap.lai.snap_lai` takes them.
SNAP_BANDS: tuple[str, ...] = ("B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12")
#: Largest error (pixels) allowed to GDAL's approximate transformer; 0 is refused by
#: rasterio's WarpedVRT, and 1e-4 px is as good as exact for every value we read.
WARP_TOLERANCE = 1e-4
#: GDAL's own HTTP retries of a failed request (5xx, 429, timeouts), with back-off: the
#: delay starts at 1 s and GDAL doubles it on each retry. A read that still fails is
#: retried by Dask (``MapOptions.retries``), then its tile is recorded as failed.
GDAL_ENV = DEFAULT_GDAL_ENV.updated(
    always={"GDAL_HTTP_MAX_RETRY": "4", "GDAL_HTTP_RETRY_DELAY": "1"}
)
ANGLES = ("sun_zenith", "sun_azimuth", "view_zenith", "relative_azimuth")
STEP_COORDS = (*ANGLES, "boa_offset")


@dataclass(frozen=True)
class CubeWindow:
    """The pixels of the output grid a cube covers.

    Parameters
    ----------
    grid : Grid
        The output grid.
    window : Window
        Pixel window in grid coordinates; may reach past the grid's edges (halo).
    one_chunk : bool
        Read the whole window as one dask chunk (a block task reading its own window),
        instead of cutting it on the grid's chunk boundaries.
    exact : bool
        Warp with :data:`WARP_TOLERANCE` (a pixel's value is the same through any window),
        or with GDAL's default approximate transformer (0.125 px; about a quarter less
        read CPU), enough where every pixel is always read through the same window, as
        the map's fixed blocks are.
    """

    grid: Grid
    window: Window
    one_chunk: bool = False
    exact: bool = True

    @classmethod
    def for_tile(cls, tile: Tile, halo: int = 0) -> CubeWindow:
        """Cover ``tile`` grown by ``halo`` pixels on every side."""
        if halo < 0:
            raise InputError(f"halo must be >= 0 pixels, got {halo}")
        return cls(tile.grid, tile.with_halo(halo) if halo else tile.window)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the grid's CRS."""
        return tuple(self.grid.window_bounds(self.window))  # type: ignore[return-value]

    @property
    def epsg(self) -> int:
        """EPSG code of the grid (stackstac needs one)."""
        if self.grid.epsg is None:
            raise InputError(
                f"the grid's CRS {self.grid.crs_label} has no EPSG code; stackstac needs one: "
                "choose an EPSG CRS with --crs"
            )
        return self.grid.epsg

    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Row and column chunk sizes cut on the grid's chunk boundaries (or one chunk)."""
        w, edge = self.window, self.grid.chunk
        if self.one_chunk:
            return (w.height,), (w.width,)
        return _cuts(w.row_start, w.row_stop, edge), _cuts(w.col_start, w.col_stop, edge)

    def coords(self) -> dict[str, np.ndarray]:
        """Pixel-centre ``y`` and ``x`` of the window, exactly as the grid defines them."""
        return {"y": self.grid.y_coords(self.window), "x": self.grid.x_coords(self.window)}


def _cuts(start: int, stop: int, edge: int) -> tuple[int, ...]:
    """Sizes of the pieces of [start, stop) cut at multiples of ``edge``.

    A partial first or last piece (a halo ring around a tile) is merged into its
    neighbour, so a tile with its halo has as many blocks as the tile alone; every inner
    cut stays on a grid chunk boundary.
    """
    bounds = [start, *range((start // edge + 1) * edge, stop, edge), stop]
    pieces = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if len(pieces) > 2 and start % edge:
        pieces[:2] = [pieces[0] + pieces[1]]
    if len(pieces) > 2 and stop % edge:
        pieces[-2:] = [pieces[-2] + pieces[-1]]
    return tuple(pieces)


class _ExactSpec(RasterSpec):
    """A stackstac raster spec whose warped reads use GDAL's exact transformer.

    GDAL's default approximate transformer (``tolerance`` 0.125 px) interpolates
    coordinates across the warped extent, so a pixel's value depended on the cube's window
    (up to 0.09 dB in S1 between two tiles' halos). With :data:`WARP_TOLERANCE` every pixel
    is computed (all but) exactly, the same whatever window it is read through, so
    neighbouring tiles agree in their overlap.
    """

    @cached_property
    def vrt_params(self) -> dict[str, Any]:
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
        exact = _ExactSpec(spec.epsg, spec.bounds, spec.resolutions_xy)
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
        """Read the window, then close the dataset (a later read reopens it)."""
        try:
            return super().read(window, **kwargs)
        finally:
            self.close()


class ExactOneReadReader(ExactWarpReader, OneReadReader):
    """:class:`OneReadReader` with exact reprojection."""


def _reader(where: CubeWindow) -> type[UnmaskedReader]:
    if where.one_chunk:
        return ExactOneReadReader if where.exact else OneReadReader
    return ExactWarpReader if where.exact else UnmaskedReader


def _stack(
    items: list[dict[str, object]],
    assets: Sequence[str],
    where: CubeWindow,
    *,
    dtype: str,
    fill_value: float | int,
    resampling: Resampling,
) -> xr.DataArray:
    rows, cols = where.chunks()
    cube = stackstac.stack(
        items,
        assets=list(assets),
        epsg=where.epsg,
        resolution=where.grid.resolution,
        bounds=where.bounds,
        snap_bounds=False,
        resampling=resampling,
        chunksize=(-1, -1, rows, cols),
        dtype=np.dtype(dtype),
        fill_value=np.array(fill_value, dtype=dtype)[()],
        rescale=False,
        sortby_date="asc",
        xy_coords="center",
        properties=True,
        band_coords=False,
        reader=_reader(where),
        gdal_env=GDAL_ENV,
    )
    expected = where.window.shape
    if cube.sizes["time"] == 0:  # every item misses the window (a block at a swath edge)
        cube = _no_items(assets, expected, rows, cols, dtype)
    if cube.shape[-2:] != expected:  # pragma: no cover - guards stackstac's rounding
        raise InputError(f"stackstac built a {cube.shape[-2:]} cube for a {expected} window")
    return cube.assign_coords(where.coords())


def _no_items(
    assets: Sequence[str],
    shape: tuple[int, int],
    rows: tuple[int, ...],
    cols: tuple[int, ...],
    dtype: str,
) -> xr.DataArray:
    """Return an empty ``(time=0, band, y, x)`` cube: stackstac's "no item here"."""
    chunks = ((0,), (len(assets),), rows, cols)
    data = da.zeros((0, len(assets), *shape), dtype=dtype, chunks=chunks)
    coords = {"time": np.array([], dtype="datetime64[ns]"), "id": ("time", np.array([], str)),
              "band": list(assets)}
    return xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords)


def _mosaic_by(
    cube: xr.DataArray,
    groups: Sequence[Sequence[str]],
    labels: Sequence[object],
    nodata: float | int,
) -> xr.DataArray:
    """Mosaic the items of each group (first valid pixel, in group order) into one step.

    stackstac leaves out items that miss the window entirely; a group with none left
    becomes a step of ``nodata``.
    """
    ids = list(cube["id"].values)
    steps: list[xr.DataArray] = []
    for group in groups:
        index = [ids.index(i) for i in reversed(group) if i in ids]  # the last is on top
        if not index:
            steps.append(_empty_step(cube, nodata))
            continue
        steps.append(stackstac.mosaic(cube.isel(time=index), dim="time", nodata=nodata))
    mosaic = xr.concat(steps, dim="time", coords="minimal", compat="override")
    item_coords = [name for name in mosaic.coords if name not in mosaic.dims]
    return mosaic.drop_vars(item_coords).assign_coords(
        time=np.array(labels, dtype="datetime64[ns]")
    )


def _empty_step(cube: xr.DataArray, nodata: float | int) -> xr.DataArray:
    """One step of ``nodata`` shaped like a step of ``cube`` (which may hold no item)."""
    dims = cube.dims[1:]
    data = da.full(cube.shape[1:], nodata, dtype=cube.dtype, chunks=cube.data.chunksize[1:])
    coords = {d: cube.coords[d] for d in dims if d in cube.coords}
    return xr.DataArray(data, dims=dims, coords=coords)


def _step_coord(
    scenes: Sequence[S2Scene], groups: Sequence[Sequence[str]], attr: str
) -> list[float]:
    by_id = {s.id: s for s in scenes}
    return [float(np.mean([getattr(by_id[i], attr) for i in g])) for g in groups]


def s2_cube(
    scenes: Sequence[S2Scene],
    days: Sequence[S2Day],
    where: CubeWindow,
    *,
    bands: Sequence[str] = SNAP_BANDS,
    signer: HrefSigner | None = None,
) -> xr.DataArray:
    """Surface reflectance of ``bands`` for each day: ``(time, band, y, x)`` float32.

    Parameters
    ----------
    scenes : sequence of S2Scene
        Normalised Sentinel-2 items (at least those of ``days``).
    days : sequence of S2Day
        The days to stack (from the planner); each day's scenes are mosaicked.
    where : CubeWindow
        Output pixels.
    bands : sequence of str
        lamap band names (``B02`` … ``B12``, ``B8A``).
    signer : callable, optional
        Signs hrefs (Planetary Computer) before reading.

    Returns
    -------
    xarray.DataArray
        Lazy; NaN where no scene has data. ``time`` carries ``sun_zenith``,
        ``sun_azimuth``, ``view_zenith`` and ``relative_azimuth`` coordinates (degrees),
        averaged over a day's scenes, and the ``boa_offset`` applied (DN).
    """
    used = _scenes_of(scenes, [d.item_ids for d in days])
    items = [s.stac_item(signer=signer) for s in used]
    dn = _stack(
        items, bands, where, dtype="float32", fill_value=np.nan, resampling=Resampling.bilinear
    )
    by_id = {s.id: s.boa_offset for s in used}
    # float32 throughout: DN + offset is exact in float32 and IEEE division is correctly
    # rounded, so this equals the float64 computation cast down, without float64 temporaries
    offsets = xr.DataArray(
        np.array([by_id[i] for i in dn["id"].values], dtype=np.float32), dims="time"
    )
    reflectance = ((dn + offsets) / np.float32(10000.0)).astype(np.float32)
    groups = [d.item_ids for d in days]
    mosaic = _mosaic_by(reflectance, groups, [d.day for d in days], np.nan)
    angles = {name: ("time", _step_coord(used, groups, name)) for name in STEP_COORDS}
    return mosaic.assign_coords(angles).assign_coords(band=list(bands)).rename("reflectance")


def scl_cube(
    scenes: Sequence[S2Scene],
    days: Sequence[S2Day],
    where: CubeWindow,
    *,
    signer: HrefSigner | None = None,
) -> xr.DataArray:
    """Scene classification of each day, nearest neighbour: ``(time, y, x)`` uint8.

    0 (SCL "no data") where no scene has data. Parameters as :func:`s2_cube`.
    """
    used = _scenes_of(scenes, [d.item_ids for d in days])
    items = [s.stac_item(signer=signer) for s in used]
    scl = _stack(
        items, ["SCL"], where, dtype="uint8", fill_value=0, resampling=Resampling.nearest
    ).isel(band=0, drop=True)
    mosaic = _mosaic_by(scl, [d.item_ids for d in days], [d.day for d in days], 0)
    return mosaic.rename("scl")


def s1_cube(
    scenes: Sequence[S1Scene],
    passes: Sequence[S1Pass],
    where: CubeWindow,
    *,
    signer: HrefSigner | None = None,
) -> xr.DataArray:
    """Sentinel-1 backscatter in dB for each pass: ``(time, band=[vv, vh], y, x)`` float32.

    Parameters
    ----------
    scenes : sequence of S1Scene
        Normalised Sentinel-1 RTC items (at least those of ``passes``).
    passes : sequence of S1Pass
        The passes to stack (a pass may repeat: it then fills several steps).
    where : CubeWindow
        Output pixels.
    signer : callable, optional
        Signs hrefs before reading.

    Returns
    -------
    xarray.DataArray
        Lazy; NaN outside the footprint and where gamma0 ≤ 0.
    """
    groups = [p.item_ids for p in passes]
    used = _scenes_of(scenes, groups)
    items = [s.stac_item(signer=signer) for s in used]
    gamma0 = _stack(
        items,
        ["vv", "vh"],
        where,
        dtype="float32",
        fill_value=np.nan,
        resampling=Resampling.bilinear,
    )
    positive: xr.DataArray = gamma0.where(gamma0 > 0)
    db = xr.DataArray(10.0 * np.log10(positive)).astype(np.float32)
    mosaic = _mosaic_by(db, groups, [p.datetime.replace(tzinfo=None) for p in passes], np.nan)
    return mosaic.assign_coords(band=["vv", "vh"]).rename("s1_db")


def _scenes_of(scenes: Sequence[SceneT], groups: Sequence[Sequence[str]]) -> list[SceneT]:
    wanted = list(dict.fromkeys(i for g in groups for i in g))
    found = select_scenes(scenes, wanted)
    if len(found) != len(wanted):
        missing = sorted(set(wanted) - {s.id for s in found})
        raise NoInputError(f"items {missing} were planned but are not among the searched scenes")
    return list(found)


@dataclass(frozen=True)
class TileCubes:
    """Everything the features of one tile and date are made from (all lazy).

    Attributes
    ----------
    steps : TimeSteps
        What the planner chose.
    where : CubeWindow
        The pixels covered.
    s2 : xarray.DataArray
        SNAP bands at t-2, t-1 ``(time=2, band, y, x)``.
    scl : xarray.DataArray
        SCL at t-2, t-1 ``(time=2, y, x)``.
    s1 : xarray.DataArray or None
        VV/VH dB at t-2, t-1, D ``(time=3, band, y, x)``; None when the plan has no steps.
    s2_now, scl_now : xarray.DataArray or None
        S2 bands and SCL at D where an acquisition exists (observed LAI, training target).
    s1_series : xarray.DataArray or None
        VV/VH dB of the series' passes ``(time, band, y, x)``, oldest first; None without.
    """

    steps: TimeSteps
    where: CubeWindow
    s2: xr.DataArray
    scl: xr.DataArray
    s1: xr.DataArray | None
    s2_now: xr.DataArray | None
    scl_now: xr.DataArray | None
    s1_series: xr.DataArray | None = None

    @property
    def date(self) -> dt.date:
        """The requested date D."""
        return self.steps.date


def tile_cubes(
    steps: TimeSteps,
    s2_scenes: Sequence[S2Scene],
    s1_scenes: Sequence[S1Scene],
    where: CubeWindow,
    *,
    signer: HrefSigner | None = None,
    with_observed: bool = True,
) -> TileCubes:
    """Build every cube one tile needs for one date, lazily.

    Parameters
    ----------
    steps : TimeSteps
        The planner's choice for this tile and date.
    s2_scenes, s1_scenes : sequence
        Normalised scenes from :func:`lamap.catalog.search`.
    where : CubeWindow
        Output pixels (tile plus halo).
    signer : callable, optional
        Signs hrefs before reading.
    with_observed : bool
        Also stack S2 at D when the planner found it.

    Returns
    -------
    TileCubes
    """
    past = [steps.t2, steps.t1]
    s2_now = scl_now = None
    if with_observed and steps.observed is not None:
        s2_now = s2_cube(s2_scenes, [steps.observed], where, signer=signer)
        scl_now = scl_cube(s2_scenes, [steps.observed], where, signer=signer)
    series = steps.s1_series
    return TileCubes(
        steps=steps,
        where=where,
        s2=s2_cube(s2_scenes, past, where, signer=signer),
        scl=scl_cube(s2_scenes, past, where, signer=signer),
        s1=s1_cube(s1_scenes, steps.s1, where, signer=signer) if steps.s1 else None,
        s2_now=s2_now,
        scl_now=scl_now,
        s1_series=s1_cube(s1_scenes, series, where, signer=signer) if series else None,
    )
