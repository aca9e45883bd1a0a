"""Reading results: COG export, quick-look PNG, store info, and the CLI commands."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from lamap.cli.main import main as cli
from lamap.export import (
    LEGEND_MIN_HEIGHT,
    LEGEND_WIDTH,
    export_cog,
    info,
    mapped_window,
    quicklook,
)
from lamap.export_zarr import export_zarr
from lamap.grid import Grid, Window
from lamap.mapping import map_lai
from lamap.model import file_sha256
from lamap.runtime import ClusterSpec
from lamap.store import LaiStore, StoreError
from lamap.synthetic.world import World
from tests.oracles.validate import validate_stac

DATE = dt.date(2024, 4, 28)
# rioxarray's own use of affine (not lamap's)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use `@` matmul instead of `\\*` mul:PendingDeprecationWarning"
)


@pytest.fixture(scope="module")
def store(tiny_world: World, model: Path, grid: Grid, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The western two tiles of the tiny world, mapped once."""
    west, south, east, north = tiny_world.bbox
    out = tmp_path_factory.mktemp("export") / "lai.zarr"
    report = map_lai(
        (west, south, west + 0.4 * (east - west), north), DATE, out,
        catalog=str(tiny_world.root), model=model, grid=grid,
        cluster=ClusterSpec(workers=2, dashboard_address="127.0.0.1:0"),
    )  # fmt: skip
    assert sorted(report.mapped) == ["r0000c0000", "r0001c0000"]
    return out


def _stored(store: Path, window: Window, name: str = "lai") -> xr.DataArray:
    rows, cols = window.to_slices()
    return xr.open_zarr(store)[name].sel(time=np.datetime64(DATE)).isel(y=rows, x=cols)


def _data_window(store: Path) -> Window:
    """The pixels with an estimate (source 1 or 2), computed here with NumPy."""
    source = xr.open_zarr(store)["source"].sel(time=np.datetime64(DATE)).values
    rows, cols = np.nonzero((source == 1) | (source == 2))
    return Window(int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)


def _check_cog(path: Path, store: Path, window: Window, grid: Grid) -> None:
    valid, errors, warnings = cog_validate(str(path))
    assert valid and not errors, errors
    stored = _stored(store, window)
    with rasterio.open(path) as src:
        assert src.count == 2 and src.dtypes == ("float32", "float32")
        assert src.descriptions == ("lai", "source")
        assert np.isnan(src.nodata)
        assert src.crs == rasterio.crs.CRS.from_user_input(xr.open_zarr(store).rio.crs)
        assert src.crs.to_epsg() == 3035
        assert src.transform == grid.window_transform(window)
        assert src.tags()["DATE"] == DATE.isoformat()
        values, flags = src.read(1), src.read(2)
    np.testing.assert_array_equal(values, stored.values)  # NaN where NaN, same pixels
    source = _stored(store, window, "source").values
    expected = np.where(source == 255, np.nan, source).astype(np.float32)
    np.testing.assert_array_equal(flags, expected)  # the flags; NaN where never mapped
    exported = xr.open_dataarray(path, engine="rasterio").sel(band=1)
    np.testing.assert_array_equal(exported.x.values, stored.x.values)
    np.testing.assert_array_equal(exported.y.values, stored.y.values)


def test_export_covers_the_mapped_data(store: Path, grid: Grid, tmp_path: Path) -> None:
    path = export_cog(store, tmp_path / "lai.tif", DATE)
    window = _data_window(store)
    assert mapped_window(LaiStore.open(store), DATE) == window
    tiles = Window(0, 512, 0, 256)  # tiles r0000c0000 and r0001c0000, partly outside the world
    assert tiles.contains(window) and window.height * window.width < tiles.height * tiles.width
    _check_cog(path, store, window, grid)
    assert np.isfinite(_stored(store, window).values).sum() > 10_000


def test_a_cog_export_has_a_valid_stac_item(store: Path, grid: Grid, tmp_path: Path) -> None:
    path = export_cog(store, tmp_path / "lai.tif", DATE)
    item = json.loads(path.with_suffix(".json").read_text())
    validate_stac(item, strict_datetime=True)
    window = _data_window(store)
    with rasterio.open(path) as src:
        assert item["properties"]["proj:epsg"] == src.crs.to_epsg() == 3035
        assert item["properties"]["proj:shape"] == [src.height, src.width]
        assert item["properties"]["proj:transform"] == list(src.transform)[:6]
        west, south, east, north = rasterio.warp.transform_bounds(src.crs, "EPSG:4326",
                                                                  *src.bounds)  # fmt: skip
    assert item["bbox"] == pytest.approx([west, south, east, north], abs=1e-3)
    assert item["properties"]["datetime"].startswith(DATE.isoformat())
    asset = item["assets"]["data"]
    assert (tmp_path / asset["href"]).resolve() == path.resolve()
    assert [band["name"] for band in asset["raster:bands"]] == ["lai", "source"]
    assert [window.height, window.width] == item["properties"]["proj:shape"]


def test_zarr_v2_export_opens_in_gdal(store: Path, grid: Grid, tmp_path: Path) -> None:
    """GDAL before 3.13 cannot read the sharded store; the export is what it reads."""
    assert rasterio.__gdal_version__ < "3.13"
    with pytest.raises(rasterio.errors.RasterioIOError):
        rasterio.open(f'ZARR:"{store}":/lai').close()  # sharding_indexed: unsupported
    out = export_zarr(store, tmp_path / "lai_v2.zarr")
    window = _data_window(store)
    for name, nodata in (("lai", None), ("source", 255)):
        with rasterio.open(f'ZARR:"{out}":/{name}') as src:
            assert src.crs.to_epsg() == 3035
            assert src.transform == grid.window_transform(window)
            assert np.isnan(src.nodata) if nodata is None else src.nodata == nodata
            assert src.count == 1 and src.shape == window.shape  # one band per date
            np.testing.assert_array_equal(src.read(1), _stored(store, window, name).values)
    again = export_zarr(store, tmp_path / "lai_v2.zarr", dates=[DATE])  # replaces the export
    assert xr.open_zarr(again).sizes == {"time": 1, "y": window.height, "x": window.width}
    with pytest.raises(StoreError, match="does not hold 2023-01-01"):
        export_zarr(store, tmp_path / "other.zarr", dates=["2023-01-01"])
    assert not (tmp_path / "other.zarr").exists()


def test_export_clips_to_a_bbox(store: Path, grid: Grid, tiny_world: World, tmp_path: Path) -> None:
    west, south, east, north = tiny_world.bbox
    bbox = (west + 0.1 * (east - west), south + 0.2 * (north - south),
            west + 0.3 * (east - west), south + 0.6 * (north - south))  # fmt: skip
    path = export_cog(store, tmp_path / "part.tif", DATE, bbox=bbox)
    window = grid.window_for_bbox(bbox)
    assert 0 < window.height < 512 and 0 < window.width < 256
    _check_cog(path, store, window, grid)
    with rasterio.open(path) as src:
        xmin, ymin, xmax, ymax = grid.project_bbox(bbox)
        assert src.bounds.left <= xmin and src.bounds.right >= xmax
        assert src.bounds.bottom <= ymin and src.bounds.top >= ymax


def test_quicklook_png(store: Path, tmp_path: Path) -> None:
    path = quicklook(store, tmp_path / "lai.png", DATE)
    height, width = _data_window(store).shape
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (width + LEGEND_WIDTH, max(height, LEGEND_MIN_HEIGHT))
        pixels = np.asarray(image.convert("RGB"))
    mapped = pixels[:height, :width].reshape(-1, 3)
    assert len(np.unique(mapped, axis=0)) > 50, "a map, not a flat image"
    greenish = (mapped[:, 1] > mapped[:, 0] + 20) & (mapped[:, 1] > mapped[:, 2])
    assert greenish.sum() > 1000, "vegetation in green"
    assert (mapped == 210).all(axis=1).any(), "pixels without estimate in grey"
    legend = pixels[:, width:]
    assert (legend.sum(axis=2) < 100).sum() > 100, "legend text and colour bar frame"
    small = quicklook(store, tmp_path / "small.png", DATE, max_size=64)
    factor = -(-max(height, width) // 64)
    with Image.open(small) as image:
        assert image.size == (-(-width // factor) + LEGEND_WIDTH, LEGEND_MIN_HEIGHT)


def test_info_mentions_grid_dates_tiles_and_model(store: Path, model: Path) -> None:
    text = info(store)
    for needed in (
        str(LaiStore.open(store).url),
        "EPSG:3035",
        "resolution 10 m",
        "512 rows x 512 cols",
        "chunk 128, shard 128, tile 256",
        f"{DATE}: 2 of 4 tiles done",
        "seeded.pt",
        file_sha256(model),
        "s2 days",
    ):
        assert needed in text, f"{needed!r} not in:\n{text}"


def test_export_needs_a_mapped_date(grid: Grid, store: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"2023-01-01 is not in the store .* 2024-04-28"):
        export_cog(store, tmp_path / "x.tif", "2023-01-01")
    empty = LaiStore.create(tmp_path / "empty.zarr", grid)
    empty.add_date(DATE)
    with pytest.raises(StoreError, match="no tile of 2024-04-28 is done"):
        quicklook(empty, tmp_path / "x.png", DATE)
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "x.png").exists()


def test_cli(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.tif"
    with pytest.raises(SystemExit) as exit_:
        cli(["export", str(store), "--out", str(out), "--date", "2023-01-01"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lamap: error: date 2023-01-01"), err
    assert "2024-04-28" in err and not out.exists()
    cli(["export", str(store), "--out", str(out), "--date", "2024-04-28"])
    cli(["export", str(store), "--out", str(tmp_path / "v2.zarr"), "--format", "zarr-v2"])
    cli(["quicklook", str(store), "--out", str(tmp_path / "cli.png"), "--date", "2024-04-28"])
    cli(["info", str(store)])
    printed = capsys.readouterr().out
    assert f"written to {out}" in printed and "cli.png" in printed and "EPSG:3035" in printed
    assert "v2.zarr (Zarr v2)" in printed and (tmp_path / "v2.zarr" / ".zmetadata").exists()
    assert out.exists() and cog_validate(str(out))[0]


def test_open_store_is_open_zarr_with_the_crs(store: Path, grid: Grid) -> None:
    import lamap

    ds = lamap.open_store(store)
    plain = xr.open_zarr(store)
    assert ds.rio.crs == rasterio.crs.CRS.from_user_input(grid.crs)
    assert ds.lai.rio.crs == ds.rio.crs and ds.rio.transform() == grid.transform
    day = ds.lai.sel(time=np.datetime64(DATE)).isel(y=slice(0, 64), x=slice(0, 64))
    np.testing.assert_array_equal(day.values, plain.lai.sel(time=np.datetime64(DATE))[:64, :64])
