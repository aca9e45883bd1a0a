"""A small training cache with synthetic but learnable data, for trainer and evaluation tests.

The layout is the one of ``lamap.train.cache`` (a Zarr v3 group ``<dir>/patches.zarr`` with
one row per patch and the attributes ``open_cache`` checks), so the real
``lamap.train.cache.open_cache`` and ``lamap.train.data.PatchDataset`` read it. The world is
simple on purpose: a smooth LAI field per patch that grows linearly in time, radar
backscatter linear in LAI plus speckle, clouds as smooth blobs. The label (SNAP-like LAI,
``truth_snap``) is ``0.9 · truth_lai + 0.1``, so a model can learn it from the past LAI, the
growth it sees, and the radar at t. The cloud-free label through the sensor path
(``truth_clear``) is ``0.95 · truth_snap + 0.05``: close to, not equal to, ``truth_snap``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from lamap.features import FeatureSpec
from lamap.train.cache import CACHE_FORMAT

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2, "unique": 3}
CLOUDY_THRESHOLD = 0.25


def _smooth_field(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    """Smooth random fields in [0, 1], (n, p, p)."""
    y, x = np.meshgrid(np.linspace(0, 1, p), np.linspace(0, 1, p), indexing="ij")
    out = np.zeros((n, p, p))
    for _ in range(3):
        fx, fy = rng.uniform(0.3, 1.5, (2, n, 1, 1))
        phx, phy = rng.uniform(0, 2 * np.pi, (2, n, 1, 1))
        out += np.sin(2 * np.pi * fx * x + phx) * np.cos(2 * np.pi * fy * y + phy)
    return (out - out.min(axis=(1, 2), keepdims=True)) / np.ptp(out, axis=(1, 2), keepdims=True)


def _clouds(rng: np.random.Generator, n: int, p: int, cover: np.ndarray) -> np.ndarray:
    """Boolean cloud maps whose cover fraction is about ``cover`` (n,)."""
    field = _smooth_field(rng, n, p)
    pairs = zip(field, cover, strict=True)
    thresholds = np.array([np.quantile(f, 1 - c) if c > 0 else 2.0 for f, c in pairs])
    return field > thresholds[:, None, None]


def _splits(n: int) -> np.ndarray:
    codes = np.zeros(n, dtype=np.uint8)
    codes[int(0.6 * n):int(0.7 * n)] = 1
    codes[int(0.7 * n):int(0.9 * n)] = 2
    codes[int(0.9 * n):] = 3
    return codes


def make_patches(n: int = 48, patch: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic patches as arrays of the cache layout."""
    rng = np.random.default_rng(seed)
    true_t = 0.3 + 4.5 * _smooth_field(rng, n, patch)
    growth = rng.uniform(-0.04, 0.10, (n, 1, 1))
    d1 = rng.integers(3, 8, n)
    past_days = np.stack([d1 + rng.integers(3, 8, n), d1], axis=1).astype(np.int16)
    days = np.concatenate([past_days, np.zeros((n, 1), np.int16)], axis=1)  # t-2, t-1, t
    true = np.clip(true_t[:, None] - growth[:, None] * days[:, :, None, None], 0.0, 8.0)
    snap = 0.9 * true + 0.1
    past_cover = np.where(rng.random((n, 2)) < 0.3, rng.uniform(0.3, 0.8, (n, 2)),
                          rng.uniform(0.0, 0.15, (n, 2)))
    past_cloud = np.stack([_clouds(rng, n, patch, past_cover[:, k]) for k in range(2)], axis=1)
    valid = ~past_cloud
    masks = np.zeros((n, 2, 6, patch, patch), np.uint8)
    masks[:, :, 0] = valid
    masks[:, :, 3] = valid & (snap[:, :2] >= 0.8)
    masks[:, :, 4] = valid & (snap[:, :2] < 0.8)
    lai = np.where(valid, snap[:, :2] / 5.0, 0.0)
    speckle = rng.normal(0, 0.4, (n, 3, 2, patch, patch))
    vv = -18 + 2.5 * true + speckle[:, :, 0]
    vh = -25 + 2.0 * true + speckle[:, :, 1]
    s1 = np.stack([vv, vh], axis=2).reshape(n, 6, patch, patch) / 30 + 1
    cloud_t = _clouds(rng, n, patch, rng.uniform(0.0, 0.5, n)).astype(np.uint8)
    cloud_t[(cloud_t == 1) & (rng.random(cloud_t.shape) < 0.1)] = 2
    target_mask = (cloud_t == 0).astype(np.uint8)
    doy = rng.uniform(60, 250, n)
    season = np.stack([np.sin(2 * np.pi * doy / 365.25), np.cos(2 * np.pi * doy / 365.25)], 1)
    return {
        "s1": s1.astype(np.float32), "lai": lai.astype(np.float32), "masks": masks,
        "season": season.astype(np.float32),
        "target": np.where(target_mask, snap[:, 2] / 5.0, 0.0).astype(np.float32),
        "target_mask": target_mask, "past_days": past_days,
        "date": (19800 + doy).astype(np.int32), "row": np.arange(n, dtype=np.int32) // 8,
        "col": np.arange(n, dtype=np.int32) % 8, "split": _splits(n),
        "cloudy_past": (1.0 - valid.mean(axis=(2, 3))).mean(axis=1).astype(np.float32),
        "valid_fraction": target_mask.mean(axis=(1, 2)).astype(np.float32),
        "s1_valid_fraction": np.ones(n, dtype=np.float32),
        "truth_lai": true[:, 2].astype(np.float32), "truth_snap": snap[:, 2].astype(np.float32),
        "truth_cloud": cloud_t,
        "truth_clear": (0.95 * snap[:, 2] + 0.05).astype(np.float32),
    }


def with_series(arrays: dict[str, np.ndarray], passes: int = 6,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Add a Sentinel-1 series (from the three steps, with speckle) and ``truth_gap``."""
    rng = np.random.default_rng(seed)
    n, _, p, _ = arrays["s1"].shape
    steps = arrays["s1"].reshape(n, 3, 2, p, p)
    slot = np.minimum(2, np.arange(passes) * 3 // passes)
    series = steps[:, slot] + rng.normal(0, 0.01, (n, passes, 2, p, p))
    valid = np.ones((n, passes, p, p), np.uint8)
    valid[::3, 0] = 0  # every third patch misses its oldest pass: masked, filled with 0
    series[::3, 0] = 0.0
    days = np.broadcast_to(-6.0 * np.arange(passes)[::-1], (n, passes))
    valid_past = arrays["masks"][:, :, 0] > 0
    d2, d1 = (arrays["past_days"][:, k, None, None] for k in (0, 1))
    gap = np.where(valid_past[:, 1], d1, np.where(valid_past[:, 0], d2, 40)).astype(np.int16)
    return arrays | {"s1_series": series.astype(np.float32), "s1_series_valid": valid,
                     "s1_days": days.astype(np.float32), "truth_gap": gap}


def write_cache(directory: Path, arrays: dict[str, np.ndarray], *, patch: int,
                spec: FeatureSpec | None = None) -> Path:
    """Write ``arrays`` as ``<directory>/patches.zarr`` (Zarr v3) and return ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(directory / "patches.zarr", mode="w", zarr_format=3)
    for name, values in arrays.items():
        chunks = (8, *values.shape[1:])
        array = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks)
        array[...] = values
    splits: dict[str, Any] = {"codes": SPLIT_CODES, "cloudy_threshold": CLOUDY_THRESHOLD}
    group.attrs.update({"lamap_cache": CACHE_FORMAT, "key": f"fake-{len(arrays['split'])}-{patch}",
                        "patch_size": patch,
                        "feature_spec": (spec or FeatureSpec()).to_dict(),
                        "splits": splits, "truth": "truth_lai" in arrays, "complete": True})
    return directory


def make_fake_cache(directory: Path, n: int = 48, patch: int = 32, seed: int = 0) -> Path:
    """Create a fake cache of ``n`` patches of ``patch`` × ``patch`` pixels."""
    return write_cache(directory, make_patches(n, patch, seed), patch=patch)
