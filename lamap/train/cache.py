"""The training cache: patches cut from the mapping cubes, materialised once into Zarr.

``build_cache(catalog, bbox, start, end, out_dir)`` searches the catalog once, finds the
sample dates (:func:`lamap.train.sample.find_samples`), builds for each date ONE lazy
feature cube over the whole training window (:func:`lamap.cube.tile_cubes` and
:func:`lamap.features.build_features`, the code ``lamap map`` runs) with dask chunks of
``P × P`` pixels, and writes each chunk that passes the filters as one row of
``<out_dir>/patches.zarr``. ``open_cache(out_dir)`` opens it for the trainer.

Format (version :data:`CACHE_FORMAT`, a Zarr v3 group, one row per patch along ``patch``)
---------------------------------------------------------------------------------------

======================  ======================  =========  ====================================
array                   shape                   dtype      meaning
======================  ======================  =========  ====================================
``s1``                  (N, 6, P, P)            float32    VV, VH at t-2, t-1, t: dB / 30 + 1
``lai``                 (N, 2, P, P)            float32    S2 LAI / 5 at t-2, t-1 (0 if invalid)
``masks``               (N, 2, 6, P, P)         uint8      valid, SCL 2..6 one-hot, t-2 and t-1
``season``              (N, 2)                  float32    sin, cos of 2π·doy(t)/365.25
``target``              (N, P, P)               float32    S2 LAI / 5 at t, 0 where not valid
``target_mask``         (N, P, P)               uint8      1 where S2 at t is a label (SCL 2,
                                                           4, 5, 6, LAI finite): the loss
``past_days``           (N, 2)                  int16      days from t-2 and from t-1 to t
``date``                (N,)                    int32      t, days since 1970-01-01
``row``, ``col``        (N,)                    int32      patch origin, training-grid pixels
``split``               (N,)                    uint8      0 train, 1 validation, 2 test,
                                                           3 unique (held-out locations)
``cloudy_past``         (N,)                    float32    mean over t-2, t-1 of 1 − valid
``valid_fraction``      (N,)                    float32    mean of ``target_mask``
``s1_valid_fraction``   (N,)                    float32    fraction with all six S1 inputs
``truth_lai``           (N, P, P)               float32    demo world only: true LAI at t
``truth_snap``          (N, P, P)               float32    demo world only: SNAP LAI, clear sky
``truth_cloud``         (N, P, P)               uint8      demo world only: 0 clear, 1 cloud,
                                                           2 cirrus, 3 shadow, 255 no truth
``truth_clear``         (N, P, P)               float32    demo world only: the S2 LAI label
                                                           of t's cloud-free twin products
                                                           (same loader path), NaN where none
======================  ======================  =========  ====================================

Rows are ordered by date, then row, then column. Patch-sized arrays have one Zarr chunk per
row (a dataset reads only the row it needs) inside shards of ``rows_per_shard`` rows (few
files); per-row scalars have chunks of 4096 rows. Dimension names are set, so
``xr.open_zarr("<out_dir>/patches.zarr", consolidated=False)`` also works.

Group attributes: ``lamap_cache`` (format), ``key`` (SHA-256 of ``definition``),
``definition`` (everything that defines the content: catalog (for a demo world its path and
generation spec), bbox, start, end, patch size, feature spec, content options), ``patch_size``,
``feature_spec``, ``catalog``, ``bbox``, ``start``, ``end``, ``options``, ``grid``
(:meth:`lamap.grid.Grid.to_dict` of the training grid), ``window`` (row start, row stop, col
start, col stop of the patches), ``samples`` (:meth:`lamap.plan.TimeSteps.to_dict` per date),
``splits`` (codes, rule, fractions, seed, ``cloudy_threshold``), ``cloudy_threshold``,
``truth``, ``created_by``, ``progress`` and, written last, ``complete`` (rows, seconds,
bytes).

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
* **The cloud-free label.** ``truth_snap`` is SNAP of the cloud-free reflectance on the truth
  grid; the label went through the product grid, the bilinear warp and the loader's view
  angles, which alone put it 0.46 m²/m² from ``truth_snap`` on clear pixels of the demo world.
  ``truth_clear`` runs the label's own code on the world's cloud-free twin products
  (:meth:`lamap.synthetic.world.World.clear_href`), so on clear pixels it equals the label
  and under clouds it is what the label would have been: the reference for gap filling.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from tqdm import tqdm

from lamap import __version__
from lamap._inputs import BBox, BBoxLike, as_bbox, as_date
from lamap.catalog import CatalogProfile, S2Scene, SearchResult, open_catalog, search
from lamap.cube import CubeWindow, s2_cube, tile_cubes
from lamap.errors import InputError, NoInputError
from lamap.features import DEFAULT_SPEC, FeatureSpec, build_features, s2_lai, season
from lamap.grid import Grid, Window
from lamap.timesteps import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_MIN_COVERAGE,
    DEFAULT_S1_TOLERANCE_DAYS,
    TimeSteps,
    search_window,
)
from lamap.train.sample import (
    DEFAULT_MIN_VALID,
    DEFAULT_PATCH,
    DEFAULT_TRAINING_CRS,
    SPLIT_CODES,
    assign_splits,
    check_patch,
    find_samples,
    patch_windows,
    training_grid,
)

if TYPE_CHECKING:
    from lamap.synthetic.world import World

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

#: Version of the cache format described in the module docstring.
CACHE_FORMAT = 2
#: The Zarr group inside the cache directory.
STORE_NAME = "patches.zarr"
#: Names :meth:`Cache.split_indices` accepts.
SPLIT_NAMES = ("train", "validation", "test", "unique", "non-cloudy", "cloudy",
               "unique-non-cloudy", "unique-cloudy")
#: Splits by how clear the past is: name → (location split, past is cloudy).
_PAST_SUBSETS = {"non-cloudy": ("test", False), "cloudy": ("test", True),
                 "unique-non-cloudy": ("unique", False), "unique-cloudy": ("unique", True)}
#: Default ``cloudy_past`` from which a test patch counts as cloudy.
DEFAULT_CLOUDY_THRESHOLD = 0.25
#: ``truth_cloud`` where the truth grid has no pixel.
NO_TRUTH_CLOUD = 255
#: Memory a batch of computed patches may take in the driver (bytes), see CacheOptions.batch.
BATCH_BYTES = 512 * 2**20
#: Bytes per pixel of one computed patch: s1 24, lai 8, masks 12, target 4, masks 2, truth 13.
_PATCH_BYTES_PER_PIXEL = 63
_EPOCH = dt.date(1970, 1, 1)
_SCALAR_CHUNK = 4096
_SPLIT_RULE = (
    "by location (patch origin): unique = patches overlapping the demo world's held-out "
    "area, else a seeded permutation of blocks of holdout_block x holdout_block patches "
    "(holdout_fraction of them); of the rest, a seeded permutation gives validation_fraction "
    "to validation, test_fraction to test, the rest to train; every date of a location is "
    "in the same split. non-cloudy / cloudy = test rows with cloudy_past < / >= "
    "cloudy_threshold"
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class CacheOptions:
    """Settings of :func:`build_cache` (all but the last four define the content).

    Parameters
    ----------
    min_valid : float
        Smallest expected valid fraction of S2 at t over the area for a date to be sampled
        (:func:`lamap.train.sample.find_samples`).
    min_patch_valid : float
        Smallest ``valid_fraction`` (of ``target_mask``) for a patch to be kept.
    lookback_days, s1_tolerance_days, min_coverage
        Time-step planning (:func:`lamap.plan.plan_time_steps`).
    validation_fraction, test_fraction : float
        Fractions of the non-held-out locations (:func:`lamap.train.sample.assign_splits`).
    holdout_fraction : float
        Fraction of blocks held out (``unique``) for a real catalog; a demo world uses its
        own held-out area.
    holdout_block : int
        Edge of a held-out block, in patches.
    seed : int
        Seed of the splits.
    crs : str
        CRS of the training grid for a real catalog (demo worlds use their truth grid).
    cloudy_threshold : float
        ``cloudy_past`` from which a test patch is ``cloudy`` (recorded, not in the key).
    rows_per_shard : int
        Rows per Zarr shard of the patch-sized arrays (layout, not in the key).
    threads : int, optional
        Threads of the threaded scheduler when no client is given (default: dask's, one
        per core). stackstac opens every input COG once per thread and compute call, so on
        small machines fewer threads can be faster: on 2 shared cores, one date of the
        512² world took 2.6 s with 1 thread and 4.8 s with 2 (1024²: 6.0 s and 8.8 s).
    batch : int, optional
        Patches computed per batch, i.e. per ``compute`` call (default: as many as fit in
        :data:`BATCH_BYTES`, at least twice the cluster's workers). Each call re-opens
        every input COG (stackstac opens its readers inside the graph), so few large
        batches are much faster than many small ones.
    """

    min_valid: float = DEFAULT_MIN_VALID
    min_patch_valid: float = 0.2
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS
    min_coverage: float = DEFAULT_MIN_COVERAGE
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    holdout_fraction: float = 0.1
    holdout_block: int = 4
    seed: int = 0
    crs: str = DEFAULT_TRAINING_CRS
    cloudy_threshold: float = DEFAULT_CLOUDY_THRESHOLD
    rows_per_shard: int = 16
    batch: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        """Check ranges."""
        for name in ("min_valid", "min_patch_valid", "min_coverage", "validation_fraction",
                     "test_fraction", "holdout_fraction", "cloudy_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"cache option {name} must be in [0, 1], got {value!r}")
        for name in ("holdout_block", "rows_per_shard"):
            if getattr(self, name) < 1:
                raise InputError(f"cache option {name} must be >= 1, got {getattr(self, name)}")
        for name in ("batch", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"cache option {name} must be >= 1, got {value}")

    def content(self) -> dict[str, Any]:
        """Return the options that define the cache's content (they go into the key)."""
        data = asdict(self)
        for name in ("cloudy_threshold", "rows_per_shard", "batch", "threads"):
            data.pop(name)
        return data


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
    from lamap.synthetic.world import load_world

    world = load_world(profile.local_world)
    return {"local_world": str(world.root), "world": world.meta.get("spec"),
            "clear_s2": world.has_clear_s2}, world


def _request(catalog: str, bbox: BBoxLike, start: dt.date | str, end: dt.date | str,
             patch: int, spec: FeatureSpec, options: CacheOptions) -> _Request:
    first, last = as_date(start, "start"), as_date(end, "end")
    if last < first:
        raise InputError(f"end {last} is before start {first}: give --start <= --end")
    ids, world = _catalog_id(str(catalog))
    return _Request(str(catalog), ids, as_bbox(bbox), first, last, check_patch(patch), spec,
                    options, world)


# --------------------------------------------------------------------------- the truth


def truth_offset(grid: Grid, truth_grid: Mapping[str, Any]) -> tuple[int, int]:
    """Return the truth-grid (row, col) of the training grid's pixel (0, 0).

    Parameters
    ----------
    grid : Grid
        The training grid.
    truth_grid : mapping
        A demo world's ``world.json`` ``truth_grid`` (``crs``, ``transform``).

    Returns
    -------
    tuple of int

    Raises
    ------
    InputError
        If the grids do not share CRS, resolution and pixel edges.
    """
    transform = truth_grid["transform"]
    res, x0, y0 = float(transform[0]), float(transform[2]), float(transform[5])
    cols = (grid.origin[0] - x0) / res
    rows = (y0 - grid.origin[1]) / res
    aligned = (grid.crs == str(truth_grid.get("crs")) and grid.resolution == res
               and abs(cols - round(cols)) < 1e-6 and abs(rows - round(rows)) < 1e-6)
    if not aligned:
        raise InputError(
            f"the training grid {grid.label} with origin {grid.origin} is not pixel-aligned "
            f"with the world's truth grid ({truth_grid.get('crs')}, {res} m, origin "
            f"({x0}, {y0})), so the truth cannot be cut into patches: build the training grid "
            "with lamap.train.sample.training_grid(..., truth_grid=world.meta['truth_grid'])"
        )
    return round(rows), round(cols)


@dataclass(frozen=True)
class _Truth:
    """A demo world's truth, to cut patch by patch (lazily) at the sample dates."""

    data: xr.Dataset
    offset: tuple[int, int]
    clear_href: Callable[[str], str] | None

    @classmethod
    def of(cls, world: World, grid: Grid) -> _Truth:
        if not world.has_clear_s2:
            log.warning("the world at %s has no cloud-free S2 products (older lamap): "
                        "truth_clear stays NaN; regenerate it to score gap filling against "
                        "the cloud-free label", world.root)
        clear = world.clear_href if world.has_clear_s2 else None
        return cls(world.truth(), truth_offset(grid, world.meta["truth_grid"]), clear)

    def clear_label(self, steps: TimeSteps, scenes: Sequence[S2Scene],
                    where: CubeWindow) -> da.Array:
        """Lazy S2 LAI label of t's cloud-free twin products over ``where``."""
        if self.clear_href is None or steps.observed is None:
            return da.full(where.window.shape, np.nan, dtype=np.float32, chunks=where.chunks())
        s2 = s2_cube(scenes, [steps.observed], where, signer=self.clear_href)
        return s2_lai(s2).isel(time=0).transpose("y", "x").data

    def patch(self, day: dt.date, window: Window) -> dict[str, da.Array]:
        """Lazy ``truth_lai``, ``truth_snap``, ``truth_cloud`` of one patch, padded."""
        times = self.data["time"].values.astype("datetime64[D]")
        where = np.flatnonzero(times == np.datetime64(day, "D"))
        if where.size == 0:
            raise InputError(f"the world's truth has no layer for {day}: regenerate the world")
        fills = {"lai": np.nan, "lai_snap": np.nan, "cloud": NO_TRUTH_CLOUD}
        return {f"truth_{'snap' if name == 'lai_snap' else name}":
                self._cut(self.data[name].data[int(where[0])], window, fill)
                for name, fill in fills.items()}

    def _cut(self, layer: da.Array, window: Window, fill: float) -> da.Array:
        rows, cols = layer.shape
        r0, c0 = window.row_start + self.offset[0], window.col_start + self.offset[1]
        r1, c1 = r0 + window.height, c0 + window.width
        part = layer[max(r0, 0):max(min(r1, rows), 0), max(c0, 0):max(min(c1, cols), 0)]
        pad = ((max(-r0, 0), window.height - part.shape[0] - max(-r0, 0)),
               (max(-c0, 0), window.width - part.shape[1] - max(-c0, 0)))
        if part.size == 0:
            return da.full(window.shape, fill, dtype=layer.dtype)
        return da.pad(part, pad, mode="constant", constant_values=fill)


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
    truth: _Truth | None


def _make_plan(profile: CatalogProfile, request: _Request) -> _Plan:
    opts, world = request.options, request.world
    truth_grid = world.meta["truth_grid"] if world is not None else None
    grid, window = training_grid(request.bbox, request.patch, crs=opts.crs,
                                 truth_grid=truth_grid)
    patches = tuple(patch_windows(window, request.patch))
    start, end = search_window([request.start, request.end], lookback_days=opts.lookback_days,
                               s1_tolerance_days=opts.s1_tolerance_days)
    result = search(profile, request.bbox.to_tuple(), start, end)
    samples = find_samples(result, request.bbox, request.start, request.end,
                           min_valid=opts.min_valid, lookback_days=opts.lookback_days,
                           s1_tolerance_days=opts.s1_tolerance_days,
                           min_coverage=opts.min_coverage)
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
    truth = _Truth.of(world, grid) if world is not None else None
    return _Plan(grid, window, patches, tuple(samples), splits, result, profile, truth)


# --------------------------------------------------------------------------- layout


def _layout(patch: int, truth: bool) -> dict[str, tuple[str, tuple[int, ...], tuple[str, ...]]]:
    """Array name → (dtype, shape after N, dimension names after ``patch``)."""
    yx, p = ("y", "x"), patch
    layout = {
        "s1": ("float32", (6, p, p), ("s1_channel", *yx)),
        "lai": ("float32", (2, p, p), ("lai_channel", *yx)),
        "masks": ("uint8", (2, 6, p, p), ("step", "mask_channel", *yx)),
        "season": ("float32", (2,), ("season_channel",)),
        "target": ("float32", (p, p), yx),
        "target_mask": ("uint8", (p, p), yx),
        "past_days": ("int16", (2,), ("step",)),
        "date": ("int32", (), ()),
        "row": ("int32", (), ()),
        "col": ("int32", (), ()),
        "split": ("uint8", (), ()),
        "cloudy_past": ("float32", (), ()),
        "valid_fraction": ("float32", (), ()),
        "s1_valid_fraction": ("float32", (), ()),
    }
    if truth:
        layout |= {"truth_lai": ("float32", (p, p), yx), "truth_snap": ("float32", (p, p), yx),
                   "truth_cloud": ("uint8", (p, p), yx), "truth_clear": ("float32", (p, p), yx)}
    return layout


_FILLS = {"truth_lai": np.nan, "truth_snap": np.nan, "truth_cloud": NO_TRUTH_CLOUD,
          "truth_clear": np.nan}
_ARRAY_ATTRS: dict[str, dict[str, Any]] = {
    "target": {"long_name": "S2 LAI at t divided by lai_scale, 0 where not valid"},
    "date": {"units": "days since 1970-01-01"},
    "past_days": {"long_name": "days from t-2 and from t-1 to t"},
    "split": {"flag_values": list(SPLIT_CODES.values()), "flag_meanings": " ".join(SPLIT_CODES)},
    "truth_lai": {"long_name": "true LAI at t", "units": "m2 m-2"},
    "truth_snap": {"long_name": "SNAP LAI of the cloud-free reflectance at t", "units": "m2 m-2"},
    "truth_cloud": {"flag_values": [0, 1, 2, 3, NO_TRUTH_CLOUD],
                    "flag_meanings": "clear cloud cirrus shadow no_truth"},
    "truth_clear": {"long_name": "S2 LAI label of the cloud-free twin products at t",
                    "units": "m2 m-2"},
}


def _create_arrays(group: zarr.Group, patch: int, truth: bool, rows_per_shard: int) -> None:
    for name, (dtype, tail, dims) in _layout(patch, truth).items():
        spatial = len(tail) >= 2
        chunks = (1, *tail) if spatial else (_SCALAR_CHUNK, *tail)
        group.create_array(
            name, shape=(0, *tail), dtype=dtype, chunks=chunks,
            shards=(rows_per_shard, *tail) if spatial else None,
            fill_value=_FILLS.get(name, 0), dimension_names=("patch", *dims),
            attributes=_ARRAY_ATTRS.get(name, {}),
        )


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
        "splits": {"codes": SPLIT_CODES, "rule": _SPLIT_RULE, "seed": opts.seed,
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


def _store_path(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / STORE_NAME


def _attrs_of(group: zarr.Group) -> dict[str, Any]:
    return dict(group.attrs)


def _read_attrs(store: Path) -> dict[str, Any] | None:
    if not (store / "zarr.json").is_file():
        return None
    return _attrs_of(zarr.open_group(store, mode="r"))


def _state(store: Path, request: _Request, overwrite: bool) -> str:
    """Return ``"new"``, ``"resume"`` or ``"complete"``; refuse another cache there."""
    attrs = _read_attrs(store)
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
        if _attrs_of(group).get("samples") != attrs["samples"]:
            raise InputError(
                f"{store} is an unfinished cache whose sample dates differ from what the "
                "catalog gives now (items were added or removed): pass overwrite=True "
                "(--overwrite) to rebuild it"
            )
        _truncate(group, int(_attrs_of(group)["progress"]["rows"]))
        return group
    group = zarr.open_group(store, mode="w", zarr_format=3, attributes=attrs)
    _create_arrays(group, request.patch, plan.truth is not None, request.options.rows_per_shard)
    return group


def _truncate(group: zarr.Group, rows: int) -> None:
    for _, array in group.arrays():
        if array.shape[0] != rows:
            array.resize((rows, *array.shape[1:]))


# --------------------------------------------------------------------------- computing


def _patch_graphs(steps: TimeSteps, plan: _Plan, spec: FeatureSpec) -> list[dict[str, Any]]:
    """Build the lazy arrays of every patch of one date: the blocks of one feature cube."""
    where = CubeWindow(plan.grid, plan.window)
    cubes = tile_cubes(steps, plan.result.s2, plan.result.s1, where, signer=plan.profile.signer)
    features = build_features(cubes, spec)
    cube = {
        "s1": features["s1"].transpose("s1_channel", "y", "x").data,
        "lai": features["lai"].transpose("lai_channel", "y", "x").data,
        "masks": features["masks"].transpose("step", "mask_channel", "y", "x").data
        .astype(np.uint8),
        "target": features["target"].transpose("y", "x").data,
        "target_mask": features["target_mask"].transpose("y", "x").data.astype(np.uint8),
        "s1_valid": features["s1_valid"].transpose("y", "x").data.astype(np.uint8),
    }
    truth = plan.truth
    if truth is not None:
        cube["truth_clear"] = truth.clear_label(steps, plan.result.s2, where)
    graphs = []
    for patch in plan.patches:
        local = patch.relative_to(plan.window)
        rows, cols = slice(local.row_start, local.row_stop), slice(local.col_start, local.col_stop)
        arrays = {name: arr[..., rows, cols] for name, arr in cube.items()}
        if truth is not None:
            arrays |= truth.patch(steps.date, patch)
        graphs.append(arrays)
    return graphs


def _batch_size(options: CacheOptions, patch: int, client: Any | None) -> int:
    if options.batch is not None:
        return options.batch
    fits = max(1, BATCH_BYTES // (_PATCH_BYTES_PER_PIXEL * patch * patch))
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
    row = {name: arrays[name] for name in ("s1", "lai", "masks", "target", "target_mask")}
    row |= {name: value for name, value in arrays.items() if name.startswith("truth_")}
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


class _RowWriter:
    """Appends rows to every array of the group; the only writer of the cache."""

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        progress = _attrs_of(group)["progress"]
        self.rows = int(progress["rows"])
        self.dates = list(progress["dates_done"])

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        start, stop = self.rows, self.rows + len(rows)
        for name in rows[0]:
            array = cast(zarr.Array, self.group[name])
            array.resize((stop, *array.shape[1:]))
            array[start:stop] = np.stack([np.asarray(r[name]) for r in rows])
        self.rows = stop

    def date_done(self, day: dt.date) -> None:
        self.dates.append(day.isoformat())
        self.group.attrs["progress"] = {"dates_done": self.dates, "rows": self.rows}


def _fill(group: zarr.Group, plan: _Plan, request: _Request, client: Any | None,
          progress: bool) -> None:
    """Compute and write every date not done yet."""
    writer = _RowWriter(group)
    todo = [s for s in plan.samples if s.date.isoformat() not in set(writer.dates)]
    with tqdm(total=len(todo) * len(plan.patches), unit="patch", disable=not progress,
              desc="training cache") as bar:
        for steps in todo:
            bar.set_postfix_str(steps.date.isoformat())
            _write_date(writer, steps, plan, request, client, bar)
            writer.date_done(steps.date)


def _write_date(writer: _RowWriter, steps: TimeSteps, plan: _Plan, request: _Request,
                client: Any | None, bar: tqdm[Any]) -> None:
    """Compute one date's patches batch by batch and append the rows that pass the filters."""
    options, done = request.options, 0
    batch = _batch_size(options, request.patch, client)
    graphs = _patch_graphs(steps, plan, request.spec)
    for computed in _computed(graphs, client, batch, options.threads):
        rows = []
        for arrays, patch in zip(computed, plan.patches[done:done + len(computed)], strict=True):
            split = plan.splits[(patch.row_start, patch.col_start)]
            rows.append(_row(arrays, steps, patch, split, options, request.spec))
        writer.append([r for r in rows if r is not None])
        done += len(computed)
        bar.update(len(computed))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _finish(group: zarr.Group, store: Path, started: float) -> None:
    seconds = time.perf_counter() - started
    progress = _attrs_of(group)["progress"]
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
    start: dt.date | str,
    end: dt.date | str,
    out_dir: str | os.PathLike[str],
    *,
    patch: int = DEFAULT_PATCH,
    spec: FeatureSpec = DEFAULT_SPEC,
    options: CacheOptions | None = None,
    client: Any | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Cache:
    """Sample patches over ``bbox`` for every usable date and write the training cache.

    Parameters
    ----------
    catalog : str
        A catalog profile name, a STAC API URL or a demo-world directory (served through a
        local STAC API while sampling).
    bbox : str or sequence of float or BBox
        The training area, ``W,S,E,N`` in degrees.
    start, end : date or str
        First and last candidate date t (inclusive).
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
    progress : bool
        Show a progress bar over patches.

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
    store = _store_path(out_dir)
    state = _state(store, request, overwrite)
    if state == "complete":
        log.info("training cache %s: reused (key %s)", store, request.key[:12])
        return _reuse(out_dir, request.options.cloudy_threshold)
    from lamap.mapping import _catalog

    with _catalog(request.source) as profile:
        plan = _make_plan(profile, request)
        group = _prepare(store, request, plan, state)
        _fill(group, plan, request, client, progress)
    _finish(group, store, started)
    return open_cache(out_dir)


def _reuse(out_dir: str | os.PathLike[str], cloudy_threshold: float) -> Cache:
    group = zarr.open_group(_store_path(out_dir), mode="r+")
    splits = dict(_attrs_of(group)["splits"])
    if splits.get("cloudy_threshold") != cloudy_threshold:
        group.attrs.update({"splits": splits | {"cloudy_threshold": cloudy_threshold},
                            "cloudy_threshold": cloudy_threshold})
    return open_cache(out_dir)


# --------------------------------------------------------------------------- reading


_INDEX_COLUMNS = ("date", "row", "col", "split", "cloudy_past", "valid_fraction",
                  "s1_valid_fraction")


@dataclass(frozen=True)
class Cache:
    """An open, complete training cache (:func:`open_cache`).

    Attributes
    ----------
    path : pathlib.Path
        The cache directory.
    attrs : mapping
        The group attributes (see the module docstring).
    index : pandas.DataFrame
        One row per patch, indexed by row number: ``date`` (datetime64), ``row``, ``col``,
        ``split`` (code), ``split_name``, ``cloudy_past``, ``valid_fraction``,
        ``s1_valid_fraction``, ``past_t2``, ``past_t1`` (days to t).
    """

    path: Path
    attrs: Mapping[str, Any] = field(repr=False)
    index: pd.DataFrame = field(repr=False)

    @property
    def store(self) -> Path:
        """The Zarr group ``<path>/patches.zarr``."""
        return _store_path(self.path)

    @property
    def key(self) -> str:
        """Hash of everything that defines the content."""
        return str(self.attrs["key"])

    @property
    def patch_size(self) -> int:
        """Patch edge P in pixels."""
        return int(self.attrs["patch_size"])

    @property
    def feature_spec(self) -> FeatureSpec:
        """The feature definition the patches were made with."""
        return FeatureSpec.from_dict(self.attrs["feature_spec"])

    @property
    def cloudy_threshold(self) -> float:
        """``cloudy_past`` from which a test patch counts as cloudy."""
        return float(self.attrs["splits"]["cloudy_threshold"])

    @property
    def has_truth(self) -> bool:
        """Whether the ``truth_*`` arrays exist (demo worlds)."""
        return bool(self.attrs.get("truth"))

    def __len__(self) -> int:
        """Return the number of patches."""
        return len(self.index)

    def group(self) -> zarr.Group:
        """Open the Zarr group read-only."""
        return zarr.open_group(self.store, mode="r")

    def read(self, name: str, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Read one array for the given rows (all rows by default) into memory."""
        array = cast(zarr.Array, self.group()[name])
        if indices is None:
            return np.asarray(array[:])
        return np.asarray(array.oindex[np.asarray(indices, dtype=np.int64)])

    def split_indices(self, name: str, *, cloudy_threshold: float | None = None) -> np.ndarray:
        """Return the sorted row numbers of a split.

        Parameters
        ----------
        name : {"train", "validation", "test", "unique", "non-cloudy", "cloudy", \
                "unique-non-cloudy", "unique-cloudy"}
            ``non-cloudy`` and ``cloudy`` are the test rows whose ``cloudy_past`` is below,
            respectively at least, the threshold; ``unique-non-cloudy`` and
            ``unique-cloudy`` split the held-out area's rows the same way.
        cloudy_threshold : float, optional
            Overrides :attr:`cloudy_threshold`.

        Returns
        -------
        numpy.ndarray
            int64 row numbers.

        Raises
        ------
        InputError
            For an unknown name.
        """
        if name not in SPLIT_NAMES:
            raise InputError(f"unknown split {name!r}: use one of {list(SPLIT_NAMES)}")
        base, past = _PAST_SUBSETS.get(name, (name, None))
        keep = self.index["split"].to_numpy() == SPLIT_CODES[base]
        if past is not None:
            limit = self.cloudy_threshold if cloudy_threshold is None else cloudy_threshold
            cloudy = self.index["cloudy_past"].to_numpy() >= limit
            keep &= cloudy if past else ~cloudy
        return np.flatnonzero(keep).astype(np.int64)


def _index(group: zarr.Group) -> pd.DataFrame:
    data = {name: np.asarray(cast(zarr.Array, group[name])[:]) for name in _INDEX_COLUMNS}
    past = np.asarray(cast(zarr.Array, group["past_days"])[:])
    frame = pd.DataFrame(data)
    frame["date"] = pd.to_datetime(data["date"].astype("datetime64[D]"))
    names = {code: name for name, code in SPLIT_CODES.items()}
    frame["split_name"] = [names[int(c)] for c in data["split"]]
    frame["past_t2"], frame["past_t1"] = past[:, 0], past[:, 1]
    return frame


def open_cache(out_dir: str | os.PathLike[str]) -> Cache:
    """Open a complete training cache written by :func:`build_cache`.

    Parameters
    ----------
    out_dir : path-like
        The cache directory (holding ``patches.zarr``).

    Returns
    -------
    Cache

    Raises
    ------
    InputError
        If there is no cache, it has another format, or its build did not finish.
    """
    store = _store_path(out_dir)
    attrs = _read_attrs(store)
    if attrs is None or "lamap_cache" not in attrs:
        raise InputError(f"no lamap training cache at {store}: build one with `lamap train` "
                         "or lamap.train.cache.build_cache")
    if attrs["lamap_cache"] != CACHE_FORMAT:
        raise InputError(f"{store} is a training cache of format {attrs['lamap_cache']}; this "
                         f"lamap reads format {CACHE_FORMAT}: rebuild it (overwrite=True)")
    if not attrs.get("complete"):
        done = attrs.get("progress", {}).get("dates_done", [])
        raise InputError(f"the training cache {store} is unfinished ({len(done)} of "
                         f"{len(attrs.get('samples', []))} dates written): run build_cache "
                         "again with the same arguments to finish it")
    return Cache(Path(out_dir), attrs, _index(zarr.open_group(store, mode="r")))
