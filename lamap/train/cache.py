"""The training cache: patches cut from the mapping cubes, materialised once into Zarr.

``build_cache(catalog, bbox, start, end, out_dir)`` searches the catalog once, finds the
sample dates (:func:`lamap.train.sample.find_samples`), builds for each date ONE lazy
feature cube over the whole training window (:func:`lamap.cube.tile_cubes` and
:func:`lamap.features.build_features`, the code ``lamap map`` runs) with dask chunks of
``P × P`` pixels, and writes each chunk that passes the filters as one row of
``<out_dir>/patches.zarr``. ``open_cache(out_dir)`` opens it for the trainer.

The store's format (arrays, attributes, reading) is in :mod:`lamap.train.patches`, the demo
world's ``truth_*`` arrays in :mod:`lamap.train.truth`; their public names are importable
from here too.

Choices
-------
* **Written by the driver, computed by the workers.** Each date's patches are computed in
  batches of at most :data:`BATCH_BYTES` of results (a ``distributed`` client if given, else
  the threaded scheduler; two batches in flight on a cluster), filtered in the driver and
  appended as rows. One writer means no two tasks ever share a chunk or a shard, rows stay
  dense (no holes where patches were dropped) and deterministic, and the driver holds at
  most two batches. Batches are large on purpose (usually a whole date): every ``compute``
  call re-opens all input COGs, because stackstac builds its readers inside the graph;
  measured on the 512² world with 64-pixel patches, one date took 11 s in one call, 24 s in
  four and 81 s in sixteen.
* **Resumable.** After each date the group's ``progress`` attribute records the dates done
  and the row count; ``complete`` is written last. A run that finds the same ``key`` and no
  ``complete`` truncates the rows of an unfinished date and goes on; the same key with
  ``complete`` reuses the cache without searching the catalog. A different key in the same
  directory is refused (pass ``overwrite=True`` or choose another directory): the cache
  directory always holds exactly what its attributes describe.
* **Filters.** A patch is dropped when its ``valid_fraction`` is below
  ``min_patch_valid`` (or 0), or when it has no input at all (no S1 and no valid past S2:
  outside every footprint).
* **The cloud-free label** ``truth_clear`` of a demo world: see :mod:`lamap.train.truth`.
* **cloudy_threshold** only selects the ``cloudy`` / ``non-cloudy`` test subsets; it is
  recorded but not part of the key (changing it re-labels, it does not recompute).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import zarr

from lamap import __version__
from lamap._inputs import BBox, BBoxLike, DateLike, as_bbox, as_date
from lamap.catalog import CatalogProfile, SearchResult, open_catalog, search
from lamap.cube import CubeWindow, tile_cubes
from lamap.errors import InputError, NoInputError
from lamap.features import DEFAULT_SPEC, FeatureSpec, build_features, season
from lamap.grid import Grid, Window
from lamap.runtime.progress import Progress, Reporter
from lamap.timesteps import (
    TimeSteps,
    search_window,
)
from lamap.train.cache_options import DEFAULT_CLOUDY_THRESHOLD, CacheOptions
from lamap.train.patches import (
    CACHE_FORMAT,
    SPLIT_NAMES,
    STORE_NAME,
    Cache,
    RowWriter,
    create_arrays,
    group_attrs,
    open_cache,
    read_attrs,
    store_path,
    truncate,
)
from lamap.train.sample import (
    DEFAULT_PATCH,
    SPLIT_CODES,
    SPLIT_RULE,
    assign_splits,
    check_patch,
    find_samples,
    patch_windows,
    training_grid,
)
from lamap.train.truth import NO_TRUTH_CLOUD, WorldTruth, truth_offset

if TYPE_CHECKING:
    from lamap.catalog.local import World

__all__ = [
    "BATCH_BYTES",
    "CACHE_FORMAT",
    "DEFAULT_CLOUDY_THRESHOLD",
    "NO_TRUTH_CLOUD",
    "SPLIT_CODES",
    "SPLIT_NAMES",
    "STORE_NAME",
    "Cache",
    "CacheOptions",
    "build_cache",
    "open_cache",
    "truth_offset",
]

log = logging.getLogger(__name__)

#: Memory a batch of computed patches may take in the driver (bytes), see CacheOptions.batch.
BATCH_BYTES = 512 * 2**20
#: Bytes per pixel of one computed patch: s1 24, lai 8, masks 12, target 4, masks 2, truth 13.
_PATCH_BYTES_PER_PIXEL = 63
_EPOCH = dt.date(1970, 1, 1)


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class _Request:
    """One build request, normalised; its :meth:`definition` hashes into the key."""

    source: str
    catalog: dict[str, Any]
    bbox: BBox
    start: dt.date
    end: dt.date
    patch: int
    spec: FeatureSpec
    options: CacheOptions
    world: World | None = field(default=None, compare=False)

    def definition(self) -> dict[str, Any]:
        """Everything that defines the content (JSON-ready)."""
        return {
            "lamap_cache": CACHE_FORMAT,
            "catalog": self.catalog,
            "bbox": list(self.bbox.to_tuple()),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "patch_size": self.patch,
            "feature_spec": self.spec.to_dict(),
            "options": self.options.content(),
        }

    @property
    def key(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`definition`."""
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _catalog_id(source: str) -> tuple[dict[str, Any], World | None]:
    profile = open_catalog(source)
    if profile.local_world is None:
        ids = {"name": profile.name, "url": profile.url, "s2": profile.s2_collection,
               "s1": profile.s1_collection}
        return ids, None
    from lamap.catalog.local import load_world

    world = load_world(profile.local_world)
    return {"local_world": str(world.root), "world": world.meta.get("spec"),
            "clear_s2": world.has_clear_s2}, world


def _request(catalog: str, bbox: BBoxLike, start: DateLike, end: DateLike,
             patch: int, spec: FeatureSpec, options: CacheOptions) -> _Request:
    first, last = as_date(start, "start"), as_date(end, "end")
    if last < first:
        raise InputError(f"end {last} is before start {first}: give --start <= --end")
    ids, world = _catalog_id(str(catalog))
    return _Request(str(catalog), ids, as_bbox(bbox), first, last, check_patch(patch), spec,
                    options, world)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """What a build computes: grid, patches, dates, splits, catalog result, truth."""

    grid: Grid
    window: Window
    patches: tuple[Window, ...]
    samples: tuple[TimeSteps, ...]
    splits: dict[tuple[int, int], int]
    result: SearchResult
    profile: CatalogProfile
    truth: WorldTruth | None


def _make_plan(profile: CatalogProfile, request: _Request) -> _Plan:
    opts, world = request.options, request.world
    truth_grid = world.meta["truth_grid"] if world is not None else None
    grid, window = training_grid(request.bbox, request.patch, crs=opts.crs,
                                 truth_grid=truth_grid)
    patches = tuple(patch_windows(window, request.patch))
    start, end = search_window([request.start, request.end], lookback_days=opts.lookback_days,
                               s1_tolerance_days=opts.s1_tolerance_days,
                               s1_window_days=request.spec.s1_window_days)
    result = search(profile, request.bbox.to_tuple(), start, end)
    samples = find_samples(result, request.bbox, request.start, request.end,
                           min_valid=opts.min_valid, lookback_days=opts.lookback_days,
                           s1_tolerance_days=opts.s1_tolerance_days,
                           min_coverage=opts.min_coverage, spec=request.spec)
    if not samples:
        raise NoInputError(
            f"no training date between {request.start} and {request.end} over {request.bbox}: "
            "each needs S2 at t valid over min_valid of the area, two S2 days before it "
            "within lookback_days and S1 within s1_tolerance_days (see the log for each "
            "day); widen the dates or relax these options"
        )
    holdout = world.meta["holdout"]["bounds_3035"] if world is not None else None
    splits = assign_splits(grid, patches, validation_fraction=opts.validation_fraction,
                           test_fraction=opts.test_fraction, seed=opts.seed,
                           holdout_bounds=holdout, holdout_fraction=opts.holdout_fraction,
                           holdout_block=opts.holdout_block)
    truth = WorldTruth.of(world, grid) if world is not None else None
    return _Plan(grid, window, patches, tuple(samples), splits, result, profile, truth)


def _attrs(request: _Request, plan: _Plan) -> dict[str, Any]:
    opts = request.options
    definition = request.definition()
    return {
        "lamap_cache": CACHE_FORMAT,
        "key": request.key,
        "definition": definition,
        "patch_size": request.patch,
        "feature_spec": request.spec.to_dict(),
        "catalog": request.source,
        "bbox": definition["bbox"],
        "start": definition["start"],
        "end": definition["end"],
        "options": asdict(opts),
        "grid": plan.grid.to_dict(),
        "window": [plan.window.row_start, plan.window.row_stop, plan.window.col_start,
                   plan.window.col_stop],
        "samples": [s.to_dict() for s in plan.samples],
        "splits": {"codes": SPLIT_CODES, "rule": SPLIT_RULE, "seed": opts.seed,
                   "validation_fraction": opts.validation_fraction,
                   "test_fraction": opts.test_fraction,
                   "holdout": "world" if plan.truth is not None else "blocks",
                   "holdout_fraction": opts.holdout_fraction,
                   "holdout_block": opts.holdout_block,
                   "cloudy_threshold": opts.cloudy_threshold},
        "cloudy_threshold": opts.cloudy_threshold,
        "truth": plan.truth is not None,
        "created_by": f"lamap {__version__}",
        "progress": {"dates_done": [], "rows": 0},
    }


# --------------------------------------------------------------------------- store state


def _state(store: Path, request: _Request, overwrite: bool) -> str:
    """Return ``"new"``, ``"resume"`` or ``"complete"``; refuse another cache there."""
    attrs = read_attrs(store)
    if attrs is None or overwrite:
        return "new"
    if attrs.get("key") != request.key:
        raise InputError(_mismatch(store, attrs, request))
    if attrs.get("complete"):
        return "complete"
    return "resume" if attrs.get("progress", {}).get("dates_done") else "new"


def _mismatch(store: Path, attrs: Mapping[str, Any], request: _Request) -> str:
    old = attrs.get("definition")
    if not isinstance(old, Mapping):
        return (f"{store} exists but is not a lamap training cache: choose another output "
                "directory, or pass overwrite=True (--overwrite) to replace it")
    new = request.definition()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    details = [f"{k}: {old.get(k)!r} (cache) != {new.get(k)!r} (requested)" for k in changed]
    return (f"{store} holds a training cache built with other settings ({'; '.join(details)}): "
            "choose another output directory for these settings, or pass overwrite=True "
            "(--overwrite) to rebuild it")


def _prepare(store: Path, request: _Request, plan: _Plan, state: str) -> zarr.Group:
    attrs = _attrs(request, plan)
    if state == "resume":
        group = zarr.open_group(store, mode="r+")
        if group_attrs(group).get("samples") != attrs["samples"]:
            raise InputError(
                f"{store} is an unfinished cache whose sample dates differ from what the "
                "catalog gives now (items were added or removed): pass overwrite=True "
                "(--overwrite) to rebuild it"
            )
        truncate(group, int(group_attrs(group)["progress"]["rows"]))
        return group
    group = zarr.open_group(store, mode="w", zarr_format=3, attributes=attrs)
    create_arrays(group, request.patch, plan.truth is not None, request.options.rows_per_shard,
                  request.spec)
    return group


# --------------------------------------------------------------------------- computing


def _patch_graphs(steps: TimeSteps, plan: _Plan, spec: FeatureSpec) -> list[dict[str, Any]]:
    """Build the lazy arrays of every patch of one date: the blocks of one feature cube."""
    where = CubeWindow(plan.grid, plan.window)
    cubes = tile_cubes(steps, plan.result.s2, plan.result.s1, where, signer=plan.profile.signer,
                       bands=spec.s2_bands)
    features = build_features(cubes, spec)
    cube = {} if "s1" not in features else {
        "s1": features["s1"].transpose("s1_channel", "y", "x").data}
    if spec.s1_series:
        cube |= {"s1_series": features["s1_series"].data,
                 "s1_series_valid": features["s1_series_valid"].data.astype(np.uint8)}
    cube |= {
        "lai": features["lai"].transpose("lai_channel", "y", "x").data,
        "masks": features["masks"].transpose("step", "mask_channel", "y", "x").data
        .astype(np.uint8),
        "target": features["target"].transpose("y", "x").data,
        "target_mask": features["target_mask"].transpose("y", "x").data.astype(np.uint8),
        "s1_valid": features["s1_valid"].transpose("y", "x").data.astype(np.uint8),
    }
    truth = plan.truth
    if truth is not None:
        cube["truth_clear"] = truth.clear_label(steps, plan.result.s2, where, spec)
        cube["truth_gap"] = truth.gap_days(steps.date, plan.result.s2, plan.grid, plan.window)
    graphs = []
    for patch in plan.patches:
        local = patch.relative_to(plan.window)
        rows, cols = slice(local.row_start, local.row_stop), slice(local.col_start, local.col_stop)
        arrays = {name: arr[..., rows, cols] for name, arr in cube.items()}
        if truth is not None:
            arrays |= truth.patch(steps.date, patch)
        if spec.s1_series:
            arrays["s1_days"] = features["s1_days"].values
        graphs.append(arrays)
    return graphs


def _batch_size(options: CacheOptions, patch: int, client: Any | None,
                spec: FeatureSpec) -> int:
    if options.batch is not None:
        return options.batch
    per_pixel = _PATCH_BYTES_PER_PIXEL + 9 * spec.s1_passes
    fits = max(1, BATCH_BYTES // (per_pixel * patch * patch))
    if client is None:
        return fits
    workers = len(client.scheduler_info().get("workers", {}))
    return max(fits, 2 * workers)


def _computed(graphs: Sequence[Any], client: Any | None, batch: int,
              threads: int | None = None) -> Iterator[list[Any]]:
    """Yield the computed graphs batch by batch, in order (two batches in flight)."""
    batches = [list(graphs[i:i + batch]) for i in range(0, len(graphs), batch)]
    if client is None:
        workers = {} if threads is None else {"num_workers": threads}
        for part in batches:
            yield list(dask.compute(*part, scheduler="threads", **workers))
        return
    pending: deque[Any] = deque()
    for part in batches:
        pending.append(client.compute(part))
        if len(pending) == 2:
            yield list(client.gather(pending.popleft()))
    while pending:
        yield list(client.gather(pending.popleft()))


def _row(arrays: Mapping[str, np.ndarray], steps: TimeSteps, patch: Window, split: int,
         options: CacheOptions, spec: FeatureSpec) -> dict[str, Any] | None:
    """Make one cache row from a computed patch, or None when the patch is dropped."""
    valid = float(arrays["target_mask"].mean())
    has_input = arrays["s1_valid"].any() or arrays["masks"][:, 0].any()
    if valid == 0.0 or valid < options.min_patch_valid or not has_input:
        return None
    row = {name: arrays[name] for name in ("s1", "s1_series", "s1_series_valid", "lai", "masks",
                                           "target", "target_mask") if name in arrays}
    row |= {name: value for name, value in arrays.items() if name.startswith("truth_")}
    if "s1_days" in arrays:
        row["s1_days"] = arrays["s1_days"]
    t = steps.date
    return row | {
        "season": season(t, spec=spec),
        "past_days": np.array([(t - steps.t2.day).days, (t - steps.t1.day).days], np.int16),
        "date": np.int32((t - _EPOCH).days),
        "row": np.int32(patch.row_start),
        "col": np.int32(patch.col_start),
        "split": np.uint8(split),
        "cloudy_past": np.float32(1.0 - arrays["masks"][:, 0].mean()),
        "valid_fraction": np.float32(valid),
        "s1_valid_fraction": np.float32(arrays["s1_valid"].mean()),
    }


def _fill(group: zarr.Group, plan: _Plan, request: _Request, client: Any | None,
          say: Reporter) -> None:
    """Compute and write every date not done yet (a ``"patches"`` step per batch)."""
    writer = RowWriter(group)
    todo = [s for s in plan.samples if s.date.isoformat() not in set(writer.dates)]
    count = _Count(say, len(todo) * len(plan.patches))
    for steps in todo:
        _write_date(writer, steps, plan, request, client, count)
        writer.date_done(steps.date)
        say.info(f"training cache: {steps.date} written")


@dataclass
class _Count:
    """Patches computed so far, reported as ``"patches"`` steps."""

    say: Reporter
    total: int
    done: int = 0

    def add(self, patches: int) -> None:
        self.done += patches
        self.say.step("patches", self.done, self.total)


def _write_date(writer: RowWriter, steps: TimeSteps, plan: _Plan, request: _Request,
                client: Any | None, count: _Count) -> None:
    """Compute one date's patches batch by batch and append the rows that pass the filters."""
    options, done = request.options, 0
    batch = _batch_size(options, request.patch, client, request.spec)
    graphs = _patch_graphs(steps, plan, request.spec)
    for computed in _computed(graphs, client, batch, options.threads):
        rows = []
        for arrays, patch in zip(computed, plan.patches[done:done + len(computed)], strict=True):
            split = plan.splits[(patch.row_start, patch.col_start)]
            rows.append(_row(arrays, steps, patch, split, options, request.spec))
        writer.append([r for r in rows if r is not None])
        done += len(computed)
        count.add(len(computed))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _finish(group: zarr.Group, store: Path, started: float) -> None:
    seconds = time.perf_counter() - started
    progress = group_attrs(group)["progress"]
    rows = int(progress["rows"])
    size = _size(store)
    group.attrs["complete"] = {"rows": rows, "seconds": round(seconds, 2), "bytes": size,
                               "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    log.info("training cache %s: %d patches from %d dates, %.1f MB, built in %.1f s",
             store, rows, len(progress["dates_done"]), size / 1e6, seconds)


# --------------------------------------------------------------------------- entry points


def build_cache(
    catalog: str,
    bbox: BBoxLike,
    start: DateLike,
    end: DateLike,
    out_dir: str | os.PathLike[str],
    *,
    patch: int = DEFAULT_PATCH,
    spec: FeatureSpec = DEFAULT_SPEC,
    options: CacheOptions | None = None,
    client: Any | None = None,
    overwrite: bool = False,
    progress: Progress | bool | None = True,
) -> Cache:
    """Sample patches over ``bbox`` for every usable date and write the training cache.

    Parameters
    ----------
    catalog : str
        A catalog profile name, a STAC API URL or a demo-world directory (served through a
        local STAC API while sampling).
    bbox : str or sequence of float or BBox
        The training area, ``W,S,E,N`` in degrees.
    start, end : date, datetime or str
        First and last candidate date t (inclusive), ``YYYY-MM-DD`` as a string.
    out_dir : path-like
        Local directory of the cache (``<out_dir>/patches.zarr``).
    patch : int
        Patch edge in pixels (a multiple of 4).
    spec : FeatureSpec
        The feature definition (stored with the cache and later in the checkpoint).
    options : CacheOptions, optional
        Sampling, filter and split settings.
    client : distributed.Client, optional
        Computes the patches; default: the threaded scheduler.
    overwrite : bool
        Replace a cache with another key in ``out_dir``.
    progress : callable or bool
        Receives ``"patches"`` step events (:mod:`lamap.runtime.progress`); ``True`` prints
        lines, ``False`` is quiet.

    Returns
    -------
    Cache
        The complete cache; the same request again returns it without recomputing.

    Raises
    ------
    InputError
        For bad arguments, or ``out_dir`` holding a cache built with other settings.
    NoInputError
        If no date in ``[start, end]`` makes a sample.
    CatalogError
        If the catalog cannot be searched.
    """
    started = time.perf_counter()
    request = _request(catalog, bbox, start, end, patch, spec, options or CacheOptions())
    store = store_path(out_dir)
    state = _state(store, request, overwrite)
    if state == "complete":
        log.info("training cache %s: reused (key %s)", store, request.key[:12])
        return _reuse(out_dir, request.options.cloudy_threshold)
    with open_catalog(request.source) as profile:
        plan = _make_plan(profile, request)
        group = _prepare(store, request, plan, state)
        _fill(group, plan, request, client, Reporter(progress))
    _finish(group, store, started)
    return open_cache(out_dir)


def _reuse(out_dir: str | os.PathLike[str], cloudy_threshold: float) -> Cache:
    group = zarr.open_group(store_path(out_dir), mode="r+")
    splits = dict(group_attrs(group)["splits"])
    if splits.get("cloudy_threshold") != cloudy_threshold:
        group.attrs.update({"splits": splits | {"cloudy_threshold": cloudy_threshold},
                            "cloudy_threshold": cloudy_threshold})
    return open_cache(out_dir)
