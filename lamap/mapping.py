"""``map_lai``: the main job, as a short orchestrator over the stages of DESIGN.md.

plan (grid tiles) → catalog (one STAC search, indexed once) → per tile, streamed: plan
against the scenes that intersect it → per block (a shard): features → infer → write →
the tile's done marker.

Tiles already done for the date are skipped; tiles are planned and submitted lazily, a
few at a time (:mod:`lamap.runner`), so the client's memory, the scheduler's tasks and a
worker's memory are bounded by the tiles in flight and the block size, not by the bbox.
A tile that fails is recorded in the store's ledger and the run goes on.
:func:`plan_map` (``lamap map --dry-run``) plans without reading a pixel.
:func:`tile_arrays` is the previous per-tile ``map_overlap`` graph, kept as the reference
the block engine is tested and benchmarked against.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from lamap._inputs import BBox, as_bbox, as_date
from lamap.blocks import has_input, model_window
from lamap.catalog import CatalogProfile, SearchResult, open_catalog, search
from lamap.cube import CubeWindow, tile_cubes
from lamap.errors import InputError, SyntheticModelWarning
from lamap.features import FeatureSpec, build_features
from lamap.grid import DEFAULT_GRID, Grid, Tile, Window, get_grid, resolve_grid
from lamap.infer import DEFAULT_BATCH, PRECISIONS, ModelRef, observed_sd_of, predict
from lamap.output_stac import write_collection
from lamap.preflight import check_device, check_workers, find_target, with_input
from lamap.runner import DEFAULT_RETRIES, RunContext, run_tiles
from lamap.runtime import ClusterSpec, Progress, Reporter, dashboard_link, get_client
from lamap.runtime.cluster import gpu_resource, runs_locally
from lamap.store import LaiStore, Source
from lamap.store.fs import normalise_url, probe
from lamap.store.overviews import PyramidWriter, pyramid_writer
from lamap.store.pyramid import ensure_pyramid
from lamap.store.schema import STORE_NODES
from lamap.tileplan import PlanOptions, PlanSummary, SceneIndex, iter_plans
from lamap.timesteps import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_MIN_COVERAGE,
    DEFAULT_S1_TOLERANCE_DAYS,
    TimeSteps,
    search_window,
)
from lamap.weights import resolve_model

#: What ``grid=`` accepts: a :class:`Grid`, a preset name or a grid JSON file.
GridLike = Grid | str | os.PathLike[str]

__all__ = [
    "MapOptions",
    "MapReport",
    "GridLike",
    "SyntheticModelWarning",
    "choose_grid",
    "map_lai",
    "plan_map",
    "tile_arrays",
]


@dataclass(frozen=True)
class MapOptions:
    """Settings of a map run (keyword-only arguments of :func:`map_lai`).

    Parameters
    ----------
    lookback_days, s1_tolerance_days, min_coverage
        Time-step planning (see :func:`lamap.timesteps.plan_time_steps`).
    halo : int, optional
        Pixels read around each block for the network's context; default: the model's
        receptive field rounded up to a multiple of its down-sampling factor (44 px for
        the fused network).
    window : int, optional
        Model window edge; default: one window per block (the store's shard).
    batch : int
        Windows per model call.
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where workers run the model. Inference tasks carry ``resources={"GPU": 1}`` for
        ``cuda``/``cuda:N`` (a cluster without a worker advertising ``GPU`` is refused at
        once) and for ``auto`` when a worker advertises it
        (:func:`lamap.runtime.cluster.gpu_resource`).
    tiles_in_flight : int, optional
        Tiles on the cluster at once (default: twice the number of workers).
    retries : int
        Dask retries of a failing task before its tile is recorded as failed.
    exact_warp : bool
        Warp inputs with the exact transformer instead of GDAL's default approximate one
        (see :mod:`lamap.blocks`).
    precision : {"auto", "float32", "bfloat16"}
        Arithmetic of the network; ``auto``: the checkpoint's training precision where the
        worker's device computes it natively (see :func:`lamap.infer.precision_for`).
    """

    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS
    min_coverage: float = DEFAULT_MIN_COVERAGE
    halo: int | None = None
    window: int | None = None
    batch: int = DEFAULT_BATCH
    device: str = "auto"
    tiles_in_flight: int | None = None
    retries: int = DEFAULT_RETRIES
    exact_warp: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        """Refuse out-of-range settings before anything is read or written."""
        if self.precision not in PRECISIONS:
            raise InputError(
                f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}: "
                "use --precision auto, float32 or bfloat16"
            )
        _at_least("lookback_days (--lookback)", self.lookback_days, 2)  # t-2 and t-1
        _at_least("s1_tolerance_days (--s1-tolerance)", self.s1_tolerance_days, 0)
        _at_least("batch", self.batch, 1)
        _at_least("retries", self.retries, 0)
        for name, value in (("window", self.window), ("tiles_in_flight", self.tiles_in_flight)):
            if value is not None:
                _at_least(name, value, 1)
        if not (isinstance(self.min_coverage, int | float) and 0 < self.min_coverage <= 1):
            raise InputError(f"min_coverage must be in (0, 1], got {self.min_coverage!r}")

    def plan_options(self) -> PlanOptions:
        """Return the planner's share of the options."""
        return PlanOptions(self.lookback_days, self.s1_tolerance_days, self.min_coverage)


def _at_least(name: str, value: object, low: int) -> None:
    """Refuse a setting that is not a whole number of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be a whole number of at least {low}, got {value!r}")


@dataclass
class MapReport:
    """What a run did.

    Attributes
    ----------
    date : datetime.date
        The date mapped.
    store : str
        The store.
    tiles : list of str
        Every tile the bbox touches.
    skipped : list of str
        Tiles already done for the date.
    mapped : list of str
        Tiles mapped by this run.
    no_input : dict
        Tile id → why it has no input (recorded in the store's ledger with the options
        used; not done: the next run plans them again).
    failed : dict
        Tile id → the stage, block and error that failed it (recorded in the store's
        ledger; not done: the next run retries it).
    dashboard : str or None
        The Dask dashboard's link.
    seconds : float
        Wall time of the run.
    tile_seconds : float
        Wall time from the first tile's submission to the last tile's end: the run less its
        fixed costs (catalog search, checks, store creation, the cluster's start), which a
        continental run pays once.
    tasks : int
        Tasks submitted.
    """

    date: dt.date
    store: str
    tiles: list[str]
    skipped: list[str] = field(default_factory=list)
    mapped: list[str] = field(default_factory=list)
    no_input: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    dashboard: str | None = None
    seconds: float = 0.0
    tile_seconds: float = 0.0
    tasks: int = 0


def _search(
    source: str, tiles: Sequence[Tile], date: dt.date, options: MapOptions, spec: FeatureSpec
) -> tuple[CatalogProfile, SearchResult]:
    start, end = search_window(
        [date], lookback_days=options.lookback_days, s1_tolerance_days=options.s1_tolerance_days,
        s1_window_days=spec.s1_window_days,
    )
    with open_catalog(source) as profile:
        return profile, search(profile, _envelope(tiles), start, end)


def _envelope(tiles: Sequence[Tile]) -> tuple[float, float, float, float]:
    """Return the tiles' lon/lat envelope, from their lattice extent (not tile by tile)."""
    grid = tiles[0].grid
    rows = [t.row for t in tiles]
    cols = [t.col for t in tiles]
    first = grid.get_tile(min(rows), min(cols)).window
    last = grid.get_tile(max(rows), max(cols)).window
    union = Window(first.row_start, last.row_stop, first.col_start, last.col_stop)
    return grid.bounds_to_lonlat(grid.window_bounds(union)).to_tuple()


def _combine(model_lai: xr.DataArray, features: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """Observed LAI where S2 at D is clear, model LAI where there is input, else nothing."""
    source = xr.where(has_input(features), np.uint8(Source.FILLED), np.uint8(Source.NO_INPUT))
    lai = model_lai.clip(0.0, 8.0)
    if "observed_lai" in features:
        observed = features["observed_lai"]
        clear = np.isfinite(observed)
        source = xr.where(clear, np.uint8(Source.OBSERVED), source)
        lai = xr.where(clear, observed, lai)
    lai = lai.where(source != Source.NO_INPUT).astype(np.float32)
    return lai, source.astype(np.uint8)


def tile_arrays(
    steps: TimeSteps,
    result: SearchResult,
    tile: Tile,
    ref: ModelRef,
    *,
    halo: int,
    spec: FeatureSpec,
    signer: Callable[[str], str] | None = None,
    gpu: bool = False,
) -> tuple[da.Array, da.Array]:
    """Lazy LAI and source of one tile, chunked by the grid's shards.

    Parameters
    ----------
    steps : TimeSteps
        The planner's choice for this tile.
    result : SearchResult
        The run's search result.
    tile : Tile
        The tile.
    ref : ModelRef
        The model.
    halo : int
        map_overlap depth; the cube covers the tile plus this margin.
    spec : FeatureSpec
        The model's feature definition.
    signer : callable, optional
        Signs hrefs.
    gpu : bool
        Tag inference tasks with a GPU resource.

    Returns
    -------
    tuple of dask.array.Array
        ``lai`` (float32, NaN = no estimate) and ``source`` (uint8), the tile's shape.
    """
    where = CubeWindow.for_tile(tile, halo)
    cubes = tile_cubes(steps, result.s2, result.s1, where, signer=signer, bands=spec.s2_bands)
    features = build_features(cubes, spec)
    model_lai = predict(features, ref, halo=halo, lai_scale=spec.lai_scale, gpu_resource=gpu)
    lai, source = _combine(model_lai, features)
    core = {"y": slice(halo, halo + tile.shape[0]), "x": slice(halo, halo + tile.shape[1])}
    shard = tile.grid.shard
    return (lai.isel(core).data.rechunk(shard), source.isel(core).data.rechunk(shard))


def _model_ref(
    model: str | os.PathLike[str] | None, options: MapOptions, grid: Grid
) -> Any:
    from lamap.model import load_checkpoint

    path = resolve_model(model)
    loaded = load_checkpoint(path)
    data = loaded.training.get("data") or {}
    if loaded.training.get("synthetic") or data.get("synthetic"):
        warnings.warn(
            f"the model {path} was trained on lamap's synthetic world: fine for the demo, "
            "not for real Sentinel data; pass --model with weights trained by `lamap train`",
            SyntheticModelWarning,
            stacklevel=3,
        )
    arch = loaded.architecture
    window = model_window(grid, options.window)
    ref = ModelRef(
        path=str(path),
        sha256=loaded.sha256,
        device=options.device,
        window=min(window, arch.max_window) if arch.max_window else window,
        batch=options.batch,
        precision=options.precision,
        architecture=arch.name,
        observed_sd=observed_sd_of(loaded),
    )
    return ref, loaded


def map_lai(
    bbox: BBox | str | Sequence[float],
    date: dt.date | str,
    out: str | os.PathLike[str],
    *,
    catalog: str = "planetary-computer",
    model: str | os.PathLike[str] | None = None,
    grid: GridLike | None = None,
    crs: str | int | None = None,
    resolution: float | None = None,
    cluster: ClusterSpec | None = None,
    options: MapOptions | None = None,
    progress: Progress | None = None,
) -> MapReport:
    """Map LAI over ``bbox`` for ``date`` into the store at ``out``.

    Parameters
    ----------
    bbox : BBox, str or sequence
        ``W,S,E,N`` in degrees.
    date : date or str
        The date D (the store's new or existing time step).
    out : path-like
        The Zarr store (created on first use; later runs must use the same grid).
    catalog : str
        A catalog profile name, a STAC API URL or a demo world directory.
    model : path-like, optional
        A checkpoint from ``lamap train``; default: the demo weights shipped with lamap.
    grid : Grid, str or path-like, optional
        The output grid of a new store: a :class:`Grid`, a preset name (``europe``,
        ``utm32n``) or a grid JSON file (default ``europe``); an existing store keeps its own.
    crs, resolution : optional
        A custom grid over a CRS's area of use, or another pixel size, as ``--crs`` and
        ``--resolution`` of ``lamap map`` (:func:`lamap.grid.resolve_grid`).
    cluster : ClusterSpec, optional
        Which Dask cluster to use when the caller has no ``distributed.Client`` running
        (the caller's client is used first; see :func:`lamap.runtime.get_client`).
    options : MapOptions, optional
        Planning and inference settings.
    progress : callable, optional
        Receives :class:`~lamap.runtime.progress.Event` objects: the dashboard link, skipped
        tiles, a step per finished block (``"blocks"``) and per finished tile (``"tiles"``).

    Returns
    -------
    MapReport

    Raises
    ------
    InputError, GridError, CatalogError, CheckpointError
        For user mistakes, with a message that says the fix.
    """
    started = time.perf_counter()
    options, say = options or MapOptions(), Reporter(progress)
    day, area = as_date(date), as_bbox(bbox)
    target = find_target(out, choose_grid(grid, crs, resolution), get_grid(DEFAULT_GRID))
    tiles = target.grid.tiles_for_bbox(area)
    report = MapReport(day, str(out), [t.id for t in tiles])
    todo = _todo(target.store, day, tiles, report, say)
    if not todo:
        return report
    ref, loaded = _model_ref(model, options, target.grid)
    spec = FeatureSpec.from_dict(loaded.feature_spec)
    halo = options.halo if options.halo is not None else _halo(loaded)
    _check_halo(halo)
    check_device(options.device, local=runs_locally(cluster))
    profile, result = _search(catalog, todo, day, options, spec)
    plan_options = options.plan_options().with_spec(spec)
    plans = iter_plans(SceneIndex.from_result(result), todo, day, plan_options)
    if not report.skipped:  # a date without input anywhere is refused, the store untouched
        plans = with_input(plans, day, len(todo))
    model_info = {"path": ref.path, "sha256": ref.sha256, "lamap_version": loaded.lamap_version,
                  "precision": ref.precision, "architecture": ref.architecture}  # fmt: skip
    with get_client(cluster, device=options.device) as client:
        workers = check_workers(client, options.device)
        gpu = gpu_resource(client, options.device)  # fails fast before the store changes
        store = target.open_or_create()  # the first write: everything above was checked
        report.dashboard = dashboard_link(client)
        say.link(f"dashboard: {report.dashboard}")
        fresh = not store.dates
        with store.writing(day, progress=say.info) as writer:
            ctx = RunContext(
                store, day, writer, ref, halo, spec, model_info,
                signer=profile.signer, gpu=gpu, retries=options.retries,
                exact_warp=options.exact_warp, pyramid=_pyramid(store, day, create=fresh),
                plan_info=_plan_info(catalog, options),
            )  # fmt: skip
            streaming = time.perf_counter()
            outcome = run_tiles(client, plans, ctx, limit=options.tiles_in_flight or 2 * workers,
                                total=len(todo), say=say)  # fmt: skip
            report.tile_seconds = time.perf_counter() - streaming
    report.mapped, report.no_input, report.failed = (
        outcome.mapped, outcome.no_input, outcome.failed
    )
    report.tasks = outcome.tasks
    store.record_run(day, model=model_info)
    write_collection(store)  # the STAC Collection beside the store, with this run's extent
    report.seconds = time.perf_counter() - started
    return report


def _plan_info(catalog: str, options: MapOptions) -> dict[str, Any]:
    """Return what the planning depended on (kept with each tile recorded without input)."""
    return {"catalog": catalog, "lookback_days": options.lookback_days,
            "s1_tolerance_days": options.s1_tolerance_days,
            "min_coverage": options.min_coverage}  # fmt: skip


def plan_map(
    bbox: BBox | str | Sequence[float],
    date: dt.date | str,
    out: str | os.PathLike[str] | None = None,
    *,
    catalog: str = "planetary-computer",
    grid: GridLike | None = None,
    crs: str | int | None = None,
    resolution: float | None = None,
    options: MapOptions | None = None,
    progress: Progress | None = None,
    model: str | os.PathLike[str] | None = None,
) -> PlanSummary:
    """Plan a map run without reading a pixel or changing anything (``--dry-run``).

    Parameters
    ----------
    bbox, date, catalog, grid, options
        As for :func:`map_lai`.
    out : path-like, optional
        An existing store: its grid is used and its done tiles are left out. A store that
        does not exist is not created.
    progress : callable, optional
        Receives a ``"tiles"`` step event every 1,000 tiles planned.
    model : path-like, optional
        The checkpoint whose inputs to plan (its Sentinel-1 steps or series); default: the
        fused model's.

    Returns
    -------
    PlanSummary
    """
    options, say = options or MapOptions(), Reporter(progress)
    day, area = as_date(date), as_bbox(bbox)
    store = LaiStore.open(out) if out is not None and _exists(out) else None
    chosen = choose_grid(grid, crs, resolution)
    the_grid = store.grid if store is not None else chosen or get_grid(DEFAULT_GRID)
    tiles = the_grid.tiles_for_bbox(area)
    done = _done(store, day) if store is not None else set()
    todo = [t for t in tiles if t.id not in done]
    summary = PlanSummary(day, done=len(tiles) - len(todo))
    if not todo:
        return summary
    spec = _model_spec(model)
    _profile, result = _search(catalog, todo, day, options, spec)
    started = time.perf_counter()
    index = SceneIndex.from_result(result)
    plan_options = options.plan_options().with_spec(spec)
    for count, plan in enumerate(iter_plans(index, todo, day, plan_options), 1):
        summary.add(plan)
        if count % 1000 == 0:
            say.step("tiles", count, len(todo), f"planned {count}/{len(todo)} tiles")
    summary.scenes, summary.seconds = len(index), time.perf_counter() - started
    return summary


def choose_grid(
    grid: GridLike | None, crs: str | int | None = None, resolution: float | None = None
) -> Grid | None:
    """Return the grid a user asked for (``None``: the default, or an existing store's).

    Parameters
    ----------
    grid : Grid, str or path-like, optional
        A grid, a preset name or a grid JSON file.
    crs, resolution : optional
        As ``--crs`` and ``--resolution`` of ``lamap map``.

    Returns
    -------
    Grid or None
    """
    if isinstance(grid, Grid):
        if crs is not None or resolution is not None:
            raise InputError("give a Grid or crs/resolution, not both: a Grid fixes both")
        return grid
    if grid is None and crs is None and resolution is None:
        return None
    name = None if grid is None else os.fspath(grid)
    return resolve_grid(grid=name, crs=crs, resolution=resolution)


def _todo(
    store: LaiStore | None, day: dt.date, tiles: list[Tile], report: MapReport, say: Reporter
) -> list[Tile]:
    """Return the tiles not done for the date (one listing of the markers, not one per tile)."""
    if store is None:
        return list(tiles)
    done = _done(store, day)
    todo = [t for t in tiles if t.id not in done]
    report.skipped = [t.id for t in tiles if t.id in done]
    if report.skipped:
        say.info(f"{len(report.skipped)} of {len(tiles)} tiles already done for {day}: skipped")
    if not todo or day not in store.dates:
        return todo
    failed, empty = store.failed_tiles(day), store.no_input_tiles(day)
    retry = sum(t.id in failed for t in todo)
    if retry:
        say.info(f"{retry} tiles failed before for {day}: mapping them again")
    again = sum(t.id in empty for t in todo)
    if again:
        say.info(f"{again} tiles had no input before for {day}: planning them again")
    return todo


def _done(store: LaiStore, day: dt.date) -> set[str]:
    """Return the tiles done for the date (one listing of its markers; none for a new date)."""
    return set(store.done_tiles(day)) if day in store.dates else set()


def _pyramid(store: LaiStore, day: dt.date, *, create: bool) -> PyramidWriter | None:
    """Return the writer of the store's overviews, creating them for a new store.

    A store that has dates but no pyramid keeps none (its earlier tiles have no
    overviews): ``lamap overviews STORE`` builds it, and later runs keep it up to date.
    """
    if not ensure_pyramid(store, create=create):
        return None
    return pyramid_writer(store, day)


def _check_halo(halo: int) -> None:
    if halo < 0 or halo % 4:
        raise InputError(f"the halo must be a non-negative multiple of 4 pixels, got {halo}")


def _exists(out: str | os.PathLike[str]) -> bool:
    """Whether a complete lamap store is at ``out`` (a half-created one does not count)."""
    return probe(normalise_url(out), {}, STORE_NODES) == "complete"


def _model_spec(model: str | os.PathLike[str] | None) -> FeatureSpec:
    if model is None:
        return FeatureSpec()
    from lamap.model import load_checkpoint

    return FeatureSpec.from_dict(load_checkpoint(resolve_model(model)).feature_spec)


def _halo(loaded: Any) -> int:
    from lamap.model import recommended_halo

    return recommended_halo(loaded)
