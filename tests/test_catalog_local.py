"""lamap.catalog.local: ``with open_catalog(world)`` serves a demo world on 127.0.0.1; the rules
that keep the catalog package a house a newcomer can live in."""

from __future__ import annotations

import ast
import json
import pickle
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lamap._inputs import as_bbox
from lamap.catalog import PLANETARY_COMPUTER, CatalogProfile, open_catalog, search
from lamap.catalog.local import local_world, world_defaults
from lamap.errors import CatalogError
from lamap.synthetic.world import World

LAMAP = Path(__file__).resolve().parents[1] / "lamap"


def _landing(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + "/", timeout=5) as response:
        return dict(json.load(response))


def _answers(url: str) -> bool:
    try:
        return "links" in _landing(url)
    except OSError:
        return False


def test_open_catalog_serves_a_local_world_for_the_block(tiny_world: World) -> None:
    profile = open_catalog(tiny_world.root)
    assert profile.url is None
    first, last = tiny_world.s2_dates[0], tiny_world.s2_dates[-1]
    with profile as served:
        assert served.url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+", served.url)
        assert served.local_world == str(tiny_world.root) and served.name == "local"
        assert _answers(served.url)
        result = search(served, tiny_world.bbox, first, last)
        url = served.url
    assert len(result.s2) > 0 and len(result.s1) > 0
    assert {s.day for s in result.s2} <= set(tiny_world.s2_dates)
    assert not _answers(url)  # stopped with the block
    assert profile.url is None  # the resolved profile is unchanged


def test_the_server_stops_when_the_block_raises(tiny_world: World) -> None:
    urls = []
    with pytest.raises(RuntimeError, match="inside"), open_catalog(tiny_world.root) as served:
        urls.append(served.url)
        raise RuntimeError("inside the block")
    assert urls[0] is not None and not _answers(urls[0])


def test_nested_entries_serve_twice_and_stop_innermost_first(tiny_world: World) -> None:
    profile = open_catalog(tiny_world.root)
    with profile as outer:
        with profile as inner:
            assert inner.url != outer.url
            assert outer.url is not None and inner.url is not None
            assert _answers(outer.url) and _answers(inner.url)
        assert _answers(outer.url) and not _answers(inner.url)
    assert not _answers(outer.url)


def test_an_entered_profile_pickles_without_its_server(tiny_world: World) -> None:
    profile = open_catalog(tiny_world.root)
    with profile:
        copy = pickle.loads(pickle.dumps(profile))
    assert copy == profile and copy.local_world == profile.local_world
    assert copy.url is None


def test_remote_profiles_enter_as_themselves() -> None:
    with PLANETARY_COMPUTER as profile:
        assert profile is PLANETARY_COMPUTER
    with open_catalog("https://example.org/stac/v1") as custom:
        assert custom.url == "https://example.org/stac/v1"


def test_a_profile_without_url_or_world_cannot_be_served() -> None:
    with pytest.raises(CatalogError, match="neither a STAC API URL nor a local world"):
        with CatalogProfile(name="x", url=None):
            pass


def test_world_defaults_and_local_world(tiny_world: World) -> None:
    bbox, first, last = world_defaults(tiny_world.root)
    assert bbox == as_bbox(tiny_world.bbox)
    assert (first, last) == (tiny_world.s2_dates[0], tiny_world.s2_dates[-1])
    found = local_world(str(tiny_world.root))
    assert found is not None and found.root == tiny_world.root
    assert local_world("planetary-computer") is None
    with pytest.raises(CatalogError, match="not a demo world"):
        world_defaults("earth-search")


# --------------------------------------------------------------------------- house rules


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Return ``(module, names)`` of every import in a file, nested ones included."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


CATALOG_FILES = sorted((LAMAP / "catalog").glob("*.py")) + [LAMAP / "timesteps.py"]


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda p: p.name)
def test_no_private_names_are_imported_across_modules(path: Path) -> None:
    private = [
        f"from {module} import {name}"
        for module, names in _imports(path)
        if module.startswith("lamap")
        for name in names
        if name.startswith("_")
    ]
    assert private == []


@pytest.mark.parametrize(
    "path",
    [LAMAP / "mapping.py", LAMAP / "train" / "run.py", LAMAP / "bench.py",
     LAMAP / "bench_steps.py", LAMAP / "bench_plan.py",
     *(p for p in CATALOG_FILES if p.name != "local.py")],
    ids=lambda p: p.name,
)
def test_synthetic_is_reached_only_through_catalog_local(path: Path) -> None:
    direct = [module for module, _ in _imports(path) if module.startswith("lamap.synthetic")]
    assert direct == []


def test_no_catalog_module_is_over_the_650_line_limit() -> None:
    lengths = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in CATALOG_FILES}
    assert max(lengths.values()) <= 650, lengths
