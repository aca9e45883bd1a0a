"""Tests of the synthetic world's landscape, phenology, clouds and SCL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from lamap.errors import InputError
from lamap.synthetic import clouds, landscape
from lamap.synthetic.landscape import CROP_CALENDAR, Cover

FARM = [Cover.WHEAT, Cover.MAIZE, Cover.SUNFLOWER, Cover.RAPESEED, Cover.SUGARBEET,
        Cover.GRASSLAND, Cover.BARE]
YEAR = [dt.date(2023, 1, 1) + dt.timedelta(days=i) for i in range(365)]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def land() -> landscape.Landscape:
    return landscape.make_landscape((512, 512), _rng(7))


@pytest.fixture(scope="module")
def year_lai(land: landscape.Landscape) -> np.ndarray:
    """LAI of every field on every day of 2023, shape (365, n_fields)."""
    return np.stack([landscape.field_lai(land.fields, day) for day in YEAR])


def _months(index: np.ndarray) -> np.ndarray:
    return np.array([YEAR[i].month for i in np.atleast_1d(index)])


# --------------------------------------------------------------------------- landscape


def test_landscape_is_deterministic() -> None:
    a = landscape.make_landscape((200, 300), _rng(1))
    b = landscape.make_landscape((200, 300), _rng(1))
    c = landscape.make_landscape((200, 300), _rng(2))
    for name in ("cover", "field_id", "texture"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.fields.cab, b.fields.cab)
    np.testing.assert_array_equal(a.fields.peak_lai, b.fields.peak_lai)
    assert not np.array_equal(a.cover, c.cover)


def test_landscape_types_and_consistency(land: landscape.Landscape) -> None:
    assert land.cover.dtype == np.uint8 and land.cover.shape == (512, 512)
    assert land.field_id.dtype == np.int32 and land.texture.dtype == np.float32
    n = len(land.fields)
    counts = np.bincount(land.field_id.ravel(), minlength=n)
    assert land.field_id.min() >= 0 and len(counts) == n
    assert (counts > 0).all(), "every field id must be used"
    np.testing.assert_array_equal(counts, land.fields.n_pixels)
    np.testing.assert_array_equal(land.cover, land.fields.cover[land.field_id])
    assert set(np.unique(land.cover)) <= {int(c) for c in Cover}


@pytest.mark.parametrize("seed", range(6))
def test_every_cover_is_present(seed: int) -> None:
    cover = landscape.make_landscape((256, 256), _rng(seed)).cover
    assert set(np.unique(cover)) == {int(c) for c in Cover}


@pytest.mark.parametrize("resolution", [10.0, 20.0])
def test_fields_have_european_sizes(resolution: float) -> None:
    land = landscape.make_landscape((512, 512), _rng(3), resolution=resolution)
    farm = np.isin(land.fields.cover, FARM)
    hectares = land.fields.n_pixels[farm] * resolution**2 / 1e4
    assert 1.0 <= np.median(hectares) <= 20.0
    assert np.percentile(hectares, 90) < 40.0


def test_cover_shares_are_plausible(land: landscape.Landscape) -> None:
    share = np.bincount(land.cover.ravel(), minlength=11) / land.cover.size
    assert 0.05 <= share[Cover.FOREST] <= 0.35
    assert 0.002 <= share[Cover.WATER] <= 0.1
    assert 0.005 <= share[Cover.BUILT] <= 0.2
    assert share[FARM].sum() >= 0.4


def test_texture_is_smooth_around_one(land: landscape.Landscape) -> None:
    texture = land.texture
    assert abs(texture.mean() - 1.0) < 0.03
    assert 0.06 <= texture.std() <= 0.18
    assert np.abs(np.diff(texture, axis=1)).mean() < 0.02, "texture must vary smoothly"


def test_field_parameters_in_range(land: landscape.Landscape) -> None:
    f = land.fields
    assert 20 <= f.cab.min() and f.cab.max() <= 70
    assert 0.003 <= f.cm.min() and f.cm.max() <= 0.012
    assert 0.5 <= f.rsoil.min() and f.rsoil.max() <= 1.5
    assert 0 <= f.psoil.min() and f.psoil.max() <= 1
    assert 0.7 <= f.soil_moisture_factor.min() and f.soil_moisture_factor.max() <= 1.3
    assert f.cab.std() > 3 and f.rsoil.std() > 0.05, "parameters must vary per field"
    forest, crops = f.cover == Cover.FOREST, f.cover == Cover.MAIZE
    assert f.cm[forest].mean() > f.cm[crops].mean()


def test_bad_landscape_arguments() -> None:
    with pytest.raises(InputError, match="shape"):
        landscape.make_landscape((0, 10), _rng(0))
    with pytest.raises(InputError, match="resolution"):
        landscape.make_landscape((10, 10), _rng(0), resolution=-1)


# --------------------------------------------------------------------------- phenology


def _curves(land: landscape.Landscape, year_lai: np.ndarray, cover: Cover) -> np.ndarray:
    return year_lai[:, land.fields.cover == cover]


@pytest.mark.parametrize(
    ("cover", "months"),
    [(Cover.WHEAT, {5}), (Cover.MAIZE, {7, 8}), (Cover.SUNFLOWER, {6, 7}),
     (Cover.RAPESEED, {4, 5}), (Cover.SUGARBEET, {7, 8}), (Cover.FOREST, {5, 6, 7, 8})],
)
def test_crops_peak_in_their_season(
    land: landscape.Landscape, year_lai: np.ndarray, cover: Cover, months: set[int]
) -> None:
    curves = _curves(land, year_lai, cover)
    assert _months(np.array([curves.mean(axis=1).argmax()]))[0] in months
    in_season = np.isin(_months(curves.argmax(axis=0)), list(months))
    assert in_season.mean() >= 0.9


def test_default_calendar_peaks() -> None:
    """Fields with the calendar's central dates: wheat peaks in May, maize in Jul-Aug."""
    land = landscape.make_landscape((256, 256), _rng(4))
    f = land.fields
    cover = f.cover
    fixed = landscape.FieldTable(**{
        **vars(f),
        "green_up_doy": np.array([CROP_CALENDAR[Cover(c)].green_up for c in cover], float),
        "senescence_doy": np.array([CROP_CALENDAR[Cover(c)].senescence for c in cover], float),
    })
    lai = np.stack([landscape.field_lai(fixed, day) for day in YEAR])
    assert YEAR[lai[:, cover == Cover.WHEAT][:, 0].argmax()].month == 5
    assert YEAR[lai[:, cover == Cover.MAIZE][:, 0].argmax()].month in (7, 8)


@pytest.mark.parametrize("cover", list(Cover))
def test_lai_ranges_per_cover(
    land: landscape.Landscape, year_lai: np.ndarray, cover: Cover
) -> None:
    curves = _curves(land, year_lai, cover)
    low, high = CROP_CALENDAR[cover].peak
    assert curves.min() >= 0
    np.testing.assert_array_less(curves.max(axis=0), high + 1e-4)
    np.testing.assert_array_less(low - 0.05, curves.max(axis=0))


def test_wheat_season(land: landscape.Landscape, year_lai: np.ndarray) -> None:
    wheat = _curves(land, year_lai, Cover.WHEAT)
    day = {d: i for i, d in enumerate(YEAR)}
    assert (wheat[day[dt.date(2023, 1, 15)]] <= 1.0).all()
    assert (wheat[day[dt.date(2023, 5, 15)]] >= 3.5).all()
    assert (wheat[day[dt.date(2023, 8, 15)]] <= 0.3).all(), "harvested by mid-August"
    harvest = land.fields.harvest_doy[land.fields.cover == Cover.WHEAT]
    assert 190 <= np.median(harvest) <= 205, "typically harvested in mid-July"


def test_forest_leaf_on_and_off(land: landscape.Landscape, year_lai: np.ndarray) -> None:
    forest = _curves(land, year_lai, Cover.FOREST)
    day = {d: i for i, d in enumerate(YEAR)}
    assert (forest[day[dt.date(2023, 1, 15)]] <= 1.1).all()
    assert (forest[day[dt.date(2023, 3, 15)]] <= 1.1).all()
    assert (forest[day[dt.date(2023, 7, 15)]] >= 4.0).all()
    assert (forest[day[dt.date(2023, 12, 1)]] <= 1.5).all()


def test_grassland_cuts_drop_lai(land: landscape.Landscape) -> None:
    f = land.fields
    cut = (f.cover == Cover.GRASSLAND) & ~np.isnan(f.cut_doy[:, 0])
    assert cut.sum() >= 5
    first = f.cut_doy[cut, 0]
    assert (first >= 121).all() and (first <= 152).all(), "first cut in May"
    for i in np.flatnonzero(cut)[:20]:
        before = landscape.field_lai(f, _doy_date(f.cut_doy[i, 0] - 1.0))[i]
        after = landscape.field_lai(f, _doy_date(f.cut_doy[i, 0] + 1.0))[i]
        assert after < 0.4 * before


def _doy_date(doy: float) -> dt.datetime:
    return dt.datetime(2023, 1, 1) + dt.timedelta(days=float(doy) - 1.0)


def test_phenology_is_continuous_over_new_year(land: landscape.Landscape) -> None:
    december = landscape.field_lai(land.fields, dt.date(2023, 12, 31))
    january = landscape.field_lai(land.fields, dt.date(2024, 1, 1))
    assert np.abs(december - january).max() < 0.1


def test_date_types_agree(land: landscape.Landscape) -> None:
    expected = landscape.field_lai(land.fields, dt.date(2024, 6, 15))
    for date in (np.datetime64("2024-06-15"), "2024-06-15", dt.datetime(2024, 6, 15),
                 np.datetime64("2024-06-15T00:00:00", "ns")):
        np.testing.assert_array_equal(landscape.field_lai(land.fields, date), expected)
    with pytest.raises(InputError, match="date"):
        landscape.field_lai(land.fields, "15/06/2024")
    with pytest.raises(InputError, match="date"):
        landscape.field_lai(land.fields, 2024)  # type: ignore[arg-type]


def test_lai_map(land: landscape.Landscape) -> None:
    date = dt.date(2024, 7, 1)
    lai = landscape.lai_map(land, date)
    assert lai.dtype == np.float32 and lai.shape == land.shape
    assert lai.min() >= 0
    assert (lai[land.cover == Cover.WATER] == 0).all()
    per_field = landscape.field_lai(land.fields, date)
    np.testing.assert_allclose(lai[100, 200],
                               per_field[land.field_id[100, 200]] * land.texture[100, 200])


# --------------------------------------------------------------------------- clouds


def _scene(seed: int = 0, **kwargs: float | tuple[float, float]) -> clouds.CloudScene:
    args: dict = {"cover_fraction": 0.3, "sun_zenith": 40.0, "sun_azimuth": 150.0}
    args.update(kwargs)
    return clouds.cloud_scene((512, 512), _rng(seed), **args)


def test_cloud_scene_is_deterministic() -> None:
    a, b, c = _scene(1, cirrus_probability=1.0), _scene(1, cirrus_probability=1.0), _scene(2)
    for name in ("opacity", "cirrus", "shadow"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.opacity, c.opacity)


def test_no_cloud_at_zero_cover() -> None:
    sky = _scene(cover_fraction=0.0, cirrus_probability=1.0)
    assert sky.opacity.max() == 0 and sky.cirrus.max() == 0 and not sky.shadow.any()
    assert (sky.scl_overlay() == 0).all()


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7, 1.0])
def test_cloud_fraction_matches_request(fraction: float) -> None:
    sky = _scene(3, cover_fraction=fraction)
    assert sky.opacity.dtype == np.float32
    assert 0 <= sky.opacity.min() and sky.opacity.max() <= 1
    assert abs(sky.cloud.mean() - fraction) < 0.02
    assert (sky.opacity > 0).mean() >= sky.cloud.mean(), "clouds have soft edges"


def _displacement(cloud: np.ndarray, shadow: np.ndarray) -> tuple[int, int]:
    """The (rows, cols) shift D that casts the clouds onto the shadows, found from the data.

    D maximises the overlap (Jaccard index) of the shadow mask with the cloud mask moved
    by D minus the clouds themselves; every D is scored at once by FFT cross-correlation.
    """
    size = (2 * cloud.shape[0], 2 * cloud.shape[1])
    spectrum = np.conj(np.fft.rfft2(cloud.astype(float), size))

    def moved_onto(mask: np.ndarray) -> np.ndarray:  # sum over q of cloud(q) * mask(q + D)
        return np.fft.irfft2(spectrum * np.fft.rfft2(mask.astype(float), size), size)

    hits = moved_onto(shadow)
    cast = moved_onto(np.ones(cloud.shape)) - moved_onto(cloud)
    jaccard = hits / np.maximum(shadow.sum() + cast - hits, 1.0)
    row, col = (int(i) for i in np.unravel_index(int(jaccard.argmax()), size))
    return (row if row < size[0] // 2 else row - size[0],
            col if col < size[1] // 2 else col - size[1])


@pytest.mark.parametrize("azimuth", [150.0, 230.0, 100.0, 300.0])
def test_shadows_lie_on_the_anti_sun_side(azimuth: float) -> None:
    zenith, height, res = 34.0, 1500.0, 10.0
    sky = clouds.cloud_scene((768, 768), _rng(5), cover_fraction=0.1, sun_zenith=zenith,
                             sun_azimuth=azimuth, cloud_height_m=(height, height),
                             resolution=res)
    assert sky.shadow.mean() > 0.02
    rows, cols = _displacement(sky.cloud, sky.shadow)
    # Azimuth of the displacement: clockwise from north, rows grow southward.
    found = np.degrees(np.arctan2(cols, -rows)) % 360
    anti_sun = (azimuth + 180) % 360
    assert abs((found - anti_sun + 180) % 360 - 180) < 1
    assert abs(np.hypot(rows, cols) - height * np.tan(np.radians(zenith)) / res) < 1
    if azimuth == 150.0:  # sun in the south-south-east: shadows to the north-north-west
        assert rows < 0 and cols < 0 and abs(rows) > abs(cols)


def test_every_shadow_has_its_cloud_up_sun() -> None:
    sky = _scene(6, cover_fraction=0.2, cloud_height_m=(2000.0, 2000.0))
    length = 2000.0 * np.tan(np.radians(40.0)) / 10.0
    rows = round(-np.cos(np.radians(330.0)) * length)  # toward azimuth 330°
    cols = round(np.sin(np.radians(330.0)) * length)
    r, c = np.nonzero(sky.shadow)

    def cloud_share(dr: int, dc: int) -> float:
        source_r, source_c = r - dr, c - dc
        inside = (source_r >= 0) & (source_r < 512) & (source_c >= 0) & (source_c < 512)
        assert inside.sum() > 500
        return float(sky.cloud[source_r[inside], source_c[inside]].mean())

    assert cloud_share(rows, cols) == 1.0
    assert cloud_share(-rows, -cols) < 0.6, "the sun side is no better than chance"
    assert cloud_share(cols, -rows) < 0.6, "nor is the side across the sun"


def test_clouds_outside_the_frame_cast_shadows_into_it() -> None:
    # Shadows 2000 m * tan(60°) / 10 m = 346 px away: longer than the 64 px frame.
    found = [clouds.cloud_scene((64, 64), _rng(seed), cover_fraction=0.3, sun_zenith=60.0,
                                sun_azimuth=150.0, cloud_height_m=(2000.0, 2000.0)).shadow.any()
             for seed in range(8)]
    assert any(found)


@pytest.mark.parametrize("seed", range(3))
def test_shadows_never_overlap_clouds(seed: int) -> None:
    sky = _scene(seed, cover_fraction=0.4, sun_zenith=60.0)
    assert not (sky.shadow & sky.cloud).any()
    assert sky.shadow.any()
    no_shadow = _scene(seed, cover_fraction=0.4, sun_zenith=0.0)
    assert not no_shadow.shadow.any(), "a sun at the zenith hides shadows under the clouds"


def test_cirrus_in_some_scenes() -> None:
    skies = [_scene(seed, cirrus_probability=0.5) for seed in range(12)]
    has = [sky.cirrus.max() > clouds.CIRRUS_THRESHOLD for sky in skies]
    assert any(has) and not all(has)
    for sky in skies:
        assert sky.cirrus.dtype == np.float32
        assert 0 <= sky.cirrus.min() and sky.cirrus.max() <= 1
    assert _scene(1, cirrus_probability=0.0).cirrus.max() == 0


def test_scl_classes() -> None:
    land = landscape.make_landscape((512, 512), _rng(8))
    lai = landscape.lai_map(land, dt.date(2024, 6, 1))
    surface = clouds.surface_scl(land.cover, lai, _rng(9))
    assert set(np.unique(surface)) <= {2, 4, 5, 6, 7}
    clean = (surface != 2) & (surface != 7)
    assert (surface[clean & (land.cover == Cover.WATER)] == 6).all()
    assert (surface[clean & (land.cover == Cover.FOREST)] == 4).all()
    assert (surface[clean & (land.cover == Cover.BARE)] == 5).all()
    assert 0.0005 < (surface == 2).mean() < 0.005
    assert 0.001 < (surface == 7).mean() < 0.006
    sky = _scene(4, cover_fraction=0.3, cirrus_probability=1.0)
    overlay = sky.scl_overlay()
    assert overlay.dtype == np.uint8
    assert set(np.unique(overlay)) == {0, 3, 8, 9, 10}
    assert (overlay[sky.opacity >= clouds.CLOUD_HIGH_THRESHOLD] == 9).all()
    assert (overlay[sky.shadow] == 3).all()
    final = clouds.combine_scl(surface, overlay)
    assert set(np.unique(final)) <= {2, 3, 4, 5, 6, 7, 8, 9, 10}
    np.testing.assert_array_equal(final[overlay == 0], surface[overlay == 0])
    np.testing.assert_array_equal(final[overlay != 0], overlay[overlay != 0])


def test_bad_cloud_arguments() -> None:
    with pytest.raises(InputError, match="cover_fraction"):
        _scene(cover_fraction=1.5)
    with pytest.raises(InputError, match="sun_zenith"):
        _scene(sun_zenith=85.0)
    with pytest.raises(InputError, match="shapes differ"):
        clouds.combine_scl(np.zeros((2, 2)), np.zeros((3, 3)))


def test_cloud_cover_sequence() -> None:
    a = clouds.cloud_cover_sequence(3000, _rng(0))
    np.testing.assert_array_equal(a, clouds.cloud_cover_sequence(3000, _rng(0)))
    assert a.shape == (3000,) and 0 <= a.min() and a.max() <= 1
    assert abs((a <= 0.03).mean() - 0.35) < 0.05
    assert abs((a >= 0.9).mean() - 0.15) < 0.04
    partly = (a > 0.03) & (a < 0.9)
    assert 0.4 < partly.mean() < 0.6
    assert (a == 0).any() and (a == 1).any()
    assert len(clouds.cloud_cover_sequence(0, _rng(0))) == 0
    with pytest.raises(InputError):
        clouds.cloud_cover_sequence(5, _rng(0), clear_fraction=0.9, overcast_fraction=0.2)
