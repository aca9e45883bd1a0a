"""The one RMSE and R² accumulator of lamap, for training validation and evaluation alike.

:class:`ErrorSums` keeps four float64 sums over any number of batches (NumPy arrays or torch
tensors, on any device), so a metric over a whole split never holds the split in memory and
gives the same value whether the pixels come in one piece or many (:func:`score` is the
one-shot form). The trainer's :func:`lamap.train.loop.validate` and
:func:`lamap.train.evaluate.evaluate` both score with it, so "R²" means the same thing in a
training summary and in an evaluation table.

R² is ``1 - SSE / SST`` with SST about the reference's own mean, computed from the sums as
``Σr² - (Σr)²/n``. That difference cancels catastrophically when the reference is constant:
1000 copies of 0.3 leave an SST of 7e-14 instead of 0, which a bare ``SST > 0`` test would
turn into an R² of -1.4e12. R² is therefore undefined (NaN) unless SST exceeds
:data:`R2_RELATIVE_TOLERANCE` times ``max(Σr², 1)``, i.e. unless the reference varies by more
than about one part in a million of its magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from torch import Tensor

__all__ = ["R2_RELATIVE_TOLERANCE", "ArrayLike", "ErrorSums", "ValMetrics", "score"]

#: Arrays :class:`ErrorSums` takes: NumPy arrays, or torch tensors on any device.
ArrayLike: TypeAlias = np.ndarray | Tensor
#: SST at or below this share of ``max(Σ ref², 1)`` counts as zero: R² is then NaN.
R2_RELATIVE_TOLERANCE = 1e-12


@dataclass
class ErrorSums:
    """Float64 running sums for RMSE and R² of predictions against a reference.

    Attributes
    ----------
    n : int
        Pairs added.
    sse : float
        Sum of squared errors.
    ref_sum, ref_sum2 : float
        Sum and sum of squares of the reference.

    Examples
    --------
    >>> sums = ErrorSums()
    >>> sums.add(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    >>> sums.add(np.array([3.0]), np.array([2.0]))
    >>> sums.n, round(sums.rmse, 4), sums.r2
    (3, 0.8165, 0.0)
    """

    n: int = 0
    sse: float = 0.0
    ref_sum: float = 0.0
    ref_sum2: float = 0.0

    def add(self, pred: ArrayLike, ref: ArrayLike, where: ArrayLike | None = None) -> None:
        """Add pairs of prediction and reference.

        Parameters
        ----------
        pred : numpy.ndarray or torch.Tensor
            Predictions.
        ref : numpy.ndarray or torch.Tensor
            The reference, with as many elements as ``pred`` (reshaped to its shape).
        where : numpy.ndarray or torch.Tensor, optional
            Pixels to count, where ``where > 0`` (a boolean mask or a loss weight), with as
            many elements as ``pred``; default: every pixel. Non-finite values are not
            filtered: select finite pixels with ``where`` (:func:`score` does).

        Raises
        ------
        ValueError
            If ``ref`` or ``where`` does not have as many elements as ``pred``.
        """
        if where is not None:
            keep = where.reshape(pred.shape) > 0
            pred, ref = pred[keep], ref.reshape(pred.shape)[keep]
        p, r = _float64(pred), _float64(ref).reshape(pred.shape)
        self.n += math.prod(p.shape)
        self.sse += float(((p - r) ** 2).sum())
        self.ref_sum += float(r.sum())
        self.ref_sum2 += float((r * r).sum())

    @property
    def rmse(self) -> float:
        """Root mean squared error; NaN before any pair."""
        return math.sqrt(self.sse / self.n) if self.n else math.nan

    @property
    def sst(self) -> float:
        """Total sum of squares of the reference about its mean; 0 before any pair."""
        return self.ref_sum2 - self.ref_sum**2 / self.n if self.n else 0.0

    @property
    def r2(self) -> float:
        """Coefficient of determination ``1 - SSE / SST``; NaN for a constant reference.

        See the module docstring for the guard against a constant reference.
        """
        floor = R2_RELATIVE_TOLERANCE * max(self.ref_sum2, 1.0)
        return 1.0 - self.sse / self.sst if self.sst > floor else math.nan


def _float64(values: ArrayLike) -> ArrayLike:
    if isinstance(values, Tensor):
        return values.detach().double()
    return np.asarray(values, dtype=np.float64)


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
        ``1 - SSE / SST`` with SST about the mean of ``ref`` (NaN if ``ref`` is constant,
        see :attr:`ErrorSums.r2`).
    n : int
        Number of pixels scored.
    """
    sums = ErrorSums()
    sums.add(pred, ref, where=np.isfinite(pred) & np.isfinite(ref))
    return sums.rmse, sums.r2, sums.n


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
        Coefficient of determination over the same pixels (NaN if the target is constant,
        see :attr:`ErrorSums.r2`).
    pixels : int
        Number of scored pixels.
    """

    loss: float
    rmse: float
    r2: float
    pixels: int
