"""Writing Cloud-Optimized GeoTIFFs (tiled, compressed, with overviews) through GDAL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from lamap.runtime import atomic_path

__all__ = ["write_cog"]


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    epsg: int,
    transform: Affine,
    nodata: float | int,
    resampling: Literal["average", "nearest"] = "average",
    blocksize: int = 256,
) -> None:
    """Write one band as a COG with GDAL's COG driver, atomically.

    Parameters
    ----------
    path : pathlib.Path
        Destination (parent folders are created).
    data : numpy.ndarray
        2-D array; its dtype is kept.
    epsg : int
        CRS of ``transform``.
    transform : affine.Affine
        Pixel-to-CRS transform.
    nodata : float or int
        Nodata value recorded in the file.
    resampling : {"average", "nearest"}
        Overview resampling (``nearest`` for classes such as SCL).
    blocksize : int
        Internal tile edge in pixels.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "COG",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(epsg),
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 2 if np.issubdtype(data.dtype, np.integer) else 3,
        "blocksize": blocksize,
        "overview_resampling": resampling,
        "overview_count": _overview_count(max(data.shape), blocksize),
        "num_threads": 1,
    }
    with (
        atomic_path(path) as tmp,
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(tmp, "w", **profile) as dst,
    ):
        dst.write(data, 1)


def _overview_count(size: int, blocksize: int) -> int:
    """Halvings until the image fits one block, at least one (small test worlds too)."""
    count = 1
    while size > blocksize * 2**count:
        count += 1
    return count
