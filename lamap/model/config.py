"""The architecture of the fused LAI network as a small frozen, validated value object.

:class:`ModelConfig` is stored in every checkpoint (:meth:`ModelConfig.to_dict`) and read back
strictly (:meth:`ModelConfig.from_dict`), so a checkpoint cannot be misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeAlias, get_args

import numpy as np

from lamap.errors import InputError

__all__ = ["DOWNSAMPLING", "BatchNormPosition", "ModelConfig"]

#: Down-sampling factor of the default network (two 2×2 poolings); inputs must be multiples.
DOWNSAMPLING = 4

BatchNormPosition: TypeAlias = Literal["block", "conv", "none"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`~lamap.model.FusedLAINet`; stored in every checkpoint.

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
    sigma_head : bool
        Add the per-pixel spread head (:class:`~lamap.model.network.SigmaHead`); configs
        written before it existed read back without it.
    residual : bool
        The decoder and encoder 2's head predict the change from the latest clear past LAI
        (t-1 where valid, else t-2 where valid, else 0), which is added back: a pixel that
        does not change costs the network nothing to predict. Configs written before this
        option read back without it (the shipped weights until the family training).

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
    sigma_head: bool = False
    residual: bool = True

    def __post_init__(self) -> None:
        """Validate and normalise (tuples of int, float dropout)."""
        for name in ("encoder_channels", "decoder_channels"):
            object.__setattr__(self, name, _channel_list(name, getattr(self, name)))
        for name in ("feature_width", "mask_embedding_width", "s1_channels", "past_steps",
                     "mask_channels", "season_channels"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        object.__setattr__(self, "dropout", _dropout(self.dropout))
        for name in ("sigma_head", "residual"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"model config {name} must be true or false, "
                                 f"got {getattr(self, name)!r}")
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
        # written before the sigma head and the residual output existed
        data = {"sigma_head": False, "residual": False, **data}
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
