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
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from shapely.geometry import box

from lamap.errors import InputError
from lamap.lai import SNAP_BANDS, snap_lai
from lamap.synthetic import clouds, landscape, optical, radar
from lamap.synthetic.cog import write_cog
from lamap.synthetic.geometry import ProductGrid, TruthGrid, utm_epsg
from lamap.synthetic.schedule import S1Acquisition, S2Acquisition, s1_schedule, s2_schedule
from lamap.synthetic.solar import sun_position
from lamap.synthetic.stac_items import (
    S2_BAND_INFO,
    s1_collection,
    s1_item,
    s1_item_id,
    s2_collection,
    s2_item,
)

__all__ = ["World", "WorldSpec", "generate_world", "load_world"]

WORLD_FORMAT = 1
#: Indices of SNAP's bands (B03 B04 B05 B06 B07 B8A B11 B12) in ``optical.S2_BANDS``.
SNAP_INDEX = [optical.S2_BANDS.index(b) for b in SNAP_BANDS]
BOA_OFFSET = 1000
#: Where a world keeps its Sentinel-2 products and their cloud-free twins.
S2_DATA = os.path.join("data", "sentinel-2-l2a")
S2_CLEAR_DATA = os.path.join("data", "sentinel-2-l2a-clear")
CLOUD_FLAGS = {"clear": 0, "cloud": 1, "cirrus": 2, "shadow": 3}


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
    """

    seed: int = 0
    size: int = 2048
    days: int = 120
    start: dt.date = dt.date(2024, 4, 1)
    center: tuple[float, float] = (6.0, 48.7)

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
        return [dt.date.fromisoformat(d) for d in self.meta["s2_dates"]]

    @property
    def s1_dates(self) -> list[dt.date]:
        """Sentinel-1 acquisition days."""
        return [dt.date.fromisoformat(d) for d in self.meta["s1_dates"]]

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

    def clear_href(self, href: str) -> str:
        """Return the cloud-free twin of a Sentinel-2 product's COG.

        Use it as the ``signer`` of :func:`lamap.cube.s2_cube` to read what the loader would
        have read under a clear sky (SNAP's bands only).

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


@dataclass
class _Scene:
    """State of the world shared by all acquisitions."""

    spec: WorldSpec
    truth: TruthGrid
    land: landscape.Landscape
    s2_grids: list[ProductGrid]
    s1_grid: ProductGrid
    soil_moisture: np.ndarray


def _rng(spec: WorldSpec, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, *key]))


def _tile_name(epsg: int, lat: float) -> str:
    zone = epsg % 100
    band = "CDEFGHJKLMNPQRSTUVWX"[int((lat + 80) // 8)]
    return f"{zone:02d}{band}{'GL'[zone % 2]}{'PU'[zone % 2]}"


def _build_scene(spec: WorldSpec) -> _Scene:
    truth = TruthGrid(spec.center[0], spec.center[1], (spec.size, spec.size))
    land = landscape.make_landscape(truth.shape, _rng(spec, 1), resolution=truth.resolution)
    west, south, east, north = truth.lonlat_bbox
    s2_grids = []
    for epsg in truth.utm_zones():
        zone_west = (epsg % 100 - 1) * 6.0 - 180.0
        overlap = 0.1 * (east - west)
        part = box(max(west, zone_west - overlap), south, min(east, zone_west + 6 + overlap), north)
        s2_grids.append(ProductGrid.covering(_tile_name(epsg, south), epsg, part, truth))
    s1_epsg = utm_epsg(*spec.center)
    s1_grid = ProductGrid.covering("S1", s1_epsg, box(west, south, east, north), truth)
    moisture = radar.soil_moisture_series(_days(spec), _rng(spec, 2))
    return _Scene(spec, truth, land, s2_grids, s1_grid, moisture)


def _days(spec: WorldSpec) -> np.ndarray:
    return np.array(
        [spec.start + dt.timedelta(days=i) for i in range(spec.days)], dtype="datetime64[D]"
    )


def _clear_reflectance(
    scene: _Scene, lai: np.ndarray, angles: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Cloud-free S2 reflectance (rows, cols, 10) on the truth grid."""
    land = scene.land
    fields = land.fields
    fid = land.field_id
    sun_zenith, view_zenith, relative_azimuth = angles
    refl = optical.canopy_reflectance(
        lai,
        fields.cab[fid],
        fields.cm[fid],
        fields.rsoil[fid],
        fields.psoil[fid],
        sun_zenith,
        view_zenith,
        relative_azimuth,
    )
    water = land.cover == landscape.Cover.WATER
    built = land.cover == landscape.Cover.BUILT
    refl[water] = optical.water_reflectance((int(water.sum()),), rng)
    if built.any():
        urban = optical.builtup_reflectance((int(built.sum()),), rng)
        green = np.clip(lai[built] / 3.0, 0.0, 1.0)[:, None]
        refl[built] = (1 - green) * urban + green * refl[built]
    return refl


def _s2_angles(scene: _Scene, acq: S2Acquisition) -> tuple[float, float, float, float]:
    """(sun zenith, view zenith, relative azimuth, sun azimuth) in degrees."""
    sun_zenith, sun_azimuth = sun_position(acq.time, *scene.spec.center)
    relative = abs((float(sun_azimuth) - acq.view_azimuth + 180.0) % 360.0 - 180.0)
    return float(sun_zenith), acq.view_zenith, relative, float(sun_azimuth)


def _to_dn(reflectance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    dn = np.rint(reflectance * 10000.0 + BOA_OFFSET)
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    dn[~valid] = 0
    return dn


def _block_mean(values: np.ndarray) -> np.ndarray:
    rows, cols = values.shape[0] // 2, values.shape[1] // 2
    trimmed = values[: 2 * rows, : 2 * cols]
    return trimmed.reshape(rows, 2, cols, 2, *values.shape[2:]).mean(axis=(1, 3))


def _cloud_flags(scl: np.ndarray) -> np.ndarray:
    flags = np.zeros(scl.shape, dtype=np.uint8)
    flags[(scl == 8) | (scl == 9)] = CLOUD_FLAGS["cloud"]
    flags[scl == 10] = CLOUD_FLAGS["cirrus"]
    flags[scl == 3] = CLOUD_FLAGS["shadow"]
    return flags


def _scene_properties(
    scl: np.ndarray, valid: np.ndarray, sun: tuple[float, float]
) -> dict[str, Any]:
    """eo:cloud_cover and the s2:*_percentage statistics of one product."""
    n_valid = max(int(valid.sum()), 1)

    def pct(*classes: int) -> float:
        return round(100.0 * float(np.isin(scl[valid], classes).sum()) / n_valid, 6)

    return {
        "eo:cloud_cover": pct(8, 9, 10),
        "s2:mean_solar_zenith": round(sun[0], 10),
        "s2:mean_solar_azimuth": round(sun[1], 10),
        "s2:water_percentage": pct(6),
        "s2:vegetation_percentage": pct(4),
        "s2:not_vegetated_percentage": pct(5),
        "s2:dark_features_percentage": pct(2),
        "s2:unclassified_percentage": pct(7),
        "s2:cloud_shadow_percentage": pct(3),
        "s2:thin_cirrus_percentage": pct(10),
        "s2:medium_proba_clouds_percentage": pct(8),
        "s2:high_proba_clouds_percentage": pct(9),
        "s2:nodata_pixel_percentage": round(100.0 * (1 - valid.mean()), 6),
        "s2:snow_ice_percentage": 0.0,
    }


def _write_bands(
    folder: Path,
    stem: str,
    grid: ProductGrid,
    valid: tuple[np.ndarray, np.ndarray],
    reflectance: np.ndarray,
    bands: Sequence[str],
) -> dict[str, str]:
    """Write the COGs of ``bands`` of one product and return band → absolute path.

    ``valid`` is the product's data mask at 10 m and at 20 m.
    """
    valid10, valid20 = valid
    refl10 = grid.sample(reflectance, 10)
    refl20 = _block_mean(refl10)
    hrefs: dict[str, str] = {}
    for band in bands:
        b = optical.S2_BANDS.index(band)
        res = S2_BAND_INFO[band][0]
        data = refl10[..., b] if res == 10 else refl20[..., b]
        inside = valid10 if res == 10 else valid20
        path = folder / f"{stem}_{band}_{res}m.tif"
        write_cog(path, _to_dn(data, inside), epsg=grid.epsg, transform=grid.transform_at(res),
                  nodata=0)
        hrefs[band] = str(path.resolve())
    return hrefs


def _write_s2(
    out: Path,
    scene: _Scene,
    acq: S2Acquisition,
    reflectance: tuple[np.ndarray, np.ndarray],
    scl: np.ndarray,
    sun: tuple[float, float],
) -> list[dict[str, Any]]:
    """Write the S2 products of one datatake (one per UTM grid) and return their items.

    ``reflectance`` is (observed, clear) on the truth grid; the clear twin gets SNAP's bands
    under :data:`S2_CLEAR_DATA`, with the same file names.
    """
    observed, clear = reflectance
    items = []
    for grid in scene.s2_grids:
        day = os.path.join(grid.name, acq.time.strftime("%Y%m%d"))
        stem = f"T{grid.name}_{acq.time:%Y%m%dT%H%M%S}"
        folder = out / S2_DATA / day
        valid10 = grid.valid(acq.swath, 10)
        valid20 = _block_mean(valid10.astype(np.float32)) == 1.0
        valid = (valid10, valid20)
        hrefs = _write_bands(folder, stem, grid, valid, observed, optical.S2_BANDS)
        _write_bands(out / S2_CLEAR_DATA / day, stem, grid, valid, clear, SNAP_BANDS)
        scl20 = np.where(valid20, grid.sample(scl, 20), 0).astype(np.uint8)
        path = folder / f"{stem}_SCL_20m.tif"
        write_cog(
            path,
            scl20,
            epsg=grid.epsg,
            transform=grid.transform_at(20),
            nodata=0,
            resampling="nearest",
        )
        hrefs["SCL"] = str(path.resolve())
        footprint = grid.footprint(acq.swath)
        properties = _scene_properties(scl20, valid20, sun)
        items.append(s2_item(acq, grid, footprint, hrefs, properties))
    return items


def _render_s2(
    out: Path, scene: _Scene, index: int, acq: S2Acquisition
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Render one Sentinel-2 datatake: products, items and the truth of that day."""
    rng = _rng(scene.spec, 3, index)
    date = acq.time.date()
    lai = landscape.lai_map(scene.land, date)
    sun_zenith, view_zenith, relative, sun_azimuth = _s2_angles(scene, acq)
    clear = _clear_reflectance(scene, lai, (sun_zenith, view_zenith, relative), rng)
    sky = clouds.cloud_scene(
        scene.truth.shape,
        rng,
        cover_fraction=acq.cloud_fraction,
        sun_zenith=sun_zenith,
        sun_azimuth=sun_azimuth,
        resolution=scene.truth.resolution,
    )
    observed = optical.cloudy_reflectance(clear, sky.opacity, sky.cirrus, sky.shadow)
    noise = rng.normal(0.0, 0.002, observed.shape).astype(np.float32)
    scl = clouds.combine_scl(clouds.surface_scl(scene.land.cover, lai, rng), sky.scl_overlay())
    measured = (np.clip(observed + noise, 0.0, 1.0), np.clip(clear + noise, 0.0, 1.0))
    items = _write_s2(out, scene, acq, measured, scl, (sun_zenith, sun_azimuth))
    truth = {
        "lai": lai.astype(np.float32),
        "lai_snap": snap_lai(clear[..., SNAP_INDEX], view_zenith, sun_zenith, relative).astype(
            np.float32
        ),
        "cloud": _cloud_flags(scl),
    }
    return items, truth


def _render_s1(out: Path, scene: _Scene, index: int, acq: S1Acquisition) -> dict[str, Any]:
    """Render one Sentinel-1 pass (VV and VH gamma0) and return its item."""
    rng = _rng(scene.spec, 4, index)
    grid = scene.s1_grid
    land = scene.land
    lai = landscape.lai_map(land, acq.time.date())
    day = (acq.time.date() - scene.spec.start).days
    moisture = np.clip(
        scene.soil_moisture[day] * land.fields.soil_moisture_factor[land.field_id], 0.02, 0.5
    )
    _, x = scene.truth.coords()
    ramp = (x - x[0]) / max(x[-1] - x[0], 1.0)
    incidence = np.broadcast_to(
        acq.incidence[0] + (acq.incidence[1] - acq.incidence[0]) * ramp, lai.shape
    )
    valid = grid.valid(acq.swath, 10)
    hrefs = {}
    folder = out / "data" / "sentinel-1-rtc" / acq.time.strftime("%Y%m%d")
    item_id = s1_item_id(acq)
    for pol in ("vv", "vh"):
        gamma0 = _backscatter(land, lai, moisture, incidence, pol.upper(), rng)
        data = np.where(valid, grid.sample(gamma0, 10), -32768.0).astype(np.float32)
        path = folder / f"{item_id}_{pol}.tif"
        write_cog(path, data, epsg=grid.epsg, transform=grid.transform_at(10), nodata=-32768.0)
        hrefs[pol] = str(path.resolve())
    return s1_item(acq, grid, grid.footprint(acq.swath), hrefs)


def _backscatter(
    land: landscape.Landscape,
    lai: np.ndarray,
    moisture: np.ndarray,
    incidence: np.ndarray,
    pol: str,
    rng: np.random.Generator,
) -> np.ndarray:
    gamma0 = radar.backscatter(
        lai,
        moisture,
        incidence,
        polarisation=pol,  # type: ignore[arg-type]
        rng=rng,
    )
    forest = land.cover == landscape.Cover.FOREST
    gamma0[forest] = radar.backscatter(
        lai[forest],
        moisture[forest],
        incidence[forest],
        polarisation=pol,  # type: ignore[arg-type]
        coefficients=radar.FOREST[pol],
        rng=rng,
    )
    water = land.cover == landscape.Cover.WATER
    built = land.cover == landscape.Cover.BUILT
    gamma0[water] = radar.water_backscatter((int(water.sum()),), incidence[water], pol, rng)  # type: ignore[arg-type]
    gamma0[built] = radar.urban_backscatter((int(built.sum()),), incidence[built], pol, rng)  # type: ignore[arg-type]
    return gamma0


def _write_json(path: Path, obj: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")
    return str(path)


def _write_truth(
    out: Path, scene: _Scene, dates: list[dt.date], days: list[dict[str, np.ndarray]]
) -> None:
    y, x = scene.truth.coords()
    dims = ("time", "y", "x")
    stack = {name: np.stack([d[name] for d in days]) for name in ("lai", "lai_snap", "cloud")}
    ds = xr.Dataset(
        {
            "lai": (dims, stack["lai"], {"long_name": "true LAI", "units": "m2 m-2"}),
            "lai_snap": (
                dims,
                stack["lai_snap"],
                {"long_name": "SNAP LAI of the cloud-free reflectance", "units": "m2 m-2"},
            ),
            "cloud": (
                dims,
                stack["cloud"],
                {"flag_values": list(CLOUD_FLAGS.values()), "flag_meanings": " ".join(CLOUD_FLAGS)},
            ),
            "cover": (
                ("y", "x"),
                scene.land.cover,
                {
                    "flag_values": [int(c) for c in landscape.Cover],
                    "flag_meanings": " ".join(c.name.lower() for c in landscape.Cover),
                },
            ),
            "field_id": (("y", "x"), scene.land.field_id),
        },
        coords={"time": np.array(dates, dtype="datetime64[ns]"), "y": y, "x": x},
        attrs={"crs": "EPSG:3035", "transform": list(scene.truth.transform)[:6]},
    )
    chunks: dict[Hashable, int] = {"time": 1, "y": 512, "x": 512}
    encoding = {
        name: {"chunks": tuple(min(chunks[d], ds[name].sizes[d]) for d in ds[name].dims)}
        for name in ds.data_vars
    }
    ds.to_zarr(out / "truth.zarr", mode="w", zarr_format=3, consolidated=False, encoding=encoding)


def _holdout(truth: TruthGrid) -> dict[str, Any]:
    """Return the held-out area: the southern quarter, never used for training."""
    xmin, ymin, xmax, ymax = truth.bounds
    rows = truth.shape[0]
    cut = ymin + (ymax - ymin) * 0.25
    return {"bounds_3035": [xmin, ymin, xmax, cut], "rows": [rows - rows // 4, rows]}


def iter_render(out: Path, spec: WorldSpec) -> Iterator[str]:
    """Generate the world step by step, yielding a line about each step (for progress)."""
    scene = _build_scene(spec)
    fractions = clouds.cloud_cover_sequence(spec.days // 5 + 1, _rng(spec, 5))
    s2 = s2_schedule(scene.truth, spec.start, spec.days, fractions)
    s1 = s1_schedule(scene.truth, spec.start, spec.days)
    stac = out / "stac"
    item_files: list[str] = []
    truth_days = []
    for i, acq in enumerate(s2):
        items, truth = _render_s2(out, scene, i, acq)
        truth_days.append(truth)
        item_files += [
            _write_json(stac / "items" / it["collection"] / f"{it['id']}.json", it) for it in items
        ]
        yield f"S2 {acq.time:%Y-%m-%d} R{acq.relative_orbit:03d} cloud {acq.cloud_fraction:.0%}"
    for i, pass_ in enumerate(s1):
        it = _render_s1(out, scene, i, pass_)
        item_files.append(_write_json(stac / "items" / it["collection"] / f"{it['id']}.json", it))
        yield f"S1 {pass_.time:%Y-%m-%d} {pass_.orbit_state}"
    s2_dates = [a.time.date() for a in s2]
    _write_truth(out, scene, s2_dates, truth_days)
    yield "truth.zarr"
    _write_meta(out, spec, scene, s2, s1, item_files)


def _write_meta(
    out: Path,
    spec: WorldSpec,
    scene: _Scene,
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
        "spec": {**asdict(spec), "start": spec.start.isoformat(), "center": list(spec.center)},
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
    }
    _write_json(out / "world.json", meta)


def generate_world(
    out: str | os.PathLike[str],
    spec: WorldSpec | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
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
    progress : callable, optional
        Called with a line of text after each step.

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
    started = time.perf_counter()
    for line in iter_render(work.resolve(), spec):
        if progress:
            progress(line)
    _relocate(work, target)
    if progress:
        progress(f"done in {time.perf_counter() - started:.1f} s")
    return load_world(target)


def _relocate(work: Path, target: Path) -> None:
    """Move a finished world into place, rewriting absolute hrefs to the final location."""
    old, new = str(work.resolve()), str(target.resolve())
    for item in (work / "stac" / "items").rglob("*.json"):
        item.write_text(item.read_text().replace(old, new))
    if target.exists():
        target.rmdir()
    work.rename(target)
