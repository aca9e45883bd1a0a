"""Honest evaluation of models side by side, against simple baselines, split by split.

:func:`evaluate` scores, on each split of a training cache (default: the paper's
"non-cloudy", "cloudy" and "unique areas", then the unique areas by how clear the past is),
every model given, on the same pixels, and these methods
(:data:`~lamap.train.report.METHODS`):

* each model's outputs (:mod:`lamap.train.eval_models`): for the fused network ``model``
  (its decoder), ``encoder 1``, ``encoder 2`` (the heads of the radar and optical-history
  encoders, the paper's ablation); for li2025 ``li2025``, ``li2025 step 1`` (the
  CNN-Transformer alone) and EDCSTFN from each reference alone;
* the baselines of :mod:`lamap.train.baselines`: ``persistence``, ``clear persistence``,
  ``linear interpolation``, and the pixel-wise ``linear regression`` and ``random forest``
  fitted on a random subsample of training pixels.

All predictions are clipped to the feature spec's LAI range ([0, 8] m²/m²), as the maps are.

Scoring sets, per split (:data:`~lamap.train.report.SCORINGS`):

* ``target``: pixels valid at t (``target_mask``) against the S2 LAI label; every method is
  scored on the pixels it can predict, and ``coverage`` is the fraction of those it predicts;
* ``target-common``: the same, on the pixels *every* method predicts (those with a valid past
  step, as the networks and the regressions predict everywhere), to compare on equal terms;
* on the synthetic world (the cache holds ``truth_lai``, ``truth_snap``, ``truth_cloud`` and
  ``truth_clear``), gap filling where it matters, pixels cloudy at t (``truth_cloud`` in 1, 2,
  3: cloud, cirrus, shadow), where S2 sees nothing, against three cloud-free references, each
  clipped to the LAI range like the labels and each also ``-common``:

  - ``cloudy-t-clear``: ``truth_clear``, the S2 LAI label of the world's cloud-free twin
    products, made by the loader's own code (product grid, bilinear warp, view angles,
    SNAP): what the label would have been without clouds, i.e. what the model is trained to
    give. The key figure (:meth:`~lamap.train.report.EvalResult.gain`);
  - ``cloudy-t-snap``: ``truth_snap``, SNAP of the cloud-free reflectance on the truth grid,
    without the sensor path;
  - ``cloudy-t-truth``: the true LAI;
  - with ``truth_gap``, the long gaps: ``cloudy-t-gap-le15``, ``cloudy-t-gap-gt15``,
    ``cloudy-t-gap-gt30``, pixels cloudy at t whose last clear S2 is at most 15, more than
    15, more than 30 days old, against ``truth_clear`` (pixels without a clear S2 in the
    world's record are in none of them).

  For scale, the meta entries ``label_vs_clear_rmse`` and ``label_vs_snap_rmse`` (and the
  headline) give the RMSE of the S2 LAI label itself against ``truth_clear`` and
  ``truth_snap`` on pixels valid at t whose SCL the truth calls clear: the first is the
  label's noise from thin clouds SCL does not flag, the second adds the sensor path.

Metrics over a scoring set's pixels (:class:`lamap.train.metrics.ErrorSums`): RMSE in m²/m²,
RMSE on the paper's LAI/5 scale, R² (``1 - SSE / SST`` about the set's own mean), the number
of pixels, and coverage. For models with a spread, calibration on every scoring set but the
``-common`` ones (:class:`lamap.train.uncertainty.Coverage`): the share of pixels whose
reference lies within ±1σ and ±2σ, and the mean σ. The results
(:class:`~lamap.train.report.EvalResult`) are in :mod:`lamap.train.report`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lamap.errors import InputError
from lamap.features import FeatureSpec
from lamap.model import resolve_device, torch_threads
from lamap.train.baselines import (
    MODEL_INPUTS,
    fit_regressions,
    label_steps,
    linear_interpolation,
    persistence,
    pixel_features,
    pixel_table,
    regression_predictions,
    temporal_baselines,
)
from lamap.train.breakdown import Breakdown, CoverLookup, parse_dimensions
from lamap.train.eval_models import ModelLike, ScoredModel, predict_patches, resolve_models
from lamap.train.metrics import ErrorSums, score
from lamap.train.patches import SPLIT_NAMES, STORE_NAME, open_cache
from lamap.train.report import (
    METHODS,
    SCORINGS,
    TRUTH_REFERENCES,
    Calibration,
    EvalResult,
    Score,
)
from lamap.train.uncertainty import Coverage

__all__ = [
    "GAP_SETS",
    "HELD_OUT_SPLITS",
    "METHODS",
    "PAPER_SPLITS",
    "SCORINGS",
    "CacheLike",
    "Calibration",
    "EvalResult",
    "Score",
    "evaluate",
    "label_steps",
    "linear_interpolation",
    "persistence",
    "pixel_features",
    "score",
]

#: The paper's splits: unseen locations by how clear the past is, and the unique areas.
PAPER_SPLITS = ("non-cloudy", "cloudy", "unique")
#: The held-out (unique) area by how clear the past is.
HELD_OUT_SPLITS = ("unique-non-cloudy", "unique-cloudy")
#: Long-gap scoring sets: name → (lowest gap excluded, highest gap included), in days.
GAP_SETS = {"cloudy-t-gap-le15": (-1, 15), "cloudy-t-gap-gt15": (15, 10**4),
            "cloudy-t-gap-gt30": (30, 10**4)}
_CLOUD_CODES = (1, 2, 3)


@runtime_checkable
class CacheLike(Protocol):
    """What :func:`evaluate` needs of an opened cache (``lamap.train.cache.Cache``)."""

    @property
    def path(self) -> Path:
        """The cache directory, holding ``patches.zarr``."""
        ...

    def split_indices(self, name: str) -> np.ndarray:
        """Row indices of split ``name``."""
        ...


# --------------------------------------------------------------------------- cache access


@dataclass(frozen=True)
class _Store:
    """Read access to ``patches.zarr``: arrays by row, splits, the feature spec."""

    group: Any
    path: Path
    split_indices: Callable[[str], np.ndarray]
    spec: FeatureSpec

    @property
    def has_truth(self) -> bool:
        return all(k in self.group for k in ("truth_lai", "truth_snap", "truth_cloud"))

    @property
    def truth_names(self) -> list[str]:
        """The ``truth_*`` arrays the cache holds."""
        names = ["truth_lai", "truth_snap", "truth_cloud", "truth_clear", "truth_gap"]
        return [n for n in names if n in self.group] if self.has_truth else []

    @property
    def has_pixel_inputs(self) -> bool:
        """Whether it holds the fused inputs the pixel-wise baselines read."""
        return all(name in self.group for name in MODEL_INPUTS)

    def read(self, names: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``rows`` (sorted) of each array in ``names``."""
        return {name: self.group[name].oindex[rows] for name in dict.fromkeys(names)}


def _open_store(cache: str | os.PathLike[str] | CacheLike) -> _Store:
    import zarr

    opened = open_cache(cache) if isinstance(cache, str | os.PathLike) else cache
    path = Path(opened.path)
    group = zarr.open_group(path / STORE_NAME, mode="r")
    spec = FeatureSpec.from_dict(dict(group.attrs.get("feature_spec", FeatureSpec().to_dict())))
    return _Store(group, path, opened.split_indices, spec)


# --------------------------------------------------------------------------- predictions


def _references(data: Mapping[str, np.ndarray],
                spec: FeatureSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the reference LAI (m²/m²) and the pixels to score, per base scoring set."""
    refs = {"target": (data["target"] * spec.lai_scale, data["target_mask"] > 0)}
    if "truth_cloud" in data:
        cloudy = np.isin(data["truth_cloud"], _CLOUD_CODES)
        for array, name in TRUTH_REFERENCES.items():
            if array in data:
                ref = np.clip(data[array], *spec.lai_clip)
                refs[f"cloudy-t-{name}"] = (ref, cloudy & np.isfinite(ref))
        refs["cloudy-t-truth"] = (data["truth_lai"], cloudy & np.isfinite(data["truth_lai"]))
        if "truth_gap" in data and "cloudy-t-clear" in refs:
            clear, where = refs["cloudy-t-clear"]
            for name, (low, high) in GAP_SETS.items():
                gap = data["truth_gap"]
                refs[name] = (clear, where & (gap > low) & (gap <= high) & (gap >= 0))
    return refs


# --------------------------------------------------------------------------- regressions


def _fit_pixels(store: _Store, rows: np.ndarray, max_pixels: int, batch_size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw random valid training pixels: features (n, 22) and target (n,)."""
    patch = int(store.group["target"].shape[-1])
    n_read = min(len(rows), max(1, math.ceil(8 * max_pixels / patch**2)))
    chosen = np.sort(rng.choice(rows, size=n_read, replace=False))
    per_patch = math.ceil(2 * max_pixels / n_read)
    feats, targets = [], []
    for part in _chunks(chosen, batch_size):
        data = store.read((*MODEL_INPUTS, "target", "target_mask"), part)
        x = pixel_table(data)
        for i in range(len(part)):
            valid = np.flatnonzero(data["target_mask"][i].ravel())
            take = rng.choice(valid, size=min(per_patch, valid.size), replace=False)
            feats.append(x[i].reshape(-1, x.shape[-1])[take])
            targets.append(data["target"][i].ravel()[take])
    x_all, y_all = np.concatenate(feats), np.concatenate(targets)
    keep = rng.permutation(x_all.shape[0])[:max_pixels]
    return x_all[keep], y_all[keep]


def _fit_baselines(store: _Store, split: str, *, max_pixels: int, rf_max_pixels: int,
                   rf_trees: int, rf_depth: int, threads: int, batch_size: int,
                   seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    rows = store.split_indices(split)
    if rows.size == 0:
        raise InputError(f"split {split!r} of cache {store.path} is empty: cannot fit baselines")
    start, rng = time.perf_counter(), np.random.default_rng(seed)
    x, y = _fit_pixels(store, rows, max(max_pixels, rf_max_pixels), batch_size, rng)
    regressors, meta = fit_regressions(x, y, max_pixels=max_pixels, rf_max_pixels=rf_max_pixels,
                                       rf_trees=rf_trees, rf_depth=rf_depth, threads=threads,
                                       seed=seed)
    return regressors, {"fit_split": split, **meta, "fit_seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- scoring a split


class _SplitScorer:
    """Accumulates every (scoring set, method) over the batches of one split."""

    def __init__(self, methods: Sequence[str]) -> None:
        self.methods = list(methods)
        self.sums: dict[tuple[str, str], ErrorSums] = {}
        self.totals: dict[str, int] = {}
        self.label: dict[str, ErrorSums] = {}  # the S2 label vs each cloud-free reference
        self.spread: dict[tuple[str, str], Coverage] = {}

    def add_spread(self, method: str, pred: np.ndarray, sd: np.ndarray,
                   refs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Count a model's calibration on every scoring set (not the ``-common`` ones)."""
        for name, (ref, where) in refs.items():
            self.spread.setdefault((name, method), Coverage()).add(pred, sd, ref, where)

    def add_label(self, data: Mapping[str, np.ndarray], spec: FeatureSpec) -> None:
        """Score the label itself against the cloud-free references where SCL sees ground."""
        if "truth_cloud" not in data:
            return
        seen = (data["target_mask"] > 0) & (data["truth_cloud"] == 0)
        for array, name in TRUTH_REFERENCES.items():
            if array in data:
                ref = np.clip(data[array], *spec.lai_clip)
                keep = seen & np.isfinite(ref)
                self.label.setdefault(name, ErrorSums()).add(
                    data["target"] * spec.lai_scale, ref, where=keep)

    def add(self, preds: Mapping[str, np.ndarray],
            refs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for base, (ref, where) in refs.items():
            common = where & np.logical_and.reduce([np.isfinite(p) for p in preds.values()])
            for name, mask in ((base, where), (f"{base}-common", common)):
                self.totals[name] = self.totals.get(name, 0) + int(where.sum())
                for method, pred in preds.items():
                    keep = mask & np.isfinite(pred)
                    self.sums.setdefault((name, method), ErrorSums()).add(pred, ref, where=keep)

    def scores(self, split: str, lai_scale: float) -> list[Score]:
        order = {name: i for i, name in enumerate(SCORINGS)}
        keys = sorted(self.sums, key=lambda k: (order.get(k[0], 99), self.methods.index(k[1])))
        scored = {name for (name, _), s in self.sums.items() if s.n}  # empty sets are left out
        return [Score(split, scoring, method, s.rmse, s.rmse / lai_scale, s.r2, s.n,
                      s.n / self.totals[scoring] if self.totals[scoring] else math.nan)
                for (scoring, method), s in ((k, self.sums[k]) for k in keys)
                if scoring in scored]

    def calibration(self, split: str) -> list[Calibration]:
        order = {name: i for i, name in enumerate(SCORINGS)}
        keys = sorted(self.spread, key=lambda k: (order.get(k[0], 99), self.methods.index(k[1])))
        return [Calibration(split, scoring, method, c.n, c.cover1, c.cover2, c.mean_sd, c.rms_z)
                for (scoring, method), c in ((k, self.spread[k]) for k in keys)]


def _chunks(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _score_split(store: _Store, rows: np.ndarray, split: str, models: Sequence[ScoredModel],
                 regressors: Mapping[str, Any], batch_size: int, breakdown: Breakdown | None
                 ) -> tuple[list[Score], list[Calibration], float, dict[str, float]]:
    names = [*(MODEL_INPUTS if store.has_pixel_inputs else ()), "lai", "masks",
             *(name for model in models for name in model.inputs), "target", "target_mask",
             "past_days", *store.truth_names, *(breakdown.needs() if breakdown else ()),
             *(("s1",) if breakdown and "s1" in store.group else ())]
    names = [name for name in names if name in store.group]
    methods = [*(m for model in models for m in model.methods.values()), *METHODS[3:]]
    scorer, model_seconds = _SplitScorer(methods), 0.0
    for part in _chunks(rows, batch_size):
        data = store.read(names, part)
        refs = _references(data, store.spec)
        preds: dict[str, np.ndarray] = {}
        for model in models:
            start = time.perf_counter()
            found, sd = predict_patches(model, data, store.spec)
            model_seconds += time.perf_counter() - start
            preds |= found
            if sd is not None:
                scorer.add_spread(model.name, found[model.name], sd, refs)
        preds |= temporal_baselines(data, store.spec)
        where = np.logical_or.reduce([mask for _, mask in refs.values()])
        preds |= regression_predictions(regressors, data, where, store.spec)
        scorer.add(preds, refs)
        scorer.add_label(data, store.spec)
        if breakdown is not None:
            breakdown.add(preds, refs, data)
    label = {name: sums.rmse for name, sums in scorer.label.items() if sums.n}
    binned = breakdown.scores(split, store.spec.lai_scale) if breakdown is not None else []
    return (scorer.scores(split, store.spec.lai_scale) + binned, scorer.calibration(split),
            model_seconds, label)


def _split_rows(store: _Store, split: str, max_patches: int | None, seed: int) -> np.ndarray:
    if split not in SPLIT_NAMES:
        raise InputError(f"unknown split {split!r}: use some of {list(SPLIT_NAMES)}")
    rows = np.sort(np.asarray(store.split_indices(split), dtype=np.int64))
    if max_patches is not None and rows.size > max_patches:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=max_patches, replace=False))
    return rows


# --------------------------------------------------------------------------- entry point

def evaluate(models: ModelLike | Sequence[ModelLike] | None,
             cache: str | os.PathLike[str] | CacheLike, *,
             splits: Sequence[str] | None = None,
             baselines: bool = True, fit_split: str = "train", max_pixels: int = 200_000,
             rf_max_pixels: int = 50_000, rf_trees: int = 50, rf_depth: int = 12,
             max_patches: int | None = None, batch_size: int = 16, device: str = "cpu",
             threads: int = 2, seed: int = 0,
             fit_cache: str | os.PathLike[str] | CacheLike | None = None,
             by: Sequence[str] = ()) -> EvalResult:
    """Score models side by side, their parts and the baselines on splits of a training cache.

    Parameters
    ----------
    models : network, path, sequence of them, or None
        Networks of registered architectures (moved to ``device`` and put in eval mode), or
        checkpoints to load (their feature specs must be ones the cache provides); None
        scores the baselines only.
    cache : path or CacheLike
        The cache directory (opened with :func:`lamap.train.cache.open_cache`) or an opened
        cache (anything with ``path`` and ``split_indices``, such as
        :class:`lamap.train.cache.Cache`).
    splits : sequence of str, optional
        Splits to score (``train``, ``validation``, ``test``, ``unique``, ``non-cloudy``,
        ``cloudy``, ``unique-non-cloudy``, ``unique-cloudy``): default the paper's three,
        then the held-out area by how clear the past is (those of the two with patches).
    baselines : bool
        Also fit and score the pixel-wise regressions (persistence and linear interpolation
        are always scored: they cost nothing).
    fit_split : str
        Split whose pixels the regressions are fitted on.
    max_pixels, rf_max_pixels : int
        Random training pixels for the linear regression and for the random forest.
    rf_trees, rf_depth : int
        Trees and maximum depth of the random forest.
    max_patches : int, optional
        Score at most this many random patches per split (seeded), for quick looks.
    batch_size : int
        Patches per model batch.
    device : str
        Where the network runs (``"cpu"``, ``"cuda"``, ``"auto"``).
    threads : int
        Torch threads and random-forest jobs.
    seed : int
        Seed of every subsample and of the random forest.
    fit_cache : path or CacheLike, optional
        Fit the regressions on ``fit_split`` of this cache instead (e.g. the models'
        training cache, when ``cache`` holds only unseen worlds).
    by : sequence of str
        Also break the gap-filling scores down by these quantities
        (:data:`lamap.train.breakdown.DIMENSIONS`), into ``EvalResult.breakdown``.

    Returns
    -------
    EvalResult

    Raises
    ------
    InputError
        If the cache is missing, a split is unknown or empty, or a checkpoint's inputs are
        not in the cache.
    ImportError
        If ``baselines`` is set and scikit-learn is not installed.
    """
    store = _open_store(cache)
    start = time.perf_counter()
    if splits is None:
        splits = [*PAPER_SPLITS, *(name for name in HELD_OUT_SPLITS
                                   if len(store.split_indices(name)))]
    with torch_threads(threads):
        scored = resolve_models(models, store.spec, resolve_device(device), store.path)
        meta: dict[str, Any] = {"models": [
            {"name": m.name, "source": m.source, "sha256": m.sha256} for m in scored]}
        if len(scored) == 1:
            meta |= {"model": scored[0].source, "model_sha256": scored[0].sha256}
        regressors: dict[str, Any] = {}
        fit_store = _open_store(fit_cache) if fit_cache is not None else store
        if baselines and store.has_pixel_inputs and fit_store.has_pixel_inputs:
            regressors, fit_meta = _fit_baselines(
                fit_store, fit_split, max_pixels=max_pixels, rf_max_pixels=rf_max_pixels,
                rf_trees=rf_trees, rf_depth=rf_depth, threads=threads,
                batch_size=batch_size, seed=seed)
            meta |= fit_meta | {"fit_cache": str(fit_store.path)}
        breakdown = _breakdown(store, by)
        scores, calibration, patches = _score_splits(store, splits, scored, regressors,
                                                     max_patches, batch_size, seed, meta,
                                                     breakdown)
    binned = tuple(s for s in scores if "|" in s.scoring)
    scores = [s for s in scores if "|" not in s.scoring]
    meta |= {"cache": str(store.path), "splits": list(splits), "patches": patches,
             "lai_scale": store.spec.lai_scale, "lai_clip": list(store.spec.lai_clip),
             "synthetic_truth": store.has_truth, "seconds": time.perf_counter() - start}
    return EvalResult(tuple(scores), meta, tuple(calibration), binned)


def _breakdown(store: _Store, by: Sequence[str]) -> Breakdown | None:
    """Return the breakdown of :func:`evaluate` (None without ``by``)."""
    dimensions = parse_dimensions(by)
    if not dimensions:
        return None
    if not store.has_truth:
        raise InputError(f"the cache {store.path} has no world truth to break the gap-filling "
                         "scores down with: build it from demo worlds")
    covers, attrs = None, dict(store.group.attrs)
    if "landcover" in dimensions:
        covers = CoverLookup(attrs, int(store.group["target"].shape[-1]))
    worlds = [Path(w["path"]).name for w in attrs.get("worlds", [])]
    return Breakdown(dimensions, covers, worlds)


def _score_splits(store: _Store, splits: Sequence[str], models: Sequence[ScoredModel],
                  regressors: Mapping[str, Any], max_patches: int | None, batch_size: int,
                  seed: int, meta: dict[str, Any], breakdown: Breakdown | None = None
                  ) -> tuple[list[Score], list[Calibration], dict[str, int]]:
    scores: list[Score] = []
    calibration: list[Calibration] = []
    patches: dict[str, int] = {}
    model_seconds = 0.0
    for split in splits:
        rows = _split_rows(store, split, max_patches, seed)
        if rows.size == 0:
            raise InputError(
                f"split {split!r} of cache {store.path} has no patches: leave it out of splits"
            )
        fresh = None if breakdown is None else Breakdown(breakdown.dimensions,
                                                         breakdown.covers, breakdown.worlds)
        found, spread, seconds, label = _score_split(store, rows, split, models, regressors,
                                                     batch_size, fresh)
        scores += found
        calibration += spread
        patches[split] = int(rows.size)
        model_seconds += seconds
        for name, value in label.items():
            meta.setdefault(f"label_vs_{name}_rmse", {})[split] = value
    total = sum(patches.values())
    meta["model_seconds_per_patch"] = model_seconds / total if models else None
    return scores, calibration, patches
