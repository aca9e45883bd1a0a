"""Rendering the synthetic world's acquisitions: Sentinel-2 and Sentinel-1 products, truth.

:func:`build_scene` lays out a world (truth grid, landscape, product grids, soil moisture);
:func:`render_s2` writes the COGs of one Sentinel-2 datatake with their cloud-free twins
and returns its STAC items and the truth of that day; :func:`render_s1` writes one
Sentinel-1 pass; :func:`write_truth` writes ``truth.zarr``. :mod:`lamap.synthetic.world`
calls them in order; every random draw comes from :func:`scene_rng`, keyed by the seed and
the step, so the same spec gives identical bytes.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from shapely.geometry import box

from lamap.lai import SNAP_BANDS, snap_lai
from lamap.sharpen import EXTRA_BANDS
from lamap.synthetic import clouds, landscape, optical, radar
from lamap.synthetic.cog import write_cog
from lamap.synthetic.geometry import ProductGrid, TruthGrid, utm_epsg
from lamap.synthetic.schedule import S1Acquisition, S2Acquisition
from lamap.synthetic.solar import sun_position
from lamap.synthetic.stac_items import S2_BAND_INFO, s1_item, s1_item_id, s2_item

if TYPE_CHECKING:
    from lamap.synthetic.world import WorldSpec

__all__ = [
    "BOA_OFFSET",
    "CLEAR_BANDS",
    "CLOUD_FLAGS",
    "S2_CLEAR_DATA",
    "S2_DATA",
    "SNAP_INDEX",
    "Scene",
    "build_scene",
    "render_s1",
    "render_s2",
    "scene_rng",
    "write_truth",
]

#: Indices of SNAP's bands (B03 B04 B05 B06 B07 B8A B11 B12) in ``optical.S2_BANDS``.
SNAP_INDEX = [optical.S2_BANDS.index(b) for b in SNAP_BANDS]
#: Digital number added to the reflectance (× 10000) in the COGs, as in baseline 04.00+.
BOA_OFFSET = 1000
#: The bands of the cloud-free twins: SNAP's and the 10-m NIR the sharpening reads.
CLEAR_BANDS: tuple[str, ...] = (*SNAP_BANDS, *EXTRA_BANDS)
#: Where a world keeps its Sentinel-2 products and their cloud-free twins.
S2_DATA = os.path.join("data", "sentinel-2-l2a")
S2_CLEAR_DATA = os.path.join("data", "sentinel-2-l2a-clear")
#: Values of the truth's ``cloud`` layer.
CLOUD_FLAGS = {"clear": 0, "cloud": 1, "cirrus": 2, "shadow": 3}


@dataclass
class Scene:
    """State of the world shared by all acquisitions: grids, landscape, soil moisture."""

    spec: WorldSpec
    truth: TruthGrid
    land: landscape.Landscape
    s2_grids: list[ProductGrid]
    s1_grid: ProductGrid
    soil_moisture: np.ndarray


def scene_rng(spec: WorldSpec, *key: int) -> np.random.Generator:
    """Return the random generator of one part of the world, keyed by the spec's seed."""
    return np.random.default_rng(np.random.SeedSequence([spec.seed, *key]))


def _tile_name(epsg: int, lat: float) -> str:
    zone = epsg % 100
    band = "CDEFGHJKLMNPQRSTUVWX"[int((lat + 80) // 8)]
    return f"{zone:02d}{band}{'GL'[zone % 2]}{'PU'[zone % 2]}"


def build_scene(spec: WorldSpec) -> Scene:
    """Lay out the world of ``spec``: truth grid, landscape, product grids, soil moisture."""
    truth = TruthGrid(spec.center[0], spec.center[1], (spec.size, spec.size))
    land = landscape.make_landscape(truth.shape, scene_rng(spec, 1), resolution=truth.resolution,
                                    field_scale=spec.field_scale, crops=spec.crops)
    west, south, east, north = truth.lonlat_bbox
    s2_grids = []
    for epsg in truth.utm_zones():
        zone_west = (epsg % 100 - 1) * 6.0 - 180.0
        overlap = 0.1 * (east - west)
        part = box(max(west, zone_west - overlap), south, min(east, zone_west + 6 + overlap), north)
        s2_grids.append(ProductGrid.covering(_tile_name(epsg, south), epsg, part, truth))
    s1_epsg = utm_epsg(*spec.center)
    s1_grid = ProductGrid.covering("S1", s1_epsg, box(west, south, east, north), truth)
    moisture = radar.soil_moisture_series(_days(spec), scene_rng(spec, 2))
    return Scene(spec, truth, land, s2_grids, s1_grid, moisture)


def _days(spec: WorldSpec) -> np.ndarray:
    return np.array(
        [spec.start + dt.timedelta(days=i) for i in range(spec.days)], dtype="datetime64[D]"
    )


def _clear_reflectance(
    scene: Scene, lai: np.ndarray, angles: tuple[float, float, float], rng: np.random.Generator
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


def _s2_angles(scene: Scene, acq: S2Acquisition) -> tuple[float, float, float, float]:
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
    scene: Scene,
    acq: S2Acquisition,
    reflectance: tuple[np.ndarray, np.ndarray],
    scl: np.ndarray,
    sun: tuple[float, float],
) -> list[dict[str, Any]]:
    """Write the S2 products of one datatake (one per UTM grid) and return their items.

    ``reflectance`` is (observed, clear) on the truth grid; the clear twin gets
    :data:`CLEAR_BANDS` under :data:`S2_CLEAR_DATA`, with the same file names.
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
        _write_bands(out / S2_CLEAR_DATA / day, stem, grid, valid, clear, CLEAR_BANDS)
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


def render_s2(
    out: Path, scene: Scene, index: int, acq: S2Acquisition
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Render one Sentinel-2 datatake: products, items and the truth of that day."""
    rng = scene_rng(scene.spec, 3, index)
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


def render_s1(out: Path, scene: Scene, index: int, acq: S1Acquisition) -> dict[str, Any]:
    """Render one Sentinel-1 pass (VV and VH gamma0) and return its item."""
    rng = scene_rng(scene.spec, 4, index)
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


def write_truth(
    out: Path, scene: Scene, dates: list[dt.date], days: list[dict[str, np.ndarray]]
) -> None:
    """Write ``truth.zarr``: the per-date truth of ``days`` plus the cover and field ids."""
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
