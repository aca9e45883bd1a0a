"""The fused LAI network (MODEL.md), its losses, receptive field and checkpoints.

* :mod:`lamap.model.config`: :class:`ModelConfig`, the architecture (stored in checkpoints);
* :mod:`lamap.model.network`: :class:`FusedLAINet`, its building blocks, :func:`seeded_model`;
* :mod:`lamap.model.losses`: :func:`masked_mse` and :func:`fused_loss`
  (``dec + α·enc1 + β·enc2``);
* :mod:`lamap.model.receptive`: the receptive field measured with gradients and the halo
  that blocks need (:func:`recommended_halo`);
* :mod:`lamap.model.device`: :func:`resolve_device` and :func:`torch_threads`;
* :mod:`lamap.model.checkpoint`: :func:`save_checkpoint` and :func:`load_checkpoint`; a
  checkpoint is a dict of plain types and tensors, so it loads with
  ``torch.load(..., weights_only=True)``, and carries the architecture config, the feature
  spec, the lamap version and a training summary.

Every public name is importable from ``lamap.model`` itself.
"""

from __future__ import annotations

from lamap.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    CheckpointError,
    LoadedModel,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from lamap.model.config import DOWNSAMPLING, BatchNormPosition, ModelConfig
from lamap.model.device import DeviceLike, resolve_device, torch_threads
from lamap.model.losses import ALPHA, BETA, fused_loss, masked_mse
from lamap.model.network import (
    ARCHITECTURE,
    ConvBlock,
    EncoderBranch,
    FusedLAINet,
    MaskEmbedding,
    Prediction,
    SeasonEmbedding,
    UNet,
    parameter_count,
    seeded_model,
)
from lamap.model.receptive import receptive_field_radius, recommended_halo

__all__ = [
    "ALPHA",
    "ARCHITECTURE",
    "BETA",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "DOWNSAMPLING",
    "BatchNormPosition",
    "CheckpointError",
    "ConvBlock",
    "DeviceLike",
    "EncoderBranch",
    "FusedLAINet",
    "LoadedModel",
    "MaskEmbedding",
    "ModelConfig",
    "Prediction",
    "SeasonEmbedding",
    "UNet",
    "file_sha256",
    "fused_loss",
    "load_checkpoint",
    "masked_mse",
    "parameter_count",
    "receptive_field_radius",
    "recommended_halo",
    "resolve_device",
    "save_checkpoint",
    "seeded_model",
    "torch_threads",
]
