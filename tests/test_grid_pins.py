"""Pinned grid values: tile ids, bounds, windows and lon/lat boxes must never change.

``tests/data/grid_pins.json`` holds, for a seeded sample of 1,000 tiles of the ``europe``
grid (plus its corners), a sample of ``utm32n`` tiles and every tile of a grid read from a
JSON file, what the grid code produced when the pins were written: floats as ``repr`` text,
so the comparison is byte-identical. Stores written by one lamap version are read and
resumed by the next, so any change here is a breaking change.

Regenerate (only for a deliberate, documented break) with
``python -m tests.test_grid_pins``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lamap.grid import Grid, Tile, get_grid

PINS = Path(__file__).parent / "data" / "grid_pins.json"
HALO = 42
SEED = 20_240_611
#: The grid written to a JSON file: a custom LAEA CRS (WKT, no EPSG code), partial edge tiles.
JSON_GRID = {
    "name": "pinned-json",
    "crs": "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m",
    "resolution": 20.0,
    "origin": [4_300_000.0, 3_220_000.0],
    "shape": [1234, 987],
    "chunk": 50,
    "shard": 100,
    "tile": 300,
}
#: Lon/lat boxes whose windows are pinned on each grid, for every snap.
BBOXES = {
    "europe": ["11.0,48.0,11.1,48.05", "-18.2,27.6,-18.0,27.8", "24.9,60.1,25.3,60.3"],
    "utm32n": ["11.5,48.1,11.6,48.2", "6.01,50.0,6.5,50.2"],
    "json": ["9.75,51.95,9.85,52.0", "9.6,51.8,9.9,52.2"],
}
SNAPS = ("pixel", "chunk", "shard", "tile")


def floats(values: Any) -> list[str]:
    """Floats as their repr text, so equality is byte-identity."""
    return [repr(float(value)) for value in values]


def window(win: Any) -> list[int]:
    return [win.row_start, win.row_stop, win.col_start, win.col_stop]


def tile_pin(tile: Tile) -> list[Any]:
    """Everything a tile exposes that a store or a plan depends on."""
    grid = tile.grid
    halo = tile.with_halo(HALO)
    return [
        tile.row,
        tile.col,
        tile.id,
        floats(tile.bounds),
        window(tile.window),
        floats(tile.lonlat_bounds().to_tuple()),
        floats(tile.transform[:6]),
        floats(grid.window_bounds(halo)),
        [window(shard) for shard in tile.shards()],
    ]


def grid_pin(grid: Grid, tiles: list[Tile], bboxes: list[str]) -> dict[str, Any]:
    first, last = grid.x_coords(grid.window)[[0, -1]], grid.y_coords(grid.window)[[0, -1]]
    return {
        "dict": grid.to_dict(),
        "bounds": floats(grid.bounds),
        "transform": floats(grid.transform[:6]),
        "tiles_shape": list(grid.tiles_shape),
        "lonlat_extent": floats(grid.lonlat_extent()),
        "coords": floats([*first, *last]),
        "windows": {
            f"{bbox} {snap}": window(grid.window_for_bbox(bbox, snap=snap))  # type: ignore[arg-type]
            for bbox in bboxes
            for snap in SNAPS
        },
        "projected": {bbox: floats(grid.project_bbox(bbox)) for bbox in bboxes},
        "tiles": [tile_pin(tile) for tile in tiles],
    }


def sample(grid: Grid, count: int, seed: int) -> list[Tile]:
    """A seeded sample of tiles over the whole lattice, plus its four corners, sorted."""
    rows, cols = grid.tiles_shape
    flat = np.random.default_rng(seed).choice(rows * cols, size=count, replace=False)
    cells = {(int(i) // cols, int(i) % cols) for i in flat}
    cells |= {(0, 0), (0, cols - 1), (rows - 1, 0), (rows - 1, cols - 1)}
    return [grid.get_tile(row, col) for row, col in sorted(cells)]


def json_grid(directory: Path) -> Grid:
    path = directory / "pinned.json"
    path.write_text(json.dumps(JSON_GRID), encoding="utf-8")
    return get_grid(path)


def named_grids(directory: Path) -> dict[str, Grid]:
    return {
        "europe": get_grid("europe"),
        "utm32n": get_grid("utm32n"),
        "json": json_grid(directory),
    }


def positions(pinned: dict[str, Any]) -> list[tuple[int, int]]:
    return [(entry[0], entry[1]) for entry in pinned["tiles"]]


def current(pins: dict[str, Any], directory: Path) -> dict[str, Any]:
    """What the code produces now, for the tiles named in ``pins``."""
    grids = named_grids(directory)
    return {
        name: grid_pin(grid, [grid.get_tile(*cell) for cell in positions(pins[name])], BBOXES[name])
        for name, grid in grids.items()
    }


@pytest.fixture(scope="module")
def pins() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PINS.read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", ["europe", "utm32n", "json"])
def test_grid_matches_pins(pins: dict[str, Any], tmp_path: Path, name: str) -> None:
    now = current(pins, tmp_path)[name]
    pinned = pins[name]
    assert {k: v for k, v in now.items() if k != "tiles"} == {
        k: v for k, v in pinned.items() if k != "tiles"
    }
    for got, expected in zip(now["tiles"], pinned["tiles"], strict=True):
        assert got == expected, f"tile {expected[2]} changed"


def test_pins_cover_the_europe_grid(pins: dict[str, Any]) -> None:
    cells = positions(pins["europe"])
    assert len(cells) >= 1000
    rows, cols = zip(*cells, strict=True)
    assert (min(rows), max(rows), min(cols), max(cols)) == (0, 229, 0, 324)
    grid = get_grid("europe")
    assert [grid.tile_from_id(entry[2]).row for entry in pins["europe"]["tiles"]] == list(rows)


def write_pins(directory: Path) -> dict[str, Any]:
    """Compute the pins from scratch (the sample is drawn here, once)."""
    grids = named_grids(directory)
    counts = {"europe": 1000, "utm32n": 40, "json": 0}
    out = {}
    for name, grid in grids.items():
        tiles = sample(grid, counts[name], SEED) if counts[name] else list(grid.iter_tiles())
        out[name] = grid_pin(grid, tiles, BBOXES[name])
    return out


def dump(data: dict[str, Any]) -> str:
    """Compact JSON with one tile per line, so a change shows as a readable diff."""
    parts = []
    for name, pinned in data.items():
        head = json.dumps({k: v for k, v in pinned.items() if k != "tiles"}, separators=(",", ":"))
        tiles = ",\n".join(json.dumps(t, separators=(",", ":")) for t in pinned["tiles"])
        parts.append(f'{json.dumps(name)}:{head[:-1]},"tiles":[\n{tiles}\n]}}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = write_pins(Path(tmp))
    PINS.parent.mkdir(exist_ok=True)
    PINS.write_text(dump(data), encoding="utf-8")
    print(f"wrote {PINS} ({PINS.stat().st_size} bytes)")
