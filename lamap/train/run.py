"""``lamap train`` and ``lamap evaluate`` as short orchestrators over the training stages.

catalog + bbox + dates ─▶ training cache (patches from the same cubes and features as
``lamap map``) ─▶ datasets per split ─▶ the three-stage recipe ─▶ checkpoint ─▶ evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lamap._inputs import BBoxLike, DateLike, as_bbox, as_date
from lamap.errors import InputError
from lamap.runtime.progress import Progress

__all__ = ["TrainRun", "evaluate_checkpoint", "initial_model", "train_from_catalog"]


@dataclass(frozen=True)
class TrainRun:
    """What ``lamap train`` did: the checkpoint, the cache and the training summary."""

    checkpoint: Path
    cache: Path
    summary: dict[str, Any]

    @property
    def complete(self) -> bool:
        """False when the time budget stopped it before every stage ran (rerun with resume)."""
        return bool(self.summary.get("complete", True))


def _is_world(catalog: str) -> bool:
    """Tell whether ``--catalog`` is a demo world, by the catalog package's own rule."""
    from lamap.catalog import open_catalog

    return open_catalog(catalog).local_world is not None


def _world_defaults(
    catalog: str, bbox: BBoxLike | None, start: DateLike | None, end: DateLike | None
) -> tuple[BBoxLike, DateLike, DateLike]:
    """Fill a demo world's bbox and date range where they are not given."""
    if bbox is not None and start is not None and end is not None:
        return bbox, start, end
    if not _is_world(catalog):
        raise InputError(
            "--bbox, --start and --end are required unless --catalog is a demo world directory"
        )
    from lamap.catalog.local import world_defaults

    world_bbox, first, last = world_defaults(catalog)
    return (
        bbox if bbox is not None else world_bbox,
        start if start is not None else first,
        end if end is not None else last,
    )


def train_from_catalog(
    catalog: str | Sequence[str],
    bbox: BBoxLike | None,
    start: DateLike | None,
    end: DateLike | None,
    out: str | os.PathLike[str],
    *,
    arch: str = "lnb-fused",
    init: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    patch: int = 256,
    preset: str = "full",
    resume: bool = False,
    time_limit_s: float | None = None,
    config_overrides: dict[str, Any] | None = None,
    holdout_worlds: Sequence[str | int] = (),
    sharpen_20m: int = 0,
    progress: Progress | bool | None = True,
) -> TrainRun:
    """Build (or reuse) the training cache, then train a registered model stage by stage.

    The cache holds the inputs of every registered architecture (the fused model's S1 steps
    and the S1 series, :data:`lamap.model.registry.TRAINING_CACHE_SPEC`), so models of
    either kind trained on one area are scored side by side on the same pixels; the
    checkpoint records the model's own inputs (its architecture's feature spec).

    Parameters
    ----------
    catalog : str or sequence of str
        Profile name, STAC API URL or demo world directory; or several demo worlds and
        families of worlds (``lamap demo --family``), trained on together through one cache
        with the world recorded per patch (:mod:`lamap.train.worlds`; ``bbox``, ``start``
        and ``end`` must then be None: every world is used whole).
    bbox : bbox-like, optional
        Training area ``W,S,E,N``; on a demo world its held-out area is kept out (default
        for a demo world: the whole world).
    start, end : date or str, optional
        Range of the target days t (default for a demo world: its first and last S2 day).
    out : path-like
        The checkpoint to write (every epoch); a ``.state.pt`` next to it allows ``resume``.
    arch : str
        The architecture (:mod:`lamap.model.registry`): ``lnb-fused`` or ``li2025``.
    init : path-like, optional
        Start from this checkpoint's weights (it must be of ``arch``; a spread head it lacks
        starts untrained), e.g. to train only the spread head of shipped weights, or to
        fine-tune them on more worlds; the heads' biases are not reset
        (``init_head_bias`` is False unless ``config_overrides`` sets it).
    cache_dir : path-like, optional
        Where the training cache lives (default: ``<out>.cache``); reused when it matches.
    patch : int
        Patch edge in pixels (a multiple of 4).
    preset : {"full", "cpu-demo"}
        ``full``: the recipe at full length (for GPUs); ``cpu-demo``: the budget the shipped
        demo weights were trained with on a 2-core CPU (the architecture's
        ``cpu_demo`` settings).
    resume : bool
        Continue an interrupted run from its state file.
    time_limit_s : float, optional
        Start no new epoch after this many seconds.
    config_overrides : dict, optional
        :class:`lamap.train.loop.TrainConfig` fields to change.
    holdout_worlds : sequence of str or int
        With several worlds: those kept out of training whole (``unique``), by index,
        directory name or path.
    sharpen_20m : int
        Sharpen SNAP's 20-m bands with the 10-m bands in windows of this half-width (pixels)
        for every S2 LAI, label included (the feature spec's ``s2_sharpen``,
        :mod:`lamap.sharpen`); 0: as the loader interpolates them (the paper's label).
    progress : callable or bool
        Receives progress events of the cache and of training
        (:mod:`lamap.runtime.progress`); ``True`` prints lines, ``False`` is quiet.

    Returns
    -------
    TrainRun

    Raises
    ------
    InputError
        For an unknown architecture or bad arguments.
    CheckpointError
        If ``init`` is not a checkpoint of ``arch``.
    """
    from lamap.model import TRAINING_CACHE_SPEC, get_architecture, load_checkpoint
    from lamap.runtime.allocator import tune_allocator
    from lamap.train.cache import CacheOptions, build_cache
    from lamap.train.data import PatchDataset
    from lamap.train.loop import train
    from lamap.train.uncertainty import record_uncertainty

    tune_allocator()  # kernel time of a fused training run: 11 % of its CPU time without
    architecture = get_architecture(arch)
    if init is not None:  # trained heads keep their biases (initial_model starts new ones)
        config_overrides = {"init_head_bias": False, **(config_overrides or {})}
    config = _config(architecture, preset, config_overrides)
    model = initial_model(architecture.name, init, seed=config.seed)  # refuse a wrong init early
    out_path = Path(out)
    cache_path = Path(cache_dir) if cache_dir else out_path.with_suffix(".cache")
    cache_spec = replace(TRAINING_CACHE_SPEC, s2_sharpen=sharpen_20m)
    if _many_worlds(catalog):
        cache, info = _worlds_cache(catalog, (bbox, start, end), cache_path, patch,
                                    holdout_worlds, cache_spec, progress)
    else:
        catalog = catalog if isinstance(catalog, str) else catalog[0]
        bbox, start, end = _world_defaults(catalog, bbox, start, end)
        area, first, last = as_bbox(bbox), as_date(start, "start"), as_date(end, "end")
        cache = build_cache(catalog, area, first, last, cache_path, patch=patch,
                            spec=cache_spec, options=CacheOptions(min_valid=0.0),
                            progress=progress)
        info = {"catalog": str(catalog), "bbox": list(area.to_tuple()),
                "start": first.isoformat(), "end": last.isoformat(),
                "synthetic": _is_world(catalog)}
    spec = _model_spec(architecture, cache.feature_spec)
    names = (*architecture.spatial_inputs, *architecture.vector_inputs)
    train_set = PatchDataset(cache, cache.split_indices("train"), augment=True,
                             rng_seed=config.seed, inputs=names, crop=config.crop)
    val_crop = None if config.crop is None else min(patch, 2 * config.crop)
    val_set = PatchDataset(cache, cache.split_indices("validation"), inputs=names,
                           crop=val_crop)
    sigma_set = PatchDataset(cache, cache.split_indices(config.sigma_split), inputs=names,
                             augment=True, rng_seed=config.seed, crop=config.crop)
    info |= {"patch": patch, "cache": str(cache_path), "preset": preset,
             "sigma_split": config.sigma_split, "val_crop": val_crop}
    if init is not None:  # what the weights it starts from were trained with
        loaded = load_checkpoint(init)
        info["init"] = {"path": str(init), "sha256": loaded.sha256, "training": loaded.training}
    result = train(model, train_set, val_set, config, out=out_path,
                   feature_spec=spec.to_dict(), data_info=info, progress=progress,
                   resume=resume, stage_data={"sigma": sigma_set},
                   time_limit_s=time_limit_s if time_limit_s is not None else _limit(preset))
    if result.complete:
        record_uncertainty(out_path, cache)
    return TrainRun(out_path, cache_path, result.summary)


def _many_worlds(catalog: str | Sequence[str]) -> bool:
    """Whether ``catalog`` is several catalogs or a family of worlds."""
    from lamap.catalog.local import is_family

    entries = [catalog] if isinstance(catalog, str) else list(catalog)
    if not entries:
        raise InputError("no catalog given: pass --catalog once or more")
    return len(entries) > 1 or is_family(entries[0])


def _worlds_cache(catalogs: str | Sequence[str], area: tuple[Any, Any, Any],
                  cache_path: Path, patch: int, holdout: Sequence[str | int], spec: Any,
                  progress: Progress | bool | None) -> tuple[Any, dict[str, Any]]:
    """Build the cache of several worlds; return it and the checkpoint's data description."""
    from lamap.train.cache import CacheOptions
    from lamap.train.worlds import build_worlds_cache

    if any(value is not None for value in area):
        raise InputError("--bbox, --start and --end do not apply to several worlds or a "
                         "family: each world is used whole; leave them out")
    entries = [catalogs] if isinstance(catalogs, str) else list(catalogs)
    cache = build_worlds_cache(entries, cache_path, holdout_worlds=holdout, patch=patch,
                               spec=spec, options=CacheOptions(min_valid=0.0),
                               progress=progress)
    worlds = cache.attrs["worlds"]
    return cache, {"catalog": [str(c) for c in entries], "synthetic": True,
                   "worlds": [w["path"] for w in worlds],
                   "holdout_worlds": [w["path"] for w in worlds if w["held_out"]]}


def _config(architecture: Any, preset: str, overrides: dict[str, Any] | None) -> Any:
    from lamap.train.config import TrainConfig

    if preset not in ("full", "cpu-demo"):
        raise InputError(f"unknown preset {preset!r}: use full or cpu-demo")
    config = TrainConfig(epochs_sigma=5)
    if preset == "cpu-demo":  # what the shipped demo weights were trained with
        config = TrainConfig.from_dict({**TrainConfig.cpu_demo().to_dict(), "epochs_sigma": 3,
                                        **architecture.cpu_demo})
    if overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    return config


def _model_spec(architecture: Any, cache_spec: Any) -> Any:
    """Return the model's inputs: the cache's spec with the architecture's S1 choice."""
    wanted = architecture.spec
    spec = replace(cache_spec, s1_at_steps=wanted.s1_at_steps,
                   s1_window_days=wanted.s1_window_days, s1_passes=wanted.s1_passes)
    if not cache_spec.provides(spec):
        raise InputError(f"the training cache's inputs {cache_spec.to_dict()} do not hold "
                         f"those of {architecture.name}: build the cache for it")
    return spec


def initial_model(arch: str, init: str | os.PathLike[str] | None = None, *,
                  seed: int = 0) -> Any:
    """Return the network to train: seeded, or the weights of ``init`` (with a spread head).

    Parameters
    ----------
    arch : str
        The architecture.
    init : path-like, optional
        A checkpoint of that architecture; a spread head it lacks is added untrained.
    seed : int
        Seed of the weights ``init`` does not give.

    Raises
    ------
    CheckpointError
        If ``init`` holds another architecture (the message names both).
    """
    from dataclasses import replace as with_fields

    from lamap.model import get_architecture, load_checkpoint, seeded_network

    architecture = get_architecture(arch)
    if init is None:
        config: Any = architecture.build().config
        return seeded_network(architecture, seed, with_fields(config, sigma_head=True))
    loaded = load_checkpoint(init, architecture=architecture.name)
    model = seeded_network(architecture, seed, with_fields(loaded.config, sigma_head=True))
    missing, unexpected = model.load_state_dict(loaded.model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("sigma.", "fusion.sigma.", "sd_scale"))
                                  for k in missing)
    if missing:  # the trained heads keep their biases; a new spread head starts at its σ
        from lamap.train.stages import init_biases

        init_biases(model, 0.0, ("sigma",))
    return model


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    worlds: Sequence[str | os.PathLike[str]] = (),
    fit_cache: str | os.PathLike[str] | None = None,
    by: Sequence[str] = (),
    out_csv: str | os.PathLike[str] | None = None,
    baselines: bool = True,
    max_patches: int | None = None,
    progress: Progress | bool | None = False,
) -> str:
    """Score checkpoints side by side and the baselines on a cache; return a Markdown report.

    Parameters
    ----------
    checkpoint : path-like or list of path-like
        From ``lamap train``.
    cache_dir : path-like, optional
        Their training cache (the same feature definition); with ``worlds``, where the
        cache of those worlds is built (default: next to the first, ``<world>.eval-cache``).
    worlds : sequence of path-like
        Demo worlds or families the models never saw: every patch of theirs is scored as
        ``unique`` (the held-out splits); the regressions are fitted on ``fit_cache``.
    fit_cache : path-like, optional
        The cache the regressions are fitted on (its ``train`` split); default with
        ``worlds``: the first checkpoint's training cache if it is still there, else the
        regressions are left out.
    by : sequence of str
        Break the gap-filling scores down (:mod:`lamap.train.breakdown`).
    out_csv : path-like, optional
        Also write the long-format CSV.
    baselines : bool
        Fit and score the pixel-wise regressions too.
    max_patches : int, optional
        Score at most this many patches per split (faster).
    progress : callable or bool
        Progress of building the worlds' cache.

    Returns
    -------
    str
        The Markdown tables.

    Raises
    ------
    InputError
        If neither ``cache_dir`` nor ``worlds`` is given.
    """
    from lamap.train.evaluate import evaluate

    models = [checkpoint] if isinstance(checkpoint, str | os.PathLike) else list(checkpoint)
    splits = None
    if worlds:
        cache_dir, splits = _worlds_eval_cache(worlds, cache_dir, _sharpening(models), progress)
        fit_cache = fit_cache or _training_cache(models[0])
        baselines = baselines and fit_cache is not None
    elif cache_dir is None:
        raise InputError("give --cache (a training cache) or --world (worlds to score on)")
    result = evaluate([str(m) for m in models], str(cache_dir), baselines=baselines,
                      max_patches=max_patches, splits=splits, fit_cache=fit_cache, by=by)
    if out_csv:
        result.to_csv(out_csv)
    return str(result.to_markdown())


def _worlds_eval_cache(worlds: Sequence[str | os.PathLike[str]],
                       cache_dir: str | os.PathLike[str] | None, sharpen: int,
                       progress: Progress | bool | None) -> tuple[Path, list[str]]:
    """Build the cache of unseen worlds, all held out; return it and its non-empty splits."""
    from lamap.model import TRAINING_CACHE_SPEC
    from lamap.train.cache import CacheOptions
    from lamap.train.worlds import build_worlds_cache, expand_worlds

    found = expand_worlds(list(worlds))
    path = Path(cache_dir) if cache_dir else Path(str(Path(worlds[0]).resolve()) + ".eval-cache")
    cache = build_worlds_cache([str(w) for w in found], path, patch=256,
                               holdout_worlds=list(range(len(found))),
                               spec=replace(TRAINING_CACHE_SPEC, s2_sharpen=sharpen),
                               options=CacheOptions(min_valid=0.0), progress=progress)
    splits = [s for s in ("unique", "unique-non-cloudy", "unique-cloudy")
              if len(cache.split_indices(s))]
    if not splits:
        raise InputError(f"the worlds {[str(w) for w in found]} give no patch to score (no "
                         "date with enough valid S2 at t): add worlds or longer ones")
    return path, splits


def _sharpening(models: Sequence[str | os.PathLike[str]]) -> int:
    """Return the checkpoints' ``s2_sharpen``: the worlds' cache is built with it."""
    from lamap.features import FeatureSpec
    from lamap.model import load_checkpoint

    found = {FeatureSpec.from_dict(load_checkpoint(m).feature_spec).s2_sharpen for m in models}
    if len(found) > 1:
        raise InputError(
            f"the checkpoints sharpen S2's 20-m bands differently ({sorted(found)} pixels): "
            "one worlds' cache cannot serve them all; evaluate them in separate calls")
    return found.pop()


def _training_cache(checkpoint: str | os.PathLike[str]) -> Path | None:
    """Return the training cache a checkpoint records, if it is still there."""
    from lamap.model import load_checkpoint

    recorded = (load_checkpoint(checkpoint).training or {}).get("data", {}).get("cache")
    if recorded and (Path(recorded) / "patches.zarr").is_dir():
        return Path(recorded)
    return None


def _limit(preset: str) -> float | None:
    """Return the time limit of a preset: the demo starts no epoch after 85 minutes."""
    return 85 * 60.0 if preset == "cpu-demo" else None
