"""STAC for lamap's output: a Collection beside each store, an Item beside each COG export.

- :func:`store_collection` describes a store as a STAC 1.1.0 Collection with the
  `datacube <https://github.com/stac-extensions/datacube>`_ extension (``cube:dimensions``
  ``time``/``y``/``x`` with the grid's CRS, extent and step; ``cube:variables`` ``lai`` and
  ``source``) and the `xarray-assets <https://github.com/stac-extensions/xarray-assets>`_
  extension on its Zarr asset (``xarray:open_kwargs``), so that ``xpystac``/odc-stac users
  open it in one call. Its extent is the mapped area and dates, and :func:`write_collection`
  (called at the end of every ``lamap map`` run) rewrites it atomically.
- :func:`cog_item` describes one exported GeoTIFF as a STAC Item (projection and raster
  extensions), written next to it by :func:`write_item`.

Where: the store ``…/lai.zarr`` gets ``…/lai.collection.json`` (outside the store, so Zarr
never meets a foreign object); ``lai.tif`` gets ``lai.json``. Hrefs are relative.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lamap
from lamap.grid import Grid, Window
from lamap.runtime.atomic import write_atomic
from lamap.store import LAI_VALID_RANGE, LaiStore, Source
from lamap.store.schema import SOURCE_FILL

__all__ = [
    "DATACUBE",
    "PROJECTION",
    "RASTER",
    "STAC_VERSION",
    "XARRAY_ASSETS",
    "cog_item",
    "collection_url",
    "store_collection",
    "write_collection",
    "write_item",
]

STAC_VERSION = "1.1.0"
DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
XARRAY_ASSETS = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"
PROJECTION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
_ZARR_TYPE = "application/vnd+zarr"
_COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_SOURCE_MEANINGS = {int(flag): flag.name.lower() for flag in Source} | {SOURCE_FILL: "not_mapped"}


# --------------------------------------------------------------------------- the store


def collection_url(store_url: str) -> str:
    """Return where a store's Collection lives: ``lai.zarr`` → ``lai.collection.json``."""
    folder, name = posixpath.split(store_url.rstrip("/"))
    stem = name[: -len(".zarr")] if name.endswith(".zarr") else name
    return posixpath.join(folder, f"{stem}.collection.json")


def _stamp(day: dt.date, end: bool = False) -> str:
    return f"{day.isoformat()}T{'23:59:59' if end else '00:00:00'}Z"


def _reference_system(grid: Grid) -> int | str:
    return grid.epsg if grid.epsg is not None else grid.pyproj_crs.to_wkt()


def _dimensions(grid: Grid, dates: Sequence[dt.date]) -> dict[str, Any]:
    xmin, ymin, xmax, ymax = grid.window_bounds(grid.window)
    half, reference = grid.resolution / 2, _reference_system(grid)
    return {
        "time": {
            "type": "temporal",
            "extent": [_stamp(dates[0]), _stamp(dates[-1])] if dates else [None, None],
            "values": [_stamp(day) for day in dates],
            "description": "mapped dates (one LAI map per date)",
        },
        "y": {"type": "spatial", "axis": "y", "extent": [ymin + half, ymax - half],
              "step": -grid.resolution, "reference_system": reference,
              "description": "pixel centres, north to south"},
        "x": {"type": "spatial", "axis": "x", "extent": [xmin + half, xmax - half],
              "step": grid.resolution, "reference_system": reference,
              "description": "pixel centres, west to east"},
    }  # fmt: skip


def _variables() -> dict[str, Any]:
    flags = ", ".join(f"{value} {name}" for value, name in _SOURCE_MEANINGS.items())
    return {
        "lai": {
            "type": "data", "dimensions": ["time", "y", "x"], "unit": "m2 m-2",
            "description": "leaf area index (one-sided green leaf area per unit ground area), "
                           "NaN where there is no estimate",
            "extent": list(LAI_VALID_RANGE), "nodata": "nan", "data_type": "float32",
        },
        "lai_sd": {
            "type": "auxiliary", "dimensions": ["time", "y", "x"], "unit": "m2 m-2",
            "description": "standard error of lai (one standard deviation), NaN where unknown",
            "nodata": "nan", "data_type": "float32",
        },
        "source": {
            "type": "auxiliary", "dimensions": ["time", "y", "x"],
            "description": f"where each LAI value comes from: {flags}",
            "values": sorted(_SOURCE_MEANINGS), "nodata": SOURCE_FILL, "data_type": "uint8",
        },
    }  # fmt: skip


def _mapped_bbox(store: LaiStore, dates: Sequence[dt.date]) -> list[float]:
    """Lon/lat envelope of every tile done, any date (the grid's extent if none)."""
    tiles = {tile for day in dates for tile in store.done_tiles(day)}
    grid = store.grid
    if not tiles:
        return list(grid.lonlat_extent())
    windows = [grid.tile_from_id(tile).window for tile in tiles]
    union = Window(min(w.row_start for w in windows), max(w.row_stop for w in windows),
                   min(w.col_start for w in windows), max(w.col_stop for w in windows))  # fmt: skip
    return [round(v, 7) for v in grid.bounds_to_lonlat(grid.window_bounds(union)).to_tuple()]


def store_collection(store: LaiStore) -> dict[str, Any]:
    """Return the STAC Collection of a store (datacube + xarray-assets extensions).

    Parameters
    ----------
    store : LaiStore
        The store.

    Returns
    -------
    dict
        A STAC 1.1.0 Collection; its asset ``zarr`` points to the store (relative href).
    """
    attrs, dates = store.attrs, sorted(store.dates)
    name = posixpath.basename(store.url.rstrip("/"))
    interval = [_stamp(dates[0]), _stamp(dates[-1], end=True)] if dates else [None, None]
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [DATACUBE, XARRAY_ASSETS],
        "id": f"lamap-lai-{name.removesuffix('.zarr')}",
        "title": str(attrs.get("title", "Leaf area index")),
        "description": f"Leaf area index maps made by lamap {lamap.__version__} from "
        "Sentinel-1 and Sentinel-2 time series, one map per date, in one Zarr store.",
        "license": "other",
        "keywords": ["leaf area index", "LAI", "Sentinel-1", "Sentinel-2", "vegetation"],
        "providers": [{"name": "lamap", "roles": ["processor"]}],
        "extent": {"spatial": {"bbox": [_mapped_bbox(store, dates)]},
                   "temporal": {"interval": [interval]}},
        "cube:dimensions": _dimensions(store.grid, dates),
        "cube:variables": _variables(),
        "assets": {"zarr": {
            "href": f"./{name}", "type": _ZARR_TYPE, "roles": ["data", "zarr"],
            "title": "the LAI store (Zarr v3, consolidated metadata)",
            # no xarray:storage_options: they may hold credentials, and readers have theirs
            "xarray:open_kwargs": {"engine": "zarr", "consolidated": True, "chunks": {}},
        }},
        "links": [],
        "summaries": {"lamap:grid": [store.grid.to_dict()]},
    }  # fmt: skip


def write_collection(store: LaiStore) -> str:
    """Write (replace, atomically) the store's Collection beside it; return its URL."""
    url = collection_url(store.url)
    document = json.dumps(store_collection(store), indent=1).encode()
    write_atomic(url, document, storage_options=store.storage_options)
    return url


# --------------------------------------------------------------------------- a COG export


def cog_item(
    path: str | os.PathLike[str],
    grid: Grid,
    window: Window,
    day: dt.date,
    *,
    bands: Mapping[str, str],
    store_url: str | None = None,
) -> dict[str, Any]:
    """Return the STAC Item of an exported GeoTIFF.

    Parameters
    ----------
    path : path-like
        The GeoTIFF (its name becomes the asset's relative href).
    grid : Grid
        The store's grid.
    window : Window
        The exported pixels.
    day : datetime.date
        The date mapped.
    bands : mapping
        Band name → description, in band order.
    store_url : str, optional
        The store it came from (a ``derived_from`` link to its Collection).

    Returns
    -------
    dict
        A STAC 1.1.0 Item with the projection and raster extensions.
    """
    name = Path(path).name
    west, south, east, north = grid.bounds_to_lonlat(grid.window_bounds(window)).to_tuple()
    bbox = [round(v, 7) for v in (west, south, east, north)]
    ring = [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]],
            [bbox[0], bbox[1]]]  # fmt: skip
    links = [] if store_url is None else [{
        "rel": "derived_from", "href": collection_url(store_url), "type": "application/json",
        "title": "the LAI store's STAC Collection",
    }]  # fmt: skip
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJECTION, RASTER],
        "id": f"lamap-lai-{Path(path).stem}-{day.isoformat()}",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": bbox,
        "properties": {
            "datetime": _stamp(day),
            "proj:epsg": grid.epsg,
            **({} if grid.epsg else {"proj:wkt2": grid.pyproj_crs.to_wkt()}),
            "proj:shape": [window.height, window.width],
            "proj:transform": list(grid.window_transform(window))[:6],
            "lamap:version": lamap.__version__,
        },
        "assets": {"data": {
            "href": f"./{name}", "type": _COG_TYPE, "roles": ["data"],
            "title": f"leaf area index on {day.isoformat()}",
            "raster:bands": [_band(key, text) for key, text in bands.items()],
        }},
        "links": links,
    }  # fmt: skip


def _band(name: str, description: str) -> dict[str, Any]:
    """Return a ``raster:bands`` entry: float32, NaN nodata, LAI's unit."""
    band: dict[str, Any] = {"name": name, "description": description, "data_type": "float32",
                            "nodata": "nan"}  # fmt: skip
    if name == "lai":
        band["unit"] = "m2 m-2"
    return band


def write_item(item: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write an Item as JSON next to its GeoTIFF (``lai.tif`` → ``lai.json``)."""
    target = Path(path).with_suffix(".json")
    write_atomic(target, json.dumps(item, indent=1).encode())
    return target
