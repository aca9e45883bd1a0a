"""A family of worlds: varied specs, the default world unchanged, `lamap demo --family`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from lamap.cli.main import main
from lamap.errors import InputError
from lamap.synthetic import clouds, render
from lamap.synthetic.family import (
    HOLDOUT_PLACES,
    TRAIN_PLACES,
    family_specs,
    family_worlds,
    generate_family,
)
from lamap.synthetic.geometry import TruthGrid
from lamap.synthetic.world import WorldSpec, load_world
from tests.conftest import TINY_WORLD

#: SHA-256 of the tiny world's landscape, soil moisture and cloud covers, computed before
#: the family's fields existed: their defaults must keep every world as it was.
_TINY_DRAWS = "c4978b1f5638ee99d5c352515bbc18aacd9de223cf52b2590c3c0cda5fa74937"


def _draws(spec: WorldSpec) -> str:
    scene = render.build_scene(spec)
    covers = clouds.regime_cover_sequence(spec.cloudiness, spec.days // 5 + 1,
                                          render.scene_rng(spec, 5), render.scene_rng(spec, 9))
    digest = hashlib.sha256()
    for array in (scene.land.cover, scene.land.field_id, scene.land.texture,
                  scene.soil_moisture, covers):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_default_fields_keep_the_world_as_it_was() -> None:
    spec = WorldSpec(**TINY_WORLD)
    assert _draws(spec) == _TINY_DRAWS
    assert set(spec.to_dict()) == {"seed", "size", "days", "start", "center"}, (
        "world.json (and so every cache key) must not change for a default world"
    )
    varied = WorldSpec(**TINY_WORLD, cloudiness="overcast", field_scale=2.0, crops="maize")
    assert _draws(varied) != _TINY_DRAWS
    assert WorldSpec.from_dict(varied.to_dict()) == varied


def test_family_specs_are_seeded_and_diverse() -> None:
    specs = family_specs(8, 1)
    assert specs == family_specs(8, 1) and specs != family_specs(8, 2)
    assert len({s.seed for s in specs}) == 8 and 0 not in {s.seed for s in specs}
    assert {s.cloudiness for s in specs} == {"default", "clear", "overcast"}
    assert len({s.crops for s in specs}) >= 3
    assert max(s.field_scale for s in specs) / min(s.field_scale for s in specs) > 1.5
    months = {s.start.month for s in specs}
    assert min(months) <= 4 and max(months) >= 7, "starts must spread from spring to summer"
    pairs = {tuple(TruthGrid(*s.center, (s.size, s.size)).utm_zones()) for s in specs}
    assert len(pairs) >= 4 and all(len(p) == 2 for p in pairs), pairs


def test_held_out_families_share_no_place_year_or_seed() -> None:
    train, held = family_specs(10, 1), family_specs(5, 1, holdout=True)
    assert not {p[1:] for p in TRAIN_PLACES} & {p[1:] for p in HOLDOUT_PLACES}
    assert not {s.seed for s in train} & {s.seed for s in held}
    assert {s.start.year for s in train}.isdisjoint({s.start.year for s in held})
    nearest = [min(TRAIN_PLACES + HOLDOUT_PLACES,
                   key=lambda p, s=s: (p[1] - s.center[0]) ** 2 + (p[2] - s.center[1]) ** 2)
               for s in held]
    assert all(p in HOLDOUT_PLACES for p in nearest)


def test_overcast_regime_has_long_overcast_stretches() -> None:
    def longest(covers: np.ndarray) -> int:
        best = run = 0
        for value in covers:
            run = run + 1 if value >= 0.9 else 0
            best = max(best, run)
        return best

    draws = [clouds.regime_cover_sequence(regime, 24, np.random.default_rng(s),
                                          np.random.default_rng(100 + s))
             for regime in ("overcast", "clear") for s in range(20)]
    overcast, clear = draws[:20], draws[20:]
    assert min(longest(c) for c in overcast) >= 4, "3 to 6 weeks (4+ acquisitions) overcast"
    assert np.mean([c.mean() for c in clear]) < np.mean([c.mean() for c in overcast]) - 0.15
    with pytest.raises(InputError, match="unknown cloudiness"):
        WorldSpec(cloudiness="stormy")
    with pytest.raises(InputError, match="field_scale"):
        WorldSpec(field_scale=10.0)
    with pytest.raises(InputError, match="crop mix"):
        WorldSpec(crops="rice")


def test_field_scale_and_crops_shape_the_landscape() -> None:
    base = WorldSpec(seed=3, size=384, days=15)
    small = render.build_scene(WorldSpec(**{**base.to_dict(), "start": base.start,
                                            "center": base.center, "field_scale": 0.5}))
    large = render.build_scene(WorldSpec(seed=3, size=384, days=15, field_scale=2.0,
                                         crops="grassland"))
    assert len(small.land.fields) > 2 * len(large.land.fields)
    grass = 6  # Cover.GRASSLAND
    assert (large.land.cover == grass).mean() > (small.land.cover == grass).mean()


def test_demo_family_writes_worlds_and_family_json(tmp_path: Path) -> None:
    out = tmp_path / "fam"
    main(["demo", "--family", "2", "--seed", "3", "--size", "128", "--days", "20",
          "--out", str(out)])
    listed = json.loads((out / "family.json").read_text())
    specs = family_specs(2, 3, size=128, days=20)
    assert [w["spec"] for w in listed["worlds"]] == [s.to_dict() for s in specs]
    worlds = family_worlds(out)
    assert [w.name for w in worlds] == ["world-00", "world-01"]
    assert [load_world(w).meta["spec"] for w in worlds] == [s.to_dict() for s in specs]
    again = generate_family(tmp_path / "again", specs[1:])[0]
    for rel in ("truth.zarr/lai/c/0/0/0", "truth.zarr/cover/c/0/0"):
        assert (again.root / rel).read_bytes() == (worlds[1] / rel).read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--family", "2", "--seed", "3", "--out", str(out)])
    assert exit_info.value.code == 2
