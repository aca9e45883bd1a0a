"""The planner's messages: why a tile has no input for a date, and how to fix it.

Each names what was found, where, and the option that fixes it (``--lookback``,
``--min-coverage``, ``--s1-tolerance``, ``--s1-window``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shapely.geometry.base import BaseGeometry

if TYPE_CHECKING:
    from lamap.timesteps import S1Pass, S2Day

__all__ = ["describe_area", "s1_reason", "s2_reason", "series_reason"]


def s2_reason(
    when: dt.date,
    days: Sequence[S2Day],
    window: Sequence[S2Day],
    usable: Sequence[S2Day],
    where: str,
    lookback: int,
    min_coverage: float,
) -> str:
    """Why two Sentinel-2 days before ``when`` were not found, and what fixes it."""
    since = when - dt.timedelta(days=lookback)
    found = ", ".join(str(d.day) for d in usable) or "none"
    parts = [
        f"need two Sentinel-2 acquisition days strictly before {when} within {lookback} days "
        f"(since {since}) over {where}; found {len(usable)}: {found}"
    ]
    partial = [d for d in window if d not in usable]
    if partial:
        listed = ", ".join(f"{d.day} ({d.coverage:.0%})" for d in partial)
        more = "1 more day covers" if len(partial) == 1 else f"{len(partial)} more days cover"
        parts.append(f"{more} less than {min_coverage:.0%} of it: {listed}")
    older = [d for d in days if d.day < since]
    if older:
        parts.append(f"the nearest older day is {older[-1].day}")
    fixes = "increase lookback_days (--lookback)"
    if partial:
        fixes += ", lower min_coverage (--min-coverage)"
    return "; ".join(parts) + f". Fix: {fixes} or choose a later date."


def s1_reason(
    step_name: str,
    step: dt.date,
    passes: Sequence[S1Pass],
    where: str,
    tolerance: int,
    min_coverage: float,
) -> str:
    """Why no Sentinel-1 pass is near the step ``step``, and what fixes it."""
    base = (
        f"no Sentinel-1 pass covering at least {min_coverage:.0%} of {where} within "
        f"±{tolerance} days of {step} ({step_name})"
    )
    if passes:
        nearest = min(passes, key=lambda p: (abs((p.day - step).days), p.datetime))
        gap = abs((nearest.day - step).days)
        base += f"; the nearest is {nearest.day} ({gap} days away)"
    else:
        base += "; the search found no usable pass over it"
    return base + ". Fix: increase s1_tolerance_days (--s1-tolerance) or choose another date."


def describe_area(area: BaseGeometry, tile_id: str | None) -> str:
    """Name a tile, a point or a bbox in a message."""
    if tile_id is not None:
        return f"tile {tile_id}"
    if area.geom_type == "Point":
        return f"point ({area.x:.4f}, {area.y:.4f})"
    return "bbox (" + ", ".join(f"{v:.4f}" for v in area.bounds) + ")"


def series_reason(
    when: dt.date, passes: Sequence[S1Pass], where: str, window: int, min_coverage: float
) -> str:
    """Why no Sentinel-1 pass makes a time series for ``when`` (none in the window)."""
    since = when - dt.timedelta(days=window)
    base = (
        f"no Sentinel-1 pass covering at least {min_coverage:.0%} of {where} between {since} "
        f"and {when} (the {window}-day radar series)"
    )
    older = [p for p in passes if p.day < since]
    if older:
        base += f"; the nearest older pass is {older[-1].day}"
    return base + ". Fix: widen the series window (s1_window_days) or choose another date."
