"""Planar intersection tests for GeoJSON footprints, in pure Python.

STAC API servers decide whether an item matches ``bbox`` or ``intersects`` by a planar
intersection of the item's GeoJSON geometry with the query geometry, in longitude/latitude
degrees (rustac uses the ``geo`` crate, pgstac uses PostGIS ``st_intersects``). Touching
counts as intersecting. This module reproduces that test without shapely, so that lamap can
filter items exactly as an API does with its core dependencies only.

A geometry is split into points, segments (from lines) and polygons (lists of rings);
two geometries intersect when any pair of their parts does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lamap.errors import InputError

__all__ = ["bbox_polygon", "geometries_intersect", "geometry_bounds"]

Point = tuple[float, float]
Segment = tuple[Point, Point]
Ring = list[Point]
Bounds = tuple[float, float, float, float]


@dataclass
class _Parts:
    """A geometry decomposed into primitive parts."""

    points: list[Point] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    polygons: list[list[Ring]] = field(default_factory=list)

    def extend(self, other: _Parts) -> None:
        """Add the parts of ``other`` to this one."""
        self.points.extend(other.points)
        self.segments.extend(other.segments)
        self.polygons.extend(other.polygons)


def bbox_polygon(bbox: Sequence[float]) -> dict[str, Any]:
    """Return the GeoJSON polygon of a 2-D ``(west, south, east, north)`` box.

    Parameters
    ----------
    bbox
        Four numbers; a 6-number 3-D box is reduced to its horizontal extent.

    Returns
    -------
    dict
        A GeoJSON ``Polygon`` with a closed, counter-clockwise ring.
    """
    west, south, east, north = _horizontal(bbox)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def geometry_bounds(geometry: Mapping[str, Any]) -> Bounds:
    """Return ``(min_x, min_y, max_x, max_y)`` of a GeoJSON geometry.

    Parameters
    ----------
    geometry
        A GeoJSON geometry object.

    Returns
    -------
    tuple of float
        The bounds of all coordinates of the geometry.

    Raises
    ------
    InputError
        If the geometry has no coordinates or an unknown type.
    """
    points = list(_all_points(_decompose(geometry)))
    if not points:
        raise InputError(f"geometry {_describe(geometry)} has no coordinates")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def geometries_intersect(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Tell whether two GeoJSON geometries intersect in the plane (touching included).

    Parameters
    ----------
    a, b
        GeoJSON geometry objects (any type, including ``GeometryCollection``).

    Returns
    -------
    bool
        True if the geometries share at least one point.

    Raises
    ------
    InputError
        If a geometry has an unknown type or malformed coordinates.
    """
    parts_a, parts_b = _decompose(a), _decompose(b)
    if not _bounds_overlap(_parts_bounds(parts_a), _parts_bounds(parts_b)):
        return False
    return _parts_intersect(parts_a, parts_b)


def _horizontal(bbox: Sequence[float]) -> Bounds:
    """Return the horizontal extent of a 4- or 6-number bbox."""
    if len(bbox) == 4:
        return float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])
    if len(bbox) == 6:
        return float(bbox[0]), float(bbox[1]), float(bbox[3]), float(bbox[4])
    raise InputError(f"a bbox has 4 or 6 numbers, got {len(bbox)}: {list(bbox)!r}")


def _describe(geometry: Any) -> str:
    """Return a short description of a geometry for error messages."""
    text = repr(geometry)
    return text if len(text) <= 80 else text[:77] + "..."


def _point(coords: Any) -> Point:
    """Return the horizontal part of a GeoJSON position."""
    try:
        return float(coords[0]), float(coords[1])
    except (TypeError, IndexError, ValueError) as err:
        raise InputError(f"malformed GeoJSON position {coords!r}") from err


def _line(coords: Iterable[Any]) -> list[Point]:
    """Return the positions of a GeoJSON line string or ring."""
    return [_point(c) for c in coords]


def _segments(line: Sequence[Point]) -> list[Segment]:
    """Return the consecutive segments of a line."""
    return [(line[i], line[i + 1]) for i in range(len(line) - 1)]


def _decompose(geometry: Mapping[str, Any]) -> _Parts:
    """Split a GeoJSON geometry into points, segments and polygons."""
    kind = geometry.get("type") if isinstance(geometry, Mapping) else None
    if kind == "GeometryCollection":
        parts = _Parts()
        for member in geometry.get("geometries", []):
            parts.extend(_decompose(member))
        return parts
    coords = geometry.get("coordinates") if isinstance(geometry, Mapping) else None
    if kind not in _DECOMPOSERS or coords is None:
        raise InputError(
            f"unsupported or malformed GeoJSON geometry {_describe(geometry)}; expected a Point, "
            "LineString, Polygon, their Multi* forms or a GeometryCollection"
        )
    return _DECOMPOSERS[kind](coords)


def _from_points(points: Iterable[Any]) -> _Parts:
    """Parts of a (Multi)Point."""
    return _Parts(points=[_point(p) for p in points])


def _from_lines(lines: Iterable[Any]) -> _Parts:
    """Parts of a (Multi)LineString."""
    parts = _Parts()
    for coords in lines:
        line = _line(coords)
        parts.points.extend(line[:1])
        parts.segments.extend(_segments(line))
    return parts


def _from_polygons(polygons: Iterable[Any]) -> _Parts:
    """Parts of a (Multi)Polygon; empty rings are dropped."""
    parts = _Parts()
    for rings in polygons:
        shell_and_holes = [_line(ring) for ring in rings if len(ring) > 0]
        if shell_and_holes:
            parts.polygons.append(shell_and_holes)
    return parts


_DECOMPOSERS = {
    "Point": lambda c: _from_points([c]),
    "MultiPoint": _from_points,
    "LineString": lambda c: _from_lines([c]),
    "MultiLineString": _from_lines,
    "Polygon": lambda c: _from_polygons([c]),
    "MultiPolygon": _from_polygons,
}


def _all_points(parts: _Parts) -> Iterable[Point]:
    """Yield every position of the parts."""
    yield from parts.points
    for start, end in parts.segments:
        yield start
        yield end
    for rings in parts.polygons:
        for ring in rings:
            yield from ring


def _parts_bounds(parts: _Parts) -> Bounds | None:
    """Bounds of the parts, or None when they are empty."""
    points = list(_all_points(parts))
    if not points:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _bounds_overlap(a: Bounds | None, b: Bounds | None) -> bool:
    """Tell whether two bounds overlap (touching included)."""
    if a is None or b is None:
        return False
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _parts_intersect(a: _Parts, b: _Parts) -> bool:
    """Tell whether any part of ``a`` intersects any part of ``b``."""
    return (
        any(_point_hits(p, b) for p in a.points)
        or any(_point_hits(p, a) for p in b.points)
        or any(_segment_hits(s, b) for s in a.segments)
        or any(_segment_hits(s, a) for s in b.segments)
        or any(_polygons_intersect(pa, pb) for pa in a.polygons for pb in b.polygons)
    )


def _point_hits(p: Point, parts: _Parts) -> bool:
    """Tell whether point ``p`` lies on any part."""
    return (
        any(p == q for q in parts.points)
        or any(_on_segment(s, p) for s in parts.segments)
        or any(_point_in_polygon(p, rings) for rings in parts.polygons)
    )


def _segment_hits(s: Segment, parts: _Parts) -> bool:
    """Tell whether segment ``s`` touches any segment or polygon of the parts."""
    return any(_segments_intersect(s, t) for t in parts.segments) or any(
        _segment_hits_polygon(s, rings) for rings in parts.polygons
    )


def _cross(o: Point, a: Point, b: Point) -> float:
    """Z component of ``(a - o) x (b - o)``: >0 left turn, <0 right turn, 0 collinear."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _within_box(s: Segment, p: Point) -> bool:
    """Tell whether ``p`` lies in the bounding box of segment ``s``."""
    (x1, y1), (x2, y2) = s
    return min(x1, x2) <= p[0] <= max(x1, x2) and min(y1, y2) <= p[1] <= max(y1, y2)


def _on_segment(s: Segment, p: Point) -> bool:
    """Tell whether ``p`` lies on segment ``s``."""
    return _cross(s[0], s[1], p) == 0 and _within_box(s, p)


def _segments_intersect(s: Segment, t: Segment) -> bool:
    """Tell whether two closed segments share a point."""
    d1, d2 = _cross(t[0], t[1], s[0]), _cross(t[0], t[1], s[1])
    d3, d4 = _cross(s[0], s[1], t[0]), _cross(s[0], s[1], t[1])
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (
        (d1 == 0 and _within_box(t, s[0]))
        or (d2 == 0 and _within_box(t, s[1]))
        or (d3 == 0 and _within_box(s, t[0]))
        or (d4 == 0 and _within_box(s, t[1]))
    )


def _ring_edges(rings: Sequence[Ring]) -> Iterable[Segment]:
    """Yield the edges of all rings, closing rings that are not closed."""
    for ring in rings:
        yield from _segments(ring)
        if len(ring) > 1 and ring[0] != ring[-1]:
            yield ring[-1], ring[0]


def _crossings(ring: Ring, p: Point) -> bool:
    """Even-odd ray test: True if ``p`` is strictly inside ``ring`` (boundary ignored)."""
    inside = False
    x, y = p
    count = len(ring)
    for i in range(count):
        (x1, y1), (x2, y2) = ring[i], ring[(i + 1) % count]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _point_in_polygon(p: Point, rings: Sequence[Ring]) -> bool:
    """Tell whether ``p`` lies in the closed polygon (boundary, holes' edges included)."""
    if any(_on_segment(edge, p) for edge in _ring_edges(rings)):
        return True
    shell, holes = rings[0], rings[1:]
    return _crossings(shell, p) and not any(_crossings(hole, p) for hole in holes)


def _segment_hits_polygon(s: Segment, rings: Sequence[Ring]) -> bool:
    """Tell whether segment ``s`` touches the closed polygon."""
    if any(_segments_intersect(s, edge) for edge in _ring_edges(rings)):
        return True
    return _point_in_polygon(s[0], rings)


def _polygons_intersect(a: Sequence[Ring], b: Sequence[Ring]) -> bool:
    """Tell whether two closed polygons share a point.

    When no edges cross, each shell lies wholly inside or outside the other polygon, so
    testing one vertex of each shell decides.
    """
    edges_b = list(_ring_edges(b))
    if any(_segments_intersect(ea, eb) for ea in _ring_edges(a) for eb in edges_b):
        return True
    return _point_in_polygon(a[0][0], b) or _point_in_polygon(b[0][0], a)
