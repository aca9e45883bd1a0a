"""Shared test fixtures: paths to ../shared, tiny seeded worlds, a local STAC API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("LAMAP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures" / "stac"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        raise RuntimeError(f"tests need ../shared next to the repository (looked in {SHARED})")
    return SHARED


TINY_WORLD = {"seed": 7, "size": 192, "days": 30}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small seeded world (two UTM zones, 6 S2 and 5 S1 dates), generated once."""
    from lamap.synthetic.world import WorldSpec, generate_world

    return generate_world(tmp_path_factory.mktemp("tiny") / "world", WorldSpec(**TINY_WORLD))


@pytest.fixture(scope="session")
def tiny_api(tiny_world):  # type: ignore[no-untyped-def]
    """The tiny world's STAC API on 127.0.0.1 (rustac serve), for the whole session."""
    from lamap.catalog.server import StacServer

    with StacServer(tiny_world.item_paths, collections=tiny_world.collection_paths) as server:
        yield server


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained checkpoint of the tiny network (fast, same receptive field)."""
    from lamap.features import FeatureSpec
    from lamap.model import ModelConfig, save_checkpoint, seeded_model

    path = tmp_path_factory.mktemp("model") / "seeded.pt"
    save_checkpoint(path, seeded_model(0, ModelConfig.tiny()), feature_spec=FeatureSpec().to_dict())
    return path


@pytest.fixture(scope="session")
def grid(tiny_world):  # type: ignore[no-untyped-def]
    """A small EPSG:3035 grid over the tiny world: 128-px chunks and shards, 256-px tiles."""
    from lamap.grid import Grid

    return Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=128, shard=128, tile=256)
