"""One training cache over several worlds: world per patch, splits by world and area, reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lamap.errors import InputError
from lamap.model import TRAINING_CACHE_SPEC
from lamap.synthetic.family import family_specs, generate_family
from lamap.synthetic.world import WorldSpec, generate_world
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


def test_a_sharpened_label_is_nearer_the_truths_snap(built: Cache, family: Path,
                                                    tmp_path: Path) -> None:
    from dataclasses import replace

    from lamap.catalog.local import world_defaults

    world = expand_worlds([family])[1]
    bbox, first, last = world_defaults(world)
    spec = replace(TRAINING_CACHE_SPEC, s2_sharpen=3)
    sharp = build_cache(str(world), bbox, first, last, tmp_path / "sharp", patch=P,
                        spec=spec, options=OPTIONS, progress=False)
    assert sharp.feature_spec == spec
    plain_rows = np.flatnonzero(built.index["world"].to_numpy() == 1)
    assert len(sharp) == len(plain_rows)
    truth = sharp.read("truth_snap")
    errors = {}
    for name, label in (("plain", built.read("truth_clear", plain_rows)),
                        ("sharp", sharp.read("truth_clear"))):
        ok = np.isfinite(label) & np.isfinite(truth)
        errors[name] = float(np.sqrt(np.mean((label[ok] - truth[ok]) ** 2)))
    assert errors["sharp"] < 0.9 * errors["plain"], errors
    target, mask = sharp.read("target"), sharp.read("target_mask").astype(bool)
    assert np.isfinite(target[mask]).all()


def test_a_world_without_b08_twins_cannot_make_a_sharpened_label(family: Path) -> None:
    import datetime as dt
    from dataclasses import replace

    from lamap.cube import CubeWindow
    from lamap.grid import Grid, Window
    from lamap.lai import SNAP_BANDS
    from lamap.synthetic.world import load_world
    from lamap.timesteps import S2Day
    from lamap.train.truth import WorldTruth

    world = load_world(expand_worlds([family])[0])
    assert "B08" in world.clear_bands
    old = WorldTruth(world.truth(), (0, 0), world.clear_href, SNAP_BANDS)
    grid = Grid.from_bbox(world.bbox, crs="EPSG:3035", chunk=64, shard=64, tile=128)
    steps = type("Steps", (), {"observed": S2Day(dt.date(2024, 4, 1), ("x",), 1.0)})()
    with pytest.raises(InputError, match=r"lack \['B08'\].*lamap demo --overwrite"):
        old.clear_label(steps, [], CubeWindow(grid, Window(0, 8, 0, 8)),  # type: ignore[arg-type]
                        replace(TRAINING_CACHE_SPEC, s2_sharpen=3))


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


def test_evaluate_on_an_unseen_world_with_breakdowns(
        built: Cache, family: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from lamap.cli.main import main
    from lamap.model import ModelConfig, get_architecture, save_checkpoint, seeded_network

    fused = get_architecture("lnb-fused")
    model = save_checkpoint(tmp_path / "m.pt",
                            seeded_network(fused, 0, replace(ModelConfig.tiny(), sigma_head=True)),
                            feature_spec=fused.spec.to_dict())
    world = generate_world(tmp_path / "unseen", WorldSpec(seed=3, size=192, days=40)).root
    main(["evaluate", "--model", str(model), "--world", str(world), "--cache",
          str(tmp_path / "w.cache"), "--fit-cache", str(built.path), "--by",
          "landcover,gap,lai,s1", "--csv", str(tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert "#### unique: pixels cloudy at t vs the cloud-free S2 label" in out
    assert "| random forest |" in out and "| clear persistence |" in out
    for dimension in ("landcover", "gap", "lai", "s1"):
        assert f"(common pixels), RMSE (m²/m²) by {dimension}" in out
    assert "| S1 at t |" in out or "| no S1 at t |" in out
    csv = (tmp_path / "m.csv").read_text()
    assert "cloudy-t-clear|gap=" in csv
    scored = open_cache_index(tmp_path / "w.cache")
    assert set(scored["split_name"]) == {"unique"} and set(scored["world"]) == {0}


def open_cache_index(path: Path) -> Any:
    from lamap.train.patches import open_cache

    return open_cache(path).index


def test_breakdown_bins_add_up() -> None:
    from lamap.train.breakdown import Breakdown, parse_dimensions

    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 6, (2, 8, 8)).astype(np.float32)
    cloudy = rng.random((2, 8, 8)) < 0.7
    gap = rng.integers(-1, 40, (2, 8, 8)).astype(np.int16)
    s1 = np.zeros((2, 6, 8, 8), np.float32)
    s1[0, 4:6] = 0.5
    preds = {"a": ref + 1.0, "b": ref - 0.5}
    breakdown = Breakdown(parse_dimensions("gap,lai,s1"))
    breakdown.add(preds, {"cloudy-t-clear": (ref, cloudy)}, {"truth_gap": gap, "s1": s1})
    scores = breakdown.scores("unique", 5.0)
    for dimension, total in (("gap", int((cloudy & (gap >= 0)).sum())),
                             ("lai", int(cloudy.sum())), ("s1", int(cloudy.sum()))):
        rows = [s for s in scores if s.scoring.startswith(f"cloudy-t-clear|{dimension}=")
                and s.method == "a"]
        assert sum(s.pixels for s in rows) == total
        assert all(s.rmse == pytest.approx(1.0) for s in rows)
    assert [s.pixels for s in scores if s.scoring.endswith("|s1=S1 at t")
            and s.method == "b"] == [int(cloudy[0].sum())]
    with pytest.raises(InputError, match="unknown breakdown"):
        parse_dimensions("cover")
