"""The LAI networks, their registry, losses, receptive fields and checkpoints.

* :mod:`lamap.model.registry`: the named architectures (``lnb-fused``, ``li2025``), each
  declaring its inputs, halo and training stages (:func:`get_architecture`);
* :mod:`lamap.model.config`: :class:`ModelConfig`, the fused network's configuration;
* :mod:`lamap.model.network`: :class:`FusedLAINet`, its building blocks, :func:`seeded_model`;
* :mod:`lamap.model.li2025`: :class:`Li2025Net` (CNN-Transformer + EDCSTFN) and its config;
* :mod:`lamap.model.li2025_loss`: EDCSTFN's compound loss (MSE, feature loss, MS-SSIM);
* :mod:`lamap.model.losses`: :func:`masked_mse` and :func:`fused_loss`
  (``dec + α·enc1 + β·enc2``);
* :mod:`lamap.model.receptive`: the receptive field measured with gradients and the halo
  that blocks need (:func:`recommended_halo`), for any registered network;
* :mod:`lamap.model.device`: :func:`resolve_device` and :func:`torch_threads`;
* :mod:`lamap.model.checkpoint`: :func:`save_checkpoint` and :func:`load_checkpoint`; a
  checkpoint is a dict of plain types and tensors, so it loads with
  ``torch.load(..., weights_only=True)``, and carries the architecture's name and config,
  the feature spec, the lamap version and a training summary.

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
from lamap.model.li2025 import Li2025Config, Li2025Net
from lamap.model.losses import ALPHA, BETA, fused_loss, gaussian_nll, masked_mse
from lamap.model.network import (
    ARCHITECTURE,
    ConvBlock,
    EncoderBranch,
    FusedLAINet,
    MaskEmbedding,
    Prediction,
    SeasonEmbedding,
    SigmaHead,
    UNet,
    parameter_count,
    seeded_model,
)
from lamap.model.receptive import receptive_field_radius, recommended_halo
from lamap.model.registry import (
    ARCHITECTURES,
    TRAINING_CACHE_SPEC,
    Architecture,
    Stage,
    architecture_of,
    get_architecture,
    seeded_network,
)

__all__ = [
    "ALPHA",
    "ARCHITECTURE",
    "ARCHITECTURES",
    "TRAINING_CACHE_SPEC",
    "Architecture",
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
    "Li2025Config",
    "Li2025Net",
    "LoadedModel",
    "MaskEmbedding",
    "ModelConfig",
    "Prediction",
    "SeasonEmbedding",
    "SigmaHead",
    "Stage",
    "UNet",
    "architecture_of",
    "file_sha256",
    "fused_loss",
    "gaussian_nll",
    "get_architecture",
    "load_checkpoint",
    "masked_mse",
    "parameter_count",
    "receptive_field_radius",
    "recommended_halo",
    "resolve_device",
    "save_checkpoint",
    "seeded_model",
    "seeded_network",
    "torch_threads",
]
