"""Tests of tests.oracles.validate: offline STAC validation of real and broken items."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.oracles.validate as validate
from lamap.errors import CatalogError
from tests.conftest import FIXTURES
from tests.oracles.validate import (
    SchemaNotStoredError,
    StacValidationError,
    stac_problems,
    validate_stac,
)

FIXTURE_FILES = sorted(FIXTURES.rglob("*.json"))


def _first_item(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text())["features"][0])


@pytest.fixture
def s2_item() -> dict[str, Any]:
    """A real Planetary Computer Sentinel-2 L2A item (STAC 1.0.0)."""
    return _first_item("pc-sentinel-2-l2a-35MNM-2020-06-to-07.json")


@pytest.fixture
def s1_item() -> dict[str, Any]:
    """A real Planetary Computer Sentinel-1 RTC item (space in start/end_datetime)."""
    return _first_item("pc-sentinel-1-rtc-2024-04-19.json")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any socket connection, and rebuild the schema registry under that guard."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    caches = (validate._validator, validate.stored_schemas)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_real_fixture_items_are_valid(path: Path, no_network: None) -> None:
    document = json.loads(path.read_text())
    assert document["type"] == "FeatureCollection" and document["features"]
    validate_stac(document)
    for feature in document["features"]:
        assert stac_problems(feature) == []


def test_stac_1_0_and_1_1_are_accepted_others_are_not(s2_item: dict[str, Any]) -> None:
    assert s2_item["stac_version"] == "1.0.0"
    assert stac_problems({**s2_item, "stac_version": "1.1.0"}) == []
    assert stac_problems({**s2_item, "stac_version": "0.9.0"}) == [
        "$.stac_version: '0.9.0' is not supported; lamap validates 1.0.0 and 1.1.0, "
        "each with its own STAC schemas"
    ]


def test_each_version_is_checked_with_its_own_core_schema(s2_item: dict[str, Any]) -> None:
    # STAC 1.1.0 defines an asset's ``bands`` (a list); in STAC 1.0.0 it is an unknown field.
    bands = {**s2_item, "assets": {**s2_item["assets"], "B02": {**s2_item["assets"]["B02"]}}}
    bands["assets"]["B02"]["bands"] = "B02"
    assert stac_problems({**bands, "stac_version": "1.1.0"}) == [
        "$.assets.B02.bands: 'B02' is not of type 'array'"
    ]
    assert stac_problems(bands) == []  # STAC 1.0.0 has no ``bands`` field


def test_space_datetimes_fail_only_in_strict_mode(s1_item: dict[str, Any]) -> None:
    assert " " in s1_item["properties"]["start_datetime"]
    validate_stac(s1_item)
    problems = stac_problems(s1_item, strict_datetime=True)
    assert [p.split(":")[0] for p in problems] == [
        "$.properties.start_datetime",
        "$.properties.end_datetime",
    ]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Return a mutation that sets the field at a dotted path (``assets.B02.href``)."""

    def mutate(item: dict[str, Any]) -> None:
        *parents, last = path.split("|")
        target = item
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _declare(url: str, then: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Return a mutation that lists an extension schema, then applies ``then``."""

    def mutate(item: dict[str, Any]) -> None:
        item["stac_extensions"] = [*item["stac_extensions"], url]
        then(item)

    return mutate


RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(item: dict[str, Any]) -> None:
        *parents, last = path.split("|")
        target = item
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


BROKEN = [
    (_drop("links"), "$: 'links' is a required property"),
    (_drop("bbox"), "$: 'bbox' is a required property"),
    (_set("id", ""), "$.id: '' should be non-empty"),
    (_set("geometry", {"type": "Polygon", "coordinates": [[1, 2]]}), "$.geometry.coordinates"),
    (_set("geometry", {"type": "Blob", "coordinates": []}), "$.geometry: {'type': 'Blob'"),
    (_drop("properties|datetime"), "$.properties: 'datetime' is a required property"),
    (_set("properties|datetime", "2020-06-01"), "$.properties.datetime: '2020-06-01' does not"),
    (_set("properties|datetime", "2020-13-01T00:00:00Z"), "month must be in 1..12"),
    (_set("assets|B02|href", ""), "$.assets.B02.href: '' should be non-empty"),
    # Extension fields, checked by the extension schemas the item lists.
    (_set("properties|eo:cloud_cover", 104.2), "['eo:cloud_cover']: 104.2 is greater than the"),
    (_set("properties|eo:cloud_cover", "3"), "['eo:cloud_cover']: '3' is not of type 'number'"),
    (_set("properties|proj:epsg", "32735"), "['proj:epsg']: '32735' is not of type 'integer'"),
    (_set("properties|proj:code", "EPSG:32735"), "'proj:code' does not match any of the regexes"),
    (_set("assets|B02|proj:shape", [10980]), "$.assets.B02['proj:shape']: [10980] is too short"),
    (_set("assets|B02|proj:transform", [10, 0, 1, 0, -10]), "['proj:transform']: [10, 0, 1,"),
    (_set("assets|B02|proj:bbox", [1, 2, 3]), "['proj:bbox']: [1, 2, 3] is too short"),
    (_set("properties|sat:orbit_state", "up"), "['sat:orbit_state']: 'up' is not one of"),
    (
        _declare(RASTER, _set("assets|B02|raster:bands", [{"nodata": "none"}])),
        "$.assets.B02['raster:bands'][0].nodata: 'none' is not of type 'number'",
    ),
    (
        _declare(RASTER, _set("assets|B02|raster:bands", [{"data_type": "uint12"}])),
        "$.assets.B02['raster:bands'][0].data_type: 'uint12' is not one of",
    ),
    (
        _declare(RASTER, _set("assets|B02|raster:bands", [{"nodata": 0, "scale": "0.0001"}])),
        "$.assets.B02['raster:bands'][0].scale: '0.0001' is not of type 'number'",
    ),
    # lamap's own rules: integers written as integers, the baseline of PC items.
    (_set("properties|proj:epsg", 32735.0), "proj:epsg: 32735.0 must be an integer EPSG"),
    (_set("assets|B02|proj:shape", [10980.0, 10980]), "proj:shape: [10980.0, 10980] must be"),
    (_set("properties|sat:relative_orbit", 78.0), "sat:relative_orbit: 78.0 must be a positive"),
    (_set("properties|s2:processing_baseline", 2.12), "s2:processing_baseline: 2.12 must be"),
    (_set("properties|s2:processing_baseline", "2.12"), "s2:processing_baseline: '2.12' must"),
    (_set("assets|B02|raster:bands", [{"nodata": 0}]), "'raster:*' fields are used but no"),
    (_set("stac_extensions", []), "'proj:*' fields are used but no projection extension"),
    (
        _set("properties|start_datetime", "2020-07-31T00:00:00Z"),
        "$.properties: 'end_datetime' is a required property",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), BROKEN)
def test_broken_items_fail(
    s2_item: dict[str, Any], mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    item = copy.deepcopy(s2_item)
    mutate(item)
    with pytest.raises(StacValidationError) as info:
        validate_stac(item)
    assert any(expected in problem for problem in info.value.problems), info.value.problems
    assert expected in str(info.value)
    assert isinstance(info.value, CatalogError)


BROKEN_S1 = [
    (["VV", "XX"], "$.properties['sar:polarizations'][1]: 'XX' is not one of ['HH', 'VV', "
     "'HV', 'VH']"),
    ([], "$.properties['sar:polarizations']: [] should be non-empty"),
    (["VV", "VV"], "$.properties['sar:polarizations']: ['VV', 'VV'] has non-unique elements"),
]


@pytest.mark.parametrize(("polarizations", "expected"), BROKEN_S1)
def test_broken_sar_fields_fail(
    s1_item: dict[str, Any], polarizations: list[str], expected: str
) -> None:
    assert "https://stac-extensions.github.io/sar/v1.0.0/schema.json" in s1_item["stac_extensions"]
    item = copy.deepcopy(s1_item)
    item["properties"]["sar:polarizations"] = polarizations
    assert [p for p in stac_problems(item) if "sar:" in p] == [expected]


def test_start_after_end_fails(s1_item: dict[str, Any]) -> None:
    item = copy.deepcopy(s1_item)
    props = item["properties"]
    props["start_datetime"], props["end_datetime"] = props["end_datetime"], props["start_datetime"]
    assert stac_problems(item) == ["$.properties: start_datetime is after end_datetime"]


def test_problems_are_prefixed_per_feature(s2_item: dict[str, Any]) -> None:
    broken = {**s2_item, "id": "broken", "properties": {**s2_item["properties"], "gsd": -1}}
    page = {"type": "FeatureCollection", "features": [s2_item, broken]}
    problems = stac_problems(page)
    assert problems and all(
        p.startswith("$.features[1] (id 'broken') $.properties") for p in problems
    )


def _collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": "sentinel-2-l2a",
        "description": "Sentinel-2 L2A",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2015-06-27T10:25:31Z", None]]},
        },
        "links": [],
        "item_assets": {"B02": {"type": "image/tiff", "raster:bands": [{"nodata": "zero"}]}},
    }


def test_collections_and_catalogs() -> None:
    collection = _collection()
    assert stac_problems(collection) == [
        "$.stac_extensions: 'raster:*' fields are used but no raster extension schema is listed",
    ]
    assert stac_problems({**collection, "stac_extensions": [RASTER]}) == [
        "$.item_assets.B02['raster:bands'][0].nodata: 'zero' is not of type 'number'"
    ]
    del collection["item_assets"]
    assert stac_problems(collection) == []
    del collection["extent"]
    assert stac_problems(collection) == ["$: 'extent' is a required property"]
    catalog = {"type": "Catalog", "stac_version": "1.1.0", "id": "c", "description": "d"}
    assert stac_problems({**catalog, "links": []}) == []
    assert stac_problems(catalog) == ["$: 'links' is a required property"]


def test_non_stac_objects() -> None:
    assert stac_problems({"type": "Topology"})[0].startswith("$.type: 'Topology' is not a STAC")
    assert stac_problems({"type": "FeatureCollection"}) == [
        "$.features: a FeatureCollection needs a 'features' list"
    ]
    assert stac_problems([1, 2]) == ["$: expected a JSON object, got list"]  # type: ignore[arg-type]


def test_schemas_are_stored_and_never_fetched(
    s2_item: dict[str, Any], no_network: None
) -> None:
    validator = validate._validator()
    assert validator.schema_cache == validate.stored_schemas()
    feature = validator.schema_cache["https://geojson.org/schema/Feature.json"]
    assert feature["title"] == "GeoJSON Feature"
    unknown = "https://stac-extensions.github.io/eo/v9.9.9/schema.json"
    with pytest.raises(SchemaNotStoredError, match="never download"):
        validate_stac({**s2_item, "stac_extensions": [*s2_item["stac_extensions"], unknown]})


def test_every_extension_of_the_fixtures_is_stored() -> None:
    listed = {
        url
        for path in FIXTURE_FILES
        for feature in json.loads(path.read_text())["features"]
        for url in feature.get("stac_extensions", [])
    }
    assert len(listed) == 16 and listed <= set(validate.stored_schemas())
    for uri, schema in validate.stored_schemas().items():
        assert schema["$id"].split("#")[0] in (uri, uri.replace("/common.json", "/commonjson"))


def test_schema_with_ref_to_unstored_schema_raises_catalog_error(
    s2_item: dict[str, Any], monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    local = "https://example.invalid/ext/v1.0.0/schema.json"
    remote = "https://stac-extensions.github.io/eo/v9.9.9/schema.json"
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "$id": local, "$ref": remote}
    monkeypatch.setitem(validate._validator().schema_cache, local, schema)
    item = {**s2_item, "stac_extensions": [*s2_item["stac_extensions"], local]}
    with pytest.raises(CatalogError, match="eo/v9.9.9/schema.json.*never download"):
        validate_stac(item)
