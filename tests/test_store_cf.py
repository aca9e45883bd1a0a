"""The store as independent tools read it: netCDF, cf-checker, fill and flags, a notebook.

cf-checker (the ``cfchecker`` package, with UDUNITS-2) checks NetCDF subsets exported from
real stores. It reads its tables from ``tests/data/cf`` (see ``tests/data/PROVENANCE.md``),
never from the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import lamap
from lamap.grid import Grid, Tile
from lamap.output_stac import collection_url
from lamap.store import LAI_VALID_RANGE, LaiStore, Source
from lamap.store.attrs import JSON_ATTRS
from lamap.store.schema import SOURCE_FILL, commit
from lamap.synthetic.world import World
from tests.conftest import DATA
from tests.oracles.validate import validate_stac

CF_TABLES = DATA / "cf"
SMALL = Grid("EPSG:3035", 10.0, (4_000_000.0, 3_000_000.0), (300, 260), 32, 64, 128, name="small")
D1 = "2024-06-15"


def _tile_data(tile: Tile, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    source = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=tile.shape, p=[0.2, 0.3, 0.5])
    lai = rng.uniform(*LAI_VALID_RANGE, size=tile.shape).astype(np.float32)
    lai[source == Source.NO_INPUT] = np.nan
    return lai, source


@pytest.fixture
def written(tmp_path: Path) -> LaiStore:
    """A small store with one date and one tile written (the rest never mapped)."""
    store = LaiStore.create(tmp_path / "lai.zarr", SMALL, attrs={"project": {"name": "x"}})
    store.add_date(D1)
    tile = SMALL.get_tile(0, 0)
    store.write_tile(D1, tile, *_tile_data(tile, 1))
    store.record_run(D1, model={"id": "m", "sha256": "abc"})
    return store


def cf_errors(path: Path) -> list[str]:
    """Run cf-checker on a netCDF file with the stored tables; its ERROR and FATAL lines."""
    from cfchecker.cfchecks import CFChecker

    checker = CFChecker(
        cfStandardNamesXML=str(CF_TABLES / "cf-standard-name-table.xml"),
        cfAreaTypesXML=str(CF_TABLES / "area-type-table.xml"),
        cfRegionNamesXML=str(CF_TABLES / "standardized-region-list.xml"),
        silent=True,
    )
    checker.checker(str(path))
    results = checker.results
    found = [*results["global"]["FATAL"], *results["global"]["ERROR"]]
    for name, messages in results["variables"].items():
        found += [f"{name}: {text}" for text in (*messages["FATAL"], *messages["ERROR"])]
    return found


# --------------------------------------------------------------------------- attributes


def test_structured_attributes_are_json_strings_that_read_back(written: LaiStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = xr.open_zarr(written.url).attrs
    assert set(raw[JSON_ATTRS].split()) == {"lamap_grid", "lamap_dates", "lamap_model", "project"}
    assert all(isinstance(raw[key], str) for key in raw[JSON_ATTRS].split())
    decoded = written.attrs
    assert Grid.from_dict(decoded["lamap_grid"]) == SMALL
    assert decoded["project"] == {"name": "x"} and decoded["lamap_model"]["sha256"] == "abc"
    assert decoded["lamap_dates"][D1]["tiles_done"] == 1
    assert decoded["lamap_store_layout"] == 2
    out = tmp_path / "all.nc"
    xr.open_zarr(written.url).to_netcdf(out)  # TypeError: Invalid value for attr before
    with xr.open_dataset(out) as back:
        assert json.loads(back.attrs["lamap_grid"]) == SMALL.to_dict()


def test_a_layout_1_store_is_read_and_upgraded_by_its_next_run(written: LaiStore) -> None:
    group = zarr.open_group(written.url, mode="r+", use_consolidated=False)
    old = {**written.attrs, "lamap_store_layout": 1}  # dicts as layout 1 kept them
    group.attrs.clear()
    group.update_attributes(old)
    commit(written.url, {})  # publish it, as lamap commits
    store = LaiStore.open(written.url)
    assert store.grid == SMALL and store.attrs["lamap_dates"][D1]["tiles_done"] == 1
    store.record_run(D1)
    raw = xr.open_zarr(written.url).attrs
    assert raw["lamap_store_layout"] == 2 and isinstance(raw["lamap_grid"], str)
    assert json.loads(raw["lamap_dates"])[D1]["tiles_done"] == 1


def test_never_mapped_is_its_own_flag_and_lai_names_its_ancillary(written: LaiStore) -> None:
    ds = xr.open_zarr(written.url)
    source = ds["source"].isel(time=0).values
    rows, cols = SMALL.get_tile(0, 0).window.to_slices()
    inside = source[rows, cols]
    assert set(np.unique(inside)) == {0, 1, 2}, "no_input stays 0 where a tile was mapped"
    outside = np.ones(source.shape, bool)
    outside[rows, cols] = False
    assert (source[outside] == SOURCE_FILL).all(), "never mapped reads 255, not no_input"
    attrs = ds["source"].attrs
    assert attrs["flag_values"] == [0, 1, 2, 255]
    assert attrs["flag_meanings"] == "no_input observed filled not_mapped"
    assert ds["lai"].attrs["ancillary_variables"] == "source lai_sd"
    typed = lamap.open_store(written.url)["source"].attrs["flag_values"]
    assert typed.dtype == np.uint8 and typed.tolist() == [0, 1, 2, 255]


# --------------------------------------------------------------------------- cf-checker


def test_cf_checker_passes_on_a_netcdf_subset(written: LaiStore, tmp_path: Path) -> None:
    subset = lamap.open_store(written.url).isel(y=slice(0, 150), x=slice(0, 150))
    good = tmp_path / "subset.nc"
    subset.to_netcdf(good)
    assert cf_errors(good) == []
    with xr.open_dataset(good) as back:
        assert back["source"].dtype == np.uint8 and back["lai"].attrs["units"] == "m2 m-2"
    bad = tmp_path / "int64-flags.nc"  # what plain xr.open_zarr writes: JSON ints -> int64
    subset["source"].attrs["flag_values"] = np.array([0, 1, 2, 255], dtype=np.int64)
    subset.to_netcdf(bad)
    errors = cf_errors(bad)
    assert len(errors) == 1 and "flag_values" in errors[0], errors


# --------------------------------------------------------------------------- a notebook


def test_notebook_flow_with_an_existing_client(
    tiny_world: World, model: Path, grid: Grid, tmp_path: Path
) -> None:
    """Existing Client -> lamap.map_lai -> xr.open_zarr -> sel(time=slice) -> to_netcdf."""
    from distributed import Client, LocalCluster

    out = tmp_path / "lai.zarr"
    west, south, east, north = tiny_world.bbox
    bbox = (west, south, west + 0.4 * (east - west), north)
    local = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0")  # fmt: skip
    with local as cluster, Client(cluster) as client:
        report = lamap.map_lai(bbox, "2024-04-28", out, catalog=str(tiny_world.root),
                               model=model, grid=grid)  # fmt: skip
        assert report.dashboard == client.dashboard_link, "the notebook's cluster did the work"
        assert client.status == "running" and report.mapped
        ds = xr.open_zarr(out)
        april = ds.sel(time=slice("2024-04-01", "2024-04-30"))
        nc = tmp_path / "april.nc"
        april.to_netcdf(nc)
    with xr.open_dataset(nc) as back:
        assert back.sizes["time"] == 1 and int(np.isfinite(back["lai"]).sum()) > 10_000
        np.testing.assert_array_equal(back["lai"].values, ds["lai"].values)
        np.testing.assert_array_equal(back["source"].values, ds["source"].values)
    collection = json.loads(Path(collection_url(str(out))).read_text())
    validate_stac(collection)
    assert collection["cube:dimensions"]["time"]["values"] == ["2024-04-28T00:00:00Z"]

