"""The offline Sentinel world: generate it, describe it, find it again.

``generate_world(out, WorldSpec(...))`` writes, under ``out``:

- ``data/sentinel-2-l2a/…/*.tif`` and ``data/sentinel-1-rtc/…/*.tif``: COGs on UTM grids;
- ``stac/collections/*.json`` and ``stac/items/<collection>/*.json``: STAC shaped like
  Planetary Computer's, with absolute hrefs to the COGs;
- ``data/sentinel-2-l2a-clear/…/*.tif``: the same Sentinel-2 products without clouds (SNAP's
  8 bands only, same names, same noise): what S2 would have delivered under a clear sky. Not
  in the STAC catalog; :meth:`World.clear_href` maps a product's href to its clear twin, so a
  cloud-free label goes through exactly the loader's path (product grid, warp, SNAP);
- ``truth.zarr``: the cloud-free truth on the EPSG:3035 truth grid, per Sentinel-2 date:
  true LAI, SNAP LAI of the cloud-free reflectance, and what the clouds did;
- ``world.json``: bbox, CRSs, dates, the held-out area and the paths of all of the above.

Everything is deterministic for a seed: the same spec gives identical bytes.
:mod:`lamap.synthetic.render` renders the acquisitions; this module orders the steps,
writes the STAC collections and ``world.json``, and opens worlds again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from lamap._inputs import as_date
from lamap.errors import InputError
from lamap.lai import SNAP_BANDS
from lamap.runtime.progress import Progress, Reporter
from lamap.synthetic import clouds, render
from lamap.synthetic.geometry import TruthGrid
from lamap.synthetic.render import (  # noqa: F401  (kept importable from here)
    BOA_OFFSET,
    CLEAR_BANDS,
    CLOUD_FLAGS,
    S2_CLEAR_DATA,
    S2_DATA,
    SNAP_INDEX,
)
from lamap.synthetic.schedule import S1Acquisition, S2Acquisition, s1_schedule, s2_schedule
from lamap.synthetic.stac_items import s1_collection, s2_collection

__all__ = ["World", "WorldSpec", "generate_world", "load_world"]

WORLD_FORMAT = 1


@dataclass(frozen=True)
class WorldSpec:
    """What world to generate.

    Parameters
    ----------
    seed : int
        Seed of every random draw.
    size : int
        Edge of the square truth grid in 10-m pixels.
    days : int
        Length of the time series in days.
    start : datetime.date
        First day.
    center : tuple of float
        (lon, lat) of the world's centre; the default straddles UTM zones 31 and 32.
    cloudiness : {"default", "clear", "overcast"}
        Cloudiness regime (:data:`lamap.synthetic.clouds.CLOUD_REGIMES`): ``overcast`` adds
        two stretches of 3 to 6 weeks of overcast skies.
    field_scale : float
        Multiplies the sizes of the farmland's estates, blocks and strips (in [0.25, 4]).
    crops : str
        Crop mix (:data:`lamap.synthetic.landscape.CROP_MIXES`).

    The last three fields' defaults give the demo world of earlier lamap versions, byte for
    byte (:meth:`to_dict` leaves them out of ``world.json`` while they are defaults).
    """

    seed: int = 0
    size: int = 2048
    days: int = 120
    start: dt.date = dt.date(2024, 4, 1)
    center: tuple[float, float] = (6.0, 48.7)
    cloudiness: str = "default"
    field_scale: float = 1.0
    crops: str = "default"

    def __post_init__(self) -> None:
        if self.size < 64 or self.size % 4:
            raise InputError(
                f"world size must be a multiple of 4 and at least 64 pixels, got {self.size}"
            )
        if self.days < 15:
            raise InputError(f"a world needs at least 15 days of data, got days={self.days}")
        lon, lat = self.center
        if not (-180 < lon < 180 and -80 < lat < 84):
            raise InputError(f"world centre {self.center} is outside the UTM latitude range")
        self._check_variety()

    def _check_variety(self) -> None:
        from lamap.synthetic.clouds import CLOUD_REGIMES
        from lamap.synthetic.landscape import CROP_MIXES

        if self.cloudiness not in CLOUD_REGIMES:
            raise InputError(f"unknown cloudiness {self.cloudiness!r}: use one of "
                             f"{sorted(CLOUD_REGIMES)}")
        if not 0.25 <= self.field_scale <= 4.0:
            raise InputError(f"field_scale must be in [0.25, 4], got {self.field_scale}")
        if self.crops not in CROP_MIXES:
            raise InputError(f"unknown crop mix {self.crops!r}: use one of {sorted(CROP_MIXES)}")

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready values, leaving out variety fields at their default."""
        data = {**asdict(self), "start": self.start.isoformat(), "center": list(self.center)}
        defaults = {"cloudiness": "default", "field_scale": 1.0, "crops": "default"}
        return {k: v for k, v in data.items() if defaults.get(k, object()) != v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldSpec:
        """Read :meth:`to_dict`'s output (``world.json``'s ``spec``)."""
        return cls(**{**data, "start": as_date(data["start"], "world spec start"),
                      "center": tuple(data["center"])})


@dataclass(frozen=True)
class World:
    """A generated world, as described by its ``world.json``."""

    root: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Lon/lat bbox (W, S, E, N) of the world's truth grid."""
        return tuple(self.meta["bbox"])  # type: ignore[return-value]

    @property
    def s2_dates(self) -> list[dt.date]:
        """Sentinel-2 acquisition days."""
        return [as_date(d, "world.json s2_dates") for d in self.meta["s2_dates"]]

    @property
    def s1_dates(self) -> list[dt.date]:
        """Sentinel-1 acquisition days."""
        return [as_date(d, "world.json s1_dates") for d in self.meta["s1_dates"]]

    @property
    def collection_paths(self) -> list[Path]:
        """STAC collection files."""
        return [self.root / p for p in self.meta["stac"]["collections"]]

    @property
    def item_paths(self) -> list[Path]:
        """STAC item files."""
        return [self.root / p for p in self.meta["stac"]["items"]]

    @property
    def truth_path(self) -> Path:
        """The cloud-free truth store."""
        return self.root / self.meta["truth"]

    def truth(self) -> xr.Dataset:
        """Open the truth store lazily."""
        return xr.open_zarr(self.truth_path, consolidated=False)

    @property
    def has_clear_s2(self) -> bool:
        """Whether the world wrote cloud-free twins of its Sentinel-2 products."""
        return "clear_s2" in self.meta

    @property
    def clear_bands(self) -> tuple[str, ...]:
        """The bands of the cloud-free twins (SNAP's alone in worlds made before B08 joined)."""
        return tuple(self.meta.get("clear_s2_bands", SNAP_BANDS))

    def clear_href(self, href: str) -> str:
        """Return the cloud-free twin of a Sentinel-2 product's COG.

        Use it as the ``signer`` of :func:`lamap.cube.s2_cube` to read what the loader would
        have read under a clear sky (the bands of :attr:`clear_bands`).

        Raises
        ------
        InputError
            If the world has no clear products (generated by an older lamap) or ``href`` is
            not one of its Sentinel-2 COGs.
        """
        if not self.has_clear_s2:
            raise InputError(
                f"the world at {self.root} has no cloud-free Sentinel-2 products; regenerate it "
                "with `lamap demo --overwrite`"
            )
        observed = f"{os.sep}{S2_DATA}{os.sep}"
        if observed not in href:
            raise InputError(f"{href} is not a Sentinel-2 COG of the world at {self.root}")
        head, _, tail = href.rpartition(observed)
        return f"{head}{os.sep}{self.meta['clear_s2']}{os.sep}{tail}"


def load_world(path: str | os.PathLike[str]) -> World:
    """Open a world generated by :func:`generate_world` (a directory or its ``world.json``).

    Raises
    ------
    InputError
        If there is no world there.
    """
    root = Path(path)
    meta_path = root if root.name == "world.json" else root / "world.json"
    if not meta_path.is_file():
        raise InputError(
            f"no lamap world at {root} (missing world.json); create one with "
            f"`lamap demo --out {root}`"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("lamap_world") != WORLD_FORMAT:
        raise InputError(f"{meta_path} is not a lamap world of format {WORLD_FORMAT}")
    return World(meta_path.parent.resolve(), meta)


# --------------------------------------------------------------------------- generation


def _write_json(path: Path, obj: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")
    return str(path)


def _holdout(truth: TruthGrid) -> dict[str, Any]:
    """Return the held-out area: the southern quarter, never used for training."""
    xmin, ymin, xmax, ymax = truth.bounds
    rows = truth.shape[0]
    cut = ymin + (ymax - ymin) * 0.25
    return {"bounds_3035": [xmin, ymin, xmax, cut], "rows": [rows - rows // 4, rows]}


def iter_render(out: Path, spec: WorldSpec) -> Iterator[str]:
    """Generate the world step by step, yielding a line about each step (for progress)."""
    scene = render.build_scene(spec)
    fractions = clouds.regime_cover_sequence(spec.cloudiness, spec.days // 5 + 1,
                                             render.scene_rng(spec, 5), render.scene_rng(spec, 9))
    s2 = s2_schedule(scene.truth, spec.start, spec.days, fractions)
    s1 = s1_schedule(scene.truth, spec.start, spec.days)
    stac = out / "stac"
    item_files: list[str] = []
    truth_days = []
    for i, acq in enumerate(s2):
        items, truth = render.render_s2(out, scene, i, acq)
        truth_days.append(truth)
        item_files += [
            _write_json(stac / "items" / it["collection"] / f"{it['id']}.json", it) for it in items
        ]
        yield f"S2 {acq.time:%Y-%m-%d} R{acq.relative_orbit:03d} cloud {acq.cloud_fraction:.0%}"
    for i, pass_ in enumerate(s1):
        it = render.render_s1(out, scene, i, pass_)
        item_files.append(_write_json(stac / "items" / it["collection"] / f"{it['id']}.json", it))
        yield f"S1 {pass_.time:%Y-%m-%d} {pass_.orbit_state}"
    s2_dates = [a.time.date() for a in s2]
    render.write_truth(out, scene, s2_dates, truth_days)
    yield "truth.zarr"
    _write_meta(out, spec, scene, s2, s1, item_files)


def _write_meta(
    out: Path,
    spec: WorldSpec,
    scene: render.Scene,
    s2: list[S2Acquisition],
    s1: list[S1Acquisition],
    item_files: list[str],
) -> None:
    bbox = [round(v, 7) for v in scene.truth.lonlat_bbox]
    interval = (
        s2[0].time if s2[0].time < s1[0].time else s1[0].time,
        max(s2[-1].time, s1[-1].time),
    )
    collections = [
        _write_json(
            out / "stac" / "collections" / "sentinel-2-l2a.json", s2_collection(bbox, interval)
        ),
        _write_json(
            out / "stac" / "collections" / "sentinel-1-rtc.json", s1_collection(bbox, interval)
        ),
    ]
    meta = {
        "lamap_world": WORLD_FORMAT,
        "spec": spec.to_dict(),
        "bbox": bbox,
        "truth_grid": scene.truth.to_dict(),
        "crs": {
            "truth": "EPSG:3035",
            "sentinel-2-l2a": [f"EPSG:{g.epsg}" for g in scene.s2_grids],
            "sentinel-1-rtc": [f"EPSG:{scene.s1_grid.epsg}"],
        },
        "s2_dates": [a.time.date().isoformat() for a in s2],
        "s1_dates": sorted({a.time.date().isoformat() for a in s1}),
        "holdout": _holdout(scene.truth),
        "stac": {
            "collections": [os.path.relpath(p, out) for p in collections],
            "items": sorted(os.path.relpath(p, out) for p in item_files),
        },
        "truth": "truth.zarr",
        "clear_s2": S2_CLEAR_DATA,
        "clear_s2_bands": list(CLEAR_BANDS),
    }
    _write_json(out / "world.json", meta)


def generate_world(
    out: str | os.PathLike[str],
    spec: WorldSpec | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | bool | None = None,
) -> World:
    """Generate a synthetic Sentinel-1/Sentinel-2 world into ``out``.

    Parameters
    ----------
    out : path-like
        Target directory; created. It must not hold a world unless ``overwrite``.
    spec : WorldSpec, optional
        What to generate (default: the demo world).
    overwrite : bool
        Replace an existing world at ``out``.
    progress : callable or bool, optional
        Receives a ``"steps"`` :class:`~lamap.runtime.progress.Event` after each step
        (``True``: print the lines).

    Returns
    -------
    World
        The generated world.

    Raises
    ------
    InputError
        If ``out`` exists and is not empty, without ``overwrite``.
    """
    spec = spec or WorldSpec()
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise InputError(
                f"{target} is not empty; choose another --out or pass --overwrite to replace it"
            )
        shutil.rmtree(target)
    work = target.with_name(target.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started, say = time.perf_counter(), Reporter(progress)
    for count, line in enumerate(iter_render(work.resolve(), spec), 1):
        say.step("steps", count, None, line)
    _relocate(work, target)
    say.info(f"done in {time.perf_counter() - started:.1f} s")
    return load_world(target)


def _relocate(work: Path, target: Path) -> None:
    """Move a finished world into place, rewriting absolute hrefs to the final location."""
    old, new = str(work.resolve()), str(target.resolve())
    for item in (work / "stac" / "items").rglob("*.json"):
        item.write_text(item.read_text().replace(old, new))
    if target.exists():
        target.rmdir()
    work.rename(target)
