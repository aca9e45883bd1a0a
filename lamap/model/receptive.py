"""The receptive field of a network, measured with gradients, and the halo it needs.

A map computed in overlapping blocks equals the map computed in one piece when each block
carries a halo of at least the receptive-field radius (:func:`recommended_halo`), rounded up
to the down-sampling factor so block offsets stay on the pooling lattice.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from lamap.errors import InputError
from lamap.model.network import check_spatial
from lamap.model.registry import architecture_of, seeded_network

__all__ = ["RADIUS_KEY", "config_radius", "receptive_field_radius", "recommended_halo"]

#: Where a checkpoint records its network's radius (``extra``), so maps need not measure it.
RADIUS_KEY = "receptive_radius"


def receptive_field_radius(model: Any, *, size: int = 128, seed: int = 0) -> int:
    """Measure the receptive-field radius of ``model`` with gradients, in pixels.

    For an output pixel at each of the :attr:`~FusedLAINet.downsampling` phases (positions
    modulo the down-sampling factor) near the centre of a random ``size`` × ``size`` input, the
    gradient of that pixel with respect to every spatial input is computed in eval mode (so
    BatchNorm does not mix the batch); the radius is the largest Chebyshev distance from the
    output pixel to an input pixel with a non-zero gradient. Outputs then do not depend on
    inputs farther away than the radius. The model's weights, gradients and train/eval mode
    are left as they were.

    Parameters
    ----------
    model : torch.nn.Module
        The network to measure (any registered architecture).
    size : int
        Side of the square test input; a multiple of the down-sampling factor, large enough
        that the receptive field stays inside it (128 for the default network).
    seed : int
        Seed of the random inputs.

    Returns
    -------
    int
        The radius: 43 for the default network (42 for output pixels at multiples of 4,
        MODEL.md's figure; 43 for the other phases).

    Raises
    ------
    InputError
        If ``size`` is not a multiple of the factor, or too small to hold the receptive field.
    """
    check_spatial((size, size), int(model.downsampling))
    radius = _measure_radius(model, size, seed)
    if radius is None:
        raise InputError(
            f"the receptive field of this model reaches the border of a {size}×{size} input: "
            f"measure with a larger size, e.g. size={2 * size}"
        )
    return radius


def recommended_halo(model: Any) -> int:
    """Smallest multiple of the down-sampling factor that covers the receptive field.

    This is the ``depth`` to give :func:`dask.array.map_overlap` so that a map computed in
    blocks (offsets multiples of the factor) equals the map computed in one piece. The radius
    is measured once per architecture on a seeded untrained model of the same config (the
    support of the receptive field depends on the architecture, not on trained weights), and
    cached.

    A loaded checkpoint that records its radius (training writes it in ``extra``, key
    :data:`RADIUS_KEY`) is not measured again: a measurement of the full default network
    takes 15-40 s of CPU, which every ``lamap map`` call would pay.

    Parameters
    ----------
    model : torch.nn.Module, LoadedModel or config
        The network, a loaded checkpoint, or a config (any registered architecture).

    Returns
    -------
    int
        The halo in pixels (44 for the fused network, 20 for li2025), a multiple of 4.
    """
    config: Any = model.config if isinstance(model, nn.Module) else getattr(model, "config", model)
    stored = getattr(model, "extra", {}).get(RADIUS_KEY)
    radius = int(stored) if stored is not None else config_radius(config)
    factor = max(4, int(config.downsampling))
    return int(math.ceil(radius / factor) * factor)


@functools.lru_cache(maxsize=16)
def config_radius(config: Any) -> int:
    """Return the receptive-field radius of a config's network (measured once, cached)."""
    model = seeded_network(architecture_of(config), 0, config)
    size = 32 * max(4, int(config.downsampling))
    while (radius := _measure_radius(model, size, 0)) is None:
        size *= 2
    return radius


def _measure_radius(model: Any, size: int, seed: int) -> int | None:
    """Radius in pixels, or None if the receptive field reaches the input's border."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            support, centres = _gradient_support(model, size, seed)
    finally:
        model.train(was_training)
    radius = 0
    for sample, (cy, cx) in zip(support, centres, strict=True):
        rows, cols = np.nonzero(sample)
        if rows.size == 0:  # a dead output pixel: nothing to measure
            continue
        if rows.min() == 0 or cols.min() == 0 or rows.max() == size - 1 or cols.max() == size - 1:
            return None
        radius = max(radius, int(np.abs(rows - cy).max()), int(np.abs(cols - cx).max()))
    return radius


def _gradient_support(model: Any, size: int, seed: int
                      ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Where each sample's chosen output pixel has a non-zero input gradient, (B, H, W)."""
    factor = int(model.downsampling)
    param = next(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    vectors = model.vector_inputs
    inputs = {name: torch.rand((factor, *shape, *(() if name in vectors else (size, size))),
                               generator=generator).to(param.device, param.dtype)
              for name, shape in model.input_shapes().items()}
    spatial = [tensor.requires_grad_() for name, tensor in inputs.items() if name not in vectors]
    # Diagonal phases suffice: the support is a rectangle whose rows depend on the row phase
    # only and whose columns depend on the column phase only.
    centres = [(size // 2 + k, size // 2 + k) for k in range(factor)]
    out = model.outputs(**inputs)["lai"]
    picked = torch.stack([out[k, 0, cy, cx] for k, (cy, cx) in enumerate(centres)]).sum()
    grads = torch.autograd.grad(picked, spatial)
    support = torch.cat([g.abs().reshape(factor, -1, size, size) for g in grads], dim=1).sum(1)
    return (support > 0).cpu().numpy(), centres
