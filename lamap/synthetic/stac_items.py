"""STAC items and collections for the synthetic world, shaped like Planetary Computer's.

Asset keys, properties and their quirks follow Planetary Computer's ``sentinel-2-l2a`` and
``sentinel-1-rtc`` (compare ``tests/data/stac``): S2 band assets carry ``proj:bbox``,
``proj:shape`` and ``proj:transform`` per resolution and ``eo:bands``, item properties
``s2:processing_baseline`` and the mean solar angles (no view angles); S1 RTC items keep
``proj:*`` in item properties with a 9-element transform, ``start_datetime`` written with a
space, and ``raster:bands`` with nodata −32768. Every item also says
``"lamap:synthetic": true``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from affine import Affine
from shapely.geometry import Polygon

from lamap.synthetic.geometry import ProductGrid, geojson
from lamap.synthetic.schedule import S1Acquisition, S2Acquisition

__all__ = [
    "S2_BAND_INFO",
    "s1_collection",
    "s1_item",
    "s2_collection",
    "s2_item",
]

STAC_VERSION = "1.0.0"
S2_COLLECTION = "sentinel-2-l2a"
S1_COLLECTION = "sentinel-1-rtc"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PROCESSING_BASELINE = "05.10"

#: band -> (resolution m, common name, description, centre µm, FWHM µm)
S2_BAND_INFO: dict[str, tuple[int, str, str, float, float]] = {
    "B02": (10, "blue", "Band 2 - Blue", 0.49, 0.098),
    "B03": (10, "green", "Band 3 - Green", 0.56, 0.045),
    "B04": (10, "red", "Band 4 - Red", 0.665, 0.038),
    "B05": (20, "rededge", "Band 5 - Vegetation red edge 1", 0.704, 0.019),
    "B06": (20, "rededge", "Band 6 - Vegetation red edge 2", 0.74, 0.018),
    "B07": (20, "rededge", "Band 7 - Vegetation red edge 3", 0.783, 0.028),
    "B08": (10, "nir", "Band 8 - NIR", 0.842, 0.145),
    "B8A": (20, "rededge", "Band 8A - Vegetation red edge 4", 0.865, 0.033),
    "B11": (20, "swir16", "Band 11 - SWIR (1.6)", 1.61, 0.143),
    "B12": (20, "swir22", "Band 12 - SWIR (2.2)", 2.19, 0.242),
}

S2_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
]
S1_EXTENSIONS = [
    "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%S")


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _links(collection: str, item_id: str) -> list[dict[str, str]]:
    """Return the item's links; it is written to ``stac/items/<collection>/<id>.json``.

    The collection link is relative to that file: ``stac/collections/<collection>.json``.
    """
    return [
        {"rel": "collection", "type": "application/json",
         "href": f"../../collections/{collection}.json"},
        {
            "rel": "license",
            "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
        },
    ]


def s2_item_id(acq: S2Acquisition, grid: ProductGrid) -> str:
    """Planetary-Computer-style Sentinel-2 L2A item id."""
    sat = "S2A" if acq.platform.endswith("A") else "S2B"
    processed = acq.time + dt.timedelta(hours=5)
    orbit = f"R{acq.relative_orbit:03d}"
    return f"{sat}_MSIL2A_{_stamp(acq.time)}_{orbit}_T{grid.name}_{_stamp(processed)}"


def _grid_fields(grid: ProductGrid, resolution: int) -> dict[str, Any]:
    transform: Affine = grid.transform_at(resolution)
    return {
        "proj:bbox": list(grid.bounds),
        "proj:shape": list(grid.shape_at(resolution)),
        "proj:transform": [
            transform.a,
            transform.b,
            transform.c,
            transform.d,
            transform.e,
            transform.f,
        ],
        "gsd": float(resolution),
    }


def s2_item(
    acq: S2Acquisition,
    grid: ProductGrid,
    footprint: Polygon,
    hrefs: dict[str, str],
    properties: dict[str, Any],
) -> dict[str, Any]:
    """One ``sentinel-2-l2a`` item.

    Parameters
    ----------
    acq : S2Acquisition
        The datatake.
    grid : ProductGrid
        The product's UTM grid.
    footprint : shapely.geometry.Polygon
        Lon/lat footprint of valid data.
    hrefs : dict
        Asset key (``B02`` … ``B12``, ``SCL``) → file path.
    properties : dict
        Scene statistics and solar angles (``eo:cloud_cover``, ``s2:*_percentage``,
        ``s2:mean_solar_zenith``/``azimuth``).

    Returns
    -------
    dict
        The item as a JSON-ready dict.
    """
    item_id = s2_item_id(acq, grid)
    assets: dict[str, Any] = {}
    for band, (res, common, description, centre, fwhm) in S2_BAND_INFO.items():
        assets[band] = {
            "href": hrefs[band],
            **_grid_fields(grid, res),
            "type": COG_TYPE,
            "roles": ["data"],
            "title": f"{description} - {res}m",
            "eo:bands": [
                {
                    "name": band,
                    "common_name": common,
                    "description": description,
                    "center_wavelength": centre,
                    "full_width_half_max": fwhm,
                }
            ],
        }
    assets["SCL"] = {
        "href": hrefs["SCL"],
        **_grid_fields(grid, 20),
        "type": COG_TYPE,
        "roles": ["data"],
        "title": "Scene classfication map (SCL)",
    }
    sat = item_id[:3]
    baseline = PROCESSING_BASELINE.replace(".", "")
    props = {
        "datetime": _iso(acq.time),
        "platform": acq.platform,
        "proj:epsg": grid.epsg,
        "instruments": ["msi"],
        "s2:mgrs_tile": grid.name,
        "constellation": "Sentinel 2",
        "s2:product_uri": f"{item_id[:26]}_N{baseline}_{item_id[27:]}.SAFE",
        "s2:product_type": "S2MSI2A",
        "sat:orbit_state": "descending",
        "s2:datatake_id": f"G{sat}_{_stamp(acq.time)}_000000_N{PROCESSING_BASELINE}",
        "sat:relative_orbit": acq.relative_orbit,
        "s2:processing_baseline": PROCESSING_BASELINE,
        **properties,
        "lamap:synthetic": True,
    }
    return _feature(item_id, S2_COLLECTION, footprint, props, assets, S2_EXTENSIONS)


def s1_item_id(acq: S1Acquisition) -> str:
    """Planetary-Computer-style Sentinel-1 RTC item id."""
    end = acq.time + dt.timedelta(seconds=25)
    return (
        f"S1A_IW_GRDH_1SDV_{_stamp(acq.time)}_{_stamp(end)}_{acq.absolute_orbit:06d}_"
        f"{acq.absolute_orbit % 0xFFFFFF:06X}_rtc"
    )


def s1_item(
    acq: S1Acquisition, grid: ProductGrid, footprint: Polygon, hrefs: dict[str, str]
) -> dict[str, Any]:
    """One ``sentinel-1-rtc`` item (VV and VH gamma0, linear power, float32).

    Parameters
    ----------
    acq : S1Acquisition
        The pass.
    grid : ProductGrid
        The product's UTM grid (10 m).
    footprint : shapely.geometry.Polygon
        Lon/lat footprint of valid data.
    hrefs : dict
        ``{"vv": path, "vh": path}``.

    Returns
    -------
    dict
        The item as a JSON-ready dict.
    """
    end = acq.time + dt.timedelta(seconds=25)
    rows, cols = grid.shape
    t = grid.transform_at(10)
    props = {
        "datetime": _iso(acq.time + dt.timedelta(seconds=12.5)),
        "platform": "SENTINEL-1A",
        "s1:shape": [cols, rows],
        "proj:bbox": list(grid.bounds),
        "proj:epsg": grid.epsg,
        "proj:shape": [rows, cols],
        "end_datetime": end.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
        "constellation": "Sentinel-1",
        "s1:resolution": "high",
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f, 0.0, 0.0, 1.0],
        "start_datetime": acq.time.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
        "sat:orbit_state": acq.orbit_state,
        "sar:product_type": "GRD",
        "sar:polarizations": ["VV", "VH"],
        "sar:frequency_band": "C",
        "sat:absolute_orbit": acq.absolute_orbit,
        "sat:relative_orbit": acq.relative_orbit,
        "sar:instrument_mode": "IW",
        "sar:center_frequency": 5.405,
        "sar:observation_direction": "right",
        "sar:looks_equivalent_number": 4.4,
        "lamap:synthetic": True,
    }
    assets = {
        pol: {
            "href": hrefs[pol],
            "type": COG_TYPE,
            "roles": ["data"],
            "title": f"{pol.upper()}: {title}",
            "raster:bands": [
                {"nodata": -32768, "data_type": "float32", "spatial_resolution": 10.0}
            ],
        }
        for pol, title in (
            ("vh", "vertical transmit, horizontal receive"),
            ("vv", "vertical transmit, vertical receive"),
        )
    }
    return _feature(s1_item_id(acq), S1_COLLECTION, footprint, props, assets, S1_EXTENSIONS)


def _feature(
    item_id: str,
    collection: str,
    footprint: Polygon,
    properties: dict[str, Any],
    assets: dict[str, Any],
    extensions: list[str],
) -> dict[str, Any]:
    return {
        "id": item_id,
        "bbox": [round(v, 7) for v in footprint.bounds],
        "type": "Feature",
        "links": _links(collection, item_id),
        "geometry": geojson(footprint),
        "collection": collection,
        "properties": properties,
        "assets": assets,
        "stac_extensions": extensions,
        "stac_version": STAC_VERSION,
    }


def _collection(
    collection_id: str,
    title: str,
    description: str,
    bbox: list[float],
    interval: tuple[dt.datetime, dt.datetime],
) -> dict[str, Any]:
    return {
        "type": "Collection",
        "id": collection_id,
        "stac_version": STAC_VERSION,
        "title": title,
        "description": description,
        "license": "proprietary",
        "keywords": ["lamap", "synthetic"],
        "links": [],
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {"interval": [[_iso(interval[0]), _iso(interval[1])]]},
        },
        "providers": [{"name": "lamap synthetic world", "roles": ["producer", "processor"]}],
    }


def s2_collection(bbox: list[float], interval: tuple[dt.datetime, dt.datetime]) -> dict[str, Any]:
    """Return the synthetic world's ``sentinel-2-l2a`` collection."""
    return _collection(
        S2_COLLECTION,
        "Sentinel-2 Level-2A (lamap synthetic world)",
        "Synthetic Sentinel-2 L2A surface reflectance from PROSAIL, shaped like Planetary "
        "Computer's sentinel-2-l2a (DN = 10000 * reflectance + 1000, baseline 05.10).",
        bbox,
        interval,
    )


def s1_collection(bbox: list[float], interval: tuple[dt.datetime, dt.datetime]) -> dict[str, Any]:
    """Return the synthetic world's ``sentinel-1-rtc`` collection."""
    return _collection(
        S1_COLLECTION,
        "Sentinel-1 Radiometrically Terrain Corrected (lamap synthetic world)",
        "Synthetic Sentinel-1 IW gamma0 (linear power) from a water-cloud model, shaped like "
        "Planetary Computer's sentinel-1-rtc.",
        bbox,
        interval,
    )
