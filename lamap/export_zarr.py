"""An unsharded Zarr v2 copy of a store, for GDAL before 3.13 (QGIS, ``gdal_translate``).

The store is Zarr v3 with sharding, which GDAL reads only from 3.13 on (older versions stop
at ``Unsupported codec: sharding_indexed``). :func:`export_zarr` writes the chosen dates
and area as Zarr v2: the same variables, attributes and coordinates, ``(1, chunk, chunk)``
chunks compressed with zlib (every GDAL build has it), ``lai`` filled with NaN and
``source`` with 255 (``not_mapped``), consolidated metadata, and the CRS both as CF's
``grid_mapping`` and as GDAL's own ``_CRS`` attribute. GDAL then opens
``ZARR:"lai_v2.zarr":/lai`` with the CRS, the geotransform, the nodata value and one band
per date.

The copy is written into a temporary folder beside ``out`` and renamed into place, so an
interrupted export leaves no half store at ``out``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from lamap._inputs import BBoxLike, as_date
from lamap.errors import ExportError, InputError, StoreError
from lamap.export import StoreLike, mapped_window
from lamap.grid import Window
from lamap.store import DateLike, LaiStore
from lamap.store.schema import SOURCE_FILL

__all__ = ["export_zarr"]
#: The data variables a v2 copy holds (those the store has).
_DATA = ("lai", "lai_sd", "source")


def _as_store(store: StoreLike) -> LaiStore:
    return store if isinstance(store, LaiStore) else LaiStore.open(store)


def _days(store: LaiStore, dates: Sequence[DateLike] | None) -> list[dt.date]:
    held = store.dates
    days = sorted({as_date(d) for d in dates}) if dates else sorted(held)
    missing = [day.isoformat() for day in days if day not in held]
    if missing or not days:
        listed = ", ".join(day.isoformat() for day in sorted(held)) or "no date yet"
        raise StoreError(
            f"the store {store.url} does not hold {', '.join(missing) or 'any date'} (it "
            f"holds: {listed}): pick dates it holds, or map them first with `lamap map`"
        )
    return days


def _extent(store: LaiStore, days: Sequence[dt.date], bbox: BBoxLike | None) -> Window:
    """Return the bbox's window, or the union of the dates' mapped data."""
    if bbox is not None:
        return store.grid.window_for_bbox(bbox)
    windows = []
    for day in days:
        try:
            windows.append(mapped_window(store, day))
        except StoreError:
            continue  # a date with no tile done adds no extent
    if not windows:
        raise StoreError(
            f"no tile of {', '.join(d.isoformat() for d in days)} is done in the store "
            f"{store.url}: map them first, or give --bbox to export the (empty) area anyway"
        )
    return Window(min(w.row_start for w in windows), max(w.row_stop for w in windows),
                  min(w.col_start for w in windows), max(w.col_stop for w in windows))  # fmt: skip


def _subset(store: LaiStore, days: Sequence[dt.date], window: Window) -> xr.Dataset:
    rows, cols = window.to_slices()
    full = store.dataset()
    names = [name for name in _DATA if name in full]  # lai_sd: not in stores before it
    ds = full[names].isel(time=[store.time_index(day) for day in days], y=rows, x=cols)
    crs = {"wkt": store.grid.pyproj_crs.to_wkt(), "url": _crs_url(store)}
    for name in (*names, "x", "y", "time", "spatial_ref"):
        ds[name].encoding = {}
    for name in names:
        ds[name].attrs["_CRS"] = {key: value for key, value in crs.items() if value}
    chunk = store.grid.chunk
    return ds.chunk({"time": 1, "y": chunk, "x": chunk})


def _crs_url(store: LaiStore) -> str | None:
    epsg = store.grid.epsg
    return f"http://www.opengis.net/def/crs/EPSG/0/{epsg}" if epsg else None


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, object]]:
    from numcodecs import Zlib

    chunks = tuple(ds["lai"].data.chunksize)
    fills = {"lai": np.nan, "lai_sd": np.nan, "source": np.uint8(SOURCE_FILL)}
    return {str(name): {"chunks": chunks, "compressors": (Zlib(level=6),),
                        "_FillValue": fills[str(name)]} for name in ds.data_vars}  # fmt: skip


def _check_target(out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    if path.suffix.lower() != ".zarr":
        raise InputError(f"{path} should end with .zarr (a Zarr v2 folder)")
    if not path.parent.is_dir():
        raise ExportError(f"the folder of {path} does not exist: create it first")
    if path.exists() and not (path / ".zgroup").exists():
        raise ExportError(
            f"{path} exists and is not a Zarr v2 export: refusing to replace it; choose "
            "another --out or remove it"
        )
    return path


def export_zarr(
    store: StoreLike,
    out: str | os.PathLike[str],
    *,
    dates: Sequence[DateLike] | None = None,
    bbox: BBoxLike | None = None,
) -> Path:
    """Write dates of a store as an unsharded Zarr v2 store that GDAL 3.4 and later read.

    Parameters
    ----------
    store : str, path-like or LaiStore
        The LAI store.
    out : path-like
        A local ``.zarr`` folder; an earlier export there is replaced.
    dates : sequence of date or str, optional
        Dates to copy (default: all), written in time order.
    bbox : str or sequence of float, optional
        ``W,S,E,N`` in degrees; default: the union of the dates' mapped data
        (:func:`lamap.export.mapped_window`).

    Returns
    -------
    pathlib.Path
        The export: ``lai`` (float32, NaN nodata) and ``source`` (uint8, 255 nodata) over
        ``(time, y, x)``, with the store's attributes and CRS.

    Raises
    ------
    StoreError
        If a date is not in the store, or none of them has a tile done (without bbox).
    ExportError
        If ``out`` cannot be written, or holds something else than an earlier export.
    """
    lai_store = _as_store(store)
    path = _check_target(out)
    days = _days(lai_store, dates)
    subset = _subset(lai_store, days, _extent(lai_store, days, bbox))
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        subset.to_zarr(partial, mode="w", zarr_format=2, consolidated=True,
                       encoding=_encoding(subset))  # fmt: skip
        _replace(partial, path)
    except OSError as err:
        raise ExportError(f"cannot write the Zarr export {path}: {err}") from err
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return path


def _replace(partial: Path, path: Path) -> None:
    """Move the finished export into place; an earlier one goes only once this one is whole."""
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
    if path.exists():
        path.rename(old)
    partial.rename(path)
    shutil.rmtree(old, ignore_errors=True)
