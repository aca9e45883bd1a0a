"""A family of worlds: many small, different, seeded worlds to train and score on.

One world teaches a model its own place, season and weather. :func:`family_specs` draws
``n`` :class:`~lamap.synthetic.world.WorldSpec` that differ in seed, centre (places across
Europe, each on a UTM zone boundary, so every world straddles a zone pair), start date
(spring to late summer), cloudiness regime (default, clear, overcast with 3-6 week overcast
stretches), field sizes and crop mix. :func:`generate_family` writes them as
``DIR/world-00``, ``DIR/world-01``… with ``DIR/family.json`` listing each world's spec;
:func:`family_worlds` finds them again.

Held-out families (``holdout=True``) draw from other places (:data:`HOLDOUT_PLACES`),
another year (2025 instead of 2024: other start dates and day-of-year phases) and seeds
of another range, so a model trained on a training family is scored on worlds whose seed,
place and season it never saw.

Sizes are chosen for training on a small CPU: the default 768 × 768 pixels over 75 days
is exactly nine 256-pixel patches and 15 Sentinel-2 dates (13 of them training dates) per
world. On this project's 2-core machine (shared with other jobs) a world took 26-56 s to
generate (about 265 MB), and 100-460 s to cut into the training cache (19-91 patches of
256 pixels kept per world: overcast worlds give few); ten worlds made 579 patches.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lamap.errors import InputError
from lamap.runtime.progress import Progress, Reporter
from lamap.synthetic.clouds import CLOUD_REGIMES
from lamap.synthetic.landscape import CROP_MIXES
from lamap.synthetic.world import World, WorldSpec, generate_world, load_world

__all__ = [
    "FAMILY_DAYS",
    "FAMILY_FILE",
    "FAMILY_SIZE",
    "HOLDOUT_PLACES",
    "TRAIN_PLACES",
    "family_specs",
    "family_worlds",
    "generate_family",
    "is_family",
]

#: Default edge (pixels) and length (days) of a family's worlds.
FAMILY_SIZE = 768
FAMILY_DAYS = 75
#: The file listing a family's worlds.
FAMILY_FILE = "family.json"
#: Places of training families: (name, lon, lat) on a UTM zone boundary.
TRAIN_PLACES: tuple[tuple[str, float, float], ...] = (
    ("Loire (30|31)", 0.0, 47.4),
    ("Aquitaine (30|31)", 0.0, 44.1),
    ("Netherlands (31|32)", 6.0, 52.6),
    ("Burgundy-Jura (31|32)", 6.0, 46.9),
    ("Saxony-Anhalt (32|33)", 12.0, 51.8),
    ("Bavaria (32|33)", 12.0, 48.3),
    ("Greater Poland (33|34)", 18.0, 52.1),
    ("Slavonia (33|34)", 18.0, 45.6),
    ("Lithuania (34|35)", 24.0, 55.1),
    ("Ireland (29|30)", -6.0, 53.1),
)
#: Places of held-out families, none of them a training place or zone pair at its latitude.
HOLDOUT_PLACES: tuple[tuple[str, float, float], ...] = (
    ("Wallachia (34|35)", 24.0, 44.3),
    ("East Anglia (30|31)", 0.0, 52.4),
    ("Po valley (32|33)", 12.0, 45.1),
    ("Castile (29|30)", -6.0, 41.6),
    ("Silesia (33|34)", 18.0, 50.2),
)
_CROPS_BY_PLACE = {"Ireland": "grassland", "Netherlands": "grassland", "Po valley": "maize",
                   "Aquitaine": "maize", "Slavonia": "steppe", "Wallachia": "steppe",
                   "Saxony-Anhalt": "cereal", "East Anglia": "cereal", "Loire": "cereal"}
#: First and last start day-of-year (mid-March to the end of August).
_START_DOY = (74, 240)


def family_specs(n: int, seed: int = 0, *, size: int = FAMILY_SIZE, days: int = FAMILY_DAYS,
                 holdout: bool = False) -> list[WorldSpec]:
    """Return ``n`` diverse, seeded world specs.

    World ``i`` gets the place ``i`` of a seeded permutation of the places (jittered by up
    to ±0.3° in latitude and ±0.015° in longitude, so it still straddles the boundary), a
    start day spread over mid-March to August (stratified), the cloudiness regimes in turn
    from a seeded offset, a field scale log-uniform in [0.5, 2] and the place's crop mix
    (or a random one).

    Parameters
    ----------
    n : int
        Number of worlds (1 to 100).
    seed : int
        Family seed; the worlds' seeds are derived from it (never 0, the demo world's).
    size, days : int
        Edge in pixels and length in days of every world.
    holdout : bool
        Draw from :data:`HOLDOUT_PLACES`, in 2025, with seeds of another range.

    Returns
    -------
    list of WorldSpec

    Raises
    ------
    InputError
        If ``n`` is out of range (or ``size``/``days`` are, via WorldSpec).
    """
    if not 1 <= n <= 100:
        raise InputError(f"a family has 1 to 100 worlds, got {n}")
    rng = np.random.default_rng([seed, 1 + int(holdout), 16])
    places = HOLDOUT_PLACES if holdout else TRAIN_PLACES
    order = rng.permutation(len(places))
    regimes = sorted(CLOUD_REGIMES)
    first_regime = int(rng.integers(len(regimes)))
    slots = rng.permutation(n)
    specs = []
    for i in range(n):
        name, lon, lat = places[order[i % len(places)]]
        doy = _START_DOY[0] + (slots[i] + rng.random()) * (_START_DOY[1] - _START_DOY[0]) / n
        year = 2025 if holdout else 2024
        specs.append(WorldSpec(
            seed=(2 if holdout else 1) * 100_000 + 1000 * seed + i + 1, size=size, days=days,
            start=dt.date(year, 1, 1) + dt.timedelta(days=int(doy) - 1),
            center=(round(lon + rng.uniform(-0.015, 0.015), 4),
                    round(lat + rng.uniform(-0.3, 0.3), 4)),
            cloudiness=regimes[(first_regime + i) % len(regimes)],
            field_scale=round(float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))), 3),
            crops=_CROPS_BY_PLACE.get(name.split(" (")[0],
                                      sorted(CROP_MIXES)[int(rng.integers(len(CROP_MIXES)))]),
        ))
    return specs


def _place_name(spec: WorldSpec) -> str:
    """Return the named place nearest to a spec's centre."""
    lon, lat = spec.center
    return min((*TRAIN_PLACES, *HOLDOUT_PLACES),
               key=lambda p: (p[1] - lon) ** 2 + (p[2] - lat) ** 2)[0]


def generate_family(
    out: str | os.PathLike[str],
    specs: list[WorldSpec],
    *,
    overwrite: bool = False,
    progress: Progress | bool | None = None,
) -> list[World]:
    """Generate worlds into ``out/world-NN`` and list them in ``out/family.json``.

    ``family.json`` is written last: a directory without it is not a finished family, and a
    rerun regenerates it (worlds already complete with the same spec are kept).

    Parameters
    ----------
    out : path-like
        The family directory; created.
    specs : list of WorldSpec
        From :func:`family_specs`.
    overwrite : bool
        Replace an existing family at ``out``.
    progress : callable or bool, optional
        Receives a ``"worlds"`` step event after each world.

    Returns
    -------
    list of World

    Raises
    ------
    InputError
        If ``out`` holds a finished family or anything else, without ``overwrite``.
    """
    target = Path(out)
    if (target / FAMILY_FILE).exists() and not overwrite:
        raise InputError(f"{target} already holds a family of worlds; choose another --out "
                         "or pass --overwrite to replace it")
    if target.exists() and not overwrite and any(
            not p.name.startswith("world-") for p in target.iterdir()):
        raise InputError(f"{target} is not empty; choose another --out or pass --overwrite")
    target.mkdir(parents=True, exist_ok=True)
    say, worlds, entries = Reporter(progress), [], []
    for i, spec in enumerate(specs):
        started = time.perf_counter()
        world = _world(target / f"world-{i:02d}", spec)
        seconds = time.perf_counter() - started
        worlds.append(world)
        entries.append({"dir": world.root.name, "place": _place_name(spec),
                        "spec": spec.to_dict(), "s2_dates": len(world.s2_dates),
                        "seconds": round(seconds, 1)})
        say.step("worlds", i + 1, len(specs), f"{world.root.name}: {entries[-1]['place']}, "
                 f"{spec.start}, {spec.cloudiness}, {seconds:.0f} s")
    (target / FAMILY_FILE).write_text(json.dumps({"lamap_family": 1, "worlds": entries},
                                                 indent=1) + "\n")
    return worlds


def _world(path: Path, spec: WorldSpec) -> World:
    """Generate one world, or keep it when it is already there with the same spec."""
    if (path / "world.json").is_file():
        found = load_world(path)
        if found.meta.get("spec") == spec.to_dict():
            return found
    return generate_world(path, spec, overwrite=True)  # a leftover of an interrupted run


def is_family(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a family directory (it holds ``family.json``)."""
    return (Path(path) / FAMILY_FILE).is_file()


def family_worlds(path: str | os.PathLike[str]) -> list[Path]:
    """Return the world directories of a family, in order.

    Raises
    ------
    InputError
        If ``path`` holds no ``family.json``.
    """
    root = Path(path)
    if not is_family(root):
        raise InputError(f"no family of worlds at {root} (missing {FAMILY_FILE}); create one "
                         f"with `lamap demo --family N --out {root}`")
    meta: dict[str, Any] = json.loads((root / FAMILY_FILE).read_text())
    return [(root / entry["dir"]).resolve() for entry in meta["worlds"]]
