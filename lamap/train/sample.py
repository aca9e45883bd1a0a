"""Training samples: which dates make a sample, and the patch lattice they are cut into.

A sample is a date t on which Sentinel-2 was acquired over the training area: the planner
(:func:`lamap.timesteps.plan_time_steps` with D = t) chooses t-2 and t-1, the two most recent
Sentinel-2 days strictly before t within the lookback, and the Sentinel-1 pass nearest to
each of t-2, t-1, t within the tolerance; Sentinel-2 at t itself (``TimeSteps.observed``)
is the target. So training sees exactly the time steps mapping would choose for D = t.

:func:`find_samples` keeps the days whose Sentinel-2 at t is expected to be valid over at
least ``min_valid`` of the area, estimated from the items alone (no pixel read):
``coverage × (1 − eo:cloud_cover / 100)``, the fraction of the area the day's scenes cover
times the fraction of their data that is not cloud. It is a cheap pre-filter, not a
measurement: ``eo:cloud_cover`` is a whole-scene figure (a 110-km MGRS tile), so a small area
can be clearer or cloudier than its scenes (cloud shadows, SCL 3, are valid and not counted).
The exact valid fraction of every patch is measured when the cache is built and filtered
there (``min_patch_valid``); ``min_valid=0`` skips the pre-filter and keeps every day.

The training grid (:func:`training_grid`) is a :class:`lamap.grid.Grid` whose chunk and
shard are the patch size ``P``: patches are the grid's chunks inside the bbox's window
snapped outward to whole chunks, so they are always ``P × P``. For a real catalog it is
``Grid.from_bbox(bbox, crs=..., chunk=P, shard=P, tile=4·P)``. For a demo world it is laid
on the world's EPSG:3035 truth grid (same origin and 10-m pixels, the shape rounded up to
whole patches), so patches cover the world exactly, none is wasted at its edges, and the
truth lines up pixel for pixel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lamap._inputs import BBoxLike, DateLike, as_bbox, as_date
from lamap.catalog import S2Scene, SearchResult
from lamap.errors import InputError
from lamap.feature_spec import DEFAULT_SPEC, FeatureSpec
from lamap.grid import CRSLike, Grid, Window
from lamap.timesteps import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_MIN_COVERAGE,
    DEFAULT_S1_TOLERANCE_DAYS,
    S2Day,
    TimeSteps,
    plan_time_steps,
    s2_days,
)

__all__ = [
    "DEFAULT_MIN_VALID",
    "DEFAULT_PATCH",
    "DEFAULT_TRAINING_CRS",
    "SPLIT_CODES",
    "SPLIT_RULE",
    "assign_splits",
    "check_patch",
    "expected_valid",
    "find_samples",
    "patch_windows",
    "training_grid",
]

log = logging.getLogger(__name__)

#: Patch edge in pixels (the paper's 256 × 256 inputs).
DEFAULT_PATCH = 256
#: Smallest expected valid fraction of S2 at t over the area for a date to be sampled.
DEFAULT_MIN_VALID = 0.2
#: CRS of the training grid for real catalogs (the ``europe`` grid's).
DEFAULT_TRAINING_CRS = "EPSG:3035"
#: The network's down-sampling factor: patch edges must be multiples of it (MODEL.md).
DOWNSAMPLING = 4
#: Patches per tile edge of the training grid (the tile plays no role in training).
_PATCHES_PER_TILE = 4


def expected_valid(day: S2Day, scenes: Mapping[str, S2Scene]) -> float:
    """Estimate from metadata the valid fraction of one S2 day over the area.

    Parameters
    ----------
    day : S2Day
        The day (its ``coverage`` of the area and its item ids).
    scenes : mapping of str to S2Scene
        Scenes by id.

    Returns
    -------
    float
        ``coverage × (1 − mean eo:cloud_cover / 100)``; a missing cloud cover counts as 0.
    """
    covers = [scenes[i].cloud_cover for i in day.item_ids if i in scenes]
    cloud = sum(c or 0.0 for c in covers) / max(len(covers), 1)
    return day.coverage * (1.0 - min(max(cloud, 0.0), 100.0) / 100.0)


def find_samples(
    result: SearchResult,
    bbox: BBoxLike,
    start: DateLike,
    end: DateLike,
    *,
    min_valid: float = DEFAULT_MIN_VALID,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    spec: FeatureSpec = DEFAULT_SPEC,
) -> list[TimeSteps]:
    """Return every Sentinel-2 day t in ``[start, end]`` that makes a training sample.

    Parameters
    ----------
    result : SearchResult
        One search over the area covering ``[start - lookback - tolerance, end +
        tolerance]`` (:func:`lamap.timesteps.search_window`).
    bbox : str or sequence of float or BBox
        The training area, ``W,S,E,N`` in degrees.
    start, end : date, datetime or str
        First and last candidate t (inclusive), ``YYYY-MM-DD`` as a string.
    min_valid : float
        Smallest :func:`expected_valid` fraction of S2 at t, in [0, 1].
    lookback_days, s1_tolerance_days, min_coverage
        Passed to :func:`lamap.timesteps.plan_time_steps`.
    spec : FeatureSpec
        Its Sentinel-1 inputs (steps, series) are planned too.

    Returns
    -------
    list of TimeSteps
        Sorted by date; each has ``observed`` (S2 at t, the target), t-2 < t-1 < t and the
        S1 passes the spec asks for.

    Raises
    ------
    InputError
        If ``end`` is before ``start`` or an option is out of range.
    """
    first, last = as_date(start, "start"), as_date(end, "end")
    if last < first:
        raise InputError(f"end {last} is before start {first}: give --start <= --end")
    if not 0.0 <= min_valid <= 1.0:
        raise InputError(f"min_valid must be in [0, 1], got {min_valid}")
    area = as_bbox(bbox).to_tuple()
    scenes = {s.id: s for s in result.s2}
    samples = []
    for day in s2_days(result.s2, area):
        if not first <= day.day <= last:
            continue
        plan = _plan(day, scenes, result, area, min_valid, lookback_days, s1_tolerance_days,
                     min_coverage, spec)
        if plan is not None:
            samples.append(plan)
    return samples


def _plan(
    day: S2Day,
    scenes: Mapping[str, S2Scene],
    result: SearchResult,
    area: tuple[float, float, float, float],
    min_valid: float,
    lookback_days: int,
    s1_tolerance_days: int,
    min_coverage: float,
    spec: FeatureSpec,
) -> TimeSteps | None:
    """Return the planner's choice for D = ``day``, or None (logged) if it makes no sample."""
    estimate = expected_valid(day, scenes)
    if estimate < min_valid:
        log.info("%s skipped: S2 valid over at most %.0f%% of the area (< %.0f%%)",
                 day.day, 100 * estimate, 100 * min_valid)
        return None
    plan = plan_time_steps(result.s2, result.s1, day.day, area, lookback_days=lookback_days,
                           s1_tolerance_days=s1_tolerance_days, min_coverage=min_coverage,
                           s1_steps=spec.s1_at_steps, s1_window_days=spec.s1_window_days,
                           s1_series_passes=spec.s1_passes)
    if not isinstance(plan, TimeSteps) or plan.observed is None:
        log.info("%s skipped: %s", day.day, getattr(plan, "reason", "no S2 at t"))
        return None
    return plan


def check_patch(patch: int) -> int:
    """Validate a patch edge: a multiple of the down-sampling factor 4, at least 8.

    Raises
    ------
    InputError
        If it is not.
    """
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 8 or patch % DOWNSAMPLING:
        raise InputError(
            f"patch size {patch!r} must be an integer multiple of {DOWNSAMPLING} (the "
            "network's down-sampling factor) and at least 8 pixels, e.g. 256"
        )
    return patch


def training_grid(
    bbox: BBoxLike,
    patch: int = DEFAULT_PATCH,
    *,
    crs: CRSLike = DEFAULT_TRAINING_CRS,
    truth_grid: Mapping[str, object] | None = None,
) -> tuple[Grid, Window]:
    """Return the training grid and the window of whole patches that covers ``bbox``.

    Parameters
    ----------
    bbox : str or sequence of float or BBox
        ``W,S,E,N`` in degrees.
    patch : int
        Patch edge ``P`` in pixels: the grid's chunk and shard.
    crs : int or str or pyproj.CRS
        CRS of the grid for a real catalog (10-m pixels).
    truth_grid : mapping, optional
        A demo world's ``world.json`` ``truth_grid`` (``crs``, ``transform``, ``shape``):
        the grid is then laid on it (see the module docstring).

    Returns
    -------
    grid : Grid
        Chunk = shard = ``P``, tile = ``4·P``.
    window : Window
        The bbox's pixels snapped outward to whole patches, inside the grid.

    Raises
    ------
    InputError, GridError
        For a bad patch size, or a bbox outside the grid.
    """
    size = check_patch(patch)
    if truth_grid is None:
        grid = Grid.from_bbox(bbox, crs=crs, chunk=size, shard=size,
                              tile=_PATCHES_PER_TILE * size, name="training")
    else:
        grid = _grid_on_truth(truth_grid, size)
    return grid, grid.window_for_bbox(bbox, snap="chunk")


def _grid_on_truth(truth: Mapping[str, object], patch: int) -> Grid:
    transform = truth.get("transform")
    shape = truth.get("shape")
    if not isinstance(transform, Sequence) or not isinstance(shape, Sequence):
        raise InputError(
            f"the world's truth_grid {dict(truth)} lacks 'transform' or 'shape': the world "
            "was written by another lamap; regenerate it with `lamap demo`"
        )
    res = float(transform[0])
    rows, cols = (patch * math.ceil(int(n) / patch) for n in shape)
    return Grid(
        crs=str(truth.get("crs", "EPSG:3035")),
        resolution=res,
        origin=(float(transform[2]), float(transform[5])),
        shape=(rows, cols),
        chunk=patch,
        shard=patch,
        tile=_PATCHES_PER_TILE * patch,
        name="training",
    )


def patch_windows(window: Window, patch: int) -> list[Window]:
    """Return the ``P × P`` patches of a window of whole patches, row-major.

    Raises
    ------
    InputError
        If the window is not made of whole patches on the patch lattice.
    """
    if not window.is_aligned(patch):
        raise InputError(
            f"{window} is not made of whole {patch}-pixel patches: snap it with "
            "grid.window_for_bbox(bbox, snap='chunk') on a grid whose chunk is the patch"
        )
    return window.split(patch)


# --------------------------------------------------------------------------- splits

#: Split codes stored in the cache's ``split`` array.
SPLIT_CODES: dict[str, int] = {"train": 0, "validation": 1, "test": 2, "unique": 3}
#: The rule :func:`assign_splits` applies, in words (recorded in the training cache).
SPLIT_RULE = (
    "by location (patch origin): unique = patches overlapping the demo world's held-out "
    "area, else a seeded permutation of blocks of holdout_block x holdout_block patches "
    "(holdout_fraction of them); of the rest, a seeded permutation gives validation_fraction "
    "to validation, test_fraction to test, the rest to train; every date of a location is "
    "in the same split. non-cloudy / cloudy = test rows with cloudy_past < / >= "
    "cloudy_threshold"
)


def _count(fraction: float, n: int) -> int:
    """Locations for a split: ``round(fraction · n)``, at least 1 when possible."""
    if fraction <= 0 or n == 0:
        return 0
    return max(1, round(fraction * n)) if n >= 3 else round(fraction * n)


def _permuted(keys: Sequence[tuple[int, int]], seed: int, stream: int) -> list[tuple[int, int]]:
    order = np.random.default_rng([seed, stream]).permutation(len(keys))
    ordered = sorted(keys)
    return [ordered[i] for i in order]


def _in_bounds(grid: Grid, patch: Window, bounds: Sequence[float]) -> bool:
    """Whether the patch overlaps ``(xmin, ymin, xmax, ymax)`` with a positive area."""
    xmin, ymin, xmax, ymax = grid.window_bounds(patch)
    return xmin < bounds[2] and xmax > bounds[0] and ymin < bounds[3] and ymax > bounds[1]


def _held_out(
    grid: Grid, patches: Sequence[Window], bounds: Sequence[float] | None, fraction: float,
    block: int, seed: int,
) -> set[tuple[int, int]]:
    if bounds is not None:
        return {(p.row_start, p.col_start) for p in patches if _in_bounds(grid, p, bounds)}
    edge = block * grid.chunk
    blocks = sorted({(p.row_start // edge, p.col_start // edge) for p in patches})
    chosen = set(_permuted(blocks, seed, 1)[: min(_count(fraction, len(blocks)),
                                                   max(len(blocks) - 1, 0))])
    return {(p.row_start, p.col_start) for p in patches
            if (p.row_start // edge, p.col_start // edge) in chosen}


def assign_splits(
    grid: Grid,
    patches: Sequence[Window],
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    holdout_bounds: Sequence[float] | None = None,
    holdout_fraction: float = 0.1,
    holdout_block: int = 4,
) -> dict[tuple[int, int], int]:
    """Assign every patch location to a split (:data:`SPLIT_CODES`), deterministically.

    1. **unique** (held-out locations, never trained on): with ``holdout_bounds`` (a demo
       world's held-out area, in the grid's CRS) every patch overlapping it; otherwise
       blocks of ``holdout_block × holdout_block`` patches of the patch lattice, the first
       ``round(holdout_fraction · blocks)`` of a seeded permutation of the blocks in the
       window (at least one when the fraction is > 0, never all of them).
    2. Of the other locations, a seeded permutation gives the first
       ``round(validation_fraction · n)`` to **validation**, the next
       ``round(test_fraction · n)`` to **test** (each at least one when its fraction is > 0
       and n ≥ 3), the rest to **train**.

    Splits are by location: every date of one location falls in the same split, so a
    field seen in training is never scored at another date in validation or test.

    Parameters
    ----------
    grid : Grid
        The training grid.
    patches : sequence of Window
        The patch windows (:func:`patch_windows`).
    validation_fraction, test_fraction : float
        Fractions of the non-held-out locations.
    seed : int
        Seed of the permutations.
    holdout_bounds : sequence of 4 float, optional
        ``(xmin, ymin, xmax, ymax)`` of a held-out area in the grid's CRS.
    holdout_fraction : float
        Fraction of blocks held out when no ``holdout_bounds`` is given.
    holdout_block : int
        Block edge in patches for that spatial hold-out.

    Returns
    -------
    dict
        ``(row, col)`` patch origin (grid pixels) to split code.

    Raises
    ------
    InputError
        If the fractions leave no training location.
    """
    held = _held_out(grid, patches, holdout_bounds, holdout_fraction, holdout_block, seed)
    rest = _permuted([(p.row_start, p.col_start) for p in patches
                      if (p.row_start, p.col_start) not in held], seed, 2)
    n_val, n_test = _count(validation_fraction, len(rest)), _count(test_fraction, len(rest))
    if rest and n_val + n_test >= len(rest):
        raise InputError(
            f"validation ({validation_fraction}) and test ({test_fraction}) fractions leave "
            f"no training location among {len(rest)}: lower them or enlarge the bbox"
        )
    splits = dict.fromkeys(held, SPLIT_CODES["unique"])
    splits |= dict.fromkeys(rest[:n_val], SPLIT_CODES["validation"])
    splits |= dict.fromkeys(rest[n_val:n_val + n_test], SPLIT_CODES["test"])
    splits |= dict.fromkeys(rest[n_val + n_test:], SPLIT_CODES["train"])
    return splits
