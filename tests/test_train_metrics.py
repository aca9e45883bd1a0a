"""lamap.train.metrics: the one RMSE and R² accumulator of training and evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lamap.train.metrics import R2_RELATIVE_TOLERANCE, ErrorSums, score


def _pairs(seed: int = 0, n: int = 5000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0.0, 1.6, n)
    pred = ref + rng.normal(0.0, 0.1, n)
    mask = rng.random(n) > 0.3
    return pred, ref, mask


def test_one_shot_values() -> None:
    sums = ErrorSums()
    sums.add(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert (sums.n, sums.rmse) == (3, pytest.approx(math.sqrt(1 / 3)))
    assert sums.r2 == pytest.approx(1 - 1 / (14 / 3))  # SST about the mean 7/3
    empty = ErrorSums()
    assert empty.n == 0 and math.isnan(empty.rmse) and math.isnan(empty.r2)


@pytest.mark.parametrize("value", [0.3, 0.1, 0.7, 1.3, 0.0, 1e6])
@pytest.mark.parametrize("n", [3, 1000, 65536])
def test_r2_is_nan_for_a_constant_reference(value: float, n: int) -> None:
    # Σr² - (Σr)²/n is a few ulps, often > 0, for these: a bare `SST > 0` gave R² ≈ -1e12.
    ref = np.full(n, value)
    sums = ErrorSums()
    sums.add(ref + 0.01, ref)
    assert math.isnan(sums.r2), (sums.sst, sums.r2)
    assert sums.rmse == pytest.approx(0.01)
    assert math.isnan(score(ref + 0.01, ref)[1])


def test_r2_is_defined_for_a_barely_varying_reference() -> None:
    ref = 1.0 + 1e-4 * np.arange(100) / 100  # relative spread 1e-4, far above the tolerance
    sums = ErrorSums()
    sums.add(ref, ref)
    assert sums.sst > R2_RELATIVE_TOLERANCE * sums.ref_sum2
    assert sums.r2 == 1.0


@pytest.mark.parametrize("batch", [1, 7, 128, 5000])
def test_streaming_equals_one_shot(batch: int) -> None:
    pred, ref, mask = _pairs()
    whole = ErrorSums()
    whole.add(pred[mask], ref[mask])
    streamed = ErrorSums()
    for start in range(0, len(pred), batch):
        part = slice(start, start + batch)
        streamed.add(pred[part], ref[part], where=mask[part])
    assert streamed.n == whole.n == int(mask.sum())
    assert streamed.rmse == pytest.approx(whole.rmse, rel=1e-12)
    assert streamed.r2 == pytest.approx(whole.r2, rel=1e-12)
    rmse, r2, n = score(np.where(mask, pred, np.nan), ref)
    assert (n, rmse, r2) == (whole.n, pytest.approx(whole.rmse), pytest.approx(whole.r2))


def test_torch_tensors_and_weights_give_the_numpy_result() -> None:
    pred, ref, mask = _pairs(seed=1, n=2 * 3 * 8 * 8)
    shape = (6, 1, 8, 8)
    weight = torch.from_numpy(mask.reshape(shape).astype(np.float32) * 2.0)  # a loss weight
    tensors = ErrorSums()
    tensors.add(torch.from_numpy(pred.reshape(shape)).float(),
                torch.from_numpy(ref.reshape(6, 8, 8)).float(), where=weight)
    arrays = ErrorSums()
    arrays.add(pred.astype(np.float32)[mask], ref.astype(np.float32)[mask])
    assert tensors.n == arrays.n
    assert tensors.rmse == pytest.approx(arrays.rmse, rel=1e-12)
    assert tensors.r2 == pytest.approx(arrays.r2, rel=1e-12)


def test_score_skips_non_finite_pixels() -> None:
    rmse, r2, n = score(np.array([1.0, 2.0, 3.0, np.nan]), np.array([1.0, 2.0, 4.0, 9.0]))
    assert n == 3 and rmse == pytest.approx(math.sqrt(1 / 3))
    assert score(np.array([np.nan]), np.array([1.0]))[2] == 0
