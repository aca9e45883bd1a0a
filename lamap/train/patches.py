"""The patch store of the training cache, ``<dir>/patches.zarr``: its format, rows, reading.

:func:`lamap.train.cache.build_cache` creates the store (:func:`create_arrays`) and appends
rows to it (:class:`RowWriter`); :func:`open_cache` opens a complete one as a :class:`Cache`
for the trainer and the evaluation.

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
``truth_gap``           (N, P, P)               int16      demo world only: days since the
                                                           pixel's last clear S2 before t, -1
                                                           if none in the world's record
``s1_series``           (N, S, 2, P, P)         float32    with a series (S passes): VV, VH
``s1_series_valid``     (N, S, P, P)            uint8      1 where the pass exists there
``s1_days``             (N, S)                  float32    each pass's day minus t
======================  ======================  =========  ====================================

``s1`` is there when the spec has the Sentinel-1 steps, the ``s1_*`` series arrays when it
has a series (:mod:`lamap.radar_series`); a cache with both serves either kind of model.

Rows are ordered by date, then row, then column. Patch-sized arrays have one Zarr chunk per
row (a dataset reads only the row it needs) inside shards of ``rows_per_shard`` rows (few
files); per-row scalars have chunks of 4096 rows. Dimension names are set, so
``xr.open_zarr("<out_dir>/patches.zarr", consolidated=False)`` also works.

Group attributes: ``lamap_cache`` (format), ``key`` (SHA-256 of ``definition``),
``definition`` (everything that defines the content: catalog (for a demo world its path and
generation spec), bbox, start, end, patch size, feature spec, content options), ``patch_size``,
``feature_spec``, ``catalog``, ``bbox``, ``start``, ``end``, ``options``, ``grid``
(:meth:`lamap.grid.Grid.to_dict` of the training grid), ``window`` (row start, row stop, col
start, col stop of the patches), ``samples`` (:meth:`lamap.timesteps.TimeSteps.to_dict` per date),
``splits`` (codes, rule, fractions, seed, ``cloudy_threshold``), ``cloudy_threshold``,
``truth``, ``created_by``, ``progress`` and, written last, ``complete`` (rows, seconds,
bytes).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import zarr

from lamap.errors import InputError
from lamap.features import FeatureSpec
from lamap.train.sample import SPLIT_CODES
from lamap.train.truth import TRUTH_ARRAYS

__all__ = [
    "CACHE_FORMAT",
    "SPLIT_NAMES",
    "STORE_NAME",
    "Cache",
    "RowWriter",
    "array_layout",
    "create_arrays",
    "group_attrs",
    "open_cache",
    "read_attrs",
    "store_path",
    "truncate",
]

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
_SCALAR_CHUNK = 4096
_ARRAY_ATTRS: dict[str, dict[str, Any]] = {
    "target": {"long_name": "S2 LAI at t divided by lai_scale, 0 where not valid"},
    "date": {"units": "days since 1970-01-01"},
    "past_days": {"long_name": "days from t-2 and from t-1 to t"},
    "split": {"flag_values": list(SPLIT_CODES.values()), "flag_meanings": " ".join(SPLIT_CODES)},
}


# --------------------------------------------------------------------------- layout


def array_layout(patch: int, truth: bool, spec: FeatureSpec | None = None
                 ) -> dict[str, tuple[str, tuple[int, ...], tuple[str, ...]]]:
    """Return every array of the store: name → (dtype, shape after N, dimension names).

    Parameters
    ----------
    patch : int
        Patch edge P in pixels.
    truth : bool
        Whether the demo world's ``truth_*`` arrays are included.
    spec : FeatureSpec, optional
        The feature definition (its Sentinel-1 steps and series); default the fused one.

    Returns
    -------
    dict
        In the order the arrays are created; dimension names exclude the leading ``patch``.
    """
    yx, p, spec = ("y", "x"), patch, spec or FeatureSpec()
    layout: dict[str, tuple[str, tuple[int, ...], tuple[str, ...]]] = {}
    if spec.s1_at_steps:
        layout["s1"] = ("float32", (6, p, p), ("s1_channel", *yx))
    layout |= {
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
    if spec.s1_series:
        n = spec.s1_passes
        layout |= {"s1_series": ("float32", (n, 2, p, p), ("s1_pass", "s1_band", *yx)),
                   "s1_series_valid": ("uint8", (n, p, p), ("s1_pass", *yx)),
                   "s1_days": ("float32", (n,), ("s1_pass",))}
    if truth:
        layout |= {name: (dtype, (p, p), yx) for name, (dtype, _, _) in TRUTH_ARRAYS.items()}
    return layout


def create_arrays(group: zarr.Group, patch: int, truth: bool, rows_per_shard: int,
                  spec: FeatureSpec | None = None) -> None:
    """Create every array of :func:`array_layout` in ``group``, with 0 rows.

    Patch-sized arrays get one chunk per row inside shards of ``rows_per_shard`` rows;
    per-row scalars get chunks of 4096 rows.
    """
    fills = {name: fill for name, (_, fill, _) in TRUTH_ARRAYS.items()}
    attrs = _ARRAY_ATTRS | {name: a for name, (_, _, a) in TRUTH_ARRAYS.items()}
    for name, (dtype, tail, dims) in array_layout(patch, truth, spec).items():
        spatial = len(tail) >= 2
        chunks = (1, *tail) if spatial else (_SCALAR_CHUNK, *tail)
        group.create_array(
            name, shape=(0, *tail), dtype=dtype, chunks=chunks,
            shards=(rows_per_shard, *tail) if spatial else None,
            fill_value=fills.get(name, 0), dimension_names=("patch", *dims),
            attributes=attrs.get(name, {}),
        )


# --------------------------------------------------------------------------- store state


def store_path(out_dir: str | os.PathLike[str]) -> Path:
    """Return the Zarr group of the cache directory ``out_dir``, ``<out_dir>/patches.zarr``."""
    return Path(out_dir) / STORE_NAME


def group_attrs(group: zarr.Group) -> dict[str, Any]:
    """Return the attributes of ``group`` as a plain dict."""
    return dict(group.attrs)


def read_attrs(store: Path) -> dict[str, Any] | None:
    """Return the attributes of the group at ``store``, or None where there is no group."""
    if not (store / "zarr.json").is_file():
        return None
    return group_attrs(zarr.open_group(store, mode="r"))


def truncate(group: zarr.Group, rows: int) -> None:
    """Cut every array of ``group`` to ``rows`` rows (the rows of an unfinished date go)."""
    for _, array in group.arrays():
        if array.shape[0] != rows:
            array.resize((rows, *array.shape[1:]))


class RowWriter:
    """Appends rows to every array of the group; the only writer of the cache.

    Parameters
    ----------
    group : zarr.Group
        The store, opened for writing; its ``progress`` attribute gives the rows and dates
        already written.
    """

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        progress = group_attrs(group)["progress"]
        self.rows = int(progress["rows"])
        self.dates = list(progress["dates_done"])

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` (dicts of array name → one row's value) after the last row."""
        if not rows:
            return
        start, stop = self.rows, self.rows + len(rows)
        for name in rows[0]:
            array = cast(zarr.Array, self.group[name])
            array.resize((stop, *array.shape[1:]))
            array[start:stop] = np.stack([np.asarray(r[name]) for r in rows])
        self.rows = stop

    def date_done(self, day: dt.date) -> None:
        """Record that every row of ``day`` is written (the ``progress`` attribute)."""
        self.dates.append(day.isoformat())
        self.group.attrs["progress"] = {"dates_done": self.dates, "rows": self.rows}


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
        ``s1_valid_fraction``, ``past_t2``, ``past_t1`` (days to t), and ``world`` in a
        cache of several worlds (:mod:`lamap.train.worlds`).
    """

    path: Path
    attrs: Mapping[str, Any] = field(repr=False)
    index: pd.DataFrame = field(repr=False)

    @property
    def store(self) -> Path:
        """The Zarr group ``<path>/patches.zarr``."""
        return store_path(self.path)

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
    if "world" in group:  # a cache of several worlds (lamap.train.worlds)
        frame["world"] = np.asarray(cast(zarr.Array, group["world"])[:])
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
    store = store_path(out_dir)
    attrs = read_attrs(store)
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
