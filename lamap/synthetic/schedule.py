"""When and how the satellites see the synthetic world: acquisition schedules and swaths.

Sentinel-2: one acquisition every 5 days, alternating between two relative orbits. The
first (``R008``) covers the whole world; the second (``R051``) has its swath edge across
the world, slanted like a real descending swath, with no data west of it. Sentinel-1:
an ascending and a descending pass, each every 12 days, offset by 6 days; the
ascending swath misses the world's western corner.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import numpy as np
from shapely.geometry import Polygon

from lamap.synthetic.geometry import TruthGrid

__all__ = ["S1Acquisition", "S2Acquisition", "s1_schedule", "s2_schedule"]

S2_REVISIT_DAYS = 5
S1_REPEAT_DAYS = 12
S2_OVERPASS = dt.time(10, 30, 21)  # UTC, about 10:50 local solar time at 6°E
S1_DESCENDING = dt.time(5, 47, 12)
S1_ASCENDING = dt.time(17, 31, 40)


@dataclass(frozen=True)
class S2Acquisition:
    """One Sentinel-2 datatake over the world.

    Attributes
    ----------
    time : datetime.datetime
        Sensing time (UTC).
    platform : str
        ``"Sentinel-2A"`` or ``"Sentinel-2B"``.
    relative_orbit : int
        Relative orbit number.
    view_zenith, view_azimuth : float
        Mean viewing angles over the world, degrees.
    swath : shapely.geometry.Polygon
        Where the swath has data, in the truth CRS (EPSG:3035).
    cloud_fraction : float
        Requested cloud cover of the scene, 0–1.
    """

    time: dt.datetime
    platform: str
    relative_orbit: int
    view_zenith: float
    view_azimuth: float
    swath: Polygon
    cloud_fraction: float


@dataclass(frozen=True)
class S1Acquisition:
    """One Sentinel-1 IW pass over the world.

    Attributes
    ----------
    time : datetime.datetime
        Start of the slice (UTC).
    orbit_state : {"ascending", "descending"}
        Pass direction.
    relative_orbit, absolute_orbit : int
        Orbit numbers.
    incidence : tuple of float
        Incidence angle (degrees) at the world's western and eastern edges.
    swath : shapely.geometry.Polygon
        Where the pass has data, in the truth CRS (EPSG:3035).
    """

    time: dt.datetime
    orbit_state: Literal["ascending", "descending"]
    relative_orbit: int
    absolute_orbit: int
    incidence: tuple[float, float]
    swath: Polygon


def _half_plane(truth: TruthGrid, fraction: float, slant_deg: float, keep: str) -> Polygon:
    """Return the part of a padded truth extent east (or west) of a slanted line.

    The line crosses the world's centre row at ``fraction`` of its width and leans by
    ``slant_deg`` from north.
    """
    xmin, ymin, xmax, ymax = truth.bounds
    pad = 0.5 * max(xmax - xmin, ymax - ymin)
    y_lo, y_hi = ymin - pad, ymax + pad
    x_mid = xmin + fraction * (xmax - xmin)
    y_mid = 0.5 * (ymin + ymax)
    lean = np.tan(np.deg2rad(slant_deg))
    x_lo = x_mid + (y_lo - y_mid) * lean
    x_hi = x_mid + (y_hi - y_mid) * lean
    if keep == "east":
        far = xmax + pad
        return Polygon([(x_lo, y_lo), (far, y_lo), (far, y_hi), (x_hi, y_hi)])
    far = xmin - pad
    return Polygon([(far, y_lo), (x_lo, y_lo), (x_hi, y_hi), (far, y_hi)])


def _everywhere(truth: TruthGrid) -> Polygon:
    xmin, ymin, xmax, ymax = truth.bounds
    pad = 0.5 * max(xmax - xmin, ymax - ymin)
    return Polygon(
        [
            (xmin - pad, ymin - pad),
            (xmax + pad, ymin - pad),
            (xmax + pad, ymax + pad),
            (xmin - pad, ymax + pad),
        ]
    )


def s2_schedule(
    truth: TruthGrid, start: dt.date, days: int, cloud_fractions: np.ndarray
) -> list[S2Acquisition]:
    """Sentinel-2 acquisitions every 5 days from ``start`` for ``days`` days.

    Parameters
    ----------
    truth : TruthGrid
        The world's truth grid.
    start : datetime.date
        First day of the world.
    days : int
        Length of the world in days.
    cloud_fractions : numpy.ndarray
        Cloud cover per acquisition (at least as many as acquisitions).

    Returns
    -------
    list of S2Acquisition
    """
    edge = _half_plane(truth, fraction=0.35, slant_deg=-12.0, keep="east")
    full = _everywhere(truth)
    acquisitions = []
    for i, offset in enumerate(range(2, days, S2_REVISIT_DAYS)):
        day = start + dt.timedelta(days=offset)
        main_orbit = i % 2 == 0
        acquisitions.append(
            S2Acquisition(
                time=dt.datetime.combine(day, S2_OVERPASS, tzinfo=dt.UTC),
                platform="Sentinel-2A" if i % 4 < 2 else "Sentinel-2B",
                relative_orbit=8 if main_orbit else 51,
                view_zenith=3.5 if main_orbit else 9.0,
                view_azimuth=104.0 if main_orbit else 286.0,
                swath=full if main_orbit else edge,
                cloud_fraction=float(cloud_fractions[i]),
            )
        )
    return acquisitions


def s1_schedule(truth: TruthGrid, start: dt.date, days: int) -> list[S1Acquisition]:
    """Sentinel-1 passes: descending every 12 days from day 1, ascending from day 7.

    Parameters
    ----------
    truth : TruthGrid
        The world's truth grid.
    start : datetime.date
        First day of the world.
    days : int
        Length of the world in days.

    Returns
    -------
    list of S1Acquisition, sorted by time.
    """
    corner = _half_plane(truth, fraction=0.12, slant_deg=15.0, keep="east")
    full = _everywhere(truth)
    passes: list[S1Acquisition] = []
    for first, state in ((1, "descending"), (7, "ascending")):
        for offset in range(first, days, S1_REPEAT_DAYS):
            day = start + dt.timedelta(days=offset)
            descending = state == "descending"
            when = S1_DESCENDING if descending else S1_ASCENDING
            passes.append(
                S1Acquisition(
                    time=dt.datetime.combine(day, when, tzinfo=dt.UTC),
                    orbit_state=state,  # type: ignore[arg-type]
                    relative_orbit=139 if descending else 88,
                    absolute_orbit=_absolute_orbit(day),
                    incidence=(36.0, 41.0) if descending else (43.0, 38.0),
                    swath=full if descending else corner,
                )
            )
    return sorted(passes, key=lambda p: p.time)


def _absolute_orbit(day: dt.date) -> int:
    """Sentinel-1A absolute orbit near ``day`` (175 orbits per 12-day cycle)."""
    return 53498 + int(round((day - dt.date(2024, 4, 19)).days * 175 / 12))
