"""Named grids, UTM zone names, grid JSON files and the ``--grid``/``--crs`` choice.

The ``europe`` preset
---------------------
EPSG:3035 (ETRS89-extended / LAEA Europe) at 10 m on the extent of the EEA reference grid
used by the Copernicus Land Monitoring Service for its EEA39 products (CORINE Land Cover
rasters, High Resolution Layers): x 900 000 to 7 400 000 m, y 900 000 to 5 500 000 m, that is
65 000 x 46 000 pixels at 100 m, or 460 000 rows x 650 000 columns at 10 m. Its pixels
coincide with those of the CLMS 10 m layers. It covers the EEA39 countries from the Azores,
Madeira and the Canary Islands to eastern Türkiye, Cyprus and Iceland, and the lon/lat
envelope of the grid is roughly 56.5° W to 72.9° E, 24.3° N to 72.6° N. Svalbard (y above
6 000 000 m) lies outside it, as in the CLMS products.

Block edges: chunk 500 px (5 km), shard 1000 px (10 km), tile 2000 px (20 km).

* All three nest in the EEA reference grid: a shard is one EEA 10 km cell, a tile 2 x 2 of
  them, and 5 x 5 tiles make one EEA 100 km cell, since the origin is a multiple of 100 km.
* A 500 px chunk of float32 LAI is 1 MB before compression: small enough for a point or
  time-series read (``ds.lai.sel(x=..., y=..., method="nearest")`` reads one chunk per
  date), large enough not to flood an object store with tiny objects.
* A 1000 px shard is one 4 MB write per date and variable (before compression).
* A 2000 px tile is 4 Mpx: a field-scale request computes at most a few tiles, the halo of
  the network (about 42 px, MODEL.md) adds about 10 % per tile, losing a tile to a crash
  loses little work, and the full extent has 230 x 325 = 74 750 tiles, few enough for a
  bookkeeping array.
* Every block offset is a multiple of 500, hence of the network's down-sampling factor 4,
  which the seamless-tiling contract requires.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from lamap.errors import GridError
from lamap.grid.crs import CRSLike
from lamap.grid.lattice import DEFAULT_CHUNK, DEFAULT_SHARD, DEFAULT_TILE, Grid

__all__ = ["DEFAULT_GRID", "EUROPE", "GRIDS", "get_grid", "resolve_grid"]

#: The EEA39 grid: EPSG:3035, 10 m, EEA reference grid extent (see the module docstring).
EUROPE = Grid(
    crs="EPSG:3035",
    resolution=10.0,
    origin=(900_000.0, 5_500_000.0),
    shape=(460_000, 650_000),
    chunk=DEFAULT_CHUNK,
    shard=DEFAULT_SHARD,
    tile=DEFAULT_TILE,
    name="europe",
)

#: Named grid presets.
GRIDS: Mapping[str, Grid] = MappingProxyType({"europe": EUROPE})

#: The grid used when none is given.
DEFAULT_GRID = "europe"

_UTM_NAME = re.compile(r"^utm(\d{1,2})([ns])$")


def get_grid(name_or_path: str | Path) -> Grid:
    """Return a grid by preset name, UTM zone name or JSON file.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A key of :data:`GRIDS` (``"europe"``), ``"utmNNn"``/``"utmNNs"`` for a WGS 84 UTM zone
        (e.g. ``"utm32n"``), or a ``.json`` file holding :meth:`Grid.to_dict` output.

    Returns
    -------
    Grid

    Raises
    ------
    GridError
        If the name is unknown or the file cannot be read as a grid.
    """
    text = str(name_or_path)
    if text in GRIDS:
        return GRIDS[text]
    match = _UTM_NAME.match(text.lower())
    if match is not None:
        return Grid.utm(int(match[1]), south=match[2] == "s")
    path = Path(text)
    if path.suffix == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise GridError(f"cannot read grid file {path}: {err}") from err
        return Grid.from_dict(data)
    raise GridError(
        f"unknown grid {text!r}: use one of {sorted(GRIDS)}, a UTM zone such as 'utm32n' or "
        "'utm33s', or the path of a .json file written from Grid.to_dict()"
    )


def resolve_grid(
    *,
    grid: str | Path | None = None,
    crs: CRSLike | None = None,
    resolution: float | None = None,
) -> Grid:
    """Choose the grid from the command-line options ``--grid``, ``--crs``, ``--resolution``.

    Parameters
    ----------
    grid : str or pathlib.Path, optional
        A name or file for :func:`get_grid`; :data:`DEFAULT_GRID` when neither it nor
        ``crs`` is given.
    crs : int or str or pyproj.CRS, optional
        A projected CRS; the grid covers its area of use (:meth:`Grid.from_crs`).
    resolution : float, optional
        Pixel edge in metres: overrides the grid's (:meth:`Grid.with_resolution`) or sets
        the ``crs`` grid's (10 m by default).

    Returns
    -------
    Grid

    Raises
    ------
    GridError
        If both ``grid`` and ``crs`` are given, or either is invalid.
    """
    if grid is not None and crs is not None:
        raise GridError(
            f"give either --grid ({grid}) or --crs ({crs}), not both: --grid names a whole "
            "grid, --crs defines one over the CRS's area of use"
        )
    if crs is not None:
        return Grid.from_crs(crs, resolution=10.0 if resolution is None else resolution)
    chosen = get_grid(DEFAULT_GRID if grid is None else grid)
    return chosen if resolution is None else chosen.with_resolution(resolution)
