"""The PyTorch dataset that streams training patches from the Zarr training cache.

:class:`PatchDataset` returns, per patch, the dict the trainer (:mod:`lamap.train.loop`)
takes: the model's inputs (default the fused model's: ``s1 (6, P, P)``, ``lai (2, P, P)``,
``masks (2, 6, P, P)``, ``season (2,)``; ``inputs=`` names others, e.g. li2025's series),
``target (1, P, P)`` (LAI/5), ``weight (1, P, P)`` (the loss mask ``target_mask``) as float32,
``cloudy`` (bool: ``cloudy_past`` at or above the cache's threshold) and ``index`` (the
cache row, int64). With ``crop`` every spatial array is cut to a random ``crop × crop``
window, drawn like the augmentation from ``(rng_seed, epoch, row)``.

* **Lazy and fork-safe.** The dataset holds only the store's path and the row numbers; each
  process opens the Zarr arrays on first use, and open handles are never pickled, so
  DataLoader workers (fork or spawn) each read on their own. The cache stores one Zarr chunk
  per patch row (inside shards), so reading a patch decodes only that patch.
* **in_memory.** Loads the split's rows once, with one ordered read per array, and serves
  patches from NumPy: the fast choice for splits that fit in memory, where per-item Zarr
  reads would dominate an epoch on a small CPU (measured on 2 cores: about 9 ms per 64-pixel
  patch read from Zarr, 0.1 ms from memory). The default, ``None``, loads the split when it
  takes at most ``memory_limit`` bytes (a 256-pixel patch takes 3.2 MB in memory: masks
  stay uint8 until an item is made), so validation and test splits and small training sets
  are held in memory and large ones streamed.
* **Augmentation** (``augment=True``): one of the 8 symmetries of the square (a random
  multiple of 90° rotation, then a random left-right flip), the same for every spatial array
  of a sample, so inputs, masks, target and weight stay aligned; ``season`` is never
  transformed. The draw depends only on ``(rng_seed, epoch, row)``, so it is reproducible
  and independent of the number of workers; the trainer calls :meth:`PatchDataset.set_epoch`
  before each epoch (with persistent DataLoader workers the epoch does not reach them: use
  non-persistent workers to vary augmentation across epochs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

from lamap.errors import InputError
from lamap.train.patches import Cache, open_cache

__all__ = ["DEFAULT_MEMORY_LIMIT", "FUSED_INPUTS", "SPATIAL", "PatchDataset", "augment_arrays",
           "row_bytes"]

#: Largest split loaded into memory by default (bytes).
DEFAULT_MEMORY_LIMIT = 1 << 30

#: The fused model's inputs, read by default.
FUSED_INPUTS = ("s1", "lai", "masks", "season")
#: The spatial arrays of a sample (the last two axes are y, x).
SPATIAL = ("s1", "s1_series", "s1_series_valid", "lai", "masks", "target", "target_mask")


def row_bytes(patch: int, series_passes: int = 0) -> int:
    """Return the bytes one patch takes in memory (float32 inputs and target, uint8 masks)."""
    series = (8 * series_passes + series_passes) * patch * patch + 4 * series_passes
    return (6 + 2 + 1) * 4 * patch * patch + (12 + 1) * patch * patch + 2 * 4 + series


def augment_arrays(arrays: Mapping[str, np.ndarray], rotations: int, flip: bool
                   ) -> dict[str, np.ndarray]:
    """Rotate by ``rotations`` × 90° then optionally flip left-right, every spatial array.

    Parameters
    ----------
    arrays : mapping of str to numpy.ndarray
        A sample; the arrays named in :data:`SPATIAL` have y, x as their last two axes.
    rotations : int
        Quarter turns, counter-clockwise (``numpy.rot90``).
    flip : bool
        Mirror left-right after the rotation.

    Returns
    -------
    dict
        The same keys; non-spatial arrays (``season``) unchanged.
    """
    out = dict(arrays)
    for name in SPATIAL:
        if name in out:
            value = np.rot90(out[name], rotations, axes=(-2, -1))
            out[name] = np.ascontiguousarray(value[..., ::-1] if flip else value)
    return out


class PatchDataset(Dataset[dict[str, torch.Tensor]]):
    """Patches of a training cache as a map-style PyTorch dataset.

    Parameters
    ----------
    cache : Cache or path-like
        An open cache (:func:`lamap.train.cache.open_cache`) or its directory.
    indices : sequence of int or numpy.ndarray
        Cache rows, e.g. ``cache.split_indices("train")``; item ``i`` is row ``indices[i]``.
    augment : bool
        Apply a random symmetry of the square per item (see the module docstring).
    rng_seed : int
        Seed of the augmentation.
    in_memory : bool, optional
        Load the rows into memory when the dataset is made; None (default) does so when
        they take at most ``memory_limit`` bytes.
    memory_limit : int
        Bytes a split may take in memory when ``in_memory`` is None (default 1 GiB).
    cloudy_threshold : float, optional
        ``cloudy_past`` from which ``cloudy`` is true; default: the cache's.
    inputs : sequence of str, optional
        The model inputs to read (default :data:`FUSED_INPUTS`); ``target`` and
        ``target_mask`` are always read.
    crop : int, optional
        Cut every item to a random ``crop × crop`` window (training of small models).

    Raises
    ------
    InputError
        If an index is outside the cache.
    """

    def __init__(
        self,
        cache: Cache | str | os.PathLike[str],
        indices: Sequence[int] | np.ndarray,
        *,
        augment: bool = False,
        rng_seed: int = 0,
        in_memory: bool | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        cloudy_threshold: float | None = None,
        inputs: Sequence[str] | None = None,
        crop: int | None = None,
    ) -> None:
        opened = cache if isinstance(cache, Cache) else open_cache(cache)
        self.read_names = (*(inputs or FUSED_INPUTS), "target", "target_mask")
        if crop is not None and not 0 < crop <= opened.patch_size:
            raise InputError(f"crop must be in (0, {opened.patch_size}] pixels, got {crop}")
        self.crop = crop
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(opened)):
            raise InputError(
                f"indices must be cache rows in [0, {len(opened)}), got {rows.min()} to "
                f"{rows.max()}: take them from cache.split_indices(name)"
            )
        limit = opened.cloudy_threshold if cloudy_threshold is None else cloudy_threshold
        self.store = str(opened.store)
        self.indices = rows
        self.patch_size = opened.patch_size
        self.cloudy = opened.index["cloudy_past"].to_numpy()[rows] >= limit
        self.augment = augment
        self.rng_seed = rng_seed
        self.epoch = 0
        self._arrays: dict[str, zarr.Array] | None = None
        self._pid: int | None = None
        if in_memory is None:
            passes = opened.feature_spec.s1_passes
            in_memory = rows.size * row_bytes(self.patch_size, passes) <= memory_limit
        self.in_memory = in_memory
        self._memory = self._load(rows) if in_memory else None

    def __len__(self) -> int:
        """Return the number of patches."""
        return int(self.indices.size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the augmentation (called by the trainer)."""
        self.epoch = int(epoch)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        """Return patch ``item`` as a dict of tensors (see the module docstring)."""
        if not -len(self) <= item < len(self):
            raise IndexError(f"patch {item} out of range for a dataset of {len(self)}")
        row = int(self.indices[item])
        arrays = self._row(item, row)
        if self.crop is not None:
            arrays = self._cropped(arrays, row)
        if self.augment:
            rng = np.random.default_rng([self.rng_seed, self.epoch, row])
            arrays = augment_arrays(arrays, int(rng.integers(4)), bool(rng.integers(2)))
        return self._tensors(arrays, row, bool(self.cloudy[item]))

    def _cropped(self, arrays: Mapping[str, np.ndarray], row: int) -> dict[str, np.ndarray]:
        assert self.crop is not None
        rng = np.random.default_rng([self.rng_seed, self.epoch, row, 1])
        top, left = (int(v) for v in rng.integers(0, self.patch_size - self.crop + 1, size=2))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return {name: value[..., window[0], window[1]] if name in SPATIAL else value
                for name, value in arrays.items()}

    # ------------------------------------------------------------------ reading

    def _open(self) -> dict[str, zarr.Array]:
        """Return the Zarr arrays, opened once per process (never pickled)."""
        if self._arrays is None or self._pid != os.getpid():
            group = zarr.open_group(self.store, mode="r")
            self._arrays = {name: cast(zarr.Array, group[name]) for name in self.read_names}
            self._pid = os.getpid()
        return self._arrays

    def _load(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Read every row of ``rows`` into memory, one ordered read per array."""
        if rows.size == 0:
            return {}
        unique, inverse = np.unique(rows, return_inverse=True)
        arrays = self._open()
        return {name: np.asarray(arrays[name].oindex[unique])[inverse]
                for name in self.read_names}

    def _row(self, item: int, row: int) -> dict[str, np.ndarray]:
        if self._memory is not None:
            return {name: values[item] for name, values in self._memory.items()}
        return {name: np.asarray(array[row]) for name, array in self._open().items()}

    @staticmethod
    def _tensors(arrays: Mapping[str, np.ndarray], row: int, cloudy: bool
                 ) -> dict[str, torch.Tensor]:
        def f32(value: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

        items = {name: f32(value) for name, value in arrays.items()
                 if name not in ("target", "target_mask")}
        return items | {
            "target": f32(arrays["target"])[None],
            "weight": f32(arrays["target_mask"])[None],
            "cloudy": torch.tensor(cloudy),
            "index": torch.tensor(row, dtype=torch.int64),
        }

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without open Zarr handles (DataLoader workers reopen them)."""
        state = self.__dict__.copy()
        state["_arrays"], state["_pid"] = None, None
        return state
