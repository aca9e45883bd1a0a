"""What each training stage of each architecture trains, and the loss it minimises.

The stages are declared in the model registry (:mod:`lamap.model.registry`); this module
gives them their parts and losses, for the trainer (:mod:`lamap.train.loop`):

* ``lnb-fused``: ``enc1`` and ``enc2`` (each encoder with its head, masked MSE), ``fused``
  (end to end, ``dec + α·enc1 + β·enc2``), ``sigma`` (the spread head);
* ``li2025``: ``step1`` (the CNN-Transformer, masked MSE of its LAI at D and, where the
  optical reference is a label, at t-2 and t-1), ``features`` (the feature-loss
  autoencoder, reconstructing S2 LAI), ``step2`` (EDCSTFN with step 1 frozen, the compound
  loss of the combined prediction plus the mean of each reference's), ``sigma``.

A stage trains only its own parts: the others are frozen (no gradient) and in eval mode, so
their BatchNorm statistics do not move. The ``sigma`` stages train the spread head with the
Gaussian negative log-likelihood of the target under ``N(mean, σ²)``, the mean frozen
(:func:`lamap.model.gaussian_nll`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lamap.feature_spec import FeatureSpec
from lamap.model import FusedLAINet, Li2025Net, architecture_of, fused_loss, masked_mse
from lamap.model.li2025_loss import compound_loss
from lamap.model.losses import gaussian_nll
from lamap.model.network import Prediction

__all__ = ["INITIAL_SD", "batch_keys", "init_biases", "prepare_stage", "stage_loss",
           "stage_parameters"]

#: The spread heads start at this σ (LAI/5 scale: 0.5 m²/m²).
INITIAL_SD = 0.1

_PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "lnb-fused": {"enc1": ("enc1",), "enc2": ("enc2",), "fused": ("enc1", "enc2", "decoder"),
                  "sigma": ("sigma",)},
    "li2025": {"step1": ("step1",), "features": ("feature_net",),
               "step2": ("fusion.fine", "fusion.residual", "fusion.decoder", "fusion.out"),
               "sigma": ("fusion.sigma",)},
}
_HEADS: dict[str, dict[str, tuple[str, ...]]] = {
    "lnb-fused": {"enc1": ("enc1.head",), "enc2": ("enc2.head",), "fused": ("decoder.out",),
                  "sigma": ("sigma.net.2",)},
    "li2025": {"step1": ("step1.head",), "step2": ("fusion.out",), "sigma": ("fusion.sigma.2",)},
}


def _parts(model: nn.Module, stage: str) -> list[nn.Module]:
    names = _PARTS[architecture_of(model).name].get(stage)
    if names is None:
        raise ValueError(f"{architecture_of(model).name} has no training stage {stage!r}")
    return [model.get_submodule(name) for name in names if _has(model, name)]


def _has(model: nn.Module, name: str) -> bool:
    try:
        return model.get_submodule(name) is not None
    except AttributeError:
        return False


def stage_parameters(model: nn.Module, stage: str) -> list[nn.Parameter]:
    """Return the parameters ``stage`` trains (empty when the model lacks the part)."""
    return [p for part in _parts(model, stage) for p in part.parameters()]  # type: ignore[misc]


def prepare_stage(model: nn.Module, stage: str) -> None:
    """Put the stage's parts in train mode with gradients, every other part frozen in eval."""
    model.eval()
    model.requires_grad_(False)
    for part in _parts(model, stage):
        part.train()
        part.requires_grad_(True)


def batch_keys(model: nn.Module) -> tuple[str, ...]:
    """Keys every training batch of ``model`` needs: its inputs, target, weight, cloudy."""
    arch = architecture_of(model)
    return (*arch.spatial_inputs, *arch.vector_inputs, "target", "weight", "cloudy")


def init_biases(model: nn.Module, mean: float, stages: Sequence[str]) -> None:
    """Start the heads of ``stages`` at the mean target (the spread heads at INITIAL_SD)."""
    heads = _HEADS[architecture_of(model).name]
    start_sd = math.log(math.expm1(INITIAL_SD))  # softplus⁻¹
    with torch.no_grad():
        for stage in stages:
            for name in heads.get(stage, ()):
                if _has(model, name):
                    bias: Any = model.get_submodule(name).bias
                    if bias is not None:
                        bias.fill_(start_sd if stage == "sigma" else mean)


def stage_loss(model: nn.Module, batch: Mapping[str, Tensor], stage: str, weight: Tensor, *,
               alpha: float = 0.1, beta: float = 0.15,
               spec: FeatureSpec | None = None) -> tuple[Tensor, Tensor]:
    """Compute the loss a stage minimises on one batch, and the prediction it scores.

    Returns
    -------
    loss : torch.Tensor
        Scalar, float32.
    prediction : torch.Tensor
        ``(B, 1, H, W)`` LAI/5 of the part the stage trains (the model's ``lai`` for the
        end-to-end and spread stages), float32.
    """
    if isinstance(model, FusedLAINet):
        return _fused_loss(model, batch, stage, weight, alpha, beta)
    assert isinstance(model, Li2025Net)
    return _li2025_loss(model, batch, stage, weight, spec or FeatureSpec())


def _fused_loss(model: FusedLAINet, batch: Mapping[str, Tensor], stage: str, weight: Tensor,
                alpha: float, beta: float) -> tuple[Tensor, Tensor]:
    target = batch["target"]
    if stage == "enc1":
        pred = model.forward_enc1(batch["s1"], batch["masks"], batch["season"]).float()
        return masked_mse(pred, target, weight), pred
    if stage == "enc2":
        pred = model.forward_enc2(batch["lai"], batch["masks"], batch["season"]).float()
        return masked_mse(pred, target, weight), pred
    out = model.outputs(batch["s1"], batch["lai"], batch["masks"], batch["season"])
    if stage == "sigma":
        mean = out["lai"].float().detach()
        return gaussian_nll(mean, out["sd"].float(), target, weight), mean
    heads = Prediction(out["lai"].float(), out["enc1"].float(), out["enc2"].float())
    return fused_loss(heads, target, weight, alpha=alpha, beta=beta), heads.lai


def _inputs(model: Li2025Net, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: batch[name] for name in model.input_shapes()}


def past_label_weights(masks: Tensor, spec: FeatureSpec) -> Tensor:
    """Where each past LAI is a label: ``valid`` less the classes that make none (shadows).

    Parameters
    ----------
    masks : torch.Tensor
        ``(B, S, C, H, W)`` mask channels.
    spec : FeatureSpec
        Their layout (``valid`` then ``onehot_classes``).

    Returns
    -------
    torch.Tensor
        ``(B, S, H, W)`` float 0/1.
    """
    keep = masks[:, :, 0] > 0.5
    for i, cls in enumerate(spec.onehot_classes, start=1):
        if cls in spec.valid_classes and cls not in spec.target_classes:
            keep &= masks[:, :, i] < 0.5
    return keep.float()


def _li2025_loss(model: Li2025Net, batch: Mapping[str, Tensor], stage: str, weight: Tensor,
                 spec: FeatureSpec) -> tuple[Tensor, Tensor]:
    inputs, target = _inputs(model, batch), batch["target"]
    if stage == "features":
        pred = model.feature_net(target).float()
        return masked_mse(pred, target, weight), pred
    if stage == "step1":
        coarse = model.coarse(*(inputs[k] for k in ("s1_series", "s1_series_valid", "s1_days",
                                                     "past_days", "season"))).float()
        past = past_label_weights(batch["masks"], spec)
        loss = masked_mse(coarse[:, -1:], target, weight)
        for k in range(past.shape[1]):
            loss = loss + masked_mse(coarse[:, k:k + 1], batch["lai"][:, k:k + 1],
                                     past[:, k:k + 1])
        return loss / (1 + past.shape[1]), coarse[:, -1:]
    with torch.no_grad():
        coarse = model.coarse(*(inputs[k] for k in ("s1_series", "s1_series_valid", "s1_days",
                                                     "past_days", "season")))
    out = model.outputs(**inputs, coarse=coarse)
    if stage == "sigma":
        mean = out["lai"].float().detach()
        return gaussian_nll(mean, out["sd"].float(), target, weight), mean
    refs = [name for name in out if name.startswith("ref_")]
    loss = compound_loss(model, out["lai"].float(), target, weight)
    loss = loss + sum(compound_loss(model, out[r].float(), target, weight)
                      for r in refs) / len(refs)
    return loss, out["lai"].float()


def describe(stages: Sequence[str], arch: Any) -> str:
    """One line per stage: its name and what it trains (for logs)."""
    found = {s.name: s.trains for s in arch.stages}
    return "; ".join(f"{name}: {found.get(name, '?')}" for name in stages)
