"""The models :func:`lamap.train.evaluate.evaluate` scores: loaded, labelled, run on patches.

Each model is a network of a registered architecture (:mod:`lamap.model.registry`), given
in memory or as a checkpoint. Its methods are the outputs its architecture names
(``methods``: the fused model's decoder and both encoder heads; li2025's combination, step 1
and EDCSTFN from each reference alone); two models with the same labels are told apart by
their file names. A checkpoint's feature spec must be one the cache provides
(:meth:`lamap.feature_spec.FeatureSpec.provides`): the labels scored are the cache's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lamap.errors import InputError
from lamap.feature_spec import FeatureSpec
from lamap.model import architecture_of, load_checkpoint

__all__ = ["ModelLike", "ScoredModel", "predict_patches", "resolve_models"]

#: What :func:`resolve_models` takes for one model.
ModelLike = nn.Module | str | os.PathLike[str]
#: Patches per forward pass, by architecture (memory: li2025 runs a Transformer per pixel).
_CHUNK = {"lnb-fused": 16, "li2025": 2}


@dataclass(frozen=True)
class ScoredModel:
    """One model to score.

    Attributes
    ----------
    network : torch.nn.Module
        In eval mode, on the evaluation's device.
    methods : dict
        Output name → method label (unique over every model scored).
    name : str
        The model's label (its ``lai`` method).
    source : str
        Where it came from (a path, or "in memory").
    sha256 : str or None
        The checkpoint's digest.
    """

    network: nn.Module
    methods: dict[str, str]
    name: str
    source: str
    sha256: str | None = None

    @property
    def has_sd(self) -> bool:
        """Whether it predicts a spread."""
        return getattr(self.network, "sigma", None) is not None or getattr(
            getattr(self.network, "fusion", None), "sigma", None) is not None

    @property
    def inputs(self) -> tuple[str, ...]:
        """The cache arrays it reads."""
        return tuple(self.network.input_shapes())  # type: ignore[operator]


def resolve_models(models: ModelLike | Sequence[ModelLike] | None, spec: FeatureSpec,
                   device: torch.device, cache: Path) -> list[ScoredModel]:
    """Load and label the models; refuse one whose inputs the cache does not hold.

    Raises
    ------
    InputError
        If a checkpoint's feature spec is not provided by the cache's ``spec``.
    CheckpointError
        If a checkpoint cannot be read.
    """
    if models is None:
        return []
    given = [models] if isinstance(models, nn.Module | str | os.PathLike) else list(models)
    loaded = [_load(model, spec, device, cache) for model in given]
    labels = [label for model in loaded for label in model.methods.values()]
    clash = {label for label in labels if labels.count(label) > 1}
    stems = [_stem(model) for model in loaded]
    return [_renamed(model, stem if stems.count(stem) == 1 else f"{stem} ({i + 1})")
            if clash & set(model.methods.values()) else model
            for i, (model, stem) in enumerate(zip(loaded, stems, strict=True))]


def _load(model: ModelLike, spec: FeatureSpec, device: torch.device,
          cache: Path) -> ScoredModel:
    methods = dict(architecture_of(model).methods) if isinstance(model, nn.Module) else {}
    if isinstance(model, nn.Module):
        return ScoredModel(model.to(device).eval(), methods, methods["lai"], "in memory")
    loaded = load_checkpoint(model, map_location=device)
    wanted = FeatureSpec.from_dict(loaded.feature_spec)
    if not spec.provides(wanted):
        raise InputError(
            f"checkpoint {model} was trained with feature spec {wanted.to_dict()} but the "
            f"cache {cache} holds {spec.to_dict()}: evaluate on a cache built with the "
            "checkpoint's feature spec"
        )
    methods = dict(loaded.architecture.methods)
    return ScoredModel(loaded.model.eval(), methods, methods["lai"], str(model), loaded.sha256)


def _stem(model: ScoredModel) -> str:
    return Path(model.source).stem if model.source != "in memory" else "model"


def _renamed(model: ScoredModel, stem: str) -> ScoredModel:
    methods = {key: f"{stem}: {label}" for key, label in model.methods.items()}
    return ScoredModel(model.network, methods, methods["lai"], model.source, model.sha256)


def predict_patches(model: ScoredModel, data: Mapping[str, np.ndarray], spec: FeatureSpec
                    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Run a model on a batch of cache patches.

    Returns
    -------
    predictions : dict
        Method label → ``(B, H, W)`` LAI in m²/m², clipped to the spec's range.
    sd : numpy.ndarray or None
        ``(B, H, W)`` spread of the model's LAI in m²/m², None without a spread head.
    """
    net = model.network
    device = next(net.parameters()).device
    chunk = _CHUNK.get(architecture_of(net).name, 8)
    rows = len(data["target"])
    parts = [_forward(net, data, model.inputs, slice(i, i + chunk), device)
             for i in range(0, rows, chunk)]
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    preds = {label: np.clip(out[key] * spec.lai_scale, *spec.lai_clip)
             for key, label in model.methods.items()}
    sd = out["sd"] * spec.lai_scale if "sd" in out else None
    return preds, sd


def _forward(net: nn.Module, data: Mapping[str, np.ndarray], names: Sequence[str],
             rows: slice, device: torch.device) -> dict[str, np.ndarray]:
    inputs = {k: torch.from_numpy(np.asarray(data[k][rows], dtype=np.float32)).to(device)
              for k in names}
    with torch.inference_mode():
        out = net.outputs(**inputs)  # type: ignore[operator]
    return {key: value[:, 0].float().cpu().numpy() for key, value in out.items()}
