"""``lamap bench``: model-only versus end-to-end throughput, halo overhead, worker memory.

Everything is measured in one run on one machine, so the ratios mean something:

- **model-only**: the fused model on prepared tensors, with the same block size, halo,
  window, device and channels-last layout as the map, in this process (px/s of output);
- **layout speed-up**: model-only throughput with channels-last weights and inputs over the
  same with the default contiguous weights (the layout before lamap 0.1 switched);
- **end-to-end**: ``lamap map`` over a demo world through the local STAC API and a
  ``LocalCluster`` (px/s of mapped tile area, search and planning included);
- **halo factor**: pixels the model computes per output pixel, ``((b + 2h) / b)²`` for
  blocks of ``b`` px and a halo ``h`` (window padding included);
- **peak worker memory**: the largest resident memory of any worker, polled while the map
  runs, at 1× and 4× the area (it must not grow with the bbox).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lamap.cluster import ClusterSpec
from lamap.features import FeatureSpec
from lamap.grid import Grid
from lamap.infer import DEFAULT_BATCH, DEFAULT_WINDOW, predict_array, set_layout
from lamap.mapping import MapOptions, map_lai
from lamap.model import load_checkpoint, recommended_halo, save_checkpoint, seeded_model
from lamap.synthetic.world import World, WorldSpec, generate_world, load_world

__all__ = ["BenchRow", "model_throughput", "run_bench"]


@dataclass(frozen=True)
class BenchRow:
    """One line of the bench table."""

    block: int
    halo: int
    area_px: int
    model_px_s: float
    end_to_end_px_s: float
    halo_factor: float
    peak_worker_mib: float
    seconds: float
    model_contiguous_px_s: float = float("nan")

    @property
    def ratio(self) -> float:
        """End-to-end throughput as a fraction of model-only throughput."""
        return self.end_to_end_px_s / self.model_px_s

    @property
    def layout_speedup(self) -> float:
        """Model-only throughput, channels-last over contiguous weights."""
        return self.model_px_s / self.model_contiguous_px_s


def halo_factor(block: int, halo: int, window: int = DEFAULT_WINDOW) -> float:
    """Model pixels computed per output pixel for ``block``-px blocks (window padding too)."""
    size = min(block, window)
    padded = -(-block // size) * size
    per_window = (size + 2 * halo) ** 2 / size**2
    return per_window * padded**2 / block**2


def model_throughput(
    checkpoint: str,
    block: int,
    halo: int,
    *,
    device: str = "cpu",
    window: int = DEFAULT_WINDOW,
    batch: int = DEFAULT_BATCH,
    repeats: int = 2,
    channels_last: bool = True,
) -> float:
    """Output px/s of the model alone on random prepared blocks (same path as a map).

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
    predict_array(inputs, season, halo, model, window=window, batch=batch)  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        predict_array(inputs, season, halo, model, window=window, batch=batch)
    return repeats * block * block / (time.perf_counter() - started)


@contextmanager
def _memory_poll(client: Any, every: float = 0.5) -> Iterator[list[float]]:
    """Poll the workers' resident memory (bytes) in a thread; yields the running peaks."""
    peaks: list[float] = [0.0]
    stop = threading.Event()

    def rss() -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    def loop() -> None:
        while not stop.is_set():
            try:
                peaks[0] = max(peaks[0], *client.run(rss).values())
            except Exception:  # noqa: BLE001 - polling must never kill the bench
                pass
            stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def _bench_world(world: str | None, work: Path, size: int, say: Callable[[str], None]) -> World:
    if world is not None:
        return load_world(world)
    say(f"generating a {size}x{size} bench world")
    return generate_world(work / "world", WorldSpec(seed=5, size=size, days=30))


def _bboxes(grid: Grid, world: World) -> dict[int, tuple[float, ...]]:
    """Return a 1-tile and a 2×2-tile bbox (10 % inside their tiles) at the world's centre."""
    xmin, ymin, xmax, ymax = world.meta["truth_grid"]["bounds"]
    first = grid.tiles_for_window(
        grid.window_for_bounds(
            ((xmin + xmax) / 2 - 1, (ymin + ymax) / 2 - 1, (xmin + xmax) / 2, (ymin + ymax) / 2)
        )
    )[0]
    boxes: dict[int, tuple[float, ...]] = {}
    for count, span in ((1, 1), (4, 2)):
        x0, _, _, y1 = first.bounds
        x1 = x0 + span * grid.tile * grid.resolution
        y0 = y1 - span * grid.tile * grid.resolution
        pad = 0.1 * grid.tile * grid.resolution
        boxes[count] = grid.bounds_to_lonlat((x0 + pad, y0 + pad, x1 - pad, y1 - pad)).to_tuple()
    return boxes


def run_bench(
    *,
    world: str | None = None,
    checkpoint: str | None = None,
    blocks: tuple[int, ...] = (256, 512),
    workers: int = 2,
    device: str = "cpu",
    size: int = 1280,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Run the bench and return its table (see the module docstring).

    Parameters
    ----------
    world : str, optional
        A demo world directory (default: generate a ``size``² one in a temporary folder).
    checkpoint : str, optional
        Model weights (default: a seeded untrained full-size model; speed is the same).
    blocks : tuple of int
        Block (grid chunk) sizes to compare, multiples of 4.
    workers : int
        Local worker processes.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    size : int
        Edge of the generated world in pixels.
    progress : callable, optional
        Receives progress lines.

    Returns
    -------
    list of BenchRow
    """
    say = progress or (lambda _line: None)
    with tempfile.TemporaryDirectory(prefix="lamap-bench-") as tmp:
        work = Path(tmp)
        the_world = _bench_world(world, work, size, say)
        path = checkpoint or str(
            save_checkpoint(
                work / "model.pt", seeded_model(0), feature_spec=FeatureSpec().to_dict()
            )
        )
        halo = recommended_halo(load_checkpoint(path).config)
        date = the_world.s2_dates[3] + dt.timedelta(days=1)
        rows = []
        from distributed import LocalCluster

        with LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster:
            spec = ClusterSpec(scheduler=cluster.scheduler_address)
            for block in blocks:
                say(f"block {block}: model only, channels-last and contiguous weights")
                model_px_s = model_throughput(path, block, halo, device=device)
                contiguous_px_s = model_throughput(path, block, halo, device=device,
                                                   channels_last=False)
                grid = Grid.from_bbox(
                    the_world.bbox, crs="EPSG:3035", chunk=block, shard=block, tile=block
                )
                for count, bbox in _bboxes(grid, the_world).items():
                    say(f"block {block}: end to end, {count} tile(s)")
                    row = _end_to_end(
                        the_world,
                        grid,
                        bbox,
                        date,
                        path,
                        spec,
                        work,
                        block,
                        halo,
                        model_px_s,
                        device,
                    )
                    rows.append(replace(row, model_contiguous_px_s=contiguous_px_s))
        return rows


def _end_to_end(
    world: World,
    grid: Grid,
    bbox: tuple[float, ...],
    date: dt.date,
    path: str,
    spec: ClusterSpec,
    work: Path,
    block: int,
    halo: int,
    model_px_s: float,
    device: str,
) -> BenchRow:
    from distributed import Client

    out = work / f"bench-{block}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    with Client(spec.scheduler) as client:
        client.restart()
        with _memory_poll(client) as peaks:
            started = time.perf_counter()
            report = map_lai(
                bbox,
                date,
                out,
                catalog=str(world.root),
                model=path,
                grid=grid,
                cluster=spec,
                options=MapOptions(device=device),
            )
            seconds = time.perf_counter() - started
    area = sum(grid.tile_from_id(t).shape[0] * grid.tile_from_id(t).shape[1] for t in report.tiles)
    return BenchRow(
        block,
        halo,
        area,
        model_px_s,
        area / seconds,
        halo_factor(block, halo),
        peaks[0] / 2**20,
        seconds,
    )


def table(rows: list[BenchRow]) -> str:
    """Format the bench rows as a Markdown table."""
    head = (
        "| block px | halo px | area px | model-only px/s | end-to-end px/s | ratio | "
        "halo factor | peak worker MiB | channels-last speed-up |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r.block} | {r.halo} | {r.area_px} | {r.model_px_s:,.0f} | "
            f"{r.end_to_end_px_s:,.0f} | {r.ratio:.2f} | {r.halo_factor:.2f} | "
            f"{r.peak_worker_mib:,.0f} | {r.layout_speedup:.2f}× |"
        )
    return "\n".join(lines)


def rows_as_dicts(rows: list[BenchRow]) -> list[dict[str, Any]]:
    """JSON-ready rows."""
    return [{**asdict(r), "ratio": r.ratio, "layout_speedup": r.layout_speedup} for r in rows]
