"""A synthetic continental STAC catalog without pixels, for benchmarking the planner.

:func:`continental_items` returns Sentinel-2 L2A and Sentinel-1 RTC item dicts shaped like
Planetary Computer's ``sentinel-2-l2a`` and ``sentinel-1-rtc`` (compare
``tests/data/stac``), built from code alone; hrefs under ``https://example.invalid``
are never read. The default area is :data:`EEA39_BBOX`.

The satellites fly sun-synchronous repeat orbits over a spherical Earth: a reference node
is crossed at a fixed local solar time, so an orbit's longitude follows from its time. The
anchors are real orbits of the fixtures (S2A 46999 and S2B 38019, R098 over 13TDE; S1A
53498, R051 over Libya), so tracks fall near the real ones (32ULU gets R008 and R108).

Sentinel-2: S2A and S2B, 143 orbits in 10 days, 5 days apart, descending node 10:30
    The real tiling: 109.8 km squares on each UTM zone's 100 km MGRS lattice (corner on the
    60 m lattice), MGRS names (``32ULU``), for tiles meeting their zone and the bbox. A tile
    gets an item for each pass whose 290 km swath covers at least 1 % of it; the footprint
    is the covered part (``s2:nodata_pixel_percentage``). ``datetime`` is the datatake
    start, where the pass crosses 72° N, shared by the datatake's tiles as on PC.
Sentinel-1: S1A, with S1B until 2021-12-22 and S1C from 2025-04-01 (6 days after S1A)
    175 orbits in 12 days, ascending node 18:00. The 250 km IW swath lies 340-590 km right
    of the ground track, cut into 25 s slices (about 170 km) at fixed times after the
    ascending node; each slice has a 10 m grid in its UTM zone. With S1A alone (2022 to
    March 2025, as in the real archive) a point at 36-60° N sees a pass every 3.75 days
    on average, the longest gap is 5.5 days at the median point and up to about 10.5.

Randomness (cloud cover, processing times, product hashes) is a hash of ``seed`` and the
acquisition, so an item is the same whatever the bbox. Northern hemisphere only. Items
share read-only parts (asset grids, band metadata, tile geometries): deep-copy one before
mutating it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from lamap._inputs import as_date
from lamap.catalog import BBox, SearchResult, as_geometry, open_catalog, parse_items
from lamap.errors import InputError
from lamap.synthetic.solar import sun_position

__all__ = ["EEA39_BBOX", "FAKE_BASE_URL", "continental_items", "continental_result",
           "count_items", "iter_continental_items"]

#: Lon/lat envelope of the EEA39 countries inside lamap's ``europe`` grid: the Azores to
#: eastern Türkiye, the Canaries to the North Cape (Svalbard is outside, as in CLMS products).
EEA39_BBOX: BBox = (-31.3, 27.6, 44.8, 71.2)
#: Base of every href (RFC 2606: it never resolves).
FAKE_BASE_URL = "https://example.invalid"

_DAY_S, _EARTH_KM = 86400.0, 6371.0088
_S2_SWATH_KM, _S2_TILE_M, _S2_MIN_COVER, _S2_DATATAKE_LAT = 290.0, 109_800.0, 0.01, 72.0
_S1_RANGE_KM, _S1_SLICE_S = (340.0, 590.0), 25.0  # IW swath from the ground track; slice
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_BANDS = (  # band, metres, common name, description, centre µm, FWHM µm
    ("B01", 60, "coastal", "Coastal aerosol", 0.443, 0.027),
    ("B02", 10, "blue", "Blue", 0.49, 0.098), ("B03", 10, "green", "Green", 0.56, 0.045),
    ("B04", 10, "red", "Red", 0.665, 0.038),
    ("B05", 20, "rededge", "Vegetation red edge 1", 0.704, 0.019),
    ("B06", 20, "rededge", "Vegetation red edge 2", 0.74, 0.018),
    ("B07", 20, "rededge", "Vegetation red edge 3", 0.783, 0.028),
    ("B08", 10, "nir", "NIR", 0.842, 0.145), ("B09", 60, "", "Water vapor", 0.945, 0.026),
    ("B11", 20, "swir16", "SWIR (1.6)", 1.61, 0.143),
    ("B12", 20, "swir22", "SWIR (2.2)", 2.19, 0.242),
    ("B8A", 20, "rededge", "Vegetation red edge 4", 0.865, 0.033),
)
_BASELINES = (  # first sensing day of each Sentinel-2 processing baseline (02.14 before)
    (dt.date(2021, 6, 30), "03.01"), (dt.date(2022, 1, 25), "04.00"),
    (dt.date(2022, 12, 6), "05.09"), (dt.date(2023, 12, 13), "05.10"),
    (dt.date(2024, 7, 23), "05.11"),
)


@dataclass(frozen=True)
class _Unit:
    """One satellite on a sun-synchronous repeat orbit, anchored on one real orbit."""

    code: str  # S2A, S1A ...
    platform: str
    inclination: float  # degrees
    cycle_days: int
    cycle_orbits: int
    node_u: float  # argument of latitude of the reference node: 0 ascending, pi descending
    node_hours: float  # local solar time at the reference node
    anchor_orbit: int
    anchor_relative: int
    anchor_node: dt.datetime  # UTC time of the anchor orbit's reference node
    active: tuple[dt.date, dt.date]

    @property
    def period(self) -> float:
        return self.cycle_days * _DAY_S / self.cycle_orbits

    def relative(self, orbit: int) -> int:
        return (orbit - self.anchor_orbit + self.anchor_relative - 1) % self.cycle_orbits + 1

    def node_time(self, orbit: int) -> dt.datetime:
        return self.anchor_node + dt.timedelta(seconds=(orbit - self.anchor_orbit) * self.period)

    def orbits(self, start: dt.date, end: dt.date) -> range:
        """Return the absolute orbits with a reference node in the window, a day either side."""
        first, last = (dt.datetime.combine(d, dt.time(), dt.UTC)
                       for d in (max(start, self.active[0]), min(end, self.active[1])))
        lo = (first - self.anchor_node).total_seconds() / self.period - 15.0
        hi = (last - self.anchor_node).total_seconds() / self.period + 30.0
        return range(self.anchor_orbit + math.floor(lo), self.anchor_orbit + math.ceil(hi))

    def track(self, orbit: int, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the nadir lon and lat (degrees) at arguments of latitude ``u`` (radians)."""
        node = self.node_time(orbit)
        hours = node.hour + node.minute / 60 + (node.second + node.microsecond / 1e6) / 3600
        inc = math.radians(self.inclination)
        turn = _inertial(u, inc) - _inertial(np.array(self.node_u), inc)
        seconds = (u - self.node_u) / (2 * math.pi) * self.period
        lon = 15.0 * (self.node_hours - hours) - np.degrees(turn) - 360.0 * seconds / _DAY_S
        lon = lon - 360.0 * np.round(np.mean(lon) / 360.0)
        return lon, np.degrees(np.arcsin(math.sin(inc) * np.sin(u)))

    def half(self, south: float, north: float, ascending: bool) -> tuple[float, float]:
        """Return the ``u`` interval of the ascending or descending half between latitudes."""
        top, sin_i = 180.0 - self.inclination - 1e-6, math.sin(math.radians(self.inclination))
        a, b = (math.asin(math.sin(math.radians(min(max(v, -top), top))) / sin_i)
                for v in (south, north))
        return (a, b) if ascending else (math.pi - b, math.pi - a)

    def seconds(self, u: float) -> float:
        """Return the seconds from the reference node to ``u``."""
        return (u - self.node_u) / (2 * math.pi) * self.period


def _unit(code: str, orbit: int, node: str, active: tuple[str, str] = ("2014", "2099")) -> _Unit:
    when = dt.datetime.fromisoformat(node).replace(tzinfo=dt.UTC)
    days = tuple(as_date(f"{d}-01-01" if len(d) == 4 else d, "active") for d in active)
    s2 = code.startswith("S2")
    return _Unit(code, f"Sentinel-2{code[-1]}" if s2 else f"SENTINEL-1{code[-1]}",
                 98.62 if s2 else 98.18, 10 if s2 else 12, 143 if s2 else 175,
                 math.pi if s2 else 0.0, 10.5 if s2 else 18.0, orbit, 98 if s2 else 51, when,
                 (days[0], days[1]))


# S2B flies S2A's tracks 5 days later; S1B and S1C fly S1A's 6 days later.
_S2_UNITS = (_unit("S2A", 46999, "2024-06-21T18:04:46.4"),
             _unit("S2B", 38019, "2024-06-16T18:04:44.4"))
_S1_UNITS = (_unit("S1A", 53498, "2024-04-19T04:18:14.1"),
             _unit("S1B", 26800, "2021-04-29T04:18:14.1", ("2016-09-26", "2021-12-22")),
             _unit("S1C", 1900, "2025-04-08T04:18:14.1", ("2025-04-01", "2099")))


def _inertial(u: np.ndarray, inc: float) -> np.ndarray:
    """Return the angle swept westward in the inertial frame, continuous in ``u``."""
    angle = np.arctan2(abs(math.cos(inc)) * np.sin(u), np.cos(u))
    return angle + 2 * np.pi * np.round((u - angle) / (2 * np.pi))  # type: ignore[no-any-return]


def _edges(unit: _Unit, orbit: int, u: np.ndarray, km: Sequence[float]) -> list[np.ndarray]:
    """Return ``(n, 2)`` lon/lat of the points ``km`` right of the track (negative: left)."""
    lon, lat = unit.track(orbit, u)
    ahead_lon, ahead_lat = unit.track(orbit, u + 1e-4)
    p1, p2, dl = np.radians(lat), np.radians(ahead_lat), np.radians(ahead_lon - lon)
    heading = np.arctan2(np.sin(dl) * np.cos(p2),
                         np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl))
    out = []
    for distance in km:  # great-circle destination
        theta, delta = heading + math.copysign(math.pi / 2, distance), abs(distance) / _EARTH_KM
        p3 = np.arcsin(np.sin(p1) * np.cos(delta) + np.cos(p1) * np.sin(delta) * np.cos(theta))
        l3 = np.radians(lon) + np.arctan2(np.sin(theta) * np.sin(delta) * np.cos(p1),
                                          np.cos(delta) - np.sin(p1) * np.sin(p3))
        out.append(np.column_stack([np.degrees(l3), np.degrees(p3)]))
    return out


@lru_cache(maxsize=128)
def _transformer(source: int, target: int) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


# --------------------------------------------------------------------------- acquisitions


class _Tiles(NamedTuple):
    names: list[str]
    epsg: list[int]
    corners: list[tuple[float, float]]  # upper-left, UTM metres
    footprints: np.ndarray  # lon/lat polygons
    centres: np.ndarray  # (n, 2) lon/lat


def _mgrs(zone: int, lat: float, col: int, row: int) -> str:
    band = "CDEFGHJKLMNPQRSTUVWX"[min(int((lat + 80.0) // 8.0), 19)]
    column = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")[(zone - 1) % 3][col - 1]
    return f"{zone:02d}{band}{column}{'ABCDEFGHJKLMNPQRSTUV'[(row + 5 * (zone % 2 == 0)) % 20]}"


@lru_cache(maxsize=8)
def _s2_tiles(bbox: BBox) -> _Tiles:
    """Return the Sentinel-2 tiles that meet the bbox and their own UTM zone."""
    (west, south, east, north), area = bbox, as_geometry(bbox)
    tiles = _Tiles([], [], [], np.empty(0, object), np.empty((0, 2)))
    for zone in range(max(1, int((west + 176) // 6) + 1), min(60, int((east + 184) // 6) + 1) + 1):
        epsg, meridian = 32600 + zone, 6.0 * zone - 183.0
        lons, lats = np.meshgrid(np.linspace(meridian - 3, meridian + 3, 7),
                                 np.linspace(max(south - 1, 0), min(north + 1, 84), 9))
        xs, ys = _transformer(4326, epsg).transform(lons.ravel(), lats.ravel())
        cols, rows = (a.ravel() for a in np.meshgrid(
            np.arange(max(1, int(xs.min() // 1e5)), min(8, int(xs.max() // 1e5)) + 1),
            np.arange(int(ys.min() // 1e5) - 1, int(ys.max() // 1e5) + 1)))
        x0, y0 = np.floor(cols * 1e5 / 60) * 60, np.ceil((rows + 1) * 1e5 / 60) * 60
        x1, y1 = x0 + _S2_TILE_M, y0 - _S2_TILE_M  # corners counter-clockwise, then the centre
        lon, lat = _transformer(epsg, 4326).transform(
            np.stack([x0, x1, x1, x0, cols * 1e5 + 5e4], 1),
            np.stack([y1, y1, y0, y0, rows * 1e5 + 5e4], 1))
        polygons = shapely.polygons(np.stack([lon[:, :4], lat[:, :4]], axis=-1))
        keep = np.flatnonzero(shapely.intersects(polygons, area) & shapely.intersects(
            polygons, box(meridian - 3, -80, meridian + 3, 84)))
        tiles.names.extend(_mgrs(zone, lat[i, 4], cols[i], rows[i]) for i in keep)
        tiles.epsg.extend([epsg] * len(keep))
        tiles.corners.extend((float(x0[i]), float(y0[i])) for i in keep)
        centres = np.column_stack([lon[keep, :4].mean(1), lat[keep, :4].mean(1)])
        tiles = tiles._replace(footprints=np.concatenate([tiles.footprints, polygons[keep]]),
                               centres=np.concatenate([tiles.centres, centres]))
    return tiles


class _S2Acq(NamedTuple):
    unit: _Unit
    orbit: int
    when: dt.datetime  # datatake start
    tile: int
    footprint: BaseGeometry
    cover: float  # fraction of the tile with data


class _S1Slice(NamedTuple):
    unit: _Unit
    orbit: int
    ascending: bool
    start: dt.datetime
    footprint: BaseGeometry
    epsg: int
    bounds: tuple[float, float, float, float]  # UTM metres, on the 10 m lattice


def _s2_acquisitions(start: dt.date, end: dt.date, bbox: BBox) -> list[_S2Acq]:
    tiles, area, found = _s2_tiles(bbox), as_geometry(bbox), []
    tree = shapely.STRtree(tiles.footprints)
    for unit in _S2_UNITS:
        lo, hi = unit.half(bbox[1] - 3.0, bbox[3] + 3.0, ascending=False)
        step = math.radians(0.4)  # fixed vertices: footprints do not depend on the bbox
        u = np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step
        lead = unit.seconds(unit.half(0.0, _S2_DATATAKE_LAT, ascending=False)[0])
        for orbit in unit.orbits(start, end):
            when = unit.node_time(orbit) + dt.timedelta(seconds=lead)
            if not start <= when.date() <= end:
                continue
            left, right = _edges(unit, orbit, u, (-_S2_SWATH_KM / 2, _S2_SWATH_KM / 2))
            swath = Polygon(np.concatenate([left, right[::-1]]))
            hits = np.sort(tree.query(swath, predicate="intersects"))
            parts = shapely.intersection(tiles.footprints[hits], swath)
            cover = shapely.area(parts) / shapely.area(tiles.footprints[hits])
            for i, part, frac in zip(hits.tolist(), parts, cover.tolist(), strict=True):
                footprint = tiles.footprints[i] if frac > 0.999 else _largest(part)
                if frac >= _S2_MIN_COVER and footprint.intersects(area):
                    found.append(_S2Acq(unit, orbit, when.replace(microsecond=24000), i,
                                        footprint, frac))
    return found


def _largest(geometry: BaseGeometry) -> Polygon:
    parts = [p for p in getattr(geometry, "geoms", [geometry]) if isinstance(p, Polygon)]
    return orient(max(parts, key=lambda p: p.area), 1.0)


def _s1_slices(start: dt.date, end: dt.date, bbox: BBox) -> list[_S1Slice]:
    area, found = as_geometry(bbox), []
    for unit in _S1_UNITS:
        for orbit in unit.orbits(start, end):
            node = unit.node_time(orbit)
            for ascending in (True, False):
                lo, hi = unit.half(bbox[1] - 6.0, bbox[3] + 6.0, ascending)
                k = np.arange(math.ceil(unit.seconds(lo) / _S1_SLICE_S),
                              math.floor(unit.seconds(hi) / _S1_SLICE_S) + 1)
                if len(k) < 2:
                    continue
                near, far = _edges(unit, orbit, k * _S1_SLICE_S / unit.period * 2 * math.pi,
                                   _S1_RANGE_KM)  # counter-clockwise rings below
                rings = np.stack([near[:-1], far[:-1], far[1:], near[1:]], axis=1)
                slices = shapely.polygons(rings)
                for j in np.flatnonzero(shapely.intersects(slices, area)).tolist():
                    begin = node + dt.timedelta(seconds=float(k[j]) * _S1_SLICE_S)
                    if start <= (begin + dt.timedelta(seconds=_S1_SLICE_S / 2)).date() <= end:
                        found.append(_S1Slice(unit, orbit, ascending, begin, slices[j],
                                              *_utm_bounds(rings[j])))
    return found


def _utm_bounds(corners: np.ndarray) -> tuple[int, tuple[float, float, float, float]]:
    epsg = 32600 + int((corners[:, 0].mean() + 180.0) // 6.0) % 60 + 1
    xs, ys = _transformer(4326, epsg).transform(corners[:, 0], corners[:, 1])
    return epsg, (math.floor(xs.min() / 10) * 10.0, math.floor(ys.min() / 10) * 10.0,
                  math.ceil(xs.max() / 10) * 10.0, math.ceil(ys.max() / 10) * 10.0)


# --------------------------------------------------------------------------- item dicts


def _random(seed: int, key: str) -> float:
    """Return a number in [0, 1) hashed from the seed and a key."""
    digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _iso(when: dt.datetime, sep: str = "T", zone: str = "Z") -> str:
    return when.strftime(f"%Y-%m-%d{sep}%H:%M:%S.%f") + zone


def _geojson(polygon: BaseGeometry) -> dict[str, Any]:
    ring = np.round(shapely.get_coordinates(polygon), 7).tolist()
    return {"type": "Polygon", "coordinates": [ring]}


_S2_LINKS, _S1_LINKS = ([
    {"rel": "collection", "href": f"{FAKE_BASE_URL}/api/stac/v1/collections/{collection}"},
    {"rel": "license", "href": "https://sentinel.esa.int/documents/247904/690755/"
                               "Sentinel_Data_Legal_Notice"},
] for collection in ("sentinel-2-l2a", "sentinel-1-rtc"))
_S2_EXT, _S1_EXT = ([f"https://stac-extensions.github.io/{name}/schema.json" for name in names]
                    for names in (("eo/v1.0.0", "sat/v1.0.0", "projection/v1.0.0"),
                                  ("sar/v1.0.0", "sat/v1.0.0", "projection/v1.1.0",
                                   "raster/v1.1.0")))
_BAND_META: dict[str, dict[str, Any]] = {
    band: {"type": _COG, "roles": ["data"], "title": f"Band {band[1:].lstrip('0')} - {text} - "
           f"{res}m", "eo:bands": [{"name": band, **({"common_name": common} if common else {}),
                                    "description": f"Band {band[1:].lstrip('0')} - {text}",
                                    "center_wavelength": centre, "full_width_half_max": fwhm}]}
    for band, res, common, text, centre, fwhm in _BANDS
} | {"SCL": {"type": _COG, "roles": ["data"], "title": "Scene classfication map (SCL)"}}
_RESOLUTION = {band: res for band, res, *_ in _BANDS} | {"SCL": 20}
_RASTER = [{"nodata": -32768, "data_type": "float32", "spatial_resolution": 10.0}]


def _s2_items(acqs: list[_S2Acq], tiles: _Tiles, seed: int) -> Iterator[dict[str, Any]]:
    times = np.array([a.when.replace(tzinfo=None) for a in acqs], dtype="datetime64[ns]")
    centres = tiles.centres[[a.tile for a in acqs]].reshape(-1, 2)
    zenith, azimuth = sun_position(times, centres[:, 0], centres[:, 1])
    shared: dict[int, tuple[dict[int, dict[str, Any]], dict[str, Any]]] = {}
    for acq, sun_z, sun_a in zip(acqs, zenith.tolist(), azimuth.tolist(), strict=True):
        tile, code, when, n = tiles.names[acq.tile], acq.unit.code, acq.when, acq.orbit
        stamp = when.strftime("%Y%m%dT%H%M%S")
        generated = when + dt.timedelta(hours=3.0 + 9.0 * _random(seed, f"g{tile}{stamp}"))
        gstamp, baseline = generated.strftime("%Y%m%dT%H%M%S"), _baseline(when.date())
        orbit, version = f"R{acq.unit.relative(n):03d}", f"N{baseline.replace('.', '')}"
        uri = f"{code}_MSIL2A_{stamp}_{version}_{orbit}_T{tile}_{gstamp}.SAFE"
        base = (f"{FAKE_BASE_URL}/sentinel2-l2/{tile[:2]}/{tile[2]}/{tile[3:]}/{when:%Y/%m/%d}/"
                f"{uri}/GRANULE/L2A_T{tile}_A{n:06d}_{stamp}/IMG_DATA")
        if acq.tile not in shared:
            shared[acq.tile] = _tile_grids(tiles, acq.tile)
        grids, geometry = shared[acq.tile]
        cloud = 100.0 * math.sin(math.pi / 2 * _random(seed, f"c{tile}{stamp}")) ** 2
        yield {
            "id": f"{code}_MSIL2A_{stamp}_{orbit}_T{tile}_{gstamp}",
            "bbox": [round(v, 7) for v in acq.footprint.bounds], "type": "Feature",
            "links": _S2_LINKS,
            "geometry": geometry if acq.footprint is tiles.footprints[acq.tile] else _geojson(
                acq.footprint),
            "collection": "sentinel-2-l2a",
            "properties": {
                "datetime": _iso(when), "platform": acq.unit.platform,
                "proj:epsg": tiles.epsg[acq.tile], "instruments": ["msi"],
                "s2:mgrs_tile": tile, "constellation": "Sentinel 2",
                "s2:granule_id":
                    f"{code}_OPER_MSI_L2A_TL_MSFT_{gstamp}_A{n:06d}_T{tile}_N{baseline}",
                "eo:cloud_cover": round(cloud, 6),
                "s2:datatake_id": f"G{code}_{stamp}_{n:06d}_N{baseline}", "s2:product_uri": uri,
                "s2:product_type": "S2MSI2A", "sat:orbit_state": "descending",
                "s2:datatake_type": "INS-NOBS", "s2:generation_time": _iso(generated),
                "sat:relative_orbit": acq.unit.relative(n),
                "s2:mean_solar_zenith": sun_z, "s2:mean_solar_azimuth": sun_a,
                "s2:processing_baseline": baseline,
                "s2:nodata_pixel_percentage": round(100.0 * (1.0 - acq.cover), 6),
            },
            "assets": {band: {"href": f"{base}/R{res}m/T{tile}_{stamp}_{band}_{res}m.tif",
                              **grids[res], **_BAND_META[band]}
                       for band, res in _RESOLUTION.items()},
            "stac_extensions": _S2_EXT, "stac_version": "1.0.0",
        }


def _baseline(day: dt.date) -> str:
    return next((name for first, name in reversed(_BASELINES) if day >= first), "02.14")


def _tile_grids(tiles: _Tiles, i: int) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    x0, y0 = tiles.corners[i]
    bounds = [x0, y0 - _S2_TILE_M, x0 + _S2_TILE_M, y0]
    grids = {res: {"proj:bbox": bounds, "proj:shape": [int(_S2_TILE_M) // res] * 2,
                   "proj:transform": [float(res), 0.0, x0, 0.0, -float(res), y0],
                   "gsd": float(res)} for res in (10, 20, 60)}
    return grids, _geojson(tiles.footprints[i])


def _s1_item(piece: _S1Slice, seed: int) -> dict[str, Any]:
    unit, orbit, begin = piece.unit, piece.orbit, piece.start
    end = begin + dt.timedelta(seconds=_S1_SLICE_S)
    datatake = 425458 + 2 * (orbit - unit.anchor_orbit) - piece.ascending  # 53498: 067DF2
    item_id = (f"{unit.code}_IW_GRDH_1SDV_{begin:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}_"
               f"{orbit:06d}_{datatake % 0x1000000:06X}_rtc")
    href = (f"{FAKE_BASE_URL}/sentinel1-grd-rtc/GRD/{begin.year}/{begin.month}/{begin.day}/"
            f"IW/DV/{item_id[:-4]}_{int(_random(seed, item_id) * 0x10000):04X}/measurement/iw-")
    west, south, east, north = piece.bounds
    rows, cols = round((north - south) / 10), round((east - west) / 10)
    return {
        "id": item_id, "bbox": [round(v, 7) for v in piece.footprint.bounds], "type": "Feature",
        "geometry": _geojson(piece.footprint), "collection": "sentinel-1-rtc",
        "properties": {  # PC's S1 RTC: proj fields here, start/end written with a space
            "datetime": _iso(begin + (end - begin) / 2), "platform": unit.platform,
            "s1:shape": [cols, rows], "proj:bbox": list(piece.bounds), "proj:epsg": piece.epsg,
            "proj:shape": [rows, cols], "end_datetime": _iso(end, " ", "+00:00"),
            "constellation": "Sentinel-1", "s1:resolution": "high",
            "proj:transform": [10.0, 0.0, west, 0.0, -10.0, north, 0.0, 0.0, 1.0],
            "s1:datatake_id": str(datatake), "start_datetime": _iso(begin, " ", "+00:00"),
            "sat:orbit_state": "ascending" if piece.ascending else "descending",
            "sar:product_type": "GRD", "sar:polarizations": ["VV", "VH"],
            "sar:frequency_band": "C", "sat:absolute_orbit": orbit,
            "sat:relative_orbit": unit.relative(orbit), "sar:instrument_mode": "IW",
            "sar:center_frequency": 5.405, "sar:observation_direction": "right",
        },
        "links": _S1_LINKS,
        "assets": {pol: {"href": f"{href}{pol}.rtc.tiff", "type": _COG, "roles": ["data"],
                         "title": f"{pol.upper()}: vertical transmit, {name} receive",
                         "raster:bands": _RASTER}
                   for pol, name in (("vh", "horizontal"), ("vv", "vertical"))},
        "stac_extensions": _S1_EXT, "stac_version": "1.0.0",
    }


# --------------------------------------------------------------------------- public API


def _inputs(
    start: dt.date | str, end: dt.date | str, bbox: Sequence[float]
) -> tuple[dt.date, dt.date, BBox]:
    first, last = as_date(start, "start"), as_date(end, "end")
    if last < first:
        raise InputError(f"the window ends ({last}) before it starts ({first})")
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        west = south = east = north = math.nan
    if not (-180.0 <= west <= east <= 180.0 and 0.0 <= south <= north <= 84.0):
        raise InputError(f"bbox {tuple(bbox)} must be W,S,E,N degrees with W <= E and "
                         "0 <= S <= N <= 84: the synthetic catalog is northern-hemisphere only")
    return first, last, (west, south, east, north)


def count_items(
    start: dt.date | str, end: dt.date | str, *, bbox: Sequence[float] = EEA39_BBOX
) -> dict[str, int]:
    """Count the items of :func:`continental_items` without building them (no seed needed).

    Parameters
    ----------
    start, end, bbox
        As in :func:`iter_continental_items`.

    Returns
    -------
    dict
        ``{"sentinel-2-l2a": n, "sentinel-1-rtc": m}``.
    """
    first, last, area = _inputs(start, end, bbox)
    return {"sentinel-2-l2a": len(_s2_acquisitions(first, last, area)),
            "sentinel-1-rtc": len(_s1_slices(first, last, area))}


def iter_continental_items(
    start: dt.date | str, end: dt.date | str, *, bbox: Sequence[float] = EEA39_BBOX, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield synthetic Planetary Computer Sentinel-2 L2A items, then Sentinel-1 RTC items.

    Parameters
    ----------
    start, end : date or str
        Inclusive window of UTC days (``YYYY-MM-DD`` accepted): an item belongs to the day
        of its ``datetime``.
    bbox : sequence of 4 float
        ``(W, S, E, N)`` in degrees, northern hemisphere; an item is yielded when its
        footprint meets it, as in a STAC API search. Default: :data:`EEA39_BBOX`.
    seed : int
        Seeds cloud cover, processing times and href hashes. Footprints, datetimes and
        everything else do not depend on it.

    Yields
    ------
    dict
        JSON-ready STAC items, each collection sorted by datetime then tile or platform.

    Raises
    ------
    InputError
        If the window ends before it starts or the bbox is malformed or southern.
    """
    first, last, area = _inputs(start, end, bbox)
    tiles = _s2_tiles(area)
    acqs = sorted(_s2_acquisitions(first, last, area), key=lambda a: (a.when, tiles.names[a.tile]))
    yield from _s2_items(acqs, tiles, seed)
    for piece in sorted(_s1_slices(first, last, area), key=lambda s: (s.start, s.unit.code)):
        yield _s1_item(piece, seed)


def continental_items(
    start: dt.date | str, end: dt.date | str, *, bbox: Sequence[float] = EEA39_BBOX, seed: int = 0
) -> list[dict[str, Any]]:
    """Return the items of :func:`iter_continental_items` (same parameters) as a list."""
    return list(iter_continental_items(start, end, bbox=bbox, seed=seed))


def continental_result(
    start: dt.date | str, end: dt.date | str, *, bbox: Sequence[float] = EEA39_BBOX, seed: int = 0
) -> SearchResult:
    """Return the synthetic catalog as :func:`lamap.catalog.search` would over ``bbox``.

    The items of :func:`iter_continental_items` (same parameters) are parsed by
    :func:`lamap.catalog.parse_items` with the ``planetary-computer`` profile.

    Returns
    -------
    SearchResult
        Catalog ``planetary-computer``, the bbox, and the window from the start of
        ``start`` to the end of ``end`` (UTC).
    """
    first, last, area = _inputs(start, end, bbox)
    profile = open_catalog("planetary-computer")
    items = iter_continental_items(first, last, bbox=area, seed=seed)
    s2, s1, duplicates, skipped = parse_items(items, profile)
    window = (dt.datetime.combine(first, dt.time.min, dt.UTC),
              dt.datetime.combine(last, dt.time.max, dt.UTC))
    return SearchResult(profile.name, area, *window, s2, s1, duplicates, skipped)
