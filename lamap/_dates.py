"""One way to accept a date at lamap's boundaries."""

from __future__ import annotations

import datetime as dt

from lamap.errors import InputError

__all__ = ["as_date"]


def as_date(value: dt.date | dt.datetime | str, what: str = "date") -> dt.date:
    """Return ``value`` as a date: a date, a datetime (its UTC day) or ``YYYY-MM-DD``.

    Raises
    ------
    InputError
        If it is none of these; the message names ``what`` and the format.
    """
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{what} {value!r} is not a date; write it as YYYY-MM-DD") from None
