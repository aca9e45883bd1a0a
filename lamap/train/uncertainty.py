"""Per-pixel uncertainty: the observed LAI's error scale, and calibration of the spread.

A model with a spread head predicts σ for every pixel it fills (:mod:`lamap.train.stages`,
stage ``sigma``). Two more things make ``lai_sd`` in a map:

* **Observed pixels** get the S2 LAI label's own error scale, one number per model
  (:func:`observed_error_scale`): the RMSE of the label against SNAP LAI of the cloud-free
  reflectance (the demo world's ``truth_snap``) on pixels SCL calls valid and the truth calls
  clear, i.e. what the sensor path (20-m bands, warp, view angles, noise) adds to SNAP's
  own LAI. Measured on the cache's validation split when it has the demo world's truth;
  else :data:`DEFAULT_OBSERVED_SD`, the value measured on the default demo world. It is
  recorded in the checkpoint's training summary (``uncertainty``), where mapping reads it.
* **Calibration** is measured, not assumed (:class:`Coverage`): the share of pixels whose
  reference lies within ±1σ and ±2σ of the prediction (0.683 and 0.954 for a Gaussian),
  and the mean σ, scored by :func:`lamap.train.evaluate.evaluate` on held-out pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_OBSERVED_SD", "Coverage", "observed_error_scale", "record_uncertainty"]

#: The label's error scale (m²/m²) on the default demo world, for caches without truth.
DEFAULT_OBSERVED_SD = 0.45


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
        ``(value, how)``: measured on the cache's truth, or the default.
    """
    group = cache.group()
    if "truth_snap" not in group or "truth_cloud" not in group:
        return DEFAULT_OBSERVED_SD, "default: measured on the default demo world"
    rows = cache.split_indices(split)
    squares, count = 0.0, 0
    spec = cache.feature_spec
    for start in range(0, len(rows), 16):
        part = rows[start:start + 16]
        label = np.asarray(group["target"].oindex[part], np.float64) * spec.lai_scale
        ref = np.clip(np.asarray(group["truth_snap"].oindex[part], np.float64), *spec.lai_clip)
        keep = ((np.asarray(group["target_mask"].oindex[part]) > 0)
                & (np.asarray(group["truth_cloud"].oindex[part]) == 0) & np.isfinite(ref))
        squares += float(((label - ref)[keep] ** 2).sum())
        count += int(keep.sum())
    if count == 0:
        return DEFAULT_OBSERVED_SD, "default: no clear label pixel in the cache"
    return math.sqrt(squares / count), (
        f"RMSE of the S2 LAI label against SNAP LAI of the cloud-free reflectance on "
        f"{count} clear pixels of the {split} split")


def record_uncertainty(checkpoint: str | os.PathLike[str], cache: Any) -> dict[str, Any]:
    """Write the observed LAI's error scale into a checkpoint's training summary.

    Returns
    -------
    dict
        The ``uncertainty`` entry written.
    """
    from lamap.model import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(checkpoint)
    value, how = observed_error_scale(cache)
    entry = {"observed_sd": value, "observed_sd_how": how}
    training = {**loaded.training, "uncertainty": entry}
    save_checkpoint(Path(checkpoint), loaded.model, feature_spec=loaded.feature_spec,
                    training=training, extra=loaded.extra)
    return entry
