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
from functools import lru_cache
from typing import TypeVar, cast

import dask.array as da
import numpy as np
import shapely
import stackstac
import xarray as xr
from pyproj import Transformer
from rasterio.enums import Resampling

from lamap.catalog import S1Scene, S2Scene
from lamap.errors import InputError, NoInputError
from lamap.grid import Grid, Tile, Window
from lamap.readers import COVERED, GDAL_ENV, GROUPS, reader_for
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

    def lonlat_polygon(self) -> shapely.Polygon:
        """Return the window's outline in lon/lat (WGS 84), densified along its edges."""
        outline = shapely.segmentize(shapely.box(*self.bounds), self.grid.resolution * 64)
        to_lonlat = _to_lonlat(self.grid.crs)
        return shapely.transform(outline, lambda xy: np.column_stack(to_lonlat(*xy.T)))

    def coords(self) -> dict[str, np.ndarray]:
        """Pixel-centre ``y`` and ``x`` of the window, exactly as the grid defines them."""
        return {"y": self.grid.y_coords(self.window), "x": self.grid.x_coords(self.window)}


@lru_cache(maxsize=16)
def _to_lonlat(crs: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform  # type: ignore[no-any-return]


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
    if where.one_chunk:  # the reader warps an item's bands on one source grid together
        for item in items:
            found = cast(dict[str, dict[str, str]], item["assets"])
            GROUPS.add(where.bounds, [found[a]["href"] for a in assets if a in found])
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
        reader=reader_for(one_chunk=where.one_chunk, exact=where.exact),
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
    items = _items_to_read(used, [d.item_ids for d in days], where, signer)
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
    items = _items_to_read(used, [d.item_ids for d in days], where, signer)
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
    items = _items_to_read(used, groups, where, signer)
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


#: How far (degrees) a scene's footprint must reach beyond a window to hide the scenes under
#: it: about 700 m to 1.1 km, many pixels more than any warp kernel or footprint rounding.
COVER_MARGIN_DEG = 0.01


def _items_to_read(
    used: Sequence[S1Scene] | Sequence[S2Scene],
    groups: Sequence[Sequence[str]],
    where: CubeWindow,
    signer: HrefSigner | None,
) -> list[dict[str, object]]:
    """Return the STAC items whose pixels can show in the mosaics over ``where``.

    A group's mosaic shows its last item on top (:func:`_mosaic_by`). Below an item whose
    footprint of valid data covers the window (with :data:`COVER_MARGIN_DEG` to spare),
    nothing shows, so those items are not read; the mosaic is the same. On a continent most
    blocks lie inside every scene that overlaps them, and a day often has two (neighbouring
    MGRS tiles, adjacent S1 frames): this halves their reads. The day's angles still
    average all its scenes (:func:`_step_coord`).

    Items whose footprint covers the window itself (no margin) are recorded in
    :data:`COVERED`: their reader tries the warp without GDAL's nodata path, after checking
    the source pixels (so a footprint a little off costs one decode, never a value).
    """
    window = where.lonlat_polygon()
    area = window.buffer(COVER_MARGIN_DEG)
    by_id = {s.id: s for s in used}
    read: set[str] = set()
    for group in groups:
        for item_id in reversed(group):
            read.add(item_id)
            if by_id[item_id].footprint.covers(area):
                break
    items = []
    for scene in (s for s in used if s.id in read):
        item = scene.stac_item(signer=signer)
        if where.one_chunk and scene.footprint.covers(window):  # a hint: the reader checks
            COVERED.add(where.bounds, item)
        items.append(item)
    return items


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
    bands: Sequence[str] = SNAP_BANDS,
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
    bands : sequence of str
        The S2 bands to stack (the feature spec's ``s2_bands``).

    Returns
    -------
    TileCubes
    """
    past = [steps.t2, steps.t1]
    s2_now = scl_now = None
    if with_observed and steps.observed is not None:
        s2_now = s2_cube(s2_scenes, [steps.observed], where, bands=bands, signer=signer)
        scl_now = scl_cube(s2_scenes, [steps.observed], where, signer=signer)
    series = steps.s1_series
    return TileCubes(
        steps=steps,
        where=where,
        s2=s2_cube(s2_scenes, past, where, bands=bands, signer=signer),
        scl=scl_cube(s2_scenes, past, where, signer=signer),
        s1=s1_cube(s1_scenes, steps.s1, where, signer=signer) if steps.s1 else None,
        s2_now=s2_now,
        scl_now=scl_now,
        s1_series=s1_cube(s1_scenes, series, where, signer=signer) if series else None,
    )
