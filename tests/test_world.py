"""The offline Sentinel world: determinism, layout, physics sanity, STAC, stackstac."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac_client
import pytest
import rasterio
import stackstac
from rasterio.warp import Resampling, reproject

from lamap.errors import InputError
from lamap.synthetic.world import World, WorldSpec, generate_world, load_world
from tests.conftest import FIXTURES, TINY_WORLD
from tests.oracles.stac import filter_items
from tests.oracles.validate import validate_stac


def _items(world: World) -> list[dict]:
    return [json.loads(p.read_text()) for p in world.item_paths]


def _s2_items(world: World) -> list[dict]:
    return [it for it in _items(world) if it["collection"] == "sentinel-2-l2a"]


def _read(href: str) -> tuple[np.ndarray, rasterio.Affine, rasterio.crs.CRS]:
    with rasterio.open(href) as src:
        return src.read(1), src.transform, src.crs


def _on_truth_grid(world: World, href: str, nodata: float) -> np.ndarray:
    """Reproject one COG onto the truth grid (nearest), NaN where it has no data."""
    grid = world.meta["truth_grid"]
    data, transform, crs = _read(href)
    out = np.full(grid["shape"], np.nan, dtype=np.float32)
    reproject(
        data.astype(np.float32),
        out,
        src_transform=transform,
        src_crs=crs,
        src_nodata=nodata,
        dst_transform=rasterio.Affine(*grid["transform"]),
        dst_crs="EPSG:3035",
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    return out


def test_world_json_describes_the_world(tiny_world: World) -> None:
    meta = tiny_world.meta
    west, south, east, north = tiny_world.bbox
    assert west < 6.0 < east, "the default world must straddle UTM zones 31 and 32"
    assert meta["crs"]["sentinel-2-l2a"] == ["EPSG:32631", "EPSG:32632"]
    assert meta["crs"]["truth"] == "EPSG:3035"
    s2 = tiny_world.s2_dates
    assert all((b - a).days == 5 for a, b in zip(s2, s2[1:], strict=False))
    s1 = tiny_world.s1_dates
    assert all((b - a).days in (6, 12) for a, b in zip(s1, s1[1:], strict=False))
    assert all(p.is_file() for p in tiny_world.item_paths)
    assert tiny_world.truth_path.is_dir()
    assert load_world(tiny_world.root / "world.json").meta == meta


def test_same_seed_same_bytes(tiny_world: World, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", WorldSpec(**TINY_WORLD))
    old_root, new_root = str(tiny_world.root), str(again.root)
    files = sorted(p.relative_to(again.root) for p in again.root.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(tiny_world.root) for p in tiny_world.root.rglob("*") if p.is_file()
    )
    for rel in files:
        new = (again.root / rel).read_bytes()
        old = (tiny_world.root / rel).read_bytes()
        if rel.suffix == ".json":
            new = new.replace(new_root.encode(), old_root.encode())
        assert new == old, f"{rel} differs between two runs with the same seed"


def test_other_seed_other_world(tiny_world: World, tmp_path: Path) -> None:
    other = generate_world(tmp_path / "other", WorldSpec(**{**TINY_WORLD, "seed": 8, "days": 15}))
    a = tiny_world.truth()["cover"].values
    b = other.truth()["cover"].values
    assert (a != b).mean() > 0.2


def test_refuses_to_overwrite(tiny_world: World) -> None:
    with pytest.raises(InputError, match="not empty"):
        generate_world(tiny_world.root, WorldSpec(**TINY_WORLD))


def test_dn_scaling_and_nodata(tiny_world: World) -> None:
    item = _s2_items(tiny_world)[0]
    assert item["properties"]["s2:processing_baseline"] == "05.10"
    data, _, _ = _read(item["assets"]["B04"]["href"])
    valid = data[data > 0]
    reflectance = (valid.astype(float) - 1000) / 10000
    assert 0.0 <= reflectance.min() and reflectance.max() <= 1.0
    assert valid.min() >= 1000 - 1, "baseline 04.00+ DN carry the +1000 offset"
    with rasterio.open(item["assets"]["B05"]["href"]) as src:
        assert src.res == (20.0, 20.0) and src.nodata == 0
        assert src.block_shapes[0] == (256, 256) and src.overviews(1), (
            "COGs must be tiled with overviews"
        )


def _twins(world: World, item: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed and clear B04 DN of one product, and its SCL on the 10-m grid."""
    href = item["assets"]["B04"]["href"]
    observed, transform, _ = _read(href)
    clear, clear_transform, _ = _read(world.clear_href(href))
    assert clear_transform == transform and "sentinel-2-l2a-clear" in world.clear_href(href)
    scl = _read(item["assets"]["SCL"]["href"])[0].repeat(2, 0).repeat(2, 1)
    return observed, clear, scl[: clear.shape[0], : clear.shape[1]]


def test_clear_twins_differ_only_under_clouds(tiny_world: World) -> None:
    items = [it for it in _s2_items(tiny_world) if 5 < it["properties"]["eo:cloud_cover"] < 60]
    assert items
    same = []
    for item in items:
        observed, clear, scl = _twins(tiny_world, item)
        np.testing.assert_array_equal(clear == 0, observed == 0)  # same footprint
        cloudy, seen = np.isin(scl, (8, 9)), np.isin(scl, (4, 5))
        assert (clear[cloudy] < observed[cloudy]).mean() > 0.9, "clouds brighten the red band"
        same.append((clear[seen] == observed[seen]).mean())
    # the same noise: bit-identical where no cloud at all (thin ones SCL misses aside)
    assert max(same) > 0.5, same
    item = items[0]
    assert not Path(tiny_world.clear_href(item["assets"]["SCL"]["href"])).exists()  # SNAP only
    with pytest.raises(InputError, match="not a Sentinel-2 COG"):
        tiny_world.clear_href("/elsewhere/b04.tif")
    old = World(tiny_world.root, {k: v for k, v in tiny_world.meta.items() if k != "clear_s2"})
    with pytest.raises(InputError, match="regenerate it"):
        old.clear_href(item["assets"]["B04"]["href"])


def test_swath_edge_leaves_nodata(tiny_world: World) -> None:
    nodata: dict[tuple[str, int], list[float]] = {}
    for it in _s2_items(tiny_world):
        key = (it["properties"]["s2:mgrs_tile"], it["properties"]["sat:relative_orbit"])
        nodata.setdefault(key, []).append(it["properties"]["s2:nodata_pixel_percentage"])
    tiles = {tile for tile, _ in nodata}
    assert len(tiles) == 2
    assert all(min(nodata[(t, 51)]) > max(nodata[(t, 8)]) for t in tiles), nodata
    assert any(min(nodata[(t, 51)]) > max(nodata[(t, 8)]) + 20 for t in tiles), nodata


def test_snap_lai_tracks_true_lai(tiny_world: World) -> None:
    truth = tiny_world.truth()
    lai = truth["lai"].values.ravel()
    snap = truth["lai_snap"].values.ravel()
    cover = np.broadcast_to(truth["cover"].values, truth["lai"].shape).ravel()
    keep = (lai < 4) & (cover != 8)  # not water
    residual = snap[keep] - lai[keep]
    r2 = 1 - np.sum(residual**2) / np.sum((lai[keep] - lai[keep].mean()) ** 2)
    assert r2 >= 0.6, f"SNAP LAI vs true LAI: R² = {r2:.3f}"


def test_observed_snap_lai_on_clear_pixels(tiny_world: World) -> None:
    """SNAP LAI of the written COGs (clear SCL) tracks the true LAI too."""
    from lamap.lai import snap_lai

    truth = tiny_world.truth()
    item = next(
        it
        for it in _s2_items(tiny_world)
        if it["properties"]["eo:cloud_cover"] < 30 and it["properties"]["sat:relative_orbit"] == 8
    )
    day = np.datetime64(item["properties"]["datetime"][:10])
    bands = ["B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"]
    refl = np.stack(
        [(_on_truth_grid(tiny_world, item["assets"][b]["href"], 0) - 1000) / 1e4 for b in bands],
        axis=-1,
    )
    scl = _on_truth_grid(tiny_world, item["assets"]["SCL"]["href"], 0)
    sun = item["properties"]["s2:mean_solar_zenith"]
    lai_hat = snap_lai(refl, 5.8, sun, 90.0)
    lai = truth["lai"].sel(time=day).values
    keep = np.isin(scl, [4, 5]) & (lai < 4) & np.isfinite(lai_hat)
    assert keep.sum() > 1000
    residual = lai_hat[keep] - lai[keep]
    r2 = 1 - np.sum(residual**2) / np.sum((lai[keep] - lai[keep].mean()) ** 2)
    assert r2 >= 0.6, f"observed SNAP LAI vs true LAI: R² = {r2:.3f}"


def test_vh_rises_with_lai(tiny_world: World) -> None:
    truth = tiny_world.truth()
    items = [it for it in _items(tiny_world) if it["collection"] == "sentinel-1-rtc"]
    medians = []
    for item in items:
        day = np.datetime64(item["properties"]["datetime"][:10])
        nearest = truth["lai"].sel(time=day, method="nearest")
        if abs(nearest.time.values - day) > np.timedelta64(3, "D"):
            continue
        vh = _on_truth_grid(tiny_world, item["assets"]["vh"]["href"], -32768)
        crops = (truth["cover"].values <= 6) & np.isfinite(vh)
        db = 10 * np.log10(vh[crops])
        bins = np.digitize(nearest.values[crops], [0.5, 1.5, 2.5, 3.5])
        medians.append([np.median(db[bins == b]) for b in range(5) if (bins == b).sum() > 50])
    assert medians
    for series in medians:
        assert np.all(np.diff(series) > 0), f"VH median dB per LAI bin not rising: {series}"


@pytest.fixture(scope="module")
def cloudy_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A larger frame than the tiny world: shadows fall 1-3 km from their clouds."""
    spec = WorldSpec(seed=11, size=512, days=16, start=dt.date(2024, 6, 1))
    return generate_world(tmp_path_factory.mktemp("cloudy") / "world", spec)


def _cloud_toward(cloud: np.ndarray, azimuth: float, reach: int) -> np.ndarray:
    """Pixels that have a cloud within ``reach`` pixels toward ``azimuth`` (north = 0°)."""
    step_r, step_c = -np.cos(np.radians(azimuth)), np.sin(np.radians(azimuth))
    found = np.zeros_like(cloud)
    rows, cols = cloud.shape
    for k in range(1, reach + 1):
        dr, dc = round(k * step_r), round(k * step_c)
        src = cloud[max(dr, 0) : rows + min(dr, 0), max(dc, 0) : cols + min(dc, 0)]
        found[max(-dr, 0) : rows + min(-dr, 0), max(-dc, 0) : cols + min(-dc, 0)] |= src
    return found


def test_shadows_lie_on_the_anti_sun_side(cloudy_world: World) -> None:
    """Looking from a shadow toward the sun finds its cloud; looking away does not.

    Checked on the truth grid's cloud flags (10 m, 5 km frame), where fewer shadows come
    from clouds outside the frame than on a product's 20-m SCL.
    """
    truth = cloudy_world.truth()
    sun_azimuth = {
        it["properties"]["datetime"][:10]: it["properties"]["s2:mean_solar_azimuth"]
        for it in _s2_items(cloudy_world)
    }
    checked = 0
    for day in truth.time.values:
        flags = truth["cloud"].sel(time=day).values
        cloud, shadow = flags == 1, flags == 3
        if shadow.sum() < 500:
            continue
        sun = sun_azimuth[str(day)[:10]]
        hits = {
            turn: float(_cloud_toward(cloud, sun + turn, reach=250)[shadow].mean())
            for turn in range(0, 360, 30)
        }
        assert max(hits, key=hits.__getitem__) in (0, 30, 330), (str(day), hits)
        assert hits[0] > 0.75 and hits[180] < hits[0] - 0.3, (str(day), hits)
        checked += 1
    assert checked >= 1


def test_items_validate_against_stac_schemas(tiny_world: World) -> None:
    for path in tiny_world.item_paths + tiny_world.collection_paths:
        validate_stac(json.loads(path.read_text()))


def test_items_look_like_planetary_computer(tiny_world: World) -> None:
    pc = json.loads((FIXTURES / "pc-sentinel-2-l2a-13TDE-2024-08-23-to-25.json").read_text())[
        "features"
    ][0]
    ours = _s2_items(tiny_world)[0]
    for band in ("B03", "B04", "B05", "B8A", "B11", "B12", "SCL"):
        assert set(pc["assets"][band]) <= set(ours["assets"][band]) | {"href"}
    missing = {k for k in pc["properties"] if not k.startswith("s2:") or "percentage" in k}
    assert {"datetime", "proj:epsg", "sat:relative_orbit", "eo:cloud_cover"} <= set(
        ours["properties"]
    )
    assert missing - set(ours["properties"]) <= {
        "s2:degraded_msi_data_percentage",
        "s2:saturated_defective_pixel_percentage",
    }
    s1 = next(it for it in _items(tiny_world) if it["collection"] == "sentinel-1-rtc")
    assert " " in s1["properties"]["start_datetime"]
    assert len(s1["properties"]["proj:transform"]) == 9
    assert s1["assets"]["vv"]["raster:bands"][0]["nodata"] == -32768


def test_stackstac_builds_a_cube(tiny_world: World) -> None:
    items = _s2_items(tiny_world)
    cube = stackstac.stack(
        items,
        assets=["B04", "B8A", "SCL"],
        epsg=3035,
        resolution=10,
        bounds_latlon=tiny_world.bbox,
        dtype="float32",
        fill_value=np.float32(np.nan),
        rescale=False,
    )
    assert cube.sizes["time"] == len(items) and cube.sizes["band"] == 3
    one = cube.sel(band="B04").isel(time=0).compute()
    assert np.isfinite(one.values).mean() > 0.3
    assert np.nanmin(one.values) >= 1000


@pytest.mark.parametrize(
    ("bbox", "interval", "collections"),
    [
        (None, "2024-04-01/2024-04-30", ["sentinel-2-l2a", "sentinel-1-rtc"]),
        ("west", "2024-04-01/2024-04-15", ["sentinel-2-l2a"]),
        ("east", "2024-04-10/2024-04-30", ["sentinel-1-rtc", "sentinel-2-l2a"]),
        ("corner", "2024-04-01/2024-05-01", ["sentinel-1-rtc"]),
    ],
)
def test_api_search_matches_direct_filter(
    tiny_world: World, tiny_api, bbox: str | None, interval: str, collections: list[str]
) -> None:
    west, south, east, north = tiny_world.bbox
    boxes = {
        None: tiny_world.bbox,
        "west": (west, south, 5.999, north),
        "east": (6.001, south, east, north),
        "corner": (west, south, west + 0.002, south + 0.002),
    }
    client = pystac_client.Client.open(tiny_api.url)
    search = client.search(bbox=boxes[bbox], datetime=interval, collections=collections, limit=7)
    found = sorted(it["id"] for it in search.items_as_dicts())
    expected = sorted(
        it["id"]
        for it in filter_items(
            _items(tiny_world), bbox=boxes[bbox], datetime_range=interval, collections=collections
        )
    )
    assert found == expected
    assert found, "the search should find something"


def test_world_spec_validation() -> None:
    with pytest.raises(InputError, match="multiple of 4"):
        WorldSpec(size=130)
    with pytest.raises(InputError, match="days"):
        WorldSpec(days=3)
    assert WorldSpec().start == dt.date(2024, 4, 1)
