"""Per-pixel uncertainty: calibrating a model's spread, and the observed LAI's error scale.

A model with a spread head predicts σ for every pixel it fills (:mod:`lamap.train.stages`,
stage ``sigma``, fitted on the validation split against the S2 LAI label). The map's
``lai_sd`` is the standard error against *what a cloud-free Sentinel-2 acquisition would give
at the date*, the quantity the map estimates; two numbers per model put it on that scale
(:func:`record_uncertainty`, stored in the checkpoint's training summary, ``uncertainty``):

* **The spread's calibration factor** ``sd_scale`` (:func:`spread_scale`): the labels the σ
  head learns from carry their own noise (thin clouds SCL does not flag: 0.21 m²/m² on the
  default demo world), which the cloud-free reference does not, so a head fitted on labels
  is too wide there; and the errors are not Gaussian (a sharp peak and long tails), so the
  factor that maximises the Gaussian likelihood still leaves the ±1σ band too wide (on the
  default demo world: 80 % of held-out pixels cloudy at t inside it). The factor is fitted
  on the intervals themselves: the one whose ±1σ and ±2σ bands hold closest to 68.3 % and
  95.4 % (least squares) of the validation split's pixels cloudy at t against the
  cloud-free label (``truth_clear``), the case the map fills; on a real catalog, of its
  valid pixels against the label. It multiplies the network's σ (a buffer of its spread
  head), so the checkpoint maps with it.
* **Observed pixels** get the S2 LAI label's own error scale on the same reference
  (:func:`observed_error_scale`): the RMSE of the label against the cloud-free label on
  pixels SCL calls valid and the truth calls clear (validation split; against SNAP of the
  cloud-free reflectance, the label is also reported in evaluations, 0.45 m²/m², most of it
  the sensor path's systematic part). Without a demo world's truth:
  :data:`DEFAULT_OBSERVED_SD`, the value of the default demo world.

Calibration is measured, not assumed (:class:`Coverage`): the share of held-out pixels whose
reference lies within ±1σ and ±2σ of the prediction (0.683 and 0.954 for a Gaussian) and
the mean σ, scored by :func:`lamap.train.evaluate.evaluate`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lamap.errors import InputError

__all__ = ["DEFAULT_OBSERVED_SD", "Coverage", "interval_factor", "observed_error_scale",
           "record_uncertainty", "spread_scale"]

#: The label's error scale against the cloud-free label (m²/m²) on the default demo world
#: (validation split), for caches without truth.
DEFAULT_OBSERVED_SD = 0.21
_CLOUDS = (1, 2, 3)
#: Shares of a Gaussian within ±1σ and ±2σ.
_GAUSS = (math.erf(1 / math.sqrt(2)), math.erf(2 / math.sqrt(2)))


@dataclass
class Coverage:
    """Running counts for the calibration of a spread: ±1σ, ±2σ coverage and mean σ.

    Attributes
    ----------
    n : int
        Pixels counted.
    within1, within2 : int
        Pixels whose reference lies within ±1σ, ±2σ of the prediction.
    sd_sum, z2_sum : float
        Sums of σ and of the squared standardised error.
    """

    n: int = 0
    within1: int = 0
    within2: int = 0
    sd_sum: float = 0.0
    z2_sum: float = 0.0

    def add(self, pred: np.ndarray, sd: np.ndarray, ref: np.ndarray,
            where: np.ndarray) -> None:
        """Count the pixels ``where`` (and where all three are finite)."""
        keep = where & np.isfinite(pred) & np.isfinite(sd) & np.isfinite(ref) & (sd > 0)
        error = np.abs(pred[keep].astype(np.float64) - ref[keep])
        scale = sd[keep].astype(np.float64)
        self.n += int(keep.sum())
        self.within1 += int((error <= scale).sum())
        self.within2 += int((error <= 2 * scale).sum())
        self.sd_sum += float(scale.sum())
        self.z2_sum += float(((error / scale) ** 2).sum())

    @property
    def cover1(self) -> float:
        """Share within ±1σ (NaN before any pixel)."""
        return self.within1 / self.n if self.n else math.nan

    @property
    def cover2(self) -> float:
        """Share within ±2σ (NaN before any pixel)."""
        return self.within2 / self.n if self.n else math.nan

    @property
    def mean_sd(self) -> float:
        """Mean σ, m²/m² (NaN before any pixel)."""
        return self.sd_sum / self.n if self.n else math.nan

    @property
    def rms_z(self) -> float:
        """Root mean squared standardised error (1 for a calibrated Gaussian)."""
        return math.sqrt(self.z2_sum / self.n) if self.n else math.nan


def observed_error_scale(cache: Any, split: str = "validation") -> tuple[float, str]:
    """Return the S2 LAI label's error scale (m²/m²) and how it was obtained.

    Parameters
    ----------
    cache : lamap.train.patches.Cache
        An opened training cache.
    split : str
        Split to measure on.

    Returns
    -------
    tuple
        ``(value, how)``: measured against the cache's cloud-free label, or the default.
    """
    group = cache.group()
    if "truth_clear" not in group or "truth_cloud" not in group:
        return DEFAULT_OBSERVED_SD, "default: measured on the default demo world"
    squares, count = 0.0, 0
    spec = cache.feature_spec
    for part in _parts(cache.split_indices(split)):
        data = {name: np.asarray(group[name].oindex[part])
                for name in ("target", "target_mask", "truth_clear", "truth_cloud")}
        ref = np.clip(data["truth_clear"].astype(np.float64), *spec.lai_clip)
        keep = (data["target_mask"] > 0) & (data["truth_cloud"] == 0) & np.isfinite(ref)
        squares += float(((data["target"] * spec.lai_scale - ref)[keep] ** 2).sum())
        count += int(keep.sum())
    if count == 0:
        return DEFAULT_OBSERVED_SD, "default: no clear label pixel in the cache"
    return math.sqrt(squares / count), (
        f"RMSE of the S2 LAI label against the cloud-free S2 label on {count} clear pixels "
        f"of the {split} split")


def spread_scale(model: Any, cache: Any, split: str = "validation") -> tuple[float, str]:
    """Return the factor that calibrates a model's σ, and how it was fitted.

    The factor ``s`` whose bands ±s·σ and ±2s·σ hold closest to 68.3 % and 95.4 % (least
    squares) of the split's pixels cloudy at t against the cloud-free label (a demo world),
    or of its valid pixels against the label (:func:`interval_factor`).

    Parameters
    ----------
    model : torch.nn.Module
        A network with a spread head (its current factor included).
    cache : lamap.train.patches.Cache
        An opened training cache.
    split : str
        Split to fit on.

    Returns
    -------
    tuple
        ``(factor, how)``.
    """
    from lamap.train.eval_models import ScoredModel, predict_patches

    group, spec = cache.group(), cache.feature_spec
    clear = "truth_clear" in group and "truth_cloud" in group
    scored = ScoredModel(model.eval(), {"lai": "model"}, "model", "in memory")
    names = [*scored.inputs, "target", "target_mask",
             *(("truth_clear", "truth_cloud") if clear else ())]
    found = []
    for part in _parts(cache.split_indices(split)):
        data = {name: np.asarray(group[name].oindex[part]) for name in names}
        preds, sd = predict_patches(scored, data, spec)
        if sd is None:
            raise InputError("the model has no spread head: nothing to calibrate")
        ref, where = _reference(data, spec, clear)
        keep = where & np.isfinite(ref) & np.isfinite(sd)
        found.append((np.abs(ref - preds["model"]) / sd)[keep].astype(np.float32))
    z = np.concatenate(found) if found else np.zeros(0, np.float32)
    against = "the cloud-free S2 label on pixels cloudy at t" if clear else "the label"
    return interval_factor(z), (f"±1σ, ±2σ coverage of {against}, {z.size} pixels of the "
                                f"{split} split")


def interval_factor(z: np.ndarray) -> float:
    """Return the factor s whose ±s, ±2s bands of ``|z|`` hold closest to 68.3 %, 95.4 %.

    Least squares over a grid of factors from 0.2 to 5 (steps of 0.5 %); 1 for no sample.
    """
    if z.size == 0:
        return 1.0
    ordered = np.sort(np.asarray(z, dtype=np.float64))
    grid = np.exp(np.arange(np.log(0.2), np.log(5.0), 0.005))
    inside1 = np.searchsorted(ordered, grid, side="right") / ordered.size
    inside2 = np.searchsorted(ordered, 2 * grid, side="right") / ordered.size
    misfit = (inside1 - _GAUSS[0]) ** 2 + (inside2 - _GAUSS[1]) ** 2
    return float(grid[int(np.argmin(misfit))])


def _reference(data: dict[str, np.ndarray], spec: Any,
               clear: bool) -> tuple[np.ndarray, np.ndarray]:
    if clear:
        ref = np.clip(data["truth_clear"].astype(np.float64), *spec.lai_clip)
        return ref, np.isin(data["truth_cloud"], _CLOUDS)
    return data["target"] * spec.lai_scale, data["target_mask"] > 0


def _parts(rows: np.ndarray, size: int = 8) -> list[np.ndarray]:
    return [rows[start:start + size] for start in range(0, len(rows), size)]


def record_uncertainty(checkpoint: str | os.PathLike[str], cache: Any) -> dict[str, Any]:
    """Calibrate a checkpoint's spread and record the observed LAI's error scale in it.

    The spread head's calibration buffer is multiplied by :func:`spread_scale` (models
    without a spread head keep theirs), and the training summary gets ``uncertainty``.

    Returns
    -------
    dict
        The ``uncertainty`` entry written.
    """
    import torch

    from lamap.model import load_checkpoint, save_checkpoint
    from lamap.model.checkpoint import CALIBRATION_BUFFERS

    loaded = load_checkpoint(checkpoint)
    value, how = observed_error_scale(cache)
    entry: dict[str, Any] = {"observed_sd": value, "observed_sd_how": how}
    buffers = [b for n, b in loaded.model.named_buffers() if n.endswith(CALIBRATION_BUFFERS)]
    if buffers and _has_spread(loaded.model):
        factor, fitted = spread_scale(loaded.model, cache)
        with torch.no_grad():
            for buffer in buffers:
                buffer.mul_(factor)
        entry |= {"sd_scale": float(buffers[0]), "sd_scale_how": fitted}
    training = {**loaded.training, "uncertainty": entry}
    save_checkpoint(Path(checkpoint), loaded.model, feature_spec=loaded.feature_spec,
                    training=training, extra=loaded.extra)
    return entry


def _has_spread(model: Any) -> bool:
    return getattr(model, "sigma", None) is not None or getattr(
        getattr(model, "fusion", None), "sigma", None) is not None
