"""The house rules of the package, checked on its source (issue: a house a newcomer can live in).

* no module in ``lamap/`` over 650 lines;
* mapping and training reach the demo world only through :mod:`lamap.catalog.local`;
* no private name (``_x``) imported from another lamap module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lamap"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 650


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """Return ``(module, name or None, line)`` for every import of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
    return found


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 50 and PACKAGE.joinpath("mapping.py") in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_the_line_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (> {MAX_LINES})"


def _pipeline(path: Path) -> bool:
    name = _name(path)
    return name == "lamap.mapping" or name.startswith(("lamap.train", "lamap.runner"))


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _pipeline(p)], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_mapping_and_training_reach_the_demo_world_only_through_catalog_local(path: Path) -> None:
    bad = [
        f"line {line}: {module}"
        for module, name, line in _imports(path)
        if module.startswith("lamap.synthetic")
        or (module == "lamap" and name == "synthetic")
        or module.startswith("lamap.catalog.server")
    ]
    assert not bad, f"{_name(path)} imports the demo world directly: {bad}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _inside(importer: str, module: str) -> bool:
    """A package's own private parts (``lamap.grid._checks`` from ``lamap.grid.lattice``)."""
    package = importer.rsplit(".", 1)[0]
    if package == "lamap":  # a top-level module: only its own names
        return module == importer
    return module == importer or module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_is_imported_across_modules(path: Path) -> None:
    bad = [
        f"line {line}: from {module} import {name}"
        for module, name, line in _imports(path)
        if module.startswith("lamap") and name is not None and _private(name)
        and not _inside(_name(path), module)
    ]
    assert not bad, f"{_name(path)} imports private names: {bad}"


def test_the_rules_catch_what_they_are_meant_to(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from lamap.store import _probe\nimport lamap.synthetic.world\n")
    found = _imports(sample)
    assert ("lamap.store", "_probe", 1) in found and ("lamap.synthetic.world", None, 2) in found
    assert _private("_probe") and not _private("__version__")
    assert _inside("lamap.grid.lattice", "lamap.grid")
    assert not _inside("lamap.mapping", "lamap.store")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_imports(path: Path) -> None:
    """mypy ignores missing modules (``ignore_missing_imports``): importing catches them."""
    import importlib

    importlib.import_module(_name(path))
