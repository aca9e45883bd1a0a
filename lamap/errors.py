"""Exceptions and warnings raised by lamap.

Every error a user can cause derives from :class:`LamapError`; the command line
turns it into one clear line and a non-zero exit code.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "GridError",
    "InputError",
    "LamapError",
    "LamapWarning",
    "NoInputError",
    "StoreError",
]


class LamapError(Exception):
    """Base class for errors caused by user input or the environment."""


class InputError(LamapError, ValueError):
    """An argument is malformed or out of range."""


class GridError(InputError):
    """A bbox, grid or tile does not fit the output grid."""


class CatalogError(LamapError):
    """A STAC catalog could not be reached, searched or understood."""


class NoInputError(LamapError):
    """No suitable Sentinel-1/Sentinel-2 acquisitions exist for a request."""


class StoreError(LamapError):
    """A store is missing, is not a lamap store, or does not hold what was asked for."""


class LamapWarning(UserWarning):
    """Base class for warnings emitted by lamap."""


class TileError(LamapError):
    """A tile could not be mapped (an unreadable input, a failing task): the run goes on."""
