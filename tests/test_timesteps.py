"""Tests for lamap.timesteps on real Sentinel-2 items and Sentinel-1 passes made from a real one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from lamap.catalog import PLANETARY_COMPUTER, S1Scene, S2Scene, parse_items
from lamap.errors import InputError, NoInputError
from lamap.timesteps import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_S1_TOLERANCE_DAYS,
    NoInput,
    S2Day,
    TimeSteps,
    plan_time_steps,
    s1_passes,
    s2_days,
    search_window,
    select_scenes,
)
from tests.conftest import FIXTURES  # tests/data/stac

D = dt.date


def load(name: str) -> list[dict[str, Any]]:
    return list(json.loads((FIXTURES / name).read_text())["features"])


def parse(name: str) -> tuple[tuple[S2Scene, ...], tuple[S1Scene, ...]]:
    s2, s1, _, _ = parse_items(load(name), PLANETARY_COMPUTER)
    return s2, s1


S2_35MNM = parse("pc-sentinel-2-l2a-35MNM-2020-06-to-07.json")[0]
S2_13TDE = parse("pc-sentinel-2-l2a-13TDE-2024-05-30-to-06-21.json")[0]
RTC = parse("pc-sentinel-1-rtc-2024-04-19.json")[1]
TILE_35MNM = (27.3, -7.9, 27.4, -7.8)
TILE_13TDE = (-106.18, 39.66, -104.89, 40.65)
OUTSIDE_R098 = (-105.8, 40.2, -105.8, 40.2)  # a point R141 sees and R098 does not
INSIDE_BOTH = (-105.0, 40.2, -105.0, 40.2)


def s1_pass(day: dt.date, *, track: tuple[str, int] = ("descending", 20), hour: int = 5,
            area: tuple[float, float, float, float] = (-180, -80, 180, 80),
            slices: int = 1) -> list[S1Scene]:
    """Slices of one pass on ``day`` (a real PC RTC item with its time and place changed)."""
    when = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)
    orbit = 10000 + (day - D(2020, 1, 1)).days * 15 + track[1]
    return [
        dataclasses.replace(
            RTC[0], id=f"S1A_{when:%Y%m%dT%H%M%S}_{orbit}_{k}_rtc",
            datetime=when + dt.timedelta(seconds=25 * k), orbit_state=track[0],
            relative_orbit=track[1], absolute_orbit=orbit, footprint=shapely.box(*area),
        )
        for k in range(slices)
    ]


def s1_every(days: int, start: dt.date, end: dt.date, **kwargs: Any) -> list[S1Scene]:
    out: list[S1Scene] = []
    day = start
    while day <= end:
        out += s1_pass(day, **kwargs)
        day += dt.timedelta(days=days)
    return out


S1_DAILY_2020 = s1_every(1, D(2020, 5, 1), D(2020, 9, 1))
S1_DAILY_2024 = s1_every(1, D(2024, 5, 1), D(2024, 7, 1))


def plan(s2: Any, s1: Any, date: Any, footprint: Any, **kwargs: Any) -> TimeSteps:
    steps = plan_time_steps(s2, s1, date, footprint, **kwargs)
    assert isinstance(steps, TimeSteps), steps
    return steps


# --------------------------------------------------------------------------- 35MNM series


@pytest.mark.parametrize(
    ("date", "t2", "t1", "observed"),
    [
        (D(2020, 6, 15), D(2020, 6, 6), D(2020, 6, 11), None),
        (D(2020, 6, 16), D(2020, 6, 6), D(2020, 6, 11), D(2020, 6, 16)),  # strictly before D
        (D(2020, 6, 17), D(2020, 6, 11), D(2020, 6, 16), None),
        (D(2020, 6, 11), D(2020, 6, 1), D(2020, 6, 6), D(2020, 6, 11)),
        (D(2020, 7, 31), D(2020, 7, 21), D(2020, 7, 26), D(2020, 7, 31)),
        (D(2020, 8, 10), D(2020, 7, 26), D(2020, 7, 31), None),
    ],
)
def test_35mnm_chooses_the_two_latest_days_strictly_before(
    date: dt.date, t2: dt.date, t1: dt.date, observed: dt.date | None
) -> None:
    steps = plan(S2_35MNM, S1_DAILY_2020, date, TILE_35MNM, tile_id="r1c1")
    assert (steps.t2.day, steps.t1.day) == (t2, t1)
    assert (steps.observed.day if steps.observed else None) == observed
    assert len(steps.t1.item_ids) == 1 and steps.t1.coverage == pytest.approx(1.0)
    assert f"_MSIL2A_{t1:%Y%m%d}T" in steps.t1.item_ids[0]
    assert f"_MSIL2A_{t2:%Y%m%d}T" in steps.t2.item_ids[0]
    assert [p.day for p in steps.s1] == [t2, t1, date]  # daily S1: same day


def test_35mnm_date_before_all_data_is_no_input() -> None:
    outcome = plan_time_steps(S2_35MNM, S1_DAILY_2020, D(2020, 6, 1), TILE_35MNM, tile_id="r1c1")
    assert isinstance(outcome, NoInput) and outcome.missing == "sentinel-2"
    assert "strictly before 2020-06-01 within 20 days" in outcome.reason
    assert "over tile r1c1; found 0: none" in outcome.reason
    assert "increase lookback_days (--lookback)" in outcome.reason


def test_35mnm_one_day_is_not_enough() -> None:
    outcome = plan_time_steps(S2_35MNM, S1_DAILY_2020, D(2020, 6, 6), TILE_35MNM)
    assert isinstance(outcome, NoInput)
    assert "found 1: 2020-06-01" in outcome.reason and "bbox (27.3000" in outcome.reason
    with pytest.raises(NoInputError, match="found 1: 2020-06-01"):
        raise outcome.error()


def test_35mnm_lookback_limits_the_history() -> None:
    outcome = plan_time_steps(S2_35MNM, S1_DAILY_2020, D(2020, 8, 25), TILE_35MNM)
    assert isinstance(outcome, NoInput)
    assert "the nearest older day is 2020-07-31" in outcome.reason
    steps = plan(S2_35MNM, S1_DAILY_2020, D(2020, 8, 25), TILE_35MNM, lookback_days=30)
    assert (steps.t2.day, steps.t1.day) == (D(2020, 7, 26), D(2020, 7, 31))


def test_tile_outside_every_footprint_is_no_input() -> None:
    outcome = plan_time_steps(S2_35MNM, S1_DAILY_2020, D(2020, 7, 1), (0.0, 0.0, 0.1, 0.1))
    assert isinstance(outcome, NoInput) and "found 0" in outcome.reason


# --------------------------------------------------------------------------- 13TDE, two orbits


def test_13tde_point_outside_r098_never_uses_r098() -> None:
    for offset in range(4, 27):  # from 2024-06-05: R141 has 05-30 and 06-04 before it
        date = D(2024, 6, 1) + dt.timedelta(days=offset)
        steps = plan(S2_13TDE, S1_DAILY_2024, date, OUTSIDE_R098)
        assert all("_R141_" in i for i in steps.s2_item_ids), (date, steps.s2_item_ids)
        assert (steps.t1.day - steps.t2.day).days == 5


def test_13tde_point_inside_both_orbits_uses_the_latest_days() -> None:
    steps = plan(S2_13TDE, S1_DAILY_2024, D(2024, 6, 12), INSIDE_BOTH)
    assert (steps.t2.day, steps.t1.day) == (D(2024, 6, 9), D(2024, 6, 11))
    assert "_R141_" in steps.t2.item_ids[0] and "_R098_" in steps.t1.item_ids[0]


def test_13tde_partial_days_follow_min_coverage() -> None:
    days = {d.day: d.coverage for d in s2_days(S2_13TDE, TILE_13TDE)}
    assert days[D(2024, 6, 11)] == pytest.approx(0.26, abs=0.03)  # R098: ~26 % of the tile
    assert days[D(2024, 6, 9)] > 0.95
    default = plan(S2_13TDE, S1_DAILY_2024, D(2024, 6, 12), TILE_13TDE)
    assert (default.t2.day, default.t1.day) == (D(2024, 6, 4), D(2024, 6, 9))
    anything = plan(S2_13TDE, S1_DAILY_2024, D(2024, 6, 12), TILE_13TDE, min_coverage=0.0)
    assert (anything.t2.day, anything.t1.day) == (D(2024, 6, 9), D(2024, 6, 11))


def test_13tde_partial_days_are_reported() -> None:
    outcome = plan_time_steps(S2_13TDE, S1_DAILY_2024, D(2024, 6, 2), TILE_13TDE)
    assert isinstance(outcome, NoInput)
    assert "1 more day covers less than 50% of it: 2024-06-01 (26%)" in outcome.reason
    assert "lower min_coverage (--min-coverage)" in outcome.reason


def test_same_day_scenes_are_mosaicked_across_utm_zones() -> None:
    s2, _ = parse("pc-sentinel-2-l2a-arctic-2024-04-19.json")
    (day,) = s2_days(s2, (96.0, 81.3, 97.0, 81.5))
    assert day.day == D(2024, 4, 19) and day.coverage == pytest.approx(1.0)
    assert [i.split("_")[4] for i in day.item_ids] == ["T46XER", "T47XML"]
    assert {s.epsg for s in select_scenes(s2, day.item_ids)} == {32646, 32647}


# --------------------------------------------------------------------------- Sentinel-1


def test_s1_slices_of_one_pass_are_grouped() -> None:
    first, second = RTC[0], RTC[1]  # adjacent slices, overlapping by a sliver
    centre = first.footprint.intersection(second.footprint).centroid
    box = (centre.x - 0.05, centre.y - 0.05, centre.x + 0.05, centre.y + 0.05)
    (one_pass,) = s1_passes(RTC, box)
    assert one_pass.coverage == pytest.approx(1.0, abs=0.01)
    assert set(one_pass.item_ids) == {first.id, second.id}
    assert one_pass.item_ids == tuple(s.id for s in sorted((first, second),
                                                          key=lambda s: s.datetime))
    assert one_pass.orbit_state == "descending" and one_pass.relative_orbit == 51


def test_s1_beyond_tolerance_is_no_input() -> None:
    s1 = s1_pass(D(2020, 6, 1)) + s1_pass(D(2020, 6, 8)) + s1_pass(D(2020, 6, 25))
    outcome = plan_time_steps(S2_35MNM, s1, D(2020, 6, 15), TILE_35MNM, tile_id="r1c1")
    assert isinstance(outcome, NoInput) and outcome.missing == "sentinel-1"
    assert "within ±6 days of 2020-06-15 (t)" in outcome.reason
    assert "the nearest is 2020-06-08 (7 days away)" in outcome.reason
    wider = plan(S2_35MNM, s1, D(2020, 6, 15), TILE_35MNM, s1_tolerance_days=7)
    assert [p.day for p in wider.s1] == [D(2020, 6, 8), D(2020, 6, 8), D(2020, 6, 8)]


def test_s1_nearest_then_dominant_track_then_causal() -> None:
    asc, desc = ("ascending", 21), ("descending", 20)
    s1 = (
        s1_pass(D(2020, 6, 4), track=asc) + s1_pass(D(2020, 6, 8), track=desc)
        + s1_pass(D(2020, 6, 10), track=asc) + s1_pass(D(2020, 6, 13), track=desc)
        + s1_pass(D(2020, 6, 17), track=asc)
    )
    steps = plan(S2_35MNM, s1, D(2020, 6, 15), TILE_35MNM)  # t-2 = 06-06, t-1 = 06-11
    # 06-06: 06-04 asc and 06-08 desc are both 2 days away; asc has more candidates
    # 06-11: 06-10 asc is 1 day away; 06-15: 06-13 desc and 06-17 asc both 2 days away
    assert [(p.day, p.orbit_state) for p in steps.s1] == [
        (D(2020, 6, 4), "ascending"), (D(2020, 6, 10), "ascending"),
        (D(2020, 6, 17), "ascending"),
    ]
    same_track = s1_pass(D(2020, 6, 12), track=desc) + s1_pass(D(2020, 6, 18), track=desc)
    steps = plan(S2_35MNM, same_track, D(2020, 6, 15), TILE_35MNM)
    assert steps.s1[2].day == D(2020, 6, 12)  # 3 days either side: the earlier one


def test_s1_pass_must_cover_the_tile() -> None:
    sliver = (27.39, -7.9, 27.5, -7.8)  # covers 10 % of TILE_35MNM
    s1 = s1_every(1, D(2020, 6, 1), D(2020, 6, 30), area=sliver)
    outcome = plan_time_steps(S2_35MNM, s1, D(2020, 6, 15), TILE_35MNM)
    assert isinstance(outcome, NoInput) and "covering at least 50%" in outcome.reason
    assert isinstance(plan_time_steps(S2_35MNM, s1, D(2020, 6, 15), TILE_35MNM,
                                      min_coverage=0.05), TimeSteps)


# --------------------------------------------------------------------------- value objects


def test_time_steps_json_round_trip() -> None:
    steps = plan(S2_35MNM, S1_DAILY_2020, D(2020, 6, 16), TILE_35MNM)
    text = json.dumps(steps.to_dict())
    again = TimeSteps.from_dict(json.loads(text))
    assert again == steps
    data = json.loads(text)
    assert data["date"] == "2020-06-16" and data["s2"]["t"]["day"] == "2020-06-16"
    assert data["options"] == {"lookback_days": DEFAULT_LOOKBACK_DAYS,
                               "s1_tolerance_days": DEFAULT_S1_TOLERANCE_DAYS,
                               "min_coverage": 0.5}
    assert steps.s1_item_ids == tuple(dict.fromkeys(i for p in steps.s1 for i in p.item_ids))


def test_time_steps_refuse_wrong_order() -> None:
    steps = plan(S2_35MNM, S1_DAILY_2020, D(2020, 6, 16), TILE_35MNM)
    with pytest.raises(InputError, match="t-2 < t-1 < D"):
        dataclasses.replace(steps, t2=steps.t1)
    with pytest.raises(InputError, match="t-2 < t-1 < D"):
        dataclasses.replace(steps, date=steps.t1.day)
    with pytest.raises(InputError, match="observed"):
        dataclasses.replace(steps, observed=S2Day(D(2020, 6, 17), ("x",), 1.0))


def test_no_input_is_json() -> None:
    outcome = plan_time_steps(S2_35MNM, S1_DAILY_2020, D(2020, 6, 1), TILE_35MNM)
    assert isinstance(outcome, NoInput)
    assert json.loads(json.dumps(outcome.to_dict()))["missing"] == "sentinel-2"


def test_search_window_covers_every_input() -> None:
    start, end = search_window(["2020-06-15", D(2020, 7, 1)])
    assert start == D(2020, 6, 15) - dt.timedelta(days=26) and end == D(2020, 7, 7)
    with pytest.raises(InputError, match="at least one date"):
        search_window([])


@pytest.mark.parametrize("options", [
    {"lookback_days": 1}, {"s1_tolerance_days": -1}, {"min_coverage": 1.5},
])
def test_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        plan_time_steps(S2_35MNM, S1_DAILY_2020, D(2020, 6, 15), TILE_35MNM, **options)


def test_bad_date_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not a date"):
        plan_time_steps(S2_35MNM, S1_DAILY_2020, "15/06/2020", TILE_35MNM)


def test_select_scenes_keeps_order_and_names_missing_ids() -> None:
    ids = (S2_35MNM[3].id, S2_35MNM[0].id)
    assert [s.id for s in select_scenes(S2_35MNM, ids)] == list(ids)
    with pytest.raises(InputError, match="nope"):
        select_scenes(S2_35MNM, ["nope"])


# --------------------------------------------------------------------------- properties


TEMPLATE = S2_35MNM[0]
TODAY = D(2024, 6, 15)


def s2_on(offsets: set[int]) -> list[S2Scene]:
    return [
        dataclasses.replace(TEMPLATE, id=f"S2_{o}", datetime=dt.datetime.combine(
            TODAY + dt.timedelta(days=o), dt.time(10), tzinfo=dt.UTC))
        for o in offsets
    ]


@settings(max_examples=60, deadline=None)
@given(
    s2_offsets=st.sets(st.integers(-40, 5), max_size=12),
    s1_offsets=st.sets(st.tuples(st.integers(-50, 10), st.booleans()), max_size=12),
    lookback=st.integers(2, 30),
    tolerance=st.integers(0, 8),
)
def test_planner_invariants(s2_offsets: set[int], s1_offsets: set[tuple[int, bool]],
                            lookback: int, tolerance: int) -> None:
    tracks = {True: ("ascending", 21), False: ("descending", 20)}
    s1 = [s for o, asc in s1_offsets
          for s in s1_pass(TODAY + dt.timedelta(days=o), track=tracks[asc], hour=5 + 12 * asc)]
    outcome = plan_time_steps(s2_on(s2_offsets), s1, TODAY, TILE_35MNM,
                              lookback_days=lookback, s1_tolerance_days=tolerance)
    window = sorted(o for o in s2_offsets if -lookback <= o < 0)
    if isinstance(outcome, NoInput):
        if outcome.missing == "sentinel-2":
            assert len(window) < 2
            return
        assert len(window) >= 2
        steps = [TODAY + dt.timedelta(days=o) for o in (window[-2], window[-1], 0)]
        assert any(all(abs((p.day - s).days) > tolerance for p in s1_passes(s1, TILE_35MNM))
                   for s in steps)
        return
    assert [(outcome.t2.day - TODAY).days, (outcome.t1.day - TODAY).days] == window[-2:]
    assert (outcome.observed is not None) == (0 in s2_offsets)
    passes = s1_passes(s1, TILE_35MNM)
    for chosen, step in zip(outcome.s1, (outcome.t2.day, outcome.t1.day, TODAY), strict=True):
        gap = abs((chosen.day - step).days)
        assert gap <= tolerance
        assert gap == min(abs((p.day - step).days) for p in passes)
