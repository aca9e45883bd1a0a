"""The losses of the fused network (MODEL.md): masked MSE and the end-to-end loss.

The end-to-end loss supervises the decoder and, with weights :data:`ALPHA` and :data:`BETA`,
the heads of both encoders: ``dec + α·enc1 + β·enc2``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lamap.model.network import Prediction

__all__ = ["ALPHA", "BETA", "fused_loss", "gaussian_nll", "masked_mse"]

#: Weight of the encoder-1 (radar) head in the end-to-end loss (MODEL.md).
ALPHA = 0.1
#: Weight of the encoder-2 (optical history) head in the end-to-end loss (MODEL.md).
BETA = 0.15


def masked_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean squared error over pixels with non-zero weight.

    Parameters
    ----------
    pred : torch.Tensor
        ``(B, 1, H, W)`` prediction.
    target, weight : torch.Tensor
        ``(B, H, W)`` or ``(B, 1, H, W)``: target and per-pixel weight (the loss mask, 0 or
        1, or larger weights for, e.g., samples with a cloudy past).

    Returns
    -------
    torch.Tensor
        Scalar ``sum(w·(pred - target)²) / sum(w)``; 0 when every weight is 0.
    """
    target, weight = _as_map(target), _as_map(weight).to(pred.dtype)
    total = (weight * (pred - target) ** 2).sum()
    return total / weight.sum().clamp_min(torch.finfo(pred.dtype).tiny)


def fused_loss(pred: Prediction, target: Tensor, weight: Tensor, *, alpha: float = ALPHA,
               beta: float = BETA) -> Tensor:
    """End-to-end loss with intermediate supervision: ``dec + α·enc1 + β·enc2`` (masked MSEs).

    Parameters
    ----------
    pred : Prediction
        Output of :meth:`lamap.model.FusedLAINet.forward`.
    target, weight : torch.Tensor
        As in :func:`masked_mse`.
    alpha, beta : float
        Weights of the encoder heads (MODEL.md: 0.1 and 0.15).

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    losses = [masked_mse(p, target, weight) for p in pred]
    return losses[0] + alpha * losses[1] + beta * losses[2]


def gaussian_nll(mean: Tensor, sd: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Masked Gaussian negative log-likelihood of ``target`` under ``N(mean, sd²)``.

    ``sum(w · (log sd + (target - mean)² / (2 sd²))) / sum(w)`` (the constant dropped). The
    spread heads are trained with it while the mean is frozen (``mean`` detached), where
    β-NLL's reweighting of the mean's gradient has nothing to act on.

    Parameters
    ----------
    mean, sd : torch.Tensor
        ``(B, 1, H, W)`` prediction and its spread (> 0).
    target, weight : torch.Tensor
        As in :func:`masked_mse`.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    target, weight = _as_map(target), _as_map(weight).to(mean.dtype)
    nll = torch.log(sd) + (target - mean) ** 2 / (2.0 * sd**2)
    return (weight * nll).sum() / weight.sum().clamp_min(torch.finfo(mean.dtype).tiny)


def _as_map(tensor: Tensor) -> Tensor:
    return tensor.unsqueeze(1) if tensor.dim() == 3 else tensor
