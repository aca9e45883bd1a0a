"""Reading a LAI store back out: Cloud-Optimized GeoTIFFs, quick-look PNGs and a summary.

- :func:`read_lai`: one date's ``lai`` over a lon/lat bbox, or over the mapped data of that
  date (:func:`mapped_window`), as a lazy DataArray with its CRS.
- :func:`export_cog`: the same plus the ``source`` flags as a two-band Cloud-Optimized
  GeoTIFF (float32, NaN nodata, Deflate with the floating-point predictor, average
  overviews), written by rioxarray, with a STAC Item beside it
  (:func:`lamap.output_stac.cog_item`). :mod:`lamap.export_zarr` writes an unsharded
  Zarr v2 copy for GDAL before 3.13, which cannot read the store's sharded Zarr v3.
- :func:`quicklook`: the same as a colour PNG with a legend (Pillow), downsampled to at
  most ``max_size`` pixels a side.
- :func:`info`: the grid, the dates, the tiles done per date and the model, as text.

Exports are for regions: GDAL's COG driver assembles the whole raster in memory before
writing it (about 4 bytes per pixel, twice), so export a continent by bbox, piece by piece,
or read the Zarr store directly.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

import lamap
from lamap._inputs import BBoxLike, as_date
from lamap.errors import ExportError, InputError
from lamap.grid import Window
from lamap.store import LAI_VALID_RANGE, DateLike, LaiStore, Source, StoreError
from lamap.store.schema import SOURCE_FILL

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

__all__ = [
    "LEGEND_MIN_HEIGHT",
    "LEGEND_WIDTH",
    "LAI_RAMP",
    "ExportError",
    "StoreLike",
    "export_cog",
    "info",
    "mapped_window",
    "open_store",
    "quicklook",
    "read_lai",
]

#: A store: its path or URL, or an open :class:`~lamap.store.LaiStore`.
StoreLike: TypeAlias = "str | os.PathLike[str] | LaiStore"

#: Width in pixels of the legend panel on the right of a quick-look.
LEGEND_WIDTH = 170
#: A quick-look is at least this tall, so the legend always fits.
LEGEND_MIN_HEIGHT = 240

#: GDAL COG creation options: floats compress best with the floating-point predictor;
#: overviews average LAI (GDAL skips the NaN nodata when averaging).
_COG_OPTIONS = {
    "compress": "DEFLATE",
    "predictor": "YES",
    "blocksize": 512,
    "overview_resampling": "AVERAGE",
    "bigtiff": "IF_SAFER",
}
#: LAI colour ramp (m2 m-2 -> RGB): bare soil brown to dense-canopy green.
_RAMP = (
    (0.0, (140, 81, 10)),
    (0.5, (216, 179, 101)),
    (1.5, (217, 240, 163)),
    (3.0, (120, 198, 121)),
    (4.5, (35, 132, 67)),
    (6.0, (0, 90, 50)),
    (8.0, (0, 45, 25)),
)
#: The quick-look's LAI colour ramp, also drawn by ``lamap view``'s tiles and legend.
LAI_RAMP = _RAMP
_NO_DATA_RGB = (210, 210, 210)
_TICKS = (0, 2, 4, 6, 8)



# --------------------------------------------------------------------------- reading


def _as_store(store: StoreLike) -> LaiStore:
    return store if isinstance(store, LaiStore) else LaiStore.open(store)


def _stored_date(store: LaiStore, date: DateLike) -> dt.date:
    """Return the date if the store holds it, else raise StoreError listing what it holds."""
    day, dates = as_date(date), store.dates
    if day not in dates:
        held = ", ".join(d.isoformat() for d in sorted(dates)) or "no date yet"
        raise StoreError(
            f"date {day} is not in the store {store.url}, which holds: {held}; pick one of "
            f"those with --date, or map {day} first with `lamap map --date {day}`"
        )
    return day


def mapped_window(store: LaiStore, day: dt.date) -> Window:
    """Return the smallest window holding every pixel of ``day`` with an estimate.

    That is where ``source`` is ``observed`` or ``filled``, inside the tiles done for the
    date; the tiles' window itself when none of their pixels has an estimate.

    Raises
    ------
    StoreError
        If no tile of the date is done.
    """
    tiles = _written_window(store, day)
    rows, cols = tiles.to_slices()
    source = store.dataset()["source"].isel(time=store.time_index(day), y=rows, x=cols)
    estimated = source.isin([int(Source.OBSERVED), int(Source.FILLED)])
    any_row = np.flatnonzero(estimated.any("x").values)
    any_col = np.flatnonzero(estimated.any("y").values)
    if not any_row.size:
        return tiles
    return Window(tiles.row_start + int(any_row[0]), tiles.row_start + int(any_row[-1]) + 1,
                  tiles.col_start + int(any_col[0]), tiles.col_start + int(any_col[-1]) + 1)


def _written_window(store: LaiStore, day: dt.date) -> Window:
    """Return the window enclosing every tile done for ``day``."""
    tiles = [store.grid.tile_from_id(tile_id) for tile_id in store.done_tiles(day)]
    if not tiles:
        raise StoreError(
            f"no tile of {day} is done in the store {store.url}: map it first with "
            f"`lamap map --date {day}`, or give --bbox to export the (empty) area anyway"
        )
    windows = [tile.window for tile in tiles]
    return Window(
        min(w.row_start for w in windows),
        max(w.row_stop for w in windows),
        min(w.col_start for w in windows),
        max(w.col_stop for w in windows),
    )


def open_store(store: StoreLike, **kwargs: Any) -> xr.Dataset:
    """Open a lamap store as a lazy :class:`xarray.Dataset` with its CRS set.

    The same as ``xr.open_zarr(path)``, plus the grid's CRS on every variable
    (``ds.rio.crs``, a ``spatial_ref`` coordinate) so rioxarray, odc-geo and GDAL-minded
    tools see the georeferencing at once.

    Parameters
    ----------
    store : str, path-like or LaiStore
        The store's path or fsspec URL.
    **kwargs
        Passed to :func:`xarray.open_zarr` (``chunks``...).

    Returns
    -------
    xarray.Dataset
        ``lai`` and ``source`` over ``(time, y, x)``, lazy (dask).

    Raises
    ------
    StoreError
        If there is no lamap store at ``store``.
    """
    opened = _as_store(store)
    ds = opened.dataset(**kwargs).rio.write_crs(opened.grid.crs)
    for name in ("lai", "source"):
        ds[name].attrs.update(_typed(ds[name]))
    return ds.rio.set_spatial_dims(x_dim="x", y_dim="y")


def _typed(variable: xr.DataArray) -> dict[str, Any]:
    """Return the attributes CF wants in the variable's own type, as NumPy values of it.

    A Zarr attribute is JSON, so ``flag_values`` read as Python ints (int64 in a netCDF
    file, an error for cf-checker on a uint8 variable); this types them back.
    """
    dtype = variable.dtype
    return {
        key: np.asarray(variable.attrs[key], dtype=dtype)
        if key == "flag_values" else dtype.type(variable.attrs[key])
        for key in ("flag_values", "valid_min", "valid_max")
        if key in variable.attrs
    }


def read_lai(store: StoreLike, date: DateLike, bbox: BBoxLike | None = None) -> xr.DataArray:
    """Return one date's LAI over a bbox (or the date's mapped tiles), lazily, with its CRS.

    Parameters
    ----------
    store : str, path-like or LaiStore
        The LAI store.
    date : date or str
        A date the store holds.
    bbox : str or sequence of float, optional
        ``W,S,E,N`` in degrees, projected to the store's CRS with densified edges and
        clipped to its grid; default: the smallest window holding every pixel of the date
        with an estimate (:func:`mapped_window`).

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 m2 m-2, NaN where nothing was estimated, with ``rio`` CRS and
        transform; pixels are the store's own (no resampling).

    Raises
    ------
    StoreError
        If there is no store, the date is not in it, or (without bbox) no tile is done.
    GridError
        If the bbox is invalid or outside the grid.
    """
    lai_store = _as_store(store)
    day = _stored_date(lai_store, date)
    return _lai_window(lai_store, day, _window(lai_store, day, bbox))


def _window(store: LaiStore, day: dt.date, bbox: BBoxLike | None) -> Window:
    """Return the window of a bbox, or of the date's mapped data."""
    return store.grid.window_for_bbox(bbox) if bbox is not None else mapped_window(store, day)


def _layer(store: LaiStore, day: dt.date, window: Window, name: str) -> xr.DataArray:
    """One date's variable over a window, lazily, with its descriptive attributes only."""
    rows, cols = window.to_slices()
    layer = store.dataset()[name].isel(time=store.time_index(day), y=rows, x=cols, drop=True)
    layer = layer.drop_vars("spatial_ref", errors="ignore")
    layer.attrs = {
        key: value
        for key, value in layer.attrs.items()
        if key in ("standard_name", "long_name", "units")
    }
    layer.attrs["date"] = day.isoformat()
    return layer


def _lai_window(store: LaiStore, day: dt.date, window: Window) -> xr.DataArray:
    lai = _layer(store, day, window, "lai").rio.write_crs(store.grid.crs)
    lai = lai.rio.write_transform(store.grid.window_transform(window))
    return lai.rio.write_nodata(np.nan, encoded=False)


# --------------------------------------------------------------------------- COG


def _tags(store: LaiStore, day: dt.date) -> dict[str, str]:
    model = store.attrs.get("lamap_model") or {}
    return {
        "DATE": day.isoformat(),
        "UNITS": "m2 m-2",
        "STANDARD_NAME": "leaf_area_index",
        "SOURCE": f"lamap {lamap.__version__} from {store.url}",
        "MODEL_SHA256": str(model.get("sha256", "unknown")),
        "SOURCE_FLAGS": "0=no_input 1=observed 2=filled (band 2; NaN: not mapped)",
    }


def _check_out(out: str | os.PathLike[str], suffixes: Sequence[str]) -> Path:
    path = Path(out)
    if not path.parent.is_dir():
        raise ExportError(f"the folder of {path} does not exist: create it first")
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path} should end with {' or '.join(suffixes)}")
    return path


def export_cog(
    store: StoreLike,
    out: str | os.PathLike[str],
    date: DateLike,
    bbox: BBoxLike | None = None,
) -> Path:
    """Write one date's LAI and source flags as a Cloud-Optimized GeoTIFF, and its STAC Item.

    Parameters
    ----------
    store : str, path-like or LaiStore
        The LAI store.
    out : path-like
        The ``.tif`` to write (replaced if it exists); its STAC Item goes beside it as
        ``.json`` (:func:`lamap.output_stac.cog_item`).
    date : date or str
        A date the store holds.
    bbox : str or sequence of float, optional
        ``W,S,E,N`` in degrees; default: the date's mapped data (see :func:`read_lai`).

    Returns
    -------
    pathlib.Path
        The written file in the store's CRS and pixels, nodata NaN: band 1 ``lai``
        (float32, m2 m-2), band 2 ``source`` (the flags 0 no_input, 1 observed, 2 filled
        as floats; NaN where never mapped); tags ``DATE``, ``UNITS``, ``MODEL_SHA256``,
        ``SOURCE_FLAGS``.

    Raises
    ------
    StoreError, GridError
        As :func:`read_lai`.
    ExportError
        If the file cannot be written.
    """
    from lamap.output_stac import cog_item, write_item

    lai_store = _as_store(store)
    path = _check_out(out, (".tif", ".tiff"))
    day = _stored_date(lai_store, date)
    window = _window(lai_store, day, bbox)
    bands = _cog_bands(lai_store, day, window)
    try:
        bands.rio.to_raster(
            path, driver="COG", dtype="float32", tags=_tags(lai_store, day), **_COG_OPTIONS
        )
    except OSError as err:  # rasterio's RasterioIOError is an OSError
        raise ExportError(f"cannot write the GeoTIFF {path}: {err}") from err
    item = cog_item(path, lai_store.grid, window, day, bands=_BANDS, store_url=lai_store.url)
    write_item(item, path)
    return path


#: The bands of an exported GeoTIFF, in order, and their descriptions.
_BANDS = {
    "lai": "leaf area index (m2 m-2), NaN where there is no estimate",
    "source": "source flags: 0 no_input, 1 observed, 2 filled; NaN where never mapped",
}


def _cog_bands(store: LaiStore, day: dt.date, window: Window) -> xr.DataArray:
    """``lai`` and ``source`` (as float32, NaN where never mapped) on a ``band`` axis."""
    lai = _lai_window(store, day, window)
    source = _layer(store, day, window, "source")
    flags = source.where(source != SOURCE_FILL).astype(np.float32)
    bands = xr.concat([lai, flags.assign_attrs(lai.attrs)], dim="band", join="exact")
    bands = bands.assign_coords(band=[1, 2])
    bands.attrs = {"long_name": tuple(_BANDS), "date": day.isoformat()}
    bands = bands.rio.write_crs(store.grid.crs)
    bands = bands.rio.write_transform(store.grid.window_transform(window))
    return bands.rio.write_nodata(np.nan, encoded=False)


# --------------------------------------------------------------------------- quick-look


def _thumbnail(lai: xr.DataArray, max_size: int) -> np.ndarray:
    """Return the values, averaged (NaN-aware) by a whole factor to at most ``max_size``."""
    factor = math.ceil(max(lai.shape) / max_size)
    if factor > 1:
        lai = lai.coarsen(y=factor, x=factor, boundary="pad").mean()
    return np.asarray(lai.values, dtype=np.float32)


def _colourise(values: np.ndarray) -> np.ndarray:
    """Map LAI to RGB (uint8) along the ramp; NaN becomes light grey."""
    stops = np.array([stop for stop, _ in _RAMP])
    colours = np.array([rgb for _, rgb in _RAMP], dtype=np.float64)
    clipped = np.clip(np.nan_to_num(values, nan=0.0), *LAI_VALID_RANGE)
    rgb = np.stack([np.interp(clipped, stops, colours[:, band]) for band in range(3)], axis=-1)
    rgb[np.isnan(values)] = _NO_DATA_RGB
    return np.round(rgb).astype(np.uint8)


def _legend(draw: ImageDraw.ImageDraw, left: int, title: str) -> None:
    """Draw the title, colour bar with ticks, units and the no-data swatch."""
    low, high = LAI_VALID_RANGE
    top, height, width = 40, 150, 18
    draw.text((left, 8), title, fill=(0, 0, 0))
    for row in range(height):
        value = high - (high - low) * row / (height - 1)
        colour = tuple(int(c) for c in _colourise(np.array([value]))[0])
        draw.line([(left, top + row), (left + width, top + row)], fill=colour)
    draw.rectangle([left, top, left + width, top + height - 1], outline=(0, 0, 0))
    for tick in _TICKS:
        y = top + round((high - tick) / (high - low) * (height - 1))
        draw.line([(left + width, y), (left + width + 4, y)], fill=(0, 0, 0))
        draw.text((left + width + 7, y - 6), str(tick), fill=(0, 0, 0))
    draw.text((left + width + 30, top + height // 2 - 6), "m2 m-2", fill=(0, 0, 0))
    swatch = top + height + 14
    draw.rectangle([left, swatch, left + width, swatch + 12], fill=_NO_DATA_RGB, outline=(0, 0, 0))
    draw.text((left + width + 7, swatch), "no estimate", fill=(0, 0, 0))


def _compose(values: np.ndarray, title: str) -> Image.Image:
    """Return the quick-look image: the map, and the legend panel on its right."""
    from PIL import Image, ImageDraw

    rows, cols = values.shape
    canvas = Image.new("RGB", (cols + LEGEND_WIDTH, max(rows, LEGEND_MIN_HEIGHT)), "white")
    canvas.paste(Image.fromarray(_colourise(values), mode="RGB"), (0, 0))
    _legend(ImageDraw.Draw(canvas), cols + 12, title)
    return canvas


def quicklook(
    store: StoreLike,
    out: str | os.PathLike[str],
    date: DateLike,
    bbox: BBoxLike | None = None,
    *,
    max_size: int = 1024,
) -> Path:
    """Write one date's LAI as a colour PNG with a legend, for a quick look.

    The image is the map (north up, one PNG pixel per store pixel, or the NaN-aware mean of
    ``f x f`` store pixels with the smallest whole ``f`` that fits ``max_size``), then a
    legend panel :data:`LEGEND_WIDTH` pixels wide; it is at least
    :data:`LEGEND_MIN_HEIGHT` pixels tall. Colours run from brown (LAI 0) to dark green
    (LAI 8); grey marks pixels without an estimate.

    Parameters
    ----------
    store : str, path-like or LaiStore
        The LAI store.
    out : path-like
        The ``.png`` to write (replaced if it exists).
    date : date or str
        A date the store holds.
    bbox : str or sequence of float, optional
        ``W,S,E,N`` in degrees; default: the tiles mapped for the date.
    max_size : int
        Longest edge of the map part, in pixels.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    StoreError, GridError
        As :func:`read_lai`.
    InputError
        If ``max_size`` is smaller than 16.
    ExportError
        If the file cannot be written.
    """
    if max_size < 16:
        raise InputError(f"max_size must be at least 16 pixels, got {max_size}")
    path = _check_out(out, (".png",))
    lai = read_lai(store, date, bbox)
    image = _compose(_thumbnail(lai, max_size), f"LAI {lai.attrs['date']}")
    try:
        image.save(path, format="PNG")
    except OSError as err:
        raise ExportError(f"cannot write the PNG {path}: {err}") from err
    return path


# --------------------------------------------------------------------------- info


def _grid_lines(store: LaiStore) -> list[str]:
    grid = store.grid
    west, south, east, north = grid.lonlat_extent()
    rows, cols = grid.tiles_shape
    return [
        str(grid),
        f"  CRS {grid.crs_label}, resolution {grid.resolution:g} m, shape {grid.shape[0]} rows "
        f"x {grid.shape[1]} cols, {rows} x {cols} tiles",
        f"  lon/lat extent {west:.4f},{south:.4f},{east:.4f},{north:.4f}",
    ]


def _model_text(model: Mapping[str, Any] | None) -> str:
    if not model:
        return "unknown"
    name = model.get("id") or Path(str(model.get("path", "?"))).name
    return (
        f"{name} (sha256 {model.get('sha256', '?')}, lamap {model.get('lamap_version', '?')}, "
        f"path {model.get('path', '?')})"
    )


def _inputs_text(inputs: Mapping[str, Any]) -> str:
    parts = [
        f"{sensor} days {', '.join(entry.get('days', []))} ({entry.get('items', 0)} items)"
        for sensor, entry in sorted(inputs.items())
    ]
    return "; ".join(parts) or "none recorded"


def _date_lines(store: LaiStore) -> list[str]:
    summaries = store.attrs.get("lamap_dates") or {}
    dates = store.dates
    lines = [f"dates: {len(dates)} (in chronological order)"]
    for day in dates:
        summary = summaries.get(day.isoformat())
        done, failed = len(store.done_tiles(day)), store.failed_tiles(day)
        empty = store.no_input_tiles(day)
        lines.append(f"  {day}: {done} of {store.grid.n_tiles} tiles done"
                     + (f", {len(failed)} failed (rerun lamap map to retry)" if failed else "")
                     + (f", {len(empty)} without input (planned again by the next run)"
                        if empty else ""))
        lines += [f"    {tile_id} failed: {why}" for tile_id, why in list(failed.items())[:10]]
        if summary is None:
            lines.append("    no run summary: a run of this date did not finish")
            continue
        lines.append(f"    inputs: {_inputs_text(summary.get('inputs') or {})}")
        lines.append(f"    model: {_model_text(summary.get('model'))}")
    return lines


def info(store: StoreLike) -> str:
    """Describe a store: grid, dates, tiles done per date, model.

    Parameters
    ----------
    store : str, path-like or LaiStore
        The LAI store.

    Returns
    -------
    str
        Several lines of text, for people (the attributes hold the same as JSON).

    Raises
    ------
    StoreError
        If there is no lamap store at ``store``.
    """
    lai_store = _as_store(store)
    attrs = lai_store.attrs
    head = [
        f"lamap store {lai_store.url}",
        f"  layout {attrs.get('lamap_store_layout')}, written by lamap "
        f"{attrs.get('lamap_version', '?')}",
    ]
    model = [f"model (last run): {_model_text(attrs.get('lamap_model'))}"]
    return "\n".join(head + _grid_lines(lai_store) + _date_lines(lai_store) + model)
