"""EDCSTFN's compound loss for li2025's step 2: MSE + feature loss + α·(1 − MS-SSIM).

Tan et al. (2019) train EDCSTFN with the content (MSE) loss, a feature loss (the MSE between
the features a pre-trained autoencoder extracts from the prediction and from the truth) and
a vision loss ``α·(1 − MS-SSIM)`` with α = 0.8. lamap's targets have holes (clouds): the
MSE is masked, and for the two image losses the target is completed with the prediction
itself where it is not a label (``target_filled``), so a hole adds no error and no
structure.

MS-SSIM follows Wang, Simoncelli and Bovik (2003) with a Gaussian window (σ = 1.5, 7 px):
contrast-structure terms at every scale and luminance at the coarsest, combined with the
standard scale weights truncated to :data:`SCALES` scales (patches of 32 px hold 3) and
renormalised. It is computed in float32 even under bfloat16 autocast (local variances are
differences of squares, which bfloat16 cancels), and terms are clipped to a small positive
floor (:data:`_FLOOR`), not to 0: the gradient of a fractional power at 0 is infinite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import Tensor

from lamap.model.li2025 import Li2025Net
from lamap.model.losses import masked_mse

__all__ = ["ALPHA_SSIM", "SCALES", "compound_loss", "ms_ssim"]

#: Weight of the vision loss (EDCSTFN: 0.8).
ALPHA_SSIM = 0.8
#: Scales of MS-SSIM.
SCALES = 3
#: The standard MS-SSIM scale weights (Wang et al. 2003).
_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Dynamic range on the LAI/5 scale (LAI 0-8 m²/m²).
_RANGE = 8.0 / 5.0
#: Smallest value of a term raised to a fractional power.
_FLOOR = 1e-4


def _gaussian(size: int = 7, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _ssim_terms(x: Tensor, y: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    c1, c2 = (0.01 * _RANGE) ** 2, (0.03 * _RANGE) ** 2
    mx, my = F.conv2d(x, window), F.conv2d(y, window)
    sxx = F.conv2d(x * x, window) - mx**2
    syy = F.conv2d(y * y, window) - my**2
    sxy = F.conv2d(x * y, window) - mx * my
    luminance = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    contrast = (2 * sxy + c2) / (sxx + syy + c2)
    return luminance.mean(dim=(1, 2, 3)), contrast.mean(dim=(1, 2, 3))


def ms_ssim(x: Tensor, y: Tensor, scales: int = SCALES) -> Tensor:
    """Mean MS-SSIM of two ``(B, 1, H, W)`` batches on the LAI/5 scale (1 when equal).

    Raises
    ------
    ValueError
        If the images are too small for ``scales`` scales (7 px at the coarsest).
    """
    if min(x.shape[-2:]) // 2 ** (scales - 1) < 7:
        raise ValueError(f"MS-SSIM with {scales} scales needs images of at least "
                         f"{7 * 2 ** (scales - 1)} px, got {tuple(x.shape[-2:])}")
    with torch.autocast(x.device.type, enabled=False):
        return _ms_ssim(x.float(), y.float(), scales)


def _ms_ssim(x: Tensor, y: Tensor, scales: int) -> Tensor:
    weights = torch.tensor(_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    window = _gaussian().to(x.device, x.dtype)
    values = []
    for scale in range(scales):
        luminance, contrast = _ssim_terms(x, y, window)
        values.append(contrast.clamp_min(_FLOOR))
        if scale < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    values[-1] = (luminance * values[-1]).clamp_min(_FLOOR)
    stacked = torch.stack(values, dim=1)  # B, scales
    return torch.prod(stacked ** weights, dim=1).mean()


def compound_loss(model: Li2025Net, pred: Tensor, target: Tensor, weight: Tensor,
                  *, alpha: float = ALPHA_SSIM) -> Tensor:
    """EDCSTFN's loss of one prediction: masked MSE + feature loss + α·(1 − MS-SSIM).

    Parameters
    ----------
    model : Li2025Net
        Its ``feature_net`` (trained in the ``features`` stage, frozen) gives the features.
    pred : torch.Tensor
        ``(B, 1, H, W)`` prediction, LAI/5.
    target, weight : torch.Tensor
        ``(B, 1, H, W)`` label and loss mask (or weight).

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    filled = torch.where(weight > 0, target, pred.detach())
    encoder = model.feature_net.encoder
    feature = F.mse_loss(encoder(pred), encoder(filled))
    vision = 1.0 - ms_ssim(pred.float(), filled.float())
    return masked_mse(pred, target, weight) + feature + alpha * vision
