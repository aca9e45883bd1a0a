"""Model weights shipped with lamap, one checkpoint per registered architecture."""

from __future__ import annotations

import os
from importlib.resources import as_file, files
from pathlib import Path

from lamap.errors import InputError

__all__ = ["DEMO_FILES", "DEMO_WEIGHTS", "demo_weights", "resolve_model"]

#: File name of the demo checkpoint inside ``lamap/data`` (the fused model, the default).
DEMO_WEIGHTS = "demo_model.pt"
#: The demo checkpoint of each architecture, trained on the synthetic world.
DEMO_FILES = {"lnb-fused": DEMO_WEIGHTS, "li2025": "demo_li2025.pt"}


def demo_weights(architecture: str = "lnb-fused") -> Path | None:
    """Return the path of an architecture's demo checkpoint, if installed.

    Raises
    ------
    InputError
        If lamap ships no demo weights for ``architecture``.
    """
    if architecture not in DEMO_FILES:
        raise InputError(f"no demo weights for {architecture!r}: lamap ships "
                         f"{', '.join(DEMO_FILES)}")
    resource = files("lamap.data").joinpath(DEMO_FILES[architecture])
    if not resource.is_file():
        return None
    with as_file(resource) as path:
        return Path(path)


def resolve_model(model: str | os.PathLike[str] | None) -> str:
    """Return the checkpoint path a ``--model`` value names.

    A path is returned as given; an architecture's name that is not a file (``lnb-fused``,
    ``li2025``) names its shipped demo weights; None: the fused model's demo weights.

    Raises
    ------
    InputError
        If no model is given and no demo weights are installed.
    """
    if model is not None:
        text = os.fspath(model)
        if text in DEMO_FILES and not os.path.exists(text):
            found = demo_weights(text)
            return str(found) if found is not None else text
        return text
    path = demo_weights()
    if path is None:
        raise InputError(
            "no model given and no demo weights are installed; pass --model PATH "
            "(a checkpoint written by `lamap train`)"
        )
    return str(path)
