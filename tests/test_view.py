"""``lamap view``: tiles from the pyramid, what a whole-extent view reads, bad input, and the
page in a real headless Chromium (Debian's) against a small mapped store."""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import urllib.request
from pathlib import Path

import morecantile
import numpy as np
import pytest
import xarray as xr
from PIL import Image
from pyproj import Transformer

from lamap.cli.main import main
from lamap.export import LAI_RAMP
from lamap.grid import Grid
from lamap.mapping import map_lai
from lamap.runtime import ClusterSpec
from lamap.store import LaiStore, Source
from lamap.store.overviews import pyramid_writer
from lamap.store.pyramid import ensure_pyramid, level_group
from lamap.view import StoreTiles, view_store
from lamap.view.bench import measure_view
from lamap.view.tiles import SOURCE_COLOURS
from tests._browser import Browser

DATES = (dt.date(2024, 4, 24), dt.date(2024, 4, 28))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def mapped(tiny_world, model, grid, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The tiny world mapped for two dates (a new store: map_lai gives it a pyramid)."""
    from distributed import LocalCluster

    out = tmp_path_factory.mktemp("view") / "lai.zarr"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as local:  # fmt: skip
        for day in DATES:
            map_lai(tiny_world.bbox, day, out, catalog=str(tiny_world.root), model=model,
                    grid=grid, cluster=ClusterSpec(scheduler=local.scheduler_address))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory) -> LaiStore:
    """A 2048² store of smooth LAI with empty parts, and its pyramid (4 levels)."""
    grid = Grid(crs="EPSG:3035", resolution=10.0, origin=(4_000_000.0, 2_900_000.0),
                shape=(2048, 2048), chunk=128, shard=256, tile=512)  # fmt: skip
    store = LaiStore.create(tmp_path_factory.mktemp("wide") / "lai.zarr", grid)
    store.add_date(DATES[0])
    ensure_pyramid(store, create=True)
    writer = pyramid_writer(store, DATES[0])
    for tile in grid.iter_tiles():
        rows, cols = np.mgrid[tile.window.to_slices()]
        lai = (4 + 3 * np.sin(rows / 97.0) * np.cos(cols / 131.0)).astype(np.float32)
        source = np.where((rows // 300 + cols // 300) % 5 == 0, 0, 2).astype(np.uint8)
        lai[source == Source.NO_INPUT] = np.nan
        store.write_tile(DATES[0], tile, lai, source)
        writer.update(tile.window, tile.id)
    return store


def _ramp_distance(rgb: np.ndarray) -> np.ndarray:
    """Distance of RGB colours to the ramp: to the nearest of its straight segments."""
    flat = rgb.reshape(-1, 3).astype(float)
    colours = np.array([c for _, c in LAI_RAMP], dtype=float)
    best = np.full(len(flat), np.inf)
    for start, stop in zip(colours, colours[1:], strict=False):
        step = stop - start
        t = np.clip((flat - start) @ step / (step @ step), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(flat - (start + t[:, None] * step), axis=1))
    return best.reshape(rgb.shape[:-1])


def test_tiles_draw_the_ramp_where_there_is_data_and_nothing_elsewhere(wide_store) -> None:  # type: ignore[no-untyped-def]
    tiles = StoreTiles(wide_store)
    ds = xr.open_zarr(wide_store.url).isel(time=0)
    west, south, east, north = wide_store.grid.lonlat_extent()
    tile = TMS.tile((west + east) / 2, (south + north) / 2, 14)
    assert tiles.level_for(14, tile.x, tile.y) == 0
    rgba = np.asarray(Image.open(io.BytesIO(tiles.render("lai", DATES[0], 14, tile.x, tile.y))))
    bounds = TMS.xy_bounds(tile)
    centres = (np.arange(256) + 0.5) * (bounds.right - bounds.left) / 256
    mx, my = np.meshgrid(bounds.left + centres, bounds.top - centres)
    gx, gy = Transformer.from_crs(3857, 3035, always_xy=True).transform(mx, my)
    rows, cols = ((2_900_000 - gy) // 10).astype(int), ((gx - 4_000_000) // 10).astype(int)
    values = ds["lai"].values[rows, cols]
    assert 0.1 < np.isfinite(values).mean() < 0.95  # the tile shows data and gaps
    agree = (rgba[..., 3] > 0) == np.isfinite(values)
    assert agree.mean() > 0.99  # borders may move by a pixel (approximate projection)
    shown = rgba[..., 3] > 0
    assert np.percentile(_ramp_distance(rgba[..., :3][shown]), 99) < 2.0
    low = tiles.level_for(8, *TMS.tile((west + east) / 2, (south + north) / 2, 8)[:2])
    assert low == tiles.spec.levels == 4  # a zoomed-out tile reads the top of the pyramid


def test_a_whole_extent_view_reads_the_pyramid_not_level_0(wide_store) -> None:  # type: ignore[no-untyped-def]
    bench = measure_view(wide_store, requests=30, seconds=30)
    assert bench.requests == 30 and bench.p50_ms > 0
    assert bench.extent_bytes * 8 < bench.level0_bytes, bench.lines()
    assert bench.extent_bytes < 300_000, bench.lines()


def test_the_tiles_are_a_wmts_service(wide_store) -> None:  # type: ignore[no-untyped-def]
    from xml.etree import ElementTree as ET

    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    with view_store(wide_store) as server:
        xml = urllib.request.urlopen(server.url + "wmts/1.0.0/WMTSCapabilities.xml").read()
        root = ET.fromstring(xml)
        layers = root.findall("w:Contents/w:Layer", ns)
        assert [layer.find("ows:Identifier", ns).text for layer in layers] == ["lai", "source"]
        times = [v.text for v in layers[0].findall("w:Dimension/w:Value", ns)]
        assert times == [DATES[0].isoformat()]
        matrices = root.findall("w:Contents/w:TileMatrixSet/w:TileMatrix", ns)
        assert matrices[14].find("w:MatrixWidth", ns).text == str(2**14)
        template = layers[0].find("w:ResourceURL", ns).get("template")
        west, south, east, north = wide_store.grid.lonlat_extent()
        tile = TMS.tile((west + east) / 2, (south + north) / 2, 14)
        url = template.format(Time=times[0], TileMatrix=14, TileCol=tile.x, TileRow=tile.y)
        png = urllib.request.urlopen(url).read()
    assert png == StoreTiles(wide_store).render("lai", DATES[0], 14, tile.x, tile.y)


def test_view_refuses_bad_input_in_one_line(tmp_path: Path, wide_store, capsys) -> None:  # type: ignore[no-untyped-def]
    cases = []
    (tmp_path / "plain").mkdir()
    cases.append((["view", str(tmp_path / "plain")], "no lamap store"))
    bare = LaiStore.create(tmp_path / "bare.zarr", wide_store.grid)
    cases.append((["view", bare.url], f"lamap overviews {bare.url}"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases.append((["view", wide_store.url, "--port", str(taken.getsockname()[1])], "port"))
        for args, expected in cases:
            with pytest.raises(SystemExit) as exit_info:
                main(args)
            err = capsys.readouterr().err.strip()
            assert exit_info.value.code != 0
            assert len(err.splitlines()) == 1 and err.startswith("lamap: error: "), err
            assert expected in err


def test_tiles_written_without_overviews_are_reported(tmp_path: Path) -> None:
    grid = Grid(crs="EPSG:3035", resolution=10.0, origin=(4_000_000.0, 2_900_000.0),
                shape=(256, 256), chunk=64, shard=64, tile=128)  # fmt: skip
    store = LaiStore.create(tmp_path / "lai.zarr", grid)
    store.add_date(DATES[0])
    ensure_pyramid(store, create=True)
    for tile in list(grid.iter_tiles())[:3]:  # written by hand, no overview update
        store.write_tile(DATES[0], tile, np.full(tile.shape, 2.0, np.float32),
                         np.full(tile.shape, 2, np.uint8))  # fmt: skip
    store.add_date(DATES[1])  # a date the pyramid was not grown for
    store.write_tile(DATES[1], grid.get_tile(0, 0), np.full((128, 128), 1.0, np.float32),
                     np.full((128, 128), 1, np.uint8))  # fmt: skip
    assert StoreTiles(store).render("lai", DATES[1], 16, 0, 0)  # empty, not an error
    assert StoreTiles(store).stale() == {DATES[1].isoformat(): 1}  # not in the pyramid
    ensure_pyramid(store, create=False)
    assert StoreTiles(store).stale() == {DATES[1].isoformat(): 1}  # grown, not built
    pyramid_writer(store, DATES[1]).update(grid.get_tile(0, 0).window, grid.get_tile(0, 0).id)
    assert StoreTiles(store).stale() == {}


# --------------------------------------------------------------------------- the page


_SAMPLES = """(() => {
  const map = window.lamapMap, size = map.getSize(), out = [];
  for (let y = 4; y < size.y; y += 8) for (let x = 4; x < size.x; x += 8) {
    const ll = map.containerPointToLatLng([x + 0.5, y + 0.5]);
    out.push([x, y, ll.lng, ll.lat]);
  }
  const boxes = ["panel", "chart"].map((id) => document.getElementById(id).getBoundingClientRect())
    .concat([document.querySelector(".leaflet-control-zoom").getBoundingClientRect()]);
  const legend = document.getElementById("legend-bar").getBoundingClientRect();
  return {zoom: map.getZoom(), points: out, legend: [legend.left, legend.top, legend.right,
          legend.bottom], boxes: boxes.map((b) => [b.left, b.top, b.right, b.bottom])};
})()"""


def _expected_values(store: LaiStore, tiles: StoreTiles, zoom: int, points: list, day: dt.date):  # type: ignore[no-untyped-def]
    """The pyramid value the server draws under each sampled page point."""
    lon, lat = np.array([p[2] for p in points]), np.array([p[3] for p in points])
    centre = TMS.tile(float(lon.mean()), float(lat.mean()), zoom)
    level = tiles.level_for(zoom, centre.x, centre.y)
    group = None if level == 0 else level_group(level)
    data = xr.open_zarr(store.url, group=group)["lai"].sel(time=np.datetime64(day)).values
    gx, gy = Transformer.from_crs(4326, store.grid.crs, always_xy=True).transform(lon, lat)
    x0, y0 = store.grid.origin
    size = store.grid.resolution * 2**level
    row, col = ((y0 - gy) // size).astype(int), ((gx - x0) // size).astype(int)
    inside = (row >= 0) & (row < data.shape[0]) & (col >= 0) & (col < data.shape[1])
    values = np.full(lon.shape, np.nan)
    values[inside] = data[row[inside], col[inside]]
    return values


def test_the_page_in_a_real_browser(mapped: Path) -> None:
    store = LaiStore.open(mapped)
    with view_store(store) as server, Browser() as browser:
        info = json.load(urllib.request.urlopen(server.url + "api/info"))
        assert info["dates"] == [d.isoformat() for d in DATES]
        browser.open(server.url)
        browser.wait_for("document.body.dataset.ready === '1'")
        browser.wait_for("document.body.dataset.tiles === 'loaded'")
        shot = browser.screenshot()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "view.png").write_bytes(shot)
        print(f"screenshot: {ARTIFACTS / 'view.png'}")
        image = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
        layout = browser.evaluate(_SAMPLES)
        _check_map(image, layout, store, server.tiles)
        _check_legend(image, layout["legend"], browser)
        _check_click(browser, image, layout, store, server.tiles)
        browser.evaluate("document.getElementById('source-toggle').click()")
        browser.wait_for("document.body.dataset.tiles === 'loaded'")
        toggled = np.asarray(Image.open(io.BytesIO(browser.screenshot())).convert("RGB"))
        data = (image < 250).any(axis=-1)
        assert (toggled != image).any(axis=-1)[data].mean() > 0.9  # flags over every estimate
        assert all(url.startswith(server.url) or url.startswith("data:")
                   for url in browser.requests), browser.requests  # nothing from outside


def _outside_boxes(layout: dict) -> list:  # type: ignore[type-arg]
    return [p for p in layout["points"] if not any(
        b[0] - 2 <= p[0] <= b[2] + 2 and b[1] - 2 <= p[1] <= b[3] + 2 for b in layout["boxes"])]


def _check_map(image: np.ndarray, layout: dict, store: LaiStore, tiles: StoreTiles) -> None:  # type: ignore[type-arg]
    points = _outside_boxes(layout)
    expected = _expected_values(store, tiles, layout["zoom"], points, DATES[-1])
    colours = np.array([image[p[1], p[0]] for p in points])
    drawn = (colours < 250).any(axis=1)  # the page is white where tiles are transparent
    assert np.isfinite(expected).mean() > 0.2  # the store's data fills part of the view
    assert (drawn == np.isfinite(expected)).mean() > 0.98
    assert np.percentile(_ramp_distance(colours[drawn]), 98) < 3.0  # the ramp's colours


def _check_legend(image: np.ndarray, box: list, browser: Browser) -> None:  # type: ignore[type-arg]
    """The legend's bar shows the ramp from LAI 0 at its left to 8 at its right."""
    left, top, right, bottom = box
    columns = np.arange(int(left) + 2, int(right) - 2)
    shown = image[int((top + bottom) / 2), columns].astype(float)
    values = 8.0 * (columns + 0.5 - left) / (right - left)
    stops = np.array([s for s, _ in LAI_RAMP])
    colours = np.array([c for _, c in LAI_RAMP], dtype=float)
    wanted = np.stack([np.interp(values, stops, colours[:, b]) for b in range(3)], axis=-1)
    assert np.percentile(np.abs(shown - wanted).max(axis=1), 90) < 8
    assert browser.evaluate("document.getElementById('legend-ticks').textContent") == "02468"


def _check_click(browser: Browser, image: np.ndarray, layout: dict, store: LaiStore,  # type: ignore[type-arg]
                 tiles: StoreTiles) -> None:
    points = _outside_boxes(layout)
    expected = _expected_values(store, tiles, layout["zoom"], points, DATES[-1])
    x, y = next(p[:2] for p, v in zip(points, expected, strict=True) if np.isfinite(v)
                and p[0] > 400 and p[1] > 100)  # clear of the chart box once it opens
    browser.click(x + 0.5, y + 0.5)
    series = json.loads(browser.wait_for("document.getElementById('chart').dataset.series"))
    lon, lat = (float(v) for v in browser.evaluate("document.body.dataset.clicked").split(","))
    gx, gy = Transformer.from_crs(4326, store.grid.crs, always_xy=True).transform(lon, lat)
    ds = xr.open_zarr(store.url).sortby("time").sel(x=gx, y=gy, method="nearest")
    assert [p["date"] for p in series] == [str(t)[:10] for t in ds["time"].values]
    got = np.array([np.nan if p["lai"] is None else p["lai"] for p in series])
    np.testing.assert_allclose(got, ds["lai"].values, atol=1e-4)
    assert [p["source"] for p in series] == [int(v) for v in ds["source"].values]
    assert np.isfinite(got[-1])
    chart_x = float(browser.evaluate("document.getElementById('chart').dataset.x"))
    assert chart_x == pytest.approx(float(ds["x"]))
    marked = browser.evaluate("document.querySelectorAll('#chart circle.point').length")
    assert marked == int(np.isfinite(got).sum())  # each estimate drawn, observed or filled
    observed = browser.evaluate("document.querySelectorAll('#chart circle.source-1').length")
    assert observed == sum(p["source"] == Source.OBSERVED for p in series)
    assert set(SOURCE_COLOURS) == {int(Source.OBSERVED), int(Source.FILLED)}
