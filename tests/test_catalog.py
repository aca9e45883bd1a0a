"""Tests for lamap.catalog on the real Planetary Computer and Earth Search items (no network)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from pystac_client import Client
from pystac_client.stac_api_io import StacApiIO

from lamap import catalog
from lamap.catalog import (
    EARTH_SEARCH,
    MEAN_VIEW_ZENITH_DEG,
    PLANETARY_COMPUTER,
    S2_BANDS,
    CatalogProfile,
    CatalogWarning,
    as_geometry,
    assign_to_tiles,
    boa_offset,
    deduplicate_s2,
    open_catalog,
    parse_datetime,
    parse_items,
    parse_s1_item,
    parse_s2_item,
    search,
)
from lamap.errors import CatalogError, InputError
from tests.conftest import FIXTURES  # tests/data/stac

ALL_FILES = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.json"))
ES_C1 = open_catalog("earth-search", s2_collection="sentinel-2-c1-l2a")


def load(name: str) -> list[dict[str, Any]]:
    return list(json.loads((FIXTURES / name).read_text())["features"])


def item(name: str, item_id: str) -> dict[str, Any]:
    return next(it for it in load(name) if it["id"] == item_id)


def profile_for(name: str, collection: str) -> CatalogProfile:
    if collection == "sentinel-2-c1-l2a":
        return ES_C1
    return EARTH_SEARCH if Path(name).name.startswith("es-") else PLANETARY_COMPUTER


@pytest.fixture(autouse=True)
def _no_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing needs the network: make any unrequested call fail loudly."""
    import planetary_computer

    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("planetary_computer.sign was called without being asked")

    monkeypatch.setattr(planetary_computer, "sign", refuse)


# --------------------------------------------------------------------------- every fixture


def test_fixture_directory_is_complete() -> None:
    assert len(ALL_FILES) == 19


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_item_of_every_fixture_is_parsed_or_refused_clearly(name: str) -> None:
    for raw in load(name):
        collection = raw["collection"]
        profile = profile_for(name, collection)
        if collection in ("sentinel-2-l2a", "sentinel-2-c1-l2a"):
            scene = parse_s2_item(raw, profile)
            assert [a.band for a in scene.assets] == list(S2_BANDS)
            assert scene.epsg == raw["properties"]["proj:epsg"]
            assert scene.datetime == parse_datetime(raw["properties"]["datetime"])
            assert scene.boa_offset in (0, -1000)
            assert scene.footprint.is_valid and scene.footprint.area > 0
        elif collection == "sentinel-1-rtc":
            scene1 = parse_s1_item(raw, PLANETARY_COMPUTER)
            assert len(scene1.transform) == 6 and scene1.nodata == -32768
        elif collection == "sentinel-1-grd":
            with pytest.raises(CatalogError, match="not radiometrically terrain-corrected.*"
                               "planetary-computer"):
                parse_s1_item(raw, PLANETARY_COMPUTER)
        else:
            assert collection == "sentinel-2-l1c"
            assert parse_items([raw], EARTH_SEARCH) == ((), (), (), ())


# --------------------------------------------------------------------------- grids


PC_2024 = "pc-sentinel-2-l2a-13TDE-2024-05-30-to-06-21.json"
PC_2024_ID = "S2A_MSIL2A_20240621T173911_R098_T13TDE_20240622T022427"
PC_2020 = "pc-sentinel-2-l2a-35MNM-2020-06-to-07.json"
ES_13SDV = "search-pages/es-v1-search-sentinel-2-l2a-13SDV-2020-05-01.json"
RTC = "pc-sentinel-1-rtc-2024-04-19.json"


@pytest.mark.parametrize(
    ("band", "key", "transform", "shape"),
    [
        ("B04", "B04", (10.0, 0.0, 399960.0, 0.0, -10.0, 4500000.0), (10980, 10980)),
        ("B8A", "B8A", (20.0, 0.0, 399960.0, 0.0, -20.0, 4500000.0), (5490, 5490)),
        ("SCL", "SCL", (20.0, 0.0, 399960.0, 0.0, -20.0, 4500000.0), (5490, 5490)),
    ],
)
def test_pc_s2_grid_per_asset(band: str, key: str, transform: tuple, shape: tuple) -> None:
    asset = parse_s2_item(item(PC_2024, PC_2024_ID), PLANETARY_COMPUTER).asset(band)
    assert (asset.key, asset.epsg, asset.transform, asset.shape) == (key, 32613, transform, shape)
    assert asset.nodata == 0


@pytest.mark.parametrize("name", [PC_2020, PC_2024, "pc-sentinel-2-l2a-arctic-2024-04-19.json"])
def test_bounds_from_transform_match_pc_proj_bbox(name: str) -> None:
    for raw in load(name):
        scene = parse_s2_item(raw, PLANETARY_COMPUTER)
        for asset in scene.assets:
            assert asset.bounds == pytest.approx(raw["assets"][asset.key]["proj:bbox"])


def test_es_assets_have_no_proj_bbox_and_bounds_are_derived() -> None:
    raw = item(ES_13SDV, "S2B_13SDV_20200501_1_L2A")
    assert "proj:bbox" not in raw["assets"]["red"]
    red = parse_s2_item(raw, EARTH_SEARCH).asset("B04")
    assert red.transform == (10.0, 0.0, 399960.0, 0.0, -10.0, 4000020.0)
    assert red.bounds == (399960.0, 3890220.0, 509760.0, 4000020.0)
    assert red.nodata == 0


def test_pc_s1_nine_element_transform_and_item_level_grid() -> None:
    raw = load(RTC)[0]
    props = raw["properties"]
    assert len(props["proj:transform"]) == 9 and "proj:transform" not in raw["assets"]["vv"]
    scene = parse_s1_item(raw, PLANETARY_COMPUTER)
    assert scene.transform == tuple(props["proj:transform"][:6])
    assert scene.shape == tuple(props["proj:shape"]) == tuple(reversed(props["s1:shape"]))
    assert scene.epsg == 32633 and scene.nodata == -32768.0
    assert scene.asset("vh").bounds == pytest.approx(props["proj:bbox"])
    assert scene.polarizations == ("VV", "VH") and scene.orbit_state == "descending"
    assert (scene.relative_orbit, scene.absolute_orbit) == (51, 53498)


def test_nine_element_transform_must_end_in_0_0_1() -> None:
    raw = json.loads(json.dumps(load(RTC)[0]))
    raw["properties"]["proj:transform"][-1] = 2.0
    with pytest.raises(CatalogError, match="does not end in 0, 0, 1"):
        parse_s1_item(raw, PLANETARY_COMPUTER)


def test_pc_s1_datetimes_with_a_space_are_parsed() -> None:
    raw = load(RTC)[0]
    assert raw["properties"]["start_datetime"] == "2024-04-19 04:59:04.220006+00:00"
    scene = parse_s1_item(raw, PLANETARY_COMPUTER)
    assert scene.start == dt.datetime(2024, 4, 19, 4, 59, 4, 220006, tzinfo=dt.UTC)
    assert scene.end == dt.datetime(2024, 4, 19, 4, 59, 16, 653405, tzinfo=dt.UTC)
    assert scene.datetime == dt.datetime(2024, 4, 19, 4, 59, 10, 436706, tzinfo=dt.UTC)


def test_s1_datetime_falls_back_to_the_middle_of_start_and_end() -> None:
    raw = json.loads(json.dumps(load(RTC)[0]))
    raw["properties"]["datetime"] = None
    scene = parse_s1_item(raw, PLANETARY_COMPUTER)
    assert scene.start is not None and scene.end is not None
    assert scene.datetime == scene.start + (scene.end - scene.start) / 2


# --------------------------------------------------------------------------- asset keys


def test_ambiguous_rededge_common_names_are_not_used() -> None:
    raw = item(PC_2024, PC_2024_ID)
    rededge = [k for k, a in raw["assets"].items()
               if any(b.get("common_name") == "rededge" for b in a.get("eo:bands", ()))]
    assert sorted(rededge) == ["B05", "B06", "B07", "B8A"]
    scene = parse_s2_item(raw, PLANETARY_COMPUTER)
    for band in S2_BANDS:
        assert scene.asset(band).href.endswith(f"_{band}_{int(scene.asset(band).resolution)}m.tif")


@pytest.mark.parametrize(("band", "key", "file"), [
    ("B05", "rededge1", "B05.tif"), ("B07", "rededge3", "B07.tif"), ("B08", "nir", "B08.tif"),
    ("B8A", "nir08", "B8A.tif"), ("B11", "swir16", "B11.tif"), ("SCL", "scl", "SCL.tif"),
])
def test_earth_search_keys_map_to_lamap_bands(band: str, key: str, file: str) -> None:
    asset = parse_s2_item(item(ES_13SDV, "S2B_13SDV_20200501_1_L2A"), EARTH_SEARCH).asset(band)
    assert asset.key == key and asset.href.endswith("/" + file)


def test_custom_url_detects_the_key_convention_per_item() -> None:
    profile = open_catalog("https://example.org/stac/v1/")
    assert profile.name == "stac-api" and profile.s2_asset_keys is None
    pc = parse_s2_item(item(PC_2024, PC_2024_ID), profile)
    es = parse_s2_item(item(ES_13SDV, "S2B_13SDV_20200501_1_L2A"), profile)
    assert pc.asset("B8A").key == "B8A" and es.asset("B8A").key == "nir08"
    raw = json.loads(json.dumps(item(PC_2024, PC_2024_ID)))
    raw["assets"] = {"band4": raw["assets"]["B04"]}
    with pytest.raises(CatalogError, match="follow neither"):
        parse_s2_item(raw, profile)


def test_missing_band_names_the_item_and_the_key() -> None:
    raw = json.loads(json.dumps(item(PC_2024, PC_2024_ID)))
    del raw["assets"]["B11"]
    with pytest.raises(CatalogError, match=f"{PC_2024_ID}.*no asset 'B11'"):
        parse_s2_item(raw, PLANETARY_COMPUTER)


# --------------------------------------------------------------------------- BOA offset


@pytest.mark.parametrize(
    ("name", "item_id", "profile", "offset"),
    [
        (PC_2020, "S2A_MSIL2A_20200601T080611_R078_T35MNM_20201027T072253", PLANETARY_COMPUTER, 0),
        (PC_2024, PC_2024_ID, PLANETARY_COMPUTER, -1000),
        ("search-pages/pc-search-sentinel-2-l2a-limit1-page1.json",
         "S2A_MSIL2A_20230216T150721_R082_T19PHS_20230217T082924", PLANETARY_COMPUTER, -1000),
        ("search-pages/pc-search-sentinel-2-l2a-13SDV-2020-05-01.json",
         "S2B_MSIL2A_20200501T174909_R141_T13SDV_20200920T031539", PLANETARY_COMPUTER, 0),
        # baseline 02.14, boa_offset_applied false, raster offset 0: ESA DNs without offset
        (ES_13SDV, "S2B_13SDV_20200501_0_L2A", EARTH_SEARCH, 0),
        # baseline 05.00, boa_offset_applied true: Element 84 already subtracted the +1000
        # from the COGs (raster:bands still says -0.1, which would double-correct)
        (ES_13SDV, "S2B_13SDV_20200501_1_L2A", EARTH_SEARCH, 0),
        ("es-sentinel-2-l2a-13TDE-2023-10-08.json", "S2A_13TDE_20231008_0_L2A", EARTH_SEARCH, 0),
        # c1: no flag; raster:bands offset -0.1 / scale 0.0001 = -1000 DN
        ("es-sentinel-2-c1-l2a-13TDE-2024-03-31-to-04-22.json",
         "S2A_T13TDE_20240422T174753_L2A", ES_C1, -1000),
    ],
)
def test_boa_offset_per_item(name: str, item_id: str, profile: CatalogProfile, offset: int) -> None:
    assert parse_s2_item(item(name, item_id), profile).boa_offset == offset


def test_es_true_flag_wins_over_the_stale_raster_offset() -> None:
    raw = item(ES_13SDV, "S2B_13SDV_20200501_1_L2A")
    assert raw["assets"]["red"]["raster:bands"][0]["offset"] == -0.1
    assert raw["properties"]["earthsearch:boa_offset_applied"] is True


def test_es_false_flag_with_new_baseline_means_esa_offset() -> None:
    props = {"earthsearch:boa_offset_applied": False, "s2:processing_baseline": "04.00"}
    assert boa_offset(props, {}, rule="item-metadata") == -1000


def test_baselines_compare_numerically() -> None:
    for baseline, expected in [("02.14", 0), ("03.99", 0), ("04.00", -1000), ("10.00", -1000)]:
        assert boa_offset({"s2:processing_baseline": baseline}, {}) == expected


def test_baseline_from_product_uri_and_missing_baseline() -> None:
    props = {"s2:product_uri": "S2A_MSIL2A_20240621T173911_N0510_R098_T13TDE_2.SAFE"}
    assert boa_offset(props, {}) == -1000
    with pytest.raises(CatalogError, match="no s2:processing_baseline"):
        boa_offset({}, {}, item_id="X")


def test_inconsistent_raster_offsets_are_refused() -> None:
    assets = {
        "red": {"roles": ["reflectance"], "raster:bands": [{"scale": 0.0001, "offset": -0.1}]},
        "nir": {"roles": ["reflectance"], "raster:bands": [{"scale": 0.0001, "offset": 0}]},
    }
    with pytest.raises(CatalogError, match="different offsets"):
        boa_offset({}, assets, rule="item-metadata", item_id="X")


# --------------------------------------------------------------------------- angles, orbits


def test_sun_angles_pc_and_es() -> None:
    pc_raw = item(PC_2024, PC_2024_ID)
    pc = parse_s2_item(pc_raw, PLANETARY_COMPUTER)
    assert pc.sun_zenith == pc_raw["properties"]["s2:mean_solar_zenith"]
    assert pc.sun_azimuth == pc_raw["properties"]["s2:mean_solar_azimuth"]
    es_raw = item(ES_13SDV, "S2B_13SDV_20200501_1_L2A")
    es = parse_s2_item(es_raw, EARTH_SEARCH)
    assert es.sun_zenith == pytest.approx(90.0 - es_raw["properties"]["view:sun_elevation"])
    assert es.sun_azimuth == es_raw["properties"]["view:sun_azimuth"]


def test_view_angles_from_item_or_documented_approximation() -> None:
    pc = parse_s2_item(item(PC_2024, PC_2024_ID), PLANETARY_COMPUTER)
    assert (pc.view_source, pc.view_zenith, pc.view_azimuth) == (
        "approximation", MEAN_VIEW_ZENITH_DEG, None)
    assert pc.relative_azimuth == 90.0
    c1_raw = item("es-sentinel-2-c1-l2a-13TDE-2024-03-31-to-04-22.json",
                  "S2A_T13TDE_20240422T174753_L2A")
    c1 = parse_s2_item(c1_raw, ES_C1)
    props = c1_raw["properties"]
    assert c1.view_source == "item"
    assert c1.view_zenith == props["view:incidence_angle"]
    assert c1.relative_azimuth == pytest.approx(props["view:sun_azimuth"] - props["view:azimuth"])


@given(st.floats(0, 360), st.floats(0, 360))
def test_relative_azimuth_is_folded_into_0_180(sun: float, view: float) -> None:
    base = parse_s2_item(item(PC_2024, PC_2024_ID), PLANETARY_COMPUTER)
    scene = dataclasses.replace(base, sun_azimuth=sun, view_azimuth=view)
    assert 0.0 <= scene.relative_azimuth <= 180.0
    assert scene.relative_azimuth == pytest.approx(
        abs(((sun - view) + 180.0) % 360.0 - 180.0), abs=1e-9)


@pytest.mark.parametrize(("name", "profile", "orbits"), [
    (ES_13SDV, EARTH_SEARCH, {141}),
    ("es-sentinel-2-l2a-2023-11-10.json", EARTH_SEARCH, {110}),
    (PC_2024, PLANETARY_COMPUTER, {98, 141}),
])
def test_relative_orbit(name: str, profile: CatalogProfile, orbits: set[int]) -> None:
    assert {parse_s2_item(raw, profile).relative_orbit for raw in load(name)} == orbits


# --------------------------------------------------------------------------- de-duplication


def test_earth_search_reprocessed_duplicates_keep_one() -> None:
    raws = load(ES_13SDV)
    for order in (raws, list(reversed(raws))):
        s2, _, duplicates, _ = parse_items(order, EARTH_SEARCH)
        assert [s.id for s in s2] == ["S2B_13SDV_20200501_1_L2A"]
        assert [(d.kept, d.dropped) for d in duplicates] == [
            ("S2B_13SDV_20200501_1_L2A", "S2B_13SDV_20200501_0_L2A")]
        assert "05.00" in duplicates[0].reason


def test_distinct_tiles_of_one_datatake_are_not_duplicates() -> None:
    scenes = [parse_s2_item(raw, PLANETARY_COMPUTER)
              for raw in load("pc-sentinel-2-l2a-arctic-2024-04-19.json")]
    kept, duplicates = deduplicate_s2(scenes)
    assert len(kept) == 4 and duplicates == ()


def test_dedup_is_warning_free() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_items(load(ES_13SDV), EARTH_SEARCH)


# --------------------------------------------------------------------------- S1 refusals


def test_s1_without_vv_vh_is_skipped_with_one_warning() -> None:
    raw = json.loads(json.dumps(load(RTC)[0]))
    raw["assets"] = {"hh": raw["assets"]["vv"], "hv": raw["assets"]["vh"]}
    raw["properties"]["sar:polarizations"] = ["HH", "HV"]
    with pytest.warns(CatalogWarning, match="without VV and VH"):
        _, s1, _, skipped = parse_items([raw, load(RTC)[1]], PLANETARY_COMPUTER)
    assert [s.id for s in s1] == [load(RTC)[1]["id"]] and skipped == (raw["id"],)


def test_earth_search_has_no_s1_rtc() -> None:
    assert EARTH_SEARCH.s1_collection is None
    with pytest.raises(CatalogError, match="sentinel-1-grd.*planetary-computer"):
        EARTH_SEARCH.require_s1()
    with pytest.raises(CatalogError, match="planetary-computer"):
        search(EARTH_SEARCH, (0, 0, 1, 1), "2024-01-01", "2024-01-02", client=_Unreachable())


# --------------------------------------------------------------------------- profiles


def test_named_profiles_and_known_hosts() -> None:
    assert open_catalog() is PLANETARY_COMPUTER
    assert open_catalog("earth-search") is EARTH_SEARCH
    pc = open_catalog("https://planetarycomputer.microsoft.com/api/stac/v1/")
    assert pc.name == "planetary-computer" and pc.signer is catalog.sign_planetary_computer
    es = open_catalog("https://earth-search.aws.element84.com/v1")
    assert es.name == "earth-search" and es.s2_asset_keys == EARTH_SEARCH.s2_asset_keys
    assert open_catalog("earth-search", s2_collection="sentinel-2-c1-l2a").s2_collection == (
        "sentinel-2-c1-l2a")


def test_local_world_directory(tmp_path: Path) -> None:
    (tmp_path / "world.json").write_text("{}")
    profile = open_catalog(tmp_path)
    assert profile.name == "local" and profile.url is None and profile.signer is None
    assert profile.s2_asset_keys == PLANETARY_COMPUTER.s2_asset_keys
    assert profile.s1_collection == "sentinel-1-rtc"
    with pytest.raises(CatalogError, match="with open_catalog"):
        search(profile, (0, 0, 1, 1), "2024-01-01", "2024-01-02")
    served = profile.with_url("http://127.0.0.1:8765/")
    assert served.url == "http://127.0.0.1:8765" and served.local_world == str(tmp_path.resolve())


def test_unknown_catalog_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="without world.json.*planetary-computer"):
        open_catalog(tmp_path)
    with pytest.raises(CatalogError, match="unknown catalog 'landsat'"):
        open_catalog("landsat")


def test_profile_keys_must_name_every_band() -> None:
    with pytest.raises(InputError, match="s2_asset_keys"):
        CatalogProfile(name="x", url=None, s2_asset_keys=(("B04", "red"),))


# --------------------------------------------------------------------------- signing


def test_parsing_and_stac_items_never_sign() -> None:
    scenes = [parse_s2_item(raw, PLANETARY_COMPUTER) for raw in load(PC_2024)]
    for scene in scenes:
        stac = scene.stac_item()
        assert stac["assets"]["B04"]["href"] == scene.asset("B04").href
        assert "?" not in stac["assets"]["B04"]["href"]


def test_signing_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import planetary_computer

    calls: list[str] = []

    def fake_sign(href: str) -> str:
        calls.append(href)
        return href + "?sig=test"

    monkeypatch.setattr(planetary_computer, "sign", fake_sign)
    scene = parse_s1_item(load(RTC)[0], PLANETARY_COMPUTER)
    assert calls == []
    stac = scene.stac_item(signer=PLANETARY_COMPUTER.sign)
    assert stac["assets"]["vv"]["href"].endswith("?sig=test") and len(calls) == 2
    assert EARTH_SEARCH.sign("https://x/y.tif") == "https://x/y.tif"


def test_stac_item_is_ready_for_stackstac() -> None:
    scene = parse_s1_item(load(RTC)[0], PLANETARY_COMPUTER)
    stac = scene.stac_item()
    json.dumps(stac)
    vv = stac["assets"]["vv"]
    assert len(vv["proj:transform"]) == 6 and vv["proj:epsg"] == 32633
    assert vv["raster:bands"] == [{"nodata": -32768.0}]
    s2 = parse_s2_item(item(ES_13SDV, "S2B_13SDV_20200501_1_L2A"), EARTH_SEARCH).stac_item()
    assert set(s2["assets"]) == set(S2_BANDS)
    assert "offset" not in s2["assets"]["B04"]["raster:bands"][0]
    assert s2["properties"]["lamap:boa_offset"] == 0


def test_stackstac_builds_a_lazy_cube_from_normalised_items() -> None:
    stackstac = pytest.importorskip("stackstac")
    import numpy as np

    scenes = [parse_s2_item(raw, PLANETARY_COMPUTER) for raw in load(PC_2020)]
    cube = stackstac.stack(
        [s.stac_item() for s in scenes], assets=["B04", "B8A", "SCL"], epsg=32735,
        resolution=20, bounds=(500000, 9100000, 510000, 9110000), rescale=False,
        dtype="float32", fill_value=np.float32(np.nan),
    )
    assert cube.shape == (13, 3, 500, 500)
    assert np.atleast_1d(cube.coords["lamap:boa_offset"].values).tolist() == [0]  # all equal


# --------------------------------------------------------------------------- search


class RecordedStacApi(StacApiIO):
    """Serves saved API responses to a real pystac-client; never opens a socket."""

    ROOT = "https://planetarycomputer.microsoft.com/api/stac/v1"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str | None, dict[str, Any]]] = []

    def request(self, href: str, method: str | None = None,
                headers: dict[str, str] | None = None,
                parameters: dict[str, Any] | None = None) -> str:
        params = dict(parameters or {})
        self.requests.append((href, method, params))
        if href.rstrip("/") == self.ROOT:
            return json.dumps(self._landing())
        token = str(params.get("token", ""))
        if list(params.get("collections") or []) == ["sentinel-1-rtc"]:
            page: dict[str, Any] = {"type": "FeatureCollection", "features": load(RTC)}
        elif token.endswith("T19PHS_20230217T082924"):
            page = json.loads((FIXTURES / "search-pages/pc-search-sentinel-2-l2a-limit1-page2.json")
                              .read_text())
        elif token:
            page = {"type": "FeatureCollection", "features": [], "links": []}
        else:
            page = json.loads((FIXTURES / "search-pages/pc-search-sentinel-2-l2a-limit1-page1.json")
                              .read_text())
        return json.dumps(page)

    def _landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog", "id": "recorded", "description": "saved responses",
            "stac_version": "1.0.0",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                           "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [
                {"rel": "self", "href": self.ROOT, "type": "application/json"},
                {"rel": "root", "href": self.ROOT, "type": "application/json"},
                {"rel": "search", "href": f"{self.ROOT}/search", "method": "POST",
                 "type": "application/geo+json"},
            ],
        }


class _Unreachable:
    def search(self, **kwargs: Any) -> Any:
        raise OSError("network is unreachable")


def test_search_pages_through_a_real_pystac_client_once_per_collection() -> None:
    io = RecordedStacApi()
    client = Client.open(RecordedStacApi.ROOT, stac_io=io)
    io.requests.clear()
    result = search(PLANETARY_COMPUTER, (-70, 10, -50, 50), dt.date(2023, 2, 10),
                    "2023-02-20", client=client, page_size=1)
    assert [s.mgrs_tile for s in result.s2] == ["21UYT", "19PHS"]
    assert len(result.s1) == 4
    first = [p for _, _, p in io.requests if "token" not in p]
    assert [list(p["collections"]) for p in first] == [["sentinel-2-l2a"], ["sentinel-1-rtc"]]
    assert list(first[0]["bbox"]) == [-70.0, 10.0, -50.0, 50.0] and first[0]["limit"] == 1
    assert first[0]["datetime"] == "2023-02-10T00:00:00Z/2023-02-20T23:59:59.999999Z"
    assert len(io.requests) == 4  # two S2 pages, the empty third, one S1 page
    assert result.start == dt.datetime(2023, 2, 10, tzinfo=dt.UTC)


class PagedClient:
    """Minimal client over saved search pages; records each search."""

    def __init__(self, pages: dict[str, list[str]]) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []

    def search(self, **kwargs: Any) -> PagedClient:
        self.calls.append(kwargs)
        self._current = self.pages[kwargs["collections"][0]]
        return self

    def items_as_dicts(self) -> Iterator[dict[str, Any]]:
        for name in self._current:
            yield from load(name)


def test_search_mixed_pages_and_duplicates() -> None:
    client = PagedClient({"sentinel-2-l2a": [
        "search-pages/es-v1-search-cql2-cloudcover-page1-2023-11-10.json",
        "search-pages/es-v1-search-cql2-cloudcover-page2-2023-11-10.json", ES_13SDV]})
    result = search(EARTH_SEARCH, (-110, -5, -50, 20), "2020-05-01", "2023-11-11",
                    client=client, sentinel1=False)
    assert len(client.calls) == 1 and client.calls[0]["max_items"] is None
    assert len(result.s2) == 11 and all(s.collection == "sentinel-2-l2a" for s in result.s2)
    assert [d.dropped for d in result.duplicates] == ["S2B_13SDV_20200501_0_L2A"]
    assert [s.datetime for s in result.s2] == sorted(s.datetime for s in result.s2)


def test_search_failures_name_the_url() -> None:
    with pytest.raises(CatalogError, match="planetarycomputer.microsoft.com.*network"):
        search(PLANETARY_COMPUTER, (0, 0, 1, 1), "2024-01-01", "2024-01-02",
               client=_Unreachable())


@pytest.mark.parametrize("bbox", [(1, 0, 0, 1), (0, 0, 1), (0, 95, 1, 96), ("a", 0, 1, 1)])
def test_search_rejects_bad_bboxes(bbox: Any) -> None:
    with pytest.raises(InputError, match="bbox"):
        search(PLANETARY_COMPUTER, bbox, "2024-01-01", "2024-01-02", client=_Unreachable())


def test_search_rejects_reversed_window() -> None:
    with pytest.raises(InputError, match="ends"):
        search(PLANETARY_COMPUTER, (0, 0, 1, 1), "2024-01-02", "2024-01-01",
               client=_Unreachable())


# --------------------------------------------------------------------------- footprints


def test_assign_to_tiles_by_footprint() -> None:
    scenes = [parse_s2_item(raw, PLANETARY_COMPUTER) for raw in load(PC_2024)]
    tiles = {
        "west": (-105.9, 40.1, -105.7, 40.3),  # outside relative orbit 98's swath
        "east": (-105.1, 40.1, -104.95, 40.3),
        "far": (10.0, 10.0, 10.1, 10.1),
        "point": (-105.8, 40.2, -105.8, 40.2),
    }
    assigned = assign_to_tiles(scenes, tiles)
    assert {s.relative_orbit for s in assigned["west"]} == {141}
    assert len(assigned["east"]) == 10 and assigned["far"] == ()
    assert assigned["point"] == assigned["west"]
    assert list(assigned["east"]) == scenes  # input order kept


@given(st.floats(-179, 178), st.floats(-89, 88), st.floats(0.001, 1), st.floats(0.001, 1))
def test_bbox_geometry(west: float, south: float, width: float, height: float) -> None:
    box = (west, south, west + width, south + height)
    geometry = as_geometry(box)
    assert geometry.bounds == pytest.approx(box)
    assert as_geometry((west, south, west, south)).geom_type == "Point"
    assert as_geometry((west, south, west + width, south)).geom_type == "LineString"
    assert as_geometry(geometry) is geometry


def test_footprint_falls_back_to_bbox() -> None:
    raw = json.loads(json.dumps(item(PC_2024, PC_2024_ID)))
    raw["geometry"] = None
    scene = parse_s2_item(raw, PLANETARY_COMPUTER)
    assert scene.footprint.equals(shapely.box(*raw["bbox"]))


# --------------------------------------------------------------------------- datetimes


@given(st.datetimes(min_value=dt.datetime(2015, 1, 1), max_value=dt.datetime(2040, 1, 1)))
def test_parse_datetime_accepts_the_catalogs_styles(moment: dt.datetime) -> None:
    aware = moment.replace(tzinfo=dt.UTC)
    styles = [
        aware.isoformat().replace("+00:00", "Z"),
        aware.isoformat(sep=" "),
        moment.isoformat(),
        aware.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(),
    ]
    for text in styles:
        assert parse_datetime(text) == aware


def test_parse_datetime_rejects_garbage() -> None:
    with pytest.raises(CatalogError, match="not an ISO 8601"):
        parse_datetime("yesterday")
