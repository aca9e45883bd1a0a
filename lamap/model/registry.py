"""The model registry: named architectures, each declaring its inputs, halo and stages.

A checkpoint names its architecture (:func:`lamap.model.save_checkpoint`), so
``lamap map --model X.pt`` and ``lamap evaluate`` need nothing else: they look the name up
here and read the declaration, never a hard-coded input list.

=============  ====================================  ======================================
name           inputs                                training stages
=============  ====================================  ======================================
``lnb-fused``  S1 at t-2, t-1, D (nearest passes);   ``enc1``, ``enc2`` (each encoder alone),
               S2 LAI and masks at t-2, t-1; season  ``fused`` (end to end), ``sigma``
``li2025``     the S1 passes in [D − 36 d, D] (6);   ``step1`` (CNN-Transformer), ``features``
               S2 LAI and masks at t-2, t-1; season  (the feature-loss autoencoder),
                                                     ``step2`` (EDCSTFN), ``sigma``
=============  ====================================  ======================================

Every architecture's network has the same small interface: ``config`` (with ``to_dict``,
``downsampling``), ``input_shapes()`` (the non-batch, non-spatial dimensions of each
input), ``vector_inputs`` (inputs without ``y``/``x``) and ``outputs(**inputs)``, a dict of
``(B, 1, H, W)`` tensors on the LAI/scale scale with at least ``lai`` (and ``sd`` when it
predicts a spread).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from lamap.errors import InputError
from lamap.feature_spec import DEFAULT_SPEC, FeatureSpec
from lamap.model.config import ModelConfig
from lamap.model.li2025 import ARCHITECTURE as LI2025
from lamap.model.li2025 import Li2025Config, Li2025Net
from lamap.model.network import ARCHITECTURE as FUSED
from lamap.model.network import LEGACY_ARCHITECTURE, FusedLAINet

__all__ = [
    "ARCHITECTURES",
    "FUSED_NAME",
    "TRAINING_CACHE_SPEC",
    "Architecture",
    "Stage",
    "architecture_of",
    "get_architecture",
    "seeded_network",
]


@dataclass(frozen=True)
class Stage:
    """One training stage of an architecture.

    Attributes
    ----------
    name : str
        The stage's name (in training summaries and state files).
    epochs_field : str
        The :class:`lamap.train.config.TrainConfig` field that gives its epochs.
    trains : str
        What it trains, and against what.
    """

    name: str
    epochs_field: str
    trains: str


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: what it takes, how far it sees, how it is trained.

    Attributes
    ----------
    name : str
        Its name in checkpoints and on the command line (``--arch``).
    title : str
        One line saying what it is.
    inputs : str
        Which Sentinel-1 and Sentinel-2 steps and channels it takes.
    spec : FeatureSpec
        The feature definition it trains with by default (its inputs, exactly).
    stages : tuple of Stage
        Training stages, in order.
    network : type
        The ``nn.Module`` class; built from a config.
    config_type : type
        Its config class (``from_dict``, ``to_dict``, ``tiny``).
    spatial_inputs, vector_inputs : tuple of str
        Its inputs with ``y``/``x`` (stacked into channels for inference, in this order) and
        without (season, days; one context vector per sample).
    methods : dict
        Output name → method label in evaluation tables (``lai`` is the model itself).
    max_window : int, optional
        Largest model window in pixels for inference (memory); None: one per block.
    aliases : tuple of str
        Older names that checkpoints may carry.
    cpu_demo : dict
        :class:`~lamap.train.config.TrainConfig` fields of ``--preset cpu-demo``.
    """

    name: str
    title: str
    inputs: str
    spec: FeatureSpec
    stages: tuple[Stage, ...]
    network: type[nn.Module]
    config_type: Any
    spatial_inputs: tuple[str, ...]
    vector_inputs: tuple[str, ...]
    methods: dict[str, str]
    max_window: int | None = None
    aliases: tuple[str, ...] = ()
    cpu_demo: dict[str, Any] = field(default_factory=dict)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The stages' names, in order."""
        return tuple(stage.name for stage in self.stages)

    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        """Read a config written by ``config.to_dict()`` (strict)."""
        return self.config_type.from_dict(data)

    def build(self, config: Any = None) -> nn.Module:
        """Return an untrained network (the default config when ``config`` is None)."""
        return self.network(config)

    def halo(self, config: Any) -> int:
        """Return the halo blocks need: the receptive field, rounded up to the pooling factor."""
        from lamap.model.receptive import recommended_halo

        return recommended_halo(config)

    def cache_spec(self) -> FeatureSpec:
        """Return the spec of its training cache: :data:`TRAINING_CACHE_SPEC`.

        One cache holds every architecture's inputs, so models trained on one area are
        scored side by side on the same pixels (:meth:`FeatureSpec.provides`).
        """
        return TRAINING_CACHE_SPEC


_FUSED = Architecture(
    name=FUSED,
    title="LeafNothingBehind fused network (MODEL.md): radar and optical-history U-nets",
    inputs="S1 VV, VH at t-2, t-1, D (nearest passes); S2 LAI and 6 mask channels at t-2, "
           "t-1; season",
    spec=DEFAULT_SPEC,
    stages=(Stage("enc1", "epochs_enc1", "encoder 1 (radar) with its head, masked MSE"),
            Stage("enc2", "epochs_enc2", "encoder 2 (optical history) with its head"),
            Stage("fused", "epochs", "end to end, dec + α·enc1 + β·enc2"),
            Stage("sigma", "epochs_sigma", "the spread head alone, Gaussian NLL, mean frozen")),
    network=FusedLAINet,
    config_type=ModelConfig,
    spatial_inputs=("s1", "lai", "masks"),
    vector_inputs=("season",),
    methods={"lai": "model", "enc1": "encoder 1", "enc2": "encoder 2"},
    aliases=(LEGACY_ARCHITECTURE,),
)

_LI2025 = Architecture(
    name=LI2025,
    title="Li et al. 2025: 2D CNN-Transformer (S1 → LAI), then EDCSTFN fusion with S2 LAI",
    inputs="S1 VV, VH of the latest 6 passes in [D − 36 d, D] (missing ones masked) with "
           "their days; S2 LAI and 6 mask channels at t-2, t-1 (references); season",
    spec=replace(DEFAULT_SPEC, s1_at_steps=False, s1_window_days=36, s1_passes=6),
    stages=(Stage("step1", "epochs_enc1", "the CNN-Transformer, masked MSE at t-2, t-1, D"),
            Stage("features", "epochs_enc2", "the feature-loss autoencoder on S2 LAI"),
            Stage("step2", "epochs", "EDCSTFN, MSE + feature loss + 0.8·(1 − MS-SSIM)"),
            Stage("sigma", "epochs_sigma", "the spread head alone, Gaussian NLL, mean frozen")),
    network=Li2025Net,
    config_type=Li2025Config,
    spatial_inputs=("s1_series", "s1_series_valid", "lai", "masks"),
    vector_inputs=("s1_days", "past_days", "season"),
    methods={"lai": "li2025", "step1": "li2025 step 1", "ref_t-1": "li2025 step 2 (t-1 only)",
             "ref_t-2": "li2025 step 2 (t-2 only)"},
    max_window=256,
    cpu_demo={"epochs_enc1": 20, "epochs_enc2": 2, "epochs": 30, "epochs_sigma": 60,
              "batch_size": 16, "crop": 48, "cloudy_weight": 1.0},
)

#: The feature spec of training caches: the fused model's S1 steps and li2025's S1 series.
TRAINING_CACHE_SPEC = replace(_LI2025.spec, s1_at_steps=True)
#: Name of the fused network, the default.
FUSED_NAME = _FUSED.name
#: Every registered architecture, by name.
ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (_FUSED, _LI2025)}


def get_architecture(name: str) -> Architecture:
    """Return the architecture called ``name`` (or one of its older names).

    Raises
    ------
    InputError
        If no architecture has that name; the message lists them.
    """
    for arch in ARCHITECTURES.values():
        if name == arch.name or name in arch.aliases:
            return arch
    raise InputError(f"unknown model architecture {name!r}: lamap has "
                     f"{', '.join(ARCHITECTURES)} (choose one with --arch)")


def architecture_of(thing: Any) -> Architecture:
    """Return the architecture of a network or of a config.

    Raises
    ------
    InputError
        If ``thing`` is neither.
    """
    for arch in ARCHITECTURES.values():
        if isinstance(thing, arch.network | arch.config_type):
            return arch
    raise InputError(f"{type(thing).__name__} is not a lamap network or model config")


def seeded_network(arch: Architecture, seed: int, config: Any = None) -> nn.Module:
    """Build a deterministic, untrained network in eval mode (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = arch.build(config)
    return model.eval()
