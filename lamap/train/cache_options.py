"""The settings of :func:`lamap.train.cache.build_cache` (:class:`CacheOptions`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lamap.errors import InputError
from lamap.timesteps import DEFAULT_LOOKBACK_DAYS, DEFAULT_MIN_COVERAGE, DEFAULT_S1_TOLERANCE_DAYS
from lamap.train.sample import DEFAULT_MIN_VALID, DEFAULT_TRAINING_CRS

__all__ = ["DEFAULT_CLOUDY_THRESHOLD", "CacheOptions"]

#: Default ``cloudy_past`` from which a test patch counts as cloudy.
DEFAULT_CLOUDY_THRESHOLD = 0.25


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
        Time-step planning (:func:`lamap.timesteps.plan_time_steps`).
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
