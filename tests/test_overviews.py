"""The store's multiscale pyramid: exact levels, incremental updates in the map graph, and
``lamap overviews`` on a store without one (resumable). Real Zarr, a real LocalCluster."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lamap.cli.main import main
from lamap.grid import Grid, Tile, Window
from lamap.mapping import map_lai
from lamap.runtime import ClusterSpec
from lamap.store import LaiStore, Source
from lamap.store.overviews import built_tiles, parent_window, pyramid_writer
from lamap.store.pyramid import (
    MULTISCALES_CONVENTION,
    PyramidSpec,
    ensure_pyramid,
    has_pyramid,
    level_group,
)

DAY = dt.date(2024, 5, 1)
#: Odd sizes: level pixels at the right and bottom edges cover fewer level-0 pixels.
ODD_GRID = Grid(crs="EPSG:3035", resolution=10.0, origin=(4_000_000.0, 3_000_000.0),
                shape=(300, 420), chunk=32, shard=64, tile=128)  # fmt: skip


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as local:
        yield ClusterSpec(scheduler=local.scheduler_address)


def _random_tile(tile: Tile, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    source = rng.choice([0, 1, 2], size=tile.shape, p=[0.3, 0.3, 0.4]).astype(np.uint8)
    source[: tile.shape[0] // 3, : tile.shape[1] // 2] = Source.NO_INPUT  # an empty corner
    lai = rng.uniform(0.0, 8.0, tile.shape).astype(np.float32)
    lai[source == Source.NO_INPUT] = np.nan
    return lai, source


def _written_store(path: Path | str, *, pyramid: bool, seed: int = 0) -> LaiStore:
    """Every tile of ODD_GRID written for DAY (and its overviews, with ``pyramid``)."""
    store = LaiStore.create(path, ODD_GRID)
    store.add_date(DAY)
    if pyramid:
        ensure_pyramid(store, create=True, chunk=16)
    writer = pyramid_writer(store, DAY) if pyramid else None
    rng = np.random.default_rng(seed)
    for tile in ODD_GRID.iter_tiles():
        store.write_tile(DAY, tile, *_random_tile(tile, rng))
        if writer is not None:
            writer.update(tile.window, tile.id)
    return store


def _expected(lai: np.ndarray, source: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware block mean of level 0 and the most frequent flag (ties: the higher flag)."""
    size = 2**level
    rows, cols = -(-lai.shape[0] // size), -(-lai.shape[1] // size)
    values = np.full((rows * size, cols * size), np.nan)
    values[: lai.shape[0], : lai.shape[1]] = lai
    flags = np.full(values.shape, -1)
    flags[: lai.shape[0], : lai.shape[1]] = source
    blocks = values.reshape(rows, size, cols, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(blocks, axis=(1, 3)) / np.isfinite(blocks).sum(axis=(1, 3))
    counts = np.stack([(flags == f).reshape(rows, size, cols, size).sum(axis=(1, 3))
                       for f in (2, 1, 0)])  # fmt: skip
    return mean, (2 - np.argmax(counts, axis=0)).astype(np.uint8)


def _check_levels_equal_block_means(path: Path | str, levels: int) -> None:
    ds = xr.open_zarr(path).sel(time=np.datetime64(DAY))
    lai0, source0 = ds["lai"].values.astype(np.float64), ds["source"].values
    for level in range(1, levels + 1):
        got = xr.open_zarr(path, group=level_group(level)).sel(time=np.datetime64(DAY))
        mean, majority = _expected(lai0, source0, level)
        assert got["lai"].shape == mean.shape == PyramidSpec.shape(ODD_GRID, level)
        np.testing.assert_allclose(got["lai"].values, mean, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got["source"].values, majority)
        # the level's pixel centres are the centres of the level-0 blocks below them
        np.testing.assert_allclose(got["x"].values[:3], ds["x"].values[: 3 * 2**level]
                                   .reshape(3, -1).mean(axis=1))  # fmt: skip


def test_levels_equal_nan_aware_block_means_of_level_0(tmp_path: Path) -> None:
    store = _written_store(tmp_path / "lai.zarr", pyramid=True)
    spec = PyramidSpec.for_grid(ODD_GRID, chunk=16)
    assert spec.levels == 5  # 420 px halved until one 16-px chunk holds it
    _check_levels_equal_block_means(tmp_path / "lai.zarr", spec.levels)
    assert built_tiles(store, DAY) == {t.id for t in ODD_GRID.iter_tiles()}


def test_a_pyramid_on_an_object_store(s3_endpoint: str) -> None:
    from tests.conftest import new_bucket

    url = f"s3://{new_bucket(s3_endpoint)}/lai.zarr"
    store = _written_store(url, pyramid=True)
    _check_levels_equal_block_means(url, PyramidSpec.for_grid(ODD_GRID, chunk=16).levels)
    assert built_tiles(store, DAY) == {t.id for t in ODD_GRID.iter_tiles()}

    from lamap.view import StoreTiles

    tiles = StoreTiles(LaiStore.open(url))
    west, south, east, north = tiles.info()["data_bounds"]
    point = tiles.series((west + east) / 2, (south + north) / 2)
    assert point["inside"] and [p["date"] for p in point["series"]] == [DAY.isoformat()]
    assert tiles.bytes_read > 0 and tiles.stale() == {}


def test_the_layout_follows_the_geozarr_multiscales_convention(tmp_path: Path) -> None:
    _written_store(tmp_path / "lai.zarr", pyramid=True)
    attrs = xr.open_zarr(tmp_path / "lai.zarr").attrs
    assert MULTISCALES_CONVENTION in attrs["zarr_conventions"]
    layout = attrs["multiscales"]["layout"]
    assert [entry["asset"] for entry in layout] == ["lai", *(f"overviews/{k}/lai"
                                                             for k in range(1, 6))]  # fmt: skip
    for below, entry in zip(layout, layout[1:], strict=False):
        assert entry["derived_from"] == below["asset"]
        assert entry["transform"]["scale"] == [1.0, 2.0, 2.0]
        assert entry["proj:transform"][0] == 2 * below["proj:transform"][0]
    # level 0 is untouched: xr.open_zarr sees lai and source only
    assert set(xr.open_zarr(tmp_path / "lai.zarr").data_vars) == {"lai", "lai_sd", "source"}


def test_a_new_date_grows_every_level(tmp_path: Path) -> None:
    store = _written_store(tmp_path / "lai.zarr", pyramid=True)
    store.add_date("2024-05-11")
    assert ensure_pyramid(store, create=False)
    level = xr.open_zarr(tmp_path / "lai.zarr", group=level_group(3))
    assert level.sizes["time"] == 2
    assert list(level["time"].values) == list(xr.open_zarr(tmp_path / "lai.zarr")["time"].values)
    assert np.isnan(level["lai"].sel(time="2024-05-11").values).all()  # nothing written yet


def test_lamap_overviews_builds_a_pyramid_and_resumes(tmp_path: Path, cluster, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "old.zarr"
    store = _written_store(path, pyramid=False)
    assert not has_pyramid(store)
    args = ["overviews", str(path), "--scheduler", cluster.scheduler]
    main(args)
    out = capsys.readouterr().out
    levels = PyramidSpec.for_grid(ODD_GRID).levels
    assert f"{levels} levels, {ODD_GRID.n_tiles} tiles updated, 0 already up to date" in out
    _check_levels_equal_block_means(path, levels)
    # an interrupted run left two tiles without their marker: a rerun does only those
    fs_root = path / "overviews" / "built" / DAY.isoformat()
    for tile_id in sorted(built_tiles(store, DAY))[:2]:
        (fs_root / f"{tile_id}.json").unlink()
    main(args)
    assert f"2 tiles updated, {ODD_GRID.n_tiles - 2} already up to date" in capsys.readouterr().out
    _check_levels_equal_block_means(path, levels)


# --------------------------------------------------------------------------- in the map graph


def _inner_bbox(tiles: list[Tile], margin: float = 0.25) -> tuple[float, float, float, float]:
    """A lon/lat bbox inside the tiles' union, clear of their neighbours."""
    boxes = np.array([tile.lonlat_bounds().to_tuple() for tile in tiles])
    west, south = boxes[:, 0].min(), boxes[:, 1].min()
    east, north = boxes[:, 2].max(), boxes[:, 3].max()
    dx, dy = (east - west) * margin / len(tiles), (north - south) * margin / len(tiles)
    return (west + dx, south + dy, east - dx, north - dy)


def _chunks_above(window: Window, grid: Grid, levels: int, edge: int) -> dict[int, set]:
    above: dict[int, set] = {}
    for level in range(1, levels + 1):
        window = parent_window(window, PyramidSpec.shape(grid, level))
        above[level] = {(b.row_start // edge, b.col_start // edge) for b in window.split(edge)}
    return above


def _level_chunks(path: Path, level: int, edge: int, day: dt.date) -> dict[tuple, np.ndarray]:
    values = xr.open_zarr(path, group=level_group(level))["lai"].sel(time=np.datetime64(day))
    data = values.values
    return {(r, c): data[r * edge:(r + 1) * edge, c * edge:(c + 1) * edge]
            for r in range(-(-data.shape[0] // edge))
            for c in range(-(-data.shape[1] // edge))}  # fmt: skip


def test_a_run_updates_only_the_overview_chunks_above_its_tiles(
    tiny_world, model, tmp_path: Path, cluster  # type: ignore[no-untyped-def]
) -> None:
    grid = Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=32, shard=64, tile=64)
    rows, cols = grid.tiles_shape
    middle = (rows // 2, cols // 2)
    first = grid.get_tile(middle[0], middle[1] - 1)
    second = grid.get_tile(*middle)
    third = grid.get_tile(middle[0] - 1, middle[1])
    out, day = tmp_path / "lai.zarr", dt.date(2024, 4, 28)
    kwargs = {"catalog": str(tiny_world.root), "model": model, "cluster": cluster}
    report = map_lai(_inner_bbox([first, second]), day, out, grid=grid, **kwargs)
    assert sorted(report.mapped) == sorted([first.id, second.id])
    store = LaiStore.open(out)
    spec = PyramidSpec.for_grid(grid)
    assert built_tiles(store, day) == {first.id, second.id}
    before = {k: _level_chunks(out, k, spec.chunk, day) for k in range(1, spec.levels + 1)}

    report = map_lai(_inner_bbox([third]), day, out, **kwargs)
    assert report.mapped == [third.id]
    assert built_tiles(store, day) == {first.id, second.id, third.id}
    above = _chunks_above(third.window, grid, spec.levels, spec.chunk)
    shared = _chunks_above(first.window, grid, spec.levels, spec.chunk)[spec.levels]
    assert spec.levels >= 3 and above[spec.levels] & shared  # coarse chunks are shared
    for level in range(1, spec.levels + 1):
        after = _level_chunks(out, level, spec.chunk, day)
        changed = {key for key in after
                   if not np.array_equal(after[key], before[level][key], equal_nan=True)}
        assert changed <= above[level], f"level {level}: chunks {changed - above[level]} changed"
        assert changed, f"level {level}: no chunk above tile {third.id} changed"
        if level == 1:  # the tile holds data where there was none: all its chunks change
            assert changed == above[1]
    # and every level is still the block mean of level 0
    ds = xr.open_zarr(out).sel(time=np.datetime64(day))
    for level in range(1, spec.levels + 1):
        mean, _ = _expected(ds["lai"].values.astype(np.float64), ds["source"].values, level)
        got = xr.open_zarr(out, group=level_group(level))["lai"].sel(time=np.datetime64(day))
        np.testing.assert_allclose(got.values, mean, rtol=0, atol=1e-6)
