"""The synthetic continental catalog: real-shaped items that lamap's parser and planner take."""

from __future__ import annotations

import datetime as dt
import re
import warnings

import numpy as np
import pytest
import shapely

from lamap.catalog import S1Scene, S2Scene, SearchResult, open_catalog, parse_items
from lamap.errors import InputError
from lamap.synthetic.continent import (
    EEA39_BBOX,
    FAKE_BASE_URL,
    continental_items,
    continental_result,
    count_items,
    iter_continental_items,
)
from lamap.timesteps import TimeSteps, plan_time_steps, s1_passes, s2_days

AREA = (8.0, 49.0, 11.0, 51.0)  # around Frankfurt
POINT = (9.5, 50.0, 9.5, 50.0)
SMALL = (9.4, 49.9, 9.6, 50.1)
TILE = (9.05, 49.8, 9.33, 50.0)  # about 20 km, a europe-grid tile
START, END = dt.date(2024, 5, 1), dt.date(2024, 5, 20)

S2_ID = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{6}_R(\d{3})_T(\d{2}[C-X][A-Z]{2})_\d{8}T\d{6}$")
S1_ID = re.compile(r"^S1[ABC]_IW_GRDH_1SDV_(\d{8}T\d{6})_(\d{8}T\d{6})_(\d{6})_[0-9A-F]{6}_rtc$")


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return continental_items(START, END, bbox=AREA)


@pytest.fixture(scope="module")
def scenes(items: list[dict]) -> tuple[tuple[S2Scene, ...], tuple[S1Scene, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s2, s1, duplicates, skipped = parse_items(items, open_catalog("planetary-computer"))
    assert duplicates == () and skipped == ()
    return s2, s1


def _gaps(days: list[dt.datetime] | list[dt.date]) -> list[float]:
    ordinals = [d.timestamp() / 86400 if isinstance(d, dt.datetime) else d.toordinal()
                for d in days]
    return np.diff(sorted(ordinals)).tolist()


def test_every_item_parses_into_a_scene(items, scenes) -> None:
    s2, s1 = scenes
    assert len(s2) + len(s1) == len(items)
    assert {s.collection for s in s2} == {"sentinel-2-l2a"}
    for scene in s2:
        assert scene.boa_offset == -1000 and scene.processing_baseline == "05.10"
        assert 20 < scene.sun_zenith < 45 and 120 < scene.sun_azimuth < 200  # May, Germany
        assert scene.epsg in (32632, 32633) and scene.orbit_state == "descending"
        assert scene.asset("B04").shape == (10980, 10980)
        assert scene.asset("B05").shape == scene.asset("SCL").shape == (5490, 5490)
        assert scene.asset("B04").bounds == scene.asset("SCL").bounds
        assert 0 <= scene.cloud_cover <= 100 and scene.footprint.is_valid
    for scene in s1:
        assert scene.polarizations == ("VV", "VH") and scene.instrument_mode == "IW"
        assert scene.nodata == -32768 and scene.transform[0] == 10.0
        assert scene.start < scene.datetime < scene.end
        assert scene.epsg in (32632, 32633) and scene.footprint.is_valid
    assert {s.orbit_state for s in s1} == {"ascending", "descending"}
    assert {s.platform for s in s2} == {"sentinel-2a", "sentinel-2b"}
    assert {s.platform for s in s1} == {"sentinel-1a"}  # S1B failed in 2021, S1C came in 2025


def test_items_are_shaped_like_planetary_computer(items) -> None:
    for item in items:
        props = item["properties"]
        hrefs = [asset["href"] for asset in item["assets"].values()]
        assert all(h.startswith(FAKE_BASE_URL + "/") for h in hrefs)
        if item["collection"] == "sentinel-2-l2a":
            match = S2_ID.match(item["id"])
            assert match, item["id"]
            assert int(match[1]) == props["sat:relative_orbit"]
            assert match[2] == props["s2:mgrs_tile"]
            assert set(item["assets"]) == {f"B{b:02d}" for b in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)
                                           } | {"B8A", "SCL"}
            assert "_N0510_" in props["s2:product_uri"]
        else:
            match = S1_ID.match(item["id"])
            assert match, item["id"]
            assert int(match[3]) == props["sat:absolute_orbit"]
            assert props["start_datetime"][10] == " " and props["end_datetime"].endswith("+00:00")
            assert len(props["proj:transform"]) == 9 and set(item["assets"]) == {"vh", "vv"}
        assert item["bbox"] == pytest.approx(shapely.geometry.shape(item["geometry"]).bounds)


def test_continental_counts_per_day_are_plausible() -> None:
    counts = count_items("2024-05-01", "2024-05-10")
    assert 1400 * 10 <= counts["sentinel-2-l2a"] <= 2100 * 10
    assert 150 * 10 <= counts["sentinel-1-rtc"] <= 280 * 10


def test_count_matches_the_items(items) -> None:
    counts = count_items(START, END, bbox=AREA)
    collections = [item["collection"] for item in items]
    assert counts == {c: collections.count(c) for c in ("sentinel-2-l2a", "sentinel-1-rtc")}


def test_one_continental_day_parses_cleanly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = continental_result("2024-05-02", "2024-05-02")
    assert isinstance(result, SearchResult) and result.catalog == "planetary-computer"
    assert result.bbox == EEA39_BBOX
    assert result.start == dt.datetime(2024, 5, 2, tzinfo=dt.UTC)
    assert result.end.date() == dt.date(2024, 5, 2)
    assert 1400 <= len(result.s2) <= 2100 and 150 <= len(result.s1) <= 280
    assert {s.day for s in result.s2} == {s.day for s in result.s1} == {dt.date(2024, 5, 2)}
    partial = [s for s in result.s2 if s.nodata_percentage]
    assert 0.1 < len(partial) / len(result.s2) < 0.8  # swath edges clip tiles
    assert len({s.epsg for s in result.s2}) >= 9  # UTM zones 25 to 38


def test_central_europe_sees_s2_every_five_days_and_s1_often(scenes) -> None:
    s2, s1 = scenes
    days = s2_days(s2, POINT)
    assert len(days) >= 6 and max(_gaps([d.day for d in days])) <= 5
    passes = s1_passes(s1, POINT)
    assert len(passes) >= 4  # 20 days, S1A alone: a pass every 5 days or less on average
    assert max(_gaps([p.datetime for p in passes])) <= 12  # any date within 6 days of one
    assert {p.orbit_state for p in passes} == {"ascending", "descending"}


@pytest.mark.parametrize(("day", "units"), [("2021-05-01", {"sentinel-1a", "sentinel-1b"}),
                                            ("2025-05-01", {"sentinel-1a", "sentinel-1c"})])
def test_two_sentinel_1_units_revisit_within_six_days(day: str, units: set[str]) -> None:
    start = dt.date.fromisoformat(day)
    result = continental_result(start, start + dt.timedelta(days=19), bbox=SMALL)
    passes = s1_passes(result.s1, POINT)
    assert {p.platform for p in passes} == units
    assert len(passes) >= 6 and max(_gaps([p.datetime for p in passes])) <= 6


def test_planner_finds_time_steps_for_a_tile() -> None:
    result = continental_result(START, END, bbox=TILE)
    for day in (dt.date(2024, 5, 12), dt.date(2024, 5, 15), dt.date(2024, 5, 20)):
        steps = plan_time_steps(result.s2, result.s1, day, TILE)
        assert isinstance(steps, TimeSteps), steps
        assert (day - steps.t2.day).days <= 10


def test_same_seed_same_items_other_seed_other_clouds() -> None:
    first = continental_items("2024-05-03", "2024-05-06", bbox=SMALL, seed=3)
    assert first == continental_items("2024-05-03", "2024-05-06", bbox=SMALL, seed=3)
    other = continental_items("2024-05-03", "2024-05-06", bbox=SMALL, seed=4)
    assert [i["geometry"] for i in first] == [i["geometry"] for i in other]
    assert [i["properties"]["datetime"] for i in first] == [
        i["properties"]["datetime"] for i in other]
    clouds = [(a["properties"].get("eo:cloud_cover"), b["properties"].get("eo:cloud_cover"))
              for a, b in zip(first, other, strict=True) if a["collection"] == "sentinel-2-l2a"]
    assert clouds and any(a != b for a, b in clouds)


def test_a_small_bbox_limits_the_items_to_it(items) -> None:
    small = list(iter_continental_items(START, END, bbox=SMALL))
    assert 0 < len(small) < len(items) / 3
    area = shapely.box(*SMALL)
    assert all(shapely.geometry.shape(i["geometry"]).intersects(area) for i in small)
    by_id = {item["id"]: item for item in items}
    assert all(by_id[item["id"]] == item for item in small)  # the same items, whatever bbox


def test_tracks_and_tiles_match_real_planetary_computer_items() -> None:
    # Planetary Computer 13TDE, 2024-05-30 to 06-21 (tests/data/stac): R141 covers the
    # tile, R098 about 26 % of it; S2A and S2B alternate; the tile's 10 m grid.
    items = continental_items("2024-05-30", "2024-06-21", bbox=(-105.1, 40.17, -105.1, 40.17))
    s2 = [i for i in items if i["collection"] == "sentinel-2-l2a"]
    seen = {(i["properties"]["datetime"][:10], i["id"][:3], i["properties"]["sat:relative_orbit"])
            for i in s2}
    assert seen == {("2024-06-21", "S2A", 98), ("2024-06-19", "S2B", 141),
                    ("2024-06-16", "S2B", 98), ("2024-06-14", "S2A", 141),
                    ("2024-06-11", "S2A", 98), ("2024-06-09", "S2B", 141),
                    ("2024-06-06", "S2B", 98), ("2024-06-04", "S2A", 141),
                    ("2024-06-01", "S2A", 98), ("2024-05-30", "S2B", 141)}
    for item in s2:
        assert item["properties"]["s2:mgrs_tile"] == "13TDE"
        assert item["assets"]["B02"]["proj:bbox"] == [399960.0, 4390200.0, 509760.0, 4500000.0]
        nodata = item["properties"]["s2:nodata_pixel_percentage"]
        full = item["properties"]["sat:relative_orbit"] == 141
        assert nodata == 0.0 if full else 60 < nodata < 85, item["id"]
    # the id the brief quotes: Strasbourg's tile 32ULU is on relative orbits 8 and 108
    strasbourg = continental_items("2024-05-01", "2024-05-10", bbox=(7.3, 48.3, 7.3, 48.3))
    assert {i["id"][27:38] for i in strasbourg if i["id"].startswith("S2")} == {
        "R008_T32ULU", "R108_T32ULU"}


@pytest.mark.parametrize(("start", "end", "bbox"), [
    ("2024-05-02", "2024-05-01", AREA),
    ("2024-05-01", "2024-05-02", (-40.0, -10.0, -30.0, 0.0)),
    ("2024-05-01", "2024-05-02", (10.0, 50.0, 9.0, 51.0)),
    ("2024-05-01", "2024-05-02", (10.0, 50.0)),
    ("May", "2024-05-02", AREA),
])
def test_bad_inputs_are_refused(start: str, end: str, bbox: tuple[float, ...]) -> None:
    with pytest.raises(InputError):
        count_items(start, end, bbox=bbox)
