"""``map_lai``: the main job, as a short orchestrator over the stages of DESIGN.md.

plan (grid tiles) → catalog (one STAC search) → per tile: cube → features → infer
(map_overlap) → store (region write, then the tile's done marker).

Tiles already done for the date are skipped; tiles are computed a few at a time on the
Dask cluster, so a worker's memory is bounded by the block size, not by the bbox.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from lamap._dates import as_date
from lamap.catalog import CatalogProfile, SearchResult, open_catalog, search
from lamap.cluster import ClusterSpec, dashboard_link, get_client
from lamap.cube import CubeWindow, tile_cubes
from lamap.errors import InputError, LamapWarning
from lamap.features import FeatureSpec, build_features
from lamap.grid import DEFAULT_GRID, BBox, Grid, Tile, get_grid, parse_bbox
from lamap.infer import DEFAULT_BATCH, DEFAULT_WINDOW, ModelRef, predict
from lamap.plan import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_MIN_COVERAGE,
    DEFAULT_S1_TOLERANCE_DAYS,
    NoInput,
    TimeSteps,
    plan_time_steps,
    search_window,
)
from lamap.store import LaiStore, Source

__all__ = ["MapOptions", "MapReport", "SyntheticModelWarning", "map_lai", "tile_arrays"]


class SyntheticModelWarning(LamapWarning):
    """The model was trained on lamap's synthetic world, not on real Sentinel data."""


@dataclass(frozen=True)
class MapOptions:
    """Settings of a map run (keyword-only arguments of :func:`map_lai`).

    Parameters
    ----------
    lookback_days, s1_tolerance_days, min_coverage
        Time-step planning (see :func:`lamap.plan.plan_time_steps`).
    halo : int, optional
        map_overlap depth; default: the model's receptive field rounded up to a multiple
        of its down-sampling factor (44 px for the fused network).
    window, batch : int
        Model window edge and windows per model call.
    device : {"cpu", "cuda", "auto"}
        Where workers run the model; ``cuda`` also tags inference tasks with
        ``resources={"GPU": 1}``.
    tiles_in_flight : int, optional
        Tiles computed at once (default: twice the number of workers).
    """

    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS
    min_coverage: float = DEFAULT_MIN_COVERAGE
    halo: int | None = None
    window: int = DEFAULT_WINDOW
    batch: int = DEFAULT_BATCH
    device: str = "auto"
    tiles_in_flight: int | None = None


@dataclass
class MapReport:
    """What a run did."""

    date: dt.date
    store: str
    tiles: list[str]
    skipped: list[str] = field(default_factory=list)
    mapped: list[str] = field(default_factory=list)
    no_input: dict[str, str] = field(default_factory=dict)
    dashboard: str | None = None
    seconds: float = 0.0


@contextmanager
def _catalog(source: str) -> Iterator[CatalogProfile]:
    """Open a catalog; a local world is served through a STAC API on 127.0.0.1."""
    profile = open_catalog(source)
    if profile.url is not None:
        yield profile
        return
    from lamap.stac_server import StacServer
    from lamap.synthetic.world import load_world

    world = load_world(source)
    with StacServer(world.item_paths, collections=world.collection_paths) as server:
        yield profile.with_url(server.url)


def _search(
    source: str, tiles: Sequence[Tile], date: dt.date, options: MapOptions
) -> tuple[CatalogProfile, SearchResult]:
    bounds = np.array([t.lonlat_bounds().to_tuple() for t in tiles])
    area = (bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())
    start, end = search_window(
        [date], lookback_days=options.lookback_days, s1_tolerance_days=options.s1_tolerance_days
    )
    with _catalog(source) as profile:
        return profile, search(profile, area, start, end)


def _combine(model_lai: xr.DataArray, features: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """Observed LAI where S2 at D is clear, model LAI where there is input, else nothing."""
    has_input = (features["s1_valid"] > 0) | (
        features["masks"].sel(mask_channel="valid").max("step") > 0
    )
    source = xr.where(has_input, np.uint8(Source.FILLED), np.uint8(Source.NO_INPUT))
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
    cubes = tile_cubes(steps, result.s2, result.s1, where, signer=signer)
    features = build_features(cubes, spec)
    model_lai = predict(features, ref, halo=halo, lai_scale=spec.lai_scale, gpu_resource=gpu)
    lai, source = _combine(model_lai, features)
    core = {"y": slice(halo, halo + tile.shape[0]), "x": slice(halo, halo + tile.shape[1])}
    shard = tile.grid.shard
    return (lai.isel(core).data.rechunk(shard), source.isel(core).data.rechunk(shard))


def _model_ref(model: str | os.PathLike[str] | None, catalog: str, options: MapOptions) -> Any:
    from lamap.model import load_checkpoint

    path = _model_path(model, catalog)
    loaded = load_checkpoint(path)
    data = loaded.training.get("data") or {}
    if loaded.training.get("synthetic") or data.get("synthetic"):
        warnings.warn(
            f"the model {path} was trained on lamap's synthetic world: fine for the demo, "
            "not for real Sentinel data; pass --model with weights trained by `lamap train`",
            SyntheticModelWarning,
            stacklevel=3,
        )
    ref = ModelRef(
        path=str(path),
        sha256=loaded.sha256,
        device=options.device,
        window=options.window,
        batch=options.batch,
    )
    return ref, loaded


def _model_path(model: str | os.PathLike[str] | None, catalog: str) -> str:
    if model is not None:
        return os.fspath(model)
    from lamap.weights import demo_weights

    path = demo_weights()
    if path is None:
        raise InputError(
            "no model given and no demo weights are installed; pass --model PATH "
            "(a checkpoint written by `lamap train`)"
        )
    return str(path)


def _plan_tiles(
    tiles: Sequence[Tile], result: SearchResult, date: dt.date, options: MapOptions
) -> dict[str, TimeSteps | NoInput]:
    return {
        t.id: plan_time_steps(
            result.s2,
            result.s1,
            date,
            t.lonlat_bounds().to_tuple(),
            lookback_days=options.lookback_days,
            s1_tolerance_days=options.s1_tolerance_days,
            min_coverage=options.min_coverage,
            tile_id=t.id,
        )
        for t in tiles
    }


def _no_input_arrays(tile: Tile) -> tuple[da.Array, da.Array]:
    shape, shard = tile.shape, tile.grid.shard
    return (
        da.full(shape, np.nan, dtype=np.float32, chunks=shard),
        da.zeros(shape, dtype=np.uint8, chunks=shard),
    )


def map_lai(
    bbox: BBox | str | Sequence[float],
    date: dt.date | str,
    out: str | os.PathLike[str],
    *,
    catalog: str = "planetary-computer",
    model: str | os.PathLike[str] | None = None,
    grid: Grid | None = None,
    cluster: ClusterSpec | None = None,
    options: MapOptions | None = None,
    progress: Callable[[str], None] | None = None,
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
    grid : Grid, optional
        The output grid of a new store (default ``europe``); an existing store keeps its own.
    cluster : ClusterSpec, optional
        Which Dask cluster to use (default: a local cluster of worker processes).
    options : MapOptions, optional
        Planning and inference settings.
    progress : callable, optional
        Receives one line per event (dashboard link, skipped tiles, each finished tile).

    Returns
    -------
    MapReport

    Raises
    ------
    InputError, GridError, CatalogError, CheckpointError
        For user mistakes, with a message that says the fix.
    """
    started = time.perf_counter()
    options, say = options or MapOptions(), progress or (lambda _line: None)
    day, area = as_date(date), parse_bbox(bbox)
    store = _open_store(out, grid)
    tiles = store.grid.tiles_for_bbox(area)
    report = MapReport(day, str(out), [t.id for t in tiles])
    todo = [t for t in tiles if not store.is_done(day, t)]
    report.skipped = [t.id for t in tiles if t not in todo]
    if report.skipped:
        say(f"{len(report.skipped)} of {len(tiles)} tiles already done for {day}: skipped")
    if not todo:
        return report
    ref, loaded = _model_ref(model, catalog, options)
    spec = FeatureSpec.from_dict(loaded.feature_spec)
    halo = options.halo if options.halo is not None else _halo(loaded)
    profile, result = _search(catalog, todo, day, options)
    plans = _plan_tiles(todo, result, day, options)
    store.add_date(day)
    model_info = {"path": ref.path, "sha256": ref.sha256, "lamap_version": loaded.lamap_version}
    with get_client(cluster) as client:
        report.dashboard = dashboard_link(client)
        say(f"dashboard: {report.dashboard}")
        gpu = options.device == "cuda"
        graphs = {}
        for tile in todo:
            plan = plans[tile.id]
            if isinstance(plan, NoInput):
                report.no_input[tile.id] = plan.reason
                arrays = _no_input_arrays(tile)
                info: dict[str, Any] = {"no_input": plan.to_dict(), "model": model_info}
            else:
                arrays = tile_arrays(
                    plan, result, tile, ref, halo=halo, spec=spec, signer=profile.signer, gpu=gpu
                )
                info = {"inputs": plan.to_dict(), "model": model_info}
            graphs[tile.id] = store.write_tile(day, tile, *arrays, info=info, compute=False)
        _run(client, graphs, options, say, report)
    store.record_run(day, model=model_info)
    report.seconds = time.perf_counter() - started
    return report


def _open_store(out: str | os.PathLike[str], grid: Grid | None) -> LaiStore:
    """Open the store at ``out`` (its own grid), or create it with ``grid`` (default europe)."""
    if grid is not None or not _exists(out):
        return LaiStore.open_or_create(out, grid or get_grid(DEFAULT_GRID))
    return LaiStore.open(out)


def _exists(out: str | os.PathLike[str]) -> bool:
    text = os.fspath(out)
    if "://" not in text:
        return os.path.exists(os.path.join(text, "zarr.json"))
    import fsspec

    fs, path = fsspec.core.url_to_fs(text)
    return bool(fs.exists(f"{path.rstrip('/')}/zarr.json"))


def _halo(loaded: Any) -> int:
    from lamap.model import recommended_halo

    return recommended_halo(loaded.config)


def _run(
    client: Any,
    graphs: dict[str, Any],
    options: MapOptions,
    say: Callable[[str], None],
    report: MapReport,
) -> None:
    """Compute the tiles' graphs a few at a time; report each finished tile."""
    from distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = options.tiles_in_flight or 2 * workers
    pending = list(graphs.items())
    running: dict[Any, str] = {}
    queue = as_completed()
    while pending or running:
        while pending and len(running) < limit:
            tile_id, graph = pending.pop(0)
            future = client.compute(graph)
            running[future] = tile_id
            queue.add(future)
        future = next(queue)
        tile_id = running.pop(future)
        future.result()
        report.mapped.append(tile_id)
        say(f"tile {tile_id} done ({len(report.mapped)}/{len(graphs)})")
