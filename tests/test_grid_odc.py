"""The grid as odc-geo sees it: GeoBox, GeoboxTiles and CRS agree with lamap's own numbers."""

from __future__ import annotations

import pytest
from hypothesis import given

from lamap.grid import EUROPE, Grid, get_grid
from tests.test_grid import PROPERTY, small_grids

# odc-geo 0.5 composes affines with `*`, which affine deprecates; lamap itself uses `@`.
ODC_AFFINE_MUL = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")


def test_europe_geobox_is_the_grid() -> None:
    geobox = EUROPE.geobox
    assert geobox.shape == EUROPE.shape
    assert geobox.crs is not None and geobox.crs.epsg == 3035
    assert geobox.affine == EUROPE.transform
    assert tuple(geobox.boundingbox) == EUROPE.bounds
    assert EUROPE.geobox is EUROPE.geobox  # built once per grid
    assert EUROPE.pyproj_crs.to_epsg() == 3035


@ODC_AFFINE_MUL
def test_tile_geobox_and_halo() -> None:
    tile = EUROPE.tiles_for_bbox("11.0,48.0,11.1,48.05")[0]
    assert tile.geobox == EUROPE.tiling[tile.row, tile.col]
    assert tuple(tile.geobox.boundingbox) == tile.bounds
    halo = tile.with_halo(42)
    assert EUROPE.window_geobox(halo) == tile.geobox.pad(42)
    assert tuple(EUROPE.window_geobox(halo).boundingbox) == EUROPE.window_bounds(halo)


@PROPERTY
@given(small_grids())
def test_tiling_matches_the_tiles(grid: Grid) -> None:
    assert tuple(grid.tiling.shape) == grid.tiles_shape
    rows, cols = grid.tiling.chunks
    assert (sum(rows), sum(cols)) == grid.shape
    for tile in grid.iter_tiles():
        assert tile.window.shape == tuple(grid.tiling.chunk_shape((tile.row, tile.col)))
        assert tile.geobox.shape == tile.shape
        assert tile.geobox.affine == tile.transform
        assert tile.geobox.boundingbox.bbox == pytest.approx(tile.bounds)


def test_crs_round_trips_through_odc_geo() -> None:
    utm = get_grid("utm32n")
    assert utm.geobox.crs is not None and utm.geobox.crs.epsg == 32632
    proj = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    custom = Grid(proj, 10.0, (4_000_000.0, 3_000_000.0), (10, 10), 5, 5, 10)
    assert custom.geobox.crs is not None and custom.geobox.crs.epsg is None
    assert custom.geobox.crs == custom.pyproj_crs
