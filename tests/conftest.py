"""Shared test fixtures: paths to ../shared, tiny seeded worlds, a local STAC API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("LAMAP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures" / "stac"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        raise RuntimeError(f"tests need ../shared next to the repository (looked in {SHARED})")
    return SHARED
