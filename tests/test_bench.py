"""The bench's measuring pieces: model-only throughput in both layouts, halo factor, table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lamap.bench import BenchRow, halo_factor, model_throughput, rows_as_dicts, table
from lamap.infer import predict_array, set_layout
from lamap.model import load_checkpoint


def test_halo_factor_counts_window_padding() -> None:
    assert halo_factor(256, 44) == pytest.approx((344 / 256) ** 2)
    assert halo_factor(512, 44) == pytest.approx((344 / 256) ** 2)  # 4 windows of 256
    assert halo_factor(500, 44) == pytest.approx((344 / 256) ** 2 * (512 / 500) ** 2)


def test_layouts_predict_the_same_and_both_are_measured(model: Path) -> None:
    loaded = load_checkpoint(model)
    block = np.random.default_rng(1).random((20, 64 + 32, 64 + 32), dtype=np.float32)
    season = np.array([0.3, 0.9], dtype=np.float32)
    last = predict_array(block, season, 16, set_layout(loaded), window=32, batch=3)
    plain = predict_array(block, season, 16, set_layout(loaded, channels_last=False),
                          window=32, batch=3)
    np.testing.assert_allclose(last, plain, atol=1e-5)
    speeds = [model_throughput(str(model), 32, 16, window=32, repeats=1, channels_last=cl)
              for cl in (True, False)]
    assert all(math.isfinite(s) and s > 0 for s in speeds)


def test_table_reports_the_ratios() -> None:
    row = BenchRow(512, 44, 262_144, 30_000.0, 9_000.0, 1.81, 1500.0, 29.1,
                   model_contiguous_px_s=20_000.0)
    assert row.ratio == pytest.approx(0.3) and row.layout_speedup == pytest.approx(1.5)
    text = table([row])
    assert "| 512 | 44 | 262144 | 30,000 | 9,000 | 0.30 | 1.81 | 1,500 | 1.50× |" in text
    assert rows_as_dicts([row])[0]["layout_speedup"] == pytest.approx(1.5)
