"""The demo world's truth in the training cache, cut patch by patch at the sample dates.

A cache built from a demo world (:mod:`lamap.synthetic.world`) has five more patch arrays
(:data:`TRUTH_ARRAYS`): ``truth_lai`` (the true LAI at t), ``truth_snap``, ``truth_cloud``
(0 clear, 1 cloud, 2 cirrus, 3 shadow, :data:`NO_TRUTH_CLOUD` where the truth grid has no
pixel), ``truth_clear`` and ``truth_gap``. :class:`WorldTruth` builds them lazily, like the patches
themselves; the training grid must be pixel-aligned with the world's truth grid
(:func:`truth_offset`).

The cloud-free label: ``truth_snap`` is SNAP of the cloud-free reflectance on the truth grid;
the label went through the product grid, the bilinear warp and the loader's view angles,
which alone put it 0.46 m²/m² from ``truth_snap`` on clear pixels of the demo world.
``truth_clear`` runs the label's own code on the world's cloud-free twin products
(:meth:`lamap.synthetic.world.World.clear_href`), so on clear pixels it equals the label and
under clouds it is what the label would have been: the reference for gap filling.

The gap: ``truth_gap`` is the number of days from the pixel's last clear Sentinel-2
acquisition before t (truth ``cloud`` 0 and inside a footprint of that day's scenes) to t;
-1 where the world's record holds none. It sorts gap-filling scores by how long a pixel has
been cloudy (:mod:`lamap.train.evaluate`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr

from lamap.catalog import S2Scene
from lamap.cube import CubeWindow, s2_cube
from lamap.errors import InputError
from lamap.feature_spec import FeatureSpec
from lamap.features import s2_lai, sharpened
from lamap.grid import Grid, Window
from lamap.lai import SNAP_BANDS
from lamap.timesteps import TimeSteps

if TYPE_CHECKING:
    from lamap.catalog.local import World

__all__ = ["NO_TRUTH_CLOUD", "TRUTH_ARRAYS", "WorldTruth", "truth_offset"]

log = logging.getLogger(__name__)

#: ``truth_cloud`` where the truth grid has no pixel.
NO_TRUTH_CLOUD = 255
#: The truth arrays of a demo-world cache, per patch ``(P, P)``: name → (dtype, fill, attributes).
TRUTH_ARRAYS: dict[str, tuple[str, float, dict[str, Any]]] = {
    "truth_lai": ("float32", np.nan, {"long_name": "true LAI at t", "units": "m2 m-2"}),
    "truth_snap": ("float32", np.nan, {
        "long_name": "SNAP LAI of the cloud-free reflectance at t", "units": "m2 m-2"}),
    "truth_cloud": ("uint8", NO_TRUTH_CLOUD, {
        "flag_values": [0, 1, 2, 3, NO_TRUTH_CLOUD],
        "flag_meanings": "clear cloud cirrus shadow no_truth"}),
    "truth_clear": ("float32", np.nan, {
        "long_name": "S2 LAI label of the cloud-free twin products at t", "units": "m2 m-2"}),
    "truth_gap": ("int16", -1, {
        "long_name": "days since the last clear Sentinel-2 acquisition before t",
        "units": "days", "comment": "-1: none in the world's record"}),
}
#: ``truth_gap`` while no clear acquisition is found.
_NO_GAP = np.int16(np.iinfo(np.int16).max)


def truth_offset(grid: Grid, truth_grid: Mapping[str, Any]) -> tuple[int, int]:
    """Return the truth-grid (row, col) of the training grid's pixel (0, 0).

    Parameters
    ----------
    grid : Grid
        The training grid.
    truth_grid : mapping
        A demo world's ``world.json`` ``truth_grid`` (``crs``, ``transform``).

    Returns
    -------
    tuple of int

    Raises
    ------
    InputError
        If the grids do not share CRS, resolution and pixel edges.
    """
    transform = truth_grid["transform"]
    res, x0, y0 = float(transform[0]), float(transform[2]), float(transform[5])
    cols = (grid.origin[0] - x0) / res
    rows = (y0 - grid.origin[1]) / res
    aligned = (grid.crs == str(truth_grid.get("crs")) and grid.resolution == res
               and abs(cols - round(cols)) < 1e-6 and abs(rows - round(rows)) < 1e-6)
    if not aligned:
        raise InputError(
            f"the training grid {grid.label} with origin {grid.origin} is not pixel-aligned "
            f"with the world's truth grid ({truth_grid.get('crs')}, {res} m, origin "
            f"({x0}, {y0})), so the truth cannot be cut into patches: build the training grid "
            "with lamap.train.sample.training_grid(..., truth_grid=world.meta['truth_grid'])"
        )
    return round(rows), round(cols)


@dataclass(frozen=True)
class WorldTruth:
    """A demo world's truth, to cut patch by patch (lazily) at the sample dates.

    Attributes
    ----------
    data : xarray.Dataset
        The world's truth (:meth:`lamap.synthetic.world.World.truth`): ``lai``, ``lai_snap``
        and ``cloud`` by ``time``, ``y``, ``x``.
    offset : tuple of int
        Truth-grid (row, col) of the training grid's pixel (0, 0), :func:`truth_offset`.
    clear_href : callable, optional
        Maps an S2 asset href to its cloud-free twin's; None for worlds without them.
    clear_bands : tuple of str
        The bands the twins hold.
    """

    data: xr.Dataset
    offset: tuple[int, int]
    clear_href: Callable[[str], str] | None
    clear_bands: tuple[str, ...] = SNAP_BANDS

    @classmethod
    def of(cls, world: World, grid: Grid) -> WorldTruth:
        """Return the truth of ``world`` on the training grid ``grid``.

        Raises
        ------
        InputError
            If ``grid`` is not pixel-aligned with the world's truth grid.
        """
        if not world.has_clear_s2:
            log.warning("the world at %s has no cloud-free S2 products (older lamap): "
                        "truth_clear stays NaN; regenerate it to score gap filling against "
                        "the cloud-free label", world.root)
        clear = world.clear_href if world.has_clear_s2 else None
        return cls(world.truth(), truth_offset(grid, world.meta["truth_grid"]), clear,
                   world.clear_bands)

    def clear_label(self, steps: TimeSteps, scenes: Sequence[S2Scene],
                    where: CubeWindow, spec: FeatureSpec) -> da.Array:
        """Lazy S2 LAI label of t's cloud-free twin over ``where``, as ``spec`` makes it."""
        if self.clear_href is None or steps.observed is None:
            return da.full(where.window.shape, np.nan, dtype=np.float32, chunks=where.chunks())
        lacking = sorted(set(spec.s2_bands) - set(self.clear_bands))
        if lacking:
            raise InputError(
                f"the world's cloud-free S2 twins lack {lacking}, which the feature spec's "
                "sharpening reads: regenerate the world with `lamap demo --overwrite` (the same "
                "seed gives the same products) or train without --sharpen-20m")
        s2 = s2_cube(scenes, [steps.observed], where, bands=spec.s2_bands, signer=self.clear_href)
        return s2_lai(sharpened(s2, spec)).isel(time=0).transpose("y", "x").data

    def patch(self, day: dt.date, window: Window) -> dict[str, da.Array]:
        """Lazy ``truth_lai``, ``truth_snap``, ``truth_cloud`` of one patch, padded."""
        times = self.data["time"].values.astype("datetime64[D]")
        where = np.flatnonzero(times == np.datetime64(day, "D"))
        if where.size == 0:
            raise InputError(f"the world's truth has no layer for {day}: regenerate the world")
        fills = {"lai": np.nan, "lai_snap": np.nan, "cloud": NO_TRUTH_CLOUD}
        return {f"truth_{'snap' if name == 'lai_snap' else name}":
                self._cut(self.data[name].data[int(where[0])], window, fill)
                for name, fill in fills.items()}

    def gap_days(self, day: dt.date, scenes: Sequence[S2Scene], grid: Grid,
                 window: Window) -> da.Array:
        """Lazy ``truth_gap`` over ``window`` of the training grid (see the module docstring).

        Parameters
        ----------
        day : datetime.date
            The date t.
        scenes : sequence of S2Scene
            The search result's S2 scenes (their footprints say which pixels each day saw).
        grid : Grid
            The training grid.
        window : Window
            Its pixels to cover.

        Returns
        -------
        dask.array.Array
            ``window.shape`` int16.
        """
        times = self.data["time"].values.astype("datetime64[D]").astype(dt.date)
        layers = []
        for index, when in enumerate(times):
            footprints = [s.footprint for s in scenes if s.day == when]
            if when >= day or not footprints:
                continue
            seen = _footprint_mask(footprints, grid, window)
            clear = (self._cut(self.data["cloud"].data[index], window, NO_TRUTH_CLOUD) == 0) & seen
            layers.append(da.where(clear, np.int16((day - when).days), _NO_GAP))
        if not layers:
            return da.full(window.shape, -1, dtype=np.int16)
        gap = da.stack(layers).min(axis=0)
        return da.where(gap == _NO_GAP, np.int16(-1), gap).astype(np.int16)

    def _cut(self, layer: da.Array, window: Window, fill: float) -> da.Array:
        rows, cols = layer.shape
        r0, c0 = window.row_start + self.offset[0], window.col_start + self.offset[1]
        r1, c1 = r0 + window.height, c0 + window.width
        part = layer[max(r0, 0):max(min(r1, rows), 0), max(c0, 0):max(min(c1, cols), 0)]
        pad = ((max(-r0, 0), window.height - part.shape[0] - max(-r0, 0)),
               (max(-c0, 0), window.width - part.shape[1] - max(-c0, 0)))
        if part.size == 0:
            return da.full(window.shape, fill, dtype=layer.dtype)
        return da.pad(part, pad, mode="constant", constant_values=fill)


def _footprint_mask(footprints: Sequence[Any], grid: Grid, window: Window) -> np.ndarray:
    """Where pixel centres of ``window`` lie inside the union of lon/lat ``footprints``."""
    import shapely
    from pyproj import Transformer
    from rasterio.features import geometry_mask

    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform
    shape = shapely.transform(shapely.union_all(footprints), to_grid, interleaved=False)
    return ~geometry_mask([shape], out_shape=window.shape,
                          transform=grid.window_transform(window))
