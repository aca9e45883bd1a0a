"""Runs over time: dates mapped out of order stay in order, a date without input is refused,
tiles without input are recorded (not done) and planned again by the next run."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lamap.errors import NoInputError
from lamap.export import info
from lamap.grid import Grid, Window
from lamap.mapping import MapOptions, map_lai
from lamap.runtime import ClusterSpec
from lamap.store import LaiStore
from lamap.synthetic.world import World

FIRST, EARLIER, BETWEEN = "2024-04-28", "2024-04-20", "2024-04-24"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSpec]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as local:  # fmt: skip
        yield ClusterSpec(scheduler=local.scheduler_address)


@pytest.fixture(scope="module")
def model_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded tiny network with an observed-pixel spread, so lai_sd has shards too."""
    from lamap.features import FeatureSpec
    from lamap.model import ModelConfig, save_checkpoint, seeded_model

    path = tmp_path_factory.mktemp("model_sd") / "seeded_sd.pt"
    save_checkpoint(path, seeded_model(0, ModelConfig.tiny()), feature_spec=FeatureSpec().to_dict(),
                    training={"uncertainty": {"observed_sd": 0.45}})
    return path


def shards_by_date(store: LaiStore) -> dict[str, dict[str, bytes]]:
    """Every shard object of lai, lai_sd and source, by date and key without the time index."""
    out: dict[str, dict[str, bytes]] = {}
    root = Path(store.url)
    for index, day in enumerate(store.dates):
        files = {}
        for name in ("lai", "lai_sd", "source"):
            folder = root / name / "c" / str(index)
            for path in folder.rglob("*") if folder.exists() else ():
                if path.is_file():
                    files[f"{name}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
        out[day.isoformat()] = files
    return out


def inside(grid: Grid, row: int, col: int) -> tuple[float, float, float, float]:
    """A lon/lat bbox well inside one tile (it touches no other tile)."""
    w = grid.get_tile(row, col).window
    inner = Window(w.row_start + 64, w.row_stop - 64, w.col_start + 64, w.col_stop - 64)
    return grid.bounds_to_lonlat(grid.window_bounds(inner)).to_tuple()


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_dates_mapped_out_of_order_are_in_order_with_their_bytes(
    tiny_world: World, model_sd: Path, grid: Grid, cluster: ClusterSpec, tmp_path: Path
) -> None:
    model = model_sd
    out, tile = tmp_path / "lai.zarr", grid.get_tile(1, 1)
    bbox = inside(grid, 1, 1)

    def run(day: str, **options: int) -> object:
        return map_lai(bbox, day, out, catalog=str(tiny_world.root), model=model, grid=grid,
                       cluster=cluster, options=MapOptions(**options))  # fmt: skip

    assert run(FIRST).mapped == [tile.id]  # type: ignore[attr-defined]
    store = LaiStore.open(out)
    first = shards_by_date(store)[FIRST]
    assert {key.split("/")[0] for key in first} == {"lai", "lai_sd", "source"}
    before = tree_hash(out)
    with pytest.raises(NoInputError, match=r"no input for 2024-04-22 .*--lookback"):
        run("2024-04-22", lookback_days=3)  # one S2 day within 3 days: refused
    assert tree_hash(out) == before and store.dates == [dt.date(2024, 4, 28)]
    run(EARLIER)
    run(BETWEEN)
    assert [str(d) for d in store.dates] == [EARLIER, BETWEEN, FIRST]
    assert shards_by_date(store)[FIRST] == first  # moved from index 0 to 2, bytes unchanged
    ds = xr.open_zarr(out)
    assert ds.indexes["time"].is_monotonic_increasing
    late = ds.sel(time=slice("2024-04-21", "2024-04-30"))
    assert [str(t)[:10] for t in late.time.values] == [BETWEEN, FIRST]
    nearest = ds.lai.sel(time=np.datetime64("2024-04-27"), method="nearest")
    assert str(nearest.time.values)[:10] == FIRST
    assert all(store.done_tiles(day) == [tile.id] for day in (EARLIER, BETWEEN, FIRST))
    # the pyramid moved with the time axis: each date's level 1 is the block mean of its level 0
    level1 = xr.open_zarr(out, group="overviews/1")
    assert [str(t)[:10] for t in level1.time.values] == [EARLIER, BETWEEN, FIRST]
    expected = ds.lai.coarsen(y=2, x=2, boundary="pad").mean()
    for day in (EARLIER, BETWEEN, FIRST):
        got = level1.lai.sel(time=np.datetime64(day)).values
        want = expected.sel(time=np.datetime64(day)).values[: got.shape[0], : got.shape[1]]
        assert np.isfinite(got).sum() > 100
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_tiles_without_input_are_recorded_apart_and_planned_again(
    tiny_world: World, model: Path, cluster: ClusterSpec, tmp_path: Path
) -> None:
    west, south, east, north = tiny_world.bbox
    wide = (west - 0.01, south - 0.01, east + 0.01, north + 0.01)  # a rim of tiles with no data
    grid = Grid.from_bbox(wide, crs="EPSG:3035", chunk=128, shard=128, tile=256)
    out = tmp_path / "lai.zarr"

    def run(lookback: int) -> object:
        return map_lai(wide, FIRST, out, catalog=str(tiny_world.root), model=model, grid=grid,
                       cluster=cluster, options=MapOptions(lookback_days=lookback))  # fmt: skip

    first = run(20)
    empty = sorted(first.no_input)  # type: ignore[attr-defined]
    assert empty and first.mapped  # type: ignore[attr-defined]
    store = LaiStore.open(out)
    assert sorted(store.done_tiles(FIRST)) == sorted(first.mapped)  # type: ignore[attr-defined]
    records = store.no_input_tiles(FIRST)
    assert sorted(records) == empty and not set(empty) & set(store.done_tiles(FIRST))
    assert records[empty[0]]["options"]["lookback_days"] == 20
    assert "--lookback" in records[empty[0]]["reason"]
    text = info(out)
    assert re.search(rf"{FIRST}: {len(first.mapped)} of \d+ tiles done, "  # type: ignore[attr-defined]
                     rf"{len(empty)} without input", text), text
    again = run(25)
    assert sorted(again.skipped) == sorted(first.mapped)  # type: ignore[attr-defined]
    assert sorted(again.no_input) == empty  # planned again, not skipped as done
    assert store.no_input_tiles(FIRST)[empty[0]]["options"]["lookback_days"] == 25


def test_concurrent_map_commands_on_one_store_equal_running_them_in_turn(
    tiny_world: World, model: Path, grid: Grid, cluster: ClusterSpec, tmp_path: Path
) -> None:
    """Four `lamap map` processes at once: same bbox twice, a neighbour, an earlier date."""

    def bbox_of(row: int, col: int) -> str:
        return ",".join(repr(v) for v in inside(grid, row, col))

    runs = [(bbox_of(1, 1), FIRST), (bbox_of(1, 1), FIRST), (bbox_of(1, 0), FIRST),
            (bbox_of(1, 1), EARLIER)]  # fmt: skip
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps(grid.to_dict()))

    def command(bbox: str, day: str, out: Path) -> list[str]:
        return [sys.executable, "-m", "lamap.cli.main", "map", "--bbox", bbox, "--date", day,
                "--out", str(out), "--catalog", str(tiny_world.root), "--model", str(model),
                "--grid", str(grid_file), "--scheduler", str(cluster.scheduler)]  # fmt: skip

    together = tmp_path / "together.zarr"
    processes = [
        subprocess.Popen(command(bbox, day, together), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for bbox, day in runs
    ]  # fmt: skip
    for process in processes:
        _out, err = process.communicate(timeout=600)
        assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
    in_turn = tmp_path / "in_turn.zarr"
    for bbox, day in runs:
        map_lai(bbox, day, in_turn, catalog=str(tiny_world.root), model=model, grid=grid,
                cluster=cluster)  # fmt: skip
    got, want = LaiStore.open(together), LaiStore.open(in_turn)
    assert got.dates == want.dates == [dt.date(2024, 4, 20), dt.date(2024, 4, 28)]
    a, b = got.dataset().load(), want.dataset().load()
    np.testing.assert_array_equal(a.lai.values, b.lai.values)
    np.testing.assert_array_equal(a.source.values, b.source.values)
    assert all(got.done_tiles(d) == want.done_tiles(d) for d in want.dates)
