"""lamap.train: sample dates, the Zarr training cache and the PyTorch dataset (tiny world)."""

from __future__ import annotations

import datetime as dt
import pickle
import time
from typing import Any, cast

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from torch.utils.data import DataLoader

from lamap.catalog import SearchResult, open_catalog, search
from lamap.cube import CubeWindow, scl_cube, tile_cubes
from lamap.errors import InputError
from lamap.features import DEFAULT_SPEC, build_features, to_tensors
from lamap.grid import Grid, Window
from lamap.synthetic.world import World
from lamap.timesteps import TimeSteps, search_window
from lamap.train import cache as cache_mod
from lamap.train.cache import Cache, CacheOptions, build_cache, open_cache, truth_offset
from lamap.train.data import SPATIAL, PatchDataset, augment_arrays
from lamap.train.patches import RowWriter
from lamap.train.sample import assign_splits, find_samples, patch_windows, training_grid
from lamap.train.truth import WorldTruth
from tests._dask import raise_if_dask_computes

P = 64
START, END = dt.date(2024, 4, 1), dt.date(2024, 4, 30)
ONE_THREAD = CacheOptions(threads=1)  # faster here: stackstac opens every COG once per thread
LAYOUT = {
    "s1": ((6, P, P), "float32"),
    "lai": ((2, P, P), "float32"),
    "masks": ((2, 6, P, P), "uint8"),
    "season": ((2,), "float32"),
    "target": ((P, P), "float32"),
    "target_mask": ((P, P), "uint8"),
    "past_days": ((2,), "int16"),
    "date": ((), "int32"),
    "row": ((), "int32"),
    "col": ((), "int32"),
    "split": ((), "uint8"),
    "cloudy_past": ((), "float32"),
    "valid_fraction": ((), "float32"),
    "truth_lai": ((P, P), "float32"),
    "truth_snap": ((P, P), "float32"),
    "truth_cloud": ((P, P), "uint8"),
    "truth_clear": ((P, P), "float32"),
}


@pytest.fixture(scope="module")
def result(tiny_world: World, tiny_api: Any) -> SearchResult:
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    return search(profile, tiny_world.bbox, *search_window([START, END]))


@pytest.fixture(scope="module")
def built(tiny_world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Cache, float]:
    out = tmp_path_factory.mktemp("cache")
    started = time.perf_counter()
    cache = build_cache(str(tiny_world.root), tiny_world.bbox, START, END, out, patch=P,
                        options=ONE_THREAD, progress=False)
    return cache, time.perf_counter() - started


def _build_again(world: World, cache: Cache, **kwargs: Any) -> Cache:
    return build_cache(str(world.root), world.bbox, START, END, cache.path, progress=False,
                       **({"patch": P} | kwargs))


# --------------------------------------------------------------------------- sampling


def _expected_dates(world: World, tolerance: int, lookback: int = 20) -> list[dt.date]:
    """Brute force from the world's acquisition days, independent of the planner."""
    expected = []
    for t in world.s2_dates:
        before = [d for d in world.s2_dates if t - dt.timedelta(days=lookback) <= d < t]
        steps = before[-2:] + [t]
        if len(before) >= 2 and all(
            any(abs((s1 - s).days) <= tolerance for s1 in world.s1_dates) for s in steps
        ):
            expected.append(t)
    return expected


@pytest.mark.parametrize("tolerance", [6, 1])
def test_samples_need_two_earlier_s2_days_and_s1(
    result: SearchResult, tiny_world: World, tolerance: int
) -> None:
    samples = find_samples(result, tiny_world.bbox, START, END, min_valid=0.0,
                           s1_tolerance_days=tolerance, min_coverage=0.0)
    assert [s.date for s in samples] == _expected_dates(tiny_world, tolerance)
    assert samples, "the tiny world should give at least one sample"
    for s in samples:
        assert s.observed is not None and s.observed.day == s.date
        assert s.t2.day < s.t1.day < s.date
        assert all(abs((p.day - d).days) <= tolerance
                   for p, d in zip(s.s1, (s.t2.day, s.t1.day, s.date), strict=True))


def test_cloudy_dates_are_not_sampled(result: SearchResult, tiny_world: World) -> None:
    every = find_samples(result, tiny_world.bbox, START, END, min_valid=0.0)
    kept = find_samples(result, tiny_world.bbox, START, END)
    assert kept and len(kept) < len(every)
    clouds = tiny_world.truth()["cloud"]
    for s in every:  # flags 1 cloud, 2 cirrus (3, shadow, is a valid SCL class)
        layer = clouds.sel(time=np.datetime64(s.date, "ns"))
        cloudy = float(((layer == 1) | (layer == 2)).mean())
        assert (cloudy < 0.6) if s in kept else (cloudy > 0.6), (s.date, cloudy)


# --------------------------------------------------------------------------- the cache


def test_cache_has_the_documented_layout(built: tuple[Cache, float]) -> None:
    cache, _ = built
    group, n = cache.group(), len(cache)
    assert n > 0
    for name, (tail, dtype) in LAYOUT.items():
        array = cast(zarr.Array, group[name])
        assert array.shape == (n, *tail), name
        assert array.dtype == np.dtype(dtype), name
    attrs = cache.attrs
    assert attrs["lamap_cache"] == 2 and attrs["patch_size"] == P and attrs["complete"]
    for key in ("feature_spec", "catalog", "bbox", "start", "end", "options", "splits",
                "created_by", "key", "cloudy_threshold"):
        assert key in attrs, key
    assert cache.feature_spec == DEFAULT_SPEC


def test_cache_rows_are_consistent(built: tuple[Cache, float]) -> None:
    cache, _ = built
    masks, target_mask = cache.read("masks"), cache.read("target_mask")
    assert set(np.unique(masks)) <= {0, 1}
    assert np.all(cache.read("target")[target_mask == 0] == 0)
    valid = cache.read("valid_fraction")
    np.testing.assert_allclose(valid, target_mask.mean(axis=(1, 2)), rtol=1e-6)
    assert (valid >= CacheOptions().min_patch_valid).all()
    cloudy = 1.0 - masks[:, :, 0].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(cache.read("cloudy_past"), cloudy, rtol=1e-6)
    past = cache.read("past_days")
    assert (past[:, 0] > past[:, 1]).all() and (past[:, 1] > 0).all()
    keys = list(zip(cache.index["date"], cache.index["row"], cache.index["col"], strict=True))
    assert keys == sorted(set(keys)), "rows must be unique and ordered by date, row, col"


def test_same_request_reuses_the_cache(
    built: tuple[Cache, float], tiny_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, seconds = built

    def recompute(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cache was recomputed")

    monkeypatch.setattr(cache_mod, "search", recompute)
    monkeypatch.setattr(cache_mod, "_fill", recompute)
    started = time.perf_counter()
    again = _build_again(tiny_world, cache)
    assert time.perf_counter() - started < min(1.0, seconds / 3)
    assert again.key == cache.key and len(again) == len(cache)
    relabelled = _build_again(tiny_world, cache, options=CacheOptions(cloudy_threshold=0.5))
    assert relabelled.key == cache.key and relabelled.cloudy_threshold == 0.5
    assert _build_again(tiny_world, cache).cloudy_threshold == 0.25


@pytest.mark.parametrize(("change", "named"), [
    ({"options": CacheOptions(seed=1)}, "seed"),
    ({"patch": 32}, "patch_size"),
    ({"options": CacheOptions(min_patch_valid=0.5)}, "min_patch_valid"),
])
def test_other_settings_are_refused(
    built: tuple[Cache, float], tiny_world: World, change: dict[str, Any], named: str
) -> None:
    cache, _ = built
    with pytest.raises(InputError, match=named) as info:
        _build_again(tiny_world, cache, **change)
    assert "overwrite" in str(info.value)
    assert open_cache(cache.path).key == cache.key


def _steps(cache: Cache, i: int) -> TimeSteps:
    day = cache.index["date"].iloc[i].date().isoformat()
    return TimeSteps.from_dict(next(s for s in cache.attrs["samples"] if s["date"] == day))


def _patch(cache: Cache, i: int) -> Window:
    row, col = int(cache.index["row"].iloc[i]), int(cache.index["col"].iloc[i])
    return Window(row, row + P, col, col + P)


def test_features_equal_build_features(built: tuple[Cache, float], result: SearchResult) -> None:
    cache, _ = built
    i = len(cache) // 2
    grid, window = Grid.from_dict(cache.attrs["grid"]), Window(*cache.attrs["window"][:2],
                                                               *cache.attrs["window"][2:])
    local = _patch(cache, i).relative_to(window)
    cubes = tile_cubes(_steps(cache, i), result.s2, result.s1, CubeWindow(grid, window))
    direct = to_tensors(build_features(cubes).isel(y=slice(local.row_start, local.row_stop),
                                                   x=slice(local.col_start, local.col_stop)))
    for name in ("s1", "lai", "masks", "season", "target", "target_mask"):
        stored = cache.read(name, [i])[0].astype(np.float32)
        np.testing.assert_array_equal(stored, direct[name], name)


def test_target_mask_is_label_scl_at_t(built: tuple[Cache, float], result: SearchResult) -> None:
    cache, _ = built
    grid = Grid.from_dict(cache.attrs["grid"])
    shadows = 0
    for i in range(len(cache)):
        steps = _steps(cache, i)
        assert steps.observed is not None
        scl = scl_cube(result.s2, [steps.observed], CubeWindow(grid, _patch(cache, i))).values[0]
        label = np.isin(scl, (2, 4, 5, 6))  # cloud shadow (3) is no label
        mask = cache.read("target_mask", [i])[0].astype(bool)
        assert not (mask & ~label).any()
        assert (mask == label).mean() > 0.99
        shadows += int((scl == 3).sum())
    assert shadows > 0, "the tiny world should have cloud shadows at some t"


def test_splits_are_by_location_and_hold_out_the_world_area(
    built: tuple[Cache, float], tiny_world: World
) -> None:
    cache, _ = built
    index, grid = cache.index, Grid.from_dict(cache.attrs["grid"])
    assert (index.groupby(["row", "col"])["split"].nunique() == 1).all()
    hx0, hy0, hx1, hy1 = tiny_world.meta["holdout"]["bounds_3035"]
    for (row, col), split in index.groupby(["row", "col"])["split"].first().items():
        xmin, ymin, xmax, ymax = grid.window_bounds(Window(row, row + P, col, col + P))
        assert (split == 3) == (xmin < hx1 and xmax > hx0 and ymin < hy1 and ymax > hy0)
    parts = {name: set(cache.split_indices(name))
             for name in ("train", "validation", "test", "unique")}
    assert sum(len(p) for p in parts.values()) == len(cache)
    assert set().union(*parts.values()) == set(range(len(cache)))
    assert parts["train"] and parts["unique"]
    for where, clear_name, cloudy_name in [("test", "non-cloudy", "cloudy"),
                                           ("unique", "unique-non-cloudy", "unique-cloudy")]:
        clear, cloudy = set(cache.split_indices(clear_name)), set(cache.split_indices(cloudy_name))
        assert clear | cloudy == parts[where] and not clear & cloudy
        assert all(index["cloudy_past"][i] >= cache.cloudy_threshold for i in cloudy)
        assert all(index["cloudy_past"][i] < cache.cloudy_threshold for i in clear)
    with pytest.raises(InputError, match="unknown split"):
        cache.split_indices("training")


def test_splits_are_deterministic(built: tuple[Cache, float], tiny_world: World) -> None:
    cache, _ = built
    grid, window = training_grid(tiny_world.bbox, P, truth_grid=tiny_world.meta["truth_grid"])
    assert grid.to_dict() == cache.attrs["grid"]
    patches = patch_windows(window, P)
    holdout = tiny_world.meta["holdout"]["bounds_3035"]
    first = assign_splits(grid, patches, holdout_bounds=holdout)
    assert first == assign_splits(grid, patches, holdout_bounds=holdout)
    for row, col, split in zip(cache.index["row"], cache.index["col"], cache.index["split"],
                               strict=True):
        assert first[(row, col)] == split


def test_real_catalogs_hold_out_whole_blocks() -> None:
    grid = Grid(crs="EPSG:3035", resolution=10.0, origin=(0.0, 100_000.0), shape=(768, 768),
                chunk=P, shard=P, tile=4 * P)
    patches = patch_windows(grid.window, P)
    splits = assign_splits(grid, patches, holdout_fraction=0.25, holdout_block=4, seed=3)
    assert splits == assign_splits(grid, patches, holdout_fraction=0.25, holdout_block=4, seed=3)
    unique = [key for key, code in splits.items() if code == 3]
    blocks = {(row // (4 * P), col // (4 * P)) for row, col in unique}
    assert len(blocks) == 2 and len(unique) == 2 * 16  # round(0.25 · 9) whole 4x4 blocks
    codes = list(splits.values())
    assert codes.count(1) == codes.count(2) == round(0.1 * (144 - 32))


def test_truth_is_aligned_with_the_world(built: tuple[Cache, float], tiny_world: World) -> None:
    cache, _ = built
    truth, grid = tiny_world.truth(), Grid.from_dict(cache.attrs["grid"])
    rng = np.random.default_rng(0)
    for i in (0, len(cache) - 1):
        row, col = int(cache.index["row"].iloc[i]), int(cache.index["col"].iloc[i])
        layer = truth.sel(time=cache.index["date"].iloc[i]).load()
        stored = {name: cache.read(f"truth_{name}", [i])[0] for name in ("lai", "snap", "cloud")}
        for r, c in rng.integers(0, P, size=(6, 2)):
            x = grid.origin[0] + (col + c + 0.5) * grid.resolution
            y = grid.origin[1] - (row + r + 0.5) * grid.resolution
            at = layer.sel(x=x, y=y, method="nearest", tolerance=1.0)
            assert stored["lai"][r, c] == at["lai"].item()
            assert stored["snap"][r, c] == at["lai_snap"].item()
            assert stored["cloud"][r, c] == at["cloud"].item()


def test_cloud_free_label_is_the_label_where_clear_and_fills_the_clouds(
    built: tuple[Cache, float],
) -> None:
    cache, _ = built
    rows = np.arange(len(cache))
    clear, target = cache.read("truth_clear", rows), cache.read("target", rows)
    valid, cloud = cache.read("target_mask", rows) > 0, cache.read("truth_cloud", rows)
    scale = cache.feature_spec.lai_scale
    # same pixels, same code: where S2 saw the ground through no cloud at all the twin gives
    # the label itself (bit for bit); thin clouds that SCL does not flag make the rest differ
    seen = valid & (cloud == 0)
    same = np.abs(np.clip(clear[seen], 0.0, 8.0) - target[seen] * scale) < 1e-4
    assert seen.sum() > 1000 and 0.4 < same.mean() < 1.0
    # under clouds it has data, and it is much closer to the cloud-free truth than the label
    under = np.isin(cloud, (1, 2)) & np.isfinite(clear)
    assert under.sum() > 1000
    snap = cache.read("truth_snap", rows)[under]
    clouded = target[under] * scale  # 0 where masked: what a cloud leaves of the label
    assert np.abs(clear[under] - snap).mean() < 0.5 * np.abs(clouded - snap).mean()


def test_truth_outside_the_world_is_padded_and_misalignment_refused(tiny_world: World) -> None:
    grid, _ = training_grid(tiny_world.bbox, P, truth_grid=tiny_world.meta["truth_grid"])
    assert truth_offset(grid, tiny_world.meta["truth_grid"]) == (0, 0)
    shifted = Grid(grid.crs, grid.resolution, (grid.origin[0] + 20.0, grid.origin[1] - 10.0),
                   grid.shape, P, P, 4 * P)
    assert truth_offset(shifted, tiny_world.meta["truth_grid"]) == (1, 2)
    coarse = Grid(grid.crs, 20.0, (grid.origin[0] // 20 * 20, grid.origin[1] // 20 * 20),
                  grid.shape, P, P, 4 * P)
    utm = Grid("EPSG:32632", grid.resolution, grid.origin, grid.shape, P, P, 4 * P)
    for other in (coarse, utm):
        with pytest.raises(InputError, match="not pixel-aligned"):
            truth_offset(other, tiny_world.meta["truth_grid"])
    layer = xr.Dataset({name: (("time", "y", "x"), np.ones((1, 4, 4), dtype))
                        for name, dtype in (("lai", "f4"), ("lai_snap", "f4"), ("cloud", "u1"))},
                       coords={"time": [np.datetime64("2024-04-18", "ns")]}).chunk()
    cut = WorldTruth(layer, (-1, 2), None).patch(dt.date(2024, 4, 18), Window(0, 4, 0, 4))
    lai, cloud = cut["truth_lai"].compute(), cut["truth_cloud"].compute()
    assert np.isnan(lai[0]).all() and np.isnan(lai[:, 2:]).all() and (lai[1:, :2] == 1).all()
    assert (cloud[0] == 255).all() and (cloud[1:, :2] == 1).all()


def test_building_graphs_computes_nothing(tiny_world: World, tiny_api: Any) -> None:
    request = cache_mod._request(str(tiny_world.root), tiny_world.bbox, START, END, P,
                                 DEFAULT_SPEC, CacheOptions())
    profile = open_catalog(str(tiny_world.root)).with_url(tiny_api.url)
    with raise_if_dask_computes():
        plan = cache_mod._make_plan(profile, request)
        graphs = cache_mod._patch_graphs(plan.samples[0], plan, request.spec)
    assert len(graphs) == len(plan.patches) == 9
    assert graphs[0]["s1"].shape == (6, P, P) and graphs[0]["truth_lai"].shape == (P, P)


def test_interrupted_build_is_detected_and_resumed(
    built: tuple[Cache, float], tiny_world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, _ = built
    grid = Grid.from_dict(cache.attrs["grid"])
    xmin, ymin, xmax, ymax = grid.window_bounds(Window(0, 2 * P, 0, 2 * P))
    bbox = grid.bounds_to_lonlat((xmin + 150, ymin + 150, xmax - 150, ymax - 150))
    assert training_grid(bbox, P, truth_grid=tiny_world.meta["truth_grid"])[1] == Window(
        0, 2 * P, 0, 2 * P)
    real_append = RowWriter.append

    def append(writer: Any, rows: Any) -> None:
        real_append(writer, rows)
        if writer.dates:  # rows of the second date are written, the date is not done
            raise RuntimeError("interrupted")

    monkeypatch.setattr(RowWriter, "append", append)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_cache(str(tiny_world.root), bbox, START, END, tmp_path, patch=P,
                    options=ONE_THREAD, progress=False)
    group = zarr.open_group(tmp_path / "patches.zarr", mode="r")
    attrs: dict[str, Any] = dict(group.attrs)
    assert "complete" not in attrs and len(attrs["progress"]["dates_done"]) == 1
    assert cast(zarr.Array, group["s1"]).shape[0] > attrs["progress"]["rows"]
    with pytest.raises(InputError, match="unfinished"):
        open_cache(tmp_path)
    monkeypatch.setattr(RowWriter, "append", real_append)
    real_row, calls = cache_mod._row, []

    def row(*args: Any) -> Any:
        calls.append(args)
        return real_row(*args)

    monkeypatch.setattr(cache_mod, "_row", row)
    resumed = build_cache(str(tiny_world.root), bbox, START, END, tmp_path, patch=P,
                          options=ONE_THREAD, progress=False)
    assert len(calls) == 4, "only the unfinished date is computed again"
    done = resumed.attrs["progress"]["dates_done"]
    assert resumed.attrs["complete"] and len(done) == 2
    assert {args[1].date for args in calls} == {dt.date.fromisoformat(done[1])}
    keys = list(zip(resumed.index["date"], resumed.index["row"], resumed.index["col"],
                    strict=True))
    assert keys == sorted(set(keys)) and len(keys) == len(resumed.read("valid_fraction"))


# --------------------------------------------------------------------------- the dataset


def test_dataset_returns_the_trainer_tensors(built: tuple[Cache, float]) -> None:
    cache, _ = built
    rows = cache.split_indices("train")
    lazy = PatchDataset(cache, rows, in_memory=False)
    memory = PatchDataset(cache.path, rows, in_memory=True)
    assert len(lazy) == len(rows) and memory.in_memory and not lazy.in_memory
    for i in range(len(lazy)):
        item, row = lazy[i], int(rows[i])
        shapes = {k: tuple(v.shape) for k, v in item.items()}
        assert shapes == {"s1": (6, P, P), "lai": (2, P, P), "masks": (2, 6, P, P),
                          "season": (2,), "target": (1, P, P), "weight": (1, P, P),
                          "cloudy": (), "index": ()}
        assert all(item[k].dtype == torch.float32 for k in ("s1", "lai", "masks", "season",
                                                             "target", "weight"))
        assert item["cloudy"].dtype == torch.bool and int(item["index"]) == row
        stored = {name: cache.read(name, [row])[0]
                  for name in ("target_mask", "season", "cloudy_past")}
        np.testing.assert_array_equal(item["weight"][0].numpy(), stored["target_mask"])
        np.testing.assert_array_equal(item["season"].numpy(), stored["season"])
        assert bool(item["cloudy"]) == (stored["cloudy_past"] >= cache.cloudy_threshold)
        for key, value in memory[i].items():
            assert torch.equal(value, item[key]), key


def test_augment_arrays_moves_every_spatial_array_alike() -> None:
    pattern = np.arange(16, dtype=np.float32).reshape(4, 4)
    sample = {"s1": np.stack([pattern] * 6), "lai": np.stack([pattern] * 2),
              "masks": np.broadcast_to(pattern, (2, 6, 4, 4)).copy(), "target": pattern,
              "target_mask": pattern.copy(), "season": np.array([0.3, 0.7], np.float32),
              "s1_series": np.broadcast_to(pattern, (6, 2, 4, 4)).copy(),
              "s1_series_valid": np.broadcast_to(pattern, (6, 4, 4)).copy()}
    seen = set()
    for turns in range(4):
        for flip in (False, True):
            out = augment_arrays(sample, turns, flip)
            expected = np.rot90(pattern, turns)[:, ::-1] if flip else np.rot90(pattern, turns)
            for name in SPATIAL:
                assert np.array_equal(out[name], np.broadcast_to(expected, out[name].shape))
            assert np.array_equal(out["season"], sample["season"])
            seen.add(out["target"].tobytes())
    assert len(seen) == 8
    assert augment_arrays(sample, 1, False)["target"][0, 0] == 3  # top-right moves top-left


def _symmetry(plain: dict[str, torch.Tensor], moved: dict[str, torch.Tensor]) -> tuple[int, bool]:
    """The symmetry that maps ``plain`` onto ``moved``, checked on every spatial array."""
    arrays = {name: plain[name].numpy() for name in ("s1", "lai", "masks", "target", "weight")}
    for turns in range(4):
        for flip in (False, True):
            out = augment_arrays({"s1": arrays["s1"]}, turns, flip)
            if np.array_equal(out["s1"], moved["s1"].numpy()):
                for name in ("lai", "masks", "target", "weight"):
                    again = augment_arrays({"target": arrays[name]}, turns, flip)["target"]
                    assert np.array_equal(again, moved[name].numpy()), name
                return turns, flip
    raise AssertionError("augmentation is not a symmetry of the square")


def test_dataset_augmentation_keeps_inputs_and_target_aligned(built: tuple[Cache, float]) -> None:
    cache, _ = built
    rows = cache.split_indices("train")[:3]
    plain = PatchDataset(cache, rows, in_memory=True)
    augmented = PatchDataset(cache, rows, augment=True, rng_seed=1, in_memory=True)
    used = set()
    for epoch in range(4):
        augmented.set_epoch(epoch)
        for i in range(len(rows)):
            item = augmented[i]
            used.add(_symmetry(plain[i], item))
            assert torch.equal(item["season"], plain[i]["season"])
            assert torch.equal(item["s1"], augmented[i]["s1"]), "same epoch, same draw"
    assert len(used) > 2


def test_dataset_pickles_without_handles_and_loads_in_workers(built: tuple[Cache, float]) -> None:
    cache, _ = built
    dataset = PatchDataset(cache, cache.split_indices("train"), in_memory=False)
    first = dataset[0]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._arrays is None and torch.equal(clone[0]["s1"], first["s1"])
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    batch = next(iter(loader))
    assert batch["s1"].shape == (2, 6, P, P) and batch["cloudy"].dtype == torch.bool
    assert torch.equal(batch["s1"][0], first["s1"])
    with pytest.raises(InputError, match="cache rows"):
        PatchDataset(cache, [len(cache)])
