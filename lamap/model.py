"""The fused LAI network (MODEL.md), its losses, receptive field and checkpoints.

Architecture (about 2.84 M parameters with the defaults)::

    s1 (6) ─┐                                                   ┌─ head 1×1 ─▶ enc1
    masks ──┼─ mask emb. 1×1 (2 per step) ─┐                    │
    season ─┴─ MLP 2→2→1, broadcast ───────┴─ U(11, 32) ────────┤
                                                                ├─ concat (64) ─ U(64, 1) ─▶ lai
    lai (2) ─┐                                                  │
    masks ───┼─ mask emb. ─┐                                    │
    season ──┴─ MLP ───────┴─────────────────── U(7, 32) ───────┴─ head 1×1 ─▶ enc2

Each encoder branch owns its mask and season embeddings, so it can be pre-trained alone
(:meth:`FusedLAINet.forward_enc1`, :meth:`FusedLAINet.forward_enc2`) and then trained end to
end with intermediate supervision (:func:`fused_loss`). A U-net ``U(in, out, channels)`` has,
per level, two 3×3 convolutions (padding 1) each followed by ReLU, then BatchNorm (see
:attr:`ModelConfig.batchnorm`); 2×2 max-pooling down, 2×2 transposed convolutions up, skip
connections by concatenation and a final 1×1 convolution. With three levels the network
down-samples by :data:`DOWNSAMPLING` = 4, so inputs must be a multiple of 4 pixels high and
wide; nothing depends on a fixed patch size.

All outputs are on the LAI/5 scale of :mod:`lamap.features`.

Checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`) are a dict of plain types and
tensors, so they load with ``torch.load(..., weights_only=True)``; they carry the architecture
config, the feature spec, the lamap version and a training summary.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeAlias, get_args

import numpy as np
import torch
from torch import Tensor, nn

from lamap import __version__
from lamap.errors import InputError, LamapError
from lamap.runtime import write_atomic

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
]

#: Down-sampling factor of the default network (two 2×2 poolings); inputs must be multiples.
DOWNSAMPLING = 4
#: Weight of the encoder-1 (radar) head in the end-to-end loss (MODEL.md).
ALPHA = 0.1
#: Weight of the encoder-2 (optical history) head in the end-to-end loss (MODEL.md).
BETA = 0.15
#: Name of the architecture built by :class:`FusedLAINet`, stored in checkpoints.
ARCHITECTURE = "fused-lai-net"
#: Value of a checkpoint's ``format`` key.
CHECKPOINT_FORMAT = "lamap-checkpoint"
#: Newest checkpoint layout this lamap writes and reads.
CHECKPOINT_FORMAT_VERSION = 1

BatchNormPosition: TypeAlias = Literal["block", "conv", "none"]
DeviceLike: TypeAlias = str | torch.device

_CHUNK = 1 << 20


class CheckpointError(LamapError):
    """A checkpoint file is missing, unreadable, or does not fit this lamap's model."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`FusedLAINet`; stored in every checkpoint.

    Parameters
    ----------
    encoder_channels : tuple of int
        Channels per level of both encoder U-nets (MODEL.md: 32, 64, 128).
    decoder_channels : tuple of int
        Channels per level of the decoder U-net (MODEL.md: 64, 128, 256).
    feature_width : int
        Channels of each encoder's output feature map (MODEL.md: 32).
    mask_embedding_width : int
        Channels the 1×1 mask embedding gives per past step (MODEL.md: 2).
    dropout : float
        Dropout probability after each U-net block, in [0, 1); 0 disables it.
    batchnorm : {"block", "conv", "none"}
        ``"block"`` (MODEL.md): conv, ReLU, conv, ReLU, BatchNorm; ``"conv"``: BatchNorm after
        each conv's ReLU; ``"none"``: no normalisation.
    s1_channels : int
        Sentinel-1 input channels (VV, VH at t-2, t-1, t: 6).
    past_steps : int
        Past Sentinel-2 steps (t-2, t-1: 2); LAI channels and mask stacks.
    mask_channels : int
        Mask channels per past step (``valid`` and five one-hot SCL classes: 6).
    season_channels : int
        Season inputs (sin, cos of the day of year: 2).

    Raises
    ------
    InputError
        If a value is out of range; the message names it.
    """

    encoder_channels: tuple[int, ...] = (32, 64, 128)
    decoder_channels: tuple[int, ...] = (64, 128, 256)
    feature_width: int = 32
    mask_embedding_width: int = 2
    dropout: float = 0.0
    batchnorm: BatchNormPosition = "block"
    s1_channels: int = 6
    past_steps: int = 2
    mask_channels: int = 6
    season_channels: int = 2

    def __post_init__(self) -> None:
        """Validate and normalise (tuples of int, float dropout)."""
        for name in ("encoder_channels", "decoder_channels"):
            object.__setattr__(self, name, _channel_list(name, getattr(self, name)))
        for name in ("feature_width", "mask_embedding_width", "s1_channels", "past_steps",
                     "mask_channels", "season_channels"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        object.__setattr__(self, "dropout", _dropout(self.dropout))
        if self.batchnorm not in get_args(BatchNormPosition):
            raise InputError(
                f"model config batchnorm must be one of {list(get_args(BatchNormPosition))}, "
                f"got {self.batchnorm!r}"
            )

    @property
    def downsampling(self) -> int:
        """Factor by which the deepest U-net level is smaller than the input."""
        levels = max(len(self.encoder_channels), len(self.decoder_channels))
        return int(2 ** (levels - 1))

    @classmethod
    def tiny(cls) -> ModelConfig:
        """Return a very small config with the default layout, for tests and smoke runs."""
        return cls(encoder_channels=(4, 8, 16), decoder_channels=(8, 16, 32), feature_width=4)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists for tuples), for checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; strict, so a checkpoint cannot be misread.

        Parameters
        ----------
        data : mapping
            Every field of :class:`ModelConfig`, as written by :meth:`to_dict`.

        Returns
        -------
        ModelConfig

        Raises
        ------
        InputError
            If ``data`` is not a mapping, has unknown or missing keys, or invalid values.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data))
        if unknown or missing:
            raise InputError(
                f"model config has unknown keys {unknown} and lacks {missing} (expected "
                f"{sorted(known)}): it was written by another lamap; use that version"
            )
        return cls(**dict(data))


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _positive_int(name: str, value: object) -> int:
    if not _is_int(value) or int(value) < 1:  # type: ignore[call-overload]
        raise InputError(f"model config {name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _channel_list(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or not value:
        raise InputError(
            f"model config {name} must be a non-empty list of channel counts such as "
            f"[32, 64, 128], got {value!r}"
        )
    return tuple(_positive_int(name, v) for v in value)


def _dropout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise InputError(f"model config dropout must be a number in [0, 1), got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- building blocks


class Prediction(NamedTuple):
    """Outputs of :class:`FusedLAINet`, each ``(B, 1, H, W)`` on the LAI/5 scale."""

    lai: Tensor
    """Decoder output: LAI/5 at t."""
    enc1: Tensor
    """Head of encoder 1 (radar), for intermediate supervision (weight :data:`ALPHA`)."""
    enc2: Tensor
    """Head of encoder 2 (optical history), for intermediate supervision (:data:`BETA`)."""


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions (padding 1) with ReLU, BatchNorm and optional dropout.

    Parameters
    ----------
    in_ch, out_ch : int
        Input and output channels.
    batchnorm : {"block", "conv", "none"}
        Where BatchNorm goes, see :class:`ModelConfig`.
    dropout : float
        Dropout probability after the block; 0 adds no layer.
    """

    def __init__(self, in_ch: int, out_ch: int, *, batchnorm: BatchNormPosition = "block",
                 dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for conv_in in (in_ch, out_ch):
            layers += [nn.Conv2d(conv_in, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
            if batchnorm == "conv":
                layers.append(nn.BatchNorm2d(out_ch))
        if batchnorm == "block":
            layers.append(nn.BatchNorm2d(out_ch))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """A U-net ``U(in_ch, out_ch, channels)`` for inputs whose sides are multiples of its factor.

    Parameters
    ----------
    in_ch, out_ch : int
        Input channels and channels of the final 1×1 convolution.
    channels : sequence of int
        Channels per level, finest first; ``len(channels) - 1`` poolings.
    batchnorm : {"block", "conv", "none"}
        Where BatchNorm goes in each block, see :class:`ModelConfig`.
    dropout : float
        Dropout probability after each block.
    """

    def __init__(self, in_ch: int, out_ch: int, channels: tuple[int, ...] | list[int], *,
                 batchnorm: BatchNormPosition = "block", dropout: float = 0.0) -> None:
        super().__init__()
        chans = list(channels)
        block = functools.partial(ConvBlock, batchnorm=batchnorm, dropout=dropout)
        inputs = [in_ch, *chans[:-1]]
        self.down = nn.ModuleList(block(a, b) for a, b in zip(inputs, chans, strict=True))
        pairs = list(zip(chans[:0:-1], chans[-2::-1], strict=True))
        self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 2, stride=2) for a, b in pairs)
        self.merge = nn.ModuleList(block(2 * b, b) for _, b in pairs)
        self.pool = nn.MaxPool2d(2)
        self.out = nn.Conv2d(chans[0], out_ch, 1)

    @property
    def downsampling(self) -> int:
        """Factor by which the deepest level is smaller than the input."""
        return int(2 ** (len(self.down) - 1))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_ch, H, W)`` to ``(B, out_ch, H, W)``; H, W multiples of the factor."""
        skips: list[Tensor] = []
        for level, block in enumerate(self.down):
            x = block(self.pool(x) if level else x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.out(x)  # type: ignore[no-any-return]


class MaskEmbedding(nn.Module):
    """One 1×1 convolution applied to each past step's mask stack (shared weights).

    Parameters
    ----------
    mask_channels : int
        Mask channels per step (6).
    width : int
        Embedding channels per step (2).
    """

    def __init__(self, mask_channels: int = 6, width: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(mask_channels, width, 1)

    def forward(self, masks: Tensor) -> Tensor:
        """Map ``(B, S, C, H, W)`` masks to ``(B, S·width, H, W)``, step by step."""
        batch, steps, chans, height, width = masks.shape
        flat = self.conv(masks.reshape(batch * steps, chans, height, width))
        return flat.reshape(batch, -1, height, width)  # type: ignore[no-any-return]


class SeasonEmbedding(nn.Module):
    """MLP 2 → 2 → 1 (ReLU between) on (sin, cos) of the day of year, broadcast spatially.

    Parameters
    ----------
    in_features : int
        Season inputs (2).
    """

    def __init__(self, in_features: int = 2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, 2), nn.ReLU(), nn.Linear(2, 1))

    def forward(self, season: Tensor, height: int, width: int) -> Tensor:
        """Map ``(B, 2)`` to a constant ``(B, 1, height, width)`` feature map."""
        value = self.mlp(season)
        return value[:, :, None, None].expand(-1, -1, height, width)  # type: ignore[no-any-return]


class EncoderBranch(nn.Module):
    """One encoder: embeddings, U-net to ``feature_width`` channels and its own 1×1 head.

    Parameters
    ----------
    data_channels : int
        Channels of the branch's own input (6 for S1, 2 for past LAI).
    config : ModelConfig
        Architecture.
    """

    def __init__(self, data_channels: int, config: ModelConfig) -> None:
        super().__init__()
        emb = config.mask_embedding_width
        in_ch = data_channels + config.past_steps * emb + 1
        self.mask_embedding = MaskEmbedding(config.mask_channels, emb)
        self.season_embedding = SeasonEmbedding(config.season_channels)
        self.unet = UNet(in_ch, config.feature_width, config.encoder_channels,
                         batchnorm=config.batchnorm, dropout=config.dropout)
        self.head = nn.Conv2d(config.feature_width, 1, 1)

    def forward(self, data: Tensor, masks: Tensor, season: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(features (B, feature_width, H, W), head (B, 1, H, W))``."""
        height, width = data.shape[-2:]
        inputs = [data, self.mask_embedding(masks), self.season_embedding(season, height, width)]
        features = self.unet(torch.cat(inputs, dim=1))
        return features, self.head(features)


# --------------------------------------------------------------------------- the network


class FusedLAINet(nn.Module):
    """Two encoder U-nets (radar, optical history) and a decoder U-net (MODEL.md).

    Parameters
    ----------
    config : ModelConfig, optional
        Architecture; the default is the paper's (about 2.84 M parameters).

    Notes
    -----
    Inputs are float tensors from :func:`lamap.features.to_tensors`: ``s1 (B, 6, H, W)``,
    ``lai (B, 2, H, W)``, ``masks (B, 2, 6, H, W)``, ``season (B, 2)``, with H and W multiples
    of :attr:`downsampling`.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        cfg = self.config
        self.enc1 = EncoderBranch(cfg.s1_channels, cfg)
        self.enc2 = EncoderBranch(cfg.past_steps, cfg)
        self.decoder = UNet(2 * cfg.feature_width, 1, cfg.decoder_channels,
                            batchnorm=cfg.batchnorm, dropout=cfg.dropout)

    @property
    def downsampling(self) -> int:
        """Input height and width must be multiples of this (4 by default)."""
        return self.config.downsampling

    def forward(self, s1: Tensor, lai: Tensor, masks: Tensor, season: Tensor) -> Prediction:
        """Predict LAI/5 at t with both encoder heads.

        Parameters
        ----------
        s1 : torch.Tensor
            ``(B, 6, H, W)`` normalised VV, VH at t-2, t-1, t.
        lai : torch.Tensor
            ``(B, 2, H, W)`` LAI/5 at t-2, t-1.
        masks : torch.Tensor
            ``(B, 2, 6, H, W)`` mask channels of t-2, t-1.
        season : torch.Tensor
            ``(B, 2)`` sin, cos of the day of year of t.

        Returns
        -------
        Prediction
            ``lai``, ``enc1``, ``enc2``, each ``(B, 1, H, W)``.

        Raises
        ------
        InputError
            If shapes disagree with the config or each other, or H, W are not multiples of
            :attr:`downsampling`.
        """
        _check_inputs(self.config, s1=s1, lai=lai, masks=masks, season=season)
        feat1, head1 = self.enc1(s1, masks, season)
        feat2, head2 = self.enc2(lai, masks, season)
        return Prediction(self.decoder(torch.cat([feat1, feat2], dim=1)), head1, head2)

    def forward_enc1(self, s1: Tensor, masks: Tensor, season: Tensor) -> Tensor:
        """Run encoder 1 (radar) alone with its head, ``(B, 1, H, W)``; for pre-training.

        Parameters, shapes and errors are those of :meth:`forward`.
        """
        _check_inputs(self.config, s1=s1, masks=masks, season=season)
        return self.enc1(s1, masks, season)[1]  # type: ignore[no-any-return]

    def forward_enc2(self, lai: Tensor, masks: Tensor, season: Tensor) -> Tensor:
        """Run encoder 2 (optical history) alone with its head; for pre-training.

        Parameters, shapes and errors are those of :meth:`forward`.
        """
        _check_inputs(self.config, lai=lai, masks=masks, season=season)
        return self.enc2(lai, masks, season)[1]  # type: ignore[no-any-return]


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Non-batch, non-spatial dimensions of each input."""
    return {"s1": (config.s1_channels,), "lai": (config.past_steps,),
            "masks": (config.past_steps, config.mask_channels),
            "season": (config.season_channels,)}


def _check_inputs(config: ModelConfig, **inputs: Tensor) -> None:
    expected = _expected_shapes(config)
    sizes: dict[str, tuple[int, ...]] = {}
    for name, tensor in inputs.items():
        spatial = 0 if name == "season" else 2
        want = expected[name]
        shape = tuple(tensor.shape)
        if len(shape) != 1 + len(want) + spatial or shape[1:1 + len(want)] != want:
            dims = ("B", *map(str, want), *(("H", "W") if spatial else ()))
            raise InputError(
                f"model input {name} has shape {list(shape)}, expected ({', '.join(dims)}): "
                "build inputs with lamap.features.to_tensors"
            )
        if not tensor.is_floating_point():
            raise InputError(f"model input {name} has dtype {tensor.dtype}; convert it to float32")
        sizes[name] = (shape[0], *shape[len(shape) - spatial:])
    _check_agreement(sizes)
    _check_spatial(next(s[1:] for n, s in sizes.items() if n != "season"), config.downsampling)


def _check_agreement(sizes: dict[str, tuple[int, ...]]) -> None:
    batches = {name: size[0] for name, size in sizes.items()}
    spatial = {name: size[1:] for name, size in sizes.items() if name != "season"}
    if len(set(batches.values())) > 1 or len(set(spatial.values())) > 1:
        raise InputError(
            f"model inputs disagree in batch size {batches} or height, width {spatial}: "
            "take all inputs from the same patch"
        )


def _check_spatial(shape: tuple[int, ...], factor: int) -> None:
    if any(side < factor or side % factor for side in shape):
        raise InputError(
            f"model inputs are {shape[0]}×{shape[1]} pixels; height and width must be positive "
            f"multiples of {factor} (the network down-samples by {factor}): pad or crop the "
            f"patch, e.g. to {_round_up(max(shape[0], 1), factor)}×"
            f"{_round_up(max(shape[1], 1), factor)}"
        )


def _round_up(value: int, factor: int) -> int:
    return int(math.ceil(value / factor) * factor)


def parameter_count(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Return the number of parameters of ``model`` (all, or only those requiring grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def seeded_model(seed: int, config: ModelConfig | None = None) -> FusedLAINet:
    """Build a deterministic, untrained :class:`FusedLAINet` in eval mode.

    The global torch random state is left untouched.

    Parameters
    ----------
    seed : int
        Seed of the weight initialisation.
    config : ModelConfig, optional
        Architecture (default: the paper's).

    Returns
    -------
    FusedLAINet
        Identical weights for identical ``seed`` and ``config``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FusedLAINet(config)
    return model.eval()


# --------------------------------------------------------------------------- losses


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
        Output of :meth:`FusedLAINet.forward`.
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


def _as_map(tensor: Tensor) -> Tensor:
    return tensor.unsqueeze(1) if tensor.dim() == 3 else tensor


# --------------------------------------------------------------------------- receptive field


def receptive_field_radius(model: FusedLAINet, *, size: int = 128, seed: int = 0) -> int:
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
    model : FusedLAINet
        The network to measure.
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
    _check_spatial((size, size), model.downsampling)
    radius = _measure_radius(model, size, seed)
    if radius is None:
        raise InputError(
            f"the receptive field of this model reaches the border of a {size}×{size} input: "
            f"measure with a larger size, e.g. size={2 * size}"
        )
    return radius


def recommended_halo(model: FusedLAINet | ModelConfig) -> int:
    """Smallest multiple of the down-sampling factor that covers the receptive field.

    This is the ``depth`` to give :func:`dask.array.map_overlap` so that a map computed in
    blocks (offsets multiples of the factor) equals the map computed in one piece. The radius
    is measured once per architecture on a seeded untrained model of the same config (the
    support of the receptive field depends on the architecture, not on trained weights), and
    cached.

    Parameters
    ----------
    model : FusedLAINet or ModelConfig
        The network, or its architecture.

    Returns
    -------
    int
        The halo in pixels (44 for the default network).
    """
    config = model.config if isinstance(model, FusedLAINet) else model
    return _round_up(_config_radius(config), config.downsampling)


@functools.lru_cache(maxsize=16)
def _config_radius(config: ModelConfig) -> int:
    model = seeded_model(0, config)
    size = 32 * config.downsampling
    while (radius := _measure_radius(model, size, 0)) is None:
        size *= 2
    return radius


def _measure_radius(model: FusedLAINet, size: int, seed: int) -> int | None:
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


def _gradient_support(model: FusedLAINet, size: int, seed: int
                      ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Where each sample's chosen output pixel has a non-zero input gradient, (B, H, W)."""
    factor = model.downsampling
    param = next(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    shapes = _expected_shapes(model.config)
    inputs = {name: torch.rand((factor, *shape, *(() if name == "season" else (size, size))),
                               generator=generator).to(param.device, param.dtype)
              for name, shape in shapes.items()}
    spatial = [inputs[name].requires_grad_() for name in ("s1", "lai", "masks")]
    # Diagonal phases suffice: the support is a rectangle whose rows depend on the row phase
    # only and whose columns depend on the column phase only.
    centres = [(size // 2 + k, size // 2 + k) for k in range(factor)]
    out = model(**inputs).lai
    picked = torch.stack([out[k, 0, cy, cx] for k, (cy, cx) in enumerate(centres)]).sum()
    grads = torch.autograd.grad(picked, spatial)
    support = torch.cat([g.abs().reshape(factor, -1, size, size) for g in grads], dim=1).sum(1)
    return (support > 0).cpu().numpy(), centres


# --------------------------------------------------------------------------- devices


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` into a usable torch device.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` picks CUDA when available, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    InputError
        If the name is not a device, or CUDA (or that CUDA index) is not available.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            f"device {device!r} is not a torch device: use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from err
    if resolved.type == "cuda":
        _check_cuda(resolved)
    elif resolved.type != "cpu":
        raise InputError(f"device {device!r} is not supported: use 'cpu', 'cuda' or 'auto'")
    return resolved


def _check_cuda(device: torch.device) -> None:
    if not torch.cuda.is_available():
        raise InputError(
            f"device {str(device)!r} was requested but CUDA is not available (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}): use device 'cpu' or "
            "'auto', or install a CUDA build of torch on a machine with an NVIDIA GPU"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise InputError(
            f"device {str(device)!r} was requested but only {count} CUDA device(s) exist: "
            f"use an index below {count}"
        )


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded by :func:`load_checkpoint`, with the metadata it was saved with.

    Attributes
    ----------
    model : FusedLAINet
        The network, in eval mode, on the requested device.
    config : ModelConfig
        Its architecture.
    feature_spec : dict
        The feature definition it was trained with (:meth:`lamap.features.FeatureSpec.to_dict`).
    training : dict
        Training summary (empty for an untrained model).
    lamap_version : str
        Version of lamap that wrote the checkpoint.
    sha256 : str
        Hex digest of the checkpoint file.
    extra : dict
        Anything else the writer stored.
    """

    model: FusedLAINet
    config: ModelConfig
    feature_spec: dict[str, Any]
    training: dict[str, Any]
    lamap_version: str
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], model: FusedLAINet, *,
                    feature_spec: Mapping[str, Any], training: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or path-like
        Destination file (conventionally ``*.pt``); its directory must exist.
    model : FusedLAINet
        The network; its weights are copied to the CPU.
    feature_spec : mapping
        The feature definition of its inputs, :meth:`lamap.features.FeatureSpec.to_dict`.
    training : mapping, optional
        Training summary (data, epochs, metrics per split...).
    extra : mapping, optional
        Anything else; plain types only.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        If a metadata value is not a plain type (dict with str keys, list, str, int, float,
        bool, None, tensor), or the feature spec's mask channels differ from the model's.
    CheckpointError
        If the file cannot be written.
    """
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "lamap_version": __version__,
        "config": model.config.to_dict(),
        "feature_spec": _plain(feature_spec, "feature_spec"),
        "training": _plain(training or {}, "training"),
        "extra": _plain(extra or {}, "extra"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    _check_spec_fits(model.config, payload["feature_spec"])
    _atomic_save(payload, path)
    return path


def _plain(value: Any, where: str) -> Any:
    """Copy ``value`` into types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise InputError(f"checkpoint {where} has non-string keys {bad}: use strings")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if value is None or isinstance(value, bool):
        return value
    for plain in (str, int, float):  # subclasses (torch.__version__ is a str subclass)
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    raise InputError(
        f"checkpoint {where} is a {type(value).__name__}; checkpoints hold only dicts, lists, "
        "str, int, float, bool, None and tensors (so they load with weights_only=True): "
        "convert it, e.g. with .tolist() or str()"
    )


def _check_spec_fits(config: ModelConfig, spec: Mapping[str, Any]) -> None:
    onehot = spec.get("onehot_classes")
    if isinstance(onehot, list) and 1 + len(onehot) != config.mask_channels:
        raise InputError(
            f"the feature spec gives {1 + len(onehot)} mask channels per step (valid and "
            f"{len(onehot)} one-hot classes) but the model takes {config.mask_channels}: build "
            "the model with ModelConfig(mask_channels=...) matching the spec"
        )


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    try:
        write_atomic(path, lambda handle: torch.save(payload, handle))
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {err.strerror}; check that the directory "
            "exists and is writable"
        ) from err


def load_checkpoint(path: str | os.PathLike[str], *,
                    map_location: DeviceLike = "cpu") -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``).

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.
    map_location : str or torch.device
        Device for the model, as in :func:`resolve_device` (``"cpu"``, ``"cuda"``, ``"auto"``).

    Returns
    -------
    LoadedModel
        The model in eval mode with its config, feature spec, training summary, the lamap
        version that wrote it and the file's SHA-256.

    Raises
    ------
    CheckpointError
        If the file is missing, corrupted, not a lamap checkpoint, from a newer format, or
        holds weights that do not fit its config (the message names the keys and shapes).
    InputError
        If ``map_location`` is not an available device.
    """
    path = Path(path)
    device = resolve_device(map_location)
    data = _read_checkpoint(path, device)
    _check_header(data, path)
    config = _config_from(data, path)
    model = FusedLAINet(config)
    _load_state(model, data["state_dict"], path)
    return LoadedModel(
        model=model.to(device).eval(),
        config=config,
        feature_spec=_field(data, "feature_spec", dict, path),
        training=_field(data, "training", dict, path),
        lamap_version=_field(data, "lamap_version", str, path),
        sha256=file_sha256(path),
        extra=_field(data, "extra", dict, path),
    )


def _read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist or is not a file: give the path of a *.pt "
            "written by `lamap train` or lamap.model.save_checkpoint"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is not a torch zip archive; the file is "
            "corrupted, truncated or of another kind: copy or train it again"
        )
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than plain types and tensors, so it cannot "
            f"be loaded safely (weights_only=True): {_first_line(err)}; re-save it with "
            "lamap.model.save_checkpoint"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {_first_line(err)}); "
            "the file is corrupted, truncated or not a torch file: copy or train it again"
        ) from err
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(_not_lamap_message(path, data))
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _not_lamap_message(path: Path, data: object) -> str:
    found = f"a dict with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else (
        f"a {type(data).__name__}")
    hint = ("; it looks like a bare state_dict: load it into FusedLAINet and re-save it with "
            "lamap.model.save_checkpoint") if isinstance(data, dict) and all(
        isinstance(v, Tensor) for v in data.values()) else ""
    return (f"{path} is not a lamap checkpoint: it holds {found}, without "
            f"format={CHECKPOINT_FORMAT!r}{hint}")


def _check_header(data: dict[str, Any], path: Path) -> None:
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"checkpoint {path} has an invalid format_version {version!r}: the file was "
            "edited or damaged; write it again with lamap.model.save_checkpoint"
        )
    if version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version} (written by lamap "
            f"{data.get('lamap_version')}), newer than the version {CHECKPOINT_FORMAT_VERSION} "
            f"this lamap {__version__} reads: upgrade lamap"
        )
    if data.get("architecture") != ARCHITECTURE:
        raise CheckpointError(
            f"checkpoint {path} holds architecture {data.get('architecture')!r}; this lamap "
            f"builds only {ARCHITECTURE!r}: use the lamap version that wrote it"
        )


def _config_from(data: dict[str, Any], path: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(data.get("config"))  # type: ignore[arg-type]
    except InputError as err:
        raise CheckpointError(f"checkpoint {path} has an unusable config: {err}") from err


def _field(data: dict[str, Any], name: str, kind: type, path: Path) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise CheckpointError(
            f"checkpoint {path} has {name} of type {type(value).__name__}, expected "
            f"{kind.__name__}: the file was edited or damaged; write it again"
        )
    return value


def _load_state(model: FusedLAINet, state: object, path: Path) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} has no state_dict of tensors: write it again")
    problems = _state_mismatch(model.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit its config {model.config.to_dict()}: "
            f"{'; '.join(problems)}. The weights were saved from another architecture or "
            "edited; save them with the model they came from"
        )
    model.load_state_dict(state)


def _state_mismatch(expected: Mapping[str, Tensor], found: Mapping[str, Tensor],
                    limit: int = 5) -> list[str]:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} is {list(found[k].shape)}, expected {list(v.shape)}"
              for k, v in expected.items() if k in found and found[k].shape != v.shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("wrong shapes", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return problems
