"""Honest evaluation of the fused model against simple baselines, split by split.

:func:`evaluate` scores, on each split of a training cache (default: the paper's
"non-cloudy", "cloudy" and "unique areas", then the unique areas by how clear the past is),
these methods:

* ``model``: the decoder output of the fused network;
* ``encoder 1``, ``encoder 2``: the heads of the radar and optical-history encoders inside
  the same network (the paper's ablation);
* ``persistence``: the last valid past LAI (t-1 where valid, else t-2, else no prediction),
  "valid" as in MODEL.md's mask (SCL 2..6);
* ``clear persistence``: the same, but a past LAI under a cloud shadow (SCL 3) does not count
  (only SCL classes that make a label, ``target_classes``): the baseline a careful user
  would build;
* ``linear interpolation``: the line through (t-2, LAI) and (t-1, LAI), extrapolated to t with
  ``past_days`` and clipped to the LAI range; where only one past step is valid it falls back
  to persistence, where none is it makes no prediction;
* ``linear regression``, ``random forest``: pixel-wise scikit-learn models on the same
  per-pixel inputs as the network (6 S1 + 2 LAI + 12 mask channels + 2 season values),
  fitted on a random subsample of training pixels.

All predictions are clipped to the feature spec's LAI range ([0, 8] m²/m²), as the maps are.

Scoring sets, per split (:data:`SCORINGS`):

* ``target``: pixels valid at t (``target_mask``) against the S2 LAI label; every method is
  scored on the pixels it can predict, and ``coverage`` is the fraction of those it predicts;
* ``target-common``: the same, on the pixels *every* method predicts (those with a valid past
  step, as the network and the regressions predict everywhere), to compare on equal terms;
* on the synthetic world (the cache holds ``truth_lai``, ``truth_snap``, ``truth_cloud`` and
  ``truth_clear``), gap filling where it matters, pixels cloudy at t (``truth_cloud`` in 1, 2,
  3: cloud, cirrus, shadow), where S2 sees nothing, against three cloud-free references, each
  clipped to the LAI range like the labels and each also ``-common``:

  - ``cloudy-t-clear``: ``truth_clear``, the S2 LAI label of the world's cloud-free twin
    products, made by the loader's own code (product grid, bilinear warp, view angles,
    SNAP): what the label would have been without clouds, i.e. what the model is trained to
    give. The key figure (:meth:`EvalResult.gain`);
  - ``cloudy-t-snap``: ``truth_snap``, SNAP of the cloud-free reflectance on the truth grid,
    without the sensor path;
  - ``cloudy-t-truth``: the true LAI.

  For scale, the meta entries ``label_vs_clear_rmse`` and ``label_vs_snap_rmse`` (and the
  headline) give the RMSE of the S2 LAI label itself against ``truth_clear`` and
  ``truth_snap`` on pixels valid at t whose SCL the truth calls clear: the first is the
  label's noise from thin clouds SCL does not flag, the second adds the sensor path.

Metrics over a scoring set's pixels: RMSE in m²/m², RMSE on the paper's LAI/5 scale, R²
(``1 - SSE / SST`` about the set's own mean), the number of pixels, and coverage.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from lamap.errors import InputError
from lamap.features import FeatureSpec
from lamap.model import FusedLAINet, load_checkpoint, resolve_device
from lamap.train.cache import SPLIT_NAMES, STORE_NAME, open_cache

__all__ = [
    "METHODS",
    "SCORINGS",
    "CacheLike",
    "EvalResult",
    "Score",
    "evaluate",
    "label_steps",
    "linear_interpolation",
    "persistence",
    "pixel_features",
    "score",
]

#: Methods in the order tables list them.
METHODS = ("model", "encoder 1", "encoder 2", "persistence", "clear persistence",
           "linear interpolation", "linear regression", "random forest")
_MODEL_METHODS = METHODS[:3]
_REGRESSIONS = METHODS[6:]
#: Scoring sets and their titles in :meth:`EvalResult.to_markdown`.
SCORINGS = {
    "target": "valid pixels at t vs the S2 LAI label, each method on the pixels it predicts",
    "target-common": "valid pixels at t vs the S2 LAI label, on pixels all methods predict",
    "cloudy-t-clear": "pixels cloudy at t vs the cloud-free S2 label, each on its own pixels",
    "cloudy-t-clear-common": "pixels cloudy at t vs the cloud-free S2 label, common pixels",
    "cloudy-t-snap": "pixels cloudy at t vs the cloud-free SNAP LAI, each on its own pixels",
    "cloudy-t-snap-common": "pixels cloudy at t vs the cloud-free SNAP LAI, common pixels",
    "cloudy-t-truth": "pixels cloudy at t vs the true LAI, each method on its own pixels",
    "cloudy-t-truth-common": "pixels cloudy at t vs the true LAI, on common pixels",
}
_INPUTS = ("s1", "lai", "masks", "season")
_CLOUD_CODES = (1, 2, 3)
#: Cloud-free references of the synthetic world: cache array → short name in the meta.
_TRUTH_REFERENCES = {"truth_clear": "clear", "truth_snap": "snap"}


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


# --------------------------------------------------------------------------- pure pieces


def persistence(lai: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Last valid past LAI: t-1 where valid, else t-2 where valid, else NaN.

    Parameters
    ----------
    lai : numpy.ndarray
        ``(..., 2, H, W)`` LAI at t-2, t-1 (any scale).
    valid : numpy.ndarray
        ``(..., 2, H, W)`` booleans, whether each step is valid.

    Returns
    -------
    numpy.ndarray
        ``(..., H, W)`` float32 prediction, NaN where no step is valid.
    """
    valid = valid.astype(bool)
    older = np.where(valid[..., 0, :, :], lai[..., 0, :, :], np.nan)
    return np.where(valid[..., 1, :, :], lai[..., 1, :, :], older).astype(np.float32)


def linear_interpolation(lai: np.ndarray, valid: np.ndarray, past_days: np.ndarray, *,
                         clip: tuple[float, float] = (0.0, 8.0)) -> np.ndarray:
    """Extrapolate the line through (t-2, LAI) and (t-1, LAI) to t.

    With ``d2``, ``d1`` the days from t-2 and t-1 to t, the prediction is
    ``L1 + (L1 - L2) · d1 / (d2 - d1)``, clipped to ``clip``. Where only one step is valid
    (or ``d2 <= d1``) it is persistence; where none is, NaN.

    Parameters
    ----------
    lai : numpy.ndarray
        ``(..., 2, H, W)`` LAI at t-2, t-1, in m²/m² (``clip`` is in the same unit).
    valid : numpy.ndarray
        ``(..., 2, H, W)`` booleans.
    past_days : numpy.ndarray
        ``(..., 2)`` days from t-2 and from t-1 to t.
    clip : tuple of float
        Range of the result.

    Returns
    -------
    numpy.ndarray
        ``(..., H, W)`` float32.
    """
    days = np.asarray(past_days, dtype=np.float64)[..., None, None]
    d2, d1 = days[..., 0, :, :], days[..., 1, :, :]
    both = valid[..., 0, :, :].astype(bool) & valid[..., 1, :, :].astype(bool) & (d2 > d1)
    l2, l1 = lai[..., 0, :, :].astype(np.float64), lai[..., 1, :, :].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        line = np.clip(l1 + (l1 - l2) * d1 / (d2 - d1), *clip)
    return np.where(both, line, persistence(lai, valid)).astype(np.float32)


def pixel_features(s1: np.ndarray, lai: np.ndarray, masks: np.ndarray,
                   season: np.ndarray) -> np.ndarray:
    """Per-pixel inputs of the network as a feature stack, for pixel-wise baselines.

    Parameters
    ----------
    s1 : numpy.ndarray
        ``(B, 6, H, W)``.
    lai : numpy.ndarray
        ``(B, 2, H, W)``.
    masks : numpy.ndarray
        ``(B, 2, 6, H, W)``.
    season : numpy.ndarray
        ``(B, 2)``.

    Returns
    -------
    numpy.ndarray
        ``(B, 22, H, W)`` float32: 6 S1, 2 LAI, 12 mask channels, 2 season values.
    """
    batch, _, height, width = s1.shape
    flat_masks = masks.reshape(batch, -1, height, width)
    seasons = np.broadcast_to(season[:, :, None, None], (batch, season.shape[1], height, width))
    return np.concatenate([s1, lai, flat_masks, seasons], axis=1, dtype=np.float32)


class _Sums:
    """Float64 sums for RMSE and R² over many batches of (prediction, reference) pairs."""

    def __init__(self) -> None:
        self.n = 0
        self.sse = self.sum = self.sum2 = 0.0

    def add(self, pred: np.ndarray, ref: np.ndarray) -> None:
        p, r = pred.astype(np.float64), ref.astype(np.float64)
        self.n += p.size
        self.sse += float(((p - r) ** 2).sum())
        self.sum += float(r.sum())
        self.sum2 += float((r * r).sum())

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sse / self.n) if self.n else math.nan

    @property
    def r2(self) -> float:
        sst = self.sum2 - self.sum**2 / self.n if self.n else 0.0
        return 1.0 - self.sse / sst if sst > 1e-12 * max(self.sum2, 1.0) else math.nan


def score(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float, int]:
    """RMSE and R² of ``pred`` against ``ref`` over pixels where both are finite.

    Parameters
    ----------
    pred, ref : numpy.ndarray
        Same shape, same unit.

    Returns
    -------
    rmse : float
        Root mean squared error (NaN if no pixel).
    r2 : float
        ``1 - SSE / SST`` with SST about the mean of ``ref`` (NaN if ``ref`` is constant).
    n : int
        Number of pixels scored.
    """
    keep = np.isfinite(pred) & np.isfinite(ref)
    sums = _Sums()
    sums.add(pred[keep], ref[keep])
    return sums.rmse, sums.r2, sums.n


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Score:
    """One method's metrics on one scoring set of one split.

    Attributes
    ----------
    split : str
        The split (``"non-cloudy"``, ``"cloudy"``, ``"unique"``...).
    scoring : str
        The scoring set, a key of :data:`SCORINGS`.
    method : str
        One of :data:`METHODS`.
    rmse : float
        RMSE in m²/m².
    rmse_scaled : float
        RMSE on the LAI/5 scale of the paper (``rmse / lai_scale``).
    r2 : float
        Coefficient of determination.
    pixels : int
        Pixels scored.
    coverage : float
        ``pixels`` over the pixels of the scoring set (all pixels for the own-pixel sets).
    """

    split: str
    scoring: str
    method: str
    rmse: float
    rmse_scaled: float
    r2: float
    pixels: int
    coverage: float


_METRICS = ("rmse", "rmse_scaled", "r2", "pixels", "coverage")


@dataclass(frozen=True)
class EvalResult:
    """Scores of every method on every split and scoring set, with how they were obtained.

    Attributes
    ----------
    scores : tuple of Score
        One per (split, scoring set, method).
    meta : dict
        Model, cache, splits, baseline fits, timings.
    """

    scores: tuple[Score, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def get(self, split: str, scoring: str, method: str) -> Score:
        """Return the score of ``method`` on ``scoring`` of ``split``.

        Raises
        ------
        KeyError
            If there is no such score (the message lists what exists).
        """
        for item in self.scores:
            if (item.split, item.scoring, item.method) == (split, scoring, method):
                return item
        raise KeyError(f"no score for {(split, scoring, method)}; splits: {self.splits}, "
                       f"scorings: {self.scorings(split)}, methods: {self.methods}")

    @property
    def splits(self) -> list[str]:
        """Splits scored, in order."""
        return list(dict.fromkeys(s.split for s in self.scores))

    @property
    def methods(self) -> list[str]:
        """Methods scored, in order."""
        return list(dict.fromkeys(s.method for s in self.scores))

    def scorings(self, split: str) -> list[str]:
        """Scoring sets of ``split``, in order."""
        return list(dict.fromkeys(s.scoring for s in self.scores if s.split == split))

    def gain(self, split: str, scoring: str | None = None, method: str = "model",
             baseline: str = "persistence") -> float:
        """Relative RMSE reduction of ``method`` over ``baseline``: ``1 - rmse_m / rmse_b``.

        The default ``scoring`` is the demo's key figure: on pixels cloudy at t that
        persistence can predict, against the cloud-free S2 label (``cloudy-t-clear-common``;
        ``cloudy-t-snap-common`` for caches without it).
        """
        if scoring is None:
            scoring = ("cloudy-t-clear-common" if "cloudy-t-clear-common" in self.scorings(split)
                       else "cloudy-t-snap-common")
        return 1.0 - self.get(split, scoring, method).rmse / self.get(
            split, scoring, baseline).rmse

    def to_markdown(self) -> str:
        """Return the key figures, then one Markdown table per split and scoring set."""
        parts = [self._headline()] if self._headline() else []
        for split in self.splits:
            for scoring in self.scorings(split):
                rows = [s for s in self.scores if (s.split, s.scoring) == (split, scoring)]
                parts.append(_markdown_table(split, scoring, rows))
        return "\n\n".join(parts) + "\n"

    def _headline(self) -> str:
        """Return the key lines: gap filling and the label's own distance to the truth.

        Gap filling where it matters is the model against persistence under clouds at t.
        """
        lines = []
        for split in self.splits:
            parts = [self._gain_line(split, scoring, title)
                     for scoring, title in (("cloudy-t-clear-common", "cloud-free S2 label"),
                                            ("cloudy-t-snap-common", "cloud-free SNAP LAI"))
                     if scoring in self.scorings(split) and "model" in self.methods]
            labels = [f"{value:.3f} m²/m² from the {name} reference"
                      for name in _TRUTH_REFERENCES.values()
                      if (value := self.meta.get(f"label_vs_{name}_rmse", {}).get(split))
                      is not None]
            if labels:
                parts.append("on pixels SCL calls clear at t the S2 LAI label itself is "
                             + ", ".join(labels))
            if parts:
                lines.append(f"- {split}: " + "; ".join(parts))
        return "\n".join(lines)

    def _gain_line(self, split: str, scoring: str, title: str) -> str:
        gain = self.gain(split, scoring)
        side = "below" if gain >= 0 else "above"
        return (f"the model's RMSE is {abs(gain):.0%} {side} persistence's on pixels cloudy "
                f"at t, against the {title} (common pixels)")

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the scores in long format: ``split, scoring, method, metric, value``.

        Metrics: ``rmse`` (m²/m²), ``rmse_scaled`` (LAI/5), ``r2``, ``pixels``, ``coverage``.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["split", "scoring", "method", "metric", "value"])
            for s in self.scores:
                for metric in _METRICS:
                    writer.writerow([s.split, s.scoring, s.method, metric, getattr(s, metric)])
        return path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"scores": [...], "meta": {...}}`` (NaN stays NaN)."""
        return {"scores": [asdict(s) for s in self.scores], "meta": self.meta}


def _markdown_table(split: str, scoring: str, rows: Sequence[Score]) -> str:
    head = (f"#### {split}: {SCORINGS.get(scoring, scoring)} (`{scoring}`)\n\n"
            "| method | RMSE (m²/m²) | RMSE (LAI/5) | R² | pixels | coverage |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: |")
    lines = [f"| {s.method} | {s.rmse:.3f} | {s.rmse_scaled:.4f} | {s.r2:.3f} | {s.pixels} | "
             f"{s.coverage:.1%} |" for s in rows]
    return "\n".join([head, *lines])


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
        names = ["truth_lai", "truth_snap", "truth_cloud", "truth_clear"]
        return [n for n in names if n in self.group] if self.has_truth else []

    def read(self, names: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``rows`` (sorted) of each array in ``names``."""
        return {name: self.group[name].oindex[rows] for name in names}


def _open_store(cache: str | os.PathLike[str] | CacheLike) -> _Store:
    import zarr

    opened = open_cache(cache) if isinstance(cache, str | os.PathLike) else cache
    path = Path(opened.path)
    group = zarr.open_group(path / STORE_NAME, mode="r")
    spec = FeatureSpec.from_dict(dict(group.attrs.get("feature_spec", FeatureSpec().to_dict())))
    return _Store(group, path, opened.split_indices, spec)


# --------------------------------------------------------------------------- predictions


def _resolve_model(model: FusedLAINet | str | os.PathLike[str] | None, store: _Store,
                   device: torch.device) -> tuple[FusedLAINet | None, dict[str, Any]]:
    if model is None:
        return None, {"model": None}
    if isinstance(model, FusedLAINet):
        return model.to(device).eval(), {"model": "in-memory FusedLAINet"}
    loaded = load_checkpoint(model, map_location=device)
    spec = FeatureSpec.from_dict(loaded.feature_spec)
    if not spec.same_inputs(store.spec):  # the labels scored are the cache's
        raise InputError(
            f"checkpoint {model} was trained with feature spec {spec.to_dict()} but the cache "
            f"{store.path} holds {store.spec.to_dict()}: evaluate on a cache built with the "
            "checkpoint's feature spec"
        )
    return loaded.model.eval(), {"model": str(model), "model_sha256": loaded.sha256}


def _model_predictions(model: FusedLAINet, data: Mapping[str, np.ndarray],
                       spec: FeatureSpec) -> dict[str, np.ndarray]:
    device = next(model.parameters()).device
    inputs = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)).to(device)
              for k in _INPUTS}
    with torch.inference_mode():
        out = model(**inputs)
    return {name: np.clip(t[:, 0].float().cpu().numpy() * spec.lai_scale, *spec.lai_clip)
            for name, t in zip(_MODEL_METHODS, out, strict=True)}


def _temporal_baselines(data: Mapping[str, np.ndarray],
                        spec: FeatureSpec) -> dict[str, np.ndarray]:
    lai = data["lai"].astype(np.float32) * spec.lai_scale
    valid = data["masks"][:, :, 0] > 0
    return {"persistence": persistence(lai, valid),
            "clear persistence": persistence(lai, label_steps(data["masks"], spec)),
            "linear interpolation": linear_interpolation(lai, valid, data["past_days"],
                                                         clip=spec.lai_clip)}


def label_steps(masks: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Where a past step's LAI would have made a label: ``valid`` minus non-label classes.

    Parameters
    ----------
    masks : numpy.ndarray
        ``(..., 2, mask_channel, H, W)``: ``valid`` then one-hot ``spec.onehot_classes``.
    spec : FeatureSpec
        Feature parameters; classes in ``valid_classes`` but not in ``target_classes``
        (cloud shadow by default) are removed, through their one-hot channels.

    Returns
    -------
    numpy.ndarray
        ``(..., 2, H, W)`` booleans.
    """
    keep = masks[..., 0, :, :] > 0
    for i, cls in enumerate(spec.onehot_classes, start=1):
        if cls in spec.valid_classes and cls not in spec.target_classes:
            keep &= masks[..., i, :, :] == 0
    return keep


def _regression_predictions(regressors: Mapping[str, Any], data: Mapping[str, np.ndarray],
                            where: np.ndarray, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Regressor outputs at the pixels ``where`` (B, H, W); NaN elsewhere (never scored)."""
    feats = np.moveaxis(pixel_features(*(data[k] for k in _INPUTS)), 1, -1)[where]
    out = {}
    for name, regressor in regressors.items():
        full = np.full(where.shape, np.nan, dtype=np.float32)
        if feats.shape[0]:
            full[where] = np.clip(regressor.predict(feats) * spec.lai_scale, *spec.lai_clip)
        out[name] = full
    return out


def _references(data: Mapping[str, np.ndarray],
                spec: FeatureSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the reference LAI (m²/m²) and the pixels to score, per base scoring set."""
    refs = {"target": (data["target"] * spec.lai_scale, data["target_mask"] > 0)}
    if "truth_cloud" in data:
        cloudy = np.isin(data["truth_cloud"], _CLOUD_CODES)
        for array, name in _TRUTH_REFERENCES.items():
            if array in data:
                ref = np.clip(data[array], *spec.lai_clip)
                refs[f"cloudy-t-{name}"] = (ref, cloudy & np.isfinite(ref))
        refs["cloudy-t-truth"] = (data["truth_lai"], cloudy & np.isfinite(data["truth_lai"]))
    return refs


# --------------------------------------------------------------------------- baselines


def _fit_pixels(store: _Store, rows: np.ndarray, max_pixels: int, batch_size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw random valid training pixels: features (n, 22) and target (n,)."""
    patch = int(store.group["target"].shape[-1])
    n_read = min(len(rows), max(1, math.ceil(8 * max_pixels / patch**2)))
    chosen = np.sort(rng.choice(rows, size=n_read, replace=False))
    per_patch = math.ceil(2 * max_pixels / n_read)
    feats, targets = [], []
    for part in _chunks(chosen, batch_size):
        data = store.read((*_INPUTS, "target", "target_mask"), part)
        x = np.moveaxis(pixel_features(*(data[k] for k in _INPUTS)), 1, -1)
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
    try:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.linear_model import LinearRegression
    except ImportError as err:
        raise ImportError(
            "the pixel-wise baselines need scikit-learn: pip install scikit-learn, or "
            "evaluate with baselines=False"
        ) from err
    rows = store.split_indices(split)
    if rows.size == 0:
        raise InputError(f"split {split!r} of cache {store.path} is empty: cannot fit baselines")
    start, rng = time.perf_counter(), np.random.default_rng(seed)
    x, y = _fit_pixels(store, rows, max(max_pixels, rf_max_pixels), batch_size, rng)
    linear = LinearRegression().fit(x[:max_pixels], y[:max_pixels])
    forest = RandomForestRegressor(n_estimators=rf_trees, max_depth=rf_depth, n_jobs=threads,
                                   random_state=seed).fit(x[:rf_max_pixels], y[:rf_max_pixels])
    meta = {"fit_split": split, "fit_pixels_linear": int(min(max_pixels, len(y))),
            "fit_pixels_forest": int(min(rf_max_pixels, len(y))), "rf_trees": rf_trees,
            "rf_depth": rf_depth, "fit_seconds": time.perf_counter() - start}
    return {"linear regression": linear, "random forest": forest}, meta


# --------------------------------------------------------------------------- scoring a split


class _SplitScorer:
    """Accumulates every (scoring set, method) over the batches of one split."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], _Sums] = {}
        self.totals: dict[str, int] = {}
        self.label: dict[str, _Sums] = {}  # the S2 label vs each cloud-free reference

    def add_label(self, data: Mapping[str, np.ndarray], spec: FeatureSpec) -> None:
        """Score the label itself against the cloud-free references where SCL sees ground."""
        if "truth_cloud" not in data:
            return
        seen = (data["target_mask"] > 0) & (data["truth_cloud"] == 0)
        for array, name in _TRUTH_REFERENCES.items():
            if array in data:
                ref = np.clip(data[array], *spec.lai_clip)
                keep = seen & np.isfinite(ref)
                self.label.setdefault(name, _Sums()).add(
                    data["target"][keep] * spec.lai_scale, ref[keep])

    def add(self, preds: Mapping[str, np.ndarray],
            refs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for base, (ref, where) in refs.items():
            common = where & np.logical_and.reduce([np.isfinite(p) for p in preds.values()])
            for name, mask in ((base, where), (f"{base}-common", common)):
                self.totals[name] = self.totals.get(name, 0) + int(where.sum())
                for method, pred in preds.items():
                    keep = mask & np.isfinite(pred)
                    self.sums.setdefault((name, method), _Sums()).add(pred[keep], ref[keep])

    def scores(self, split: str, lai_scale: float) -> list[Score]:
        order = {name: i for i, name in enumerate(SCORINGS)}
        keys = sorted(self.sums, key=lambda k: (order.get(k[0], 99), METHODS.index(k[1])))
        return [Score(split, scoring, method, s.rmse, s.rmse / lai_scale, s.r2, s.n,
                      s.n / self.totals[scoring] if self.totals[scoring] else math.nan)
                for (scoring, method), s in ((k, self.sums[k]) for k in keys)]


def _chunks(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _score_split(store: _Store, rows: np.ndarray, split: str, model: FusedLAINet | None,
                 regressors: Mapping[str, Any], batch_size: int
                 ) -> tuple[list[Score], float, dict[str, float]]:
    names = [*_INPUTS, "target", "target_mask", "past_days", *store.truth_names]
    scorer, model_seconds = _SplitScorer(), 0.0
    for part in _chunks(rows, batch_size):
        data = store.read(names, part)
        refs = _references(data, store.spec)
        preds: dict[str, np.ndarray] = {}
        if model is not None:
            start = time.perf_counter()
            preds |= _model_predictions(model, data, store.spec)
            model_seconds += time.perf_counter() - start
        preds |= _temporal_baselines(data, store.spec)
        where = np.logical_or.reduce([mask for _, mask in refs.values()])
        preds |= _regression_predictions(regressors, data, where, store.spec)
        scorer.add(preds, refs)
        scorer.add_label(data, store.spec)
    label = {name: sums.rmse for name, sums in scorer.label.items() if sums.n}
    return scorer.scores(split, store.spec.lai_scale), model_seconds, label


def _split_rows(store: _Store, split: str, max_patches: int | None, seed: int) -> np.ndarray:
    if split not in SPLIT_NAMES:
        raise InputError(f"unknown split {split!r}: use some of {list(SPLIT_NAMES)}")
    rows = np.sort(np.asarray(store.split_indices(split), dtype=np.int64))
    if max_patches is not None and rows.size > max_patches:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=max_patches, replace=False))
    return rows


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- entry point

#: The paper's splits: unseen locations by how clear the past is, and the unique areas.
PAPER_SPLITS = ("non-cloudy", "cloudy", "unique")
#: The held-out (unique) area by how clear the past is.
HELD_OUT_SPLITS = ("unique-non-cloudy", "unique-cloudy")


def evaluate(model_or_checkpoint: FusedLAINet | str | os.PathLike[str] | None,
             cache: str | os.PathLike[str] | CacheLike, *,
             splits: Sequence[str] | None = None,
             baselines: bool = True, fit_split: str = "train", max_pixels: int = 200_000,
             rf_max_pixels: int = 50_000, rf_trees: int = 50, rf_depth: int = 12,
             max_patches: int | None = None, batch_size: int = 16, device: str = "cpu",
             threads: int = 2, seed: int = 0) -> EvalResult:
    """Score the model, its encoders and the baselines on splits of a training cache.

    Parameters
    ----------
    model_or_checkpoint : FusedLAINet, path or None
        The network (moved to ``device`` and put in eval mode), or a checkpoint to load (its
        feature spec must equal the cache's); None scores the baselines only.
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

    Returns
    -------
    EvalResult

    Raises
    ------
    InputError
        If the cache is missing, a split is unknown or empty, or the checkpoint's feature
        spec differs from the cache's.
    ImportError
        If ``baselines`` is set and scikit-learn is not installed.
    """
    store = _open_store(cache)
    start = time.perf_counter()
    if splits is None:
        splits = [*PAPER_SPLITS, *(name for name in HELD_OUT_SPLITS
                                   if len(store.split_indices(name)))]
    with _threads(threads):
        model, meta = _resolve_model(model_or_checkpoint, store, resolve_device(device))
        regressors: dict[str, Any] = {}
        if baselines:
            regressors, fit_meta = _fit_baselines(
                store, fit_split, max_pixels=max_pixels, rf_max_pixels=rf_max_pixels,
                rf_trees=rf_trees, rf_depth=rf_depth, threads=threads,
                batch_size=batch_size, seed=seed)
            meta |= fit_meta
        scores, patches = _score_splits(store, splits, model, regressors, max_patches,
                                        batch_size, seed, meta)
    meta |= {"cache": str(store.path), "splits": list(splits), "patches": patches,
             "lai_scale": store.spec.lai_scale, "lai_clip": list(store.spec.lai_clip),
             "synthetic_truth": store.has_truth, "seconds": time.perf_counter() - start}
    return EvalResult(tuple(scores), meta)


def _score_splits(store: _Store, splits: Sequence[str], model: FusedLAINet | None,
                  regressors: Mapping[str, Any], max_patches: int | None, batch_size: int,
                  seed: int, meta: dict[str, Any]) -> tuple[list[Score], dict[str, int]]:
    scores: list[Score] = []
    patches: dict[str, int] = {}
    model_seconds = 0.0
    for split in splits:
        rows = _split_rows(store, split, max_patches, seed)
        if rows.size == 0:
            raise InputError(
                f"split {split!r} of cache {store.path} has no patches: leave it out of splits"
            )
        found, seconds, label = _score_split(store, rows, split, model, regressors, batch_size)
        scores += found
        patches[split] = int(rows.size)
        model_seconds += seconds
        for name, value in label.items():
            meta.setdefault(f"label_vs_{name}_rmse", {})[split] = value
    total = sum(patches.values())
    meta["model_seconds_per_patch"] = model_seconds / total if model is not None else None
    return scores, patches
