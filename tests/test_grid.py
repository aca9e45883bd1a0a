"""Tests for lamap.grid: grid and tile arithmetic (property tests) and every validation error."""

from __future__ import annotations

import json
import math
import pickle
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

from lamap._inputs import BBox, as_bbox
from lamap.errors import GridError, InputError
from lamap.grid import (
    EUROPE,
    GRIDS,
    Grid,
    Tile,
    Window,
    get_grid,
    normalise_crs,
    resolve_grid,
)

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Projected CRSs and a centre (metres) well inside each one's area of use.
CRS_CENTRES = {
    "EPSG:3035": (4_300_000.0, 2_900_000.0),
    "EPSG:32632": (500_000.0, 5_300_000.0),
    "EPSG:32733": (500_000.0, 7_000_000.0),
}


# ----------------------------------------------------------------------------- strategies


@st.composite
def small_grids(draw: st.DrawFn) -> Grid:
    """Small grids whose shape is often not a multiple of the tile (partial edge tiles)."""
    crs = draw(st.sampled_from(sorted(CRS_CENTRES)))
    resolution = draw(st.sampled_from([2.5, 10.0, 20.0, 30.0, 60.0]))
    chunk = draw(st.integers(1, 12))
    shard = chunk * draw(st.integers(1, 4))
    tile = shard * draw(st.integers(1, 4))
    rows = draw(st.integers(1, 5 * tile + 7))
    cols = draw(st.integers(1, 5 * tile + 7))
    cx, cy = CRS_CENTRES[crs]
    steps_x = draw(st.integers(-2000, 2000))
    steps_y = draw(st.integers(-2000, 2000))
    origin = (
        round(cx / resolution) * resolution + steps_x * resolution,
        round(cy / resolution) * resolution + steps_y * resolution,
    )
    return Grid(crs, resolution, origin, (rows, cols), chunk, shard, tile, name="small")


@st.composite
def windows_in(draw: st.DrawFn, shape: tuple[int, int]) -> Window:
    """A non-empty window inside a grid of this shape."""
    rows, cols = shape
    row_start = draw(st.integers(0, rows - 1))
    col_start = draw(st.integers(0, cols - 1))
    row_stop = draw(st.integers(row_start + 1, rows))
    col_stop = draw(st.integers(col_start + 1, cols))
    return Window(row_start, row_stop, col_start, col_stop)


@st.composite
def grid_and_window(draw: st.DrawFn) -> tuple[Grid, Window]:
    grid = draw(small_grids())
    return grid, draw(windows_in(grid.shape))


@st.composite
def europe_bboxes(draw: st.DrawFn) -> BBox:
    """Lon/lat boxes up to 0.6 degrees wide, well inside the europe grid."""
    west = draw(st.floats(-10.0, 30.0))
    south = draw(st.floats(36.0, 68.0))
    width = draw(st.floats(1e-4, 0.6))
    height = draw(st.floats(1e-4, 0.6))
    return BBox(west, south, west + width, south + height)


def coverage(grid: Grid, windows: list[Window]) -> np.ndarray:
    """Count how many windows cover each grid pixel."""
    counts = np.zeros(grid.shape, dtype=np.int32)
    for window in windows:
        counts[window.to_slices()] += 1
    return counts


def assert_tiles_cover_once(grid: Grid, window: Window, tiles: list[Tile]) -> None:
    """Tiles cover the window, are pairwise disjoint, all touch it and none is missing."""
    assert tiles, "no tiles returned"
    assert [(t.row, t.col) for t in tiles] == sorted((t.row, t.col) for t in tiles)
    for first, second in combinations(tiles, 2):
        assert first.window.intersection(second.window) is None
    for tile in tiles:
        assert tile.window.intersection(window) is not None
    union = Window(
        min(t.window.row_start for t in tiles),
        max(t.window.row_stop for t in tiles),
        min(t.window.col_start for t in tiles),
        max(t.window.col_stop for t in tiles),
    )
    assert union.contains(window)
    # Tiles form a full rectangle of the lattice: their pixel count equals their union's.
    assert sum(t.window.height * t.window.width for t in tiles) == union.height * union.width


# ----------------------------------------------------------------------- property tests


@PROPERTY
@given(grid_and_window())
def test_tiles_for_window_cover_it_exactly_once(case: tuple[Grid, Window]) -> None:
    grid, window = case
    tiles = grid.tiles_for_window(window)
    assert_tiles_cover_once(grid, window, tiles)
    counts = coverage(grid, [t.window for t in tiles])
    assert (counts[window.to_slices()] == 1).all()
    chosen = {t.id for t in tiles}
    for tile in grid.iter_tiles():
        assert (tile.id in chosen) == (tile.window.intersection(window) is not None)


@PROPERTY
@given(small_grids())
def test_tiles_partition_the_grid(grid: Grid) -> None:
    tiles = list(grid.iter_tiles())
    assert len(tiles) == grid.n_tiles
    assert (coverage(grid, [t.window for t in tiles]) == 1).all()


@PROPERTY
@given(small_grids())
def test_tiles_align_with_shards_and_shards_with_chunks(grid: Grid) -> None:
    for tile in grid.iter_tiles():
        assert grid.is_aligned(tile.window, "tile")
        assert grid.is_aligned(tile.window, "shard")
        shards = tile.shards()
        counts = coverage(grid, shards)
        assert (counts[tile.window.to_slices()] == 1).all()
        assert counts.sum() == tile.window.height * tile.window.width
        for shard in shards:
            assert tile.window.contains(shard)
            assert grid.is_aligned(shard, "shard")
            assert grid.is_aligned(shard, "chunk")
            assert shard.height <= grid.shard and shard.width <= grid.shard


@PROPERTY
@given(small_grids())
def test_dict_round_trip_is_exact(grid: Grid) -> None:
    data = json.loads(json.dumps(grid.to_dict()))
    again = Grid.from_dict(data)
    assert again == grid
    assert again.to_dict() == grid.to_dict()
    assert again.name == grid.name
    grid.check_same(again)


@PROPERTY
@given(grid_and_window())
def test_window_geometry(case: tuple[Grid, Window]) -> None:
    grid, window = case
    res = grid.resolution
    transform = grid.window_transform(window)
    assert transform == grid.transform @ Affine.translation(window.col_start, window.row_start)
    xmin, ymin, xmax, ymax = grid.window_bounds(window)
    assert transform @ (0, 0) == pytest.approx((xmin, ymax))
    assert transform @ (window.width, window.height) == pytest.approx((xmax, ymin))
    x, y = grid.x_coords(window), grid.y_coords(window)
    assert x.shape == (window.width,) and y.shape == (window.height,)
    assert np.allclose(x, [(transform @ (c + 0.5, 0.5))[0] for c in range(window.width)])
    assert np.allclose(y, [(transform @ (0.5, r + 0.5))[1] for r in range(window.height)])
    assert x[0] == pytest.approx(xmin + res / 2) and y[0] == pytest.approx(ymax - res / 2)
    # A pixel gets the same float through any window, so xarray aligns tiles exactly.
    assert np.array_equal(x, grid.x_coords(grid.window)[window.col_start : window.col_stop])
    assert np.array_equal(y, grid.y_coords(grid.window)[window.row_start : window.row_stop])


@PROPERTY
@given(grid_and_window())
def test_window_for_bounds_round_trips(case: tuple[Grid, Window]) -> None:
    grid, window = case
    assert grid.window_for_bounds(grid.window_bounds(window)) == window


@PROPERTY
@given(
    grid_and_window(),
    st.tuples(*[st.floats(0.0, 0.999) for _ in range(4)]),
    st.sampled_from(["pixel", "chunk", "shard", "tile"]),
)
def test_window_for_bounds_covers_and_snaps(
    case: tuple[Grid, Window], fractions: tuple[float, ...], snap: str
) -> None:
    grid, window = case
    xmin, ymin, xmax, ymax = grid.window_bounds(window)
    res = grid.resolution
    # Shrink the bounds by less than a pixel on every side: the window must not change.
    bounds = (
        xmin + fractions[0] * res * 0.49,
        ymin + fractions[1] * res * 0.49,
        xmax - fractions[2] * res * 0.49,
        ymax - fractions[3] * res * 0.49,
    )
    assert grid.window_for_bounds(bounds) == window
    snapped = grid.window_for_bounds(bounds, snap=snap)  # type: ignore[arg-type]
    assert snapped.contains(window)
    assert grid.is_aligned(snapped, snap)  # type: ignore[arg-type]
    assert snapped == window.snap(grid.block(snap)).intersection(grid.window)  # type: ignore[arg-type]


@PROPERTY
@given(europe_bboxes())
def test_europe_bbox_tiles_cover_the_projected_bbox(bbox: BBox) -> None:
    window = EUROPE.window_for_bbox(bbox)
    xmin, ymin, xmax, ymax = EUROPE.project_bbox(bbox)
    wx0, wy0, wx1, wy1 = EUROPE.window_bounds(window)
    assert wx0 <= xmin and wy0 <= ymin and xmax <= wx1 and ymax <= wy1
    assert wx1 - wx0 < xmax - xmin + 2 * EUROPE.resolution
    assert wy1 - wy0 < ymax - ymin + 2 * EUROPE.resolution
    tiles = EUROPE.tiles_for_bbox(bbox)
    assert_tiles_cover_once(EUROPE, window, tiles)
    assert EUROPE.window_for_bbox(bbox, snap="tile") == Window(
        tiles[0].window.row_start,
        tiles[-1].window.row_stop,
        tiles[0].window.col_start,
        tiles[-1].window.col_stop,
    )


@PROPERTY
@given(grid_and_window())
def test_custom_grid_bbox_tiles_cover_the_area(case: tuple[Grid, Window]) -> None:
    grid, window = case
    bbox = grid.bounds_to_lonlat(grid.window_bounds(window))
    covered = grid.window_for_bbox(bbox)
    assert covered.contains(window)
    assert_tiles_cover_once(grid, covered, grid.tiles_for_bbox(bbox))


@PROPERTY
@given(small_grids(), st.integers(0, 50))
def test_halo_grows_every_side_beyond_the_edge(grid: Grid, halo: int) -> None:
    tile = grid.get_tile(0, 0)
    grown = tile.with_halo(halo)
    assert grown == Window(-halo, tile.window.row_stop + halo, -halo, tile.window.col_stop + halo)
    assert tile.window.relative_to(grown) == Window(
        halo, halo + tile.window.height, halo, halo + tile.window.width
    )
    xmin, _, _, ymax = grid.window_bounds(grown)
    assert (xmin, ymax) == pytest.approx(
        (grid.origin[0] - halo * grid.resolution, grid.origin[1] + halo * grid.resolution)
    )


@PROPERTY
@given(small_grids())
def test_tile_ids_round_trip_and_sort(grid: Grid) -> None:
    tiles = list(grid.iter_tiles())
    assert [grid.tile_from_id(t.id) for t in tiles] == tiles
    assert sorted(t.id for t in tiles) == [t.id for t in tiles]


# ------------------------------------------------------------------------- examples


def test_europe_preset() -> None:
    grid = get_grid("europe")
    assert grid is GRIDS["europe"] is EUROPE
    assert grid.crs == "EPSG:3035" and grid.epsg == 3035
    assert grid.resolution == 10.0
    assert grid.bounds == (900_000.0, 900_000.0, 7_400_000.0, 5_500_000.0)
    assert (grid.chunk, grid.shard, grid.tile) == (500, 1000, 2000)
    assert grid.tiles_shape == (230, 325) and grid.n_tiles == 74_750
    # Tiles nest in the EEA 10/100 km reference grid: origin on a 100 km multiple.
    assert all(v % 100_000 == 0 for v in grid.origin)
    assert grid.tile * grid.resolution == 20_000
    west, south, east, north = grid.lonlat_extent()
    for lon, lat in [(-18.2, 27.6), (-31.3, 39.7), (-24.5, 65.5), (44.8, 39.5), (34.6, 35.2)]:
        assert west < lon < east and south < lat < north
        grid.window_for_bbox((lon, lat, lon + 0.01, lat + 0.01))


def test_europe_field_bbox_gives_few_tiles() -> None:
    tiles = EUROPE.tiles_for_bbox("11.0,48.0,11.1,48.05")
    assert [t.id for t in tiles] == ["r0136c0174", "r0136c0175"]
    tile = tiles[0]
    assert tile.shape == (2000, 2000)
    assert tile.bounds == (4_380_000.0, 2_760_000.0, 4_400_000.0, 2_780_000.0)
    assert tile.transform == Affine(10.0, 0.0, 4_380_000.0, 0.0, -10.0, 2_780_000.0)
    assert len(tile.shards()) == 4
    lonlat = tile.lonlat_bounds()
    assert lonlat.west < 11.0 < lonlat.east and lonlat.south < 48.0 < lonlat.north
    assert repr(tile) == "Tile('r0136c0174', grid='europe')"


def test_partial_tiles_at_the_grid_edge() -> None:
    grid = Grid("EPSG:32632", 10.0, (400_000.0, 5_200_000.0), (25, 37), 4, 8, 16)
    assert grid.tiles_shape == (2, 3)
    last = grid.get_tile(1, 2)
    assert last.window == Window(16, 25, 32, 37)
    assert last.shape == (9, 5)
    assert last.shards() == [Window(16, 24, 32, 37), Window(24, 25, 32, 37)]
    assert grid.is_aligned(last.window, "tile")
    assert not grid.is_aligned(Window(16, 24, 32, 36), "shard")
    grown = last.with_halo(3)
    assert grown == Window(13, 28, 29, 40)
    assert grown.intersection(grid.window) == Window(13, 25, 29, 37)
    with pytest.raises(GridError, match="starts before the grid"):
        grid.get_tile(0, 0).with_halo(1).to_slices()


def test_bbox_partly_outside_is_clipped() -> None:
    grid = Grid.from_bbox("10.0,50.0,10.2,50.1", crs="EPSG:32632", tile=100, shard=50, chunk=10)
    window = grid.window_for_bbox("9.9,49.9,10.1,50.05")
    assert grid.window.contains(window)
    assert window.row_stop == grid.shape[0] and window.col_start == 0


def test_from_bbox_snaps_origin_to_whole_tiles() -> None:
    grid = Grid.from_bbox([11.0, 48.0, 11.3, 48.2], crs=32632, resolution=20, tile=1000)
    step = 1000 * 20.0
    assert grid.crs == "EPSG:32632" and grid.resolution == 20.0
    assert all(v % step == 0 for v in grid.origin)
    assert grid.shape[0] % 1000 == 0 and grid.shape[1] % 1000 == 0
    xmin, ymin, xmax, ymax = grid.project_bbox("11.0,48.0,11.3,48.2")
    gx0, gy0, gx1, gy1 = grid.bounds
    assert gx0 <= xmin and gy0 <= ymin and xmax <= gx1 and ymax <= gy1


def test_utm_and_crs_grids() -> None:
    north = get_grid("utm32n")
    assert north.epsg == 32632 and north.name == "utm32n"
    assert north.tiles_for_bbox("11.5,48.1,11.6,48.2")
    south = get_grid("UTM33S")
    assert south.epsg == 32733 and south.origin[1] == 10_000_000.0
    assert resolve_grid(crs="EPSG:32632") == north
    assert resolve_grid(crs=32632, resolution=20).resolution == 20.0
    assert resolve_grid() is EUROPE
    assert resolve_grid(grid="europe", resolution=10) is EUROPE
    coarse = resolve_grid(resolution=20)
    assert coarse.bounds == EUROPE.bounds and coarse.shape == (230_000, 325_000)


def test_crs_normalisation() -> None:
    shape = (10, 10)
    a = Grid(3035, 10, (4_000_000, 3_000_000), shape, 5, 5, 10)  # type: ignore[arg-type]
    b = Grid("epsg:3035", 10.0, (4_000_000.0, 3_000_000.0), shape, 5, 5, 10)
    c = Grid(CRS.from_epsg(3035).to_wkt(), 10.0, (4_000_000.0, 3_000_000.0), shape, 5, 5, 10)
    assert a.crs == b.crs == c.crs == "EPSG:3035"
    assert a == b == c and hash(a) == hash(b)
    proj = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    custom = Grid(proj, 10.0, (4_000_000.0, 3_000_000.0), shape, 5, 5, 10)
    assert custom.epsg is None and custom.crs.startswith("PROJCRS")
    assert Grid.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom


def test_grid_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "grid.json"
    grid = Grid.from_bbox("10,50,10.5,50.5", crs=32632, name="mine")
    path.write_text(json.dumps(grid.to_dict()))
    again = get_grid(path)
    assert again == grid and again.name == "mine"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GridError, match="cannot read grid file"):
        get_grid(bad)


def test_pickle_and_hash() -> None:
    tile = EUROPE.get_tile(100, 200)
    assert pickle.loads(pickle.dumps(tile)) == tile
    assert len(pickle.dumps(tile)) < 1000
    assert len({tile, EUROPE.get_tile(100, 200)}) == 1


def test_as_bbox_accepts_strings_and_sequences() -> None:
    expected = BBox(5.9, 47.3, 10.5, 55.1)
    assert as_bbox("5.9,47.3,10.5,55.1") == expected
    assert as_bbox(" 5.9, 47.3 ,10.5 55.1 ") == expected
    assert as_bbox([5.9, 47.3, 10.5, 55.1]) == expected
    assert as_bbox(np.array([5.9, 47.3, 10.5, 55.1])) == expected
    assert as_bbox(expected) is expected
    assert as_bbox(str(expected)) == expected
    assert expected.to_tuple() == (5.9, 47.3, 10.5, 55.1)


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1,2,3", r"has 3 values, not 4"),
        ([1, 2, 3, 4, 5], r"has 5 values, not 4"),
        ("a,47,10,55", r"'a', which is not a number"),
        (42, r"is not a string or a sequence"),
        ([5, float("nan"), 10, 55], r"south nan is not a finite number"),
        ([5, 47, True, 55], r"east True is not a finite number"),
        ("10,47,10,55", r"west equals east \(10\).*no width"),
        ("10.5,47,9,55", r"west 10.5 is greater than east 9 \(W >= E\).*antimeridian"),
        ("170,-20,-170,-10", r"greater than east.*split it into two bboxes"),
        ("5,55,10,47", r"south 55 is not less than north 47 \(S >= N\)"),
        ("5,47,10,47", r"south 47 is not less than north 47"),
        ("5,-91,10,55", r"south latitude -91 is outside \[-90, 90\]"),
        ("5,47,10,95", r"north latitude 95 is outside \[-90, 90\]"),
        ("-181,47,10,55", r"west longitude -181 is outside \[-180, 180\]"),
        ("4000000,2000000,4100000,2100000", r"outside \[-180, 180\].*projected metres"),
    ],
)
def test_bbox_errors(value: object, message: str) -> None:
    with pytest.raises(GridError, match=message) as info:
        as_bbox(value)  # type: ignore[arg-type]
    assert isinstance(info.value, InputError)
    assert "W,S,E,N" in str(info.value)


def test_bbox_outside_the_grid() -> None:
    with pytest.raises(GridError) as info:
        EUROPE.tiles_for_bbox("150,-35,151,-34")
    text = str(info.value)
    assert "bbox 150,-35,151,-34 lies outside the grid 'europe' (EPSG:3035, 10 m)" in text
    assert "lon -56.51 to 72.91, lat 24.28 to 72.63" in text
    assert "--grid" in text
    with pytest.raises(GridError, match="lie outside the grid 'small'"):
        Grid("EPSG:32632", 10.0, (0.0, 100.0), (10, 10), name="small").window_for_bounds(
            (200.0, 0.0, 300.0, 50.0)
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crs": "EPSG:4326"}, r"crs EPSG:4326 is geographic \(degrees\).*projected CRS"),
        ({"crs": "not a crs"}, r"crs 'not a crs' is not a coordinate reference system"),
        ({"crs": "EPSG:2263"}, r"crs EPSG:2263 has axes in US survey foot.*metres"),
        ({"resolution": 0}, r"resolution 0 must be a positive number of metres"),
        ({"resolution": float("inf")}, r"resolution inf must be a positive number"),
        ({"origin": (900_005.0, 5_500_000.0)}, r"origin x 900005 m is not a multiple of the res"),
        ({"origin": (900_000.0,)}, r"origin \(900000.0,\) must be two numbers"),
        ({"origin": (900_000.0, math.nan)}, r"origin y nan is not a finite number"),
        ({"shape": (0, 10)}, r"shape rows 0 must be a positive integer"),
        ({"shape": (10, 2.5)}, r"shape cols 2.5 must be a positive integer"),
        ({"shape": 10}, r"shape 10 must be two integers"),
        ({"chunk": 0}, r"grid chunk 0 must be a positive integer"),
        ({"shard": 1200}, r"shard 1200 px is not a multiple of the chunk 500 px.*shard 1500"),
        ({"tile": 2500}, r"tile 2500 px is not a multiple of the shard 1000 px.*tile 3000"),
        ({"tile": 3000, "shard": 2000}, r"tile 3000 px.*choose e.g. tile 4000"),
        ({"name": ""}, r"grid name '' must be a non-empty string"),
    ],
)
def test_grid_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {**EUROPE.to_dict(), **kwargs}
    with pytest.raises(GridError, match=message):
        Grid(**args)  # type: ignore[arg-type]


def test_tile_and_window_errors() -> None:
    with pytest.raises(
        GridError, match=r"tile row 230 is outside the grid 'europe'.*230 tile rows"
    ):
        EUROPE.get_tile(230, 0)
    with pytest.raises(GridError, match=r"tile col -1 is outside"):
        Tile(EUROPE, 0, -1)
    with pytest.raises(GridError, match=r"tile id 'x12' is not of the form 'r0012c0034'"):
        EUROPE.tile_from_id("x12")
    with pytest.raises(GridError, match=r"rows 5:5, cols 0:3 is empty"):
        Window(5, 5, 0, 3)
    with pytest.raises(GridError, match=r"row_start 1.5 is not an integer"):
        Window(1.5, 3, 0, 3)  # type: ignore[arg-type]
    with pytest.raises(GridError, match=r"halo -1 must be a non-negative"):
        EUROPE.get_tile(0, 0).with_halo(-1)
    with pytest.raises(GridError, match=r"block unit 'block' must be one of"):
        EUROPE.window_for_bbox("10,50,11,51", snap="block")  # type: ignore[arg-type]


def test_construction_errors() -> None:
    with pytest.raises(GridError, match=r"unknown grid 'mars'.*\['europe'\].*utm32n"):
        get_grid("mars")
    with pytest.raises(GridError, match=r"UTM zone 61 must be an integer from 1 to 60"):
        Grid.utm(61)
    with pytest.raises(GridError, match=r"either --grid \(europe\) or --crs \(EPSG:32632\)"):
        resolve_grid(grid="europe", crs="EPSG:32632")
    with pytest.raises(GridError, match=r"is not a whole number of 30 m pixels"):
        EUROPE.with_resolution(30)
    with pytest.raises(GridError, match=r"empty or inverted: need xmin < xmax"):
        Grid.from_bounds((10.0, 0.0, 5.0, 10.0), crs=32632)
    with pytest.raises(GridError, match=r"must be four finite numbers"):
        EUROPE.window_for_bounds((0.0, 0.0, 1.0))
    with pytest.raises(GridError, match=r"missing keys \['tile'\] and unknown keys \['tiles'\]"):
        Grid.from_dict({**{k: v for k, v in EUROPE.to_dict().items() if k != "tile"}, "tiles": 1})
    with pytest.raises(GridError, match=r"not a mapping"):
        Grid.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(GridError, match=r"geographic"):
        normalise_crs(CRS.from_epsg(4326))


def test_check_same_lists_every_difference() -> None:
    EUROPE.check_same(Grid.from_dict({**EUROPE.to_dict(), "name": "renamed"}))
    other = Grid.from_bbox("10,50,11,51", crs=32632, resolution=20, name="mine")
    with pytest.raises(GridError) as info:
        EUROPE.check_same(other)
    text = str(info.value)
    assert "the requested grid 'mine' (EPSG:32632, 20 m) differs from the grid 'europe'" in text
    assert "crs EPSG:32632 (requested) != EPSG:3035 (the store)" in text
    assert "resolution 20.0 (requested) != 10.0 (the store)" in text
    assert "or write to a new store" in text
    with pytest.raises(GridError, match=r"tile 4000 \(requested\) != 2000 \(the store\)"):
        EUROPE.check_same(Grid.from_dict({**EUROPE.to_dict(), "tile": 4000}))
