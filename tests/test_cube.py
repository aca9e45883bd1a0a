"""Cubes: geometry from real catalog metadata (graph only), values from the offline world."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window as RioWindow
from stackstac.raster_spec import RasterSpec
from stackstac.rio_reader import AutoParallelRioReader

from lamap.catalog import (
    EARTH_SEARCH,
    PLANETARY_COMPUTER,
    S2Scene,
    open_catalog,
    parse_items,
    search,
)
from lamap.cube import (
    SNAP_BANDS,
    CubeWindow,
    s1_cube,
    s2_cube,
    scl_cube,
    tile_cubes,
)
from lamap.features import build_features
from lamap.grid import Grid, Window, get_grid
from lamap.readers import COVERED, ExactSpec, OneReadReader, UnmaskedReader
from lamap.synthetic.world import World
from lamap.timesteps import TimeSteps, plan_time_steps, s2_days
from tests._dask import raise_if_dask_computes
from tests.conftest import FIXTURES


def _features(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text())["features"]


def _s2(name: str, profile=PLANETARY_COMPUTER) -> list[S2Scene]:
    s2, _, _, _ = parse_items(_features(name), profile, sentinel1=False)
    return list(s2)


def _window(grid: Grid, bbox: tuple[float, float, float, float]) -> CubeWindow:
    return CubeWindow(grid, grid.window_for_bbox(bbox, snap="pixel"))


# ----------------------------------------------------------- real catalog metadata, no compute


def test_pc_time_series_geometry_and_choice() -> None:
    scenes = _s2("pc-sentinel-2-l2a-35MNM-2020-06-to-07.json")
    bbox = (27.30, -7.90, 27.40, -7.80)
    days = [d for d in s2_days(scenes, bbox) if d.day < dt.date(2020, 6, 24)][-2:]
    assert [d.day for d in days] == [dt.date(2020, 6, 16), dt.date(2020, 6, 21)]
    grid = Grid.utm(35, south=True)
    where = _window(grid, bbox)
    with raise_if_dask_computes():
        cube = s2_cube(scenes, days, where)
        scl = scl_cube(scenes, days, where)
    assert cube.dims == ("time", "band", "y", "x")
    assert cube.shape == (2, 8, *where.window.shape)
    assert list(cube.band.values) == list(SNAP_BANDS)
    np.testing.assert_array_equal(cube.x.values, grid.x_coords(where.window))
    np.testing.assert_array_equal(cube.y.values, grid.y_coords(where.window))
    assert cube.attrs["crs"] == "epsg:32735" and cube.attrs["resolution"] == 10
    assert list(cube.boa_offset.values) == [0, 0], "baseline 02.12 has no BOA offset"
    assert cube.dtype == np.float32 and scl.dtype == np.uint8
    assert np.all((cube.sun_zenith.values > 20) & (cube.sun_zenith.values < 60))
    # chunks follow the grid's chunk boundaries
    row_chunks = cube.chunks[2]
    edges = np.cumsum((where.window.row_start, *row_chunks))[1:-1]
    assert np.all(edges % grid.chunk == 0)


def test_pc_baseline_05_offset_and_partial_orbit() -> None:
    scenes = _s2("pc-sentinel-2-l2a-13TDE-2024-05-30-to-06-21.json")
    assert {s.boa_offset for s in scenes} == {-1000}
    # a point west of the R098 swath edge: only R141 days qualify
    bbox = (-106.10, 40.50, -106.05, 40.55)
    days = s2_days(scenes, bbox)
    orbits = {s.relative_orbit for s in scenes if s.day in {d.day for d in days}}
    assert orbits == {141}
    with raise_if_dask_computes():
        cube = s2_cube(scenes, days[-2:], _window(Grid.utm(13), bbox))
    assert list(cube.boa_offset.values) == [-1000, -1000]


def test_earth_search_duplicates_and_offsets() -> None:
    page = json.loads(
        (FIXTURES / "search-pages/es-v1-search-sentinel-2-l2a-13SDV-2020-05-01.json").read_text()
    )["features"]
    s2, _, duplicates, _ = parse_items(page, EARTH_SEARCH, sentinel1=False)
    assert len(s2) == 1 and len(duplicates) == 1
    assert s2[0].id == "S2B_13SDV_20200501_1_L2A" and s2[0].boa_offset == 0
    c1_profile = open_catalog("earth-search", s2_collection="sentinel-2-c1-l2a")
    c1 = _s2("es-sentinel-2-c1-l2a-13TDE-2024-03-31-to-04-22.json", c1_profile)
    assert {s.boa_offset for s in c1} == {-1000}
    bbox = (-105.2, 40.1, -105.15, 40.15)
    with raise_if_dask_computes():
        cube = s2_cube(c1, s2_days(c1, bbox)[:2], _window(Grid.utm(13), bbox))
    assert cube.sizes["band"] == 8 and cube.attrs["crs"] == "epsg:32613"


def test_pc_rtc_cube_geometry() -> None:
    _, s1, _, _ = parse_items(_features("pc-sentinel-1-rtc-2024-04-19.json"), PLANETARY_COMPUTER)
    assert all(len(s.transform) == 6 for s in s1)
    from lamap.timesteps import s1_passes

    bbox = (15.0, 30.2, 15.05, 30.25)
    passes = s1_passes(s1, bbox)
    assert len(passes) == 1 and passes[0].orbit_state == "descending"
    where = _window(Grid.utm(33), bbox)
    with raise_if_dask_computes():
        cube = s1_cube(s1, passes, where)
    assert cube.dims == ("time", "band", "y", "x")
    assert cube.shape == (1, 2, *where.window.shape)
    assert list(cube.band.values) == ["vv", "vh"]


# ------------------------------------------------------------------ the offline world


@pytest.fixture(scope="module")
def tiny_search(tiny_world: World, tiny_api):  # type: ignore[no-untyped-def]
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    return search(profile, tiny_world.bbox, "2024-04-01", "2024-05-01")


def _steps(tiny_world: World, tiny_search, date: dt.date) -> TimeSteps:  # type: ignore[no-untyped-def]
    steps = plan_time_steps(tiny_search.s2, tiny_search.s1, date, tiny_world.bbox, min_coverage=0.0)
    assert isinstance(steps, TimeSteps), steps
    return steps


def _warp(href: str, where: CubeWindow, nodata: float, resampling: Resampling) -> np.ndarray:
    with rasterio.open(href) as src:
        data = src.read(1).astype(np.float32)
        out = np.full(where.window.shape, np.nan, dtype=np.float32)
        reproject(
            data,
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=nodata,
            dst_transform=where.grid.window_transform(where.window),
            dst_crs=where.grid.crs,
            dst_nodata=np.nan,
            resampling=resampling,
        )
    return out


def test_tile_cubes_build_without_compute(tiny_world: World, tiny_search) -> None:  # type: ignore[no-untyped-def]
    steps = _steps(tiny_world, tiny_search, dt.date(2024, 4, 23))
    grid = get_grid("europe")
    tile = grid.tiles_for_bbox(tiny_world.bbox)[0]
    with raise_if_dask_computes():
        cubes = tile_cubes(
            steps, tiny_search.s2, tiny_search.s1, CubeWindow.for_tile(tile, halo=48)
        )
        features = build_features(cubes)
    assert set(features.data_vars) >= {"s1", "lai", "masks", "season", "target", "observed_lai"}
    assert features["masks"].shape[:2] == (2, 6)
    assert cubes.s2.shape[-2:] == (grid.tile + 96, grid.tile + 96)
    assert cubes.s1.sizes["time"] == 3 and cubes.scl.sizes["time"] == 2
    assert cubes.s2_now is not None, "2024-04-23 is an S2 day: observed cube expected"


def test_utm_cube_equals_the_cogs(tiny_world: World, tiny_search) -> None:  # type: ignore[no-untyped-def]
    """On the products' own UTM grid the cube is the COG's DN, offset and scaled."""
    steps = _steps(tiny_world, tiny_search, dt.date(2024, 4, 24))
    item = next(s for s in tiny_search.s2 if s.id == steps.t1.item_ids[0])  # on top
    grid = Grid.utm(item.epsg % 100)
    where = _window(grid, item.footprint.bounds)
    cube = s2_cube(tiny_search.s2, [steps.t1], where).sel(band="B04").isel(time=0).compute()
    expected = _warp(item.asset("B04").href, where, 0, Resampling.nearest)
    expected = (expected - 1000) / 10000
    both = np.isfinite(cube.values) & np.isfinite(expected)
    assert both.mean() > 0.5
    np.testing.assert_allclose(cube.values[both], expected[both], atol=0.5e-4)


def test_cross_zone_cube_matches_warped_cogs(tiny_world: World, tiny_search) -> None:  # type: ignore[no-untyped-def]
    steps = _steps(tiny_world, tiny_search, dt.date(2024, 4, 24))
    grid = get_grid("europe")
    where = _window(grid, tiny_world.bbox)
    cubes = tile_cubes(steps, tiny_search.s2, tiny_search.s1, where)
    s2 = cubes.s2.sel(band="B8A").isel(time=1).compute().values
    expected = np.full(where.window.shape, np.nan, dtype=np.float32)
    for item_id in reversed(steps.t1.item_ids):  # first item on top, as the mosaic
        scene = next(s for s in tiny_search.s2 if s.id == item_id)
        warped = (_warp(scene.asset("B8A").href, where, 0, Resampling.bilinear) - 1000) / 1e4
        expected = np.where(np.isfinite(warped), warped, expected)
    both = np.isfinite(s2) & np.isfinite(expected)
    assert both.mean() > 0.7
    assert np.mean(np.abs(s2[both] - expected[both]) < 1e-3) > 0.99
    assert np.isnan(s2[~np.isfinite(expected)]).mean() > 0.95, "NaN outside the footprints"
    vv = cubes.s1.sel(band="vv").isel(time=2).compute().values
    pass_items = steps.s1[2].item_ids
    scene = next(s for s in tiny_search.s1 if s.id == pass_items[0])
    linear = _warp(scene.asset("vv").href, where, -32768, Resampling.bilinear)
    expected_db = 10 * np.log10(linear)
    both = np.isfinite(vv) & np.isfinite(expected_db)
    assert both.mean() > 0.7
    assert np.mean(np.abs(vv[both] - expected_db[both]) < 0.01) > 0.99
    assert np.all(np.isnan(vv[~np.isfinite(expected_db) & ~both]))
    scl = cubes.scl.isel(time=1).compute().values
    assert set(np.unique(scl)) <= set(range(12))


def test_a_block_reads_only_the_cogs_it_overlaps(
    tiny_world: World, tiny_search, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Make zone 31's COGs unreadable: blocks east of its footprint still compute."""
    steps = _steps(tiny_world, tiny_search, dt.date(2024, 4, 24))
    west, south, east, north = tiny_world.bbox
    grid = Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=16, shard=32, tile=64)
    where = _window(grid, tiny_world.bbox)
    hidden = []
    for scene in tiny_search.s2:
        if "_T31" in scene.id and scene.id in steps.t1.item_ids:
            for band in SNAP_BANDS:
                path = Path(scene.asset(band).href)
                hidden.append((path, tmp_path / path.name))
                shutil.move(path, tmp_path / path.name)
    try:
        cube = s2_cube(tiny_search.s2, [steps.t1], where)
        assert cube.data.numblocks[-1] >= 8
        east_block = cube.isel(x=slice(-16, None), y=slice(0, 16))
        assert np.isfinite(east_block.compute().values).any()
        with pytest.raises(Exception, match="No such file|does not exist|not recognized"):
            cube.isel(x=slice(0, 16), y=slice(0, 16)).compute()
    finally:
        for path, moved in hidden:
            shutil.move(moved, path)


def test_a_day_whose_other_zone_misses_the_window(tiny_world: World, tiny_search) -> None:  # type: ignore[no-untyped-def]
    """A window east of zone 31's product: stackstac drops that item, the day still mosaics."""
    steps = _steps(tiny_world, tiny_search, dt.date(2024, 4, 24))
    assert any("_T31" in i for i in steps.t1.item_ids)
    west, south, east, north = tiny_world.bbox
    bbox = (east - 0.002, south + 0.005, east - 0.0005, south + 0.006)
    grid = Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=16, shard=32, tile=64)
    cube = s2_cube(tiny_search.s2, [steps.t2, steps.t1], _window(grid, bbox))
    values = cube.compute()
    assert np.isfinite(values.sel(band="B04").isel(time=1).values).mean() > 0.9
    assert list(values.boa_offset.values) == [-1000, -1000]


@pytest.mark.parametrize("exact", [False, True])
def test_unmasked_reads_equal_stackstacs_masked_reads(tiny_world: World, exact: bool) -> None:
    """One warp per read instead of two, the same arrays (S2 DN, SCL, S1 gamma0)."""
    grid = Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=128, shard=128, tile=256)
    world = grid.window_for_bounds(tiny_world.meta["truth_grid"]["bounds"]).grow(20)
    spec = RasterSpec(3035, grid.window_bounds(world), (10.0, 10.0))
    if exact:
        spec = ExactSpec(spec.epsg, spec.bounds, spec.resolutions_xy)
    s2 = json.loads(next(p for p in tiny_world.item_paths if "T32UGP" in p.name).read_text())
    s1 = json.loads(next(p for p in tiny_world.item_paths if "_rtc" in p.name).read_text())
    cases = [(s2["assets"]["B05"]["href"], "float32", np.nan, Resampling.bilinear),
             (s2["assets"]["SCL"]["href"], "uint8", 0, Resampling.nearest),
             (s1["assets"]["vv"]["href"], "float32", np.nan, Resampling.bilinear)]  # fmt: skip
    whole = RioWindow(0, 0, spec.shape[1], spec.shape[0])
    for href, dtype, fill, resampling in cases:
        args = dict(url=href, spec=spec, resampling=resampling, dtype=np.dtype(dtype),
                    fill_value=np.array(fill, dtype=dtype)[()], scale_offset=(1.0, 0.0),
                    gdal_env=None, errors_as_nodata=())  # fmt: skip
        expected = AutoParallelRioReader(**args).read(whole)  # stackstac's masked read
        got = UnmaskedReader(**args).read(whole)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        missing = np.isnan(got) if np.isnan(fill) else got == fill
        assert missing.any() and not missing.all(), "the window should reach past the data"


def test_one_read_fast_path_equals_the_nodata_aware_read(tiny_world: World) -> None:
    """Inside the data, the warp without nodata handling gives the very same array; a window
    reaching nodata falls back to the nodata-aware read (and still equals it)."""
    grid = Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=128, shard=128, tile=256)
    world = grid.window_for_bounds(tiny_world.meta["truth_grid"]["bounds"])
    item = json.loads(next(p for p in tiny_world.item_paths if "T32UGP" in p.name).read_text())
    s1 = json.loads(next(p for p in tiny_world.item_paths if "_rtc" in p.name).read_text())
    east = world.col_stop - world.width // 3  # zone 32's product covers the world's east
    inside = Window(world.row_start + 24, world.row_stop - 24, east, world.col_stop - 24)
    outside = world.grow(20)
    for window, clean in ((inside, True), (outside, False)):
        spec = RasterSpec(3035, grid.window_bounds(window), (10.0, 10.0))
        whole = RioWindow(0, 0, spec.shape[1], spec.shape[0])
        for source in (item, s1):
            COVERED.add(tuple(spec.bounds), source)
            for asset in ("B05", "B04", "vv", "vh"):
                if asset not in source["assets"]:
                    continue
                args = dict(url=source["assets"][asset]["href"], spec=spec,
                            resampling=Resampling.bilinear, dtype=np.dtype("float32"),
                            fill_value=np.float32(np.nan), scale_offset=(1.0, 0.0),
                            gdal_env=None, errors_as_nodata=())  # fmt: skip
                fast = OneReadReader(**args)
                assert (fast._clean_read(whole) is not None) == clean, (asset, clean)
                np.testing.assert_array_equal(fast.read(whole), UnmaskedReader(**args).read(whole))


def test_scenes_under_a_covering_scene_are_not_read(tiny_world: World, tiny_search) -> None:  # type: ignore[no-untyped-def]
    """A day's mosaic shows its last scene on top: under one whose footprint covers the
    window, the others are not read; with the real footprints, both zones are."""
    import dataclasses

    import shapely

    from lamap.cube import _items_to_read

    steps = _steps(tiny_world, tiny_search, dt.date(2024, 4, 24))
    group = steps.t1.item_ids
    assert len(group) == 2, group
    grid = Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=16, shard=32, tile=64)
    where = CubeWindow(grid, grid.window_for_bounds(tiny_world.meta["truth_grid"]["bounds"]),
                       one_chunk=True)  # fmt: skip
    scenes = [s for s in tiny_search.s2 if s.id in group]
    real = [i["id"] for i in _items_to_read(scenes, [group], where, None)]
    assert sorted(real) == sorted(group)
    everywhere = shapely.box(-180, -90, 180, 90)
    widened = [dataclasses.replace(s, footprint=everywhere) if s.id == group[-1] else s
               for s in scenes]  # fmt: skip
    assert [i["id"] for i in _items_to_read(widened, [group], where, None)] == [group[-1]]


def test_group_reads_equal_single_reads(tiny_world: World) -> None:
    """An item's bands on one source grid are warped in one pass (the first read stashes the
    siblings' bands), with the very same arrays as one read per asset: inside the data (no
    nodata path) and over a window reaching past it (nodata path)."""
    from lamap.readers import GROUPS, _stash

    grid = Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=128, shard=128, tile=256)
    world = grid.window_for_bounds(tiny_world.meta["truth_grid"]["bounds"])
    item = json.loads(next(p for p in tiny_world.item_paths if "T32UGP" in p.name).read_text())
    s1 = json.loads(next(p for p in tiny_world.item_paths if "_rtc" in p.name).read_text())
    east = world.col_stop - world.width // 3
    inside = Window(world.row_start + 24, world.row_stop - 24, east, world.col_stop - 24)
    for window in (inside, world.grow(20)):
        spec = ExactSpec(3035, grid.window_bounds(window), (10.0, 10.0))
        whole = RioWindow(0, 0, spec.shape[1], spec.shape[0])
        for source, assets in ((item, ("B03", "B04", "B05", "B06", "B8A", "B11")),
                               (s1, ("vv", "vh"))):  # fmt: skip
            hrefs = [source["assets"][a]["href"] for a in assets]
            COVERED.add(tuple(spec.bounds), source)
            GROUPS.add(tuple(spec.bounds), hrefs)
            _stash().clear()
            for n, href in enumerate(hrefs):
                args = dict(url=href, spec=spec, resampling=Resampling.bilinear,
                            dtype=np.dtype("float32"), fill_value=np.float32(np.nan),
                            scale_offset=(1.0, 0.0), gdal_env=None,
                            errors_as_nodata=())  # fmt: skip
                got = OneReadReader(**args).read(whole)
                np.testing.assert_array_equal(got, UnmaskedReader(**args).read(whole))
                if n in (0, 2):  # B03 warps B04 (10 m); B05 the other 20-m bands; vv warps vh
                    assert len(_stash()) == (1 if n == 0 else 3)
            assert not _stash(), "every stashed band was taken by its own read"
