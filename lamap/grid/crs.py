"""Coordinate reference systems of lamap grids: normalisation, labels and bounds transforms.

Parsing and transformers come from odc-geo's :class:`odc.geo.crs.CRS`, which caches both per
process; lamap adds what a grid needs on top: the check that a CRS is projected in metres,
one canonical text per CRS (for equality and for a store's attributes) and bounds transforms
with densified edges that fail with a :class:`~lamap.errors.GridError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TypeAlias

import pyproj
from odc.geo.crs import CRS
from pyproj.exceptions import CRSError, ProjError

from lamap.errors import GridError

__all__ = [
    "LONLAT",
    "Bounds",
    "CRSLike",
    "crs_label",
    "normalise_crs",
    "parse_crs",
    "transform_bounds",
]

#: Anything :func:`normalise_crs` accepts: an EPSG code, an authority string, WKT, PROJ.
CRSLike: TypeAlias = "int | str | pyproj.CRS"
#: Projected bounds ``(xmin, ymin, xmax, ymax)`` in the grid CRS, metres.
Bounds: TypeAlias = tuple[float, float, float, float]

#: The CRS of lon/lat bounding boxes (STAC searches, user bboxes).
LONLAT = "EPSG:4326"
# Points per edge when transforming bounds, so a box's curved outline is covered.
_DENSIFY = 21


def normalise_crs(crs: CRSLike) -> str:
    """Return the canonical text of a projected, metre-based CRS.

    Parameters
    ----------
    crs : int or str or pyproj.CRS
        An EPSG code (``3035``), an authority string (``"EPSG:3035"``), WKT or a PROJ string.

    Returns
    -------
    str
        ``"EPSG:<code>"`` where the CRS is exactly an EPSG CRS, its WKT2 otherwise.

    Raises
    ------
    GridError
        If pyproj does not understand it, or it is not projected in metres.
    """
    return _normalise(crs)


@lru_cache(maxsize=256)
def _normalise(crs: CRSLike) -> str:
    label = crs.name if isinstance(crs, pyproj.CRS) else str(crs)
    try:
        parsed = CRS(crs).proj
    except (CRSError, TypeError) as err:
        raise GridError(
            f"crs {crs!r} is not a coordinate reference system pyproj understands ({err}): "
            "give an EPSG code such as 'EPSG:3035' or 'EPSG:32632'"
        ) from None
    if not parsed.is_projected:
        kind = "geographic (degrees)" if parsed.is_geographic else "not projected"
        raise GridError(
            f"crs {label} is {kind}: a lamap grid needs a projected CRS in metres, such as "
            "EPSG:3035 (Europe) or a UTM zone (EPSG:326NN north, EPSG:327NN south)"
        )
    units = sorted({axis.unit_name for axis in parsed.axis_info} - {"metre", "meter"})
    if units:
        raise GridError(
            f"crs {label} has axes in {', '.join(units)}: a lamap grid needs a projected CRS "
            "in metres, such as EPSG:3035 or a UTM zone (EPSG:326NN)"
        )
    # Only an exact match becomes an EPSG code: a look-alike custom CRS keeps its own WKT.
    authority = parsed.to_authority(min_confidence=100)
    if authority is not None and authority[0] == "EPSG":
        return f"EPSG:{authority[1]}"
    return str(parsed.to_wkt())


def parse_crs(crs: str) -> CRS:
    """Return odc-geo's CRS for a normalised CRS text (parsed once per process)."""
    return CRS(crs)


def crs_label(crs: str) -> str:
    """Return short text for messages: ``"EPSG:3035"``, or the name of a CRS without a code."""
    return crs if crs.startswith("EPSG:") else str(CRS(crs).proj.name)


def transform_bounds(source: str, target: str, bounds: Sequence[float]) -> Bounds:
    """Return the envelope of bounds in another CRS, edges densified.

    Parameters
    ----------
    source, target : str
        CRS texts (as :func:`normalise_crs` returns, or :data:`LONLAT`).
    bounds : sequence of float
        ``(xmin, ymin, xmax, ymax)`` in ``source``.

    Returns
    -------
    tuple of float
        ``(xmin, ymin, xmax, ymax)`` in ``target``.

    Raises
    ------
    GridError
        If PROJ cannot transform them, or part of them lies where the projection is undefined.
    """
    left, bottom, right, top = bounds
    try:
        transformer = CRS(source).transformer(target)
        result = transformer.transform_bounds(left, bottom, right, top, densify_pts=_DENSIFY)
    except ProjError as err:
        raise GridError(f"{_cannot(source, target, bounds)} ({err})") from None
    if not all(math.isfinite(value) for value in result):
        raise GridError(
            f"{_cannot(source, target, bounds)}: part of them lies where that projection is "
            "undefined"
        )
    return (float(result[0]), float(result[1]), float(result[2]), float(result[3]))


def _cannot(source: str, target: str, bounds: Sequence[float]) -> str:
    return (
        f"bounds {tuple(bounds)} cannot be transformed from {crs_label(source)} to "
        f"{crs_label(target)}"
    )
