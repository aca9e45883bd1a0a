"""Where the synthetic world lies: its truth grid, its UTM product grids and footprints.

The world's truth (landscape, LAI, clouds) lives on one north-up grid in EPSG:3035 at
10 m, the CRS of lamap's ``europe`` output grid. Sentinel products are written the
way ESA and the catalogs deliver them: Sentinel-2 as one product grid per UTM zone the
world touches (MGRS-like tiles that overlap across the zone boundary), Sentinel-1 RTC
in the UTM zone of the world's centre. Every product pixel is filled by nearest
neighbour from the truth grid through a precomputed index, so a product pixel is an
exact copy of the truth pixel its centre falls on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box, mapping

__all__ = [
    "TRUTH_EPSG",
    "ProductGrid",
    "TruthGrid",
    "TruthIndex",
    "geojson",
    "utm_epsg",
]

#: The truth grid's CRS: ETRS89-LAEA, as lamap's ``europe`` grid.
TRUTH_EPSG = 3035


def utm_epsg(lon: float, lat: float) -> int:
    """Return the EPSG code of the WGS84 UTM zone that contains ``(lon, lat)``."""
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def _transformer(src: int, dst: int) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(src), CRS.from_epsg(dst), always_xy=True)


def _project(geometry: Polygon, src: int, dst: int) -> Polygon:
    projected = shapely.transform(
        geometry.segmentize(50.0), _transformer(src, dst).transform, interleaved=False
    )
    return projected  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TruthGrid:
    """The world's truth grid: ``shape`` pixels of ``resolution`` metres in EPSG:3035.

    Parameters
    ----------
    center_lon, center_lat : float
        Where the world's centre lies (degrees); the origin is snapped to whole metres
        of ``resolution``.
    shape : tuple of int
        (rows, cols).
    resolution : float
        Pixel size in metres.
    """

    center_lon: float
    center_lat: float
    shape: tuple[int, int]
    resolution: float = 10.0

    @cached_property
    def transform(self) -> Affine:
        """Affine transform of the grid (upper-left origin, north-up)."""
        x, y = _transformer(4326, TRUTH_EPSG).transform(self.center_lon, self.center_lat)
        res = self.resolution
        rows, cols = self.shape
        x0 = np.floor(x / res - cols / 2) * res
        y0 = np.ceil(y / res + rows / 2) * res
        return Affine(res, 0.0, float(x0), 0.0, -res, float(y0))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in EPSG:3035."""
        t = self.transform
        rows, cols = self.shape
        return (t.c, t.f - rows * self.resolution, t.c + cols * self.resolution, t.f)

    @cached_property
    def polygon(self) -> Polygon:
        """The grid's extent as a polygon in EPSG:3035."""
        return box(*self.bounds)

    @cached_property
    def lonlat_polygon(self) -> Polygon:
        """The grid's extent in lon/lat (densified edges)."""
        return _project(self.polygon, TRUTH_EPSG, 4326)

    @property
    def lonlat_bbox(self) -> tuple[float, float, float, float]:
        """The grid's lon/lat bounding box (W, S, E, N)."""
        return tuple(float(v) for v in self.lonlat_polygon.bounds)  # type: ignore[return-value]

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates ``(y, x)`` as 1-D arrays."""
        t = self.transform
        rows, cols = self.shape
        x = t.c + (np.arange(cols) + 0.5) * self.resolution
        y = t.f - (np.arange(rows) + 0.5) * self.resolution
        return y, x

    def utm_zones(self) -> list[int]:
        """EPSG codes of the UTM zones the grid touches, west to east."""
        west, south, east, north = self.lonlat_bbox
        lat = 0.5 * (south + north)
        codes = {utm_epsg(lon, lat) for lon in np.linspace(west, east, 64)}
        return sorted(codes)

    def to_dict(self) -> dict[str, object]:
        """JSON description of the grid (for ``world.json``)."""
        return {
            "crs": f"EPSG:{TRUTH_EPSG}",
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
            "resolution": self.resolution,
            "bounds": list(self.bounds),
        }


@dataclass(frozen=True)
class TruthIndex:
    """Nearest truth pixel of each product pixel.

    Attributes
    ----------
    rows, cols : numpy.ndarray
        Truth-grid indices, clipped into the grid.
    inside : numpy.ndarray
        Where the product pixel's centre really falls on the truth grid.
    x, y : numpy.ndarray
        The product pixel centres in EPSG:3035.
    """

    rows: np.ndarray
    cols: np.ndarray
    inside: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def build(cls, truth: TruthGrid, x: np.ndarray, y: np.ndarray) -> TruthIndex:
        """Index the truth grid at EPSG:3035 points ``(x, y)``."""
        t = truth.transform
        col = np.floor((x - t.c) / truth.resolution).astype(np.int64)
        row = np.floor((t.f - y) / truth.resolution).astype(np.int64)
        n_rows, n_cols = truth.shape
        inside = (row >= 0) & (row < n_rows) & (col >= 0) & (col < n_cols)
        return cls(np.clip(row, 0, n_rows - 1), np.clip(col, 0, n_cols - 1), inside, x, y)


@dataclass(frozen=True)
class ProductGrid:
    """A UTM grid on which Sentinel products are written, with its link to the truth.

    Parameters
    ----------
    name : str
        Tile name used in ids and paths, e.g. ``"31UGP"``.
    epsg : int
        UTM EPSG code.
    bounds : tuple of float
        (xmin, ymin, xmax, ymax) in the UTM CRS, multiples of 60 m.
    truth : TruthGrid
        The world's truth grid.
    resolution : float
        Finest pixel size in metres (10).
    """

    name: str
    epsg: int
    bounds: tuple[float, float, float, float]
    truth: TruthGrid
    resolution: float = 10.0

    @classmethod
    def covering(
        cls, name: str, epsg: int, lonlat_area: Polygon, truth: TruthGrid, *, snap: float = 60.0
    ) -> ProductGrid:
        """Build the grid whose extent covers ``lonlat_area``, snapped outward to ``snap`` m."""
        xmin, ymin, xmax, ymax = _project(lonlat_area, 4326, epsg).bounds
        snapped = (
            np.floor(xmin / snap) * snap,
            np.floor(ymin / snap) * snap,
            np.ceil(xmax / snap) * snap,
            np.ceil(ymax / snap) * snap,
        )
        return cls(name, epsg, tuple(float(v) for v in snapped), truth)  # type: ignore[arg-type]

    def shape_at(self, resolution: float) -> tuple[int, int]:
        """(rows, cols) at ``resolution`` metres."""
        xmin, ymin, xmax, ymax = self.bounds
        return (round((ymax - ymin) / resolution), round((xmax - xmin) / resolution))

    def transform_at(self, resolution: float) -> Affine:
        """Affine transform at ``resolution`` metres."""
        return Affine(resolution, 0.0, self.bounds[0], 0.0, -resolution, self.bounds[3])

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) at the finest resolution."""
        return self.shape_at(self.resolution)

    def truth_xy(self, resolution: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """EPSG:3035 ``(x, y)`` of every product pixel centre at ``resolution`` (rows, cols)."""
        res = resolution or self.resolution
        rows, cols = self.shape_at(res)
        t = self.transform_at(res)
        xx, yy = np.meshgrid(
            t.c + (np.arange(cols) + 0.5) * res, t.f - (np.arange(rows) + 0.5) * res
        )
        x, y = _transformer(self.epsg, TRUTH_EPSG).transform(xx, yy)
        return np.asarray(x), np.asarray(y)

    def truth_index(self, resolution: float | None = None) -> TruthIndex:
        """Nearest truth pixel of every product pixel at ``resolution`` (cached)."""
        res = resolution or self.resolution
        cache: dict[float, TruthIndex] = self.__dict__.setdefault("_index_cache", {})
        if res not in cache:
            cache[res] = TruthIndex.build(self.truth, *self.truth_xy(res))
        return cache[res]

    def valid(self, swath: Polygon, resolution: float | None = None) -> np.ndarray:
        """Pixels on the truth grid and inside ``swath`` (EPSG:3035), cached per swath.

        A world has only a few swaths (one per orbit and pass direction), so the mask is
        computed once per grid and swath, not once per acquisition.
        """
        res = resolution or self.resolution
        cache: dict[tuple[bytes, float], np.ndarray] = self.__dict__.setdefault(
            "_valid_cache", {}
        )
        key = (shapely.to_wkb(swath), res)
        if key not in cache:
            index = self.truth_index(res)
            inside = np.asarray(shapely.contains_xy(swath, index.x, index.y))
            cache[key] = index.inside & inside
        return cache[key]

    def sample(self, truth_array: np.ndarray, resolution: float | None = None) -> np.ndarray:
        """Take ``truth_array`` (truth-grid shaped in its first two axes) onto this grid."""
        index = self.truth_index(resolution)
        return truth_array[index.rows, index.cols]

    def footprint(self, valid_truth_area: Polygon) -> Polygon:
        """Return the lon/lat footprint of data here, where ``valid_truth_area`` (3035) holds."""
        own = _project(box(*self.bounds), self.epsg, TRUTH_EPSG)
        data = own.intersection(self.truth.polygon).intersection(valid_truth_area)
        lonlat = _project(shapely.Polygon(data.exterior), TRUTH_EPSG, 4326)
        return shapely.set_precision(lonlat.simplify(1e-6), 1e-7)


def geojson(geometry: Polygon) -> dict[str, object]:
    """GeoJSON mapping of a polygon, with plain lists (JSON-ready)."""
    mapped = mapping(geometry)
    return {"type": mapped["type"], "coordinates": _lists(mapped["coordinates"])}


def _lists(value: object) -> object:
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    return float(value)  # type: ignore[arg-type]
