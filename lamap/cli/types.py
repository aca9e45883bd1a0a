"""Parameter parsers for the command line: strict, with messages that say the fix."""

from __future__ import annotations

import datetime as dt

import typer

from lamap._inputs import as_date
from lamap.errors import InputError

__all__ = ["parse_date", "parse_device", "parse_size"]


def parse_date(value: str | dt.date) -> dt.date:
    """Parse ``YYYY-MM-DD`` (:func:`lamap._inputs.as_date`) as a command-line parameter."""
    try:
        return as_date(value)
    except InputError as err:
        raise typer.BadParameter(str(err)) from None


def parse_size(value: str | int) -> int:
    """Parse a world size in pixels: a positive multiple of 4."""
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a whole number of pixels") from None
    if size < 64 or size % 4:
        raise typer.BadParameter(f"{size} must be a multiple of 4 and at least 64")
    return size


def parse_device(value: str) -> str:
    """Parse ``cpu``, ``cuda`` (or ``cuda:N``) or ``auto``."""
    text = value.strip().lower()
    if text in {"cpu", "cuda", "auto"} or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise typer.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or auto")
