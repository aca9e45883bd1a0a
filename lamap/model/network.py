"""The fused LAI network (MODEL.md): two encoder U-nets and a decoder U-net.

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
end with intermediate supervision (:func:`lamap.model.fused_loss`). A U-net
``U(in, out, channels)`` has, per level, two 3×3 convolutions (padding 1) each followed by
ReLU, then BatchNorm (see :attr:`ModelConfig.batchnorm`); 2×2 max-pooling down, 2×2 transposed
convolutions up, skip connections by concatenation and a final 1×1 convolution. With three
levels the network down-samples by :data:`~lamap.model.config.DOWNSAMPLING` = 4, so inputs must
be a multiple of 4 pixels high and wide; nothing depends on a fixed patch size.

With :attr:`ModelConfig.residual` (new networks; checkpoints written before it read back
without it) the decoder and encoder 2's head predict the change from the latest clear past
LAI (:func:`clear_past`), which is added back: a pixel that does not change costs the
network nothing to predict.

All outputs are on the LAI/5 scale of :mod:`lamap.features`. Module attribute names are the
keys of the checkpoints' state dicts: renaming one breaks every saved model.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lamap.errors import InputError
from lamap.model.config import BatchNormPosition, ModelConfig

__all__ = [
    "ARCHITECTURE",
    "LEGACY_ARCHITECTURE",
    "ConvBlock",
    "EncoderBranch",
    "FusedLAINet",
    "MaskEmbedding",
    "Prediction",
    "SeasonEmbedding",
    "SigmaHead",
    "UNet",
    "check_spatial",
    "clear_past",
    "input_shapes",
    "parameter_count",
    "seeded_model",
]

#: Name of the architecture built by :class:`FusedLAINet`, stored in checkpoints.
ARCHITECTURE = "lnb-fused"
#: The name checkpoints of lamap before the model registry carry for it.
LEGACY_ARCHITECTURE = "fused-lai-net"


class Prediction(NamedTuple):
    """Outputs of :class:`FusedLAINet`, each ``(B, 1, H, W)`` on the LAI/5 scale."""

    lai: Tensor
    """Decoder output: LAI/5 at t."""
    enc1: Tensor
    """Head of encoder 1 (radar), for intermediate supervision (weight ``ALPHA``)."""
    enc2: Tensor
    """Head of encoder 2 (optical history), for intermediate supervision (``BETA``)."""


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
        return self.out(self.features(x))  # type: ignore[no-any-return]

    def features(self, x: Tensor) -> Tensor:
        """Return the finest level's features, before the final 1×1 convolution."""
        skips: list[Tensor] = []
        for level, block in enumerate(self.down):
            x = block(self.pool(x) if level else x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return x


class SigmaHead(nn.Module):
    """Per-pixel spread from the decoder's features and the past masks (1×1 convolutions).

    σ on the LAI/5 scale: ``scale · (softplus(conv(relu(conv([features, masks])))) + 1e-3)``,
    where ``scale`` (a buffer, 1 while the head trains) is the calibration factor fitted after
    training (:func:`lamap.train.uncertainty.record_uncertainty`).

    Parameters
    ----------
    feature_channels : int
        Channels of the decoder's finest level.
    mask_channels : int
        Flattened mask channels of the past steps (2 × 6).
    width : int
        Hidden channels.
    """

    def __init__(self, feature_channels: int, mask_channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(feature_channels + mask_channels, width, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(width, 1, 1))
        self.scale: Tensor
        self.register_buffer("scale", torch.ones(()))

    def forward(self, features: Tensor, masks: Tensor) -> Tensor:
        """Return σ ``(B, 1, H, W)`` (> 0) from features and ``(B, S, C, H, W)`` masks."""
        flat = masks.flatten(1, 2).to(features.dtype)
        raw = nn.functional.softplus(self.net(torch.cat([features, flat], 1))) + 1e-3
        return raw * self.scale


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

    architecture = ARCHITECTURE
    vector_inputs = frozenset({"season"})

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        cfg = self.config
        self.enc1 = EncoderBranch(cfg.s1_channels, cfg)
        self.enc2 = EncoderBranch(cfg.past_steps, cfg)
        self.decoder = UNet(2 * cfg.feature_width, 1, cfg.decoder_channels,
                            batchnorm=cfg.batchnorm, dropout=cfg.dropout)
        self.sigma = SigmaHead(cfg.decoder_channels[0], cfg.past_steps * cfg.mask_channels
                               ) if cfg.sigma_head else None

    @property
    def downsampling(self) -> int:
        """Input height and width must be multiples of this (4 by default)."""
        return self.config.downsampling

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Non-batch, non-spatial dimensions of each input (:func:`input_shapes`)."""
        return input_shapes(self.config)

    def outputs(self, s1: Tensor, lai: Tensor, masks: Tensor, season: Tensor
                ) -> dict[str, Tensor]:
        """Run the network; every output ``(B, 1, H, W)`` on the LAI/5 scale.

        Returns
        -------
        dict
            ``lai`` (the decoder), ``enc1``, ``enc2`` (the encoder heads) and, with the
            sigma head, ``sd`` (σ of ``lai``).
        """
        _check_inputs(self.config, s1=s1, lai=lai, masks=masks, season=season)
        feat1, head1 = self.enc1(s1, masks, season)
        feat2, head2 = self.enc2(lai, masks, season)
        features = self.decoder.features(torch.cat([feat1, feat2], dim=1))
        out = {"lai": self.decoder.out(features), "enc1": head1, "enc2": head2}
        if self.config.residual:
            base = clear_past(lai, masks)
            out["lai"], out["enc2"] = out["lai"] + base, head2 + base
        if self.sigma is not None:
            out["sd"] = self.sigma(features, masks)
        return out

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
        out = self.outputs(s1, lai, masks, season)
        return Prediction(out["lai"], out["enc1"], out["enc2"])

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
        head = self.enc2(lai, masks, season)[1]
        return head + clear_past(lai, masks) if self.config.residual else head


def clear_past(lai: Tensor, masks: Tensor) -> Tensor:
    """Latest clear past LAI/5 per pixel, ``(B, 1, H, W)``: the residual network's base.

    t-1 where its ``valid`` mask channel is set, else t-2 where valid, else 0 (the fill).

    Parameters
    ----------
    lai : torch.Tensor
        ``(B, steps, H, W)`` past LAI/5, oldest first.
    masks : torch.Tensor
        ``(B, steps, mask_channels, H, W)``; channel 0 is ``valid``.
    """
    base = torch.zeros_like(lai[:, :1])
    for step in range(lai.shape[1]):  # oldest first: later clear steps overwrite
        valid = masks[:, step, :1] > 0.5
        base = torch.where(valid, lai[:, step:step + 1], base)
    return base


def input_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Return the non-batch, non-spatial dimensions of each input of the network.

    Parameters
    ----------
    config : ModelConfig
        The architecture.

    Returns
    -------
    dict
        ``{"s1": (6,), "lai": (2,), "masks": (2, 6), "season": (2,)}`` for the default.
    """
    return {"s1": (config.s1_channels,), "lai": (config.past_steps,),
            "masks": (config.past_steps, config.mask_channels),
            "season": (config.season_channels,)}


def _check_inputs(config: ModelConfig, **inputs: Tensor) -> None:
    expected = input_shapes(config)
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
    check_spatial(next(s[1:] for n, s in sizes.items() if n != "season"), config.downsampling)


def _check_agreement(sizes: dict[str, tuple[int, ...]]) -> None:
    batches = {name: size[0] for name, size in sizes.items()}
    spatial = {name: size[1:] for name, size in sizes.items() if name != "season"}
    if len(set(batches.values())) > 1 or len(set(spatial.values())) > 1:
        raise InputError(
            f"model inputs disagree in batch size {batches} or height, width {spatial}: "
            "take all inputs from the same patch"
        )


def check_spatial(shape: tuple[int, ...], factor: int) -> None:
    """Check that an input's height and width are positive multiples of ``factor``.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` in pixels.
    factor : int
        The network's down-sampling factor.

    Raises
    ------
    InputError
        If a side is not a positive multiple; the message suggests a padded size.
    """
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

