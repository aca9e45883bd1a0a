"""Model weights shipped with lamap."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

__all__ = ["DEMO_WEIGHTS", "demo_weights"]

#: File name of the demo checkpoint inside ``lamap/data``.
DEMO_WEIGHTS = "demo_model.pt"


def demo_weights() -> Path | None:
    """Return the path of the demo checkpoint (trained on the synthetic world), if installed."""
    resource = files("lamap.data").joinpath(DEMO_WEIGHTS)
    if not resource.is_file():
        return None
    with as_file(resource) as path:
        return Path(path)
