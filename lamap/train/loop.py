"""Training a registered model stage by stage, resumable epoch by epoch.

The stages are the architecture's (:mod:`lamap.model.registry`, their parts and losses in
:mod:`lamap.train.stages`). For the fused model, MODEL.md's recipe:

1. ``enc1``: encoder 1 (radar) alone, :meth:`~lamap.model.FusedLAINet.forward_enc1` and its
   head, masked MSE against LAI/5 at t;
2. ``enc2``: encoder 2 (optical history) alone, the same way;
3. ``fused``: the whole network end to end with intermediate supervision,
   :func:`lamap.model.fused_loss` (``dec + α·enc1 + β·enc2``);
4. ``sigma`` (when ``epochs_sigma`` > 0 and the model has a spread head): the spread head
   alone, Gaussian NLL with the mean frozen, on its own data (``stage_data``; the trainer of
   ``lamap train`` gives it the validation split).

Before the first stage the heads' biases are set to the mean training target
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
* ``out.with_suffix(".state.pt")`` (:func:`~lamap.train.state.state_path`): model,
  optimiser, scheduler, stage, epoch and RNG state, so ``train(..., resume=True)``
  continues exactly where it stopped. It holds only plain types and tensors and loads with
  ``torch.load(weights_only=True)``.

Determinism: the batch order of every epoch comes from a torch Generator seeded with
``(seed, stage, epoch)``, and the global torch RNG (dropout) is seeded once and saved in the
state file, so an interrupted and resumed run gives the same weights as an uninterrupted one.
A dataset with a ``set_epoch(epoch)`` method (as ``DistributedSampler`` has) is told the epoch
before each one, so its augmentation can depend on ``(rng_seed, epoch, index)`` only.

Any map-style torch dataset works if its items are dicts with ``s1 (6, P, P)``,
``lai (2, P, P)``, ``masks (2, 6, P, P)``, ``season (2,)``, ``target (1, P, P)`` (LAI/5),
``weight (1, P, P)`` (the loss mask) and ``cloudy`` (bool: the sample's past is cloudy), as
``lamap.train.data.PatchDataset`` yields.

The parts live in their own modules: the hyper-parameters in :mod:`lamap.train.config`, the
run's state and its files in :mod:`lamap.train.state`, the metrics in
:mod:`lamap.train.metrics`; their public names are importable from here too.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from lamap.errors import InputError
from lamap.feature_spec import FeatureSpec
from lamap.model import architecture_of, resolve_device, torch_threads
from lamap.runtime.progress import Progress, Reporter
from lamap.train.averaging import average_pending, averaged_record, update_average
from lamap.train.config import (
    CPU_STEP_SECONDS,
    STAGES,
    Precision,
    Stage,
    TrainConfig,
    milestones,
    stage_number,
)
from lamap.train.metrics import ErrorSums, ValMetrics
from lamap.train.stages import batch_keys, init_biases, prepare_stage, stage_loss
from lamap.train.state import (
    STATE_FORMAT,
    EpochRecord,
    RunState,
    Stepper,
    TrainingError,
    new_stepper,
    read_state,
    restore_run,
    save_run,
    state_path,
)

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

#: Keys every training batch must have.
BATCH_KEYS = ("s1", "lai", "masks", "season", "target", "weight", "cloudy")


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


def _to_device(batch: Mapping[str, Any], device: torch.device, *,
               channels_last: bool = False, keys: tuple[str, ...] = BATCH_KEYS
               ) -> dict[str, Tensor]:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise InputError(
            f"training batches lack {missing} (they have {sorted(batch)}): the dataset must "
            "yield dicts like lamap.train.data.PatchDataset's, with the model's inputs"
        )
    moved = {k: torch.as_tensor(batch[k]).to(device, non_blocking=True) for k in keys}
    for key in keys:
        if key != "cloudy":
            moved[key] = moved[key].float()
    if channels_last:
        for key in keys:
            if moved[key].dim() == 4:
                moved[key] = moved[key].contiguous(memory_format=torch.channels_last)
    return moved


def _channels_last(model: nn.Module) -> bool:
    """Tell whether the model's first 3×3 convolution holds its weight channels-last."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
            return bool(module.weight.is_contiguous(memory_format=torch.channels_last)
                        and not module.weight.is_contiguous())
    return False


def init_head_biases(model: nn.Module, data: Dataset[Any], *, batch_size: int = 32,
                     seed: int = 0, max_batches: int = 16,
                     stages: tuple[str, ...] | None = None) -> float:
    """Set the biases of the LAI heads to the mean target (spread heads to a start σ).

    The mean is weighted by the loss mask, over up to ``max_batches`` batches drawn in a
    seeded order (the global RNG is not used), so that every head starts predicting the
    average LAI/5 instead of 0 (:func:`lamap.train.stages.init_biases`).

    Parameters
    ----------
    model : torch.nn.Module
        The network, changed in place.
    data : Dataset
        Training items with ``target`` and ``weight``.
    batch_size : int
        Patches per batch.
    seed : int
        Seed of the batch order.
    max_batches : int
        Batches to average over.
    stages : tuple of str, optional
        Only the heads of these stages (default: every stage of the architecture).

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
    init_biases(model, mean, stages or architecture_of(model).stage_names)
    return mean


# --------------------------------------------------------------------------- validation


def validate(model: nn.Module, data: Dataset[Any] | DataLoader[Any], *,
             stage: Stage = "fused", batch_size: int = 32, max_batches: int | None = None,
             alpha: float = 0.1, beta: float = 0.15,
             device: str | torch.device | None = None,
             spec: FeatureSpec | None = None) -> ValMetrics:
    """Score one head on a dataset: loss, masked RMSE and R² on the LAI/5 scale.

    The model runs in eval mode under ``torch.inference_mode()``; its train/eval mode is
    restored afterwards. Pixels count where the batch's ``weight`` (the loss mask) is non-zero;
    no cloudy weighting applies.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    data : Dataset or DataLoader
        Items (or batches) as described in the module docstring.
    stage : str
        Which head to score, and which loss to report (see :func:`stage_loss`).
    batch_size : int
        Patches per batch when ``data`` is a Dataset.
    max_batches : int, optional
        Score only the first batches.
    alpha, beta : float
        Head weights of the end-to-end loss.
    device : str or torch.device, optional
        Where to run; default: where the model's parameters are.
    spec : FeatureSpec, optional
        The inputs' feature definition (some losses read its mask layout).

    Returns
    -------
    ValMetrics
    """
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    sums, losses = ErrorSums(), []
    try:
        with torch.inference_mode():
            for index, raw in enumerate(loader):
                if max_batches is not None and index >= max_batches:
                    break
                batch = _to_device(raw, dev, channels_last=_channels_last(model),
                                   keys=batch_keys(model))
                loss, pred = stage_loss(model, batch, stage, batch["weight"].float(),
                                        alpha=alpha, beta=beta, spec=spec)
                losses.append(float(loss))
                sums.add(pred, batch["target"], batch["weight"])
    finally:
        model.train(was_training)
    mean_loss = sum(losses) / len(losses) if losses else math.nan
    return ValMetrics(mean_loss, sums.rmse, sums.r2, sums.n)


# --------------------------------------------------------------------------- epochs


def _epoch_batches(data: Dataset[Any], config: TrainConfig, stage: Stage, epoch: int,
                   device: torch.device) -> Iterator[dict[str, Any]]:
    """Shuffled batches of one epoch, in an order fixed by (seed, stage, epoch)."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    seed = (config.seed * 1_000_003 + stage_number(stage) * 10_007 + epoch) % (2**63)
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


def _train_epoch(run: RunState, stepper: Stepper, data: Dataset[Any],
                 bar: _Batches) -> tuple[int, float]:
    """One epoch of optimiser steps; returns (steps, mean loss)."""
    cfg, stage = run.config, stepper.stage
    prepare_stage(run.model, stage)
    total, steps = 0.0, 0
    spec, keys = FeatureSpec.from_dict(run.feature_spec), batch_keys(run.model)
    for raw in _epoch_batches(data, cfg, stage, stepper.epoch, run.device):
        batch = _to_device(raw, run.device, channels_last=cfg.channels_last, keys=keys)
        with torch.autocast(run.device.type, dtype=torch.bfloat16,
                            enabled=cfg.precision == "bfloat16"):
            loss, _ = stage_loss(run.model, batch, stage,
                                 batch_weight(batch, cfg.cloudy_weight),
                                 alpha=cfg.alpha, beta=cfg.beta, spec=spec)
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
        bar.update(total / steps)
    return steps, total / max(steps, 1)


def _run_epoch(run: RunState, stepper: Stepper, train_data: Dataset[Any],
               val_data: Dataset[Any] | None) -> EpochRecord:
    start, cfg, stage = time.perf_counter(), run.config, stepper.stage
    lr = float(stepper.optimizer.param_groups[0]["lr"])
    desc = f"{stage} {stepper.epoch + 1}/{cfg.stage_epochs(stage)}"
    bar = _Batches(run.say, desc, _steps_per_epoch(train_data, cfg))
    steps, loss = _train_epoch(run, stepper, train_data, bar)
    val = None if val_data is None else validate(
        run.model, val_data, stage=stage, batch_size=cfg.batch_size,
        max_batches=cfg.max_val_batches, alpha=cfg.alpha, beta=cfg.beta,
        spec=FeatureSpec.from_dict(run.feature_spec))
    stepper.scheduler.step()
    stepper.epoch += 1
    record = EpochRecord(stage, stepper.epoch, steps, lr, loss, val,
                         time.perf_counter() - start)
    run.say.info(_describe(record))
    return record


class _Batches:
    """Optimiser steps of an epoch, reported as ``"batches"`` steps with the running loss."""

    def __init__(self, say: Reporter, desc: str, total: int) -> None:
        self.say, self.desc, self.total, self.done = say, desc, total, 0

    def update(self, loss: float) -> None:
        self.done += 1
        if self.say:
            self.say.step("batches", self.done, self.total, f"{self.desc} loss {loss:.4f}")


def _describe(record: EpochRecord) -> str:
    if record.averaged:
        text = f"{record.stage} averaged weights: BatchNorm re-estimated, {record.seconds:.1f} s"
    else:
        text = (f"{record.stage} epoch {record.epoch}: loss {record.train_loss:.4f}, "
                f"lr {record.lr:.2e}, {record.steps} steps, {record.seconds:.1f} s")
    if record.val is not None:
        text += f"; val RMSE {record.val.rmse:.4f} (LAI/5), R² {record.val.r2:.3f}"
    return text


def _run_stages(run: RunState, train_data: Dataset[Any], val_data: Dataset[Any] | None,
                saved: Mapping[str, Any] | None, budget: _Budget,
                stage_data: Mapping[str, Dataset[Any]]) -> bool:
    """Run the stages from where ``saved`` stopped; True when all are done."""
    stages = run.stages
    start = stages.index(saved["stage"]) if saved is not None else 0
    for stage in stages[start:]:
        if run.config.stage_epochs(stage) == 0:
            continue
        stage_saved = saved if saved is not None and saved["stage"] == stage else None
        if stage in FROZEN_MEAN_STAGES and stage_saved is None and run.history:
            _select_mean(run)
        stepper = new_stepper(run, stage, stage_saved)
        data = stage_data.get(stage, train_data)
        while stepper.epoch < run.config.stage_epochs(stage):
            if budget.exhausted(run):
                return False
            run.history.append(_run_epoch(run, stepper, data, val_data))
            update_average(run, stage, stepper.epoch)
            budget.epochs_run += 1
            save_run(run, stepper, complete=_finished(run, stepper))
        if average_pending(run, stage):
            if budget.exhausted(run):
                return False
            run.history.append(averaged_record(run, stage, data, val_data))
            run.say.info(_describe(run.history[-1]))
            save_run(run, stepper, complete=_finished(run, stepper))
    return True


#: Stages that train only the spread head, the mean frozen: they start from the epoch the
#: checkpoint selected, so the spread describes the mean that ships.
FROZEN_MEAN_STAGES = frozenset({"sigma"})


def _select_mean(run: RunState) -> None:
    """Load the checkpoint's weights (the selected epoch of the stages so far) into the model.

    Without this the spread head trained on the last epoch's mean, and the final checkpoint
    kept that mean instead of the selected one (family training: the last end-to-end epoch
    scored 0.084 on validation, the selected one 0.076).
    """
    state = torch.load(run.out, map_location="cpu", weights_only=True)["state_dict"]
    run.model.load_state_dict(state)


def _finished(run: RunState, stepper: Stepper) -> bool:
    later = run.stages[run.stages.index(stepper.stage) + 1:]
    return (stepper.epoch >= run.config.stage_epochs(stepper.stage)
            and not average_pending(run, stepper.stage)
            and all(run.config.stage_epochs(s) == 0 for s in later))


@dataclass
class _Budget:
    """Limits of one call of :func:`train`: epochs and wall time."""

    stop_after: int | None
    time_limit_s: float | None
    epochs_run: int = 0

    def exhausted(self, run: RunState) -> bool:
        if self.stop_after is not None and self.epochs_run >= self.stop_after:
            return True
        elapsed = time.perf_counter() - run.started
        return self.time_limit_s is not None and elapsed >= self.time_limit_s


# --------------------------------------------------------------------------- entry point


def train(model: nn.Module, train_data: Dataset[Any], val_data: Dataset[Any] | None,
          config: TrainConfig, *, out: str | os.PathLike[str],
          feature_spec: Mapping[str, Any], data_info: Mapping[str, Any] | None = None,
          progress: Progress | bool | None = True, resume: bool = False,
          stop_after: int | None = None, time_limit_s: float | None = None,
          stage_data: Mapping[str, Dataset[Any]] | None = None) -> TrainResult:
    """Train ``model`` stage by stage (its architecture's), checkpointing after every epoch.

    Parameters
    ----------
    model : torch.nn.Module
        A network of a registered architecture, trained in place (moved to
        ``config.device``); with ``resume=True`` its weights are replaced by the saved ones.
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
    progress : callable or bool
        Receives a ``"batches"`` step per optimiser step and a line per finished epoch
        (:mod:`lamap.runtime.progress`); ``True`` prints the lines, ``False`` is quiet.
    resume : bool
        Continue from the state file next to ``out`` (which must exist and hold the same
        config, except ``device``, ``num_workers`` and ``threads``).
    stop_after : int, optional
        Run at most this many epochs in this call, then return (resume later).
    time_limit_s : float, optional
        Start no new epoch after this many seconds of this call.
    stage_data : mapping, optional
        Training data of particular stages (e.g. ``{"sigma": validation patches}``) instead
        of ``train_data``.

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
    arch = architecture_of(model)
    saved = read_state(state_path(out), config, arch.name) if resume else None
    info = _data_info(train_data, val_data, data_info)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    run = RunState(model, config, device, out, feature_spec, info, Reporter(progress))
    budget = _Budget(stop_after, time_limit_s)
    with torch_threads(config.threads), _rng_scope(device, config.seed):
        if saved is not None:
            restore_run(run, saved)
        elif config.init_head_bias:
            running = tuple(s for s in run.stages if config.stage_epochs(s) > 0)
            run.head_bias = init_head_biases(run.model, train_data, stages=running,
                                             batch_size=config.batch_size, seed=config.seed)
        complete = _run_stages(run, train_data, val_data, saved, budget, stage_data or {})
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


@contextmanager
def _rng_scope(device: torch.device, seed: int) -> Iterator[None]:
    """Fork the global torch RNG for the run and seed it; the caller's state comes back."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
