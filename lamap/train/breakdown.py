"""Where the gap-filling error comes from: scores of pixels cloudy at t, broken down.

:func:`lamap.train.evaluate.evaluate` with ``by=("landcover", "gap", "lai", "s1")`` scores
every method on the pixels cloudy at t that every method predicts (the ``-common`` pixels
of ``cloudy-t-clear`` and ``cloudy-t-snap``), split into bins of one quantity at a time:

* ``landcover``: the world's land cover at the pixel (``truth.zarr`` ``cover``, read from the
  worlds the cache was built from);
* ``gap``: days since the pixel's last clear Sentinel-2 acquisition (``truth_gap``);
* ``lai``: the reference LAI itself, in m²/m²;
* ``s1``: whether the model has Sentinel-1 at t there (both polarisations of the ``s1``
  input at t are not the nodata fill);
* ``world``: the world of a cache of several worlds (:mod:`lamap.train.worlds`).

Each bin is a :class:`~lamap.train.report.Score` whose ``scoring`` is
``"<set>|<dimension>=<bin>"`` (e.g. ``"cloudy-t-clear|gap=16-30 d"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lamap.errors import InputError
from lamap.train.metrics import ErrorSums
from lamap.train.report import Score

__all__ = ["DIMENSIONS", "Breakdown", "CoverLookup", "parse_dimensions"]

#: The quantities a breakdown can bin by.
DIMENSIONS = ("world", "landcover", "gap", "lai", "s1")
#: The reference sets broken down.
_SETS = ("cloudy-t-clear", "cloudy-t-snap")
_GAP_EDGES = (0, 5, 10, 15, 30, 10**4)
_GAP_NAMES = ("<=5 d", "6-10 d", "11-15 d", "16-30 d", ">30 d")
_LAI_EDGES = (-1.0, 0.5, 1.5, 3.0, 4.5, 100.0)
_LAI_NAMES = ("<0.5", "0.5-1.5", "1.5-3", "3-4.5", ">=4.5")


def parse_dimensions(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Read ``"landcover,gap"`` (or a sequence) into dimension names.

    Raises
    ------
    InputError
        For an unknown name.
    """
    if not text:
        return ()
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise InputError(f"unknown breakdown {unknown}: use some of {', '.join(DIMENSIONS)}")
    return tuple(dict.fromkeys(n for n in names if n))


class CoverLookup:
    """Land cover patches of the cache's rows, from the worlds' ``truth.zarr``.

    Parameters
    ----------
    attrs : mapping
        The cache's group attributes: a cache of several worlds (``worlds``) or of one
        demo world (``catalog``, ``grid``).
    patch : int
        Patch edge in pixels.
    """

    def __init__(self, attrs: Mapping[str, Any], patch: int) -> None:
        from lamap.catalog.local import load_world
        from lamap.grid import Grid
        from lamap.train.truth import truth_offset

        entries = attrs.get("worlds") or [{"path": attrs.get("catalog"), "grid": attrs["grid"]}]
        self.patch = patch
        self.covers: list[np.ndarray] = []
        self.offsets: list[tuple[int, int]] = []
        self.names: dict[int, str] = {}
        for entry in entries:
            world = load_world(entry["path"])
            cover = world.truth()["cover"]
            self.covers.append(np.asarray(cover.values))
            self.offsets.append(truth_offset(Grid.from_dict(entry["grid"]),
                                             world.meta["truth_grid"]))
            self.names |= dict(zip(cover.attrs["flag_values"],
                                   cover.attrs["flag_meanings"].split(), strict=True))

    def __call__(self, world: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Return ``(B, P, P)`` cover codes of the patches (0 outside the world)."""
        out = np.zeros((len(rows), self.patch, self.patch), dtype=np.uint8)
        for i, (w, r, c) in enumerate(zip(world, rows, cols, strict=True)):
            cover, (r0, c0) = self.covers[int(w)], self.offsets[int(w)]
            top, left = int(r) + r0, int(c) + c0
            part = cover[max(top, 0):top + self.patch, max(left, 0):left + self.patch]
            out[i, :part.shape[0], :part.shape[1]] = part
        return out


def _bins(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index of each value: ``edges[i] < v <= edges[i + 1]`` → i (-1 outside)."""
    index = np.searchsorted(np.asarray(edges), values, side="left") - 1
    return np.where((values > edges[0]) & (values <= edges[-1]), index, -1)


class Breakdown:
    """Accumulates the error sums of every (set, dimension, bin, method) over batches.

    Parameters
    ----------
    dimensions : sequence of str
        Some of :data:`DIMENSIONS`.
    covers : CoverLookup, optional
        Needed for ``landcover``.
    """

    def __init__(self, dimensions: Sequence[str],
                 covers: Callable[..., np.ndarray] | None = None,
                 worlds: Sequence[str] = ()) -> None:
        if "landcover" in dimensions and covers is None:
            raise InputError("a land cover breakdown needs the worlds' truth: evaluate a cache "
                             "built from demo worlds")
        self.dimensions, self.covers, self.worlds = tuple(dimensions), covers, tuple(worlds)
        self.sums: dict[tuple[str, str, str, str], ErrorSums] = {}
        self.rank: dict[tuple[str, str], int] = {}

    def needs(self) -> tuple[str, ...]:
        """Cache arrays the breakdown reads besides the scored ones."""
        return ("world", "row", "col") if {"landcover", "world"} & set(self.dimensions) else ()

    def _labels(self, dimension: str, data: Mapping[str, np.ndarray],
                ref: np.ndarray) -> tuple[np.ndarray, Sequence[str] | Mapping[int, str]]:
        if dimension == "gap":
            gap = data["truth_gap"].astype(np.int64)
            return np.where(gap < 0, -1, _bins(gap, (-1, *_GAP_EDGES[1:]))), _GAP_NAMES
        if dimension == "lai":
            return _bins(ref, _LAI_EDGES), _LAI_NAMES
        if dimension == "world":
            world = data.get("world", np.zeros(len(ref), dtype=np.int64)).astype(np.int64)
            found = self.worlds or tuple(str(i) for i in range(int(world.max()) + 1))
            return np.broadcast_to(world[:, None, None], ref.shape), found
        if dimension == "s1":
            s1 = data["s1"][:, 4:6]
            return (s1 != 0).all(axis=1).astype(np.int64), ("no S1 at t", "S1 at t")
        assert self.covers is not None
        world = data.get("world", np.zeros(len(ref), dtype=np.int64))
        cover = self.covers(world, data["row"], data["col"]).astype(np.int64)
        return cover, getattr(self.covers, "names", {})

    def add(self, preds: Mapping[str, np.ndarray],
            refs: Mapping[str, tuple[np.ndarray, np.ndarray]],
            data: Mapping[str, np.ndarray]) -> None:
        """Add one batch: predictions by method, references by set, the cache arrays."""
        finite = np.logical_and.reduce([np.isfinite(p) for p in preds.values()])
        for name in _SETS:
            if name not in refs:
                continue
            ref, where = refs[name]
            common = where & finite
            for dimension in self.dimensions:
                labels, names = self._labels(dimension, data, ref)
                for code in np.unique(labels[common]):
                    if code < 0:
                        continue
                    mask = common & (labels == code)
                    label = names[int(code)] if isinstance(names, Mapping) else names[code]
                    self.rank[(dimension, str(label))] = int(code)
                    for method, pred in preds.items():
                        key = (name, dimension, str(label), method)
                        self.sums.setdefault(key, ErrorSums()).add(pred, ref, where=mask)

    def scores(self, split: str, lai_scale: float) -> list[Score]:
        """One score per (set, dimension, bin, method), bins in their natural order."""
        out = []
        order = sorted(self.sums, key=lambda k: (_SETS.index(k[0]), DIMENSIONS.index(k[1]),
                                                 self.rank[(k[1], k[2])]))
        for name, dimension, label, method in order:
            sums = self.sums[(name, dimension, label, method)]
            if sums.n:
                out.append(Score(split, f"{name}|{dimension}={label}", method, sums.rmse,
                                 sums.rmse / lai_scale, sums.r2, sums.n, math.nan))
        return out
