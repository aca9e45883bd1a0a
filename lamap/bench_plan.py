"""``lamap bench --plan-only``: plan and build many tiles of a continental catalog.

A synthetic continental catalog (:mod:`lamap.synthetic.continent`: real-shaped S2 and S1
items over EEA39, no pixels) is indexed once; then, for each tile count N, N tiles of the
``europe`` grid around central Europe are planned and their tasks built exactly as
``lamap map`` builds them before submitting (the block jobs, pickled as the client sends
them), streaming: nothing of a tile is kept once it is built. Reported per N: seconds and
peak growth of this process's memory, per tile. ``whole=True`` also plans every tile of
the europe grid that the catalog's bbox touches (the continental dry run).
"""

from __future__ import annotations

import datetime as dt
import math
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lamap._peaks import peaks
from lamap.blocks import BlockJob, block_windows
from lamap.features import FeatureSpec
from lamap.grid import Grid, Tile, get_grid
from lamap.runtime.progress import Progress, Reporter
from lamap.tileplan import SceneIndex, TilePlan, iter_plans
from lamap.timesteps import TimeSteps, search_window

__all__ = ["PlanRow", "plan_table", "run_plan_bench"]

#: Where the tile squares are centred (lon, lat): central Europe.
CENTRE = (10.0, 50.0)


@dataclass(frozen=True)
class PlanRow:
    """Planning and building N tiles."""

    tiles: int
    with_input: int
    plan_seconds: float
    build_seconds: float
    peak_growth_mib: float
    payload_kib: float

    @property
    def ms_per_tile(self) -> float:
        """Plan + build time per tile."""
        return 1e3 * (self.plan_seconds + self.build_seconds) / self.tiles

    @property
    def kib_per_tile(self) -> float:
        """Peak memory growth per tile (flat memory makes it fall as 1/N)."""
        return 1024 * self.peak_growth_mib / self.tiles


def _peak_rss() -> Any:
    """Poll this process's resident memory: yields [peak growth above the level on entry]."""
    import psutil

    me = psutil.Process()
    base = float(me.memory_info().rss)
    return peaks([lambda: me.memory_info().rss - base], every=0.05)


def _square(grid: Grid, count: int) -> list[Tile]:
    """About ``count`` tiles in a square around :data:`CENTRE`, row-major."""
    lon, lat = CENTRE
    middle = grid.tiles_for_bbox((lon, lat, lon + 1e-4, lat + 1e-4))[0]
    side = math.ceil(math.sqrt(count))
    rows, cols = grid.tiles_shape
    top, left = max(0, middle.row - side // 2), max(0, middle.col - side // 2)
    square = [grid.get_tile(r, c) for r in range(top, min(rows, top + side))
              for c in range(left, min(cols, left + side))]  # fmt: skip
    return square[:count]


def _build(plan: TilePlan, halo: int, spec: FeatureSpec) -> int:
    """Build a tile's block jobs as the runner does and pickle them; return the bytes."""
    if not isinstance(plan.steps, TimeSteps):
        return 0
    s2, s1 = plan.used_scenes()
    jobs = [BlockJob(plan.steps, s2, s1, plan.tile.grid, w, halo, spec)
            for w in block_windows(plan.tile.grid, plan.tile.window)]  # fmt: skip
    return len(pickle.dumps(jobs, protocol=5))


def _measure(index: SceneIndex, tiles: Sequence[Tile], date: dt.date) -> PlanRow:
    spec, halo = FeatureSpec(), 44
    plan_s = build_s = 0.0
    payload, with_input = 0, 0
    with _peak_rss() as growth:
        plans = iter_plans(index, tiles, date)
        while True:
            started = time.perf_counter()
            plan = next(plans, None)
            plan_s += time.perf_counter() - started
            if plan is None:
                break
            started = time.perf_counter()
            payload += _build(plan, halo, spec)
            build_s += time.perf_counter() - started
            with_input += plan.has_input
    return PlanRow(len(tiles), with_input, plan_s, build_s, growth[0] / 2**20,
                   payload / max(1, with_input) / 1024)  # fmt: skip


def run_plan_bench(
    counts: Sequence[int] = (100, 1000, 10000),
    *,
    date: dt.date = dt.date(2024, 5, 20),
    whole: bool = False,
    bbox: Sequence[float] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the plan-only bench.

    Parameters
    ----------
    counts : sequence of int
        Tile counts to plan and build.
    date : datetime.date
        The date planned (the catalog covers its search window).
    whole : bool
        Also plan every europe tile the catalog's extent touches (no building).
    bbox : sequence of float, optional
        Limit the catalog to a lon/lat bbox (default: EEA39).
    progress : callable, optional
        Receives progress events (lines, :mod:`lamap.runtime.progress`).

    Returns
    -------
    dict
        ``catalog`` (items, seconds to generate and to index), ``rows`` (PlanRow per count)
        and, with ``whole``, ``whole`` (tiles, with input, seconds).
    """
    from lamap.catalog.local import EEA39_BBOX, continental_result

    say = Reporter(progress).info
    grid = get_grid("europe")
    start, end = search_window([date])
    say(f"generating the continental catalog for {start}..{end}")
    started = time.perf_counter()
    extent = tuple(bbox) if bbox is not None else EEA39_BBOX
    result = continental_result(start, end, bbox=extent)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    index = SceneIndex.from_result(result)
    out: dict[str, Any] = {
        "catalog": {"s2": len(result.s2), "s1": len(result.s1), "generate_s": generated,
                    "index_s": time.perf_counter() - started},
        "rows": [],
    }  # fmt: skip
    for count in counts:
        say(f"planning and building {count} tiles")
        out["rows"].append(_measure(index, _square(grid, count), date))
    if whole:
        tiles = grid.tiles_for_bbox(extent)
        say(f"planning all {len(tiles)} europe tiles of the catalog's extent")
        started = time.perf_counter()
        planned = sum(p.has_input for p in iter_plans(index, tiles, date))
        out["whole"] = {"tiles": len(tiles), "with_input": planned,
                        "seconds": time.perf_counter() - started}  # fmt: skip
    return out


def plan_table(out: dict[str, Any]) -> str:
    """Format the plan-only bench as Markdown."""
    cat = out["catalog"]
    lines = [
        f"catalog: {cat['s2']:,} S2 + {cat['s1']:,} S1 items (generated in "
        f"{cat['generate_s']:.1f} s, indexed in {cat['index_s']:.2f} s)",
        "",
        "| tiles | with input | plan s | build s | ms per tile | peak memory growth MiB | "
        "KiB per tile | task payload KiB per tile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r.tiles:,} | {r.with_input:,} | {r.plan_seconds:.1f} | {r.build_seconds:.1f} | "
            f"{r.ms_per_tile:.2f} | {r.peak_growth_mib:.1f} | {r.kib_per_tile:.2f} | "
            f"{r.payload_kib:.1f} |"
        )
    if "whole" in out:
        w = out["whole"]
        lines += ["", f"whole europe grid: {w['tiles']:,} tiles ({w['with_input']:,} with "
                  f"input) planned in {w['seconds']:.0f} s ({1e3 * w['seconds'] / w['tiles']:.2f} "
                  "ms per tile)"]  # fmt: skip
    return "\n".join(lines)


def rows_as_dicts(out: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready form."""
    return {**out, "rows": [{**asdict(r), "ms_per_tile": r.ms_per_tile,
                             "kib_per_tile": r.kib_per_tile} for r in out["rows"]]}  # fmt: skip
