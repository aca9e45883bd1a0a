"""The naive peer of ``lamap bench`` computes what lamap computes, tile for tile."""

from __future__ import annotations

import datetime as dt

import dask
import numpy as np
import pytest

from lamap.catalog import open_catalog, search
from lamap.features import FeatureSpec
from lamap.grid import Grid, Tile
from lamap.infer import ModelRef
from lamap.mapping import tile_arrays
from lamap.model import load_checkpoint, recommended_halo
from lamap.peer import PeerResult, naive_map
from lamap.store import Source
from lamap.timesteps import TimeSteps, plan_time_steps, search_window

DATE = dt.date(2024, 4, 28)  # an S2 day: observed LAI where clear


def _busiest_tile(grid: Grid, world) -> Tile:  # type: ignore[no-untyped-def]
    """The tile holding most of the world's pixels (the world sits across a tile corner)."""
    inside = grid.window_for_bounds(world.meta["truth_grid"]["bounds"])

    def overlap(tile: Tile) -> int:
        part = tile.window.intersection(inside)
        return 0 if part is None else part.height * part.width

    return max(grid.tiles_for_bbox(world.bbox), key=overlap)


@pytest.fixture(scope="module")
def planned(tiny_world, tiny_api, grid):  # type: ignore[no-untyped-def]
    tile = _busiest_tile(grid, tiny_world)
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    result = search(profile, tiny_world.bbox, *search_window([DATE]))
    steps = plan_time_steps(
        result.s2, result.s1, DATE, tile.lonlat_bounds().to_tuple(), tile_id=tile.id
    )
    assert isinstance(steps, TimeSteps)
    return tile, result, steps


@pytest.fixture(scope="module")
def lamap_tile(planned, model):  # type: ignore[no-untyped-def]
    tile, result, steps = planned
    loaded = load_checkpoint(model)
    arrays = tile_arrays(
        steps,
        result,
        tile,
        ModelRef.from_path(str(model)),
        halo=recommended_halo(loaded.config),
        spec=FeatureSpec.from_dict(loaded.feature_spec),
    )
    lai, source = dask.compute(*arrays, scheduler="synchronous")
    return lai, source


@pytest.fixture(scope="module")
def peer(planned, model, grid) -> PeerResult:  # type: ignore[no-untyped-def]
    tile, result, steps = planned
    return naive_map(steps, result.s2, result.s1, grid, tile.window, str(model))


def test_peer_matches_lamap_on_one_tile(peer: PeerResult, lamap_tile, planned) -> None:  # type: ignore[no-untyped-def]
    lai, source = lamap_tile
    tile = planned[0]
    assert peer.lai.shape == peer.source.shape == tile.shape
    assert peer.lai.dtype == np.float32 and peer.source.dtype == np.uint8
    assert (source == Source.OBSERVED).sum() > 500 and (source == Source.FILLED).sum() > 500
    assert (peer.source == source).mean() >= 0.99
    assert (np.isnan(peer.lai) == np.isnan(lai)).mean() >= 0.99
    both = np.isfinite(peer.lai) & np.isfinite(lai)
    assert both.sum() > 1000
    r = np.corrcoef(peer.lai[both], lai[both])[0, 1]
    assert r >= 0.999, f"LAI Pearson r {r:.6f}"
    # the store's contract: LAI finite exactly where there is a source, within 0..8
    assert np.array_equal(np.isfinite(peer.lai), peer.source != Source.NO_INPUT)
    assert np.nanmin(peer.lai) >= 0.0 and np.nanmax(peer.lai) <= 8.0


def test_peer_reports_its_work(peer: PeerResult, planned, model) -> None:  # type: ignore[no-untyped-def]
    tile = planned[0]
    halo = recommended_halo(load_checkpoint(model).config)
    assert peer.seconds > 0
    assert peer.px_per_s == pytest.approx(tile.shape[0] * tile.shape[1] / peer.seconds)
    # one window (the tile is smaller than a block) with its halo on every side
    assert peer.model_px == (tile.shape[0] + 2 * halo) * (tile.shape[1] + 2 * halo)


def test_smaller_blocks_give_nearly_the_same_map(peer: PeerResult, planned, model, grid) -> None:  # type: ignore[no-untyped-def]
    tile, result, steps = planned
    halo = recommended_halo(load_checkpoint(model).config)
    small = naive_map(steps, result.s2, result.s1, grid, tile.window, str(model), block=128)
    # GDAL's approximate transformer (0.125 px) makes a resampled value depend on the window
    # it is read through (lamap's exact warp does not), so the peer is not seamless: close only
    assert (small.source == peer.source).mean() >= 0.999
    both = np.isfinite(small.lai) & np.isfinite(peer.lai)
    assert (np.isfinite(small.lai) == np.isfinite(peer.lai)).mean() >= 0.999
    assert np.abs(small.lai[both] - peer.lai[both]).max() < 0.02
    blocks = -(-tile.shape[0] // 128) * -(-tile.shape[1] // 128)
    assert small.model_px == blocks * (128 + 2 * halo) ** 2


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory: pytest.TempPathFactory, model):  # type: ignore[no-untyped-def]
    """The session's seeded network with a feature spec that sharpens the 20-m bands."""
    from dataclasses import replace

    from lamap.model import save_checkpoint

    loaded = load_checkpoint(model)
    spec = replace(FeatureSpec.from_dict(loaded.feature_spec), s2_sharpen=3)
    path = tmp_path_factory.mktemp("sharp") / "sharp.pt"
    save_checkpoint(path, loaded.model, feature_spec=spec.to_dict())
    return path


def test_a_sharpening_spec_reads_b08_in_lamap_and_the_peer_alike(  # type: ignore[no-untyped-def]
        planned, sharp_model, lamap_tile, grid) -> None:
    tile, result, steps = planned
    loaded = load_checkpoint(sharp_model)
    spec = FeatureSpec.from_dict(loaded.feature_spec)
    arrays = tile_arrays(steps, result, tile, ModelRef.from_path(str(sharp_model)),
                         halo=recommended_halo(loaded.config), spec=spec)
    lai, source = dask.compute(*arrays, scheduler="synchronous")
    plain_lai, plain_source = lamap_tile
    observed = (source == Source.OBSERVED) & (plain_source == Source.OBSERVED)
    assert observed.sum() > 500
    changed = np.abs(lai[observed] - plain_lai[observed]) > 0.05
    assert 0.01 < changed.mean() < 0.9, "sharpening moves the observed LAI at field edges only"
    peer = naive_map(steps, result.s2, result.s1, grid, tile.window, str(sharp_model))
    assert (peer.source == source).mean() >= 0.99
    both = np.isfinite(peer.lai) & np.isfinite(lai)
    assert np.corrcoef(peer.lai[both], lai[both])[0, 1] >= 0.999
