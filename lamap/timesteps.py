"""The time-step planner: which acquisitions feed the model for one tile and one date.

For a requested date D the fused model takes (DESIGN.md, "Time"):

* **t-2, t-1**: the two most recent Sentinel-2 acquisition *days* strictly before D within
  ``lookback_days``. A day is every scene of that UTC date over the footprint, mosaicked
  (a tile straddling two MGRS tiles of one datatake gets both). Cloudy days count: the model
  reads clouds from the SCL masks, it does not need clear pasts.
* **t** (observed): the Sentinel-2 scenes of D itself, if any, for the observed LAI.
* **S1 at t-2, t-1, D**: the Sentinel-1 pass (all slices of one orbit over the footprint)
  nearest to each step, within ``s1_tolerance_days`` (``s1_steps``; the fused model's).
* **The S1 series** (``s1_window_days``, ``s1_passes``; models such as ``li2025``): the
  most recent ``s1_passes`` passes in ``[D - s1_window_days, D]``, both orbit directions,
  oldest first. Fewer passes are fine (the features mask the missing ones); none is "no
  input".

Defaults, and why:

* ``lookback_days = 20``. The paper's consecutive steps are at most about a week apart.
  With both S2 units the revisit is 5 days (2–3 where orbits overlap), so t-2 is normally
  within 10 days of D; 20 days still finds two days when one unit is missing (10-day revisit)
  or an acquisition was not delivered. Beyond that the optical history is older than
  anything the model was trained on, so the planner reports "no input" rather than feeding
  month-old data.
* ``s1_tolerance_days = 6``. One Sentinel-1 unit repeats a relative orbit every 12 days, so
  every date is within 6 days of a pass of each track; with ascending and descending tracks
  (and overlapping orbits) the nearest pass is usually 1–3 days away. 6 days keeps radar
  and optical steps within the paper's "about a week".
* ``min_coverage = 0.5``. A day (or S1 pass) is used only if the union of its footprints
  covers at least half of the tile. Partial days at swath edges (13TDE: relative orbit 98
  covers ~26 % of the tile) would otherwise become t-1 for pixels they do not see, which the
  model treats like a cloudy past (its weakest case: RMSE 0.238 vs 0.058 on LAI/5); skipping
  them uses the next full day instead, a few days older. Use 0 to take any overlap.

Tie-breaking for S1 (deterministic): nearest in whole days; then the track (orbit direction
and relative orbit) with the most candidate passes around the three steps, so that the three
radar images share one viewing geometry where possible (backscatter depends on incidence
angle and look direction); then a pass on or before the step (causal) over one after it;
then the nearer in time to the step's noon; then item ids. One pass may serve two steps when
nothing else is within the tolerance.

Coverage is measured in lon/lat degrees, which is exact enough for the ratio over a tile.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import shapely
from shapely.geometry.base import BaseGeometry

from lamap._inputs import as_date
from lamap.catalog import FootprintLike, S1Scene, S2Scene, as_geometry
from lamap.errors import InputError, NoInputError
from lamap.plan_messages import describe_area, s1_reason, s2_reason, series_reason

__all__ = [
    "DEFAULT_LOOKBACK_DAYS",
    "DEFAULT_MIN_COVERAGE",
    "DEFAULT_S1_TOLERANCE_DAYS",
    "NoInput",
    "S1Pass",
    "S2Day",
    "TimeSteps",
    "plan_time_steps",
    "s1_passes",
    "s2_days",
    "choose_series",
    "search_window",
    "select_scenes",
]

#: Days before D in which t-2 and t-1 are looked for (see module doc).
DEFAULT_LOOKBACK_DAYS = 20
#: Largest distance in days between a step and its Sentinel-1 pass (see module doc).
DEFAULT_S1_TOLERANCE_DAYS = 6
#: Smallest fraction of the tile a day or pass must cover (see module doc).
DEFAULT_MIN_COVERAGE = 0.5

STEPS = ("t-2", "t-1", "t")

SceneT = TypeVar("SceneT", S2Scene, S1Scene)


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class S2Day:
    """One Sentinel-2 acquisition day over a footprint (its scenes are mosaicked).

    Attributes
    ----------
    day : datetime.date
        UTC date.
    item_ids : tuple of str
        Scenes of that day over the footprint, ordered by sensing time then id.
    coverage : float
        Fraction of the footprint covered by the union of their footprints.
    """

    day: dt.date
    item_ids: tuple[str, ...]
    coverage: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"day": self.day.isoformat(), "items": list(self.item_ids),
                "coverage": round(self.coverage, 4)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> S2Day:
        """Inverse of :meth:`to_dict`."""
        return cls(dt.date.fromisoformat(data["day"]), tuple(data["items"]),
                   float(data["coverage"]))


@dataclass(frozen=True)
class S1Pass:
    """One Sentinel-1 pass over a footprint (its slices are mosaicked).

    Attributes
    ----------
    datetime : datetime.datetime
        Time of its earliest slice (UTC).
    platform : str
        ``sentinel-1a`` …
    orbit_state : str or None
        ``ascending`` or ``descending``.
    relative_orbit : int or None
        Track number.
    item_ids : tuple of str
        Slices over the footprint, ordered by time then id.
    coverage : float
        Fraction of the footprint covered by the union of their footprints.
    """

    datetime: dt.datetime
    platform: str
    orbit_state: str | None
    relative_orbit: int | None
    item_ids: tuple[str, ...]
    coverage: float

    @property
    def day(self) -> dt.date:
        """UTC date."""
        return self.datetime.date()

    @property
    def track(self) -> tuple[str, int]:
        """Viewing geometry key: orbit direction and relative orbit."""
        return self.orbit_state or "", -1 if self.relative_orbit is None else self.relative_orbit

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "datetime": self.datetime.isoformat().replace("+00:00", "Z"),
            "platform": self.platform,
            "orbit_state": self.orbit_state,
            "relative_orbit": self.relative_orbit,
            "items": list(self.item_ids),
            "coverage": round(self.coverage, 4),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> S1Pass:
        """Inverse of :meth:`to_dict`."""
        when = dt.datetime.fromisoformat(data["datetime"]).astimezone(dt.UTC)
        return cls(when, data["platform"], data["orbit_state"], data["relative_orbit"],
                   tuple(data["items"]), float(data["coverage"]))


@dataclass(frozen=True)
class TimeSteps:
    """The inputs chosen for one tile and one date; recorded in the store's metadata.

    Attributes
    ----------
    date : datetime.date
        The requested date D (the output time coordinate).
    t2, t1 : S2Day
        The two most recent Sentinel-2 days strictly before D, ``t2.day < t1.day < date``.
    observed : S2Day or None
        Sentinel-2 scenes of D itself (observed LAI), if any.
    s1 : tuple of S1Pass
        The Sentinel-1 pass for t-2, t-1 and D; empty when the steps are not asked for.
    lookback_days, s1_tolerance_days : int
        Options used.
    min_coverage : float
        Option used.
    s1_window_days, s1_passes : int
        Options of the Sentinel-1 series (0: no series).
    s1_series : tuple of S1Pass
        The series' passes, oldest first, all in ``[date - s1_window_days, date]``.
    """

    date: dt.date
    t2: S2Day
    t1: S2Day
    observed: S2Day | None
    s1: tuple[S1Pass, ...]
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS
    min_coverage: float = DEFAULT_MIN_COVERAGE
    s1_window_days: int = 0
    s1_passes: int = 0
    s1_series: tuple[S1Pass, ...] = ()

    def __post_init__(self) -> None:
        """Check the order of the days and the Sentinel-1 choice."""
        if not self.t2.day < self.t1.day < self.date:
            raise InputError(
                f"time steps must satisfy t-2 < t-1 < D, got {self.t2.day}, {self.t1.day}, "
                f"{self.date}"
            )
        if self.observed is not None and self.observed.day != self.date:
            raise InputError(f"observed day {self.observed.day} is not the date {self.date}")
        if len(self.s1) not in (0, len(STEPS)) or len(self.s1_series) > self.s1_passes:
            raise InputError(
                f"time steps need 0 or 3 S1 steps and at most s1_passes={self.s1_passes} "
                f"series passes, got {len(self.s1)} and {len(self.s1_series)}"
            )
        first = self.date - dt.timedelta(days=self.s1_window_days)
        if any(not first <= p.day <= self.date for p in self.s1_series):
            raise InputError(f"S1 series passes must lie in [{first}, {self.date}]")

    @property
    def s2_item_ids(self) -> tuple[str, ...]:
        """Every Sentinel-2 item used (t-2, t-1, then D)."""
        observed = self.observed.item_ids if self.observed else ()
        return self.t2.item_ids + self.t1.item_ids + observed

    @property
    def s1_item_ids(self) -> tuple[str, ...]:
        """Every Sentinel-1 item used, without repeats, in step order then series order."""
        passes = (*self.s1, *self.s1_series)
        return tuple(dict.fromkeys(i for p in passes for i in p.item_ids))

    def series_days(self) -> tuple[int, ...]:
        """Days from D to each series pass (``pass day - D``, at most 0), oldest first."""
        return tuple((p.day - self.date).days for p in self.s1_series)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``json.dumps`` works on it); the series only where there is one."""
        data: dict[str, Any] = {
            "date": self.date.isoformat(),
            "s2": {
                "t-2": self.t2.to_dict(),
                "t-1": self.t1.to_dict(),
                "t": None if self.observed is None else self.observed.to_dict(),
            },
            "s1": {step: p.to_dict() for step, p in zip(STEPS, self.s1, strict=False)},
            "options": {
                "lookback_days": self.lookback_days,
                "s1_tolerance_days": self.s1_tolerance_days,
                "min_coverage": self.min_coverage,
            },
        }
        if self.s1_passes:
            data["s1_series"] = [p.to_dict() for p in self.s1_series]
            data["options"] |= {"s1_window_days": self.s1_window_days,
                                "s1_passes": self.s1_passes}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimeSteps:
        """Inverse of :meth:`to_dict`."""
        s2, s1, options = data["s2"], data["s1"], data["options"]
        return cls(
            date=dt.date.fromisoformat(data["date"]),
            t2=S2Day.from_dict(s2["t-2"]),
            t1=S2Day.from_dict(s2["t-1"]),
            observed=None if s2["t"] is None else S2Day.from_dict(s2["t"]),
            s1=tuple(S1Pass.from_dict(s1[step]) for step in STEPS if step in s1),
            lookback_days=int(options["lookback_days"]),
            s1_tolerance_days=int(options["s1_tolerance_days"]),
            min_coverage=float(options["min_coverage"]),
            s1_window_days=int(options.get("s1_window_days", 0)),
            s1_passes=int(options.get("s1_passes", 0)),
            s1_series=tuple(S1Pass.from_dict(p) for p in data.get("s1_series", [])),
        )


@dataclass(frozen=True)
class NoInput:
    """The per-tile outcome when the inputs for a date do not exist.

    Attributes
    ----------
    date : datetime.date
        The requested date.
    missing : {"sentinel-2", "sentinel-1"}
        What is missing.
    reason : str
        What was found, where, and how to fix it.
    """

    date: dt.date
    missing: Literal["sentinel-2", "sentinel-1"]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"date": self.date.isoformat(), "missing": self.missing, "reason": self.reason}

    def error(self) -> NoInputError:
        """Return the matching :class:`~lamap.errors.NoInputError`, to raise."""
        return NoInputError(self.reason)


# --------------------------------------------------------------------------- grouping


def s2_days(scenes: Iterable[S2Scene], footprint: FootprintLike) -> tuple[S2Day, ...]:
    """Group the scenes over a footprint by UTC day, with the coverage of each day.

    Parameters
    ----------
    scenes : iterable of S2Scene
        Any scenes; those not overlapping the footprint are ignored.
    footprint : bbox or geometry
        Lon/lat ``(W, S, E, N)`` (a tile's ``lonlat_bounds()``), point or geometry.

    Returns
    -------
    tuple of S2Day
        Sorted by day.
    """
    area = as_geometry(footprint)
    groups: dict[dt.date, list[S2Scene]] = {}
    for scene in scenes:
        if _overlaps(scene.footprint, area):
            groups.setdefault(scene.day, []).append(scene)
    return tuple(
        S2Day(day, _ordered_ids(group), _coverage([s.footprint for s in group], area))
        for day, group in sorted(groups.items())
    )


def s1_passes(scenes: Iterable[S1Scene], footprint: FootprintLike) -> tuple[S1Pass, ...]:
    """Group the Sentinel-1 slices over a footprint by pass (platform and absolute orbit).

    Returns
    -------
    tuple of S1Pass
        Sorted by time.
    """
    area = as_geometry(footprint)
    groups: dict[tuple[str, str], list[S1Scene]] = {}
    for scene in scenes:
        if _overlaps(scene.footprint, area):
            groups.setdefault(scene.pass_key, []).append(scene)
    passes = [_make_pass(group, area) for group in groups.values()]
    return tuple(sorted(passes, key=lambda p: (p.datetime, p.item_ids)))


def _make_pass(group: list[S1Scene], area: BaseGeometry) -> S1Pass:
    first = min(group, key=lambda s: (s.datetime, s.id))
    return S1Pass(
        datetime=first.datetime,
        platform=first.platform,
        orbit_state=first.orbit_state,
        relative_orbit=first.relative_orbit,
        item_ids=_ordered_ids(group),
        coverage=_coverage([s.footprint for s in group], area),
    )


def _ordered_ids(scenes: Iterable[SceneT]) -> tuple[str, ...]:
    return tuple(s.id for s in sorted(scenes, key=lambda s: (s.datetime, s.id)))


def _overlaps(geometry: BaseGeometry, area: BaseGeometry) -> bool:
    if not geometry.intersects(area):
        return False
    return area.area == 0 or geometry.intersection(area).area > 0


def _coverage(geometries: list[BaseGeometry], area: BaseGeometry) -> float:
    if area.area > 0:
        covered = shapely.union_all([g.intersection(area) for g in geometries])
        return min(1.0, float(covered.area / area.area))
    if area.length > 0:
        return float(shapely.union_all(geometries).intersection(area).length / area.length)
    return 1.0 if any(g.intersects(area) for g in geometries) else 0.0


# --------------------------------------------------------------------------- planner


def plan_time_steps(
    s2_scenes: Iterable[S2Scene],
    s1_scenes: Iterable[S1Scene],
    date: dt.date | str,
    footprint: FootprintLike,
    *,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    tile_id: str | None = None,
    s1_steps: bool = True,
    s1_window_days: int = 0,
    s1_series_passes: int = 0,
) -> TimeSteps | NoInput:
    """Choose t-2, t-1 and the Sentinel-1 passes for one tile and date (see module doc).

    Parameters
    ----------
    s2_scenes, s1_scenes : iterable
        Normalised scenes (a whole search result, or those assigned to the tile).
    date : datetime.date or str
        The requested date D.
    footprint : bbox or geometry
        The tile's lon/lat bounds ``(W, S, E, N)``, a point, or a geometry.
    lookback_days : int
        t-2 and t-1 lie in ``[D - lookback_days, D - 1]``.
    s1_tolerance_days : int
        A step's S1 pass is at most this many days from it.
    min_coverage : float
        Fraction of the footprint a day or pass must cover, in [0, 1]; 0 takes any overlap.
    tile_id : str, optional
        Names the tile in messages.
    s1_steps : bool
        Choose the Sentinel-1 pass nearest to t-2, t-1 and D (the fused model's).
    s1_window_days, s1_series_passes : int
        Choose the Sentinel-1 series too: the latest ``s1_series_passes`` passes in
        ``[D - s1_window_days, D]`` (0: none).

    Returns
    -------
    TimeSteps or NoInput
        ``NoInput`` says what is missing; ``no_input.error()`` gives a ``NoInputError``.

    Raises
    ------
    InputError
        For out-of-range options or a malformed date or footprint.
    """
    when = as_date(date)
    _check_options(lookback_days, s1_tolerance_days, min_coverage)
    _check_series(s1_steps, s1_window_days, s1_series_passes)
    s2_scenes = tuple(s2_scenes)
    area = _data_area(as_geometry(footprint), s2_scenes)
    where = describe_area(area, tile_id)
    days = s2_days(s2_scenes, area)
    earliest = when - dt.timedelta(days=lookback_days)
    window = [d for d in days if earliest <= d.day < when]
    usable = [d for d in window if d.coverage >= min_coverage and d.coverage > 0]
    if len(usable) < 2:
        reason = s2_reason(when, days, window, usable, where, lookback_days, min_coverage)
        return NoInput(when, "sentinel-2", reason)
    t2, t1 = usable[-2], usable[-1]
    observed = next((d for d in days if d.day == when), None)
    passes = [p for p in s1_passes(s1_scenes, area) if p.coverage >= min_coverage]
    steps = (t2.day, t1.day, when)
    chosen = _choose_s1(passes, steps, s1_tolerance_days) if s1_steps else []
    if None in chosen:
        gap = chosen.index(None)
        reason = s1_reason(STEPS[gap], steps[gap], passes, where, s1_tolerance_days, min_coverage)
        return NoInput(when, "sentinel-1", reason)
    series = choose_series(passes, when, s1_window_days, s1_series_passes)
    if s1_series_passes and not series:
        return NoInput(when, "sentinel-1",
                       series_reason(when, passes, where, s1_window_days, min_coverage))
    s1 = cast(tuple[S1Pass, ...], tuple(chosen))
    return TimeSteps(when, t2, t1, observed, s1, lookback_days, s1_tolerance_days, min_coverage,
                     s1_window_days, s1_series_passes, series)


def choose_series(passes: Sequence[S1Pass], when: dt.date, window_days: int,
                  count: int) -> tuple[S1Pass, ...]:
    """Return the latest ``count`` passes in ``[when - window_days, when]``, oldest first.

    Parameters
    ----------
    passes : sequence of S1Pass
        Candidate passes (any order).
    when : datetime.date
        The date D.
    window_days, count : int
        The series window and its number of passes (0: no series).

    Returns
    -------
    tuple of S1Pass
        At most ``count``; fewer (or none) where the window has fewer.
    """
    if count == 0:
        return ()
    first = when - dt.timedelta(days=window_days)
    inside = sorted((p for p in passes if first <= p.day <= when),
                    key=lambda p: (p.datetime, p.item_ids))
    return tuple(inside[-count:])


def _data_area(area: BaseGeometry, scenes: Sequence[S2Scene]) -> BaseGeometry:
    """Return the part of ``area`` where the catalog has any Sentinel-2 data at all.

    Coverage is measured over it, so a tile at a coast or at the edge of a data set is
    not refused for lacking data where no acquisition ever has any.
    """
    if area.area == 0:
        return area
    footprints = [s.footprint for s in scenes if s.footprint.intersects(area)]
    if not footprints:
        return area
    data = shapely.union_all(footprints).intersection(area)
    return data if data.area > 0 else area


def _choose_s1(
    passes: Sequence[S1Pass], steps: Sequence[dt.date], tolerance: int
) -> list[S1Pass | None]:
    candidates = [[p for p in passes if abs((p.day - s).days) <= tolerance] for s in steps]
    counts = Counter(p.track for group in candidates for p in group)
    return [
        min(group, key=lambda p: _rank(p, step, counts)) if group else None
        for group, step in zip(candidates, steps, strict=True)
    ]


def _rank(p: S1Pass, step: dt.date, counts: Counter[tuple[str, int]]) -> tuple[Any, ...]:
    noon = dt.datetime.combine(step, dt.time(12), tzinfo=dt.UTC)
    return (
        abs((p.day - step).days),
        -counts[p.track],
        p.track,
        p.day > step,
        abs((p.datetime - noon).total_seconds()),
        p.item_ids,
    )


def select_scenes(scenes: Iterable[SceneT], ids: Iterable[str]) -> tuple[SceneT, ...]:
    """Return the scenes with the given ids, in the order of ``ids``.

    Raises
    ------
    InputError
        If an id is not among the scenes.
    """
    by_id = {s.id: s for s in scenes}
    ids = list(ids)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(f"items {missing} are not among the {len(by_id)} scenes searched")
    return tuple(by_id[i] for i in ids)


def search_window(
    dates: Iterable[dt.date | str],
    *,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS,
    s1_window_days: int = 0,
) -> tuple[dt.date, dt.date]:
    """Return the one search window that covers every input the dates can need.

    ``[min(D) - max(lookback_days + s1_tolerance_days, s1_window_days),
    max(D) + s1_tolerance_days]``.

    Raises
    ------
    InputError
        If ``dates`` is empty or malformed.
    """
    parsed = [as_date(d) for d in dates]
    if not parsed:
        raise InputError("search_window needs at least one date")
    _check_options(lookback_days, s1_tolerance_days, 0.0)
    back = max(lookback_days + s1_tolerance_days, s1_window_days)
    start = min(parsed) - dt.timedelta(days=back)
    return start, max(parsed) + dt.timedelta(days=s1_tolerance_days)


def _check_series(steps: bool, window_days: int, passes: int) -> None:
    if window_days < 0 or passes < 0 or (window_days == 0) != (passes == 0):
        raise InputError(
            f"s1_window_days ({window_days}) and s1_passes ({passes}) must both be 0 (no "
            "Sentinel-1 series) or both positive"
        )
    if not steps and passes == 0:
        raise InputError("choose Sentinel-1 steps (s1_steps) or a series (s1_passes), or both")


def _check_options(lookback_days: int, s1_tolerance_days: int, min_coverage: float) -> None:
    if lookback_days < 2:
        raise InputError(f"lookback_days must be at least 2 (t-2 and t-1), got {lookback_days}")
    if s1_tolerance_days < 0:
        raise InputError(f"s1_tolerance_days must be >= 0, got {s1_tolerance_days}")
    if not 0.0 <= min_coverage <= 1.0:
        raise InputError(f"min_coverage must be in [0, 1], got {min_coverage}")
