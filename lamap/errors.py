"""Exceptions and warnings raised by lamap.

Every error a user can cause derives from :class:`LamapError`; the command line
turns it into one clear line and a non-zero exit code.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "CatalogWarning",
    "CheckpointError",
    "DashboardPortWarning",
    "ExportError",
    "GridError",
    "InputError",
    "LamapError",
    "LamapWarning",
    "NoInputError",
    "SyntheticModelWarning",
    "TileError",
    "TrainingError",
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


class CatalogWarning(LamapWarning):
    """A catalog returned items that lamap cannot use and skipped."""


class TileError(LamapError):
    """A tile could not be mapped (an unreadable input, a failing task): the run goes on."""


class CheckpointError(LamapError):
    """A checkpoint file is missing, unreadable, or does not fit this lamap's model."""


class TrainingError(LamapError):
    """Training cannot go on: a diverging loss, or a state file that does not fit the run."""


class ExportError(LamapError):
    """An export could not be written (the message names the file and the fix)."""


class SyntheticModelWarning(LamapWarning):
    """The model was trained on lamap's synthetic world, not on real Sentinel data."""


class DashboardPortWarning(LamapWarning):
    """The local Dask dashboard's port was taken; the dashboard listens on another one."""
