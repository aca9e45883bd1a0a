"""One search per run: pystac-client over the whole area and window, de-duplicated scenes.

:func:`search` runs one paginated pystac-client search per collection over the whole bbox and
date window and normalises the items (:func:`parse_items`); reprocessed copies of one
Sentinel-2 acquisition are dropped by :func:`deduplicate_s2`. :func:`assign_to_tiles` assigns
scenes to tiles by footprint; :func:`as_geometry` turns a bbox, a point or a geometry into a
lon/lat footprint.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar

import shapely
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from lamap._inputs import BBox, BBoxLike, DateLike, as_bbox, as_date
from lamap.catalog.assets import Bounds, version_tuple
from lamap.catalog.items import S1Scene, S2Scene, parse_s1_items, parse_s2_item
from lamap.catalog.profiles import CatalogProfile
from lamap.errors import CatalogError, InputError

__all__ = [
    "Duplicate",
    "FootprintLike",
    "SearchClient",
    "SearchResult",
    "as_geometry",
    "assign_to_tiles",
    "deduplicate_s2",
    "parse_items",
    "search",
]

log = logging.getLogger(__name__)

#: A lon/lat bbox ``(W, S, E, N)`` (a point when W == E and S == N), a :class:`BBox`, or a
#: shapely geometry.
FootprintLike: TypeAlias = BBox | Sequence[float] | BaseGeometry


class _HasFootprint(Protocol):
    """Anything with a lon/lat footprint (:class:`S2Scene`, :class:`S1Scene`)."""

    @property
    def footprint(self) -> BaseGeometry:
        """Lon/lat footprint of the valid data."""
        ...


SceneT = TypeVar("SceneT", bound=_HasFootprint)


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
    return version_tuple(scene.processing_baseline or ""), scene.sequence, generated, scene.id


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
        Searched lon/lat bbox ``(W, S, E, N)``.
    start, end : datetime.datetime
        Searched window (UTC, inclusive).
    s2 : tuple of S2Scene
        De-duplicated, sorted by datetime then id.
    s1 : tuple of S1Scene
        Sorted by datetime then id (empty when Sentinel-1 was not searched).
    duplicates : tuple of Duplicate
        Sentinel-2 items dropped as reprocessed copies.
    skipped : tuple of str
        Ids of Sentinel-1 items without VV/VH.
    """

    catalog: str
    bbox: Bounds
    start: dt.datetime
    end: dt.datetime
    s2: tuple[S2Scene, ...]
    s1: tuple[S1Scene, ...]
    duplicates: tuple[Duplicate, ...] = ()
    skipped: tuple[str, ...] = ()


def search(
    profile: CatalogProfile,
    bbox: BBoxLike,
    start: DateLike,
    end: DateLike,
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
        The catalog, with a URL (``with open_catalog(source) as profile:``).
    bbox : BBox, str or sequence of 4 float
        ``(W, S, E, N)`` in degrees (:func:`lamap._inputs.as_bbox`).
    start, end : date, datetime or str
        First and last day of the window (:func:`lamap._inputs.as_date`), whole UTC days.
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
    box = as_bbox(bbox).to_tuple()
    window = _window(as_date(start, "start"), as_date(end, "end"))
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

    Sentinel-1 items without VV/VH are skipped with one :class:`~lamap.errors.CatalogWarning`.

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
    s1, skipped = parse_s1_items(s1_items, profile)
    return s2, s1, duplicates, skipped


def _open_client(profile: CatalogProfile) -> SearchClient:
    if profile.url is None:
        raise CatalogError(
            f"catalog {profile.name!r} ({profile.local_world}) has no STAC API URL yet; serve "
            "it on 127.0.0.1 with `with open_catalog(path) as profile:` and search that profile"
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
    bbox: Bounds,
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


def _window(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Return the UTC datetimes from the start of ``first`` to the end of ``last``."""
    if last < first:
        raise InputError(
            f"the search window ends ({last}) before it starts ({first}): give start <= end"
        )
    return (
        dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC),
        dt.datetime.combine(last, dt.time.max, tzinfo=dt.UTC),
    )


# --------------------------------------------------------------------------- footprints


def as_geometry(footprint: FootprintLike) -> BaseGeometry:
    """Return a lon/lat shapely geometry for a bbox ``(W, S, E, N)`` or a geometry.

    A bbox with W == E and S == N is a point; with one zero side, a line (both are refused
    by :func:`lamap._inputs.as_bbox`, which checks every other bbox).

    Raises
    ------
    InputError
        If the bbox is malformed.
    """
    if isinstance(footprint, BaseGeometry):
        return footprint
    if isinstance(footprint, BBox):
        return shapely.box(*footprint.to_tuple())
    west, south, east, north = _four_numbers(footprint)
    if west != east and south != north:
        return shapely.box(*as_bbox((west, south, east, north)).to_tuple())
    if not (-180.0 <= west <= east <= 180.0 and -90.0 <= south <= north <= 90.0):
        raise InputError(
            f"footprint {footprint!r} is not W,S,E,N in lon/lat degrees with W <= E and S <= N"
        )
    if west == east and south == north:
        return Point(west, south)
    return LineString([(west, south), (east, north)])


def _four_numbers(footprint: Sequence[float]) -> Bounds:
    try:
        west, south, east, north = (float(v) for v in footprint)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"footprint {footprint!r} is neither 4 numbers W,S,E,N (a lon/lat bbox) nor a "
            "shapely geometry"
        ) from err
    return west, south, east, north


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

