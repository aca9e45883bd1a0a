"""The naive peer that ``lamap bench`` measures lamap against.

What a user would write without lamap's orchestration: one process, no dask, a plain loop
over ``block``-pixel windows of a tile. For each window every input is read with
:class:`rasterio.vrt.WarpedVRT` over the window plus the model's halo (GDAL's default warp
tolerance; bilinear for reflectance and Sentinel-1, nearest for SCL), the features are built
with lamap's own functions (:func:`lamap.features.features_from_arrays`), the network runs
once on the whole window, and the core goes into an output NumPy array.

The result follows the contract of lamap's store (:func:`lamap.mapping.tile_arrays`):
observed LAI where Sentinel-2 at D is clear, else the model's, clipped to 0..8, NaN where
there is no input. It differs from lamap only where GDAL's approximate transformer
(0.125 px) moves a resampled value; lamap warps with an exact 1e-4 px tolerance.

Mosaics follow :mod:`lamap.cube`: within a day (or pass) the first item of the group with a
valid pixel wins (stackstac's mosaic over the group in reverse order).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from lamap.catalog import BandAsset, S1Scene, S2Scene
from lamap.errors import NoInputError
from lamap.features import FeatureSpec, features_from_arrays, to_tensors
from lamap.grid import Grid, Window
from lamap.timesteps import S1Pass, S2Day, TimeSteps

__all__ = ["PeerResult", "naive_map"]

HrefSigner = Callable[[str], str]
#: Edge of the peer's windows (what a user would pick: a round size that fits in memory).
DEFAULT_BLOCK = 512


@dataclass(frozen=True)
class PeerResult:
    """What :func:`naive_map` computed.

    Attributes
    ----------
    lai : numpy.ndarray
        ``(rows, cols)`` float32 LAI (m²/m²), NaN where there is no estimate.
    source : numpy.ndarray
        ``(rows, cols)`` uint8 :class:`lamap.store.Source` flags (0 no input, 1 observed,
        2 filled).
    seconds : float
        Wall time of the whole call (model load, reads, features, network).
    px_per_s : float
        Output pixels per second.
    model_px : int
        Pixels the network computed (windows with their halo and padding).
    """

    lai: np.ndarray
    source: np.ndarray
    seconds: float
    px_per_s: float
    model_px: int


class _Reader:
    """Reads one band of one item onto a window of the output grid through a WarpedVRT."""

    def __init__(self, grid: Grid, outer: Window, signer: HrefSigner | None) -> None:
        from rasterio.crs import CRS

        self.crs = CRS.from_user_input(grid.crs)
        self.transform = grid.window_transform(outer)
        self.shape = outer.shape
        self.sign = signer or (lambda href: href)

    def read(self, asset: BandAsset, resampling: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return the band's values and where they are nodata."""
        import rasterio
        from rasterio.vrt import WarpedVRT

        with (
            rasterio.open(self.sign(asset.href)) as src,
            WarpedVRT(
                src,
                crs=self.crs,
                transform=self.transform,
                height=self.shape[0],
                width=self.shape[1],
                resampling=resampling,
                src_nodata=asset.nodata,
                nodata=asset.nodata,
            ) as vrt,
        ):
            values = vrt.read(1)
        missing = np.isnan(values) if np.isnan(asset.nodata) else values == asset.nodata
        return values, missing


def _first_valid(layers: Sequence[np.ndarray], invalid: Callable[[np.ndarray], np.ndarray],
                 empty: np.ndarray) -> np.ndarray:
    """Mosaic: each pixel from the first layer (group order) where it is valid."""
    out = empty.copy()
    for layer in reversed(layers):
        out = np.where(invalid(layer), out, layer)
    return out


def _group(scenes: Sequence[Any], ids: Sequence[str]) -> list[Any]:
    by_id = {s.id: s for s in scenes}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise NoInputError(f"items {missing} were planned but are not among the given scenes")
    return [by_id[i] for i in ids]


def _s2_day(reader: _Reader, scenes: Sequence[S2Scene], day: S2Day, bands: Sequence[str]
            ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Reflectance ``(band, y, x)``, SCL ``(y, x)`` and mean angles of one mosaicked day."""
    from rasterio.enums import Resampling

    group = _group(scenes, day.item_ids)
    nan = np.full(reader.shape, np.nan, dtype=np.float32)
    read = []
    for band in bands:
        layers = []
        for scene in group:
            dn, missing = reader.read(scene.asset(band), Resampling.bilinear)
            reflectance = ((dn.astype(np.float64) + scene.boa_offset) / 10000.0).astype(np.float32)
            layers.append(np.where(missing, np.float32(np.nan), reflectance))
        read.append(_first_valid(layers, np.isnan, nan))
    scl_layers = []
    for scene in group:
        scl, missing = reader.read(scene.asset("SCL"), Resampling.nearest)
        scl_layers.append(np.where(missing, 0, scl).astype(np.uint8))
    scl = _first_valid(scl_layers, lambda a: a == 0, np.zeros(reader.shape, dtype=np.uint8))
    angles = {name: float(np.mean([getattr(s, name) for s in group]))
              for name in ("sun_zenith", "view_zenith", "relative_azimuth")}
    return np.stack(read), scl, angles


def _s1_pass(reader: _Reader, scenes: Sequence[S1Scene], one: S1Pass) -> np.ndarray:
    """VV and VH in dB ``(band, y, x)`` of one mosaicked pass, NaN where gamma0 ≤ 0."""
    from rasterio.enums import Resampling

    group = _group(scenes, one.item_ids)
    nan = np.full(reader.shape, np.nan, dtype=np.float32)
    bands = []
    for band in ("vv", "vh"):
        layers = []
        for scene in group:
            gamma0, missing = reader.read(scene.asset(band), Resampling.bilinear)
            gamma0 = gamma0.astype(np.float32)
            positive = np.where(missing | ~(gamma0 > 0), np.float32(np.nan), gamma0)
            layers.append((10.0 * np.log10(positive)).astype(np.float32))
        bands.append(_first_valid(layers, np.isnan, nan))
    return np.stack(bands)


def _s2_array(days: Sequence[tuple[np.ndarray, np.ndarray, dict[str, float]]],
              bands: Sequence[str]) -> xr.DataArray:
    coords: dict[str, Any] = {"band": list(bands)}
    for name in days[0][2]:
        coords[name] = ("time", [d[2][name] for d in days])
    return xr.DataArray(np.stack([d[0] for d in days]), dims=("time", "band", "y", "x"),
                        coords=coords)


def _features(reader: _Reader, steps: TimeSteps, s2: Sequence[S2Scene],
              s1: Sequence[S1Scene], spec: FeatureSpec) -> xr.Dataset:
    """Read every input of one window and build lamap's features from them (in memory)."""
    past = [_s2_day(reader, s2, day, spec.s2_bands) for day in (steps.t2, steps.t1)]
    radar = np.stack([_s1_pass(reader, s1, one) for one in steps.s1])
    s2_now = scl_now = None
    if steps.observed is not None:
        now = _s2_day(reader, s2, steps.observed, spec.s2_bands)
        s2_now = _s2_array([now], spec.s2_bands)
        scl_now = xr.DataArray(now[1][None], dims=("time", "y", "x"))
    return features_from_arrays(
        _s2_array(past, spec.s2_bands),
        xr.DataArray(np.stack([p[1] for p in past]), dims=("time", "y", "x")),
        xr.DataArray(radar, dims=("time", "band", "y", "x"), coords={"band": ["vv", "vh"]}),
        steps.date,
        s2_now,
        scl_now,
        spec=spec,
    )


def _run_network(loaded: Any, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """Model output (LAI/scale) over the whole window, padded to the down-sampling factor."""
    import torch

    factor = int(loaded.config.downsampling)
    height, width = arrays["lai"].shape[-2:]
    pad = ((0, -height % factor), (0, -width % factor))
    net = loaded.model
    device = next(net.parameters()).device

    def tensor(name: str) -> torch.Tensor:
        value = arrays[name]
        value = np.pad(value, ((0, 0),) * (value.ndim - 2) + pad)
        return torch.from_numpy(np.ascontiguousarray(value[None])).to(device)

    season = torch.from_numpy(arrays["season"][None]).to(device)
    with torch.inference_mode():
        pred = net(tensor("s1"), tensor("lai"), tensor("masks"), season).lai
    out = pred[0, 0, :height, :width].float().cpu().numpy()
    return out, (height + pad[0][1]) * (width + pad[1][1])


def _blocks(window: Window, block: int) -> list[Window]:
    return [
        Window(r, min(r + block, window.row_stop), c, min(c + block, window.col_stop))
        for r in range(window.row_start, window.row_stop, block)
        for c in range(window.col_start, window.col_stop, block)
    ]


def naive_map(
    steps: TimeSteps,
    s2: Sequence[S2Scene],
    s1: Sequence[S1Scene],
    grid: Grid,
    window: Window,
    checkpoint: str,
    *,
    block: int = DEFAULT_BLOCK,
    halo: int | None = None,
    device: str = "cpu",
    signer: HrefSigner | None = None,
) -> PeerResult:
    """Map LAI over ``window`` the naive way: one process, a plain loop, no dask.

    Parameters
    ----------
    steps : TimeSteps
        The planner's choice (:func:`lamap.timesteps.plan_time_steps`) for the window's tile.
    s2, s1 : sequence of S2Scene, S1Scene
        Normalised scenes (:func:`lamap.catalog.search`) holding the planned items.
    grid : Grid
        The output grid.
    window : Window
        Output pixels (e.g. a tile's window); may reach past the grid.
    checkpoint : str
        A checkpoint written by ``lamap train`` (read once).
    block : int
        Edge of the windows the loop walks (each read with a halo on every side).
    halo : int, optional
        Margin read around each window; default
        :func:`lamap.model.recommended_halo` of the checkpoint's architecture.
    device : str
        Where the network runs (``cpu``, ``cuda``, ``auto``).
    signer : callable, optional
        Signs hrefs before they are opened.

    Returns
    -------
    PeerResult
        LAI and source over ``window`` (same contract as lamap's store), timings and the
        pixels the network computed.

    Raises
    ------
    NoInputError
        If a planned item is not among ``s2``/``s1``.
    CheckpointError
        If the checkpoint cannot be read.
    """
    from lamap.blocks import combine, has_input
    from lamap.model import load_checkpoint, recommended_halo

    started = time.perf_counter()
    loaded = load_checkpoint(checkpoint, map_location=device)
    spec = FeatureSpec.from_dict(loaded.feature_spec)
    depth = recommended_halo(loaded) if halo is None else int(halo)
    lai = np.full(window.shape, np.nan, dtype=np.float32)
    source = np.zeros(window.shape, dtype=np.uint8)
    model_px = 0
    for part in _blocks(window, block):
        reader = _Reader(grid, part.grow(depth) if depth else part, signer)
        features = _features(reader, steps, s2, s1, spec)
        pred, computed = _run_network(loaded, to_tensors(features))
        model_px += computed
        core = (slice(depth, depth + part.height), slice(depth, depth + part.width))
        observed = features["observed_lai"].values[core] if "observed_lai" in features else None
        part_result = combine((pred * np.float32(spec.lai_scale))[core],
                              has_input(features).values[core], observed)  # fmt: skip
        rows, cols = part.relative_to(window).to_slices()
        lai[rows, cols] = part_result.lai
        source[rows, cols] = part_result.source
    seconds = time.perf_counter() - started
    return PeerResult(lai, source, seconds, lai.size / seconds, model_px)
