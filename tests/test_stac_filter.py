"""Tests of the direct STAC search semantics of tests.oracles.stac (filter_items and helpers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamap.errors import InputError
from tests.oracles.stac import (
    filter_items,
    item_interval,
    normalize_bbox,
    parse_datetime_range,
    parse_stac_datetime,
)

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
DONUT = {
    "type": "Polygon",
    "coordinates": [
        [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
        [[3, 3], [7, 3], [7, 7], [3, 7], [3, 3]],
    ],
}
TRIANGLE = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [0, 10], [0, 0]]]}


def _utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def _item(item_id: str, geometry: dict[str, Any] | None, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": item_id,
        "collection": props.pop("collection", "c"),
        "geometry": geometry,
        "properties": props,
    }


def _box(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def _hits(footprint: dict[str, Any], **query: Any) -> bool:
    item = _item("x", footprint, datetime="2024-06-15T10:00:00Z")
    return bool(filter_items([item], **query))


@pytest.mark.parametrize(
    ("footprint", "query", "expected"),
    [
        (SQUARE, {"bbox": [5, 5, 6, 6]}, True),  # inside
        (SQUARE, {"bbox": [10, 2, 12, 3]}, True),  # touching an edge
        (SQUARE, {"bbox": [10, 10, 11, 11]}, True),  # touching a corner
        (SQUARE, {"bbox": [10.001, 2, 12, 3]}, False),
        (SQUARE, {"bbox": [-5, -5, 20, 20]}, True),  # containing
        (SQUARE, {"bbox": [5, 5, 5, 5]}, True),  # a point as a bbox
        (DONUT, {"bbox": [4, 4, 6, 6]}, False),  # in the hole
        (DONUT, {"bbox": [6, 6, 8, 8]}, True),  # across the hole's edge
        (TRIANGLE, {"bbox": [6, 6, 9, 9]}, False),  # in the item's bbox, off its footprint
        (SQUARE, {"intersects": {"type": "Point", "coordinates": [10, 5]}}, True),
        (DONUT, {"intersects": {"type": "Point", "coordinates": [5, 5]}}, False),
        (SQUARE, {"intersects": {"type": "LineString", "coordinates": [[-1, 5], [11, 5]]}}, True),
        (
            SQUARE,
            {"intersects": {"type": "LineString", "coordinates": [[-1, 11], [11, 12]]}},
            False,
        ),
        (
            {"type": "MultiPolygon", "coordinates": [DONUT["coordinates"]]},
            {"intersects": {"type": "MultiPoint", "coordinates": [[5, 5], [1, 1]]}},
            True,
        ),
        (None, {"bbox": [-180, -90, 180, 90]}, False),  # no geometry never matches
    ],
)
def test_footprint_rule(footprint: Any, query: dict[str, Any], expected: bool) -> None:
    assert _hits(footprint, **query) is expected


coordinate = st.integers(-20, 20).map(float)


@st.composite
def boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    x0, x1 = sorted((draw(coordinate), draw(coordinate)))
    y0, y1 = sorted((draw(coordinate), draw(coordinate)))
    return x0, y0, x1, y1


@given(boxes(), boxes())
def test_box_footprints_match_interval_overlap(a: Any, b: Any) -> None:
    overlap = a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]
    assert _hits(_box(*a), bbox=b) is overlap


def test_malformed_geometries_raise_input_error() -> None:
    with pytest.raises(InputError, match="item 'x': malformed GeoJSON geometry"):
        _hits({"type": "Circle", "coordinates": [0, 0]}, bbox=[0, 0, 1, 1])
    with pytest.raises(InputError, match="intersects: malformed GeoJSON geometry"):
        _hits(SQUARE, intersects={"type": "Point", "coordinates": ["x"]})
    with pytest.raises(InputError, match="intersects must be a GeoJSON geometry"):
        _hits(SQUARE, intersects={"coordinates": [0, 0]})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", (_utc(2024, 1, 1), _utc(2024, 12, 31, 23, 59, 59))),
        ("2024-02", (_utc(2024, 2, 1), _utc(2024, 2, 29, 23, 59, 59))),
        ("2024-12", (_utc(2024, 12, 1), _utc(2024, 12, 31, 23, 59, 59))),
        ("2024-06-15", (_utc(2024, 6, 15), _utc(2024, 6, 15, 23, 59, 59))),
        ("2024-06-01/2024-06-15", (_utc(2024, 6, 1), _utc(2024, 6, 15, 23, 59, 59))),
        ("../2024-06-15T12:00:00Z", (None, _utc(2024, 6, 15, 12))),
        ("2024-06-15T12:00:00+02:00/..", (_utc(2024, 6, 15, 10), None)),
        ("/2024-06-15T12:00:00", (None, _utc(2024, 6, 15, 12))),
        ("2024-06-15T12:00:00Z", (_utc(2024, 6, 15, 12), _utc(2024, 6, 15, 12))),
        ((None, datetime(2024, 6, 15)), (None, _utc(2024, 6, 15))),
        (datetime(2024, 6, 15, 12), (_utc(2024, 6, 15, 12), _utc(2024, 6, 15, 12))),
    ],
)
def test_parse_datetime_range(value: Any, expected: Any) -> None:
    assert parse_datetime_range(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../..", "open at both ends"),
        ("2024-06-15/2024-06-01", "starts after it ends"),
        ("2024-13", "month must be in 1..12"),
        ("yesterday", "invalid datetime"),
        ("2024/2025/2026", "instant or a start/end pair"),
        ((1, 2), "cannot read 1 as a date"),
    ],
)
def test_parse_datetime_range_rejects(value: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_datetime_range(value)


def test_parse_stac_datetime_accepts_catalog_variants() -> None:
    expected = _utc(2024, 4, 19, 4, 59, 4, 220006)
    assert parse_stac_datetime("2024-04-19T04:59:04.220006Z") == expected
    assert parse_stac_datetime("2024-04-19 04:59:04.220006+00:00") == expected
    assert parse_stac_datetime("2024-04-19T04:59:04.220006") == expected
    with pytest.raises(InputError, match="RFC 3339"):
        parse_stac_datetime("2024-04-19")


def test_item_interval_prefers_start_and_end() -> None:
    item = _item(
        "s1",
        None,
        datetime="2024-04-19T04:59:10Z",
        start_datetime="2024-04-19 04:59:04+00:00",
        end_datetime="2024-04-19 04:59:16+00:00",
    )
    assert item_interval(item) == (_utc(2024, 4, 19, 4, 59, 4), _utc(2024, 4, 19, 4, 59, 16))
    assert item_interval(_item("x", None, datetime=None)) == (None, None)
    with pytest.raises(InputError, match="item 'bad'"):
        item_interval(_item("bad", None, datetime="soon"))


def test_filter_items_datetime_rule() -> None:
    items = [
        _item("instant", SQUARE, datetime="2024-06-15T10:00:00Z"),
        _item(
            "span",
            SQUARE,
            datetime="2024-06-15T10:00:00Z",
            start_datetime="2024-06-15T09:00:00Z",
            end_datetime="2024-06-15T11:00:00Z",
        ),
        _item("timeless", SQUARE, datetime=None),
    ]

    def ids(value: Any) -> list[str]:
        return [item["id"] for item in filter_items(items, datetime_range=value)]

    assert ids("2024-06-15T09:30:00Z/2024-06-15T09:45:00Z") == ["span", "timeless"]
    assert ids("2024-06-15T10:00:00Z") == ["instant", "span", "timeless"]
    assert ids("2024-06-15T11:00:00Z/..") == ["span", "timeless"]
    assert ids("../2024-06-15T08:59:59Z") == ["timeless"]
    assert ids("2024-06") == ["instant", "span", "timeless"]


def test_filter_items_space_and_collections() -> None:
    items = [
        _item("a", SQUARE, datetime="2024-06-15T10:00:00Z", collection="s2"),
        _item("b", TRIANGLE, datetime="2024-06-15T10:00:00Z", collection="s1"),
        _item("nowhere", None, datetime="2024-06-15T10:00:00Z", collection="s1"),
    ]
    assert [i["id"] for i in filter_items(items, bbox=[8, 8, 9, 9])] == ["a"]
    assert [i["id"] for i in filter_items(items, bbox="1,1,2,2", collections="s1")] == ["b"]
    assert [i["id"] for i in filter_items(items, collections=["s1"])] == ["b", "nowhere"]
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [9, 9]}}
    assert [i["id"] for i in filter_items(items, intersects=feature)] == ["a"]
    assert filter_items(items) == items


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([170, -10, -170, 10], "antimeridian"),
        ([0, 10, 1, 5], "south > north"),
        ([0, 1, 2], "4 or 6 numbers"),
        ("a,b,c,d", "must hold numbers"),
    ],
)
def test_bad_bboxes(bbox: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        normalize_bbox(bbox)


def test_bbox_and_intersects_are_exclusive() -> None:
    with pytest.raises(InputError, match="either bbox or intersects"):
        filter_items([], bbox=[0, 0, 1, 1], intersects=SQUARE)
    assert normalize_bbox([0, 1, -5, 2, 3, 5]) == (0.0, 1.0, 2.0, 3.0)
