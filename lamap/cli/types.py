"""Parameter parsers for the command line: strict, with messages that say the fix."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from pathlib import Path

import typer

from lamap._inputs import as_date
from lamap.errors import InputError

__all__ = [
    "existing_file",
    "output_file",
    "output_folder",
    "parse_address",
    "parse_counts",
    "parse_date",
    "parse_device",
    "parse_patch",
    "parse_positive",
    "parse_size",
    "parse_weight",
]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def parse_patch(value: str | int) -> int:
    """Parse a training patch edge: a multiple of 4 (the network's down-sampling), at least 8."""
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a whole number of pixels") from None
    if size < 8 or size % 4:
        raise typer.BadParameter(f"{size} must be a multiple of 4 and at least 8, e.g. 256")
    return size


def parse_device(value: str) -> str:
    """Parse ``cpu``, ``cuda`` (or ``cuda:N``) or ``auto``."""
    text = value.strip().lower()
    if text in {"cpu", "cuda", "auto"} or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise typer.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or auto")


def parse_positive(value: str | float) -> float:
    """Parse a finite number greater than 0 (a pixel size in metres)."""
    number = _number(value)
    if not number > 0:
        raise typer.BadParameter(f"{value!r} must be a number greater than 0, e.g. 10")
    return number


def parse_weight(value: str | float) -> float:
    """Parse a finite number of at least 0 (a loss weight)."""
    number = _number(value)
    if number < 0:
        raise typer.BadParameter(f"{value!r} must be a number of at least 0, e.g. 2")
    return number


def _number(value: str | float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise typer.BadParameter(f"{value!r} must be a finite number")
    return number


def parse_address(value: str) -> str:
    """Parse ``HOST:PORT`` (or ``:PORT``) for a dashboard: a loopback host, a port 0-65535.

    A bare ``:PORT`` listens on 127.0.0.1; lamap's servers never listen on other interfaces
    (reach a remote dashboard through an SSH tunnel).
    """
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or int(port) > 65535:
        raise typer.BadParameter(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8787 (port 0: any)")
    if host not in _LOOPBACK:
        raise typer.BadParameter(
            f"{value!r}: lamap's dashboards listen on 127.0.0.1 only; use 127.0.0.1:{port} "
            "and reach it through an SSH tunnel"
        )
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def parse_counts(value: str) -> str:
    """Parse comma-separated positive whole numbers, e.g. ``100,1000``."""
    parts = [part.strip() for part in value.split(",")]
    if not parts or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise typer.BadParameter(f"{value!r} is not a list of whole numbers > 0, e.g. 100,1000")
    return ",".join(parts)


def output_file(path: Path, option: str) -> Path:
    """Refuse an output file path that is a folder, or lies where nothing can be written."""
    if path.is_dir():
        raise typer.BadParameter(f"{option} {path} is a folder: give a file path")
    _writable_folder(path.parent, path, option)
    return path


def output_folder(path: Path, option: str) -> Path:
    """Refuse an output folder path that is a file, or lies where nothing can be written."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{option} {path} is a file: give a folder path")
    _writable_folder(path if path.exists() else path.parent, path, option)
    return path


def existing_file(path: Path, option: str) -> Path:
    """Refuse an input file that does not exist or is a folder."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise typer.BadParameter(f"{option} {path} {what}: give an existing file")
    return path


def _writable_folder(folder: Path, path: Path, option: str) -> None:
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"{option} {path} lies inside {folder}, a file")
    try:  # a real try: permissions, read-only mounts (root passes os.access)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise typer.BadParameter(
            f"{option} {path}: cannot write in {folder} ({err.strerror})"
        ) from None
