"""lamap map end to end: offline world → local STAC API → LocalCluster → Zarr store."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from lamap.catalog import open_catalog, search
from lamap.cube import CubeWindow, scl_cube
from lamap.mapping import map_lai
from lamap.model import file_sha256
from lamap.runtime import ClusterSpec
from lamap.store import LaiStore
from lamap.synthetic.world import World
from lamap.timesteps import s2_days

DATE = dt.date(2024, 4, 28)  # an S2 day: observed LAI where clear


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield ClusterSpec(scheduler=local.scheduler_address)


@pytest.fixture(scope="module")
def mapped(tiny_world: World, tmp_path_factory, cluster, model, grid):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("map") / "lai.zarr"
    report = map_lai(
        tiny_world.bbox,
        DATE,
        out,
        catalog=str(tiny_world.root),
        model=model,
        grid=grid,
        cluster=cluster,
    )
    return out, report


def _truth_window(world: World, ds: xr.Dataset, margin: float) -> tuple[slice, slice]:
    xmin, ymin, xmax, ymax = world.meta["truth_grid"]["bounds"]
    return slice(ymax - margin, ymin + margin), slice(xmin + margin, xmax - margin)


def test_store_opens_with_crs_and_cf_attributes(mapped, model) -> None:  # type: ignore[no-untyped-def]
    out, report = mapped
    assert report.mapped and not report.skipped
    ds = xr.open_zarr(out)
    assert ds.rio.crs.to_epsg() == 3035
    assert ds["lai"].attrs["standard_name"] == "leaf_area_index"
    assert ds["lai"].attrs["units"] == "m2 m-2"
    assert list(ds.time.values) == [np.datetime64(DATE, "ns")]
    assert json.loads(ds.attrs["lamap_model"])["sha256"] == file_sha256(model)  # netCDF-ready
    inputs = LaiStore.open(out).attrs["lamap_dates"][DATE.isoformat()]["inputs"]
    assert "2024-04-23" in json.dumps(inputs), "the S2 day t-1 should be recorded"


def test_lai_finite_inside_the_world_and_nan_outside(mapped, tiny_world: World) -> None:  # type: ignore[no-untyped-def]
    out, _ = mapped
    lai = xr.open_zarr(out)["lai"].sel(time=np.datetime64(DATE))
    inside = lai.sel(dict(zip(("y", "x"), _truth_window(tiny_world, lai, 30.0), strict=True)))
    assert np.isfinite(inside.values).mean() > 0.99
    assert float(inside.min()) >= 0 and float(inside.max()) <= 8
    xmin, ymin, xmax, ymax = tiny_world.meta["truth_grid"]["bounds"]
    x, y = lai.x.values, lai.y.values
    outside = (
        (x[None, :] < xmin - 30)
        | (x[None, :] > xmax + 30)
        | (y[:, None] < ymin - 30)
        | (y[:, None] > ymax + 30)
    )
    assert outside.any()
    assert np.isnan(lai.values[outside]).all()


def test_source_matches_scl_at_d(mapped, tiny_world: World, tiny_api, grid) -> None:  # type: ignore[no-untyped-def]
    out, _ = mapped
    ds = xr.open_zarr(out).sel(time=np.datetime64(DATE))
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    result = search(profile, tiny_world.bbox, DATE, DATE, sentinel1=False)
    day = [d for d in s2_days(result.s2, tiny_world.bbox) if d.day == DATE]
    scl = scl_cube(result.s2, day, CubeWindow(grid, grid.window)).isel(time=0).compute()
    clear = np.isin(scl.values, [2, 4, 5, 6])  # a cloud shadow (3) is filled, not observed
    source = ds["source"].values
    assert (source == 1).sum() > 1000, "clear pixels at D should be observed"
    in_data = scl.values > 0
    agreement = ((source == 1) == clear)[in_data].mean()
    assert agreement > 0.99
    filled = (source == 2) & in_data
    assert np.isin(scl.values[filled], [0, 1, 3, 7, 8, 9, 10, 11]).mean() > 0.99


def test_second_run_skips_finished_tiles(mapped, tiny_world, cluster, model) -> None:  # type: ignore[no-untyped-def]
    out, first = mapped
    before = (Path(out) / "lai").stat().st_mtime_ns
    again = map_lai(
        tiny_world.bbox, DATE, out, catalog=str(tiny_world.root), model=model, cluster=cluster
    )
    assert sorted(again.skipped) == sorted(first.tiles) and not again.mapped
    assert (Path(out) / "lai").stat().st_mtime_ns == before


def test_second_date_appends_and_keeps_the_first(mapped, tiny_world, cluster, model) -> None:  # type: ignore[no-untyped-def]
    out, _ = mapped
    first = xr.open_zarr(out)["lai"].sel(time=np.datetime64(DATE)).values
    map_lai(
        tiny_world.bbox,
        "2024-04-24",
        out,
        catalog=str(tiny_world.root),
        model=model,
        cluster=cluster,
    )
    ds = xr.open_zarr(out)
    assert ds.sizes["time"] == 2
    np.testing.assert_array_equal(ds["lai"].sel(time=np.datetime64(DATE)).values, first)
    second = ds["lai"].sel(time=np.datetime64("2024-04-24")).values
    assert np.isfinite(second).sum() > 0.9 * np.isfinite(first).sum()


def test_neighbouring_bboxes_equal_one_bbox(
    mapped, tiny_world, cluster, model, grid, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    out, _ = mapped
    west, south, east, north = tiny_world.bbox
    middle = (west + east) / 2
    parts = tmp_path / "parts.zarr"
    for bbox in ((west, south, middle, north), (middle, south, east, north)):
        map_lai(
            bbox, DATE, parts, catalog=str(tiny_world.root), model=model, grid=grid, cluster=cluster
        )
    whole = xr.open_zarr(out)["lai"].sel(time=np.datetime64(DATE)).values
    pieces = xr.open_zarr(parts)["lai"].sel(time=np.datetime64(DATE)).values
    np.testing.assert_array_equal(pieces, whole)


def test_cli_map_reports_a_bad_bbox(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamap.cli.main",
            "map",
            "--bbox",
            "6,48,5,49",
            "--date",
            "2024-04-28",
            "--out",
            str(tmp_path / "x.zarr"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "W >= E" in done.stderr
    assert not (tmp_path / "x.zarr").exists()
