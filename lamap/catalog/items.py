"""Sentinel-2 and Sentinel-1 scenes: STAC item dicts normalised into small frozen records.

:class:`S2Scene` and :class:`S1Scene` are built by pure functions (:func:`parse_s2_item`,
:func:`parse_s1_item`): per-band href, EPSG, 6-element transform and shape (parsed once per
item), footprint, orbit, BOA offset, sun and view angles.

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

Hrefs are never signed here: :meth:`S2Scene.stac_item` signs only when given a signer.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from lamap.catalog.assets import (
    BandAsset,
    Transform,
    epsg_of,
    item_datetime,
    item_footprint,
    item_parts,
    optional_datetime,
    parse_datetime,
    read_band_asset,
    version_tuple,
)
from lamap.catalog.profiles import S2_BANDS, BoaRule, CatalogProfile, HrefSigner
from lamap.errors import CatalogError, CatalogWarning, InputError

__all__ = [
    "APPROX_RELATIVE_AZIMUTH_DEG",
    "BOA_OFFSET_DN",
    "MEAN_VIEW_ZENITH_DEG",
    "S1_DEFAULT_NODATA",
    "S2_DEFAULT_NODATA",
    "S1Scene",
    "S2Scene",
    "ViewSource",
    "boa_offset",
    "parse_s1_item",
    "parse_s1_items",
    "parse_s2_item",
]

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
#: Where a scene's view angles come from.
ViewSource: TypeAlias = Literal["item", "approximation"]

_GRD_COLLECTIONS = frozenset({"sentinel-1-grd"})


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
    item_id, props, raw_assets = item_parts(item)
    keys = profile.s2_keys_for(item_id, raw_assets)
    by_band = dict(keys)
    assets = tuple(
        read_band_asset(item_id, band, by_band[band], raw_assets, props, S2_DEFAULT_NODATA)
        for band in S2_BANDS
    )
    sun_zenith, sun_azimuth = _sun_angles(item_id, props)
    view_zenith, view_azimuth, view_source = _view_angles(props)
    baseline = _baseline(props)
    return S2Scene(
        id=item_id,
        collection=str(item.get("collection") or profile.s2_collection),
        datetime=item_datetime(item_id, props),
        platform=str(props.get("platform", "")).lower(),
        mgrs_tile=_mgrs_tile(item_id, props),
        relative_orbit=_s2_relative_orbit(item_id, props),
        orbit_state=props.get("sat:orbit_state"),
        epsg=epsg_of(props) or assets[0].epsg,
        assets=assets,
        footprint=item_footprint(item_id, item),
        cloud_cover=_float_or_none(props.get("eo:cloud_cover")),
        nodata_percentage=_float_or_none(props.get("s2:nodata_pixel_percentage")),
        processing_baseline=baseline,
        sequence=_sequence(item_id, props),
        generation_time=optional_datetime(props.get("s2:generation_time")),
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
    return BOA_OFFSET_DN if version_tuple(baseline) >= (4, 0) else 0


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
    item_id, props, raw_assets = item_parts(item)
    _refuse_grd(item_id, item, props)
    _require_polarisations(item_id, props, raw_assets, profile)
    assets = tuple(
        read_band_asset(item_id, band, key, raw_assets, props, S1_DEFAULT_NODATA)
        for band, key in profile.s1_asset_keys
    )
    start = optional_datetime(props.get("start_datetime"))
    end = optional_datetime(props.get("end_datetime"))
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
        footprint=item_footprint(item_id, item),
    )


def parse_s1_items(
    items: Iterable[Mapping[str, Any]], profile: CatalogProfile
) -> tuple[tuple[S1Scene, ...], tuple[str, ...]]:
    """Normalise Sentinel-1 RTC item dicts, skipping those without VV and VH.

    Skipped items are reported with one :class:`~lamap.errors.CatalogWarning`.

    Returns
    -------
    tuple
        ``(scenes sorted by datetime then id, ids of the skipped items)``.

    Raises
    ------
    CatalogError
        For GRD items or items with a missing grid (see :func:`parse_s1_item`).
    """
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


class _MissingPolarisationError(CatalogError):
    """An S1 item without VV and VH (skipped by :func:`parse_s1_items`)."""


def _refuse_grd(item_id: str, item: Mapping[str, Any], props: Mapping[str, Any]) -> None:
    collection = str(item.get("collection", ""))
    if collection in _GRD_COLLECTIONS or epsg_of(props) == 4326:
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


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


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

