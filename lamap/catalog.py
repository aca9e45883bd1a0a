"""STAC catalogs: profiles, one search per run, and normalised Sentinel scenes.

Real catalogs describe the same Sentinel products differently (see
``shared/fixtures/stac/PROVENANCE.md``). This module absorbs the differences at the boundary
and hands the rest of lamap small frozen records:

* :class:`CatalogProfile` says where a catalog is, which collections to search, which asset
  key holds each of lamap's bands (never the ambiguous ``common_name``: Planetary Computer
  calls B05, B06, B07 *and* B8A ``rededge``), how hrefs are signed and how the Sentinel-2
  BOA offset is read. Profiles: ``planetary-computer`` (default), ``earth-search``, any STAC
  API URL, or a local demo-world directory (:func:`open_catalog`).
* :class:`S2Scene` and :class:`S1Scene` are built from item dicts by pure functions
  (:func:`parse_s2_item`, :func:`parse_s1_item`): per-band href, EPSG, 6-element transform
  and shape (parsed once per item), footprint, orbit, BOA offset, sun and view angles.
* :func:`search` runs one paginated pystac-client search per collection over the whole bbox
  and date window; :func:`assign_to_tiles` assigns scenes to tiles by footprint.

Hrefs are never signed here: :meth:`CatalogProfile.sign` (Planetary Computer's SAS API,
imported lazily) is only called by whoever reads pixels, via :meth:`S2Scene.stac_item`.

Sentinel-2 reflectance is ``(DN + boa_offset) / 10000``:

* Planetary Computer (and the demo world) ship ESA's DNs: the offset is −1000 from
  processing baseline 04.00 on (compared numerically), else 0.
* Earth Search ``sentinel-2-l2a`` (v1): ``earthsearch:boa_offset_applied: true`` means Element
  84 already subtracted ESA's +1000 from the COG pixels (the data were harmonised to the old
  scale), so the offset to add is 0 — even though those items still say ``raster:bands``
  ``offset: -0.1``; the maintainers state the flag, not ``raster:bands``, is the truth
  (Element84/earth-search#9, #23). ``false`` means the pixels are ESA's: −1000 from baseline
  04.00, else 0. Known mis-tagged 2022 and 2025 items (Element84/earth-search#66, #71) cannot
  be detected from metadata.
* Items without the flag (Earth Search ``sentinel-2-c1-l2a``, other APIs) use
  ``raster:bands`` (offset / scale in DN: ``-0.1 / 0.0001 = -1000``), else the baseline rule.

View angles: the SNAP LAI network needs view zenith and the sun–view relative azimuth.
Earth Search ``sentinel-2-c1-l2a`` items carry tile means (``view:incidence_angle``,
``view:azimuth``) and they are used. Planetary Computer and Earth Search v1 items carry none,
so a swath-average geometry is used: view zenith :data:`MEAN_VIEW_ZENITH_DEG` (the MSI's
±10.3° field of view reaches about 11.6° on the ground at the swath edges; pixels spread
uniformly across the swath average about half of that) and relative azimuth
:data:`APPROX_RELATIVE_AZIMUTH_DEG` = 90°: pixels east and west of the ground track see the
satellite in opposite directions, so cos(relative azimuth), the network's input, averages 0
over the swath. Across the whole range of S2 geometries (view zenith 0–11.6°, relative
azimuth 0–180°) the network's LAI moves by about ±1.5 % for LAI ≈ 2 and ±3 % for LAI ≈ 4,
far below its own error; each scene records which source it used.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, TypeVar
from urllib.parse import urlparse

import shapely
from shapely.geometry import LineString, Point, mapping, shape
from shapely.geometry.base import BaseGeometry

from lamap.errors import CatalogError, InputError, LamapWarning

__all__ = [
    "APPROX_RELATIVE_AZIMUTH_DEG",
    "BOA_OFFSET_DN",
    "EARTH_SEARCH",
    "MEAN_VIEW_ZENITH_DEG",
    "PLANETARY_COMPUTER",
    "PROFILES",
    "S1_BANDS",
    "S1_DEFAULT_NODATA",
    "S2_BANDS",
    "S2_DEFAULT_NODATA",
    "BandAsset",
    "BBox",
    "CatalogProfile",
    "CatalogWarning",
    "Duplicate",
    "FootprintLike",
    "HrefSigner",
    "S1Scene",
    "S2Scene",
    "SearchClient",
    "SearchResult",
    "as_geometry",
    "assign_to_tiles",
    "boa_offset",
    "deduplicate_s2",
    "open_catalog",
    "parse_datetime",
    "parse_items",
    "parse_s1_item",
    "parse_s2_item",
    "search",
    "sign_planetary_computer",
]

log = logging.getLogger(__name__)

#: lamap's Sentinel-2 bands (10 and 20 m; the SNAP LAI bands plus B02, B08) and the SCL.
S2_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "SCL",
)
#: lamap's Sentinel-1 bands: gamma0 VV and VH (linear power).
S1_BANDS: tuple[str, ...] = ("vv", "vh")
#: ESA's BOA_ADD_OFFSET from processing baseline 04.00 on (the same for every band so far).
BOA_OFFSET_DN = -1000
#: View zenith (degrees) used when an item carries none: the swath average (see module doc).
MEAN_VIEW_ZENITH_DEG = 5.8
#: Relative azimuth (degrees) used when an item carries no view azimuth: cos(90°) = 0, the
#: swath average of cos(relative azimuth) (see module doc).
APPROX_RELATIVE_AZIMUTH_DEG = 90.0
#: Nodata when an asset declares none: ESA's DN 0 (S2 bands and SCL), PC RTC's −32768 (S1).
S2_DEFAULT_NODATA = 0.0
S1_DEFAULT_NODATA = -32768.0

BBox: TypeAlias = tuple[float, float, float, float]
#: A lon/lat bbox ``(W, S, E, N)`` (a point when W == E and S == N) or a shapely geometry.
FootprintLike: TypeAlias = BBox | Sequence[float] | BaseGeometry
Transform: TypeAlias = tuple[float, float, float, float, float, float]
HrefSigner: TypeAlias = Callable[[str], str]
BoaRule: TypeAlias = Literal["processing-baseline", "item-metadata"]
ViewSource: TypeAlias = Literal["item", "approximation"]

_PC_S2_KEYS = tuple((band, band) for band in S2_BANDS)
_ES_S2_KEYS = (
    ("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B05", "rededge1"),
    ("B06", "rededge2"), ("B07", "rededge3"), ("B08", "nir"), ("B8A", "nir08"),
    ("B11", "swir16"), ("B12", "swir22"), ("SCL", "scl"),
)
_S1_KEYS = (("vv", "vv"), ("vh", "vh"))
_GRD_COLLECTIONS = frozenset({"sentinel-1-grd"})
_ES_NO_S1 = (
    "Earth Search v1 offers Sentinel-1 only as 'sentinel-1-grd': Level-1 GRD amplitude in "
    "radar geometry (proj:epsg 4326, a degree grid), neither terrain-corrected gamma0 nor "
    "map-projected, on requester-pays s3://sentinel-s1-l1c; lamap's model takes RTC gamma0. "
    "Use the 'planetary-computer' catalog (collection 'sentinel-1-rtc') for Sentinel-1."
)


class CatalogWarning(LamapWarning):
    """A catalog returned items that lamap cannot use and skipped."""


class _HasFootprint(Protocol):
    """Anything with a lon/lat footprint (:class:`S2Scene`, :class:`S1Scene`)."""

    @property
    def footprint(self) -> BaseGeometry:
        """Lon/lat footprint of the valid data."""
        ...


SceneT = TypeVar("SceneT", bound=_HasFootprint)


# --------------------------------------------------------------------------- signing


def sign_planetary_computer(href: str) -> str:
    """Sign a Planetary Computer blob href with a SAS token (needs the network).

    Parameters
    ----------
    href : str
        An unsigned ``https://*.blob.core.windows.net/...`` href.

    Returns
    -------
    str
        The href with a SAS token appended.

    Raises
    ------
    CatalogError
        If the ``planetary-computer`` package is missing or the token request fails.
    """
    try:
        import planetary_computer
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise CatalogError(
            "signing Planetary Computer hrefs needs the 'planetary-computer' package; "
            "install it with `pip install planetary-computer`"
        ) from err
    try:
        return str(planetary_computer.sign(href))
    except OSError as err:
        raise CatalogError(
            f"could not sign {href} through the Planetary Computer SAS API: {err}; "
            "check the network or set PC_SDK_SUBSCRIPTION_KEY"
        ) from err


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class CatalogProfile:
    """Where a STAC catalog is and how to read its Sentinel items.

    Attributes
    ----------
    name : str
        Profile name (``planetary-computer``, ``earth-search``, ``stac-api``, ``local``).
    url : str or None
        STAC API root; None for a local world that is not served yet (see :meth:`with_url`).
    s2_collection : str
        Sentinel-2 L2A collection id.
    s1_collection : str or None
        Sentinel-1 RTC collection id, None when the catalog has none (see ``s1_note``).
    s2_asset_keys : tuple of (band, key) or None
        Asset key of each band of :data:`S2_BANDS`; None detects Planetary-Computer-style
        (``B04``) or Earth-Search-style (``red``) keys per item.
    s1_asset_keys : tuple of (band, key)
        Asset key of ``vv`` and ``vh``.
    signer : callable or None
        ``href -> signed href``, called only by :meth:`sign`.
    boa_offset_rule : {"processing-baseline", "item-metadata"}
        How :func:`boa_offset` reads the Sentinel-2 offset.
    s1_note : str
        Why there is no Sentinel-1 collection, for the error message.
    local_world : str or None
        The demo-world directory this profile serves, if any.
    """

    name: str
    url: str | None
    s2_collection: str = "sentinel-2-l2a"
    s1_collection: str | None = "sentinel-1-rtc"
    s2_asset_keys: tuple[tuple[str, str], ...] | None = _PC_S2_KEYS
    s1_asset_keys: tuple[tuple[str, str], ...] = _S1_KEYS
    signer: HrefSigner | None = None
    boa_offset_rule: BoaRule = "processing-baseline"
    s1_note: str = ""
    local_world: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Check that the asset keys name every band once."""
        if self.s2_asset_keys is not None:
            _check_bands("s2_asset_keys", self.s2_asset_keys, S2_BANDS)
        _check_bands("s1_asset_keys", self.s1_asset_keys, S1_BANDS)

    def with_url(self, url: str) -> CatalogProfile:
        """Return this profile pointing at ``url`` (e.g. a local ``StacServer``'s)."""
        return replace(self, url=url.rstrip("/"))

    def sign(self, href: str) -> str:
        """Return ``href`` signed for reading (unchanged when the catalog needs no signing)."""
        return href if self.signer is None else self.signer(href)

    def require_s1(self) -> str:
        """Return the Sentinel-1 collection id, or raise why this catalog has none.

        Raises
        ------
        CatalogError
            If the profile has no Sentinel-1 RTC collection.
        """
        if self.s1_collection is None:
            note = self.s1_note or "this catalog profile has no Sentinel-1 RTC collection"
            raise CatalogError(f"catalog {self.name!r}: {note}")
        return self.s1_collection

    def s2_keys_for(self, item_id: str, asset_keys: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """Return the (band, asset key) pairs to read from one Sentinel-2 item.

        Raises
        ------
        CatalogError
            If the keys are not configured and the item's assets match neither convention.
        """
        if self.s2_asset_keys is not None:
            return self.s2_asset_keys
        keys = set(asset_keys)
        for candidate in (_PC_S2_KEYS, _ES_S2_KEYS):
            if all(key in keys for _, key in candidate):
                return candidate
        raise CatalogError(
            f"item {item_id!r} from {self.url}: its assets {sorted(keys)} follow neither "
            "Planetary Computer's keys (B02 … B12, B8A, SCL) nor Earth Search's (blue, green, "
            "red, rededge1-3, nir, nir08, swir16, swir22, scl); give the keys explicitly with "
            "open_catalog(..., s2_asset_keys=...)"
        )


def _check_bands(what: str, pairs: tuple[tuple[str, str], ...], bands: tuple[str, ...]) -> None:
    named = [band for band, _ in pairs]
    if sorted(named) != sorted(bands):
        raise InputError(f"{what} must name each of {bands} once, got {named}")


PLANETARY_COMPUTER = CatalogProfile(
    name="planetary-computer",
    url="https://planetarycomputer.microsoft.com/api/stac/v1",
    signer=sign_planetary_computer,
)
EARTH_SEARCH = CatalogProfile(
    name="earth-search",
    url="https://earth-search.aws.element84.com/v1",
    s1_collection=None,
    s2_asset_keys=_ES_S2_KEYS,
    boa_offset_rule="item-metadata",
    s1_note=_ES_NO_S1,
)
#: Named profiles; ``planetary-computer`` is the default for real data.
PROFILES: dict[str, CatalogProfile] = {p.name: p for p in (PLANETARY_COMPUTER, EARTH_SEARCH)}


def open_catalog(
    source: str | Path = "planetary-computer",
    *,
    s2_collection: str | None = None,
    s1_collection: str | None = None,
) -> CatalogProfile:
    """Resolve a ``--catalog`` value to a :class:`CatalogProfile` (no network access).

    Parameters
    ----------
    source : str or Path
        A profile name (``planetary-computer``, ``earth-search``), an ``http(s)://`` STAC API
        URL, or a local demo-world directory (one holding ``world.json``). Other URLs get
        Planetary Computer's collection ids, per-item detection of the asset keys and the
        metadata-first BOA rule; the two known hosts get their named profile.
    s2_collection, s1_collection : str, optional
        Override the collection ids (e.g. Earth Search's ``sentinel-2-c1-l2a``).

    Returns
    -------
    CatalogProfile
        For a local world, ``url`` is None until :meth:`CatalogProfile.with_url` gives the
        address of the STAC API serving it (``lamap.stac_server``).

    Raises
    ------
    CatalogError
        If ``source`` is none of the above.
    """
    profile = _resolve(str(source))
    changes: dict[str, Any] = {}
    if s2_collection is not None:
        changes["s2_collection"] = s2_collection
    if s1_collection is not None:
        changes["s1_collection"] = s1_collection
    return replace(profile, **changes) if changes else profile


def _resolve(source: str) -> CatalogProfile:
    if source in PROFILES:
        return PROFILES[source]
    if source.startswith(("http://", "https://")):
        return _profile_for_url(source.rstrip("/"))
    path = Path(source).expanduser()
    if (path / "world.json").is_file():
        return CatalogProfile(name="local", url=None, local_world=str(path.resolve()))
    hint = " (a directory without world.json)" if path.is_dir() else ""
    raise CatalogError(
        f"unknown catalog {source!r}{hint}; use one of {sorted(PROFILES)}, an http(s):// STAC "
        "API URL, or a demo-world directory made by `lamap demo` (it holds world.json)"
    )


def _profile_for_url(url: str) -> CatalogProfile:
    host = urlparse(url).hostname or ""
    for profile in PROFILES.values():
        known = urlparse(profile.url or "").hostname
        if host == known:
            return replace(profile, url=url)
    return CatalogProfile(
        name="stac-api", url=url, s2_asset_keys=None, boa_offset_rule="item-metadata"
    )


# --------------------------------------------------------------------------- small parsers


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


def _version(text: str) -> tuple[int, ...]:
    """``"05.10"`` → ``(5, 10)``: processing baselines compare numerically."""
    return tuple(int(part) for part in re.findall(r"\d+", text))


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


def _epsg(fields: Mapping[str, Any]) -> int | None:
    if fields.get("proj:epsg") is not None:
        return int(fields["proj:epsg"])
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


# --------------------------------------------------------------------------- assets


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
    def bounds(self) -> BBox:
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


def _band_asset(
    item_id: str,
    band: str,
    key: str,
    assets: Mapping[str, Any],
    properties: Mapping[str, Any],
    default_nodata: float,
) -> BandAsset:
    asset = assets.get(key)
    if not isinstance(asset, Mapping) or "href" not in asset:
        raise CatalogError(
            f"item {item_id!r} has no asset {key!r} for band {band} (assets: {sorted(assets)})"
        )
    where = f"item {item_id!r} asset {key!r}"
    epsg = _epsg(asset) or _epsg(properties)
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


def _nodata(asset: Mapping[str, Any], default: float) -> float:
    for band in asset.get("raster:bands") or ():
        if band.get("nodata") is not None:
            return float(band["nodata"])
    return default


# --------------------------------------------------------------------------- Sentinel-2


@dataclass(frozen=True)
class S2Scene:
    """One Sentinel-2 L2A item, normalised.

    Attributes
    ----------
    id, collection : str
        Item and collection ids.
    datetime : datetime.datetime
        Sensing time (UTC).
    platform : str
        ``sentinel-2a`` …, lower case.
    mgrs_tile : str or None
        MGRS tile (``13TDE``).
    relative_orbit : int or None
        ``sat:relative_orbit``, else the ``_Rnnn_`` of ``s2:product_uri`` (Earth Search).
    orbit_state : str or None
        ``sat:orbit_state`` where the catalog gives it.
    epsg : int
        The item's UTM CRS.
    assets : tuple of BandAsset
        One per band of :data:`S2_BANDS`, in that order.
    footprint : shapely geometry
        Lon/lat footprint of valid data.
    cloud_cover, nodata_percentage : float or None
        ``eo:cloud_cover`` and ``s2:nodata_pixel_percentage``.
    processing_baseline : str or None
        ``s2:processing_baseline`` (``"05.10"``).
    sequence : int
        Earth Search's processing sequence (``_1_`` in ``S2B_13SDV_20200501_1_L2A``), else 0.
    generation_time : datetime.datetime or None
        ``s2:generation_time``.
    boa_offset : int
        DN offset: reflectance = (DN + boa_offset) / 10000 (see :func:`boa_offset`).
    sun_zenith, sun_azimuth : float
        Mean solar angles (degrees).
    view_zenith : float
        Mean view zenith (degrees), from the item or :data:`MEAN_VIEW_ZENITH_DEG`.
    view_azimuth : float or None
        Mean view azimuth (degrees) when the item gives it.
    view_source : {"item", "approximation"}
        Where the view angles come from.
    """

    id: str
    collection: str
    datetime: dt.datetime
    platform: str
    mgrs_tile: str | None
    relative_orbit: int | None
    orbit_state: str | None
    epsg: int
    assets: tuple[BandAsset, ...]
    footprint: BaseGeometry
    cloud_cover: float | None
    nodata_percentage: float | None
    processing_baseline: str | None
    sequence: int
    generation_time: dt.datetime | None
    boa_offset: int
    sun_zenith: float
    sun_azimuth: float
    view_zenith: float
    view_azimuth: float | None
    view_source: ViewSource

    @property
    def day(self) -> dt.date:
        """UTC acquisition date."""
        return self.datetime.date()

    @property
    def relative_azimuth(self) -> float:
        """Sun–view relative azimuth in [0, 180] degrees, as the SNAP network takes it."""
        if self.view_azimuth is None:
            return APPROX_RELATIVE_AZIMUTH_DEG
        delta = abs(self.sun_azimuth - self.view_azimuth) % 360.0
        return 360.0 - delta if delta > 180.0 else delta

    def asset(self, band: str) -> BandAsset:
        """Return the asset of one lamap band (``B04``, ``SCL`` …)."""
        return _asset(self.id, self.assets, band)

    def stac_item(self, signer: HrefSigner | None = None) -> dict[str, Any]:
        """Return a minimal STAC item for stackstac, keyed by lamap band names.

        Parameters
        ----------
        signer : callable, optional
            Applied to every href (pass ``profile.sign`` when pixels will be read).

        Returns
        -------
        dict
            Projection fields on each asset (6-element transforms), nodata in
            ``raster:bands`` and no scale/offset: apply ``(DN + lamap:boa_offset) / 10000``
            yourself. Properties carry the angles and the offset under ``lamap:``.
        """
        props = {
            "lamap:boa_offset": self.boa_offset,
            "lamap:sun_zenith": self.sun_zenith,
            "lamap:sun_azimuth": self.sun_azimuth,
            "lamap:view_zenith": self.view_zenith,
            "lamap:relative_azimuth": self.relative_azimuth,
            "lamap:view_source": self.view_source,
            "s2:processing_baseline": self.processing_baseline,
            "eo:cloud_cover": self.cloud_cover,
        }
        return _stac_item(self, self.assets, props, signer)


def parse_s2_item(item: Mapping[str, Any], profile: CatalogProfile) -> S2Scene:
    """Normalise one Sentinel-2 L2A item dict.

    Parameters
    ----------
    item : mapping
        A STAC item as JSON (e.g. from ``ItemSearch.items_as_dicts()``).
    profile : CatalogProfile
        Gives the asset keys and the BOA offset rule.

    Returns
    -------
    S2Scene

    Raises
    ------
    CatalogError
        If a band, its grid, the datetime or the sun angles are missing or malformed.
    """
    item_id, props, raw_assets = _item_parts(item)
    keys = profile.s2_keys_for(item_id, raw_assets)
    by_band = dict(keys)
    assets = tuple(
        _band_asset(item_id, band, by_band[band], raw_assets, props, S2_DEFAULT_NODATA)
        for band in S2_BANDS
    )
    sun_zenith, sun_azimuth = _sun_angles(item_id, props)
    view_zenith, view_azimuth, view_source = _view_angles(props)
    baseline = _baseline(props)
    return S2Scene(
        id=item_id,
        collection=str(item.get("collection") or profile.s2_collection),
        datetime=_item_datetime(item_id, props),
        platform=str(props.get("platform", "")).lower(),
        mgrs_tile=_mgrs_tile(item_id, props),
        relative_orbit=_s2_relative_orbit(item_id, props),
        orbit_state=props.get("sat:orbit_state"),
        epsg=_epsg(props) or assets[0].epsg,
        assets=assets,
        footprint=_footprint(item_id, item),
        cloud_cover=_float_or_none(props.get("eo:cloud_cover")),
        nodata_percentage=_float_or_none(props.get("s2:nodata_pixel_percentage")),
        processing_baseline=baseline,
        sequence=_sequence(item_id, props),
        generation_time=_optional_datetime(props.get("s2:generation_time")),
        boa_offset=boa_offset(props, raw_assets, rule=profile.boa_offset_rule, item_id=item_id),
        sun_zenith=sun_zenith,
        sun_azimuth=sun_azimuth,
        view_zenith=view_zenith,
        view_azimuth=view_azimuth,
        view_source=view_source,
    )


def boa_offset(
    properties: Mapping[str, Any],
    assets: Mapping[str, Any],
    *,
    rule: BoaRule = "processing-baseline",
    item_id: str = "?",
) -> int:
    """Return the DN offset of a Sentinel-2 L2A item: reflectance = (DN + offset) / 10000.

    Parameters
    ----------
    properties, assets : mapping
        The item's ``properties`` and ``assets``.
    rule : {"processing-baseline", "item-metadata"}
        ``processing-baseline`` (Planetary Computer, demo world): −1000 from baseline 04.00
        on, else 0. ``item-metadata`` (Earth Search, other APIs): Earth Search's
        ``earthsearch:boa_offset_applied`` first (true: the COGs were already shifted back,
        offset 0; false: the baseline rule), then ``raster:bands`` offset/scale, then the
        baseline rule.
    item_id : str
        For messages.

    Returns
    -------
    int
        0 or −1000 in practice.

    Raises
    ------
    CatalogError
        If nothing tells the offset, or band assets disagree.
    """
    if rule == "item-metadata":
        applied = properties.get("earthsearch:boa_offset_applied")
        if applied is True:
            return 0
        if applied is None:
            from_raster = _raster_offset(item_id, assets)
            if from_raster is not None:
                return from_raster
    baseline = _baseline(properties)
    if baseline is None:
        raise CatalogError(
            f"item {item_id!r}: cannot tell its BOA offset, it has no s2:processing_baseline "
            "(nor s2:product_uri with _Nxxyy_); lamap cannot scale its reflectance"
        )
    return BOA_OFFSET_DN if _version(baseline) >= (4, 0) else 0


def _raster_offset(item_id: str, assets: Mapping[str, Any]) -> int | None:
    offsets = set()
    for asset in assets.values():
        if "reflectance" not in (asset.get("roles") or ()):
            continue
        for band in asset.get("raster:bands") or ():
            if band.get("scale"):
                offsets.add(round(float(band.get("offset") or 0.0) / float(band["scale"])))
    if len(offsets) > 1:
        raise CatalogError(
            f"item {item_id!r}: reflectance assets declare different offsets {sorted(offsets)} "
            "(in DN); lamap applies one offset per item"
        )
    return offsets.pop() if offsets else None


def _baseline(props: Mapping[str, Any]) -> str | None:
    if props.get("s2:processing_baseline"):
        return str(props["s2:processing_baseline"])
    found = re.search(r"_N(\d{2})(\d{2})_", str(props.get("s2:product_uri", "")))
    return f"{found.group(1)}.{found.group(2)}" if found else None


def _sun_angles(item_id: str, props: Mapping[str, Any]) -> tuple[float, float]:
    if "s2:mean_solar_zenith" in props and "s2:mean_solar_azimuth" in props:
        return float(props["s2:mean_solar_zenith"]), float(props["s2:mean_solar_azimuth"])
    if "view:sun_elevation" in props and "view:sun_azimuth" in props:
        return 90.0 - float(props["view:sun_elevation"]), float(props["view:sun_azimuth"])
    raise CatalogError(
        f"item {item_id!r} has no sun angles (neither s2:mean_solar_zenith/azimuth nor "
        "view:sun_elevation/azimuth); the SNAP LAI network needs the sun zenith"
    )


def _view_angles(props: Mapping[str, Any]) -> tuple[float, float | None, ViewSource]:
    if props.get("view:incidence_angle") is not None:
        azimuth = _float_or_none(props.get("view:azimuth"))
        return float(props["view:incidence_angle"]), azimuth, "item"
    return MEAN_VIEW_ZENITH_DEG, None, "approximation"


def _s2_relative_orbit(item_id: str, props: Mapping[str, Any]) -> int | None:
    if props.get("sat:relative_orbit") is not None:
        return int(props["sat:relative_orbit"])
    for text in (props.get("s2:product_uri", ""), item_id):
        found = re.search(r"_R(\d{3})_", str(text))
        if found:
            return int(found.group(1))
    return None


def _mgrs_tile(item_id: str, props: Mapping[str, Any]) -> str | None:
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    code = str(props.get("grid:code", ""))
    if code.startswith("MGRS-"):
        return code[5:]
    found = re.search(r"_T?(\d{1,2}[C-X][A-Z]{2})_", item_id)
    return found.group(1) if found else None


def _sequence(item_id: str, props: Mapping[str, Any]) -> int:
    if props.get("s2:sequence") is not None:
        return int(props["s2:sequence"])
    found = re.search(r"_(\d+)_L2A$", item_id)
    return int(found.group(1)) if found else 0


# --------------------------------------------------------------------------- Sentinel-1


@dataclass(frozen=True)
class S1Scene:
    """One Sentinel-1 RTC item (a slice of a pass), normalised.

    Attributes
    ----------
    id, collection : str
        Item and collection ids.
    datetime : datetime.datetime
        Item ``datetime`` (UTC; PC RTC: the slice's mid time).
    start, end : datetime.datetime or None
        ``start_datetime``/``end_datetime``, parsed whatever their separator.
    platform : str
        ``sentinel-1a`` …, lower case.
    orbit_state : str or None
        ``ascending`` or ``descending``.
    relative_orbit, absolute_orbit : int or None
        Track and orbit numbers; the slices of one pass share the absolute orbit.
    polarizations : tuple of str
        ``sar:polarizations``.
    instrument_mode : str or None
        ``IW`` …
    epsg : int
        UTM CRS of the RTC raster.
    transform : tuple of 6 float
        From the item's ``proj:transform`` (9 elements on Planetary Computer).
    shape : tuple of 2 int
        ``(rows, cols)`` from ``proj:shape`` (``s1:shape`` is reversed; not used).
    nodata : float
        −32768 on Planetary Computer RTC (``raster:bands``).
    assets : tuple of BandAsset
        ``vv`` and ``vh``.
    footprint : shapely geometry
        Lon/lat footprint.
    """

    id: str
    collection: str
    datetime: dt.datetime
    start: dt.datetime | None
    end: dt.datetime | None
    platform: str
    orbit_state: str | None
    relative_orbit: int | None
    absolute_orbit: int | None
    polarizations: tuple[str, ...]
    instrument_mode: str | None
    epsg: int
    transform: Transform
    shape: tuple[int, int]
    nodata: float
    assets: tuple[BandAsset, ...]
    footprint: BaseGeometry

    @property
    def day(self) -> dt.date:
        """UTC acquisition date."""
        return self.datetime.date()

    @property
    def pass_key(self) -> tuple[str, str]:
        """Identity of the pass this slice belongs to (platform and absolute orbit)."""
        if self.absolute_orbit is not None:
            return self.platform, f"orbit {self.absolute_orbit}"
        return self.platform, f"{self.orbit_state} R{self.relative_orbit} {self.day}"

    def asset(self, band: str) -> BandAsset:
        """Return the asset of ``vv`` or ``vh``."""
        return _asset(self.id, self.assets, band)

    def stac_item(self, signer: HrefSigner | None = None) -> dict[str, Any]:
        """Return a minimal STAC item for stackstac (see :meth:`S2Scene.stac_item`)."""
        props = {
            "sat:orbit_state": self.orbit_state,
            "sat:relative_orbit": self.relative_orbit,
            "sar:polarizations": list(self.polarizations),
        }
        return _stac_item(self, self.assets, props, signer)


def parse_s1_item(item: Mapping[str, Any], profile: CatalogProfile) -> S1Scene:
    """Normalise one Sentinel-1 RTC item dict.

    Parameters
    ----------
    item : mapping
        A STAC item as JSON.
    profile : CatalogProfile
        Gives the ``vv``/``vh`` asset keys.

    Returns
    -------
    S1Scene

    Raises
    ------
    CatalogError
        For GRD items (not terrain-corrected, not map-projected), items without VV and VH
        (e.g. HH/HV) or with a missing grid.
    """
    item_id, props, raw_assets = _item_parts(item)
    _refuse_grd(item_id, item, props)
    _require_polarisations(item_id, props, raw_assets, profile)
    assets = tuple(
        _band_asset(item_id, band, key, raw_assets, props, S1_DEFAULT_NODATA)
        for band, key in profile.s1_asset_keys
    )
    start = _optional_datetime(props.get("start_datetime"))
    end = _optional_datetime(props.get("end_datetime"))
    return S1Scene(
        id=item_id,
        collection=str(item.get("collection") or profile.s1_collection),
        datetime=_s1_datetime(item_id, props, start, end),
        start=start,
        end=end,
        platform=str(props.get("platform", "")).lower(),
        orbit_state=props.get("sat:orbit_state"),
        relative_orbit=_int_or_none(props.get("sat:relative_orbit")),
        absolute_orbit=_int_or_none(props.get("sat:absolute_orbit")),
        polarizations=tuple(str(p).upper() for p in props.get("sar:polarizations") or ()),
        instrument_mode=props.get("sar:instrument_mode"),
        epsg=assets[0].epsg,
        transform=assets[0].transform,
        shape=assets[0].shape,
        nodata=assets[0].nodata,
        assets=assets,
        footprint=_footprint(item_id, item),
    )


class _MissingPolarisationError(CatalogError):
    """An S1 item without VV and VH (skipped by :func:`parse_items`)."""


def _refuse_grd(item_id: str, item: Mapping[str, Any], props: Mapping[str, Any]) -> None:
    collection = str(item.get("collection", ""))
    if collection in _GRD_COLLECTIONS or _epsg(props) == 4326:
        raise CatalogError(
            f"item {item_id!r} ({collection or 'no collection'}) is Sentinel-1 GRD, not "
            "radiometrically terrain-corrected gamma0 in a map projection; lamap needs RTC. "
            "Use the 'planetary-computer' catalog, collection 'sentinel-1-rtc'"
        )


def _require_polarisations(
    item_id: str,
    props: Mapping[str, Any],
    assets: Mapping[str, Any],
    profile: CatalogProfile,
) -> None:
    missing = [key for _, key in profile.s1_asset_keys if key not in assets]
    if missing:
        pols = props.get("sar:polarizations")
        raise _MissingPolarisationError(
            f"item {item_id!r} has polarisations {pols} and no asset {missing}; "
            "the model needs VV and VH (dual-pol 1SDV)"
        )


def _s1_datetime(
    item_id: str, props: Mapping[str, Any], start: dt.datetime | None, end: dt.datetime | None
) -> dt.datetime:
    if props.get("datetime"):
        return parse_datetime(props["datetime"])
    if start is not None and end is not None:
        return start + (end - start) / 2
    raise CatalogError(f"item {item_id!r} has neither datetime nor start/end_datetime")


# --------------------------------------------------------------------------- shared helpers


def _item_parts(item: Mapping[str, Any]) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    item_id = str(item.get("id", "?"))
    props = item.get("properties")
    assets = item.get("assets")
    if not isinstance(props, Mapping) or not isinstance(assets, Mapping):
        raise CatalogError(f"item {item_id!r} is not a STAC item (no properties or assets)")
    return item_id, props, assets


def _item_datetime(item_id: str, props: Mapping[str, Any]) -> dt.datetime:
    value = props.get("datetime") or props.get("start_datetime")
    if not value:
        raise CatalogError(f"item {item_id!r} has no datetime")
    try:
        return parse_datetime(value)
    except CatalogError as err:
        raise CatalogError(f"item {item_id!r}: {err}") from err


def _optional_datetime(value: Any) -> dt.datetime | None:
    return parse_datetime(value) if value else None


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _footprint(item_id: str, item: Mapping[str, Any]) -> BaseGeometry:
    if item.get("geometry"):
        geometry = shape(item["geometry"])
    elif item.get("bbox"):
        geometry = shapely.box(*item["bbox"][:2], *item["bbox"][-2:])
    else:
        raise CatalogError(f"item {item_id!r} has neither geometry nor bbox")
    return geometry if geometry.is_valid else geometry.buffer(0)


def _asset(item_id: str, assets: tuple[BandAsset, ...], band: str) -> BandAsset:
    for asset in assets:
        if asset.band == band:
            return asset
    raise InputError(f"item {item_id!r} has no band {band!r}; bands: {[a.band for a in assets]}")


def _stac_item(
    scene: S2Scene | S1Scene,
    assets: tuple[BandAsset, ...],
    extra: dict[str, Any],
    signer: HrefSigner | None,
) -> dict[str, Any]:
    sign = signer or (lambda href: href)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": scene.id,
        "collection": scene.collection,
        "geometry": mapping(scene.footprint),
        "bbox": list(scene.footprint.bounds),
        "properties": {
            "datetime": scene.datetime.isoformat().replace("+00:00", "Z"),
            "platform": scene.platform,
            "proj:epsg": scene.epsg,
            **extra,
        },
        "assets": {a.band: a.stac_fields(sign(a.href)) for a in assets},
        "links": [],
    }


# --------------------------------------------------------------------------- de-duplication


@dataclass(frozen=True)
class Duplicate:
    """A Sentinel-2 item dropped as a reprocessed copy of the same acquisition.

    Attributes
    ----------
    kept, dropped : str
        Item ids.
    reason : str
        Why ``kept`` won.
    """

    kept: str
    dropped: str
    reason: str


def deduplicate_s2(scenes: Iterable[S2Scene]) -> tuple[tuple[S2Scene, ...], tuple[Duplicate, ...]]:
    """Keep one item per acquisition (platform, MGRS tile, sensing second).

    Earth Search holds reprocessed copies of one acquisition (``_0_`` baseline 02.14 and
    ``_1_`` baseline 05.00); the kept one has the newest processing baseline, then the
    highest sequence, then the latest generation time, then the largest id: deterministic
    whatever the order the catalog returned them in. Drops are logged at DEBUG level and
    returned.

    Returns
    -------
    tuple
        ``(kept scenes sorted by datetime then id, duplicates sorted by dropped id)``.
    """
    groups: dict[tuple[str, str, dt.datetime], list[S2Scene]] = {}
    for scene in scenes:
        tile = scene.mgrs_tile or scene.id
        key = (scene.platform, tile, scene.datetime.replace(microsecond=0))
        groups.setdefault(key, []).append(scene)
    kept: list[S2Scene] = []
    dropped: list[Duplicate] = []
    for group in groups.values():
        ranked = sorted(group, key=_processing_rank, reverse=True)
        kept.append(ranked[0])
        for loser in ranked[1:]:
            record = Duplicate(ranked[0].id, loser.id, _why(ranked[0], loser))
            log.debug("dropped S2 item %s for %s: %s", loser.id, record.kept, record.reason)
            dropped.append(record)
    kept.sort(key=lambda s: (s.datetime, s.id))
    dropped.sort(key=lambda d: d.dropped)
    return tuple(kept), tuple(dropped)


def _processing_rank(scene: S2Scene) -> tuple[tuple[int, ...], int, str, str]:
    generated = scene.generation_time.isoformat() if scene.generation_time else ""
    return _version(scene.processing_baseline or ""), scene.sequence, generated, scene.id


def _why(kept: S2Scene, loser: S2Scene) -> str:
    return (
        f"same acquisition; kept baseline {kept.processing_baseline} sequence {kept.sequence} "
        f"over baseline {loser.processing_baseline} sequence {loser.sequence}"
    )


# --------------------------------------------------------------------------- search


class _ItemsAsDicts(Protocol):
    def items_as_dicts(self) -> Iterator[dict[str, Any]]: ...


class SearchClient(Protocol):
    """What :func:`search` needs from a client: pystac-client's ``Client.search``."""

    def search(
        self,
        *,
        collections: list[str],
        bbox: list[float],
        datetime: str,
        max_items: int | None,
        limit: int,
    ) -> _ItemsAsDicts:
        """Return a paginated search (a pystac-client ``ItemSearch``)."""
        ...


@dataclass(frozen=True)
class SearchResult:
    """Everything one run found, normalised.

    Attributes
    ----------
    catalog : str
        Profile name.
    bbox : tuple of 4 float
        Searched lon/lat bbox.
    start, end : datetime.datetime
        Searched window (UTC, inclusive).
    s2 : tuple of S2Scene
        De-duplicated, sorted by datetime then id.
    s1 : tuple of S1Scene
        Sorted by dt.datetime then id (empty when Sentinel-1 was not searched).
    duplicates : tuple of Duplicate
        Sentinel-2 items dropped as reprocessed copies.
    skipped : tuple of str
        Ids of Sentinel-1 items without VV/VH.
    """

    catalog: str
    bbox: BBox
    start: dt.datetime
    end: dt.datetime
    s2: tuple[S2Scene, ...]
    s1: tuple[S1Scene, ...]
    duplicates: tuple[Duplicate, ...] = ()
    skipped: tuple[str, ...] = ()


def search(
    profile: CatalogProfile,
    bbox: Sequence[float],
    start: dt.date | dt.datetime | str,
    end: dt.date | dt.datetime | str,
    *,
    client: SearchClient | None = None,
    sentinel1: bool = True,
    page_size: int = 100,
) -> SearchResult:
    """Search a catalog once for the whole area and window, and normalise the items.

    One pystac-client search per collection, paginated by the client (``max_items=None``),
    read with ``items_as_dicts()`` (no pystac objects). Call it while planning, never while
    building a dask graph. Hrefs stay unsigned.

    Parameters
    ----------
    profile : CatalogProfile
        The catalog (:func:`open_catalog`).
    bbox : sequence of 4 float
        ``(W, S, E, N)`` in degrees.
    start, end : date, datetime or str
        Inclusive window; a date covers its whole UTC day.
    client : SearchClient, optional
        An open ``pystac_client.Client`` (or anything with its ``search``); opened from
        ``profile.url`` when omitted.
    sentinel1 : bool
        Also search the Sentinel-1 RTC collection (an error where the profile has none).
    page_size : int
        Items per page (the API's ``limit``).

    Returns
    -------
    SearchResult

    Raises
    ------
    InputError
        For a malformed bbox or window.
    CatalogError
        If the catalog cannot be reached or searched, has no Sentinel-1 RTC, or returns
        items lamap cannot read.
    """
    box = _normalise_bbox(bbox)
    window = _window(start, end)
    collections = [profile.s2_collection] + ([profile.require_s1()] if sentinel1 else [])
    api = client if client is not None else _open_client(profile)
    items = [
        item
        for collection in collections
        for item in _search_collection(api, profile, collection, box, window, page_size)
    ]
    s2, s1, duplicates, skipped = parse_items(items, profile, sentinel1=sentinel1)
    return SearchResult(profile.name, box, window[0], window[1], s2, s1, duplicates, skipped)


def parse_items(
    items: Iterable[Mapping[str, Any]],
    profile: CatalogProfile,
    *,
    sentinel1: bool = True,
) -> tuple[tuple[S2Scene, ...], tuple[S1Scene, ...], tuple[Duplicate, ...], tuple[str, ...]]:
    """Normalise item dicts of the profile's collections; other collections are ignored.

    Sentinel-1 items without VV/VH are skipped with one :class:`CatalogWarning`.

    Returns
    -------
    tuple
        ``(s2 scenes, s1 scenes, duplicates, skipped S1 ids)``, scenes sorted by time.
    """
    s2_items, s1_items = [], []
    for item in items:
        collection = item.get("collection")
        if collection == profile.s2_collection:
            s2_items.append(item)
        elif sentinel1 and collection == profile.s1_collection:
            s1_items.append(item)
    s2, duplicates = deduplicate_s2(parse_s2_item(it, profile) for it in s2_items)
    s1, skipped = _parse_s1_items(s1_items, profile)
    return s2, s1, duplicates, skipped


def _parse_s1_items(
    items: Iterable[Mapping[str, Any]], profile: CatalogProfile
) -> tuple[tuple[S1Scene, ...], tuple[str, ...]]:
    scenes: list[S1Scene] = []
    skipped: list[str] = []
    for item in items:
        try:
            scenes.append(parse_s1_item(item, profile))
        except _MissingPolarisationError:
            skipped.append(str(item.get("id")))
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} Sentinel-1 items from {profile.name} without VV and VH "
            f"(e.g. {skipped[0]}); those passes are not used",
            CatalogWarning,
            stacklevel=3,
        )
    scenes.sort(key=lambda s: (s.datetime, s.id))
    return tuple(scenes), tuple(skipped)


def _open_client(profile: CatalogProfile) -> SearchClient:
    if profile.url is None:
        raise CatalogError(
            f"catalog {profile.name!r} ({profile.local_world}) has no STAC API URL yet; serve "
            "it with lamap.stac_server.StacServer and use profile.with_url(server.url)"
        )
    import pystac_client
    from pystac.errors import STACError
    from pystac_client.exceptions import APIError

    try:
        client: SearchClient = pystac_client.Client.open(profile.url)
    except (APIError, OSError, STACError, ValueError) as err:
        raise CatalogError(
            f"could not open the STAC API at {profile.url}: {err}; check the URL and the network"
        ) from err
    return client


def _search_collection(
    client: SearchClient,
    profile: CatalogProfile,
    collection: str,
    bbox: BBox,
    window: tuple[dt.datetime, dt.datetime],
    page_size: int = 100,
) -> list[dict[str, Any]]:
    from pystac_client.exceptions import APIError

    interval = "/".join(t.isoformat().replace("+00:00", "Z") for t in window)
    try:
        found = client.search(
            collections=[collection],
            bbox=list(bbox),
            datetime=interval,
            max_items=None,
            limit=page_size,
        )
        items = [
            item
            for item in found.items_as_dicts()
            if item.get("collection", collection) == collection
        ]
    except (APIError, OSError) as err:
        raise CatalogError(
            f"searching {collection!r} at {profile.url} over {list(bbox)} {interval} failed: "
            f"{err}; check the collection id and the network, or try again later"
        ) from err
    for item in items:
        item.setdefault("collection", collection)
    log.debug("%s: %d items in %s", profile.name, len(items), collection)
    return items


def _normalise_bbox(bbox: Sequence[float]) -> BBox:
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError) as err:
        raise InputError(f"bbox must be 4 numbers W,S,E,N in degrees, got {bbox!r}") from err
    ok = all(map(math.isfinite, (west, south, east, north)))
    if not ok or not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InputError(
            f"bbox {bbox!r} is not W,S,E,N in degrees with W <= E and S <= N "
            "(lon in [-180, 180], lat in [-90, 90]); antimeridian-crossing boxes must be split"
        )
    return west, south, east, north


def _window(
    start: dt.date | dt.datetime | str, end: dt.date | dt.datetime | str
) -> tuple[dt.datetime, dt.datetime]:
    first = _as_datetime(start, dt.time.min)
    last = _as_datetime(end, dt.time.max)
    if last < first:
        raise InputError(f"the search window ends ({end}) before it starts ({start})")
    return first, last


def _as_datetime(value: dt.date | dt.datetime | str, clock: dt.time) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value) if len(value) == 10 else parse_datetime(value)
        except (ValueError, CatalogError) as err:
            raise InputError(f"not a date (YYYY-MM-DD) or ISO datetime: {value!r}") from err
    if isinstance(value, dt.datetime):
        return parse_datetime(value)
    return dt.datetime.combine(value, clock, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- footprints


def as_geometry(footprint: FootprintLike) -> BaseGeometry:
    """Return a lon/lat shapely geometry for a bbox ``(W, S, E, N)`` or a geometry.

    A bbox with W == E and S == N is a point; with one zero side, a line.

    Raises
    ------
    InputError
        If the bbox is malformed.
    """
    if isinstance(footprint, BaseGeometry):
        return footprint
    west, south, east, north = _normalise_bbox(footprint)
    if west == east and south == north:
        return Point(west, south)
    if west == east or south == north:
        return LineString([(west, south), (east, north)])
    return shapely.box(west, south, east, north)


def assign_to_tiles(
    scenes: Iterable[SceneT], tiles: Mapping[str, FootprintLike]
) -> dict[str, tuple[SceneT, ...]]:
    """Assign scenes to tiles by footprint intersection.

    Parameters
    ----------
    scenes : iterable of S2Scene or S1Scene
        Normalised scenes.
    tiles : mapping
        Tile id → lon/lat bbox ``(W, S, E, N)`` (``tile.lonlat_bounds()``) or geometry.

    Returns
    -------
    dict
        Tile id → the scenes intersecting it, in input order (every tile is a key).
    """
    scene_list = list(scenes)
    tree = shapely.STRtree([s.footprint for s in scene_list])
    assigned: dict[str, tuple[SceneT, ...]] = {}
    for tile_id, footprint in tiles.items():
        hits = tree.query(as_geometry(footprint), predicate="intersects")
        assigned[tile_id] = tuple(scene_list[i] for i in sorted(int(h) for h in hits))
    return assigned

