"""One training cache across many demo worlds, with the world recorded per patch.

``build_worlds_cache(catalogs, out_dir)`` takes demo worlds and families of worlds
(:mod:`lamap.synthetic.family`), builds each world's cache with
:func:`lamap.train.cache.build_cache` under ``<out_dir>/parts/world-NN`` (the whole world,
every S2 date), then appends its rows to ``<out_dir>/patches.zarr`` with a ``world``
column and the splits of a multi-world cache, and removes the part. The result is an
ordinary training cache (:func:`lamap.train.patches.open_cache`) with a ``world`` array
(uint16, index into the ``worlds`` attribute: path, spec, held out, grid, rows).

Splits (:data:`WORLD_SPLIT_RULE`): every patch of a held-out world is ``unique`` (the
paper held out countries); the others are split by area, each world on its own, into
train, validation and test (:func:`lamap.train.sample.assign_splits` without a held-out
area: a world's southern quarter is trained on like the rest).

Reuse and resume: the group's ``key`` hashes the worlds (paths and specs), the held-out
worlds, the patch size, the feature spec and the content options. The same request on a
complete cache reuses it; an interrupted build keeps the worlds already appended
(``progress.worlds_done``), cuts rows past them, and goes on (a part cache left behind is
reused or resumed by :func:`build_cache` itself). Another key in the directory is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from lamap import __version__
from lamap.errors import InputError
from lamap.features import DEFAULT_SPEC, FeatureSpec
from lamap.grid import Grid, Window
from lamap.runtime.progress import Progress, Reporter
from lamap.train.cache import build_cache
from lamap.train.cache_options import CacheOptions
from lamap.train.patches import (
    CACHE_FORMAT,
    Cache,
    RowWriter,
    create_arrays,
    group_attrs,
    open_cache,
    read_attrs,
    store_path,
    truncate,
)
from lamap.train.sample import DEFAULT_PATCH, SPLIT_CODES, assign_splits, patch_windows

__all__ = ["WORLD_SPLIT_RULE", "build_worlds_cache", "expand_worlds", "holdout_indices"]

#: The split rule of a multi-world cache, in words (recorded in the cache).
WORLD_SPLIT_RULE = (
    "by world, then by area: every patch of a held-out world is unique; each other world's "
    "patch locations are split on their own (seeded by seed + world index) into "
    "validation_fraction validation, test_fraction test and the rest train, every date of a "
    "location in the same split. non-cloudy / cloudy = test rows with cloudy_past < / >= "
    "cloudy_threshold"
)
#: Rows copied per read and write.
_COPY_ROWS = 16


def expand_worlds(catalogs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Return the world directories of demo worlds and families, in order, each once.

    Raises
    ------
    InputError
        If an entry is neither a demo world nor a family of worlds.
    """
    from lamap.catalog.local import family_worlds, is_family, load_world

    found: list[Path] = []
    for entry in catalogs:
        if is_family(entry):
            found += family_worlds(entry)
        elif (Path(entry) / "world.json").is_file():
            found.append(load_world(entry).root)
        else:
            raise InputError(
                f"{entry} is neither a demo world nor a family of worlds: several catalogs are "
                "only supported for worlds made by `lamap demo` (or `lamap demo --family N`)"
            )
    return list(dict.fromkeys(found))


def holdout_indices(worlds: Sequence[Path], holdout: Sequence[str | int]) -> list[int]:
    """Resolve held-out worlds given by index, directory name or path to indices.

    Raises
    ------
    InputError
        If one matches no world, or every world would be held out while training.
    """
    chosen = []
    for item in holdout:
        text = str(item)
        hits = [i for i, w in enumerate(worlds)
                if text in (str(i), w.name, str(w)) or Path(text).resolve() == w]
        if not hits:
            raise InputError(f"held-out world {text!r} is none of the {len(worlds)} worlds: "
                             f"give an index 0..{len(worlds) - 1}, a directory name "
                             f"({worlds[0].name}, ...) or a path")
        chosen += hits
    return sorted(set(chosen))


def _definition(worlds: Sequence[Path], held: Sequence[int], patch: int, spec: FeatureSpec,
                options: CacheOptions) -> dict[str, Any]:
    from lamap.catalog.local import load_world

    return {"lamap_cache": CACHE_FORMAT, "lamap_worlds": 1,
            "worlds": [{"path": str(w), "spec": load_world(w).meta.get("spec")} for w in worlds],
            "holdout_worlds": list(held), "patch_size": patch, "feature_spec": spec.to_dict(),
            "options": options.content()}


def _key(definition: dict[str, Any]) -> str:
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def build_worlds_cache(
    catalogs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    holdout_worlds: Sequence[str | int] = (),
    patch: int = DEFAULT_PATCH,
    spec: FeatureSpec = DEFAULT_SPEC,
    options: CacheOptions | None = None,
    overwrite: bool = False,
    progress: Progress | bool | None = True,
) -> Cache:
    """Build (or reuse, or resume) one training cache over many demo worlds.

    Parameters
    ----------
    catalogs : sequence of path-like
        Demo-world directories and family directories (:func:`expand_worlds`).
    out_dir : path-like
        The cache directory.
    holdout_worlds : sequence of str or int
        Worlds whose patches are all ``unique`` (index, directory name or path).
    patch : int
        Patch edge in pixels.
    spec : FeatureSpec
        The feature definition.
    options : CacheOptions, optional
        Sampling, filter and split settings (the held-out-area options do not apply).
    overwrite : bool
        Replace a cache with another key in ``out_dir``.
    progress : callable or bool
        Receives the part caches' ``"patches"`` steps and a line per world.

    Returns
    -------
    Cache
        With a ``world`` column in its index.

    Raises
    ------
    InputError
        For entries that are not worlds, unknown held-out worlds, or ``out_dir`` holding a
        cache built with other settings.
    """
    options = options or CacheOptions()
    worlds = expand_worlds(catalogs)
    held = holdout_indices(worlds, holdout_worlds)
    definition = _definition(worlds, held, patch, spec, options)
    key, store, say = _key(definition), store_path(out_dir), Reporter(progress)
    attrs = read_attrs(store)
    if attrs is not None and not overwrite and attrs.get("key") != key:
        raise InputError(f"{store} holds a training cache built from other worlds or settings: "
                         "choose another cache directory, or pass overwrite=True "
                         "(--overwrite) to rebuild it")
    if attrs is not None and attrs.get("key") == key and attrs.get("complete"):
        say.info(f"training cache {store}: reused ({len(worlds)} worlds)")
        return open_cache(out_dir)
    started = time.perf_counter()
    group = _open_group(store, attrs is not None and attrs.get("key") == key and not overwrite,
                        definition, key, patch, spec, options)
    for index, world in enumerate(worlds):
        if index in group_attrs(group)["progress"]["worlds_done"]:
            continue
        part = build_cache(str(world), *_world_range(world), Path(out_dir) / "parts" /
                           f"world-{index:02d}", patch=patch, spec=spec, options=options,
                           progress=progress)
        _append_world(group, part, index, index in held, options)
        shutil.rmtree(part.path)
        say.info(f"training cache: world {index} ({world.name}) appended, {len(part)} patches")
    _finish(group, started)
    return open_cache(out_dir)


def _world_range(world: Path) -> tuple[tuple[float, float, float, float], dt.date, dt.date]:
    from lamap.catalog.local import world_defaults

    bbox, first, last = world_defaults(world)
    return bbox.to_tuple(), first, last


def _open_group(store: Path, resume: bool, definition: dict[str, Any], key: str, patch: int,
                spec: FeatureSpec, options: CacheOptions) -> zarr.Group:
    if resume:
        group = zarr.open_group(store, mode="r+")
        truncate(group, int(group_attrs(group)["progress"]["rows"]))
        return group
    attrs: dict[str, Any] = {"lamap_cache": CACHE_FORMAT, "key": key, "definition": definition,
             "patch_size": patch, "feature_spec": spec.to_dict(),
             "catalog": [w["path"] for w in definition["worlds"]], "options": asdict(options),
             "splits": {"codes": SPLIT_CODES, "rule": WORLD_SPLIT_RULE, "seed": options.seed,
                        "validation_fraction": options.validation_fraction,
                        "test_fraction": options.test_fraction, "holdout": "worlds",
                        "holdout_worlds": definition["holdout_worlds"],
                        "cloudy_threshold": options.cloudy_threshold},
             "cloudy_threshold": options.cloudy_threshold, "truth": True, "worlds": [],
             "created_by": f"lamap {__version__}",
             "progress": {"dates_done": [], "worlds_done": [], "rows": 0}}
    if store.exists():
        shutil.rmtree(store)
    group = zarr.open_group(store, mode="w", zarr_format=3, attributes=attrs)
    create_arrays(group, patch, True, options.rows_per_shard, spec)
    group.create_array("world", shape=(0,), dtype="uint16", chunks=(4096,), fill_value=0,
                       dimension_names=("patch",),
                       attributes={"long_name": "index into the worlds attribute"})
    return group


def _splits(part: Cache, index: int, held: bool, options: CacheOptions) -> np.ndarray:
    """Split code of every row of a world's part cache (see :data:`WORLD_SPLIT_RULE`)."""
    if held:
        return np.full(len(part), SPLIT_CODES["unique"], dtype=np.uint8)
    grid = Grid.from_dict(part.attrs["grid"])
    r0, r1, c0, c1 = part.attrs["window"]
    patches = patch_windows(Window(r0, r1, c0, c1), part.patch_size)
    codes = assign_splits(grid, patches, validation_fraction=options.validation_fraction,
                          test_fraction=options.test_fraction, seed=options.seed + index,
                          holdout_fraction=0.0)
    rows, cols = part.index["row"].to_numpy(), part.index["col"].to_numpy()
    return np.array([codes[(int(r), int(c))] for r, c in zip(rows, cols, strict=True)],
                    dtype=np.uint8)


def _append_world(group: zarr.Group, part: Cache, index: int, held: bool,
                  options: CacheOptions) -> None:
    """Append every row of a world's part cache, then record the world as done."""
    splits = _splits(part, index, held, options)
    source = part.group()
    names = [name for name, _ in group.arrays() if name != "world"]
    writer = RowWriter(group)
    for start in range(0, len(part), _COPY_ROWS):
        stop = min(start + _COPY_ROWS, len(part))
        data = {name: np.asarray(cast(zarr.Array, source[name])[start:stop]) for name in names}
        data["split"] = splits[start:stop]
        data["world"] = np.full(stop - start, index, dtype=np.uint16)
        writer.append([{name: value[i] for name, value in data.items()}
                       for i in range(stop - start)])
    attrs = group_attrs(group)
    entry = {"index": index, "path": str(part.attrs["catalog"]), "held_out": held,
             "spec": part.attrs["definition"]["catalog"].get("world"),
             "grid": part.attrs["grid"], "window": part.attrs["window"], "rows": len(part),
             "samples": len(part.attrs["samples"])}
    progress = attrs["progress"]
    group.attrs.update({"worlds": [*attrs["worlds"], entry], "progress": {
        **progress, "worlds_done": [*progress["worlds_done"], index], "rows": writer.rows}})


def _finish(group: zarr.Group, started: float) -> None:
    rows = int(group_attrs(group)["progress"]["rows"])
    group.attrs["complete"] = {
        "rows": rows, "seconds": round(time.perf_counter() - started, 2),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
