"""Reading one STAC item's fields into typed values: band assets, grids, datetimes, footprints.

These are the pieces :mod:`lamap.catalog.items` builds Sentinel scenes from. Every reader
raises :class:`~lamap.errors.CatalogError` naming the item (and the asset) it could not read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from lamap.errors import CatalogError

__all__ = [
    "BandAsset",
    "Bounds",
    "Transform",
    "epsg_of",
    "item_datetime",
    "item_footprint",
    "item_parts",
    "optional_datetime",
    "parse_datetime",
    "read_band_asset",
    "version_tuple",
]

#: ``(minx, miny, maxx, maxy)`` in some CRS, or a lon/lat ``(W, S, E, N)``.
Bounds: TypeAlias = tuple[float, float, float, float]
#: A north-up affine ``(a, b, c, d, e, f)``.
Transform: TypeAlias = tuple[float, float, float, float, float, float]


def parse_datetime(value: str | dt.datetime) -> dt.datetime:
    """Parse a STAC datetime into an aware UTC ``datetime``.

    Accepts RFC 3339 (``2024-06-21T17:39:11.024000Z``), Planetary Computer's S1 form with a
    space and ``+00:00`` (``2024-04-19 04:59:04.220006+00:00``), any number of fractional
    digits; naive values are taken as UTC.

    Raises
    ------
    CatalogError
        If ``value`` is not a datetime.
    """
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).strip())
        except ValueError as err:
            raise CatalogError(f"not an ISO 8601 datetime: {value!r}") from err
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def optional_datetime(value: Any) -> dt.datetime | None:
    """Parse a STAC datetime that may be absent (None or empty)."""
    return parse_datetime(value) if value else None


def version_tuple(text: str) -> tuple[int, ...]:
    """``"05.10"`` → ``(5, 10)``: processing baselines compare numerically."""
    return tuple(int(part) for part in re.findall(r"\d+", text))


def item_parts(item: Mapping[str, Any]) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """Return an item's ``(id, properties, assets)``.

    Raises
    ------
    CatalogError
        If it has no properties or assets.
    """
    item_id = str(item.get("id", "?"))
    props = item.get("properties")
    assets = item.get("assets")
    if not isinstance(props, Mapping) or not isinstance(assets, Mapping):
        raise CatalogError(f"item {item_id!r} is not a STAC item (no properties or assets)")
    return item_id, props, assets


def item_datetime(item_id: str, props: Mapping[str, Any]) -> dt.datetime:
    """Return an item's ``datetime`` (else its ``start_datetime``) in UTC.

    Raises
    ------
    CatalogError
        If it has neither, or it is malformed.
    """
    value = props.get("datetime") or props.get("start_datetime")
    if not value:
        raise CatalogError(f"item {item_id!r} has no datetime")
    try:
        return parse_datetime(value)
    except CatalogError as err:
        raise CatalogError(f"item {item_id!r}: {err}") from err


def item_footprint(item_id: str, item: Mapping[str, Any]) -> BaseGeometry:
    """Return an item's lon/lat footprint: its geometry (made valid), else its bbox.

    Raises
    ------
    CatalogError
        If it has neither.
    """
    if item.get("geometry"):
        geometry = shape(item["geometry"])
    elif item.get("bbox"):
        geometry = shapely.box(*item["bbox"][:2], *item["bbox"][-2:])
    else:
        raise CatalogError(f"item {item_id!r} has neither geometry nor bbox")
    return geometry if geometry.is_valid else geometry.buffer(0)


def epsg_of(fields: Mapping[str, Any]) -> int | None:
    """Return the EPSG code of ``proj:epsg`` or ``proj:code`` (an asset or properties)."""
    if fields.get("proj:epsg") is not None:
        return int(fields["proj:epsg"])
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


@dataclass(frozen=True)
class BandAsset:
    """One band of one item: where it is and its grid.

    Attributes
    ----------
    band : str
        lamap band name (``B04``, ``SCL``, ``vv`` …).
    key : str
        The catalog's asset key (``B04`` on Planetary Computer, ``red`` on Earth Search).
    href : str
        Unsigned href.
    epsg : int
        CRS of the raster.
    transform : tuple of 6 float
        North-up affine ``(a, b, c, d, e, f)`` (a 9-element ``proj:transform`` is cut).
    shape : tuple of 2 int
        ``(rows, cols)``.
    nodata : float
        Declared nodata, else the product's (0 for S2, −32768 for S1 RTC).
    """

    band: str
    key: str
    href: str
    epsg: int
    transform: Transform
    shape: tuple[int, int]
    nodata: float

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units."""
        return self.transform[0]

    @property
    def bounds(self) -> Bounds:
        """``(minx, miny, maxx, maxy)`` in the asset's CRS, from transform and shape."""
        a, _, c, _, e, f = self.transform
        rows, cols = self.shape
        return c, f + e * rows, c + a * cols, f

    def stac_fields(self, href: str) -> dict[str, Any]:
        """STAC asset fields for stackstac: projection on the asset, nodata, no scale."""
        return {
            "href": href,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "proj:epsg": self.epsg,
            "proj:transform": list(self.transform),
            "proj:shape": list(self.shape),
            "proj:bbox": list(self.bounds),
            "raster:bands": [{"nodata": self.nodata}],
        }


def read_band_asset(
    item_id: str,
    band: str,
    key: str,
    assets: Mapping[str, Any],
    properties: Mapping[str, Any],
    default_nodata: float,
) -> BandAsset:
    """Read one band's asset: href, grid (on the asset, else the item) and nodata.

    Parameters
    ----------
    item_id : str
        For messages.
    band, key : str
        lamap band name and the catalog's asset key.
    assets, properties : mapping
        The item's ``assets`` and ``properties``.
    default_nodata : float
        Nodata when the asset declares none.

    Returns
    -------
    BandAsset

    Raises
    ------
    CatalogError
        If the asset is missing or its grid is not described or not north-up.
    """
    asset = assets.get(key)
    if not isinstance(asset, Mapping) or "href" not in asset:
        raise CatalogError(
            f"item {item_id!r} has no asset {key!r} for band {band} (assets: {sorted(assets)})"
        )
    where = f"item {item_id!r} asset {key!r}"
    epsg = epsg_of(asset) or epsg_of(properties)
    transform = asset.get("proj:transform", properties.get("proj:transform"))
    rows_cols = asset.get("proj:shape", properties.get("proj:shape"))
    if epsg is None or transform is None or rows_cols is None:
        raise CatalogError(
            f"{where}: needs proj:epsg (or proj:code), proj:transform and proj:shape on the "
            "asset or the item; this catalog does not describe the raster grid"
        )
    return BandAsset(
        band=band,
        key=key,
        href=str(asset["href"]),
        epsg=epsg,
        transform=_affine6(transform, where),
        shape=(int(rows_cols[0]), int(rows_cols[1])),
        nodata=_nodata(asset, default_nodata),
    )


def _affine6(values: Sequence[float], where: str) -> Transform:
    """Return the 6 north-up affine coefficients of a 6- or 9-element ``proj:transform``."""
    if len(values) == 9 and [float(v) for v in values[6:]] != [0.0, 0.0, 1.0]:
        raise CatalogError(f"{where}: proj:transform {list(values)} does not end in 0, 0, 1")
    if len(values) not in (6, 9):
        raise CatalogError(
            f"{where}: proj:transform has {len(values)} elements {list(values)}; "
            "expected 6, or 9 ending in 0, 0, 1"
        )
    a, b, c, d, e, f = (float(v) for v in values[:6])
    if b != 0.0 or d != 0.0 or a <= 0.0 or e >= 0.0:
        raise CatalogError(f"{where}: proj:transform {list(values)} is not north-up")
    return a, b, c, d, e, f


def _nodata(asset: Mapping[str, Any], default: float) -> float:
    for band in asset.get("raster:bands") or ():
        if band.get("nodata") is not None:
            return float(band["nodata"])
    return default
