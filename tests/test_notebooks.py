"""The notebooks run top to bottom against a demo world (CI executes them)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lamap.synthetic.world import World

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["read_store.ipynb", "train_walkthrough.ipynb"])
def test_notebook_runs(name: str, tiny_world: World, model: Path, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMAP_DEMO_WORLD", str(tiny_world.root))
    monkeypatch.setenv("LAMAP_DEMO_STORE", str(tmp_path / "lai.zarr"))
    monkeypatch.setenv("LAMAP_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("LAMAP_MODEL", os.environ.get("LAMAP_NOTEBOOK_MODEL", str(model)))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "the notebook produced no output"
