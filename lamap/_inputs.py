"""The boundary's normalisers: every user-given date and lon/lat bbox enters lamap here.

:func:`as_date` and :func:`as_bbox` are the only places that parse a date or a bounding box;
everything inward takes :class:`datetime.date` and :class:`BBox`.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeGuard

import numpy as np

from lamap.errors import GridError, InputError

__all__ = ["BBox", "BBoxLike", "DateLike", "as_bbox", "as_date", "is_real"]

#: Anything :func:`as_bbox` accepts: ``"W,S,E,N"``, four numbers, or a :class:`BBox`.
BBoxLike: TypeAlias = "str | Sequence[float] | np.ndarray | BBox"
#: Anything :func:`as_date` accepts.
DateLike: TypeAlias = "dt.date | dt.datetime | np.datetime64 | str"

_BBOX_EXAMPLE = "'5.9,47.3,10.5,55.1'"


def is_real(value: object) -> TypeGuard[float]:
    """Real numbers, NumPy's included, but not bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fmt(value: float) -> str:
    return format(value, ".10g")


def as_date(value: DateLike, what: str = "date") -> dt.date:
    """Return ``value`` as a date.

    Accepted: a date, a datetime (its UTC day), a NumPy datetime64, or ``YYYY-MM-DD``.

    Raises
    ------
    InputError
        If it is none of these; the message names ``what`` and the format.
    """
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise InputError(f"{what} is NaT (not a time); give a date as YYYY-MM-DD")
        return value.astype("datetime64[D]").astype(dt.date)  # type: ignore[no-any-return]
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{what} {value!r} is not a date; write it as YYYY-MM-DD") from None


@dataclass(frozen=True)
class BBox:
    """A lon/lat bounding box in degrees (WGS 84), validated on construction.

    Parameters
    ----------
    west, south, east, north : float
        Longitudes in [-180, 180] with ``west < east``, latitudes in [-90, 90] with
        ``south < north``. Boxes crossing the antimeridian are not supported.

    Raises
    ------
    GridError
        If a value is not a finite number, out of range, or the box is empty or inverted.
    """

    west: float
    south: float
    east: float
    north: float

    def __post_init__(self) -> None:
        """Validate and convert to floats."""
        for name in ("west", "south", "east", "north"):
            value = getattr(self, name)
            if not is_real(value) or not math.isfinite(value):
                raise GridError(f"bbox {name} {value!r} is not a finite number: {_BBOX_HINT}")
            object.__setattr__(self, name, float(value))
        _check_bbox_ranges(self.west, self.south, self.east, self.north)
        _check_bbox_order(self.west, self.south, self.east, self.north)

    def to_tuple(self) -> tuple[float, float, float, float]:
        """Return ``(west, south, east, north)``, the order STAC ``bbox`` uses."""
        return (self.west, self.south, self.east, self.north)

    def __str__(self) -> str:
        """Return ``"W,S,E,N"``, the form :func:`as_bbox` reads back."""
        return ",".join(_fmt(value) for value in self.to_tuple())


_BBOX_HINT = f"give W,S,E,N in lon/lat degrees, e.g. {_BBOX_EXAMPLE}"


def _check_bbox_ranges(west: float, south: float, east: float, north: float) -> None:
    for name, value in (("west", west), ("east", east)):
        if not -180.0 <= value <= 180.0:
            raise GridError(
                f"bbox {name} longitude {_fmt(value)} is outside [-180, 180]: "
                f"{_BBOX_HINT} (did you give projected metres, or swap lon and lat?)"
            )
    for name, value in (("south", south), ("north", north)):
        if not -90.0 <= value <= 90.0:
            raise GridError(
                f"bbox {name} latitude {_fmt(value)} is outside [-90, 90]: "
                f"{_BBOX_HINT} (latitudes are the 2nd and 4th numbers)"
            )


def _check_bbox_order(west: float, south: float, east: float, north: float) -> None:
    if west == east:
        raise GridError(
            f"bbox west equals east ({_fmt(west)}), so the bbox has no width: {_BBOX_HINT}"
        )
    if west > east:
        raise GridError(
            f"bbox west {_fmt(west)} is greater than east {_fmt(east)} (W >= E): "
            f"{_BBOX_HINT}; an area crossing the antimeridian (180°) is not supported, "
            "split it into two bboxes"
        )
    if south >= north:
        raise GridError(
            f"bbox south {_fmt(south)} is not less than north {_fmt(north)} (S >= N): {_BBOX_HINT}"
        )


def as_bbox(value: BBoxLike) -> BBox:
    """Normalise a user's bounding box into a :class:`BBox`.

    Parameters
    ----------
    value : str or sequence of float or BBox
        ``"W,S,E,N"`` (commas and/or spaces), four numbers in that order, or a BBox.

    Returns
    -------
    BBox
        The validated lon/lat box.

    Raises
    ------
    GridError
        If the value is not four numbers or fails :class:`BBox` validation.
    """
    if isinstance(value, BBox):
        return value
    numbers_ = _bbox_values(value)
    if len(numbers_) != 4:
        raise GridError(f"bbox {value!r} has {len(numbers_)} values, not 4: {_BBOX_HINT}")
    return BBox(*numbers_)


def _bbox_values(value: object) -> list[Any]:
    if isinstance(value, str):
        parts = [part for part in re.split(r"[,\s]+", value.strip()) if part]
        return [_parse_number(part, value) for part in parts]
    if isinstance(value, Sequence | np.ndarray):
        return list(value)
    raise GridError(f"bbox {value!r} is not a string or a sequence: {_BBOX_HINT}")


def _parse_number(part: str, whole: str) -> float:
    try:
        return float(part)
    except ValueError:
        raise GridError(
            f"bbox {whole!r} has {part!r}, which is not a number: {_BBOX_HINT}"
        ) from None
