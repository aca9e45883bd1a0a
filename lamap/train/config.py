"""The hyper-parameters of a training run (:class:`TrainConfig`) and its schedule.

:class:`TrainConfig` is a frozen, validated value object; it is stored in every checkpoint and
state file (:meth:`TrainConfig.to_dict`) and read from YAML for training runs
(:meth:`TrainConfig.from_yaml`). :func:`milestones` gives each stage's learning-rate decays, and
:meth:`TrainConfig.estimate_cpu_seconds` what a run costs on the 2-core CPU
(:data:`CPU_STEP_SECONDS`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

from lamap.errors import InputError

__all__ = ["CPU_STEP_SECONDS", "STAGES", "Precision", "Stage", "TrainConfig", "milestones",
           "stage_number"]

#: A training stage's name (the architectures declare theirs, :mod:`lamap.model.registry`).
Stage: TypeAlias = str
Precision: TypeAlias = Literal["float32", "bfloat16"]
#: The fused model's training stages, in the order they run.
STAGES: tuple[Stage, ...] = ("enc1", "enc2", "fused", "sigma")
#: Which field gives each stage's epochs (the registry's ``Stage.epochs_field``).
_EPOCH_FIELDS = {"enc1": "epochs_enc1", "enc2": "epochs_enc2", "fused": "epochs",
                 "sigma": "epochs_sigma", "step1": "epochs_enc1", "features": "epochs_enc2",
                 "step2": "epochs"}
#: The end-to-end stages: those whose epochs are the ``epochs`` field.
END_TO_END_STAGES = frozenset(stage for stage, name in _EPOCH_FIELDS.items() if name == "epochs")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`lamap.train.loop.train`; JSON-able, stored in checkpoints.

    The defaults are MODEL.md's full recipe for a GPU: 100 end-to-end epochs, batch 32,
    Adam at 1e-3 and two evenly spaced decays by 0.2. MODEL.md does not say how long the
    encoders are pre-trained; 20 epochs each (a fifth of the end-to-end run, with the same
    decay schedule) brings each head close to its plateau on the synthetic world and costs
    less than a third of the end-to-end stage, whose encoders are cheaper than the decoder.

    The epochs fields name the fused model's stages; other architectures map their stages
    onto them (:mod:`lamap.model.registry`; ``li2025``: ``step1`` ← ``epochs_enc1``,
    ``features`` ← ``epochs_enc2``, ``step2`` ← ``epochs``).

    Parameters
    ----------
    epochs_enc1, epochs_enc2 : int
        Pre-training epochs of encoder 1 (radar) and encoder 2 (optical history); 0 skips.
    epochs : int
        End-to-end epochs with intermediate supervision; 0 skips.
    epochs_sigma : int
        Epochs of the spread head alone (the mean frozen), on ``sigma_split``; 0 skips.
    batch_size : int
        Patches per step.
    lr : float
        Initial Adam learning rate of every stage.
    decay_factor : float
        The learning rate is multiplied by this at 1/3 and 2/3 of each stage.
    alpha, beta : float
        Weights of the encoder-1 and encoder-2 heads in the end-to-end loss.
    cloudy_weight : float
        Per-pixel loss weight of samples whose past is cloudy, relative to 1 for the others
        (MODEL.md: cloudy pasts are rare, a higher weight can help).
    max_steps_per_epoch : int, optional
        Stop each training epoch after this many batches (a random subset, new each epoch),
        to fit a CPU budget; None runs through the whole training set.
    max_val_batches : int, optional
        Validate on at most this many batches (always the same first ones); None: all.
    seed : int
        Seed of the batch order and of the global torch RNG (dropout) during training.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    num_workers : int
        DataLoader worker processes (0 loads in the training process).
    threads : int, optional
        ``torch.set_num_threads`` during training (restored afterwards); None keeps torch's.
    precision : {"float32", "bfloat16"}
        ``"bfloat16"`` runs training forward passes under ``torch.autocast`` in bfloat16
        (weights, optimiser, losses and validation stay float32): about 2× faster on CPUs
        with AMX or AVX512-BF16 and on recent GPUs, much slower on CPUs without them.
    channels_last : bool
        Keep weights and 4-D inputs in ``torch.channels_last`` memory format, the layout that
        oneDNN and cuDNN convolutions prefer: a bfloat16 end-to-end step of batch 8 on
        128-pixel patches took 0.57 s instead of 1.06 s on the 2-core CPU (1.9×). It does not
        change what is computed, so it may differ on resume.
    init_head_bias : bool
        Before the first stage, set the biases of the three 1×1 heads to the mean training
        target (:func:`lamap.train.loop.init_head_biases`). MODEL.md says nothing about
        initialisation; a head that starts at 0 spends hundreds of Adam steps (about 1e-3 per
        step) moving its output to the mean LAI/5 of about 0.4-0.5, which short CPU runs
        cannot afford (on a fake cache, 40 steps of the default network reach a validation
        RMSE of 0.17 with it and 0.42 without). Only the heads of stages that run are set.
    crop : int, optional
        Train on random ``crop × crop`` windows of the patches (new each epoch; validation
        sees whole patches): more, cheaper steps for models with a small receptive field.
    average_epochs : int
        Average the weights of the last ``average_epochs`` end-to-end epochs, recompute
        the BatchNorm statistics for them and keep the mean as the stage's result
        (:mod:`lamap.train.averaging`); 0 (default) keeps the best-validated epoch.
    sigma_split : str
        Cache split the spread head is fitted on: ``validation`` by default, patches the
        mean was not fitted on, so σ learns the errors of unseen data, not of training data.

    Raises
    ------
    InputError
        If a value is out of range; the message names it.
    """

    epochs_enc1: int = 20
    epochs_enc2: int = 20
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    decay_factor: float = 0.2
    alpha: float = 0.1
    beta: float = 0.15
    cloudy_weight: float = 1.0
    max_steps_per_epoch: int | None = None
    max_val_batches: int | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    threads: int | None = None
    precision: Precision = "float32"
    channels_last: bool = True
    init_head_bias: bool = True
    epochs_sigma: int = 0
    crop: int | None = None
    sigma_split: str = "validation"
    average_epochs: int = 0

    def __post_init__(self) -> None:
        """Validate every field."""
        for name in ("epochs_enc1", "epochs_enc2", "epochs", "epochs_sigma", "num_workers",
                     "seed", "average_epochs"):
            _check_int(name, getattr(self, name), low=0)
        _check_int("batch_size", self.batch_size, low=1)
        for name in ("max_steps_per_epoch", "max_val_batches", "threads", "crop"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), low=1)
        if self.epochs_enc1 + self.epochs_enc2 + self.epochs + self.epochs_sigma == 0:
            raise InputError("train config has 0 epochs in every stage: set epochs >= 1")
        if self.epochs and self.average_epochs > self.epochs:
            raise InputError(
                f"train config average_epochs ({self.average_epochs}) exceeds the end-to-end "
                f"epochs ({self.epochs}): average at most the epochs that run"
            )
        _check_number("lr", self.lr, positive=True)
        _check_number("cloudy_weight", self.cloudy_weight, positive=True)
        for name in ("alpha", "beta"):
            _check_number(name, getattr(self, name), positive=False)
        if not 0 < self.decay_factor <= 1:
            raise InputError(
                f"train config decay_factor must be in (0, 1], got {self.decay_factor!r}"
            )
        if self.precision not in get_args(Precision):
            raise InputError(
                f"train config precision must be one of {list(get_args(Precision))}, "
                f"got {self.precision!r}"
            )
        if not isinstance(self.device, str):
            raise InputError(f"train config device must be a string, got {self.device!r}")

    def stage_epochs(self, stage: Stage) -> int:
        """Epochs of ``stage`` (a stage of any registered architecture)."""
        if stage not in _EPOCH_FIELDS:
            raise InputError(f"unknown training stage {stage!r}: use {sorted(_EPOCH_FIELDS)}")
        return int(getattr(self, _EPOCH_FIELDS[stage]))

    @classmethod
    def cpu_demo(cls, *, precision: Precision = "bfloat16") -> TrainConfig:
        """Return the recipe scaled down to train the demo weights on the 2-core CPU.

        The stages keep the paper's shape (Adam 1e-3, two decays by 0.2 per stage, whole
        epochs, validation on the whole validation split) over 6 + 6 + 24 epochs of batch 4
        256-pixel patches, with cloudy pasts weighing double, bfloat16 autocast and
        channels-last tensors. On the default demo world (about 430 training patches) that
        is about 2 500 end-to-end steps and 75 minutes on the 2-core CPU
        (:meth:`estimate_cpu_seconds`). Batch 4 instead of 32: the same number of pixels per
        step as 16 patches of 128 pixels, and 8× more optimiser steps than batch 32 in the
        same time, which a run 25× shorter than the paper's needs more than large batches.

        Parameters
        ----------
        precision : {"float32", "bfloat16"}
            ``"bfloat16"`` (autocast) is 3.8× faster than float32 on CPUs with AMX; use
            ``"float32"`` on CPUs without bfloat16 support.

        Returns
        -------
        TrainConfig
        """
        return cls(epochs_enc1=6, epochs_enc2=6, epochs=24, batch_size=4, cloudy_weight=2.0,
                   device="cpu", threads=2, precision=precision)

    def estimate_cpu_seconds(self, patch_size: int, *, train_patches: int | None = None,
                             val_patches: int | None = None) -> float:
        """Estimate the wall time of training with the default network on the 2-core CPU.

        Uses :data:`CPU_STEP_SECONDS` (measured with 2 threads on the 2-core Xeon with AMX
        that trains the demo weights; other CPUs differ), linear in the batch size and
        scaled by area from the nearest measured patch size at or above ``patch_size``.

        Parameters
        ----------
        patch_size : int
            Patch edge in pixels.
        train_patches, val_patches : int, optional
            Split sizes; None assumes enough for ``max_steps_per_epoch`` and
            ``max_val_batches`` full batches (both must then be set).

        Returns
        -------
        float
            Seconds, validation and checkpointing included.

        Raises
        ------
        InputError
            If a split size is needed and missing.
        """
        fused = _cpu_step_seconds(self.precision, patch_size) * self.batch_size / 8
        val = _cpu_step_seconds("float32", patch_size) * self.batch_size / 8 * _VAL_SHARE
        steps = _steps_for(train_patches, self.batch_size, self.max_steps_per_epoch, "train")
        val_steps = _steps_for(val_patches, self.batch_size, self.max_val_batches, "val")
        encoder = _ENCODER_SHARE[self.precision] * fused
        epochs = self.epochs_enc1 + self.epochs_enc2 + self.epochs
        return (steps * (self.epochs * fused + (epochs - self.epochs) * encoder)
                + epochs * (val_steps * val + _EPOCH_OVERHEAD_S))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for checkpoints and YAML files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping of field names (a subset; the rest keep their defaults).

        Parameters
        ----------
        data : mapping
            Field names and values, e.g. from :meth:`to_dict` or a YAML file.

        Returns
        -------
        TrainConfig

        Raises
        ------
        InputError
            If ``data`` is not a mapping, has unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a train config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise InputError(
                f"train config has unknown keys {unknown}; the known keys are {sorted(known)}"
            )
        return cls(**dict(data))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a config from a YAML file holding a mapping of field names.

        Parameters
        ----------
        path : str or path-like
            The YAML file.

        Returns
        -------
        TrainConfig

        Raises
        ------
        InputError
            If the file is missing, not YAML, or not a valid config.
        """
        import yaml  # PyYAML comes with dask/distributed

        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"cannot read train config {path}: {err}") from err
        try:
            return cls.from_dict(data)
        except InputError as err:
            raise InputError(f"train config {path}: {err}") from err


def _check_int(name: str, value: object, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"train config {name} must be an integer >= {low}, got {value!r}")


def _check_number(name: str, value: object, *, positive: bool) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise InputError(f"train config {name} must be a finite number {bound}, got {value!r}")


def stage_number(stage: Stage) -> int:
    """Return a fixed number per stage name (it seeds the batch order; the fused's: 0-3)."""
    if stage not in _EPOCH_FIELDS:
        raise InputError(f"unknown training stage {stage!r}: use {sorted(_EPOCH_FIELDS)}")
    return list(_EPOCH_FIELDS).index(stage)


def milestones(epochs: int) -> list[int]:
    """Epochs after which a stage of ``epochs`` epochs decays its learning rate.

    Two evenly spaced decays, after epoch ``round(epochs / 3)`` and ``round(2 · epochs / 3)``
    (e.g. 33 and 67 of 100); a decay that would fall on epoch 0 or at the very end, where it
    could change nothing, is dropped, and coinciding decays are merged (so 2 epochs give one
    decay, after the first).

    Parameters
    ----------
    epochs : int
        Epochs of the stage.

    Returns
    -------
    list of int
        Sorted epoch counts, as ``torch.optim.lr_scheduler.MultiStepLR`` takes them.
    """
    return sorted({m for m in (round(epochs / 3), round(2 * epochs / 3)) if 0 < m < epochs})


#: Seconds per end-to-end training step of batch 8 (forward, backward, Adam) of the default
#: network with 2 threads and channels-last tensors on the 2-core Xeon (Sapphire Rapids, AMX)
#: of the lamap workplace, by (precision, patch size), measured on an idle machine.
CPU_STEP_SECONDS: dict[tuple[Precision, int], float] = {
    ("float32", 64): 0.51, ("float32", 128): 1.99, ("float32", 256): 10.3,
    ("bfloat16", 64): 0.15, ("bfloat16", 128): 0.53, ("bfloat16", 256): 2.71,
}
#: An encoder pre-training step costs this share of an end-to-end step.
_ENCODER_SHARE: dict[Precision, float] = {"float32": 0.18, "bfloat16": 0.22}
#: A validation batch (forward only, float32) costs this share of a float32 training step.
_VAL_SHARE = 0.27
#: Checkpoint, state file and data loader start per epoch, seconds.
_EPOCH_OVERHEAD_S = 1.0


def _cpu_step_seconds(precision: Precision, patch_size: int) -> float:
    sizes = sorted(p for prec, p in CPU_STEP_SECONDS if prec == precision)
    ref = next((p for p in sizes if p >= patch_size), sizes[-1])
    return CPU_STEP_SECONDS[precision, ref] * (patch_size / ref) ** 2


def _steps_for(patches: int | None, batch: int, cap: int | None, what: str) -> int:
    if patches is None:
        if cap is None:
            raise InputError(
                f"cannot estimate the {what} steps per epoch without the split size: pass "
                f"{what}_patches or set a cap (max_steps_per_epoch, max_val_batches)"
            )
        return cap
    full = math.ceil(patches / batch)
    return full if cap is None else min(full, cap)
