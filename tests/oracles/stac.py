"""STAC item-search semantics, applied directly to item dicts.

:func:`filter_items` is the reference that an API search must agree with: the same item
footprint test and the same datetime interval rule as STAC API servers (rustac's memory
backend, pgstac), and the same expansion of partial dates as pystac-client.

Footprints
    An item matches ``bbox`` or ``intersects`` when its GeoJSON geometry (not its
    ``bbox``) intersects the query in the lon/lat plane, touching included (shapely
    ``intersects``, like rustac's ``geo`` and PostGIS). Items without geometry never match
    a spatial query.

Datetime rule
    An item spans ``[start_datetime or datetime, end_datetime or datetime]``; it matches a
    query interval ``[start, end]`` unless it ends before ``start`` or begins after ``end``.
    ``start_datetime``/``end_datetime`` win over ``datetime`` when both are present (this is
    what rustac and pgstac do; it matters for Sentinel-1 slices). Open ends never exclude.
Partial dates
    ``"2024"``, ``"2024-06"`` and ``"2024-06-15"`` cover the whole period, ending one second
    before the next period starts (``23:59:59``), exactly as pystac-client sends them.
    Datetimes without a time zone are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import shapely
from shapely.errors import ShapelyError
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from lamap.errors import InputError

__all__ = [
    "BBoxLike",
    "DatetimeLike",
    "Interval",
    "filter_items",
    "item_interval",
    "normalize_bbox",
    "parse_datetime_range",
    "parse_stac_datetime",
]

BBox = tuple[float, float, float, float]
BBoxLike = str | Sequence[float]
DateComponent = datetime | str | None
DatetimeLike = str | datetime | Sequence[DateComponent]
Interval = tuple[datetime | None, datetime | None]

_PARTIAL_DATE = re.compile(r"^(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2}))?)?$")
_FULL_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$"
)


def filter_items(
    items: Iterable[Mapping[str, Any]],
    *,
    bbox: BBoxLike | None = None,
    intersects: Mapping[str, Any] | None = None,
    datetime_range: DatetimeLike | None = None,
    collections: str | Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Select the STAC items that an API item search with the same parameters returns.

    Parameters
    ----------
    items
        STAC item dicts (GeoJSON Features).
    bbox
        ``(west, south, east, north)`` in degrees, or the same as a comma-separated string.
    intersects
        A GeoJSON geometry, or a Feature whose geometry is used.
    datetime_range
        An instant or interval: ``"2024-06-01/2024-06-30"``, ``"../2024-06-30T12:00:00Z"``,
        ``"2024-06"``, a :class:`~datetime.datetime`, or a ``(start, end)`` pair whose ends
        may be None.
    collections
        A collection id or ids; items of other collections are dropped.

    Returns
    -------
    list of dict
        The matching items, in input order.

    Raises
    ------
    InputError
        If a parameter is malformed, ``bbox`` and ``intersects`` are both given, or an
        item's datetime cannot be parsed.
    """
    if bbox is not None and intersects is not None:
        raise InputError("give either bbox or intersects, not both (as in a STAC API search)")
    area = _query_geometry(bbox, intersects)
    interval = None if datetime_range is None else parse_datetime_range(datetime_range)
    wanted = None if collections is None else _collection_set(collections)
    return [
        dict(item)
        for item in items
        if (wanted is None or item.get("collection") in wanted)
        and (interval is None or _overlaps(item_interval(item), interval))
        and (area is None or _footprint_hits(item, area))
    ]


def normalize_bbox(bbox: BBoxLike) -> BBox:
    """Return a bbox as four floats ``(west, south, east, north)``.

    Parameters
    ----------
    bbox
        Four (or six, 3-D) numbers, or the same as a comma-separated string.

    Returns
    -------
    tuple of float
        The horizontal box.

    Raises
    ------
    InputError
        If the box does not have 4 or 6 numbers, south > north, or west > east. A box
        crossing the antimeridian must be split in two at 180° (rustac rejects it too).
    """
    values = bbox.split(",") if isinstance(bbox, str) else list(bbox)
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise InputError(f"bbox must hold numbers, got {bbox!r}") from err
    if len(numbers) not in (4, 6):
        raise InputError(f"bbox must have 4 or 6 numbers, got {len(numbers)}: {bbox!r}")
    half = len(numbers) // 2
    west, south, east, north = numbers[0], numbers[1], numbers[half], numbers[half + 1]
    if south > north:
        raise InputError(f"bbox {bbox!r} has south > north; order is west,south,east,north")
    if west > east:
        raise InputError(
            f"bbox {bbox!r} has west > east (crosses the antimeridian?); "
            "split it into two boxes at longitude 180"
        )
    return west, south, east, north


def parse_stac_datetime(text: str) -> datetime:
    """Parse a STAC datetime string into an aware UTC datetime.

    Accepts RFC 3339 (``2024-04-19T04:59:04.22Z``) and the variants real catalogs publish:
    a space instead of ``T`` and ``+00:00`` (Planetary Computer Sentinel-1), or no time zone
    (read as UTC, as rustac does).

    Parameters
    ----------
    text
        The datetime string.

    Returns
    -------
    datetime
        The instant, in UTC.

    Raises
    ------
    InputError
        If the string is not such a datetime.
    """
    if not isinstance(text, str) or not _FULL_DATETIME.match(text):
        raise InputError(
            f"invalid datetime {text!r}; expected RFC 3339 such as 2024-06-15T10:30:00Z"
        )
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    except ValueError as err:
        raise InputError(f"invalid datetime {text!r}: {err}") from err
    return _as_utc(value)


def parse_datetime_range(value: DatetimeLike) -> Interval:
    """Turn a STAC API ``datetime`` parameter into a closed UTC interval.

    Parameters
    ----------
    value
        An instant or an interval; see :func:`filter_items`.

    Returns
    -------
    tuple
        ``(start, end)``, each an aware UTC datetime or None for an open end.

    Raises
    ------
    InputError
        If the value is malformed, both ends are open, or start is after end.
    """
    if isinstance(value, datetime):
        instant = _as_utc(value)
        return instant, instant
    components = value.split("/") if isinstance(value, str) else list(value)
    if len(components) == 1:
        return _component_range(components[0], what=value)
    if len(components) != 2:
        raise InputError(f"datetime {value!r} must be an instant or a start/end pair")
    start = _component_range(components[0], what=value)[0]
    end = _component_range(components[1], what=value)[1]
    if start is None and end is None:
        raise InputError(f"datetime {value!r} is open at both ends; give a start or an end")
    if start is not None and end is not None and start > end:
        raise InputError(f"datetime {value!r} starts after it ends")
    return start, end


def item_interval(item: Mapping[str, Any]) -> Interval:
    """Return the time span of a STAC item, as an API search sees it.

    Parameters
    ----------
    item
        A STAC item dict.

    Returns
    -------
    tuple
        ``(start_datetime or datetime, end_datetime or datetime)`` in UTC; None where the
        item gives neither.

    Raises
    ------
    InputError
        If a datetime of the item cannot be parsed; the message names the item.
    """
    props = item.get("properties") or {}
    try:
        instant = _optional_datetime(props.get("datetime"))
        start = _optional_datetime(props.get("start_datetime"))
        end = _optional_datetime(props.get("end_datetime"))
    except InputError as err:
        raise InputError(f"item {item.get('id')!r}: {err}") from err
    return (start or instant), (end or instant)


def _optional_datetime(value: Any) -> datetime | None:
    """Parse a datetime property that may be missing."""
    return None if value is None else parse_stac_datetime(value)


def _as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _component_range(component: DateComponent, *, what: object) -> Interval:
    """Expand one end of a datetime parameter into the period it covers."""
    if component is None or component in ("", ".."):
        return None, None
    if isinstance(component, datetime):
        instant = _as_utc(component)
        return instant, instant
    if not isinstance(component, str):
        raise InputError(f"datetime {what!r}: cannot read {component!r} as a date")
    match = _PARTIAL_DATE.match(component)
    if match is None:
        instant = parse_stac_datetime(component)
        return instant, instant
    return _period(match, what=what)


def _period(match: re.Match[str], *, what: object) -> Interval:
    """Return the year, month or day named by a partial date, pystac-client style."""
    year, month, day = match.group("year", "month", "day")
    try:
        start = datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
    except ValueError as err:
        raise InputError(f"datetime {what!r}: {err}") from err
    if day is not None:
        following = start + timedelta(days=1)
    elif month is not None:
        following = _add_month(start)
    else:
        following = start.replace(year=start.year + 1)
    return start, following - timedelta(seconds=1)


def _add_month(value: datetime) -> datetime:
    """Return the first day of the month after ``value``'s month."""
    if value.month == 12:
        return value.replace(year=value.year + 1, month=1)
    return value.replace(month=value.month + 1)


def _overlaps(span: Interval, query: Interval) -> bool:
    """Apply the STAC API rule: exclude items ending before or starting after the query."""
    item_start, item_end = span
    start, end = query
    if start is not None and item_end is not None and item_end < start:
        return False
    return not (end is not None and item_start is not None and item_start > end)


def _collection_set(collections: str | Iterable[str]) -> set[str]:
    """Return collection ids as a set."""
    return {collections} if isinstance(collections, str) else set(collections)


def _query_geometry(
    bbox: BBoxLike | None, intersects: Mapping[str, Any] | None
) -> BaseGeometry | None:
    """Return the query area as a prepared shapely geometry, or None without one."""
    if bbox is not None:
        area = box(*normalize_bbox(bbox))
    elif intersects is None:
        return None
    else:
        if not isinstance(intersects, Mapping) or "type" not in intersects:
            raise InputError(f"intersects must be a GeoJSON geometry, got {intersects!r:.80}")
        geometry = intersects["geometry"] if intersects["type"] == "Feature" else intersects
        area = _shape(geometry, "intersects")
    shapely.prepare(area)
    return area


def _shape(geometry: Any, what: str) -> BaseGeometry:
    """Return a GeoJSON geometry as a shapely geometry."""
    try:
        return shape(geometry)
    except (ShapelyError, AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"{what}: malformed GeoJSON geometry {geometry!r:.80} ({err})") from err


def _footprint_hits(item: Mapping[str, Any], area: BaseGeometry) -> bool:
    """Tell whether the item's geometry intersects the area; no geometry never does."""
    geometry = item.get("geometry")
    if geometry is None:
        return False
    footprint = _shape(geometry, f"item {item.get('id')!r}")
    try:
        return bool(area.intersects(footprint))
    except ShapelyError as err:
        raise InputError(f"item {item.get('id')!r}: invalid footprint ({err})") from err
