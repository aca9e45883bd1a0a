"""STAC for the output (a Collection beside the store) and for the demo world's items.

Everything validates offline against the published schemas in ``tests/data/schemas``
(STAC 1.1.0, datacube v2.2.0, xarray-assets v1.0.0; ``tests/oracles/validate.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr

from lamap.grid import Grid, Window
from lamap.output_stac import (
    DATACUBE,
    XARRAY_ASSETS,
    collection_url,
    store_collection,
    write_collection,
)
from lamap.store import LAI_VALID_RANGE, LaiStore
from lamap.synthetic.world import World
from tests.oracles.validate import stac_problems, validate_stac

GRID = Grid("EPSG:3035", 10.0, (4_000_000.0, 3_000_000.0), (300, 260), 32, 64, 128, name="small")
DAYS = ("2024-06-15", "2024-06-01")


@pytest.fixture
def store(tmp_path: Path) -> LaiStore:
    """Two dates, one tile of each written: the shape of a store after two runs."""
    store = LaiStore.create(tmp_path / "lai.zarr", GRID)
    for day, tile in zip(DAYS, (GRID.get_tile(0, 0), GRID.get_tile(1, 1)), strict=True):
        store.add_date(day)
        lai = np.full(tile.shape, 2.5, np.float32)
        source = np.full(tile.shape, 2, np.uint8)
        store.write_tile(day, tile, lai, source)
        store.record_run(day)
    return store


def test_collection_is_valid_stac_with_datacube_and_xarray_assets(store: LaiStore) -> None:
    collection = store_collection(store)
    validate_stac(collection, strict_datetime=True)
    assert set(collection["stac_extensions"]) == {DATACUBE, XARRAY_ASSETS}
    dims = collection["cube:dimensions"]
    assert dims["time"]["values"] == ["2024-06-01T00:00:00Z", "2024-06-15T00:00:00Z"]
    assert dims["x"]["reference_system"] == dims["y"]["reference_system"] == 3035
    assert dims["x"]["step"] == 10.0 and dims["y"]["step"] == -10.0
    ds = xr.open_zarr(store.url)
    assert dims["x"]["extent"] == [float(ds.x.min()), float(ds.x.max())]
    assert dims["y"]["extent"] == [float(ds.y.min()), float(ds.y.max())]
    variables = collection["cube:variables"]
    assert variables["lai"]["dimensions"] == list(ds["lai"].dims)
    assert variables["lai"]["unit"] == ds["lai"].attrs["units"]
    assert variables["lai"]["extent"] == list(LAI_VALID_RANGE)
    assert variables["source"]["values"] == ds["source"].attrs["flag_values"]
    interval = collection["extent"]["temporal"]["interval"][0]
    assert interval == ["2024-06-01T00:00:00Z", "2024-06-15T23:59:59Z"]


def test_the_collection_is_written_beside_the_store_and_opens_it(store: LaiStore) -> None:
    url = write_collection(store)
    assert url == collection_url(store.url) == str(Path(store.url).with_suffix(".collection.json"))
    loaded = pystac.Collection.from_file(url)  # pystac reads it and resolves the asset
    asset = loaded.assets["zarr"]
    assert Path(asset.get_absolute_href()) == Path(store.url)
    ds = xr.open_dataset(asset.get_absolute_href(), **asset.extra_fields["xarray:open_kwargs"])
    assert ds.sizes == {"time": 2, "y": 300, "x": 260} and float(ds["lai"].max()) == 2.5
    union = Window(0, 256, 0, 256)  # tiles r0000c0000 and r0001c0001
    expected = GRID.bounds_to_lonlat(GRID.window_bounds(union)).to_tuple()
    assert loaded.extent.spatial.bboxes[0] == pytest.approx(expected, abs=1e-6)
    assert GRID.lonlat_extent()[2] > expected[2], "the mapped area, not the whole grid"


def test_a_broken_collection_fails_validation(store: LaiStore) -> None:
    collection = store_collection(store)
    collection["cube:dimensions"]["x"]["type"] = "spatial-ish"
    collection["assets"]["zarr"]["xarray:open_kwargs"] = "consolidated"
    problems = stac_problems(collection)
    assert any("cube:dimensions" in line for line in problems), problems
    assert any("xarray:open_kwargs" in line for line in problems), problems


def test_demo_items_link_to_their_collection(tiny_world: World) -> None:
    path = next(p for p in tiny_world.item_paths if "sentinel-2-l2a" in p.as_posix())
    item = pystac.Item.from_file(str(path))
    collection = item.get_collection()  # STACError "does not resolve" before
    assert collection is not None and collection.id == item.collection_id == "sentinel-2-l2a"
    target = Path(item.get_single_link("collection").get_absolute_href())
    assert target in [p.resolve() for p in tiny_world.collection_paths]
    validate_stac(json.loads(target.read_text()))


def test_a_map_run_updates_the_collection(store: LaiStore) -> None:
    first = write_collection(store)
    before = json.loads(Path(first).read_text())
    store.add_date("2024-07-01")
    store.write_tile("2024-07-01", GRID.get_tile(2, 2), np.full((44, 4), 1.0, np.float32),
                     np.full((44, 4), 1, np.uint8))  # fmt: skip
    after = json.loads(Path(write_collection(store)).read_text())
    assert len(after["cube:dimensions"]["time"]["values"]) == 3 > len(
        before["cube:dimensions"]["time"]["values"]
    )
    assert after["extent"]["temporal"]["interval"][0][1].startswith(str(dt.date(2024, 7, 1)))
