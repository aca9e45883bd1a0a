"""Stream tiles through a Dask cluster: a bounded number in flight, bad tiles recorded.

Tiles are planned, submitted and released one at a time. At most ``limit`` tiles are on
the cluster at once (enough to keep every worker busy); a tile's tasks are submitted only
when a slot frees, and its futures are dropped as soon as its done marker is written, so
the client's memory and the scheduler's task count stay flat in the number of tiles.

Each block of a tile is three tasks (:mod:`lamap.blocks`): ``lamap-inputs`` (read +
warp + features), ``lamap-infer`` (model + combination, tagged ``resources={"GPU": 1}``
for GPU runs) and ``lamap-write``. When the store has a pyramid, one ``lamap-overviews``
task per tile, after its writes, updates the overview pixels above it
(:class:`lamap.store.overviews.PyramidWriter`); the tile's ``lamap-done`` marker depends on
it (or on the writes).
Transient errors are retried by Dask (``retries``); a tile that still fails is recorded
in the store's ledger with its reason (:meth:`lamap.store.LaiStore.mark_failed`), its
shards are reset to "no input", and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lamap.blocks import (
    BlockJob,
    BlockResult,
    block_features,
    block_lai,
    block_windows,
    describe,
    no_input_block,
)
from lamap.errors import TileError
from lamap.features import FeatureSpec
from lamap.grid import Window
from lamap.infer import ModelRef
from lamap.runtime.progress import Reporter
from lamap.store import BlockWriter, LaiStore
from lamap.store.overviews import PyramidWriter
from lamap.tileplan import TilePlan
from lamap.timesteps import TimeSteps

__all__ = ["RunContext", "RunOutcome", "run_tiles", "submit_tile"]

_LOG = logging.getLogger("lamap.runner")

#: Retries of a task that raised (a 5xx after the reader's own back-off, a worker lost).
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class RunContext:
    """What every tile of one run shares.

    Attributes
    ----------
    store : LaiStore
        The output store.
    date : datetime.date
        The date mapped (already on the store's time axis).
    writer : BlockWriter
        Writes the date's blocks (``store.block_writer(date)``).
    ref : ModelRef
        The model.
    halo : int
        Pixels read around each block.
    spec : FeatureSpec
        The model's feature definition.
    model_info : dict
        Recorded in every done marker.
    signer : callable, optional
        Signs hrefs before reading.
    gpu : bool
        Tag inference tasks with ``resources={"GPU": 1}``.
    retries : int
        Dask retries of each task.
    exact_warp : bool
        Read with the exact transformer (see :mod:`lamap.blocks`).
    plan_info : dict
        What the planning depended on (catalog, options), kept with each tile recorded
        without input.
    token : str
        Makes the run's task keys unique on a shared cluster.
    pyramid : PyramidWriter, optional
        Updates the store's overviews above each tile (None: the store has no pyramid).
    """

    store: LaiStore
    date: dt.date
    writer: BlockWriter
    ref: ModelRef
    halo: int
    spec: FeatureSpec
    model_info: dict[str, Any]
    signer: Callable[[str], str] | None = None
    gpu: bool = False
    retries: int = DEFAULT_RETRIES
    exact_warp: bool = False
    plan_info: dict[str, Any] = field(default_factory=dict)
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    pyramid: PyramidWriter | None = None


@dataclass
class RunOutcome:
    """What happened to the streamed tiles."""

    mapped: list[str] = field(default_factory=list)
    no_input: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    tasks: int = 0


# --------------------------------------------------------------------------- the tasks


def _staged(stage: str, window: Window, work: Callable[[], Any]) -> Any:
    """Run a stage; a failure becomes one TileError line naming the stage and the block.

    The TileError is raised outside the ``except`` block on purpose: Dask pickles an
    exception with its chain, and a chain holding a reader's exception that does not
    unpickle would reach the client as a bare ``Exception``. The worker logs the chain.
    """
    try:
        return work()
    except Exception as err:
        _LOG.warning("%s of block %s failed", stage, window, exc_info=True)
        reason = describe(stage, window, err)
    raise TileError(reason)


def _features_task(job: BlockJob) -> Any:
    return _staged("reading inputs", job.window, lambda: block_features(job))


def _infer_task(block: Any, ref: ModelRef, lai_scale: float, window: Window) -> BlockResult:
    return _staged("inference", window, lambda: block_lai(block, ref, lai_scale=lai_scale))


def _write_task(writer: BlockWriter, window: Window, result: BlockResult | None) -> Window:
    done = result if result is not None else no_input_block(window)
    return _staged("writing", window,
                   lambda: writer.write(window, done.lai, done.source, done.lai_sd))


def _overview_task(
    pyramid: PyramidWriter, window: Window, tile_id: str, *written: Window
) -> Window:
    return _staged("overviews", window, lambda: pyramid.update(window, tile_id))


def _done_task(
    store: LaiStore, date: dt.date, tile_id: str, info: dict[str, Any], *written: Window
) -> str:
    store.mark_done(date, tile_id, info)
    return tile_id


def _no_input_task(
    store: LaiStore, date: dt.date, tile_id: str, info: dict[str, Any], *written: Window
) -> str:
    """Record a tile without input (not done: the next run plans it again)."""
    store.mark_no_input(date, tile_id, info["no_input"]["reason"], info["options"])
    return tile_id


# --------------------------------------------------------------------------- submission


def submit_tile(client: Any, plan: TilePlan, ctx: RunContext) -> tuple[Any, list[Any], int]:
    """Submit one tile's tasks.

    Returns
    -------
    tuple
        The future of the tile's done marker, the futures of its block writes, the task count.
    """
    tile, steps = plan.tile, plan.steps
    key = f"{ctx.token}-{ctx.date.isoformat()}-{tile.id}"
    windows = block_windows(tile.grid, tile.window)
    writes = []
    if isinstance(steps, TimeSteps):
        s2, s1 = plan.used_scenes()
        info: dict[str, Any] = {"inputs": steps.to_dict(), "model": ctx.model_info}
        resources = {"GPU": 1} if ctx.gpu else None
        for i, window in enumerate(windows):
            job = BlockJob(steps, s2, s1, tile.grid, window, ctx.halo, ctx.spec, ctx.signer,
                           ctx.exact_warp, ctx.ref.architecture)
            inputs = client.submit(
                _features_task, job, key=f"lamap-inputs-{key}-{i}", retries=ctx.retries
            )
            lai = client.submit(
                _infer_task, inputs, ctx.ref, ctx.spec.lai_scale, window,
                key=f"lamap-infer-{key}-{i}", retries=ctx.retries, resources=resources,
            )
            writes.append(client.submit(
                _write_task, ctx.writer, window, lai, key=f"lamap-write-{key}-{i}",
                retries=ctx.retries,
            ))
    else:
        info = {"no_input": steps.to_dict(), "options": ctx.plan_info}
        writes = [
            client.submit(_write_task, ctx.writer, window, None,
                          key=f"lamap-write-{key}-{i}", retries=ctx.retries)
            for i, window in enumerate(windows)
        ]
    record = _done_task if isinstance(steps, TimeSteps) else _no_input_task
    after = writes
    if ctx.pyramid is not None:
        after = [client.submit(_overview_task, ctx.pyramid, tile.window, tile.id, *writes,
                               key=f"lamap-overviews-{key}", retries=ctx.retries)]  # fmt: skip
    done = client.submit(
        record, ctx.store, ctx.date, tile.id, info, *after, key=f"lamap-done-{key}",
        retries=ctx.retries,
    )
    blocks = (3 if isinstance(steps, TimeSteps) else 1) * len(windows)
    return done, writes, blocks + 1 + (ctx.pyramid is not None)


def run_tiles(
    client: Any,
    plans: Iterator[TilePlan],
    ctx: RunContext,
    *,
    limit: int,
    total: int,
    say: Reporter,
) -> RunOutcome:
    """Stream planned tiles through the cluster, at most ``limit`` at once.

    Parameters
    ----------
    client : distributed.Client
        The cluster.
    plans : iterator of TilePlan
        Planned lazily: the next tile is planned only when a slot is free.
    ctx : RunContext
        The run.
    limit : int
        Tiles in flight.
    total : int
        Tiles to map (for the progress lines).
    say : Reporter
        Gets a ``"blocks"`` step per written block, a ``"tiles"`` step per finished tile
        (``tile … done (k/n)``) and a warning per failed tile.

    Returns
    -------
    RunOutcome
    """
    from distributed import as_completed

    outcome, finished, blocks = RunOutcome(), 0, 0
    running: dict[Any, TilePlan] = {}
    writing: set[Any] = set()
    queue = as_completed()

    def fill() -> None:
        while len(running) < limit:
            plan = next(plans, None)
            if plan is None:
                return
            future, writes, tasks = submit_tile(client, plan, ctx)
            outcome.tasks += tasks
            running[future] = plan
            writing.update(writes)
            queue.update([*writes, future])

    fill()
    while running or writing:
        future = next(queue)
        if future in writing:
            writing.discard(future)
            blocks += 1
            say.step("blocks", blocks)
            continue
        plan = running.pop(future)
        finished += 1
        _settle(future, plan, ctx, outcome, say, (finished, total))
        del future
        fill()
    return outcome


def _settle(
    future: Any,
    plan: TilePlan,
    ctx: RunContext,
    outcome: RunOutcome,
    say: Reporter,
    count: tuple[int, int],
) -> None:
    """Record a finished tile: mapped, without input, or failed (ledger + reset shards)."""
    tile_id = plan.tile.id
    if future.status == "finished":
        if isinstance(plan.steps, TimeSteps):
            outcome.mapped.append(tile_id)
        else:
            outcome.no_input[tile_id] = plan.steps.reason
        say.step("tiles", *count, f"tile {tile_id} done ({count[0]}/{count[1]})")
        return
    reason = _reason(future)
    if ctx.store.is_done(ctx.date, tile_id):  # a concurrent run of the date wrote it whole
        say.warning(f"tile {tile_id} failed here but another run finished it: {reason}")
        say.step("tiles", *count)
        return
    outcome.failed[tile_id] = reason
    ctx.store.mark_failed(ctx.date, tile_id, reason)
    try:  # no half tile: its shards read as "no input" until a rerun maps it
        for window in block_windows(plan.tile.grid, plan.tile.window):
            empty = no_input_block(window)
            ctx.writer.write(window, empty.lai, empty.source, empty.lai_sd)
        if ctx.pyramid is not None:  # and so do the overviews above it
            ctx.pyramid.update(plan.tile.window, tile_id)
    except Exception:  # noqa: BLE001 - the tile is recorded as failed either way
        _LOG.warning("could not reset the shards of failed tile %s", tile_id, exc_info=True)
    say.warning(f"tile {tile_id} failed ({count[0]}/{count[1]}): {reason}")
    say.step("tiles", *count)


def _reason(future: Any) -> str:
    try:
        err = future.exception(timeout=30)
    except Exception as lost:  # noqa: BLE001 - cancelled or lost: the reason is the error
        err = lost
    text = str(err).strip().splitlines()[0] if err is not None and str(err).strip() else ""
    if isinstance(err, TileError):
        return text
    return f"{type(err).__name__}: {text}"[:500]
