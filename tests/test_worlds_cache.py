"""One training cache over several worlds: world per patch, splits by world and area, reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lamap.errors import InputError
from lamap.model import TRAINING_CACHE_SPEC
from lamap.synthetic.family import family_specs, generate_family
from lamap.train import worlds as worlds_module
from lamap.train.cache import CacheOptions, build_cache
from lamap.train.patches import Cache
from lamap.train.sample import SPLIT_CODES
from lamap.train.worlds import build_worlds_cache, expand_worlds

P = 64
OPTIONS = CacheOptions(min_valid=0.0)


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("family") / "fam"
    generate_family(out, family_specs(2, 5, size=128, days=25))
    return out


def _build(catalogs: list[str], out: Path, **kwargs: Any) -> Cache:
    return build_worlds_cache(catalogs, out, patch=P, spec=TRAINING_CACHE_SPEC,
                              options=OPTIONS, progress=False, **kwargs)


@pytest.fixture(scope="module")
def built(family: Path, tmp_path_factory: pytest.TempPathFactory) -> Cache:
    return _build([str(family)], tmp_path_factory.mktemp("c") / "c", holdout_worlds=["1"])


def test_world_per_patch_and_splits_by_world_then_area(built: Cache, family: Path) -> None:
    index = built.index
    assert set(index["world"]) == {0, 1}
    held, kept = index[index["world"] == 1], index[index["world"] == 0]
    assert (held["split"] == SPLIT_CODES["unique"]).all(), "a held-out world is all unique"
    assert SPLIT_CODES["unique"] not in set(kept["split"]), "no area of a training world is lost"
    assert SPLIT_CODES["train"] in set(kept["split"])
    for _, rows in kept.groupby(["row", "col"]):
        assert rows["split"].nunique() == 1, "every date of a location is in one split"
    worlds = built.attrs["worlds"]
    assert [w["path"] for w in worlds] == [str(p) for p in expand_worlds([family])]
    assert [w["held_out"] for w in worlds] == [False, True]
    assert sum(w["rows"] for w in worlds) == len(built)
    assert not (built.path / "parts").exists() or not any((built.path / "parts").iterdir())


def test_rows_are_those_of_each_world_alone(built: Cache, family: Path,
                                            tmp_path: Path) -> None:
    world = expand_worlds([family])[1]
    from lamap.catalog.local import world_defaults

    bbox, first, last = world_defaults(world)
    alone = build_cache(str(world), bbox, first, last, tmp_path / "alone", patch=P,
                        spec=TRAINING_CACHE_SPEC, options=OPTIONS, progress=False)
    rows = np.flatnonzero(built.index["world"].to_numpy() == 1)
    assert len(rows) == len(alone)
    for name in ("target", "s1_series", "truth_clear", "date", "row"):
        np.testing.assert_array_equal(built.read(name, rows), alone.read(name))


def test_same_request_is_reused_and_another_refused(built: Cache, family: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a complete cache must not be rebuilt")

    monkeypatch.setattr(worlds_module, "build_cache", fail)
    again = _build([str(family)], built.path, holdout_worlds=["world-01"])
    assert again.key == built.key and len(again) == len(built)
    with pytest.raises(InputError, match="other worlds or settings"):
        _build([str(family)], built.path, holdout_worlds=["0"])
    with pytest.raises(InputError, match="none of the 2 worlds"):
        _build([str(family)], built.path, holdout_worlds=["world-07"])


def test_interrupted_build_resumes_after_the_last_world(
        built: Cache, family: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = worlds_module.build_cache

    def second_fails(catalog: str, *args: Any, **kwargs: Any) -> Cache:
        calls.append(catalog)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(catalog, *args, **kwargs)

    monkeypatch.setattr(worlds_module, "build_cache", second_fails)
    with pytest.raises(KeyboardInterrupt):
        _build([str(family)], tmp_path, holdout_worlds=["1"])
    resumed = _build([str(family)], tmp_path, holdout_worlds=["1"])
    assert len(calls) == 3 and calls[2] == calls[1], "only the unfinished world is built again"
    assert len(resumed) == len(built) and resumed.key == built.key
    np.testing.assert_array_equal(resumed.read("target"), built.read("target"))


def test_only_demo_worlds_can_be_combined(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a demo world nor a family"):
        expand_worlds([tmp_path / "empty"])


def test_train_on_a_family_records_its_worlds(built: Cache, family: Path, tmp_path: Path) -> None:
    from lamap.model import load_checkpoint
    from lamap.train.run import train_from_catalog

    stages = {"epochs": 1, "epochs_enc1": 1, "epochs_enc2": 1, "epochs_sigma": 1}
    run = train_from_catalog([str(family)], None, None, None, tmp_path / "m.pt",
                             cache_dir=built.path, patch=P, preset="cpu-demo",
                             holdout_worlds=["1"], config_overrides=stages, progress=False)
    data = load_checkpoint(run.checkpoint).training["data"]
    worlds = [w["path"] for w in built.attrs["worlds"]]
    assert data["worlds"] == worlds and data["holdout_worlds"] == worlds[1:]
    with pytest.raises(InputError, match="do not apply to several worlds"):
        train_from_catalog([str(family)], "6,48,7,49", None, None, tmp_path / "n.pt",
                           cache_dir=built.path, patch=P, progress=False)
