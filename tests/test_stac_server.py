"""Tests of lamap.catalog.server: a real ``rustac serve`` STAC API on 127.0.0.1.

Searches go through pystac-client exactly as against Planetary Computer or Earth Search,
over real item fixtures, and must return what :func:`tests.oracles.stac.filter_items` selects.
"""

from __future__ import annotations

import gc
import json
import math
import os
import socket
import stat
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses

import lamap.catalog.server as stac_server
from lamap.catalog.server import StacServer, find_rustac, serve_directory
from lamap.errors import CatalogError, InputError
from tests.conftest import FIXTURES
from tests.oracles.stac import filter_items, parse_stac_datetime

ITEM_FILES = [
    FIXTURES / "pc-sentinel-2-l2a-13TDE-2024-05-30-to-06-21.json",
    FIXTURES / "pc-sentinel-2-l2a-13TDE-2024-08-23-to-25.json",
    FIXTURES / "pc-sentinel-2-l2a-35MNM-2020-06-to-07.json",
    FIXTURES / "search-pages" / "es-v1-search-sentinel-2-l2a-13SDV-2020-05-01.json",
    FIXTURES / "pc-sentinel-1-rtc-2024-04-19.json",
    FIXTURES / "es-sentinel-2-c1-l2a-13TDE-2024-03-31-to-04-22.json",
    FIXTURES / "es-sentinel-2-l2a-13TDE-2023-10-08.json",
]
DENVER = [-105.5, 39.8, -105.0, 40.2]

# (search parameters, number of items expected): the counts make sure each case selects
# something specific, so that API and filter cannot agree by both returning nothing.
SEARCHES: list[tuple[dict[str, Any], int]] = [
    ({"bbox": DENVER}, 23),
    ({"bbox": DENVER, "datetime": "2024-06-01/2024-06-15", "collections": ["sentinel-2-l2a"]}, 6),
    ({"datetime": "../2020-06-20"}, 6),
    ({"datetime": "2024-08-24/.."}, 1),
    ({"datetime": "2020-06", "bbox": [27.0, -8.0, 27.2, -7.8]}, 6),
    ({"datetime": "2020-06-11T08:06:11.024Z"}, 1),
    ({"intersects": {"type": "Point", "coordinates": [-105.78, 35.79]}}, 2),
    ({"collections": ["sentinel-1-rtc", "sentinel-2-c1-l2a"]}, 14),
    ({"bbox": [-30.0, -30.0, -29.0, -29.0]}, 0),
    # inside the bboxes of 22 13TDE items but outside two partial-swath footprints
    ({"bbox": [-105.4, 39.7, -105.35, 39.75], "datetime": "2024"}, 20),
    # Sentinel-1: start/end_datetime (written with a space) decide, not datetime
    ({"datetime": "2024-04-19T04:59:00Z/2024-04-19T04:59:05Z"}, 2),
    (
        {
            "intersects": {
                "type": "Polygon",
                "coordinates": [[[14, 30], [16, 30], [16, 32], [14, 32], [14, 30]]],
            },
            "collections": ["sentinel-1-rtc"],
        },
        2,
    ),
]


def _features(path: Path) -> list[dict[str, Any]]:
    """Return the items of a fixture file."""
    document = json.loads(path.read_text())
    return list(document["features"]) if "features" in document else [document]


def _port_is_free(port: int) -> bool:
    """Tell whether nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _process_is_gone(pid: int) -> bool:
    """Tell whether process ``pid`` no longer exists (reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _collection(collection_id: str, links: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Return a minimal STAC collection."""
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": collection_id,
        "description": f"test collection {collection_id}",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": links or [],
    }


@pytest.fixture(scope="module")
def all_items() -> list[dict[str, Any]]:
    """All items that the module's server serves."""
    return [item for path in ITEM_FILES for item in _features(path)]


@pytest.fixture(scope="module")
def server() -> Iterator[StacServer]:
    """One server over the fixture items for the whole module."""
    with StacServer(ITEM_FILES) as running:
        yield running


@pytest.mark.parametrize(("params", "expected"), SEARCHES)
def test_search_matches_filter_items(
    server: StacServer, all_items: list[dict[str, Any]], params: dict[str, Any], expected: int
) -> None:
    limit = 3
    search = Client.open(server.url).search(**params, limit=limit)
    pages = [[item["id"] for item in page["features"]] for page in search.pages_as_dicts()]
    found = [item_id for page in pages for item_id in page]
    direct = filter_items(
        all_items,
        bbox=params.get("bbox"),
        intersects=params.get("intersects"),
        datetime_range=params.get("datetime"),
        collections=params.get("collections"),
    )
    assert sorted(found) == sorted(item["id"] for item in direct)
    assert len(found) == expected
    assert len(pages) == math.ceil(expected / limit)
    assert all(len(page) <= limit for page in pages)


def test_server_advertises_item_search_and_serves_all_items(
    server: StacServer, all_items: list[dict[str, Any]]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = Client.open(server.url)
        assert client.conforms_to(ConformanceClasses.ITEM_SEARCH)
        items = list(client.search(limit=100).items_as_dicts())
    assert sorted(i["id"] for i in items) == sorted(i["id"] for i in all_items)
    assert {c.id for c in client.get_collections()} == {
        "sentinel-1-rtc",
        "sentinel-2-l2a",
        "sentinel-2-c1-l2a",
    }
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_sentinel1_space_datetimes_are_loaded_and_normalised(server: StacServer) -> None:
    source = {item["id"]: item for item in _features(ITEM_FILES[4])}
    assert all(" " in item["properties"]["start_datetime"] for item in source.values())
    served = list(Client.open(server.url).search(collections=["sentinel-1-rtc"]).items_as_dicts())
    assert sorted(item["id"] for item in served) == sorted(source)
    for item in served:
        for key in ("start_datetime", "end_datetime"):
            value = item["properties"][key]
            assert "T" in value and value.endswith("Z")  # rustac rewrites it as RFC 3339
            original = source[item["id"]]["properties"][key]
            assert parse_stac_datetime(value) == parse_stac_datetime(original)


def test_footprints_not_bboxes_decide(server: StacServer, all_items: list[dict[str, Any]]) -> None:
    box = [-105.4, 39.7, -105.35, 39.75]
    found = {item["id"] for item in Client.open(server.url).search(bbox=box).items_as_dicts()}
    by_bbox = {
        item["id"]
        for item in all_items
        if item["bbox"][0] <= box[2]
        and box[0] <= item["bbox"][2]
        and item["bbox"][1] <= box[3]
        and box[1] <= item["bbox"][3]
    }
    assert found < by_bbox
    assert found == {item["id"] for item in filter_items(all_items, bbox=box)}


def test_server_stops_and_frees_port_on_exit() -> None:
    with StacServer(ITEM_FILES[:1]) as running:
        pid, port = running.pid, running.port
        assert pid is not None and not _port_is_free(port)
    assert not running.running
    assert _process_is_gone(pid)
    assert _port_is_free(port)
    with pytest.raises(CatalogError, match="not running"):
        _ = running.url


def test_server_stops_when_body_raises() -> None:
    server = StacServer(ITEM_FILES[:1])
    with pytest.raises(RuntimeError, match="boom"), server:
        pid, port = server.pid, server.port
        raise RuntimeError("boom")
    assert pid is not None and _process_is_gone(pid)
    assert _port_is_free(port)


def test_server_stops_when_garbage_collected() -> None:
    server = StacServer(ITEM_FILES[:1]).start()
    pid = server.pid
    assert pid is not None and not _process_is_gone(pid)
    del server
    gc.collect()
    assert _process_is_gone(pid)


def test_bad_item_file_gives_clear_catalog_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken-items.json"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(CatalogError) as info:
        StacServer([ITEM_FILES[0], bad]).start()
    message = str(info.value)
    assert "exited" in message and "port" in message and "rustac serve" in message
    assert "broken-items.json is not valid JSON" in message


def test_item_without_collection_is_named(tmp_path: Path) -> None:
    item = _features(ITEM_FILES[0])[0]
    del item["collection"]
    path = tmp_path / "orphan.json"
    path.write_text(json.dumps(item))
    with pytest.raises(CatalogError, match="orphan.json: item .* has no 'collection' field"):
        StacServer([path]).start()


def test_bad_collection_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad-collection.json"
    bad.write_text("{")
    with pytest.raises(CatalogError, match="cannot read STAC collection file .*bad-collection"):
        StacServer(ITEM_FILES[:1], collections=[bad]).start()
    bad.write_text(json.dumps(_features(ITEM_FILES[0])[0]))
    with pytest.raises(CatalogError, match="bad-collection.json is not a STAC Collection"):
        StacServer(ITEM_FILES[:1], collections=[bad]).start()


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does-not-exist.json does not exist"):
        StacServer([tmp_path / "does-not-exist.json"])
    with pytest.raises(InputError, match="at least one"):
        StacServer([])


def test_missing_rustac_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CatalogError, match="pip install rustac"):
        find_rustac()
    with pytest.raises(CatalogError, match="does not exist"):
        find_rustac(tmp_path / "no-rustac-here")


def test_rustac_is_found_next_to_python() -> None:
    assert find_rustac().parent == Path(sys.executable).parent


def test_startup_timeout_names_command_and_kills_server(tmp_path: Path) -> None:
    fake = tmp_path / "fake-rustac"
    fake.write_text("#!/bin/sh\necho 'loading forever' >&2\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    server = StacServer(ITEM_FILES[:1], startup_timeout=0.5, executable=fake)
    with pytest.raises(CatalogError) as info:
        server.start()
    message = str(info.value)
    assert "did not answer within 0.5 s" in message
    assert "fake-rustac serve --addr 127.0.0.1:" in message
    assert "loading forever" in message
    assert server.pid is None and not server.running


def test_port_taken_by_another_process_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        original = stac_server._free_port
        monkeypatch.setattr(stac_server, "_free_port", lambda: next(ports, None) or original())
        with StacServer(ITEM_FILES[:1]) as running:
            assert running.port != taken
            assert len(list(Client.open(running.url).search().items())) == 10


def _write_world(root: Path, *, feature_collections: bool) -> list[dict[str, Any]]:
    """Write a directory of collections and items; return the items."""
    items = _features(ITEM_FILES[2]) + _features(ITEM_FILES[4])
    (root / "collections").mkdir(parents=True)
    for collection_id in ("sentinel-2-l2a", "sentinel-1-rtc"):
        # item links must not make rustac load items twice (or fail on relative hrefs)
        links = [{"rel": "item", "href": f"../items/{collection_id}/x.json"}]
        text = json.dumps(_collection(collection_id, links))
        (root / "collections" / f"{collection_id}.json").write_text(text)
        members = [item for item in items if item["collection"] == collection_id]
        folder = root / "items" / collection_id
        folder.mkdir(parents=True)
        if feature_collections:
            page = {"type": "FeatureCollection", "features": members[1:]}
            (folder / "items.json").write_text(json.dumps(page))
            (folder / "first.ndjson").write_text(json.dumps(members[0]) + "\n")
        else:
            for item in members:
                (folder / f"{item['id']}.json").write_text(json.dumps(item))
    return items


@pytest.mark.parametrize("feature_collections", [False, True])
def test_serve_directory_layouts(tmp_path: Path, feature_collections: bool) -> None:
    items = _write_world(tmp_path, feature_collections=feature_collections)
    with serve_directory(tmp_path) as running:
        client = Client.open(running.url)
        found = [item.id for item in client.search(limit=5).items()]
        descriptions = {c.id: c.description for c in client.get_collections()}
    assert sorted(found) == sorted(item["id"] for item in items)
    assert descriptions == {
        "sentinel-2-l2a": "test collection sentinel-2-l2a",
        "sentinel-1-rtc": "test collection sentinel-1-rtc",
    }


def test_serve_directory_rejects_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no STAC files"):
        serve_directory(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        serve_directory(tmp_path / "nowhere")


def test_long_command_lines_bundle_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stac_server, "_MAX_ARGV_BYTES", 10)
    with StacServer(ITEM_FILES) as running:
        args = _running_args(running)
        assert not [arg for arg in args if arg.endswith(".json")]
        assert [arg for arg in args if arg.endswith(".ndjson")]
        found = list(Client.open(running.url).search(limit=50).items_as_dicts())
    assert len(found) == sum(len(_features(path)) for path in ITEM_FILES)


def _running_args(server: StacServer) -> list[str]:
    """Return the command line of a running server (Linux /proc)."""
    assert server.pid is not None, "the server is running, it must have a pid"
    if not Path("/proc/self/cmdline").exists():  # Linux (and CI) always has it
        pytest.skip("needs /proc (Linux) to read the server's command line")
    return Path(f"/proc/{server.pid}/cmdline").read_text().split("\0")
