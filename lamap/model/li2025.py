"""The ``li2025`` architecture: a 2D CNN-Transformer (S1 → LAI), then EDCSTFN fusion.

Li, Wang, Tansey, Guo and Zhou (2025), "Improved leaf area index reconstruction in heavily
cloudy areas", as far as its abstract and the EDCSTFN reference design (Tan et al. 2019,
Remote Sensing 11(24) 2898) describe it; the layer sizes are lamap's choices, sized for the
demo's CPU budget::

    s1_series (N passes × VV, VH) ─ 2D CNN per pass (3×3, dilations 1-8) ───────┐
    s1_days ─ sinusoidal day encoding ──────────────────────────────────────────┤ per pixel:
    season ─ linear ────────────────────────────────────────────────────────────┤ Transformer
    query tokens at t-2, t-1, D (past_days) ────────────────────────────────────┘ encoder
        └─▶ step 1: "coarse" LAI/5 at t-2, t-1, D
    for each reference k in (t-2, t-1):
        fine(k) = S2 LAI/5 at k where valid, else coarse(k)         (validity: masks[k])
        fine encoder [fine(k), masks(k)] ─┐ (3×3 convs 32, 64, 128, ReLU, replication pad)
        residual encoder [coarse(k), fine(k), coarse(D), masks(k)] ─┴─ sum ─ decoder
        (128 → 64 → 32, 3×3, then 1×1 → 1) ─▶ prediction_k
    LAI/5 at D = Σ_k w_k · prediction_k,  w_k ∝ (valid_k + δ) / (|coarse(D) − coarse(k)| + ε)

**Cloudy references** (the issue leaves it open; decided here): a reference pixel that is not
valid has no fine value; it is filled with step 1's LAI of that date, and its validity goes
in twice: as input channels (the six mask channels of MODEL.md, so the network knows a fill
from an observation, and a cloud shadow from a clear pixel), and in the combination weight,
where an invalid reference counts :data:`INVALID_WEIGHT` as much as a valid one at the same
residual. The weights otherwise follow EDCSTFN's inference rule: inversely proportional to
each reference's residual ``|coarse(D) − coarse(k)|`` (per pixel, with :data:`RESIDUAL_EPS`).

**Spread** (``sigma_head``): 1×1 convolutions (→ 16 → 1, softplus) on each reference's 32
decoder features, its validity, its residual ``|coarse(D) − coarse(k)|`` and its age (days
from k to D, / 30) give σ_k;
the combined σ² is the mixture's, ``Σ w_k (σ_k² + (prediction_k − LAI)²)``, times the
calibration factor ``sd_scale`` (a buffer, 1 while training; fitted after training by
:func:`lamap.train.uncertainty.record_uncertainty`).

**Feature loss**: EDCSTFN compares prediction and truth through a pre-trained autoencoder;
``feature_net`` is that autoencoder (two 3×3 conv layers each way), trained on S2 LAI in its
own stage and used only by the loss (:mod:`lamap.model.li2025_loss`).

The spatial receptive field is 20 pixels (15 in step 1's dilated CNN, 3 more in the residual
encoder, 2 in the decoder); nothing pools, so any input size works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from lamap.errors import InputError
from lamap.model.config import _channel_list, _positive_int

__all__ = ["ARCHITECTURE", "INVALID_WEIGHT", "RESIDUAL_EPS", "Li2025Config", "Li2025Net"]

#: Name of the architecture, stored in checkpoints.
ARCHITECTURE = "li2025"
#: Weight of an invalid (filled) reference relative to a valid one at the same residual.
INVALID_WEIGHT = 0.1
#: Residual floor of the combination weights, on the LAI/5 scale (0.1 m²/m²).
RESIDUAL_EPS = 0.02
#: Longest period of the day encoding, in days.
_MAX_PERIOD = 730.0


@dataclass(frozen=True)
class Li2025Config:
    """Architecture of :class:`Li2025Net`; stored in every checkpoint.

    Parameters
    ----------
    passes : int
        Sentinel-1 passes of the series (the feature spec's ``s1_passes``).
    cnn_channels : tuple of int
        Channels of the per-pass 2D CNN (3×3 convolutions).
    cnn_dilations : tuple of int
        Dilation of each of its convolutions: the spatial context of step 1 is their sum
        (15 px with the default 1, 2, 4, 8; radar speckle averages out over a field).
    d_model, heads, layers, ff : int
        Transformer width, attention heads, encoder layers and feed-forward width.
    fusion_channels : tuple of int
        Widths of EDCSTFN's encoders (32, 64, 128); the decoder mirrors them.
    feature_channels : tuple of int
        Widths of the feature-loss autoencoder's encoder.
    sigma_head : bool
        Predict a per-pixel spread.
    past_steps, mask_channels, season_channels : int
        Optical references (t-2, t-1), mask channels per step, season inputs.
    max_sequences : int
        Pixels whose sequences go through the Transformer at once (memory, not results).
    """

    passes: int = 6
    cnn_channels: tuple[int, ...] = (16, 32, 32, 32)
    cnn_dilations: tuple[int, ...] = (1, 2, 4, 8)
    d_model: int = 32
    heads: int = 4
    layers: int = 2
    ff: int = 64
    fusion_channels: tuple[int, ...] = (32, 64, 128)
    feature_channels: tuple[int, ...] = (8, 16)
    sigma_head: bool = True
    past_steps: int = 2
    mask_channels: int = 6
    season_channels: int = 2
    max_sequences: int = 65536

    def __post_init__(self) -> None:
        """Validate and normalise."""
        for name in ("cnn_channels", "cnn_dilations", "fusion_channels", "feature_channels"):
            object.__setattr__(self, name, _channel_list(name, getattr(self, name)))
        if len(self.cnn_dilations) != len(self.cnn_channels):
            raise InputError(f"li2025 cnn_dilations {list(self.cnn_dilations)} must give one "
                             f"dilation per layer of cnn_channels {list(self.cnn_channels)}")
        for name in ("passes", "d_model", "heads", "layers", "ff", "past_steps",
                     "mask_channels", "season_channels", "max_sequences"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        if self.d_model % self.heads or self.d_model % 2:
            raise InputError(f"li2025 d_model ({self.d_model}) must be even and a multiple of "
                             f"heads ({self.heads})")
        if not isinstance(self.sigma_head, bool):
            raise InputError(f"li2025 sigma_head must be true or false, got {self.sigma_head!r}")

    @property
    def downsampling(self) -> int:
        """Nothing pools: any input size works."""
        return 1

    @classmethod
    def tiny(cls) -> Li2025Config:
        """Return a very small config with the default layout, for tests and smoke runs."""
        return cls(cnn_channels=(4, 8), cnn_dilations=(1, 2), d_model=8, heads=2, layers=1,
                   ff=16, fusion_channels=(4, 8, 8), feature_channels=(2, 4))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists for tuples), for checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Li2025Config:
        """Inverse of :meth:`to_dict`; strict.

        Raises
        ------
        InputError
            If keys are unknown or missing, or a value is invalid.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a li2025 config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data))
        if unknown or missing:
            raise InputError(f"li2025 config has unknown keys {unknown} and lacks {missing}: "
                             "it was written by another lamap; use that version")
        return cls(**dict(data))


def _convs(channels: list[int], *, last_relu: bool = True,
           dilations: tuple[int, ...] | None = None) -> nn.Sequential:
    """3×3 convolutions with replication padding, ReLU after each (but maybe the last)."""
    layers: list[nn.Module] = []
    steps = dilations or (1,) * (len(channels) - 1)
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        layers.append(nn.Conv2d(a, b, 3, padding=steps[i], dilation=steps[i],
                                padding_mode="replicate"))
        if last_relu or i < len(channels) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def day_encoding(days: Tensor, width: int) -> Tensor:
    """Sinusoidal encoding of days ``(...,)`` → ``(..., width)``, periods 2 to 730 days."""
    half = width // 2
    exponent = torch.arange(half, device=days.device, dtype=torch.float32) / max(half - 1, 1)
    periods = 2.0 * (_MAX_PERIOD / 2.0) ** exponent
    angle = 2.0 * math.pi * days.float()[..., None] / periods
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class S1Transformer(nn.Module):
    """Step 1: a 2D CNN per acquisition, a Transformer over time per pixel, LAI at queries."""

    def __init__(self, config: Li2025Config) -> None:
        super().__init__()
        self.config = config
        self.cnn = _convs([3, *config.cnn_channels], dilations=config.cnn_dilations)
        self.project = nn.Linear(config.cnn_channels[-1], config.d_model)
        self.season = nn.Linear(config.season_channels, config.d_model)
        self.query = nn.Parameter(torch.zeros(config.d_model))
        layer = nn.TransformerEncoderLayer(config.d_model, config.heads, config.ff, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, 1)

    def forward(self, s1_series: Tensor, s1_series_valid: Tensor, s1_days: Tensor,
                query_days: Tensor, season: Tensor) -> Tensor:
        """Return LAI/5 ``(B, Q, H, W)`` at the query days (days relative to D)."""
        batch, passes, _, height, width = s1_series.shape
        valid = s1_series_valid[:, :, None]
        frames = torch.cat([s1_series * valid, valid], dim=2).flatten(0, 1)
        feats = self.cnn(frames).reshape(batch, passes, -1, height, width)
        tokens = self.project(feats.permute(0, 3, 4, 1, 2))  # B, H, W, N, d
        context = self.season(season)[:, None, None, None]
        tokens = tokens + day_encoding(s1_days, self.config.d_model)[:, None, None] + context
        queries = (self.query + day_encoding(query_days, self.config.d_model))[:, None, None]
        queries = queries.expand(-1, height, width, -1, -1) + context
        ignore = (s1_series_valid <= 0.5).permute(0, 2, 3, 1)
        keep = torch.zeros((*ignore.shape[:3], queries.shape[3]), dtype=torch.bool,
                           device=ignore.device)
        seq = torch.cat([tokens, queries], dim=3).flatten(0, 2)
        mask = torch.cat([ignore, keep], dim=3).flatten(0, 2)
        out = self._encode(seq, mask)[:, passes:]
        lai = self.head(self.norm(out))[..., 0]  # B·H·W, Q
        return lai.reshape(batch, height, width, -1).permute(0, 3, 1, 2)

    def _encode(self, seq: Tensor, mask: Tensor) -> Tensor:
        step = self.config.max_sequences
        if seq.shape[0] <= step:
            return self.encoder(seq, src_key_padding_mask=mask)  # type: ignore[no-any-return]
        return torch.cat([self.encoder(seq[i:i + step], src_key_padding_mask=mask[i:i + step])
                          for i in range(0, seq.shape[0], step)])


class Edcstfn(nn.Module):
    """Step 2: EDCSTFN for one reference (fine encoder + residual encoder → decoder)."""

    def __init__(self, config: Li2025Config) -> None:
        super().__init__()
        widths = list(config.fusion_channels)
        masks = config.mask_channels
        self.fine = _convs([1 + masks, *widths])
        self.residual = _convs([3 + masks, *widths])
        self.decoder = _convs([widths[-1], *widths[-2::-1]])
        self.out = nn.Conv2d(widths[0], 1, 1)
        self.sigma = nn.Sequential(nn.Conv2d(widths[0] + 3, 16, 1), nn.ReLU(inplace=True),
                                   nn.Conv2d(16, 1, 1)) if config.sigma_head else None

    def forward(self, fine: Tensor, masks: Tensor, coarse: Tensor,
                coarse_now: Tensor) -> tuple[Tensor, Tensor]:
        """Return the prediction ``(B, 1, H, W)`` and the decoder features."""
        encoded = self.fine(torch.cat([fine, masks], 1)) + self.residual(
            torch.cat([coarse, fine, coarse_now, masks], 1))
        feats = self.decoder(encoded)
        return self.out(feats), feats


class FeatureNet(nn.Module):
    """The autoencoder of EDCSTFN's feature loss; only the loss uses it."""

    def __init__(self, config: Li2025Config) -> None:
        super().__init__()
        widths = list(config.feature_channels)
        self.encoder = _convs([1, *widths])
        self.decoder = _convs([*widths[::-1], 1], last_relu=False)

    def forward(self, lai: Tensor) -> Tensor:
        """Reconstruct ``lai`` ``(B, 1, H, W)``."""
        return self.decoder(self.encoder(lai))  # type: ignore[no-any-return]


class Li2025Net(nn.Module):
    """The two steps of li2025 (see the module docstring).

    Parameters
    ----------
    config : Li2025Config, optional
        Architecture; default the one the demo weights use.
    """

    architecture = ARCHITECTURE
    vector_inputs = frozenset({"s1_days", "past_days", "season"})

    def __init__(self, config: Li2025Config | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else Li2025Config()
        self.step1 = S1Transformer(self.config)
        self.fusion = Edcstfn(self.config)
        self.feature_net = FeatureNet(self.config)
        self.sd_scale: Tensor
        self.register_buffer("sd_scale", torch.ones(()))

    @property
    def downsampling(self) -> int:
        """Nothing pools: 1."""
        return 1

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Non-batch, non-spatial dimensions of each input."""
        cfg = self.config
        return {"s1_series": (cfg.passes, 2), "s1_series_valid": (cfg.passes,),
                "s1_days": (cfg.passes,), "past_days": (cfg.past_steps,),
                "lai": (cfg.past_steps,), "masks": (cfg.past_steps, cfg.mask_channels),
                "season": (cfg.season_channels,)}

    def coarse(self, s1_series: Tensor, s1_series_valid: Tensor, s1_days: Tensor,
               past_days: Tensor, season: Tensor) -> Tensor:
        """Step 1: LAI/5 ``(B, past_steps + 1, H, W)`` at t-2, t-1 and D."""
        zero = torch.zeros_like(past_days[:, :1])
        queries = torch.cat([-past_days.float(), zero], dim=1)
        return self.step1(s1_series, s1_series_valid, s1_days, queries, season)

    def outputs(self, s1_series: Tensor, s1_series_valid: Tensor, s1_days: Tensor,
                past_days: Tensor, lai: Tensor, masks: Tensor, season: Tensor,
                coarse: Tensor | None = None) -> dict[str, Tensor]:
        """Run both steps; every output ``(B, 1, H, W)`` on the LAI/5 scale.

        Returns
        -------
        dict
            ``lai`` (the combination), ``step1`` (step 1 at D), ``ref_t-2``, ``ref_t-1``
            (EDCSTFN from each reference), ``weight_t-2``, ``weight_t-1`` and, with the
            sigma head, ``sd``.
        """
        if coarse is None:
            coarse = self.coarse(s1_series, s1_series_valid, s1_days, past_days, season)
        now = coarse[:, -1:]
        preds, sigmas, weights = [], [], []
        for k in range(self.config.past_steps):
            valid = (masks[:, k, :1] > 0.5).to(coarse.dtype)
            fine = torch.where(valid > 0, lai[:, k:k + 1], coarse[:, k:k + 1])
            pred, feats = self.fusion(fine, masks[:, k], coarse[:, k:k + 1], now)
            preds.append(pred)
            weights.append((valid + INVALID_WEIGHT) / (
                (now - coarse[:, k:k + 1]).abs() + RESIDUAL_EPS))
            if self.fusion.sigma is not None:
                age = (past_days[:, k, None, None, None] / 30.0).to(feats.dtype)
                cues = [feats, valid, (now - coarse[:, k:k + 1]).abs(), age.expand_as(valid)]
                raw = self.fusion.sigma(torch.cat([c.to(feats.dtype) for c in cues], 1))
                sigmas.append(nn.functional.softplus(raw) + 1e-3)
        total = torch.stack(weights).sum(0)
        weights = [w / total for w in weights]
        out = {"lai": sum(w * p for w, p in zip(weights, preds, strict=True)), "step1": now}
        for k, name in enumerate(("t-2", "t-1")[-self.config.past_steps:]):
            out[f"ref_{name}"], out[f"weight_{name}"] = preds[k], weights[k]
        if sigmas:
            var = sum(w * (s**2 + (p - out["lai"]) ** 2)
                      for w, s, p in zip(weights, sigmas, preds, strict=True))
            out["sd"] = torch.sqrt(var) * self.sd_scale
        return out  # type: ignore[return-value]
