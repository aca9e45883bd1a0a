"""Tests of the synthetic world's physics: PROSAIL reflectance, water-cloud radar, sun."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import prosail
import pytest
from scipy import stats

from lamap.errors import InputError
from lamap.lai import snap_lai
from lamap.synthetic import optical, prosail_lut
from lamap.synthetic.optical import (
    S2_BANDS,
    CanopyLut,
    CanopyLutSpec,
    band_weights,
    builtup_reflectance,
    canopy_lut,
    canopy_reflectance,
    cloudy_reflectance,
    psoil_from_moisture,
    water_reflectance,
)
from lamap.synthetic.radar import (
    FOREST,
    backscatter,
    rain_series,
    scale_soil_moisture,
    soil_moisture_from_rain,
    soil_moisture_series,
    speckle,
    to_db,
    urban_backscatter,
    water_backscatter,
)
from lamap.synthetic.solar import sun_position

SNAP_INDEX = [1, 2, 3, 4, 5, 7, 8, 9]  # S2_BANDS without B02 and B08
B04, B08 = S2_BANDS.index("B04"), S2_BANDS.index("B08")


@pytest.fixture(scope="module")
def lut() -> CanopyLut:
    """The default PROSAIL table (built once, then cached on disk)."""
    return canopy_lut()


def _random_canopies(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Realistic random leaf, soil and angle parameters."""
    return {
        "lai": rng.uniform(0.0, 6.0, n),
        "cab": rng.uniform(20.0, 70.0, n),
        "cm": rng.uniform(0.003, 0.012, n),
        "rsoil": rng.uniform(0.5, 1.5, n),
        "psoil": rng.uniform(0.0, 1.0, n),
        "sun_zenith": rng.uniform(25.0, 65.0, n),
        "view_zenith": rng.uniform(0.0, 11.0, n),
        "relative_azimuth": rng.uniform(0.0, 360.0, n),
    }


# --- optical ------------------------------------------------------------------------


def test_band_weights_are_normalised_boxcars() -> None:
    wavelengths, weights = band_weights()
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)
    for band, (centre, width) in enumerate(
        zip(optical.S2_CENTRE_NM, optical.S2_BANDWIDTH_NM, strict=True)
    ):
        inside = wavelengths[weights[:, band] > 0]
        assert inside.min() >= centre - width / 2 - 0.5
        assert inside.max() <= centre + width / 2 + 0.5


def test_canopy_reflectance_broadcasts_to_float32_bands(lut: CanopyLut) -> None:
    lai = np.linspace(0.0, 6.0, 12).reshape(3, 4)
    cab = np.full((1, 4), 40.0)
    out = canopy_reflectance(lai, cab, 0.006, 1.0, 0.5, 40.0, 5.0, 100.0, lut=lut)
    assert out.shape == (3, 4, len(S2_BANDS))
    assert out.dtype == np.float32


def test_lut_matches_prosail_run_directly(lut: CanopyLut) -> None:
    rng = np.random.default_rng(7)
    wavelengths, weights = band_weights()
    index = (wavelengths - 400).astype(int)
    spec = lut.spec
    water = spec.water_fraction / (1.0 - spec.water_fraction)
    errors = []
    for _ in range(25):
        p: dict[str, Any] = {k: float(v[0]) for k, v in _random_canopies(rng, 1).items()}
        psi = abs((p["relative_azimuth"] + 180.0) % 360.0 - 180.0)
        spectrum = prosail.run_prosail(
            spec.n, p["cab"], spec.car_per_cab * p["cab"], spec.cbrown, p["cm"] * water, p["cm"],
            p["lai"], spec.leaf_angle, spec.hotspot, p["sun_zenith"], p["view_zenith"], psi,
            prospect_version="D", typelidf=2, rsoil=p["rsoil"], psoil=p["psoil"],
        )  # fmt: skip
        errors.append(canopy_reflectance(**p, lut=lut) - spectrum[index] @ weights)
    errors = np.abs(np.asarray(errors))
    assert errors.mean() < 0.003
    assert errors.max() < 0.015


def test_reflectance_in_unit_range_and_ndvi_rises_with_lai(lut: CanopyLut) -> None:
    rng = np.random.default_rng(3)
    params = _random_canopies(rng, 4000)
    out = canopy_reflectance(**params, lut=lut)
    assert np.all(out >= 0.0) and np.all(out <= 1.0)
    ndvi = (out[:, B08] - out[:, B04]) / (out[:, B08] + out[:, B04])
    assert stats.spearmanr(params["lai"], ndvi).statistic > 0.85
    lai = np.linspace(0.0, 8.0, 41)
    single = canopy_reflectance(lai, 45.0, 0.006, 1.0, 0.6, 40.0, 5.0, 100.0, lut=lut)
    curve = (single[:, B08] - single[:, B04]) / (single[:, B08] + single[:, B04])
    assert np.all(np.diff(curve) > 0)


def test_snap_lai_tracks_true_lai(lut: CanopyLut) -> None:
    rng = np.random.default_rng(42)
    params = _random_canopies(rng, 6000)
    out = canopy_reflectance(**params, lut=lut)
    estimate = snap_lai(
        out[:, SNAP_INDEX],
        params["view_zenith"],
        params["sun_zenith"],
        params["relative_azimuth"],
    )
    truth = params["lai"]
    low = truth < 4.0
    residual = estimate[low] - truth[low]
    r2 = 1.0 - np.sum(residual**2) / np.sum((truth[low] - truth[low].mean()) ** 2)
    assert r2 >= 0.8
    assert np.sqrt(np.mean(residual**2)) < 0.55


def test_constant_and_per_pixel_angles_agree(lut: CanopyLut) -> None:
    lai = np.array([0.3, 1.7, 4.2, 6.5])
    per_pixel = canopy_reflectance(
        lai, 35.0, 0.007, 1.1, 0.4, np.array([30.0, 30.0, 52.0, 52.0]), 4.0,
        np.array([20.0, 20.0, 200.0, 200.0]), lut=lut,
    )  # fmt: skip
    first = canopy_reflectance(lai[:2], 35.0, 0.007, 1.1, 0.4, 30.0, 4.0, 20.0, lut=lut)
    second = canopy_reflectance(lai[2:], 35.0, 0.007, 1.1, 0.4, 52.0, 4.0, 200.0, lut=lut)
    np.testing.assert_allclose(per_pixel, np.concatenate([first, second]), atol=1e-6)


def test_threads_and_chunks_do_not_change_results(lut: CanopyLut) -> None:
    params = _random_canopies(np.random.default_rng(1), 3000)
    one = canopy_reflectance(**params, lut=lut, threads=1, chunk_size=3000)
    many = canopy_reflectance(**params, lut=lut, threads=2, chunk_size=257)
    np.testing.assert_array_equal(one, many)


def test_nan_inputs_give_nan_pixels(lut: CanopyLut) -> None:
    out = canopy_reflectance(
        np.array([1.0, np.nan]), 40.0, 0.006, 1.0, 0.5, 40.0, 5.0, 0.0, lut=lut
    )
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))


@pytest.mark.parametrize(
    ("name", "value"), [("lai", -0.5), ("psoil", 1.5), ("sun_zenith", 95.0), ("rsoil", -1.0)]
)
def test_out_of_range_inputs_are_refused(lut: CanopyLut, name: str, value: float) -> None:
    params = {k: v[0] for k, v in _random_canopies(np.random.default_rng(0), 1).items()}
    params[name] = value
    with pytest.raises(InputError, match=name):
        canopy_reflectance(**params, lut=lut)


def test_spec_refuses_unsorted_grid() -> None:
    with pytest.raises(InputError, match="increasing"):
        CanopyLutSpec(lai=(0.0, 2.0, 1.0))


def test_table_is_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMAP_CACHE_DIR", str(tmp_path))
    spec = CanopyLutSpec(
        lai=(0.0, 2.0), cab=(20.0, 60.0), cm=(0.004, 0.01), sun_zenith=(20.0, 60.0),
        view_zenith=(0.0, 10.0), relative_azimuth=(0.0, 180.0),
    )  # fmt: skip
    built = canopy_lut(spec)
    assert list(tmp_path.glob(f"*{spec.key}.npz"))
    assert not list(tmp_path.glob("*.tmp"))

    def refuse(_: CanopyLutSpec) -> np.ndarray:
        raise AssertionError("the cached table should have been loaded, not rebuilt")

    monkeypatch.setattr(prosail_lut, "_build_terms", refuse)
    reloaded = canopy_lut.__wrapped__(spec)  # bypass the in-memory cache
    np.testing.assert_array_equal(reloaded.terms, built.terms)


def test_water_and_builtup_spectra() -> None:
    water = water_reflectance((50, 40), np.random.default_rng(0))
    built = builtup_reflectance((50, 40), np.random.default_rng(0))
    assert water.shape == built.shape == (50, 40, 10)
    assert water.dtype == built.dtype == np.float32
    assert np.all(water >= 0) and np.median(water[..., 6:]) < 0.02
    assert 0.12 < np.median(built) < 0.3
    assert np.all(np.median(built, axis=(0, 1)) > np.median(water, axis=(0, 1)))
    np.testing.assert_array_equal(water, water_reflectance((50, 40), np.random.default_rng(0)))


def test_cloudy_reflectance_mixes_cloud_cirrus_and_shadow() -> None:
    clear = np.tile(np.linspace(0.03, 0.3, 10, dtype=np.float32), (4, 1))
    np.testing.assert_allclose(cloudy_reflectance(clear, 0.0, 0.0, False), clear)
    cloud = cloudy_reflectance(clear, 1.0, 0.0, False)[0]
    assert np.all((cloud[:8] > 0.5) & (cloud[:8] < 0.8)) and cloud[-1] < cloud[0]
    cirrus = cloudy_reflectance(clear, 0.0, 1.0, False) - clear
    assert np.all(cirrus > 0) and cirrus[0, 0] > cirrus[0, -1]
    shaded = cloudy_reflectance(clear, 0.0, 0.0, np.array([True, False, False, False]))
    ratio = shaded[0] / clear[0]
    assert np.all((ratio >= 0.2) & (ratio <= 0.45)) and ratio[0] < ratio[-1]
    np.testing.assert_allclose(shaded[1:], clear[1:])
    with pytest.raises(InputError, match="opacity"):
        cloudy_reflectance(clear, 1.2, 0.0, False)


def test_psoil_from_moisture_maps_dry_to_one() -> None:
    np.testing.assert_allclose(
        psoil_from_moisture([0.05, 0.12, 0.25, 0.38, 0.5]), [1, 1, 0.5, 0, 0]
    )


# --- radar --------------------------------------------------------------------------


def test_vh_rises_with_lai_without_noise() -> None:
    lai = np.linspace(0.0, 8.0, 81)[:, None, None]
    moisture = np.linspace(0.1, 0.4, 7)[None, :, None]
    incidence = np.linspace(30.0, 45.0, 4)
    vh = backscatter(lai, moisture, incidence, polarisation="VH")
    assert np.all(np.diff(vh, axis=0) > 0)


def test_speckled_vh_rises_with_lai() -> None:
    rng = np.random.default_rng(5)
    lai = np.repeat(np.arange(0.0, 6.5, 0.5), 2000)
    vh = backscatter(lai, rng.uniform(0.15, 0.35, lai.size), 38.0, polarisation="VH", rng=rng)
    means = vh.reshape(-1, 2000).mean(axis=1)
    assert stats.spearmanr(np.unique(lai), means).statistic > 0.98
    assert stats.spearmanr(lai, vh).statistic > 0.3


def test_backscatter_in_documented_db_ranges() -> None:
    lai = np.linspace(0.0, 8.0, 33)[:, None]
    moisture = np.linspace(0.12, 0.38, 14)[None, :]
    vv = to_db(backscatter(lai, moisture, 38.0, polarisation="VV"))
    vh = to_db(backscatter(lai, moisture, 38.0, polarisation="VH"))
    assert -15.0 <= vv.min() and vv.max() <= -7.5
    assert -25.0 <= vh.min() and vh.max() <= -14.0
    forest = to_db(backscatter(5.0, 0.25, 38.0, polarisation="VH", coefficients=FOREST["VH"]))
    assert -14.0 < forest < -10.0


def test_speckle_has_unit_mean_and_variance_one_over_looks() -> None:
    values = speckle((400_000,), np.random.default_rng(11), looks=4.4)
    assert values.mean() == pytest.approx(1.0, abs=0.01)
    assert values.var() == pytest.approx(1.0 / 4.4, rel=0.03)


def test_radar_is_deterministic_for_a_seed() -> None:
    args = (np.full(100, 2.0), 0.2, 38.0)
    first = backscatter(*args, polarisation="VV", rng=np.random.default_rng(9))
    second = backscatter(*args, polarisation="VV", rng=np.random.default_rng(9))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32


def test_water_and_urban_backscatter() -> None:
    rng = np.random.default_rng(2)
    water_vv = to_db(water_backscatter((5000,), 38.0, "VV", rng, wind_db=0.0).mean())
    water_vh = to_db(water_backscatter((5000,), 38.0, "VH", rng, wind_db=0.0).mean())
    urban_vv = to_db(urban_backscatter((5000,), 38.0, "VV", rng).mean())
    assert -25.0 < water_vv < -19.0 and -31.0 < water_vh < -26.0
    assert -6.0 < urban_vv < 0.0


def test_invalid_radar_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="polarisation"):
        backscatter(1.0, 0.2, 38.0, polarisation="HH")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="lai"):
        backscatter(-1.0, 0.2, 38.0, polarisation="VV")
    with pytest.raises(InputError, match="incidence"):
        backscatter(1.0, 0.2, 95.0, polarisation="VV")


def test_soil_moisture_rises_on_rain_days_and_decays_after() -> None:
    days = np.arange("2024-04-01", "2024-09-30", dtype="datetime64[D]")
    rain = rain_series(days, np.random.default_rng(4))
    moisture = soil_moisture_series(days, np.random.default_rng(4))
    change = np.diff(moisture)
    assert 10 < np.count_nonzero(rain) < 60
    assert np.all(change[rain[1:] > 0] > 0)
    assert np.all(change[rain[1:] == 0] < 0)
    assert np.all((moisture > 0.12) & (moisture < 0.38))
    assert moisture.max() - moisture.min() > 0.1


def test_soil_moisture_dries_down_with_its_e_folding_time() -> None:
    rain = np.zeros(20)
    rain[0] = 100.0
    moisture = soil_moisture_from_rain(rain, dry=0.1, wet=0.4, e_folding_days=4.0)
    np.testing.assert_allclose((moisture[5] - 0.1) / (moisture[1] - 0.1), math.exp(-1.0))


def test_soil_moisture_at_irregular_dates_follows_the_daily_series() -> None:
    days = np.arange("2024-05-01", "2024-07-01", dtype="datetime64[D]")
    overpasses = days[::6]
    daily = soil_moisture_series(days, np.random.default_rng(8))
    sparse = soil_moisture_series(overpasses[:-1].tolist() + [days[-1]], np.random.default_rng(8))
    np.testing.assert_allclose(sparse[:-1], daily[::6][:-1])
    with pytest.raises(InputError, match="increasing"):
        soil_moisture_series(days[::-1], np.random.default_rng(8))


def test_scale_soil_moisture_spreads_in_space() -> None:
    series = np.array([0.15, 0.3, 0.45])
    field = scale_soil_moisture(series, np.array([[0.8, 1.0], [1.2, 1.5]]))
    assert field.shape == (3, 2, 2)
    np.testing.assert_allclose(field[1], [[0.24, 0.3], [0.36, 0.45]], rtol=1e-6)
    assert field.max() <= 0.5


# --- sun ----------------------------------------------------------------------------


def _almanac_sun(when: np.datetime64, lon: float, lat: float) -> tuple[float, float]:
    """Low-precision solar position of the Astronomical Almanac (independent check)."""
    n = (when - np.datetime64("2000-01-01T12:00")) / np.timedelta64(1, "D")
    mean_longitude = (280.460 + 0.9856474 * n) % 360.0
    anomaly = math.radians((357.528 + 0.9856003 * n) % 360.0)
    ecliptic = math.radians(
        mean_longitude + 1.915 * math.sin(anomaly) + 0.020 * math.sin(2 * anomaly)
    )
    obliquity = math.radians(23.439 - 0.0000004 * n)
    ascension = math.atan2(math.cos(obliquity) * math.sin(ecliptic), math.cos(ecliptic))
    declination = math.asin(math.sin(obliquity) * math.sin(ecliptic))
    sidereal = (280.46061837 + 360.98564736629 * n + lon) % 360.0
    hour = math.radians(sidereal) - ascension
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(
        declination
    ) * math.cos(hour)
    azimuth = math.atan2(
        -math.sin(hour), math.tan(declination) * math.cos(phi) - math.sin(phi) * math.cos(hour)
    )
    return math.degrees(math.acos(cos_zenith)), math.degrees(azimuth) % 360.0


def test_sun_at_equinox_noon_on_the_equator_is_overhead() -> None:
    zenith, _ = sun_position(np.datetime64("2024-03-20T12:00"), 0.0, 0.0)
    assert zenith < 3.0


def test_sun_on_a_june_morning_in_lorraine() -> None:
    zenith, azimuth = sun_position(datetime(2024, 6, 21, 10, 30, tzinfo=UTC), 6.0, 48.7)
    reference = _almanac_sun(np.datetime64("2024-06-21T10:30"), 6.0, 48.7)
    assert zenith == pytest.approx(28.6, abs=0.2)  # 10:52 solar time, hour angle -17°
    assert azimuth == pytest.approx(146.0, abs=1.0)
    assert (float(zenith), float(azimuth)) == pytest.approx(reference, abs=0.05)


def test_sun_agrees_with_the_astronomical_almanac_algorithm() -> None:
    rng = np.random.default_rng(0)
    start = np.datetime64("2015-01-01T00:00")
    for _ in range(200):
        when = start + np.timedelta64(int(rng.integers(0, 11 * 365 * 1440)), "m")
        lon, lat = rng.uniform(-180, 180), rng.uniform(-70, 70)
        zenith, azimuth = sun_position(when, lon, lat)
        ref_zenith, ref_azimuth = _almanac_sun(when, lon, lat)
        assert float(zenith) == pytest.approx(ref_zenith, abs=0.03)
        if 1.0 < ref_zenith < 89.0:
            gap = (float(azimuth) - ref_azimuth + 180.0) % 360.0 - 180.0
            assert abs(gap) < 0.2


def test_sun_azimuth_is_south_at_solar_noon_and_east_in_the_morning() -> None:
    times = np.array(["2024-09-01T07:00", "2024-09-01T12:00", "2024-09-01T17:00"], "datetime64[m]")
    zenith, azimuth = sun_position(times, 0.0, 48.0)
    assert azimuth[0] < 180.0 < azimuth[2]
    assert azimuth[1] == pytest.approx(180.0, abs=2.0)
    assert zenith[1] < zenith[0] and zenith[1] < zenith[2]


def test_sun_position_handles_time_zones_and_broadcasts() -> None:
    local = datetime(2024, 6, 21, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    utc = datetime(2024, 6, 21, 10, 30, tzinfo=UTC)
    assert sun_position(local, 6.0, 48.7)[0] == pytest.approx(sun_position(utc, 6.0, 48.7)[0])
    zenith, azimuth = sun_position(np.datetime64("2024-06-21T10:30"), np.zeros((2, 3)), 45.0)
    assert zenith.shape == azimuth.shape == (2, 3)
    with pytest.raises(InputError, match="timezone"):
        sun_position(datetime(2024, 6, 21, 10, 30), 6.0, 48.7)
