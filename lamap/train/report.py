"""The results of :func:`lamap.train.evaluate.evaluate`: scores, key figures and tables.

:class:`EvalResult` holds one :class:`Score` per (split, scoring set, method) and writes them
as Markdown (:meth:`EvalResult.to_markdown`, headed by the key figures), long-format CSV
(:meth:`EvalResult.to_csv`) or a JSON-ready dict (:meth:`EvalResult.to_dict`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["METHODS", "SCORINGS", "TRUTH_REFERENCES", "Calibration", "EvalResult", "Score"]

#: Methods in the order tables list them with one fused model (models' own labels first).
METHODS = ("model", "encoder 1", "encoder 2", "persistence", "clear persistence",
           "linear interpolation", "linear regression", "random forest")
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
    "cloudy-t-gap-le15": "pixels cloudy at t, last clear S2 at most 15 days old, vs the "
                         "cloud-free S2 label",
    "cloudy-t-gap-le15-common": "the same, on common pixels",
    "cloudy-t-gap-gt15": "pixels cloudy at t, last clear S2 more than 15 days old, vs the "
                         "cloud-free S2 label",
    "cloudy-t-gap-gt15-common": "the same, on common pixels",
    "cloudy-t-gap-gt30": "pixels cloudy at t, last clear S2 more than 30 days old, vs the "
                         "cloud-free S2 label",
    "cloudy-t-gap-gt30-common": "the same, on common pixels",
}
#: Cloud-free references of the synthetic world: cache array → short name in the meta.
TRUTH_REFERENCES = {"truth_clear": "clear", "truth_snap": "snap"}


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
_CALIBRATION_METRICS = ("pixels", "cover1", "cover2", "mean_sd", "rms_z")


@dataclass(frozen=True)
class Calibration:
    """How well a model's spread fits its errors on one scoring set of one split.

    Attributes
    ----------
    split, scoring, method : str
        As in :class:`Score` (``method`` is the model's label).
    pixels : int
        Pixels with a prediction, a spread and a reference.
    cover1, cover2 : float
        Share whose reference lies within ±1σ, ±2σ (a Gaussian: 0.683, 0.954).
    mean_sd : float
        Mean σ, m²/m².
    rms_z : float
        Root mean squared error in units of σ (1 when the spread has the errors' size).
    """

    split: str
    scoring: str
    method: str
    pixels: int
    cover1: float
    cover2: float
    mean_sd: float
    rms_z: float


@dataclass(frozen=True)
class EvalResult:
    """Scores of every method on every split and scoring set, with how they were obtained.

    Attributes
    ----------
    scores : tuple of Score
        One per (split, scoring set, method).
    meta : dict
        Models, cache, splits, baseline fits, timings.
    calibration : tuple of Calibration
        One per (split, scoring set, model with a spread).
    breakdown : tuple of Score
        Pixels cloudy at t by bins of one quantity (:mod:`lamap.train.breakdown`): scoring
        ``"<set>|<dimension>=<bin>"``, coverage NaN.
    """

    scores: tuple[Score, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    calibration: tuple[Calibration, ...] = ()
    breakdown: tuple[Score, ...] = ()

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

    @property
    def models(self) -> list[str]:
        """The labels of the models scored (their main method), in order."""
        return [m["name"] for m in self.meta.get("models", [])]

    def gain(self, split: str, scoring: str | None = None, method: str | None = None,
             baseline: str = "persistence") -> float:
        """Relative RMSE reduction of ``method`` over ``baseline``: ``1 - rmse_m / rmse_b``.

        The default ``scoring`` is the demo's key figure: on pixels cloudy at t that
        persistence can predict, against the cloud-free S2 label (``cloudy-t-clear-common``;
        ``cloudy-t-snap-common`` for caches without it); the default ``method`` is the first
        model's.
        """
        if scoring is None:
            scoring = ("cloudy-t-clear-common" if "cloudy-t-clear-common" in self.scorings(split)
                       else "cloudy-t-snap-common")
        method = method or (self.models[0] if self.models else "model")
        return 1.0 - self.get(split, scoring, method).rmse / self.get(
            split, scoring, baseline).rmse

    def to_markdown(self) -> str:
        """Return the key figures, one Markdown table per split and scoring set, calibration."""
        parts = [self._headline()] if self._headline() else []
        for split in self.splits:
            for scoring in self.scorings(split):
                rows = [s for s in self.scores if (s.split, s.scoring) == (split, scoring)]
                parts.append(_markdown_table(split, scoring, rows))
        if self.calibration:
            parts.append(_calibration_table(self.calibration))
        parts += _breakdown_tables(self.breakdown)
        return "\n\n".join(parts) + "\n"

    def _headline(self) -> str:
        """Return the key lines: gap filling and the label's own distance to the truth.

        Gap filling where it matters is the model against persistence under clouds at t.
        """
        lines = []
        for split in self.splits:
            parts = [self._gain_line(split, scoring, title, model)
                     for model in self.models
                     for scoring, title in (("cloudy-t-clear-common", "cloud-free S2 label"),
                                            ("cloudy-t-snap-common", "cloud-free SNAP LAI"))
                     if scoring in self.scorings(split)]
            labels = [f"{value:.3f} m²/m² from the {name} reference"
                      for name in TRUTH_REFERENCES.values()
                      if (value := self.meta.get(f"label_vs_{name}_rmse", {}).get(split))
                      is not None]
            if labels:
                parts.append("on pixels SCL calls clear at t the S2 LAI label itself is "
                             + ", ".join(labels))
            if parts:
                lines.append(f"- {split}: " + "; ".join(parts))
        return "\n".join(lines)

    def _gain_line(self, split: str, scoring: str, title: str, model: str) -> str:
        gain = self.gain(split, scoring, model)
        side = "below" if gain >= 0 else "above"
        who = "the model's" if model == "model" else f"{model}'s"
        return (f"{who} RMSE is {abs(gain):.0%} {side} persistence's on pixels cloudy "
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
            for s in (*self.scores, *self.breakdown):
                for metric in _METRICS:
                    writer.writerow([s.split, s.scoring, s.method, metric, getattr(s, metric)])
            for c in self.calibration:
                for metric in _CALIBRATION_METRICS[1:]:
                    writer.writerow([c.split, c.scoring, c.method, metric, getattr(c, metric)])
        return path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"scores", "calibration", "meta"}`` (NaN stays NaN)."""
        return {"scores": [asdict(s) for s in self.scores],
                "calibration": [asdict(c) for c in self.calibration], "meta": self.meta,
                "breakdown": [asdict(s) for s in self.breakdown]}


def _markdown_table(split: str, scoring: str, rows: Sequence[Score]) -> str:
    head = (f"#### {split}: {SCORINGS.get(scoring, scoring)} (`{scoring}`)\n\n"
            "| method | RMSE (m²/m²) | RMSE (LAI/5) | R² | pixels | coverage |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: |")
    lines = [f"| {s.method} | {s.rmse:.3f} | {s.rmse_scaled:.4f} | {s.r2:.3f} | {s.pixels} | "
             f"{s.coverage:.1%} |" for s in rows]
    return "\n".join([head, *lines])


def _calibration_table(rows: Sequence[Calibration]) -> str:
    head = ("#### calibration of the spread (σ): share of pixels whose reference lies within "
            "±1σ, ±2σ (Gaussian: 68.3 %, 95.4 %)\n\n"
            "| split | scoring | model | pixels | ±1σ | ±2σ | mean σ (m²/m²) | RMS z |\n"
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    lines = [f"| {c.split} | {c.scoring} | {c.method} | {c.pixels} | {c.cover1:.1%} | "
             f"{c.cover2:.1%} | {c.mean_sd:.3f} | {c.rms_z:.2f} |" for c in rows]
    return "\n".join([head, *lines])


_BREAKDOWN_TITLES = {"cloudy-t-clear": "pixels cloudy at t vs the cloud-free S2 label",
                     "cloudy-t-snap": "pixels cloudy at t vs the cloud-free SNAP LAI"}


def _breakdown_tables(rows: Sequence[Score]) -> list[str]:
    """One table per (split, set, dimension): bins down, each method's RMSE across."""
    groups: dict[tuple[str, str, str], list[Score]] = {}
    for s in rows:
        name, _, binned = s.scoring.partition("|")
        dimension, _, _ = binned.partition("=")
        groups.setdefault((s.split, name, dimension), []).append(s)
    tables = []
    for (split, name, dimension), found in groups.items():
        methods = list(dict.fromkeys(s.method for s in found))
        bins = list(dict.fromkeys(s.scoring.partition("=")[2] for s in found))
        rmse = {(s.scoring.partition("=")[2], s.method): s for s in found}
        title = _BREAKDOWN_TITLES.get(name, name)
        head = (f"#### {split}: {title} (common pixels), RMSE (m²/m²) by "
                f"{dimension}\n\n| {dimension} | pixels | " + " | ".join(methods) + " |\n"
                "| --- | ---: |" + " ---: |" * len(methods))
        lines = [f"| {b} | {rmse[(b, methods[0])].pixels} | " + " | ".join(
            f"{rmse[(b, m)].rmse:.3f}" if (b, m) in rmse else "" for m in methods) + " |"
            for b in bins]
        tables.append("\n".join([head, *lines]))
    return tables
