"""The block engine: equal to the map_overlap graph, indexed plans, halo factor, dry run."""

from __future__ import annotations

import datetime as dt

import dask
import numpy as np
import pytest

from lamap.blocks import BlockJob, block_features, block_lai, block_windows, halo_factor
from lamap.catalog import open_catalog, search
from lamap.features import FeatureSpec
from lamap.grid import Grid, get_grid
from lamap.infer import ModelRef
from lamap.mapping import MapOptions, plan_map, tile_arrays
from lamap.model import load_checkpoint, recommended_halo
from lamap.synthetic.world import World
from lamap.tileplan import SceneIndex, iter_plans, plan_tile
from lamap.timesteps import TimeSteps, plan_time_steps, search_window

DATE = dt.date(2024, 4, 28)


@pytest.fixture(scope="module")
def result(tiny_world: World, tiny_api):  # type: ignore[no-untyped-def]
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    start, end = search_window([DATE])
    return search(profile, tiny_world.bbox, start, end)


def test_europe_blocks_compute_at_most_1_2_model_pixels_per_output_pixel() -> None:
    europe = get_grid("europe")
    factor = halo_factor((europe.shard, europe.shard), 44, europe.shard)
    assert factor <= 1.2
    # the previous map_overlap path cut 500-px chunks (544 px at a tile's edge, the halo ring
    # merged in) into 256-px windows with their own halos, padded to 512 or 768 px
    assert halo_factor((europe.chunk, europe.chunk), 44, 256) > 1.8
    assert halo_factor((544, 544), 44, 256) > 3.5


def test_indexed_plans_equal_plans_against_the_whole_result(result, grid: Grid, tiny_world) -> None:  # type: ignore[no-untyped-def]
    index = SceneIndex.from_result(result)
    tiles = grid.tiles_for_bbox(tiny_world.bbox)
    for plan in iter_plans(index, tiles, DATE):
        whole = plan_time_steps(result.s2, result.s1, DATE, plan.tile.lonlat_bounds().to_tuple(),
                                tile_id=plan.tile.id)  # fmt: skip
        assert plan.steps == whole
        assert len(plan.s2) <= len(result.s2) and len(plan.s1) <= len(result.s1)
        s2, s1 = plan.used_scenes()
        if isinstance(plan.steps, TimeSteps):
            assert {s.id for s in s2} == set(plan.steps.s2_item_ids)
            assert {s.id for s in s1} == set(plan.steps.s1_item_ids)


def _busiest(grid: Grid, world: World):  # type: ignore[no-untyped-def]
    """The tile holding most of the world."""
    truth = grid.window_for_bounds(world.meta["truth_grid"]["bounds"])

    def inside(tile):  # type: ignore[no-untyped-def]
        common = tile.window.intersection(truth)
        return 0 if common is None else common.height * common.width

    return max(grid.tiles_for_window(grid.window), key=inside)


def _busiest_plan(result, grid: Grid, model, world: World):  # type: ignore[no-untyped-def]
    """Halo, feature spec and plan of the tile holding most of the world."""
    loaded = load_checkpoint(model)
    halo, spec = recommended_halo(loaded.config), FeatureSpec.from_dict(loaded.feature_spec)
    plan = plan_tile(SceneIndex.from_result(result), _busiest(grid, world), DATE)
    assert isinstance(plan.steps, TimeSteps)
    return halo, spec, plan


def test_exact_blocks_equal_the_map_overlap_graph_of_the_tile(
    result, grid: Grid, model, tiny_world
) -> None:  # type: ignore[no-untyped-def]
    """Blocks read with their own halos give the tile computed in one graph (seamless)."""
    halo, spec, plan = _busiest_plan(result, grid, model, tiny_world)
    tile = plan.tile
    whole_lai, whole_source = dask.compute(
        *tile_arrays(plan.steps, result, tile, ModelRef.from_path(str(model)), halo=halo,
                     spec=spec),
        scheduler="synchronous",
    )  # fmt: skip
    ref = ModelRef.from_path(str(model), window=grid.shard)
    s2, s1 = plan.used_scenes()
    windows = block_windows(grid, tile.window)
    assert len(windows) == 4
    for window in windows:
        job = BlockJob(plan.steps, s2, s1, grid, window, halo, spec, exact_warp=True)
        block = block_lai(block_features(job), ref, lai_scale=spec.lai_scale)
        rows, cols = window.relative_to(tile.window).to_slices()
        np.testing.assert_array_equal(block.source, whole_source[rows, cols])
        # the same to the warp's 1e-4 px tolerance (SNAP and the network amplify it a little)
        np.testing.assert_allclose(block.lai, whole_lai[rows, cols], atol=5e-3, equal_nan=True)
        off = np.abs(block.lai - whole_lai[rows, cols]) > 1e-4
        assert off.mean() < 0.01, off.mean()
    assert np.isfinite(whole_lai).mean() > 0.3


def test_approximate_warp_stays_close_to_exact(result, grid: Grid, model, tiny_world) -> None:  # type: ignore[no-untyped-def]
    halo, spec, plan = _busiest_plan(result, grid, model, tiny_world)
    tile = plan.tile
    s2, s1 = plan.used_scenes()
    window = block_windows(grid, tile.window)[1]
    exact = block_features(BlockJob(plan.steps, s2, s1, grid, window, halo, spec, exact_warp=True))
    approx = block_features(BlockJob(plan.steps, s2, s1, grid, window, halo, spec))
    difference = np.abs(exact.inputs - approx.inputs)
    assert difference.mean() < 1e-3
    assert (difference < 1e-2).mean() > 0.99
    again = block_features(BlockJob(plan.steps, s2, s1, grid, window, halo, spec))
    np.testing.assert_array_equal(again.inputs, approx.inputs)  # the same window, the same bytes


def test_dry_run_plans_without_creating_a_store(tiny_world: World, grid: Grid, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "never.zarr"
    summary = plan_map(tiny_world.bbox, DATE, out, catalog=str(tiny_world.root), grid=grid,
                       options=MapOptions(lookback_days=20))  # fmt: skip
    assert not out.exists()
    assert summary.tiles == 4 and summary.planned + len(summary.no_input) == 4
    assert summary.planned >= 1 and summary.pixels == summary.planned * 256 * 256
    assert summary.items > 0 and summary.scenes >= summary.items
    text = "\n".join(summary.lines())
    assert "4 tiles" in text and "items per tile" in text
    short = plan_map(tiny_world.bbox, DATE, None, catalog=str(tiny_world.root), grid=grid,
                     options=MapOptions(lookback_days=3))  # fmt: skip
    assert short.planned == 0 and len(short.no_input) == 4
    assert all("lookback" in why or "before" in why for why in short.no_input.values())
