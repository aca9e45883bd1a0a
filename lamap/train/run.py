"""``lamap train`` and ``lamap evaluate`` as short orchestrators over the training stages.

catalog + bbox + dates ─▶ training cache (patches from the same cubes and features as
``lamap map``) ─▶ datasets per split ─▶ the three-stage recipe ─▶ checkpoint ─▶ evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamap._inputs import BBoxLike, DateLike, as_bbox, as_date
from lamap.errors import InputError
from lamap.runtime.progress import Progress

__all__ = ["TrainRun", "evaluate_checkpoint", "train_from_catalog"]


@dataclass(frozen=True)
class TrainRun:
    """What ``lamap train`` did: the checkpoint, the cache and the training summary."""

    checkpoint: Path
    cache: Path
    summary: dict[str, Any]


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
    catalog: str,
    bbox: BBoxLike | None,
    start: DateLike | None,
    end: DateLike | None,
    out: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    patch: int = 256,
    preset: str = "full",
    resume: bool = False,
    time_limit_s: float | None = None,
    config_overrides: dict[str, Any] | None = None,
    progress: Progress | bool | None = True,
) -> TrainRun:
    """Build (or reuse) the training cache, then train the fused model with the recipe.

    Parameters
    ----------
    catalog : str
        Profile name, STAC API URL or demo world directory.
    bbox : bbox-like, optional
        Training area ``W,S,E,N``; on a demo world its held-out area is kept out (default
        for a demo world: the whole world).
    start, end : date or str, optional
        Range of the target days t (default for a demo world: its first and last S2 day).
    out : path-like
        The checkpoint to write (every epoch); a ``.state.pt`` next to it allows ``resume``.
    cache_dir : path-like, optional
        Where the training cache lives (default: ``<out>.cache``); reused when it matches.
    patch : int
        Patch edge in pixels (a multiple of 4).
    preset : {"full", "cpu-demo"}
        ``full``: MODEL.md's recipe (100 epochs end to end, for GPUs); ``cpu-demo``: the
        budget the shipped demo weights were trained with on a 2-core CPU (bfloat16).
    resume : bool
        Continue an interrupted run from its state file.
    time_limit_s : float, optional
        Start no new epoch after this many seconds.
    config_overrides : dict, optional
        :class:`lamap.train.loop.TrainConfig` fields to change.
    progress : callable or bool
        Receives progress events of the cache and of training
        (:mod:`lamap.runtime.progress`); ``True`` prints lines, ``False`` is quiet.

    Returns
    -------
    TrainRun
    """
    from lamap.model import ModelConfig, seeded_model
    from lamap.train.cache import CacheOptions, build_cache
    from lamap.train.config import TrainConfig
    from lamap.train.data import PatchDataset
    from lamap.train.loop import train

    bbox, start, end = _world_defaults(catalog, bbox, start, end)
    area, first, last = as_bbox(bbox), as_date(start, "start"), as_date(end, "end")
    out_path = Path(out)
    cache_path = Path(cache_dir) if cache_dir else out_path.with_suffix(".cache")
    cache = build_cache(
        catalog,
        area,
        first,
        last,
        cache_path,
        patch=patch,
        options=CacheOptions(min_valid=0.0),
        progress=progress,
    )
    config = TrainConfig()
    if preset == "cpu-demo":  # what the shipped demo weights were trained with
        config = TrainConfig.cpu_demo()
    if config_overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **config_overrides})
    train_set = PatchDataset(
        cache, cache.split_indices("train"), augment=True, rng_seed=config.seed
    )
    val_set = PatchDataset(cache, cache.split_indices("validation"))
    model = seeded_model(config.seed, ModelConfig())
    info = {
        "catalog": str(catalog),
        "bbox": list(area.to_tuple()),
        "start": first.isoformat(),
        "end": last.isoformat(),
        "patch": patch,
        "cache": str(cache_path),
        "preset": preset,
        "synthetic": _is_world(catalog),
    }
    result = train(
        model,
        train_set,
        val_set,
        config,
        out=out_path,
        feature_spec=cache.feature_spec.to_dict(),
        data_info=info,
        progress=progress,
        resume=resume,
        time_limit_s=time_limit_s if time_limit_s is not None else _limit(preset),
    )
    return TrainRun(out_path, cache_path, result.summary)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    out_csv: str | os.PathLike[str] | None = None,
    baselines: bool = True,
    max_patches: int | None = None,
) -> str:
    """Score a checkpoint and the baselines on the cache's splits; return a Markdown report.

    Parameters
    ----------
    checkpoint : path-like
        From ``lamap train``.
    cache_dir : path-like
        Its training cache (the same feature definition).
    out_csv : path-like, optional
        Also write the long-format CSV.
    baselines : bool
        Fit and score the pixel-wise regressions too.
    max_patches : int, optional
        Score at most this many patches per split (faster).

    Returns
    -------
    str
        The Markdown tables.
    """
    from lamap.train.evaluate import evaluate

    result = evaluate(str(checkpoint), str(cache_dir), baselines=baselines, max_patches=max_patches)
    if out_csv:
        result.to_csv(out_csv)
    return str(result.to_markdown())


def _limit(preset: str) -> float | None:
    """Return the time limit of a preset: the demo starts no epoch after 85 minutes."""
    return 85 * 60.0 if preset == "cpu-demo" else None
