"""lamap: Leaf Area Index maps at 10 m from Sentinel-1 and Sentinel-2 time series.

The public API mirrors the command line::

    import lamap

    report = lamap.map_lai("9.0,47.6,9.2,47.7", "2024-05-20", "lai.zarr", grid="utm32n")
    ds = lamap.open_store("lai.zarr")           # xarray, CRS set (rioxarray)
    ds.lai.sel(time="2024-05-20")

Names are imported on first use, so ``import lamap`` stays light (no torch, no dask).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("lamap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

#: Public name -> the module that defines it.
_EXPORTS = {
    "map_lai": "lamap.mapping",
    "plan_map": "lamap.mapping",
    "MapOptions": "lamap.mapping",
    "MapReport": "lamap.mapping",
    "open_store": "lamap.export",
    "read_lai": "lamap.export",
    "export_cog": "lamap.export",
    "export_zarr": "lamap.export_zarr",
    "store_collection": "lamap.output_stac",
    "quicklook": "lamap.export",
    "info": "lamap.export",
    "LaiStore": "lamap.store",
    "Grid": "lamap.grid",
    "Tile": "lamap.grid",
    "get_grid": "lamap.grid",
    "BBox": "lamap._inputs",
    "as_bbox": "lamap._inputs",
    "as_date": "lamap._inputs",
    "ClusterSpec": "lamap.runtime",
    "open_catalog": "lamap.catalog",
    "search": "lamap.catalog",
    "FeatureSpec": "lamap.features",
    "LamapError": "lamap.errors",
    "InputError": "lamap.errors",
    "LamapWarning": "lamap.errors",
}

__all__ = [
    "__version__",
    "BBox",
    "ClusterSpec",
    "FeatureSpec",
    "Grid",
    "InputError",
    "LaiStore",
    "LamapError",
    "LamapWarning",
    "MapOptions",
    "MapReport",
    "Tile",
    "as_bbox",
    "as_date",
    "export_cog",
    "export_zarr",
    "get_grid",
    "info",
    "map_lai",
    "open_catalog",
    "open_store",
    "plan_map",
    "quicklook",
    "read_lai",
    "search",
    "store_collection",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lamap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from lamap._inputs import BBox, as_bbox, as_date
    from lamap.catalog import open_catalog, search
    from lamap.errors import InputError, LamapError, LamapWarning
    from lamap.export import export_cog, info, open_store, quicklook, read_lai
    from lamap.export_zarr import export_zarr
    from lamap.features import FeatureSpec
    from lamap.grid import Grid, Tile, get_grid
    from lamap.mapping import MapOptions, MapReport, map_lai, plan_map
    from lamap.output_stac import store_collection
    from lamap.runtime import ClusterSpec
    from lamap.store import LaiStore
