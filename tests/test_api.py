"""The public API: ``import lamap`` is light and exposes what the command line does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lamap
from lamap.errors import InputError
from lamap.grid import Grid, get_grid
from lamap.mapping import choose_grid
from lamap.synthetic.world import World


def test_every_public_name_resolves() -> None:
    for name in lamap.__all__:
        assert getattr(lamap, name) is not None, name
    assert "map_lai" in dir(lamap)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lamap.nope  # noqa: B018


def test_import_lamap_loads_neither_torch_nor_dask() -> None:
    code = (
        "import sys, lamap; "
        "print(sorted(m for m in ('torch', 'dask', 'xarray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_grid_choice_accepts_what_the_cli_accepts(tmp_path: Path) -> None:
    assert choose_grid(None) is None
    assert choose_grid("utm32n") == get_grid("utm32n")
    custom = Grid.from_crs("EPSG:32633", resolution=20.0)
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(custom.to_dict()))
    assert choose_grid(str(path)) == custom
    assert choose_grid(None, crs="EPSG:32633", resolution=20.0) == custom
    assert choose_grid("europe", resolution=20.0).resolution == 20.0
    with pytest.raises(InputError, match="not both"):
        choose_grid(custom, resolution=10.0)


def test_plan_map_takes_a_grid_name(tiny_world: World) -> None:
    date = tiny_world.s2_dates[3]
    by_name = lamap.plan_map(tiny_world.bbox, date, catalog=str(tiny_world.root), grid="utm32n")
    by_grid = lamap.plan_map(
        tiny_world.bbox, date, catalog=str(tiny_world.root), grid=get_grid("utm32n")
    )
    assert by_name.item_ids == by_grid.item_ids
    assert by_name.tiles == by_grid.tiles > 0
