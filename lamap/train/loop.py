"""Training the fused model with the paper's recipe (MODEL.md), resumable epoch by epoch.

Three stages run in order:

1. ``enc1``: encoder 1 (radar) alone, :meth:`~lamap.model.FusedLAINet.forward_enc1` and its
   head, masked MSE against LAI/5 at t;
2. ``enc2``: encoder 2 (optical history) alone, the same way;
3. ``fused``: the whole network end to end with intermediate supervision,
   :func:`lamap.model.fused_loss` (``dec + α·enc1 + β·enc2``).

Before the first stage the three heads' biases are set to the mean training target
(:func:`init_head_biases`, :attr:`TrainConfig.init_head_bias`). Each stage gets a fresh Adam
optimiser over the parameters it trains and a step decay by
:attr:`TrainConfig.decay_factor` at 1/3 and 2/3 of its epochs (:func:`milestones`). After every
epoch the model is validated (masked RMSE on LAI/5 and R² over valid target pixels, with the
head the stage trains) and two files are written atomically:

* ``out``: the model as a lamap checkpoint (:func:`lamap.model.save_checkpoint`), with the
  training summary (stages, epochs, steps, losses, validation metrics per epoch, data sizes,
  wall time, config); it is a usable model after every epoch. It holds the weights of the
  epoch with the lowest validation RMSE of the stage running (the newest when there is no
  validation set), recorded as ``selected`` in the summary: with small batches the
  validation score of single epochs jumps (R² 0.38-0.85 during the CPU demo training at
  the first learning rate), and the last epoch is not always the best;
* ``out.with_suffix(".state.pt")`` (:func:`state_path`): model, optimiser, scheduler, stage,
  epoch and RNG state, so ``train(..., resume=True)`` continues exactly where it stopped. It
  holds only plain types and tensors and loads with ``torch.load(weights_only=True)``.

Determinism: the batch order of every epoch comes from a torch Generator seeded with
``(seed, stage, epoch)``, and the global torch RNG (dropout) is seeded once and saved in the
state file, so an interrupted and resumed run gives the same weights as an uninterrupted one.
A dataset with a ``set_epoch(epoch)`` method (as ``DistributedSampler`` has) is told the epoch
before each one, so its augmentation can depend on ``(rng_seed, epoch, index)`` only.

Any map-style torch dataset works if its items are dicts with ``s1 (6, P, P)``,
``lai (2, P, P)``, ``masks (2, 6, P, P)``, ``season (2,)``, ``target (1, P, P)`` (LAI/5),
``weight (1, P, P)`` (the loss mask) and ``cloudy`` (bool: the sample's past is cloudy), as
``lamap.train.data.PatchDataset`` yields.
"""

from __future__ import annotations

import math
import os
import pickle
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from lamap.errors import InputError, LamapError
from lamap.model import (
    FusedLAINet,
    Prediction,
    fused_loss,
    load_checkpoint,
    masked_mse,
    resolve_device,
    save_checkpoint,
)
from lamap.runtime import write_atomic

__all__ = [
    "BATCH_KEYS",
    "CPU_STEP_SECONDS",
    "STAGES",
    "STATE_FORMAT",
    "EpochRecord",
    "Precision",
    "Stage",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "ValMetrics",
    "batch_weight",
    "init_head_biases",
    "milestones",
    "stage_loss",
    "state_path",
    "train",
    "validate",
]

Stage: TypeAlias = Literal["enc1", "enc2", "fused"]
Precision: TypeAlias = Literal["float32", "bfloat16"]
#: The training stages, in the order they run.
STAGES: tuple[Stage, ...] = get_args(Stage)
#: Keys every training batch must have.
BATCH_KEYS = ("s1", "lai", "masks", "season", "target", "weight", "cloudy")
#: Value of the ``format`` key of a resumable state file.
STATE_FORMAT = "lamap-train-state"
_STATE_VERSION = 1
#: Config fields that only say how to run, not what is trained; they may change on resume.
_RUNTIME_FIELDS = ("device", "num_workers", "threads", "channels_last")


class TrainingError(LamapError):
    """Training cannot go on: a diverging loss, or a state file that does not fit the run."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`; JSON-able, stored in every checkpoint.

    The defaults are MODEL.md's full recipe for a GPU: 100 end-to-end epochs, batch 32,
    Adam at 1e-3 and two evenly spaced decays by 0.2. MODEL.md does not say how long the
    encoders are pre-trained; 20 epochs each (a fifth of the end-to-end run, with the same
    decay schedule) brings each head close to its plateau on the synthetic world and costs
    less than a third of the end-to-end stage, whose encoders are cheaper than the decoder.

    Parameters
    ----------
    epochs_enc1, epochs_enc2 : int
        Pre-training epochs of encoder 1 (radar) and encoder 2 (optical history); 0 skips.
    epochs : int
        End-to-end epochs with intermediate supervision; 0 skips.
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
        target (:func:`init_head_biases`). MODEL.md says nothing about initialisation; a head
        that starts at 0 spends hundreds of Adam steps (about 1e-3 per step) moving its
        output to the mean LAI/5 of about 0.4-0.5, which short CPU runs cannot afford (on a
        fake cache, 40 steps of the default network reach a validation RMSE of 0.17 with it
        and 0.42 without).

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

    def __post_init__(self) -> None:
        """Validate every field."""
        for name in ("epochs_enc1", "epochs_enc2", "epochs", "num_workers", "seed"):
            _check_int(name, getattr(self, name), low=0)
        _check_int("batch_size", self.batch_size, low=1)
        for name in ("max_steps_per_epoch", "max_val_batches", "threads"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), low=1)
        if self.epochs_enc1 + self.epochs_enc2 + self.epochs == 0:
            raise InputError("train config has 0 epochs in every stage: set epochs >= 1")
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
        """Epochs of ``stage`` (``"enc1"``, ``"enc2"`` or ``"fused"``)."""
        return {"enc1": self.epochs_enc1, "enc2": self.epochs_enc2, "fused": self.epochs}[stage]

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
        """Estimate the wall time of :func:`train` with the default network on the 2-core CPU.

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


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ValMetrics:
    """Validation metrics of one head over valid target pixels (LAI/5 scale).

    Attributes
    ----------
    loss : float
        The stage's loss, averaged over batches.
    rmse : float
        Root mean squared error over pixels with a non-zero loss mask.
    r2 : float
        Coefficient of determination over the same pixels (NaN if the target is constant).
    pixels : int
        Number of scored pixels.
    """

    loss: float
    rmse: float
    r2: float
    pixels: int


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did; one entry of the training history.

    Attributes
    ----------
    stage : {"enc1", "enc2", "fused"}
        The stage it belongs to.
    epoch : int
        1-based epoch within the stage.
    steps : int
        Optimiser steps taken in this epoch.
    lr : float
        Learning rate used during the epoch.
    train_loss : float
        Mean training loss (cloudy weighting included) over the epoch's batches.
    val : ValMetrics or None
        Validation after the epoch; None without validation data.
    seconds : float
        Wall time of the epoch, validation and saving included.
    """

    stage: Stage
    epoch: int
    steps: int
    lr: float
    train_loss: float
    val: ValMetrics | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``val`` metrics flattened as ``val_loss``, ``val_rmse``...)."""
        data = {k: v for k, v in asdict(self).items() if k != "val"}
        val = asdict(self.val) if self.val is not None else dict.fromkeys(
            ("loss", "rmse", "r2", "pixels"))
        return data | {f"val_{k}": v for k, v in val.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        """Inverse of :meth:`to_dict`."""
        val = None if data["val_loss"] is None else ValMetrics(
            data["val_loss"], data["val_rmse"], data["val_r2"], data["val_pixels"])
        return cls(data["stage"], data["epoch"], data["steps"], data["lr"],
                   data["train_loss"], val, data["seconds"])


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did and wrote.

    Attributes
    ----------
    checkpoint : pathlib.Path
        The model checkpoint (written after every epoch).
    state : pathlib.Path
        The resumable state file.
    history : tuple of EpochRecord
        Every epoch run so far, resumed runs included.
    complete : bool
        Whether every stage ran all its epochs (False after ``stop_after`` or a time limit).
    wall_time_s : float
        Training wall time over all runs of this training.
    summary : dict
        The training summary stored in the checkpoint.
    """

    checkpoint: Path
    state: Path
    history: tuple[EpochRecord, ...]
    complete: bool
    wall_time_s: float
    summary: dict[str, Any] = field(repr=False)

    def last_val(self, stage: Stage = "fused") -> ValMetrics | None:
        """Return the validation metrics after the last epoch of ``stage`` so far, if any."""
        vals = [r.val for r in self.history if r.stage == stage]
        return vals[-1] if vals else None


# --------------------------------------------------------------------------- batches, losses


def batch_weight(batch: Mapping[str, Tensor], cloudy_weight: float) -> Tensor:
    """Per-pixel loss weight: the loss mask, times ``cloudy_weight`` for cloudy-past samples.

    Parameters
    ----------
    batch : mapping
        A batch with ``weight (B, 1, H, W)`` and ``cloudy (B,)``.
    cloudy_weight : float
        Factor applied to samples whose ``cloudy`` flag is set.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` float weights.
    """
    weight = batch["weight"].float()
    if cloudy_weight == 1.0:
        return weight
    cloudy = batch["cloudy"].to(weight.device).reshape(-1, *([1] * (weight.dim() - 1)))
    return weight * torch.where(cloudy.bool(), cloudy_weight, 1.0).to(weight.dtype)


def stage_loss(model: FusedLAINet, batch: Mapping[str, Tensor], stage: Stage, weight: Tensor, *,
               alpha: float = 0.1, beta: float = 0.15) -> tuple[Tensor, Tensor]:
    """Compute the loss a stage minimises on one batch, and the prediction it scores.

    Parameters
    ----------
    model : FusedLAINet
        The network.
    batch : mapping
        Model inputs ``s1``, ``lai``, ``masks``, ``season`` and the ``target``.
    stage : {"enc1", "enc2", "fused"}
        ``enc1``/``enc2``: masked MSE of that encoder's head; ``fused``:
        :func:`lamap.model.fused_loss` of the decoder and both heads.
    weight : torch.Tensor
        Per-pixel weight ``(B, 1, H, W)``, see :func:`batch_weight`.
    alpha, beta : float
        Head weights of the end-to-end loss.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    prediction : torch.Tensor
        ``(B, 1, H, W)`` output of the head the stage trains (the decoder for ``fused``),
        float32 even under autocast, so the losses are summed in float32.
    """
    target = batch["target"]
    if stage == "enc1":
        pred = model.forward_enc1(batch["s1"], batch["masks"], batch["season"]).float()
        return masked_mse(pred, target, weight), pred
    if stage == "enc2":
        pred = model.forward_enc2(batch["lai"], batch["masks"], batch["season"]).float()
        return masked_mse(pred, target, weight), pred
    out = Prediction(*(p.float() for p in model(batch["s1"], batch["lai"], batch["masks"],
                                                 batch["season"])))
    return fused_loss(out, target, weight, alpha=alpha, beta=beta), out.lai


def _to_device(batch: Mapping[str, Any], device: torch.device, *,
               channels_last: bool = False) -> dict[str, Tensor]:
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise InputError(
            f"training batches lack {missing} (they have {sorted(batch)}): the dataset must "
            "yield dicts like lamap.train.data.PatchDataset's"
        )
    moved = {k: torch.as_tensor(batch[k]).to(device, non_blocking=True) for k in BATCH_KEYS}
    for key in ("s1", "lai", "masks", "season", "target"):
        moved[key] = moved[key].float()
    if channels_last:
        for key in ("s1", "lai", "target", "weight"):
            moved[key] = moved[key].contiguous(memory_format=torch.channels_last)
    return moved


def _channels_last(model: nn.Module) -> bool:
    """Tell whether the model's first 3×3 convolution holds its weight channels-last."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
            return bool(module.weight.is_contiguous(memory_format=torch.channels_last)
                        and not module.weight.is_contiguous())
    return False


def _stage_module(model: FusedLAINet, stage: Stage) -> nn.Module:
    return {"enc1": model.enc1, "enc2": model.enc2, "fused": model}[stage]


def init_head_biases(model: FusedLAINet, data: Dataset[Any], *, batch_size: int = 32,
                     seed: int = 0, max_batches: int = 16) -> float:
    """Set the biases of the encoder heads and the decoder's last layer to the mean target.

    The mean is weighted by the loss mask, over up to ``max_batches`` batches drawn in a
    seeded order (the global RNG is not used), so that every head starts predicting the
    average LAI/5 instead of 0.

    Parameters
    ----------
    model : FusedLAINet
        The network, changed in place.
    data : Dataset
        Training items with ``target`` and ``weight``.
    batch_size : int
        Patches per batch.
    seed : int
        Seed of the batch order.
    max_batches : int
        Batches to average over.

    Returns
    -------
    float
        The bias set (mean target on the LAI/5 scale).
    """
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch_size,
                        sampler=RandomSampler(data, generator=generator))  # type: ignore[arg-type]
    total = count = 0.0
    for index, batch in enumerate(loader):
        if index >= max_batches:
            break
        weight = batch["weight"].double()
        total += float((batch["target"].double() * weight).sum())
        count += float(weight.sum())
    mean = total / count if count else 0.0
    with torch.no_grad():
        for head in (model.enc1.head, model.enc2.head, model.decoder.out):
            if head.bias is not None:
                head.bias.fill_(mean)
    return mean


# --------------------------------------------------------------------------- validation


class _ErrorSums:
    """Float64 sums for a weighted RMSE and R² over many batches."""

    def __init__(self) -> None:
        self.n = self.sse = self.sum = self.sum2 = 0.0

    def add(self, pred: Tensor, target: Tensor, mask: Tensor) -> None:
        keep = mask.reshape(pred.shape) > 0
        p, t = pred[keep].double(), target.reshape(pred.shape)[keep].double()
        self.n += float(p.numel())
        self.sse += float(((p - t) ** 2).sum())
        self.sum += float(t.sum())
        self.sum2 += float((t * t).sum())

    def rmse(self) -> float:
        return math.sqrt(self.sse / self.n) if self.n else math.nan

    def r2(self) -> float:
        sst = self.sum2 - self.sum**2 / self.n if self.n else 0.0
        return 1.0 - self.sse / sst if sst > 0 else math.nan


def validate(model: FusedLAINet, data: Dataset[Any] | DataLoader[Any], *,
             stage: Stage = "fused", batch_size: int = 32, max_batches: int | None = None,
             alpha: float = 0.1, beta: float = 0.15,
             device: str | torch.device | None = None) -> ValMetrics:
    """Score one head on a dataset: loss, masked RMSE and R² on the LAI/5 scale.

    The model runs in eval mode under ``torch.inference_mode()``; its train/eval mode is
    restored afterwards. Pixels count where the batch's ``weight`` (the loss mask) is non-zero;
    no cloudy weighting applies.

    Parameters
    ----------
    model : FusedLAINet
        The network.
    data : Dataset or DataLoader
        Items (or batches) as described in the module docstring.
    stage : {"enc1", "enc2", "fused"}
        Which head to score, and which loss to report (see :func:`stage_loss`).
    batch_size : int
        Patches per batch when ``data`` is a Dataset.
    max_batches : int, optional
        Score only the first batches.
    alpha, beta : float
        Head weights of the end-to-end loss.
    device : str or torch.device, optional
        Where to run; default: where the model's parameters are.

    Returns
    -------
    ValMetrics
    """
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    sums, losses = _ErrorSums(), []
    try:
        with torch.inference_mode():
            for index, raw in enumerate(loader):
                if max_batches is not None and index >= max_batches:
                    break
                batch = _to_device(raw, dev, channels_last=_channels_last(model))
                loss, pred = stage_loss(model, batch, stage, batch["weight"].float(),
                                        alpha=alpha, beta=beta)
                losses.append(float(loss))
                sums.add(pred, batch["target"], batch["weight"])
    finally:
        model.train(was_training)
    mean_loss = sum(losses) / len(losses) if losses else math.nan
    return ValMetrics(mean_loss, sums.rmse(), sums.r2(), int(sums.n))


# --------------------------------------------------------------------------- state files


def state_path(out: str | os.PathLike[str]) -> Path:
    """Path of the resumable state file that goes with checkpoint ``out``.

    Parameters
    ----------
    out : str or path-like
        The checkpoint, e.g. ``model.pt``.

    Returns
    -------
    pathlib.Path
        ``out`` with suffix ``.state.pt``, e.g. ``model.state.pt``.
    """
    return Path(out).with_suffix(".state.pt")


def _scheduler_state(scheduler: torch.optim.lr_scheduler.MultiStepLR) -> dict[str, Any]:
    state = scheduler.state_dict()
    state["milestones"] = dict(state["milestones"])  # Counter is not weights_only-safe
    return state


def _load_scheduler(scheduler: torch.optim.lr_scheduler.MultiStepLR,
                    state: dict[str, Any]) -> None:
    scheduler.load_state_dict(state | {"milestones": Counter(state["milestones"])})


def _read_state(path: Path, config: TrainConfig) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(
            f"cannot resume: the state file {path} does not exist; train with resume=False "
            "to start from the beginning"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError,
            zipfile.BadZipFile) as err:
        raise TrainingError(
            f"cannot resume from {path} ({type(err).__name__}: {err}); the file is damaged: "
            "delete it and train with resume=False"
        ) from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path} is not a lamap training state file; delete it")
    _check_same_config(TrainConfig.from_dict(state["config"]), config, path)
    return state


def _check_same_config(saved: TrainConfig, config: TrainConfig, path: Path) -> None:
    ignore = dict.fromkeys(_RUNTIME_FIELDS)
    before = saved.to_dict() | ignore
    now = config.to_dict() | ignore
    changed = {k: (before[k], now[k]) for k in before if before[k] != now[k]}
    if changed:
        raise TrainingError(
            f"cannot resume from {path}: the config changed in {sorted(changed)} "
            f"(saved → now: {changed}); resume with the saved config, or train with "
            "resume=False to start again"
        )


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """Everything that changes while training, and what the files need to record it."""

    model: FusedLAINet
    config: TrainConfig
    device: torch.device
    out: Path
    feature_spec: Mapping[str, Any]
    data_info: dict[str, Any]
    progress: bool
    history: list[EpochRecord] = field(default_factory=list)
    head_bias: float | None = None
    wall_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def summary(self, complete: bool) -> dict[str, Any]:
        stages = [_stage_summary(self.config, s, self.history) for s in STAGES]
        return {"stages": stages, "history": [r.to_dict() for r in self.history],
                "steps": sum(r.steps for r in self.history), "complete": complete,
                "wall_time_s": self.wall_time, "config": self.config.to_dict(),
                "data": self.data_info, "device": str(self.device),
                "head_bias_init": self.head_bias, "torch_version": str(torch.__version__),
                "selected": _selected(self.history)}


def _stage_summary(config: TrainConfig, stage: Stage,
                   history: Sequence[EpochRecord]) -> dict[str, Any]:
    records = [r for r in history if r.stage == stage]
    last = records[-1].to_dict() if records else {}
    return {"name": stage, "epochs": config.stage_epochs(stage), "epochs_done": len(records),
            "steps": sum(r.steps for r in records), "milestones": milestones(
                config.stage_epochs(stage)),
            "final_val_rmse": last.get("val_rmse"), "final_val_r2": last.get("val_r2")}


@dataclass
class _Stepper:
    """A stage's optimiser and scheduler, with the epoch it is at."""

    stage: Stage
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    epoch: int = 0


def _new_stepper(run: _Run, stage: Stage, saved: Mapping[str, Any] | None) -> _Stepper:
    params = _stage_module(run.model, stage).parameters()
    optimizer = torch.optim.Adam(params, lr=run.config.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones(run.config.stage_epochs(stage)), gamma=run.config.decay_factor)
    stepper = _Stepper(stage, optimizer, scheduler)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        _load_scheduler(scheduler, saved["scheduler"])
        stepper.epoch = int(saved["epoch"])
    return stepper


def _selected(history: Sequence[EpochRecord]) -> dict[str, Any] | None:
    """Return the (stage, epoch) whose weights the checkpoint holds: the last stage's best."""
    if not history:
        return None
    stage = history[-1].stage
    records = [r for r in history if r.stage == stage]
    scored = [r for r in records if r.val is not None and math.isfinite(r.val.rmse)]
    best = min(reversed(scored), key=_val_rmse) if scored else records[-1]
    return {"stage": stage, "epoch": best.epoch,
            "val_rmse": None if best.val is None else best.val.rmse,
            "val_r2": None if best.val is None else best.val.r2}


def _val_rmse(record: EpochRecord) -> float:
    return math.inf if record.val is None else record.val.rmse


def _is_best(history: Sequence[EpochRecord], stage: Stage) -> bool:
    """Tell whether the last epoch of ``stage`` is the one :func:`_selected` keeps."""
    selected = _selected(history)
    last = [r for r in history if r.stage == stage][-1]
    return selected is not None and (selected["stage"], selected["epoch"]) == (stage, last.epoch)


def _save(run: _Run, stepper: _Stepper, complete: bool) -> None:
    summary = run.summary(complete)
    if _is_best(run.history, stepper.stage):
        save_checkpoint(run.out, run.model, feature_spec=run.feature_spec, training=summary)
    elif complete:  # keep the best weights, with the summary of the whole run
        best = load_checkpoint(run.out).model
        save_checkpoint(run.out, best, feature_spec=run.feature_spec, training=summary)
    state = {
        "format": STATE_FORMAT, "version": _STATE_VERSION, "config": run.config.to_dict(),
        "stage": stepper.stage, "epoch": stepper.epoch,
        "model": {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
        "optimizer": stepper.optimizer.state_dict(),
        "scheduler": _scheduler_state(stepper.scheduler),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else [],
        "history": summary["history"], "wall_time_s": summary["wall_time_s"],
        "head_bias": run.head_bias,
    }
    write_atomic(state_path(run.out), lambda handle: torch.save(state, handle))


def _epoch_batches(data: Dataset[Any], config: TrainConfig, stage: Stage, epoch: int,
                   device: torch.device) -> Iterator[dict[str, Any]]:
    """Shuffled batches of one epoch, in an order fixed by (seed, stage, epoch)."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    seed = (config.seed * 1_000_003 + STAGES.index(stage) * 10_007 + epoch) % (2**63)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=config.batch_size,
                        sampler=RandomSampler(data, generator=generator),  # type: ignore[arg-type]
                        num_workers=config.num_workers, pin_memory=device.type == "cuda")
    for step, batch in enumerate(loader):
        if config.max_steps_per_epoch is not None and step >= config.max_steps_per_epoch:
            return
        yield batch


def _steps_per_epoch(data: Dataset[Any], config: TrainConfig) -> int:
    steps = math.ceil(len(data) / config.batch_size)  # type: ignore[arg-type]
    return min(steps, config.max_steps_per_epoch or steps)


def _train_epoch(run: _Run, stepper: _Stepper, data: Dataset[Any], bar: Any) -> tuple[int, float]:
    """One epoch of optimiser steps; returns (steps, mean loss)."""
    cfg, stage = run.config, stepper.stage
    run.model.train()
    total, steps = 0.0, 0
    for raw in _epoch_batches(data, cfg, stage, stepper.epoch, run.device):
        batch = _to_device(raw, run.device, channels_last=cfg.channels_last)
        with torch.autocast(run.device.type, dtype=torch.bfloat16,
                            enabled=cfg.precision == "bfloat16"):
            loss, _ = stage_loss(run.model, batch, stage,
                                 batch_weight(batch, cfg.cloudy_weight),
                                 alpha=cfg.alpha, beta=cfg.beta)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the {stage} loss became {loss.item()} at epoch {stepper.epoch + 1}, step "
                f"{steps + 1}: lower the learning rate (lr={cfg.lr}) or check the inputs for "
                "NaN or huge values"
            )
        stepper.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        stepper.optimizer.step()
        total, steps = total + loss.item(), steps + 1
        bar.update(1)
        bar.set_postfix(loss=f"{total / steps:.4f}")
    return steps, total / max(steps, 1)


def _run_epoch(run: _Run, stepper: _Stepper, train_data: Dataset[Any],
               val_data: Dataset[Any] | None) -> EpochRecord:
    start, cfg, stage = time.perf_counter(), run.config, stepper.stage
    lr = float(stepper.optimizer.param_groups[0]["lr"])
    desc = f"{stage} {stepper.epoch + 1}/{cfg.stage_epochs(stage)}"
    with tqdm(total=_steps_per_epoch(train_data, cfg), desc=desc, disable=not run.progress,
              leave=False, unit="step") as bar:
        steps, loss = _train_epoch(run, stepper, train_data, bar)
        val = None if val_data is None else validate(
            run.model, val_data, stage=stage, batch_size=cfg.batch_size,
            max_batches=cfg.max_val_batches, alpha=cfg.alpha, beta=cfg.beta)
        if val is not None:
            bar.set_postfix(loss=f"{loss:.4f}", val_rmse=f"{val.rmse:.4f}",
                            val_r2=f"{val.r2:.3f}")
    stepper.scheduler.step()
    stepper.epoch += 1
    record = EpochRecord(stage, stepper.epoch, steps, lr, loss, val,
                         time.perf_counter() - start)
    if run.progress:
        tqdm.write(_describe(record))
    return record


def _describe(record: EpochRecord) -> str:
    text = (f"{record.stage} epoch {record.epoch}: loss {record.train_loss:.4f}, "
            f"lr {record.lr:.2e}, {record.steps} steps, {record.seconds:.1f} s")
    if record.val is not None:
        text += f"; val RMSE {record.val.rmse:.4f} (LAI/5), R² {record.val.r2:.3f}"
    return text


def _run_stages(run: _Run, train_data: Dataset[Any], val_data: Dataset[Any] | None,
                saved: Mapping[str, Any] | None, budget: _Budget) -> bool:
    """Run the stages from where ``saved`` stopped; True when all are done."""
    start = STAGES.index(saved["stage"]) if saved is not None else 0
    for stage in STAGES[start:]:
        stage_saved = saved if saved is not None and saved["stage"] == stage else None
        stepper = _new_stepper(run, stage, stage_saved)
        while stepper.epoch < run.config.stage_epochs(stage):
            if budget.exhausted(run):
                return False
            run.history.append(_run_epoch(run, stepper, train_data, val_data))
            budget.epochs_run += 1
            _save(run, stepper, complete=_finished(run.config, stepper))
    return True


def _finished(config: TrainConfig, stepper: _Stepper) -> bool:
    later = STAGES[STAGES.index(stepper.stage) + 1:]
    return (stepper.epoch >= config.stage_epochs(stepper.stage)
            and all(config.stage_epochs(s) == 0 for s in later))


@dataclass
class _Budget:
    """Limits of one call of :func:`train`: epochs and wall time."""

    stop_after: int | None
    time_limit_s: float | None
    epochs_run: int = 0

    def exhausted(self, run: _Run) -> bool:
        if self.stop_after is not None and self.epochs_run >= self.stop_after:
            return True
        elapsed = time.perf_counter() - run.started
        return self.time_limit_s is not None and elapsed >= self.time_limit_s


# --------------------------------------------------------------------------- entry point


def train(model: FusedLAINet, train_data: Dataset[Any], val_data: Dataset[Any] | None,
          config: TrainConfig, *, out: str | os.PathLike[str],
          feature_spec: Mapping[str, Any], data_info: Mapping[str, Any] | None = None,
          progress: bool = True, resume: bool = False, stop_after: int | None = None,
          time_limit_s: float | None = None) -> TrainResult:
    """Train ``model`` with the three-stage recipe, checkpointing after every epoch.

    Parameters
    ----------
    model : FusedLAINet
        The network, trained in place (moved to ``config.device``); with ``resume=True`` its
        weights are replaced by the saved ones.
    train_data : Dataset
        Training patches (see the module docstring for the item layout).
    val_data : Dataset, optional
        Validation patches, scored after every epoch; None skips validation.
    config : TrainConfig
        Hyper-parameters.
    out : str or path-like
        The checkpoint to write (e.g. ``model.pt``); the state file goes next to it
        (:func:`state_path`). Missing parent directories are created.
    feature_spec : mapping
        The inputs' feature definition (:meth:`lamap.features.FeatureSpec.to_dict`), stored
        in the checkpoint.
    data_info : mapping, optional
        Description of the data (cache path, world, patch size...), stored in the summary
        with the train and validation sizes; plain types only.
    progress : bool
        Show a tqdm bar per epoch and one line per finished epoch.
    resume : bool
        Continue from the state file next to ``out`` (which must exist and hold the same
        config, except ``device``, ``num_workers`` and ``threads``).
    stop_after : int, optional
        Run at most this many epochs in this call, then return (resume later).
    time_limit_s : float, optional
        Start no new epoch after this many seconds of this call.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        If a dataset is empty, its items lack keys, or ``resume`` finds no state file.
    TrainingError
        If the loss stops being finite, or the state file is damaged or from another config.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    saved = _read_state(state_path(out), config) if resume else None
    info = _data_info(train_data, val_data, data_info)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    run = _Run(model, config, device, out, feature_spec, info, progress)
    budget = _Budget(stop_after, time_limit_s)
    with _threads(config.threads), _rng_scope(device, config.seed):
        if saved is not None:
            _restore(run, saved)
        elif config.init_head_bias:
            run.head_bias = init_head_biases(run.model, train_data,
                                             batch_size=config.batch_size, seed=config.seed)
        complete = _run_stages(run, train_data, val_data, saved, budget)
    return TrainResult(out, state_path(out), tuple(run.history), complete, run.wall_time,
                       run.summary(complete))


def _data_info(train_data: Dataset[Any], val_data: Dataset[Any] | None,
               extra: Mapping[str, Any] | None) -> dict[str, Any]:
    sizes = {"train_size": _size(train_data, "train_data"),
             "val_size": 0 if val_data is None else _size(val_data, "val_data")}
    return dict(extra or {}) | sizes


def _size(data: Dataset[Any], name: str) -> int:
    try:
        size = len(data)  # type: ignore[arg-type]
    except TypeError as err:
        raise InputError(
            f"{name} is a {type(data).__name__} without a length: pass a map-style Dataset"
        ) from err
    if size == 0:
        raise InputError(f"{name} is empty: build it from a split with patches")
    return size


def _restore(run: _Run, saved: Mapping[str, Any]) -> None:
    run.model.load_state_dict(saved["model"])
    run.history = [EpochRecord.from_dict(r) for r in saved["history"]]
    run.wall_before = float(saved["wall_time_s"])
    run.head_bias = saved.get("head_bias")
    torch.set_rng_state(saved["torch_rng"])
    if run.device.type == "cuda" and saved["cuda_rng"]:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Set ``torch.set_num_threads`` inside a ``with`` block, then restore it."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _rng_scope(device: torch.device, seed: int) -> Iterator[None]:
    """Fork the global torch RNG for the run and seed it; the caller's state comes back."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
