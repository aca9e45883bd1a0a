"""What changes while training, and the files that record it so a run can resume exactly.

* :class:`RunState`: the model, its history (:class:`EpochRecord` per epoch) and wall time;
  :meth:`RunState.summary` is the training summary stored in the checkpoint;
* :class:`Stepper`: a stage's Adam optimiser and step-decay scheduler, with its epoch;
* :func:`save_run`: after every epoch, the checkpoint (the weights of the best epoch of the
  stage running, :func:`selected_epoch`) and the state file (:func:`state_path`: model,
  optimiser, scheduler, stage, epoch and RNG state; plain types and tensors only, so it loads
  with ``torch.load(weights_only=True)``);
* :func:`read_state` and :func:`restore_run`: resume from the state file, refusing one written
  with another config (only the runtime fields may change).
"""

from __future__ import annotations

import math
import os
import pickle
import time
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lamap.errors import InputError, TrainingError
from lamap.model import architecture_of, load_checkpoint, save_checkpoint
from lamap.model.checkpoint import CALIBRATION_BUFFERS
from lamap.model.receptive import RADIUS_KEY, config_radius
from lamap.runtime import write_atomic
from lamap.runtime.progress import Reporter
from lamap.train.config import Stage, TrainConfig, milestones
from lamap.train.metrics import ValMetrics
from lamap.train.stages import stage_parameters

__all__ = [
    "STATE_FORMAT",
    "EpochRecord",
    "RunState",
    "Stepper",
    "TrainingError",
    "is_best",
    "new_stepper",
    "read_state",
    "restore_run",
    "save_run",
    "selected_epoch",
    "state_path",
]

#: Value of the ``format`` key of a resumable state file.
STATE_FORMAT = "lamap-train-state"
_STATE_VERSION = 1
#: Config fields that only say how to run, not what is trained; they may change on resume.
_RUNTIME_FIELDS = ("device", "num_workers", "threads", "channels_last")



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
    averaged : bool
        The record of the stage's averaged weights (:mod:`lamap.train.averaging`), not of
        an epoch: ``epoch`` is then the stage's epochs + 1, ``steps`` 0 and ``train_loss``
        NaN.
    """

    stage: Stage
    epoch: int
    steps: int
    lr: float
    train_loss: float
    val: ValMetrics | None
    seconds: float
    averaged: bool = False

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
                   data["train_loss"], val, data["seconds"], bool(data.get("averaged", False)))


@dataclass
class RunState:
    """Everything that changes while training, and what the files need to record it.

    Attributes
    ----------
    model : torch.nn.Module
        The network being trained (a registered architecture), on ``device``.
    config : TrainConfig
        The run's hyper-parameters.
    device : torch.device
        Where training runs.
    out : pathlib.Path
        The checkpoint; the state file goes next to it (:func:`state_path`).
    feature_spec : mapping
        The inputs' feature definition, stored in the checkpoint.
    data_info : dict
        Description of the data, with the split sizes.
    say : Reporter
        Where progress events go (:mod:`lamap.runtime.progress`).
    history : list of EpochRecord
        Every epoch run so far, resumed runs included.
    head_bias : float, optional
        The bias the heads started from (:func:`lamap.train.loop.init_head_biases`).
    average : dict of tensors, optional
        The running mean of the weights over the epochs averaged so far
        (:mod:`lamap.train.averaging`).
    wall_before : float
        Wall time of earlier runs of this training, seconds.
    started : float
        ``time.perf_counter()`` when this run started.
    """

    model: nn.Module
    config: TrainConfig
    device: torch.device
    out: Path
    feature_spec: Mapping[str, Any]
    data_info: dict[str, Any]
    say: Reporter
    history: list[EpochRecord] = field(default_factory=list)
    head_bias: float | None = None
    average: dict[str, torch.Tensor] | None = None
    wall_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The architecture's training stages, in order."""
        return architecture_of(self.model).stage_names

    @property
    def wall_time(self) -> float:
        """Training wall time over all runs of this training, seconds."""
        return self.wall_before + time.perf_counter() - self.started

    def summary(self, complete: bool) -> dict[str, Any]:
        """Return the training summary stored in the checkpoint (plain types only)."""
        stages = [_stage_summary(self.config, s, self.history) for s in self.stages]
        return {"architecture": architecture_of(self.model).name,
                "stages": stages, "history": [r.to_dict() for r in self.history],
                "steps": sum(r.steps for r in self.history), "complete": complete,
                "wall_time_s": self.wall_time, "config": self.config.to_dict(),
                "data": self.data_info, "device": str(self.device),
                "head_bias_init": self.head_bias, "torch_version": str(torch.__version__),
                "selected": selected_epoch(self.history)}


def _stage_summary(config: TrainConfig, stage: Stage,
                   history: Sequence[EpochRecord]) -> dict[str, Any]:
    records = [r for r in history if r.stage == stage]
    last = records[-1].to_dict() if records else {}
    return {"name": stage, "epochs": config.stage_epochs(stage), "epochs_done": len(records),
            "steps": sum(r.steps for r in records), "milestones": milestones(
                config.stage_epochs(stage)),
            "final_val_rmse": last.get("val_rmse"), "final_val_r2": last.get("val_r2")}


# --------------------------------------------------------------------------- stages


@dataclass
class Stepper:
    """A stage's optimiser and scheduler, with the number of epochs it has run."""

    stage: Stage
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    epoch: int = 0


def new_stepper(run: RunState, stage: Stage, saved: Mapping[str, Any] | None) -> Stepper:
    """Make a stage's Adam optimiser and step decay, resumed from ``saved`` if given.

    Parameters
    ----------
    run : RunState
        The run; the optimiser takes the parameters ``stage`` trains.
    stage : {"enc1", "enc2", "fused"}
        The stage.
    saved : mapping, optional
        A state file of this stage (:func:`read_state`), whose optimiser, scheduler and
        epoch are restored.

    Returns
    -------
    Stepper
    """
    params = stage_parameters(run.model, stage)
    if not params:
        name = architecture_of(run.model).name
        raise TrainingError(
            f"the {name} model has nothing to train in stage {stage!r} (no spread head?): "
            f"build it with sigma_head=True, or set its epochs to 0"
        )
    optimizer = torch.optim.Adam(params, lr=run.config.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones(run.config.stage_epochs(stage)), gamma=run.config.decay_factor)
    stepper = Stepper(stage, optimizer, scheduler)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        _load_scheduler(scheduler, saved["scheduler"])
        stepper.epoch = int(saved["epoch"])
    return stepper


def selected_epoch(history: Sequence[EpochRecord]) -> dict[str, Any] | None:
    """Return the (stage, epoch) whose weights the checkpoint holds: the last stage's best.

    Parameters
    ----------
    history : sequence of EpochRecord
        The epochs run so far.

    Returns
    -------
    dict or None
        ``stage``, ``epoch``, ``averaged``, ``val_rmse`` and ``val_r2`` of the epoch with
        the lowest validation RMSE of the last stage (the latest of equals; the last epoch
        without validation), or of the stage's averaged weights once they exist (weight
        averaging keeps the mean, :mod:`lamap.train.averaging`); None for an empty history.
    """
    if not history:
        return None
    stage = history[-1].stage
    records = [r for r in history if r.stage == stage]
    scored = [r for r in records if r.val is not None and math.isfinite(r.val.rmse)]
    best = min(reversed(scored), key=_val_rmse) if scored else records[-1]
    best = next((r for r in reversed(records) if r.averaged), best)
    return {"stage": stage, "epoch": best.epoch, "averaged": best.averaged,
            "val_rmse": None if best.val is None else best.val.rmse,
            "val_r2": None if best.val is None else best.val.r2}


def _val_rmse(record: EpochRecord) -> float:
    return math.inf if record.val is None else record.val.rmse


def is_best(history: Sequence[EpochRecord], stage: Stage) -> bool:
    """Tell whether the last epoch of ``stage`` is the one :func:`selected_epoch` keeps."""
    selected = selected_epoch(history)
    last = [r for r in history if r.stage == stage][-1]
    return selected is not None and (selected["stage"], selected["epoch"]) == (stage, last.epoch)


# --------------------------------------------------------------------------- files


def save_run(run: RunState, stepper: Stepper, complete: bool) -> None:
    """Write the checkpoint and the state file after an epoch.

    The checkpoint gets the current weights when this epoch is the best of its stage
    (:func:`is_best`); at the end of the run, the best weights get the whole run's summary.

    Parameters
    ----------
    run : RunState
        The run.
    stepper : Stepper
        The stage that just finished an epoch.
    complete : bool
        Whether every stage has run all its epochs.
    """
    summary = run.summary(complete)
    # the finished checkpoint records its halo's radius, so maps need not measure it
    extra = {RADIUS_KEY: config_radius(run.model.config)} if complete else None
    if is_best(run.history, stepper.stage):
        save_checkpoint(run.out, run.model, feature_spec=run.feature_spec, training=summary,
                        extra=extra)
    elif complete:  # keep the best weights, with the summary of the whole run
        best = load_checkpoint(run.out).model
        save_checkpoint(run.out, best, feature_spec=run.feature_spec, training=summary,
                        extra=extra)
    state = {
        "format": STATE_FORMAT, "version": _STATE_VERSION, "config": run.config.to_dict(),
        "architecture": architecture_of(run.model).name,
        "stage": stepper.stage, "epoch": stepper.epoch,
        "model": {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
        "optimizer": stepper.optimizer.state_dict(),
        "scheduler": _scheduler_state(stepper.scheduler),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else [],
        "history": summary["history"], "wall_time_s": summary["wall_time_s"],
        "head_bias": run.head_bias,
        "average": run.average or {},
    }
    _atomic_torch_save(state, state_path(run.out))


def restore_run(run: RunState, saved: Mapping[str, Any]) -> None:
    """Put a state file's weights, history, wall time and RNG state back into ``run``.

    Parameters
    ----------
    run : RunState
        The run, changed in place.
    saved : mapping
        From :func:`read_state`.
    """
    current = run.model.state_dict()
    missing = {k: v for k, v in current.items() if k.endswith(CALIBRATION_BUFFERS)
               and k not in saved["model"]}  # states written before the calibration factor
    run.model.load_state_dict({**saved["model"], **missing})
    run.history = [EpochRecord.from_dict(r) for r in saved["history"]]
    run.wall_before = float(saved["wall_time_s"])
    run.head_bias = saved.get("head_bias")
    run.average = dict(saved.get("average") or {}) or None
    torch.set_rng_state(saved["torch_rng"])
    if run.device.type == "cuda" and saved["cuda_rng"]:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


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


def _atomic_torch_save(payload: dict[str, Any], path: Path) -> None:
    write_atomic(path, lambda handle: torch.save(payload, handle))


def _scheduler_state(scheduler: torch.optim.lr_scheduler.MultiStepLR) -> dict[str, Any]:
    state = scheduler.state_dict()
    state["milestones"] = dict(state["milestones"])  # Counter is not weights_only-safe
    return state


def _load_scheduler(scheduler: torch.optim.lr_scheduler.MultiStepLR,
                    state: dict[str, Any]) -> None:
    scheduler.load_state_dict(state | {"milestones": Counter(state["milestones"])})


def read_state(path: Path, config: TrainConfig,
               architecture: str = "lnb-fused") -> dict[str, Any]:
    """Read the state file ``path`` of a run with ``config``, to resume it.

    Parameters
    ----------
    path : pathlib.Path
        The state file (:func:`state_path`).
    config : TrainConfig
        The config of the resumed run; only the runtime fields (``device``,
        ``num_workers``, ``threads``, ``channels_last``) may differ from the saved one.
    architecture : str
        The architecture of the resumed model; a state of another one is refused.

    Returns
    -------
    dict
        The saved state.

    Raises
    ------
    InputError
        If the file does not exist.
    TrainingError
        If it is damaged, not a state file, or was written with another config or for
        another architecture.
    """
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
    saved = state.get("architecture", "lnb-fused")
    if saved != architecture:
        raise TrainingError(
            f"cannot resume from {path}: it trains a {saved!r} model, not {architecture!r}; "
            f"resume with --arch {saved}, or train with resume=False to start again"
        )
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
