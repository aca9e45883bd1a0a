"""Tests for lamap.store: creation, CF/CRS metadata, appends, region writes, markers, crashes."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import dask
import dask.array as da
import fsspec
import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

import lamap.store.schema as schema_module
from lamap.errors import GridError, InputError
from lamap.grid import EUROPE, Grid, Tile, Window, get_grid
from lamap.store import LAI_VALID_RANGE, LaiStore, Source, StoreError
from tests._dask import raise_if_dask_computes

REPO = Path(__file__).resolve().parents[1]
D1, D2, D0 = "2024-06-15", "2024-06-20", "2024-06-01"
# xarray warns (RuntimeWarning) when it cannot read consolidated metadata; zarr warns
# (UserWarning) about objects it does not recognise.
NO_WARNINGS = pytest.mark.filterwarnings("error::RuntimeWarning", "error::UserWarning")

# A small grid with partial edge shards and tiles: 300 x 260 px, 3 x 3 tiles.
SMALL = Grid("EPSG:3035", 10.0, (4_000_000.0, 3_000_000.0), (300, 260), 32, 64, 128, name="small")


# ----------------------------------------------------------------------------- helpers


def tile_data(tile: Tile, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """LAI and source flags for a tile that satisfy the store contract."""
    rng = np.random.default_rng(seed)
    source = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=tile.shape, p=[0.2, 0.3, 0.5])
    lai = rng.uniform(*LAI_VALID_RANGE, size=tile.shape).astype(np.float32)
    lai[source == Source.NO_INPUT] = np.nan
    return lai, source


def chunk_files(path: Path) -> dict[str, bytes]:
    """Every shard object of ``lai`` and ``source``, by key (``lai/c/<t>/<row>/<col>``)."""
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for name in ("lai", "source")
        for p in (path / name / "c").rglob("*")
        if p.is_file()
    }


def shard_keys(grid: Grid, window: Window, index: int) -> set[str]:
    """The shard keys of both variables for a window at a time index."""
    return {
        f"{name}/c/{index}/{part.row_start // grid.shard}/{part.col_start // grid.shard}"
        for name in ("lai", "source")
        for part in window.split(grid.shard)
    }


def read(store: LaiStore, date: str) -> tuple[np.ndarray, np.ndarray]:
    ds = store.dataset()
    day = ds.sel(time=np.datetime64(date))
    return day.lai.values, day.source.values


@pytest.fixture
def small(tmp_path: Path) -> LaiStore:
    store = LaiStore.create(tmp_path / "lai.zarr", SMALL)
    store.add_date(D1)
    return store


# ----------------------------------------------------------------------------- creation


@NO_WARNINGS
@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")  # rioxarray
def test_europe_store_is_created_in_seconds_as_metadata_only(tmp_path: Path) -> None:
    path = tmp_path / "europe.zarr"
    start = time.perf_counter()
    store = LaiStore.create(path, get_grid("europe"))
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"europe store: created in {seconds:.3f} s, {size / 1e6:.3f} MB on disk")
    assert seconds < 10.0
    assert size < 50e6
    assert chunk_files(path) == {}  # no data chunk written
    ds = xr.open_zarr(path)
    assert dict(ds.sizes) == {"time": 0, "y": 460_000, "x": 650_000}
    assert set(ds.data_vars) == {"lai", "source", "lai_sd"}
    assert ds.lai.dims == ds.source.dims == ("time", "y", "x")
    assert ds.rio.crs == CRS.from_epsg(3035)
    assert ds.lai.rio.crs == CRS.from_epsg(3035)
    assert ds.x.values[0] == 900_005.0 and ds.x.values[-1] == 7_399_995.0
    assert ds.y.values[0] == 5_499_995.0 and ds.y.values[-1] == 900_005.0
    assert ds.rio.transform() == EUROPE.transform
    assert Grid.from_dict(json.loads(ds.attrs["lamap_grid"])) == EUROPE
    assert LaiStore.open(path).grid == EUROPE
    assert store.dates == []


@NO_WARNINGS
def test_store_has_cf_attributes_and_encoding(small: LaiStore) -> None:
    ds = xr.open_zarr(small.url)
    lai, source = ds.lai, ds.source
    assert lai.dtype == np.float32 and source.dtype == np.uint8
    assert lai.attrs["standard_name"] == "leaf_area_index"
    assert lai.attrs["units"] == "m2 m-2"
    assert (lai.attrs["valid_min"], lai.attrs["valid_max"]) == LAI_VALID_RANGE
    assert lai.attrs["grid_mapping"] == source.attrs["grid_mapping"] == "spatial_ref"
    assert source.attrs["flag_values"] == [0, 1, 2, 255]
    assert source.attrs["flag_meanings"] == "no_input observed filled not_mapped"
    assert "spatial_ref" in ds.coords and "crs_wkt" in ds.spatial_ref.attrs
    assert ds.x.attrs["standard_name"] == "projection_x_coordinate" and ds.x.attrs["units"] == "m"
    assert ds.time.values.tolist() == [np.datetime64(D1, "ns").astype(int)]
    assert ds.attrs["Conventions"].startswith("CF-")
    assert lai.encoding["chunks"] == (1, 32, 32) and lai.encoding["shards"] == (1, 64, 64)
    assert source.encoding["shards"] == (1, 64, 64)


def test_create_reopens_the_same_grid_and_refuses_another(tmp_path: Path) -> None:
    path = tmp_path / "lai.zarr"
    first = LaiStore.create(path, SMALL, attrs={"institution": "here"})
    first.add_date(D1)
    again = LaiStore.create(path, Grid.from_dict(SMALL.to_dict() | {"name": "renamed"}))
    assert again.url == first.url and again.dates == [dt.date(2024, 6, 15)]
    assert again.attrs["institution"] == "here"
    other = Grid("EPSG:3035", 10.0, (4_000_000.0, 3_000_000.0), (300, 260), 32, 128, 128)
    with pytest.raises(GridError, match=r"shard 128 \(requested\) != 64"):
        LaiStore.create(path, other)
    with pytest.raises(GridError, match="differs from the grid"):
        LaiStore.open(path, grid=other)
    assert LaiStore.open_or_create(path).grid == SMALL
    assert pickle.loads(pickle.dumps(again)) == again


def test_create_refuses_foreign_paths_and_open_needs_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a lamap store.*refusing to overwrite"):
        LaiStore.create(tmp_path / "notes", SMALL)
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="no lamap store"):
        LaiStore.open(tmp_path / "missing.zarr")
    with pytest.raises(InputError, match="prefix 'lamap_'"):
        LaiStore.create(tmp_path / "x.zarr", SMALL, attrs={"lamap_grid": 1})
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert LaiStore.create(tmp_path / "empty", SMALL).dates == []


def test_half_created_store_is_created_again(tmp_path: Path) -> None:
    path = tmp_path / "lai.zarr"
    LaiStore.create(path, SMALL)
    root = path / "zarr.json"
    meta = __import__("json").loads(root.read_text())
    meta.pop("consolidated_metadata")  # as if the creation stopped before its commit
    root.write_text(__import__("json").dumps(meta))
    store = LaiStore.create(path, SMALL)
    assert store.dates == [] and xr.open_zarr(path).sizes["y"] == 300


# ----------------------------------------------------------------------------- time axis


def test_dates_are_kept_in_order_and_existing_dates_are_reused(small: LaiStore) -> None:
    assert small.add_date(D1) == 0
    assert small.add_date(np.datetime64(D2)) == 1
    assert small.add_date(dt.datetime(2024, 6, 15, 10, 30)) == 0
    assert small.add_date(D0) == 0  # earlier: inserted first, the others move up
    assert small.dates == [dt.date(2024, 6, 1), dt.date(2024, 6, 15), dt.date(2024, 6, 20)]
    assert small.time_index(D2) == 2
    ds = small.dataset()
    assert ds.sizes["time"] == 3 and ds.lai.shape == (3, 300, 260)
    assert ds.indexes["time"].is_monotonic_increasing
    assert ds.sel(time=slice(D1, D2)).sizes["time"] == 2
    with pytest.raises(StoreError, match=r"not in the store.*add_date\('2024-07-01'\)"):
        small.time_index("2024-07-01")
    with pytest.raises(InputError, match="is not a date"):
        small.add_date("15/06/2024")


@NO_WARNINGS
@pytest.mark.parametrize("where", ["local", "s3"])
def test_dates_added_in_any_order_are_sorted_and_keep_their_bytes(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    options: dict[str, object] = {}
    if where == "local":
        url = str(tmp_path / "lai.zarr")
    else:
        from tests.conftest import new_bucket

        endpoint = request.getfixturevalue("s3_endpoint")
        options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint}}
        url = f"s3://{new_bucket(endpoint)}/lai.zarr"
    store = LaiStore.create(url, SMALL, storage_options=options)
    fs, root = fsspec.core.url_to_fs(url, **options)

    def shards(index: int) -> dict[str, bytes]:
        fs.invalidate_cache()
        found = [p for name in ("lai", "source") for p in fs.find(f"{root}/{name}/c/{index}")]
        return {p.replace(f"/c/{index}/", "/c/T/"): fs.cat_file(p) for p in found}

    data = {}
    for day, seed in ((D1, 31), ("2024-06-01", 32), ("2024-06-10", 33)):
        tile = SMALL.get_tile(seed % 3, 1)
        data[day] = tile, tile_data(tile, seed)
        store.add_date(day)
        if day == D1:
            store.write_tile(day, tile, *data[day][1])
            first = shards(0)
    assert [d.isoformat() for d in store.dates] == ["2024-06-01", "2024-06-10", D1]
    assert first and shards(2) == first  # 06-15 moved from index 0 to 2, bytes unchanged
    ds = store.dataset()
    assert ds.sel(time=slice("2024-06-05", "2024-06-30")).sizes["time"] == 2
    rows, cols = data[D1][0].window.to_slices()
    np.testing.assert_array_equal(ds.lai.sel(time=D1).values[rows, cols], data[D1][1][0])
    assert store.is_done(D1, data[D1][0]) and not store.done_tiles("2024-06-01")


def test_second_date_leaves_the_first_untouched(small: LaiStore) -> None:
    tile = SMALL.get_tile(0, 0)
    lai, source = tile_data(tile, 1)
    small.write_tile(D1, tile, lai, source)
    before = chunk_files(Path(small.url))
    assert small.add_date(D2) == 1
    assert chunk_files(Path(small.url)) == before  # appending is metadata only
    lai2, source2 = tile_data(tile, 2)
    small.write_tile(D2, tile, lai2, source2)
    after = chunk_files(Path(small.url))
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == shard_keys(SMALL, tile.window, 1)
    rows, cols = tile.window.to_slices()
    np.testing.assert_array_equal(read(small, D1)[0][rows, cols], lai)
    np.testing.assert_array_equal(read(small, D2)[1][rows, cols], source2)


# ----------------------------------------------------------------------------- region writes


def test_tile_write_reads_back_exactly_and_nothing_else(small: LaiStore) -> None:
    tile = SMALL.get_tile(1, 0)
    lai, source = tile_data(tile, 3)
    marker = small.write_tile(D1, tile, lai, source)
    assert marker["tile"] == tile.id and marker["window"] == [128, 256, 0, 128]
    got_lai, got_source = read(small, D1)
    rows, cols = tile.window.to_slices()
    np.testing.assert_array_equal(got_lai[rows, cols], lai)
    np.testing.assert_array_equal(got_source[rows, cols], source)
    outside = np.ones(SMALL.shape, dtype=bool)
    outside[rows, cols] = False
    assert np.isnan(got_lai[outside]).all() and (got_source[outside] == 255).all()  # not mapped
    assert set(chunk_files(Path(small.url))) == shard_keys(SMALL, tile.window, 0)


def test_neighbour_never_touches_a_written_tile(small: LaiStore) -> None:
    first, neighbour = SMALL.get_tile(0, 0), SMALL.get_tile(0, 1)
    small.write_tile(D1, first, *tile_data(first, 4))
    before = chunk_files(Path(small.url))
    small.write_tile(D1, neighbour, *tile_data(neighbour, 5))
    after = chunk_files(Path(small.url))
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == shard_keys(SMALL, neighbour.window, 0)


def test_rewriting_a_tile_changes_only_its_region(small: LaiStore) -> None:
    tiles = [SMALL.get_tile(0, 0), SMALL.get_tile(0, 1), SMALL.get_tile(1, 1)]
    for seed, tile in enumerate(tiles):
        small.write_tile(D1, tile, *tile_data(tile, seed))
    before = chunk_files(Path(small.url))
    target = tiles[1]
    lai, source = tile_data(target, 99)
    small.write_tile(D1, target, lai, source)
    small.write_tile(D1, target, lai, source)  # idempotent
    after = chunk_files(Path(small.url))
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed == shard_keys(SMALL, target.window, 0)
    rows, cols = target.window.to_slices()
    np.testing.assert_array_equal(read(small, D1)[0][rows, cols], lai)
    empty = np.full(target.shape, np.nan, np.float32), np.zeros(target.shape, np.uint8)
    small.write_tile(D1, target, *empty)  # all no_input: lai's shards (all fill) are removed
    kept = shard_keys(SMALL, target.window, 0) & set(chunk_files(Path(small.url)))
    assert kept and all(key.startswith("source/") for key in kept), "0 is not source's fill"
    assert np.isnan(read(small, D1)[0][rows, cols]).all()


def test_partial_edge_tile_and_dataarray_input(small: LaiStore) -> None:
    tile = SMALL.get_tile(2, 2)  # rows 256:300, cols 256:260
    lai, source = tile_data(tile, 6)
    window = tile.window
    coords = {"y": SMALL.y_coords(window), "x": SMALL.x_coords(window)}
    small.write_tile(
        D1, tile.id, xr.DataArray(lai, coords, ("y", "x")), xr.DataArray(source, coords, ("y", "x"))
    )
    np.testing.assert_array_equal(read(small, D1)[0][256:, 256:], lai)
    shifted = {"y": coords["y"], "x": coords["x"] + 10.0}
    with pytest.raises(InputError, match="x coordinates of lai are not the pixel centres"):
        small.write_tile(D1, tile, xr.DataArray(lai, shifted, ("y", "x")), source)


def test_unaligned_or_outside_windows_are_refused(small: LaiStore) -> None:
    lai, source = np.zeros((100, 128), np.float32), np.ones((100, 128), np.uint8)
    with pytest.raises(GridError, match=r"rows 0:100, cols 0:128 is not aligned with the 64 px"):
        small.write_region(D1, Window(0, 100, 0, 128), lai, source)
    with pytest.raises(GridError, match="is not inside the grid"):
        small.write_region(D1, Window(256, 320, 0, 64), lai[:64, :64], source[:64, :64])
    with pytest.raises(InputError, match=r"shape \(100, 128\), but .* needs .* \(64, 64\)"):
        small.write_region(D1, Window(0, 64, 0, 64), lai, source)
    with pytest.raises(StoreError, match="add_date"):
        small.write_region(D2, Window(0, 64, 0, 64), lai[:64, :64], source[:64, :64])
    foreign = Grid.from_dict(SMALL.to_dict() | {"shape": [640, 640]}).get_tile(4, 4)
    with pytest.raises(GridError, match="not a tile of the store's grid"):
        small.write_tile(D1, foreign, lai, source)


@pytest.mark.parametrize(
    ("lai_value", "source_value", "message"),
    [
        (np.nan, 2, "lai is NaN but source is not 0"),
        (3.0, 0, "lai is finite but source is 0"),
        (3.0, 3, "outside the flags 0, 1, 2"),
        (9.5, 2, "outside the valid range"),
        (np.inf, 2, "infinite lai"),
    ],
)
def test_blocks_breaking_the_contract_are_refused(
    small: LaiStore, lai_value: float, source_value: int, message: str
) -> None:
    tile = SMALL.get_tile(0, 0)
    lai, source = tile_data(tile, 7)
    lai[5, 5], source[5, 5] = lai_value, source_value
    with pytest.raises(InputError, match=message):
        small.write_tile(D1, tile, lai, source)
    assert chunk_files(Path(small.url)) == {} and not small.is_done(D1, tile)


# ----------------------------------------------------------------------------- dask writes


def test_dask_blocks_must_be_aligned_with_shards(small: LaiStore) -> None:
    tile = SMALL.get_tile(0, 0)
    lai, source = tile_data(tile, 8)
    with pytest.raises(InputError, match=r"end at rows \[32, 96\].*rechunk with lai.rechunk\(64\)"):
        small.write_tile(D1, tile, da.from_array(lai, chunks=32), source)
    with raise_if_dask_computes():
        delayed = small.write_tile(
            D1, tile, da.from_array(lai, chunks=64), da.from_array(source, chunks=(128, 64)),
            compute=False,
        )  # fmt: skip
    assert not small.is_done(D1, tile)
    dask.compute(delayed, scheduler="sync")
    assert small.is_done(D1, tile)
    np.testing.assert_array_equal(read(small, D1)[1][:128, :128], source)


def test_distributed_write_equals_single_process_write(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    tiles = [SMALL.get_tile(0, 0), SMALL.get_tile(0, 1), SMALL.get_tile(2, 2)]
    data = {tile.id: tile_data(tile, 10 + i) for i, tile in enumerate(tiles)}
    single = LaiStore.create(tmp_path / "single.zarr", SMALL)
    single.add_date(D1)
    for tile in tiles:
        single.write_tile(D1, tile, *data[tile.id])
    parallel = LaiStore.create(tmp_path / "parallel.zarr", SMALL)
    parallel.add_date(D1)
    writes = [
        parallel.write_tile(
            D1,
            tile,
            *(da.from_array(a, chunks=SMALL.shard) for a in data[tile.id]),
            info={"inputs": {"s2": {"t": {"day": D1, "items": [tile.id]}}}},
            compute=False,
        )
        for tile in tiles
    ]
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        markers = client.compute(writes, sync=True)
    assert [m["tile"] for m in markers] == [tile.id for tile in tiles]
    assert chunk_files(Path(parallel.url)) == chunk_files(Path(single.url))
    for got, want in zip(read(parallel, D1), read(single, D1), strict=True):
        np.testing.assert_array_equal(got, want)
    assert parallel.done_tiles(D1) == sorted(tile.id for tile in tiles)


# ----------------------------------------------------------------------------- bookkeeping


def test_done_markers_record_what_produced_each_tile(small: LaiStore) -> None:
    tile = SMALL.get_tile(1, 2)
    steps = {
        "date": D1,
        "s2": {"t-2": {"day": "2024-06-05", "items": ["S2A_1", "S2A_2"]},
               "t-1": {"day": "2024-06-10", "items": ["S2B_1"]}, "t": None},
        "s1": {"t": {"datetime": "2024-06-14T05:00:00Z", "items": ["S1A_1"]}},
    }  # fmt: skip
    assert small.done_tiles(D1) == [] and not small.is_done(D1, tile)
    small.write_tile(D1, tile, *tile_data(tile, 11), info={"inputs": steps})
    small.mark_done(D1, SMALL.get_tile(0, 0), {"inputs": {"s2": {"t": {"day": D1, "items": []}}}})
    assert small.done_tiles(D1) == ["r0000c0000", "r0001c0002"]
    assert small.is_done(D1, "r0001c0002") and not small.is_done(D1, "r0002c0002")
    info = small.date_info(D1)
    assert info["r0001c0002"]["info"]["inputs"] == steps
    assert info["r0001c0002"]["date"] == D1 and "done_at" in info["r0001c0002"]
    small.add_date(D2)
    assert small.done_tiles(D2) == []
    small.clear_done(D1, "r0000c0000")
    small.clear_done(D1, "r0000c0000")  # forgetting twice is fine
    assert small.done_tiles(D1) == ["r0001c0002"]
    with pytest.raises(StoreError, match="not in the store"):
        small.mark_done("2024-01-01", tile)
    with pytest.raises(InputError, match="cannot be stored as JSON"):
        small.mark_done(D1, tile, {"bad": {1, 2}})
    assert sorted(p.name for p in Path(small.url, "lamap", "done", D1).iterdir()) == [
        "r0001c0002.json"  # no temporary file left behind
    ]


@NO_WARNINGS
def test_failed_tiles_are_recorded_and_never_make_zarr_warn(small: LaiStore) -> None:
    tile = SMALL.get_tile(0, 1)
    record = small.mark_failed(D1, tile, "reading inputs of block failed")
    assert record["tile"] == "r0000c0001" and record["date"] == D1
    assert small.failed_tiles(D1) == {"r0000c0001": "reading inputs of block failed"}
    assert small.add_date(D2) == 1  # a commit walks the hierarchy, failed records included
    zarr.open_group(small.url, mode="r").tree()  # as does anyone listing the store
    small.write_tile(D1, tile, *tile_data(tile, 18))
    assert small.failed_tiles(D1) == {} and small.is_done(D1, tile)
    small.mark_failed(D1, "r0000c0000", "first")
    small.clear_failed(D1, "r0000c0000")
    small.clear_failed(D1, "r0000c0000")  # forgetting twice is fine
    assert small.failed_tiles(D1) == {}
    assert not list(Path(small.url, "lamap").rglob("*.tmp"))


@NO_WARNINGS
def test_a_store_without_a_failed_node_gets_one_at_the_next_commit(small: LaiStore) -> None:
    node = Path(small.url, "lamap", "failed", "zarr.json")
    node.unlink()  # as stores created by earlier lamap versions
    small.mark_failed(D1, "r0000c0001", "lost worker")
    assert small.add_date(D2) == 1
    assert node.exists()
    assert small.failed_tiles(D1) == {"r0000c0001": "lost worker"}  # the records are kept
    assert xr.open_zarr(small.url).sizes["time"] == 2


@NO_WARNINGS
def test_a_store_on_an_fsspec_url_keeps_data_and_ledger() -> None:
    url = f"memory://lamap-test-{uuid.uuid4().hex}/lai.zarr"
    store = LaiStore.create(url, SMALL)
    try:
        assert LaiStore.create(url, SMALL) == store and store.url == url
        assert store.add_date(np.datetime64("2024-06-15T00:00:00.000000000")) == 0
        tile = SMALL.get_tile(1, 1)
        lai, source = tile_data(tile, 19)
        marker = store.write_tile(D1, tile, lai, source, info={"inputs": {}})
        assert marker["tile"] == "r0001c0001" and store.done_tiles(D1) == ["r0001c0001"]
        store.mark_failed(D1, "r0000c0000", "timeout")
        assert store.failed_tiles(D1) == {"r0000c0000": "timeout"}
        assert store.add_date(D2) == 1
        rows, cols = tile.window.to_slices()
        got = LaiStore.open(url).dataset().lai.isel(time=0).values[rows, cols]
        np.testing.assert_array_equal(got, lai)
        assert store.record_run(D1)["tiles_done"] == 1
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://").split("/")[0], recursive=True)


@NO_WARNINGS
def test_run_summary_goes_into_the_attributes(small: LaiStore) -> None:
    for tile, day in ((SMALL.get_tile(0, 0), "2024-06-05"), (SMALL.get_tile(0, 1), "2024-06-10")):
        inputs = {"s2": {"t-1": {"day": day, "items": [f"S2_{day}", "S2_x"]}}}
        small.write_tile(D1, tile, *tile_data(tile, 12), info={"inputs": inputs})
    model = {"id": "fused-v1", "sha256": "abc123"}
    summary = small.record_run(D1, model=model)
    assert summary["tiles_done"] == 2
    assert summary["inputs"] == {"s2": {"days": ["2024-06-05", "2024-06-10"], "items": 3}}
    raw = xr.open_zarr(small.url).attrs  # still consolidated: no warning
    attrs = {key: json.loads(raw[key]) for key in ("lamap_model", "lamap_dates", "lamap_grid")}
    assert attrs == {key: small.attrs[key] for key in attrs}
    assert attrs["lamap_model"] == model
    assert attrs["lamap_dates"][D1]["model"] == model
    assert attrs["lamap_dates"][D1]["inputs"] == summary["inputs"]
    assert Grid.from_dict(attrs["lamap_grid"]) == SMALL


# ----------------------------------------------------------------------------- failures


def failing(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    if block_info is not None and block_info[0]["chunk-location"] == (1, 1):
        raise RuntimeError("worker lost in the middle of the tile")
    return block


def test_interrupted_tile_write_leaves_the_store_intact_and_the_tile_not_done(
    small: LaiStore,
) -> None:
    done, victim = SMALL.get_tile(0, 0), SMALL.get_tile(0, 1)
    done_data = tile_data(done, 13)
    small.write_tile(D1, done, *done_data)
    small.write_tile(D1, victim, *tile_data(victim, 14))  # done once, then rewritten
    before = chunk_files(Path(small.url))
    lai, source = tile_data(victim, 15)
    lazy = da.from_array(lai, chunks=64).map_blocks(failing, dtype=np.float32)
    with pytest.raises(RuntimeError, match="worker lost"):
        small.write_tile(D1, victim, lazy, da.from_array(source, chunks=64))
    assert not small.is_done(D1, victim) and small.is_done(D1, done)
    after = chunk_files(Path(small.url))
    assert {k: after[k] for k in shard_keys(SMALL, done.window, 0)} == {
        k: before[k] for k in shard_keys(SMALL, done.window, 0)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        np.testing.assert_array_equal(read(small, D1)[0][:128, :128], done_data[0])
    small.write_tile(D1, victim, lai, source)  # the rerun redoes it
    assert small.is_done(D1, victim)
    np.testing.assert_array_equal(read(small, D1)[0][:128, 128:256], lai)


@NO_WARNINGS
def test_failed_append_rolls_back_and_keeps_data(
    small: LaiStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tile = SMALL.get_tile(0, 0)
    lai, source = tile_data(tile, 16)
    small.write_tile(D1, tile, lai, source)

    def broken_commit(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(schema_module, "commit", broken_commit)
    with pytest.raises(StoreError, match="cannot add date 2024-06-20.*disk full"):
        small.add_date(D2)
    monkeypatch.undo()
    assert small.dates == [dt.date(2024, 6, 15)]
    plain = xr.open_zarr(small.url, consolidated=False)  # the arrays' own metadata agree
    assert plain.sizes["time"] == 1 and plain.lai.shape == (1, 300, 260)
    np.testing.assert_array_equal(read(small, D1)[0][:128, :128], lai)
    assert small.add_date(D2) == 1


@NO_WARNINGS
def test_killed_append_is_invisible_and_repaired_by_the_next(small: LaiStore) -> None:
    tile = SMALL.get_tile(0, 0)
    lai, source = tile_data(tile, 17)
    small.write_tile(D1, tile, lai, source)
    script = (
        "import os, lamap.store as s, lamap.store.schema as schema\n"
        "schema.commit = lambda *a: os._exit(3)\n"
        f"s.LaiStore.open({small.url!r}).add_date({D2!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False)
    assert result.returncode == 3
    assert small.dates == [dt.date(2024, 6, 15)]
    ds = xr.open_zarr(small.url)
    assert ds.sizes["time"] == 1
    np.testing.assert_array_equal(ds.lai.isel(time=0).values[:128, :128], lai)
    assert small.add_date(D0) == 0  # the next change overwrites the uncommitted metadata
    plain = xr.open_zarr(small.url, consolidated=False)
    assert plain.time.values.tolist() == xr.open_zarr(small.url).time.values.tolist()
    assert small.dates == [dt.date(2024, 6, 1), dt.date(2024, 6, 15)]
    np.testing.assert_array_equal(read(small, D1)[0][:128, :128], lai)  # moved to index 1


# ----------------------------------------------------------------------------- properties


@st.composite
def shard_windows(draw: st.DrawFn) -> Window:
    rows, cols = (-(-size // SMALL.shard) for size in SMALL.shape)
    r0 = draw(st.integers(0, rows - 1))
    c0 = draw(st.integers(0, cols - 1))
    r1, c1 = draw(st.integers(r0 + 1, rows)), draw(st.integers(c0 + 1, cols))
    shard = SMALL.shard
    return Window(r0 * shard, min(r1 * shard, 300), c0 * shard, min(c1 * shard, 260))


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(window=shard_windows(), seed=st.integers(0, 2**16))
def test_any_shard_aligned_region_round_trips(small: LaiStore, window: Window, seed: int) -> None:
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 3, window.shape).astype(np.uint8)
    lai = np.where(source > 0, rng.uniform(0, 8, window.shape), np.nan)
    small.write_region(D1, window, lai, source)
    got_lai, got_source = read(small, D1)
    rows, cols = window.to_slices()
    np.testing.assert_array_equal(got_lai[rows, cols], lai.astype(np.float32))
    np.testing.assert_array_equal(got_source[rows, cols], source)
