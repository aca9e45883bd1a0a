"""``lamap bench``: where the time of a map goes, every figure from one run on one machine.

On a demo world mapped on a grid of ``block``-px shards (the europe grid's 1000 px by
default), through a ``LocalCluster`` of ``workers`` single-threaded worker processes:

- **model-only**: the ``lamap-infer`` tasks of the map's own blocks and windows, on the
  cluster, their inputs already computed and held by the workers: output pixels over their
  compute seconds summed over workers / workers (the throughput of a cluster that would
  only run the model, whatever the task placement);
- **inputs-only**: the ``lamap-inputs`` tasks alone (read + warp + mosaic + features), with
  the default approximate warp and with the exact one, measured the same way;
- **end-to-end**: :func:`lamap.mapping.map_lai` over the same tiles into a new store
  (search through the local STAC API, planning, writes and done markers included);
- **naive peer**: :func:`lamap.peer.naive_map`, a plain loop over 512-px windows with
  rasterio ``WarpedVRT`` reads and the same features and network, one process, no dask,
  on the same COGs and tiles;
- **tasks per output megapixel** of the block engine and of the previous per-tile
  ``map_overlap`` graph (:func:`lamap.mapping.tile_arrays`) on the europe grid's chunks;
- **halo factor** (model pixels per output pixel), **peak worker and client memory**.

Speed claims are the ratios; absolute px/s only describe this machine.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lamap._peaks import peaks
from lamap.blocks import halo_factor
from lamap.catalog.local import World, WorldSpec, generate_world, load_world
from lamap.features import FeatureSpec
from lamap.grid import Grid, Tile
from lamap.infer import DEFAULT_BATCH, predict_array, set_layout
from lamap.model import load_checkpoint, recommended_halo
from lamap.runtime import ClusterSpec
from lamap.runtime.allocator import worker_settings
from lamap.runtime.progress import Progress, Reporter

__all__ = ["BenchReport", "model_throughput", "run_bench", "table"]


@dataclass(frozen=True)
class BenchReport:
    """The bench's figures (px/s are output pixels per second of wall time)."""

    block: int
    halo: int
    tiles: int
    area_px: int
    workers: int
    device: str
    model_px_s: float
    inputs_px_s: float
    inputs_exact_px_s: float
    end_to_end_px_s: float
    tiles_px_s: float
    peer_px_s: float
    tasks_per_mpx: float
    tasks_per_mpx_before: float
    halo_factor: float
    halo_factor_before: float
    peak_worker_mib: float
    peak_client_mib: float
    layout_speedup: float
    peer_agreement: float
    precision: str = "float32"
    bf16_speedup: float = float("nan")
    bf16_mean_diff: float = float("nan")
    bf16_max_diff: float = float("nan")

    @property
    def ratio(self) -> float:
        """End-to-end throughput as a fraction of model-only throughput."""
        return self.end_to_end_px_s / self.model_px_s

    @property
    def tiles_ratio(self) -> float:
        """The same, from the first tile's submission to the last tile's end (no fixed costs)."""
        return self.tiles_px_s / self.model_px_s

    @property
    def stage_share(self) -> float:
        """Share of end-to-end time the stages alone take (inputs + model); 1 = no overhead."""
        return (1 / self.model_px_s + 1 / self.inputs_px_s) * self.end_to_end_px_s

    @property
    def ceiling(self) -> float:
        """The best end-to-end / model-only ratio with these stages: model / (model + inputs)."""
        return (1 / self.model_px_s) / (1 / self.model_px_s + 1 / self.inputs_px_s)

    @property
    def peer_speedup(self) -> float:
        """End-to-end throughput over the naive peer's."""
        return self.end_to_end_px_s / self.peer_px_s

    @property
    def task_cut(self) -> float:
        """Tasks per megapixel before over after."""
        return self.tasks_per_mpx_before / self.tasks_per_mpx


def model_throughput(
    checkpoint: str,
    block: int,
    halo: int,
    *,
    device: str = "cpu",
    window: int | None = None,
    batch: int = DEFAULT_BATCH,
    repeats: int = 2,
    channels_last: bool = True,
) -> float:
    """Output px/s of the model alone in this process, one thread, on a random block.

    ``channels_last=False`` keeps the weights in the default layout (the baseline of the
    layout speed-up).
    """
    import torch

    torch.set_num_threads(1)
    model = set_layout(load_checkpoint(checkpoint, map_location=device),
                       channels_last=channels_last)
    rng = np.random.default_rng(0)
    inputs = rng.random((20, block + 2 * halo, block + 2 * halo), dtype=np.float32)
    season = np.array([0.5, -0.8], dtype=np.float32)
    edge = window or block
    predict_array(inputs, season, halo, model, window=edge, batch=batch)  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        predict_array(inputs, season, halo, model, window=edge, batch=batch)
    return repeats * block * block / (time.perf_counter() - started)


def _memory_poll(client: Any) -> Any:
    """Poll the workers' and this process's resident memory: [worker, client] peaks.

    The workers are read from this process through their PIDs (``/proc``), not with
    ``client.run``: a poll must not interrupt the tasks it measures.
    """
    import os

    import psutil

    workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    me = psutil.Process()
    return peaks([lambda: max(w.memory_info().rss for w in workers),
                  lambda: me.memory_info().rss])  # fmt: skip


#: Where the generated bench world lies: inside one MGRS tile of one UTM zone (32U), like
#: most blocks of a continent, which read one Sentinel-2 scene per day. The demo world's
#: default centre (6°E) sits on a zone boundary, where every block reads two scenes a day
#: (``--world`` of ``lamap demo`` measures that worst case).
BENCH_CENTRE = (9.3, 48.7)


def _bench_world(world: str | None, work: Path, size: int, say: Callable[[str], None]) -> World:
    if world is not None:
        return load_world(world)
    say(f"generating a {size}x{size} bench world at {BENCH_CENTRE}")
    return generate_world(work / "world", WorldSpec(seed=5, size=size, days=30,
                                                    center=BENCH_CENTRE))


def _world_grid(world: World, block: int, inset: int = 0) -> Grid:
    """Return a grid on the world's own pixels (its truth grid), ``block``-px blocks.

    Its tiles start ``inset`` pixels in from the world's corner (a multiple of 4), so that
    whole tiles, and their halos when the inset covers them, lie wholly inside the data.
    """
    truth = world.meta["truth_grid"]
    xmin, _, _, ymax = truth["bounds"]
    res = float(truth["resolution"])
    rows, cols = (int(n) - inset for n in truth["shape"])
    return Grid(name="bench", crs=truth["crs"], resolution=res,
                origin=(xmin + inset * res, ymax - inset * res), shape=(rows, cols),
                chunk=block, shard=block, tile=block)  # fmt: skip


def _inset(world: World, block: int, tiles: int, halo: int) -> int:
    """Return how far in to start the bench tiles: past the halo where the world has room.

    On a continent nearly every block lies inside its scenes' data, halo included; a block
    whose halo reaches past the world's edge reads nodata there, which a real run meets only
    at coasts and swath edges. So the bench starts its tiles one halo and
    :data:`INSIDE_MARGIN` pixels in (rounded up to 4 pixels), so that blocks with their halos
    lie inside the scenes' footprints as on a continent, when the world holds them; at the
    corner otherwise.
    """
    inset, side = -(-(halo + INSIDE_MARGIN) // 4) * 4, math.ceil(math.sqrt(tiles))
    shape = world.meta["truth_grid"]["shape"]
    return inset if inset + side * block + halo <= min(shape) else 0


#: Pixels between a bench block's halo and the world's edge (its scenes' footprints).
INSIDE_MARGIN = 32


def _tiles(grid: Grid, count: int) -> list[Tile]:
    """Return a rectangle of ``count`` whole tiles from the grid's corner (row-major)."""
    rows, cols = (grid.shape[0] // grid.tile, grid.shape[1] // grid.tile)
    wide = min(cols, count)
    if rows * cols < count or count % wide:
        raise ValueError(
            f"the bench world holds {rows}×{cols} whole {grid.tile}-px tiles, {count} asked: "
            "generate a larger one (--size) or ask for fewer tiles (--tiles)"
        )
    return [grid.get_tile(r, c) for r in range(count // wide) for c in range(wide)]


def _bbox(grid: Grid, tiles: list[Tile]) -> tuple[float, ...]:
    """Return a lon/lat bbox touching only these tiles (their union less a quarter tile)."""
    first, last = tiles[0].bounds, tiles[-1].bounds
    pad = 0.25 * grid.tile * grid.resolution
    union = (first[0] + pad, last[1] + pad, last[2] - pad, first[3] - pad)
    return grid.bounds_to_lonlat(union).to_tuple()


def run_bench(
    *,
    world: str | None = None,
    checkpoint: str | None = None,
    block: int = 1000,
    tiles: int = 2,
    workers: int = 2,
    device: str = "cpu",
    size: int = 2176,
    peer: bool = True,
    precision: str = "auto",
    progress: Progress | None = None,
) -> BenchReport:
    """Run the bench (see the module docstring).

    Parameters
    ----------
    world : str, optional
        A demo world directory (default: generate a ``size``² one in a temporary folder).
    checkpoint : str, optional
        Model weights (default: the demo weights).
    block : int
        Shard (block) and tile edge of the bench grid, a multiple of 4 (europe: 1000).
    tiles : int
        Tiles (blocks) mapped; at least ``workers`` keeps every worker busy.
    workers : int
        Local worker processes, one thread each.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    size : int
        Edge of the generated world in pixels.
    peer : bool
        Also run the naive peer.
    precision : {"auto", "float32", "bfloat16"}
        The network's arithmetic in the model-only and end-to-end rows (the peer runs
        float32, as a user would); both are also compared in-process on one block.
    progress : callable, optional
        Receives progress events (lines, :mod:`lamap.runtime.progress`).

    Returns
    -------
    BenchReport
    """
    from lamap.bench_steps import (
        BenchSetup,
        compare_precisions,
        map_once,
        old_tasks,
        peer_run,
        stage_rates,
    )

    say = Reporter(progress).info
    with tempfile.TemporaryDirectory(prefix="lamap-bench-") as tmp:
        work = Path(tmp)
        the_world = _bench_world(world, work, size, say)
        path = checkpoint or _demo_checkpoint()
        loaded = load_checkpoint(path)
        halo, spec = recommended_halo(loaded), FeatureSpec.from_dict(loaded.feature_spec)
        grid = _world_grid(the_world, block, _inset(the_world, block, tiles, halo))
        chosen = _tiles(grid, tiles)
        date = the_world.s2_dates[3] + dt.timedelta(days=1)
        setup = BenchSetup(the_world, grid, chosen, date, path, halo, spec, device, precision)
        area = sum(t.shape[0] * t.shape[1] for t in chosen)
        from distributed import Client, LocalCluster

        with worker_settings():
            local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                 silence_logs=logging.ERROR)  # fmt: skip
        with local as cluster, Client(cluster) as client:
            say("inputs-only (approximate and exact warp) and model-only, on the cluster")
            rates = stage_rates(client, setup)
            say("end to end: lamap map")
            address = ClusterSpec(scheduler=cluster.scheduler_address)
            with _memory_poll(client) as memory:
                seconds, streaming, tasks = map_once(setup, _bbox(grid, chosen),
                                                     work / "bench.zarr", address)
        say("tasks of the previous map_overlap graph")
        before = old_tasks(setup, work / "old.zarr")
        peer_px_s, agreement = float("nan"), float("nan")
        if peer:
            say("naive peer: WarpedVRT reads of 512-px windows, one process")
            peer_px_s, agreement = peer_run(setup, work / "bench.zarr")
        say("model-only in this process, channels-last and contiguous weights")
        layout = model_throughput(path, block, halo, device=device) / model_throughput(
            path, block, halo, device=device, channels_last=False
        )
        say("model-only in this process, float32 and bfloat16, one real block")
        precisions = compare_precisions(setup)
    return BenchReport(
        block=block, halo=halo, tiles=len(chosen), area_px=area, workers=workers, device=device,
        model_px_s=area / rates["infer"], inputs_px_s=area / rates["inputs"],
        inputs_exact_px_s=area / rates["inputs_exact"], end_to_end_px_s=area / seconds,
        tiles_px_s=area / streaming,
        peer_px_s=peer_px_s, tasks_per_mpx=tasks / (area / 1e6),
        tasks_per_mpx_before=before / (area / 1e6),
        halo_factor=halo_factor((block, block), halo, block),
        halo_factor_before=_old_halo_factor(halo),
        peak_worker_mib=memory[0] / 2**20, peak_client_mib=memory[1] / 2**20,
        layout_speedup=layout, peer_agreement=agreement, precision=precisions["auto"],
        bf16_speedup=precisions["bf16_speedup"], bf16_mean_diff=precisions["bf16_mean_diff"],
        bf16_max_diff=precisions["bf16_max_diff"],
    )  # fmt: skip


def _old_halo_factor(halo: int) -> float:
    """Model px per output px of the previous path on a europe tile (2000 px, 500-px chunks).

    Each tile's halo ring was merged into its edge chunks (544 px), inner chunks were 500 px;
    every chunk was cut into 256-px windows with their own halos.
    """
    edges = [544, 500, 500, 544]
    computed = sum(halo_factor((r, c), halo, 256) * r * c for r in edges for c in edges)
    return computed / sum(r * c for r in edges for c in edges)


def _demo_checkpoint() -> str:
    from lamap.weights import demo_weights

    path = demo_weights()
    if path is None:
        raise FileNotFoundError("no demo weights installed: pass --model")
    return str(path)


def table(report: BenchReport) -> str:
    """Format the report as Markdown: one row per measurement, ratios to model-only."""
    r = report
    rows = [
        ("model-only (lamap-infer tasks)", r.model_px_s),
        ("inputs-only, approximate warp (lamap-inputs tasks)", r.inputs_px_s),
        ("inputs-only, exact warp", r.inputs_exact_px_s),
        ("end-to-end (the whole lamap map call)", r.end_to_end_px_s),
        ("end-to-end, tiles streaming (less the call's fixed costs)", r.tiles_px_s),
        ("naive peer (WarpedVRT loop, no dask)", r.peer_px_s),
    ]
    lines = [
        f"{r.tiles} tiles of {r.block}² px ({r.area_px / 1e6:.1f} Mpx), halo {r.halo} px, "
        f"{r.workers} workers × 1 thread, device {r.device}, network in {r.precision} "
        "(the peer in float32)",
        "",
        "| measurement | px/s | / model-only |",
        "|---|---|---|",
        *(f"| {name} | {value:,.0f} | {value / r.model_px_s:.2f} |" for name, value in rows),
        "",
        f"- end-to-end / model-only: **{r.ratio:.2f}** (whole call), **{r.tiles_ratio:.2f}** "
        "(tiles streaming: what a long run approaches); end-to-end / naive peer: "
        f"**{r.peer_speedup:.2f}×** (peer agrees on {100 * r.peer_agreement:.2f} % of pixels "
        "to 0.05 m²/m²)",
        f"- the stages alone (inputs + model) take {100 * r.stage_share:.0f} % of the "
        f"end-to-end time; with these stages the ratio cannot pass {r.ceiling:.2f} "
        "(model / (model + inputs))",
        f"- tasks per output Mpx: {r.tasks_per_mpx:,.1f} (before: {r.tasks_per_mpx_before:,.0f}; "
        f"{r.task_cut:,.0f}× fewer)",
        f"- model px per output px: {r.halo_factor:.2f} (before, on a europe tile: "
        f"{r.halo_factor_before:.2f})",
        f"- exact warp costs {r.inputs_px_s / r.inputs_exact_px_s:.2f}× the inputs time of the "
        "approximate one",
        f"- peak worker memory {r.peak_worker_mib:,.0f} MiB, peak memory of the client process "
        f"(the bench itself) {r.peak_client_mib:,.0f} MiB",
        f"- channels-last over contiguous weights (model only, 1 thread): "
        f"{r.layout_speedup:.2f}×",
        f"- bfloat16 over float32 (model only, 1 thread, one real block): "
        f"{r.bf16_speedup:.2f}×; LAI {r.bf16_mean_diff:.3f} m²/m² apart on average, "
        f"{r.bf16_max_diff:.3f} at most",
    ]
    return "\n".join(lines)


def report_as_dict(report: BenchReport) -> dict[str, Any]:
    """JSON-ready report, ratios included."""
    return {**asdict(report), "ratio": report.ratio, "tiles_ratio": report.tiles_ratio,
            "peer_speedup": report.peer_speedup,
            "task_cut": report.task_cut, "stage_share": report.stage_share,
            "ceiling": report.ceiling}  # fmt: skip
