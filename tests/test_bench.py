"""lamap bench: its measuring pieces, a small run end to end, and the plan-only bench."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lamap.bench import BenchReport, _old_halo_factor, model_throughput, report_as_dict, table
from lamap.bench_plan import plan_table, run_plan_bench
from lamap.infer import predict_array, set_layout
from lamap.model import load_checkpoint

REPORT = BenchReport(
    block=1000, halo=44, tiles=2, area_px=2_000_000, workers=2, device="cpu",
    model_px_s=100_000.0, inputs_px_s=400_000.0, inputs_exact_px_s=300_000.0,
    end_to_end_px_s=80_000.0, tiles_px_s=90_000.0, peer_px_s=32_000.0, tasks_per_mpx=6.5,
    tasks_per_mpx_before=1_000.0, halo_factor=1.19, halo_factor_before=2.9,
    peak_worker_mib=1_500.0, peak_client_mib=400.0, layout_speedup=1.4, peer_agreement=0.999,
)  # fmt: skip


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
    assert REPORT.ratio == pytest.approx(0.8) and REPORT.peer_speedup == pytest.approx(2.5)
    assert REPORT.task_cut == pytest.approx(1000 / 6.5)
    assert REPORT.ceiling == pytest.approx(0.8)  # model 1/100k s/px, inputs 1/400k
    assert REPORT.stage_share == pytest.approx((1 / 100_000 + 1 / 400_000) * 80_000)
    text = table(REPORT)
    assert "| end-to-end (the whole lamap map call) | 80,000 | 0.80 |" in text
    assert "| end-to-end, tiles streaming (less the call's fixed costs) | 90,000 | 0.90 |" in text
    assert "end-to-end / model-only: **0.80** (whole call), **0.90**" in text
    assert "**2.50×**" in text and report_as_dict(REPORT)["tiles_ratio"] == pytest.approx(0.9)
    assert "154× fewer" in text and "1.19 (before, on a europe tile: 2.90)" in text
    assert report_as_dict(REPORT)["peer_speedup"] == pytest.approx(2.5)
    assert "nan" in table(replace(REPORT, peer_px_s=float("nan"))).lower()


def test_the_previous_path_computed_about_three_model_pixels_per_output_pixel() -> None:
    assert 2.5 < _old_halo_factor(44) < 3.5


def test_small_bench_runs_end_to_end(tiny_world, model: Path) -> None:  # type: ignore[no-untyped-def]
    from lamap.bench import run_bench

    report = run_bench(world=str(tiny_world.root), checkpoint=str(model), block=64, tiles=2,
                       workers=2)  # fmt: skip
    assert report.area_px == 2 * 64 * 64 and report.tiles == 2
    for name in ("model_px_s", "inputs_px_s", "inputs_exact_px_s", "end_to_end_px_s", "tiles_px_s",
                 "peer_px_s", "peak_worker_mib", "peak_client_mib"):  # fmt: skip
        value = getattr(report, name)
        assert math.isfinite(value) and value > 0, (name, value)
    assert report.tiles_px_s >= report.end_to_end_px_s  # the tiles stream inside the call
    assert report.tasks_per_mpx < report.tasks_per_mpx_before / 10
    assert report.peer_agreement > 0.95


def test_plan_bench_plans_and_builds_tiles_of_a_continental_catalog() -> None:
    out = run_plan_bench((4, 16), bbox=(8.0, 48.5, 12.0, 51.5))
    rows = out["rows"]
    assert [r.tiles for r in rows] == [4, 16]
    assert all(r.with_input == r.tiles for r in rows)  # central Europe has data
    assert all(r.payload_kib > 0 and r.ms_per_tile > 0 for r in rows)
    assert out["catalog"]["s2"] > 0 and out["catalog"]["s1"] > 0
    assert "| 16 | 16 |" in plan_table(out)
