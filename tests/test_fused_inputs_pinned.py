"""The fused model's inputs are pinned: byte for byte what lamap made before the registry.

``tests/data/fused_inputs_sha256.json`` holds the SHA-256 of the fused model's inputs (``s1``,
``lai``, ``masks``, ``season``, ``s1_valid``) and of the planner's choice, for every tile of
the tiny world with input on one date, through both paths that make them: the map's block
task (:func:`lamap.blocks.block_features`) and the training cache's lazy tile cube
(:func:`lamap.cube.tile_cubes` + :func:`lamap.features.build_features`). The file was written
by lamap before the S1 time series generalised the planner and the feature spec (issue 12);
the fused model must keep seeing exactly the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import dask
import numpy as np
import pytest

from lamap.blocks import BlockJob, block_features, block_windows
from lamap.catalog import open_catalog, search
from lamap.cube import CubeWindow, tile_cubes
from lamap.features import DEFAULT_SPEC, build_features
from lamap.grid import Grid
from lamap.tileplan import SceneIndex, iter_plans
from lamap.timesteps import TimeSteps, search_window

from .conftest import DATA

DATE = dt.date(2024, 4, 28)
PINNED = DATA / "fused_inputs_sha256.json"
VARIABLES = ("s1", "lai", "masks", "season", "s1_valid")


def _sha(values: np.ndarray) -> str:
    array = np.ascontiguousarray(values)
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()


def fused_input_hashes(world: Any, api_url: str, grid: Grid) -> dict[str, str]:
    """SHA-256 of the planner's choice and the fused inputs of every tile with input."""
    profile = open_catalog(str(world.root)).with_url(api_url)
    start, end = search_window([DATE])
    result = search(profile, world.bbox, start, end)
    hashes: dict[str, str] = {}
    for plan in iter_plans(SceneIndex.from_result(result), grid.tiles_for_bbox(world.bbox), DATE):
        if not isinstance(plan.steps, TimeSteps):
            continue
        tile = plan.tile.id
        text = json.dumps(plan.steps.to_dict(), sort_keys=True)
        hashes[f"{tile}/plan"] = hashlib.sha256(text.encode()).hexdigest()
        cubes = tile_cubes(plan.steps, result.s2, result.s1, CubeWindow.for_tile(plan.tile, 44))
        with dask.config.set(scheduler="synchronous"):
            ds = build_features(cubes, DEFAULT_SPEC)[list(VARIABLES)].compute()
        for name in VARIABLES:
            hashes[f"{tile}/cube/{name}"] = _sha(ds[name].values)
        s2, s1 = plan.used_scenes()
        window = block_windows(grid, plan.tile.window)[0]
        block = block_features(BlockJob(plan.steps, s2, s1, grid, window, 44, DEFAULT_SPEC))
        hashes[f"{tile}/block/inputs"] = _sha(block.inputs)
        hashes[f"{tile}/block/season"] = _sha(block.context)
        hashes[f"{tile}/block/has_input"] = _sha(block.has_input)
    return hashes


@pytest.mark.slow
def test_the_fused_inputs_are_byte_identical(tiny_world, tiny_api, grid) -> None:  # type: ignore[no-untyped-def]
    pinned = json.loads(PINNED.read_text())
    found = fused_input_hashes(tiny_world, tiny_api.url, grid)
    assert len(found) >= 9, found
    assert found == pinned["sha256"]
