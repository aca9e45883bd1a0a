"""Validation of grid parameters and the integer arithmetic of pixel indices.

Every check raises a :class:`~lamap.errors.GridError` that names the value, what is wrong
with it and what would fix it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TypeGuard

import numpy as np

from lamap._inputs import is_real
from lamap.errors import GridError
from lamap.grid.crs import Bounds

# A coordinate within this many pixels (or blocks) of an edge is on that edge (float noise).
EPS = 1e-6


def is_int(value: object) -> TypeGuard[int]:
    """Return whether a value is an integer, NumPy's included, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def floor(value: float) -> int:
    """Floor, treating values within :data:`EPS` of an integer as that integer."""
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < EPS else math.floor(value)


def ceil(value: float) -> int:
    """Ceil, treating values within :data:`EPS` of an integer as that integer."""
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < EPS else math.ceil(value)


def ceil_div(a: int, b: int) -> int:
    """Integer division rounding up."""
    return -(-a // b)


def fmt(value: float) -> str:
    """Format metres for messages (``900000``, ``2.5``)."""
    return format(value, ".10g")


def check_resolution(resolution: object) -> float:
    """Return a pixel edge in metres as a float, or raise."""
    if not is_real(resolution) or not math.isfinite(resolution) or resolution <= 0:
        raise GridError(
            f"grid resolution {resolution!r} must be a positive number of metres, e.g. 10"
        )
    return float(resolution)


def check_origin(origin: object, resolution: float) -> tuple[float, float]:
    """Return ``(x_min, y_max)`` as floats, each a multiple of the resolution, or raise."""
    if not isinstance(origin, Sequence | np.ndarray) or len(origin) != 2:
        raise GridError(
            f"grid origin {origin!r} must be two numbers (x_min, y_max) in metres: the "
            "upper-left corner of the upper-left pixel"
        )
    for axis, value in zip(("x", "y"), origin, strict=True):
        if not is_real(value) or not math.isfinite(value):
            raise GridError(f"grid origin {axis} {value!r} is not a finite number of metres")
        steps = value / resolution
        if abs(steps - round(steps)) > EPS:
            raise GridError(
                f"grid origin {axis} {fmt(value)} m is not a multiple of the resolution "
                f"{fmt(resolution)} m: use {fmt(math.floor(steps) * resolution)} or "
                f"{fmt(math.ceil(steps) * resolution)}, so pixels line up across stores"
            )
    return (float(origin[0]), float(origin[1]))


def check_shape(shape: object) -> tuple[int, int]:
    """Return ``(rows, cols)`` as positive ints, or raise."""
    if not isinstance(shape, Sequence | np.ndarray) or len(shape) != 2:
        raise GridError(f"grid shape {shape!r} must be two integers (rows, cols)")
    for axis, value in zip(("rows", "cols"), shape, strict=True):
        if not is_int(value) or value <= 0:
            raise GridError(f"grid shape {axis} {value!r} must be a positive integer")
    return (int(shape[0]), int(shape[1]))


def check_blocks(chunk: object, shard: object, tile: object) -> tuple[int, int, int]:
    """Return chunk, shard and tile edges as ints that nest (tile ⊇ shard ⊇ chunk), or raise."""
    for name, value in (("chunk", chunk), ("shard", shard), ("tile", tile)):
        if not is_int(value) or value <= 0:
            raise GridError(f"grid {name} {value!r} must be a positive integer number of pixels")
    inner, middle, outer = int(chunk), int(shard), int(tile)  # type: ignore[call-overload]
    if middle % inner:
        raise GridError(
            f"grid shard {middle} px is not a multiple of the chunk {inner} px: a Zarr shard "
            f"holds whole chunks; choose e.g. shard {ceil_div(middle, inner) * inner} px"
        )
    if outer % middle:
        raise GridError(
            f"grid tile {outer} px is not a multiple of the shard {middle} px: a tile must hold "
            f"whole shards so that no two tiles write one shard; choose e.g. tile "
            f"{ceil_div(outer, middle) * middle} px"
        )
    return (inner, middle, outer)


def check_bounds(bounds: Sequence[float]) -> Bounds:
    """Return projected bounds as four floats with ``xmin < xmax`` and ``ymin < ymax``, or raise."""
    values = list(bounds) if isinstance(bounds, Sequence | np.ndarray) else []
    if len(values) != 4 or not all(is_real(v) and math.isfinite(v) for v in values):
        raise GridError(
            f"bounds {bounds!r} must be four finite numbers (xmin, ymin, xmax, ymax) in metres"
        )
    xmin, ymin, xmax, ymax = (float(v) for v in values)
    if xmin >= xmax or ymin >= ymax:
        raise GridError(
            f"bounds {tuple(values)} are empty or inverted: need xmin < xmax and ymin < ymax"
        )
    return (xmin, ymin, xmax, ymax)
