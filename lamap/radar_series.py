"""The Sentinel-1 time series as model inputs: the passes in ``[D - window, D]`` in fixed slots.

A model such as ``li2025`` reads the radar series before D instead of three passes
(:class:`lamap.feature_spec.FeatureSpec` ``s1_window_days``, ``s1_passes``); the planner
chooses the passes (:func:`lamap.timesteps.choose_series`: the latest ``s1_passes`` in the
window, both orbit directions) and :func:`lamap.features.build_features` turns them into:

* ``s1_series`` ``(s1_pass, s1_band, y, x)`` float32: VV, VH as ``dB / db_scale + db_offset``,
  ``s1_fill`` where missing, like the fused model's ``s1``;
* ``s1_series_valid`` ``(s1_pass, y, x)`` float32: 1 where the pass exists and both bands are
  finite at the pixel;
* ``s1_days`` ``(s1_pass,)`` float32: the pass's day minus D (0 for a pass on D, negative
  before);
* ``past_days`` ``(step,)`` float32: days from t-2 and from t-1 to D, the days at which a
  series model also estimates LAI (its references for the optical history).

Choices, and why:

* **Missing passes are masked, not invented.** A window with fewer passes than slots
  leaves the first (oldest) slots empty: fill values, ``s1_series_valid`` 0, and ``s1_days``
  ``-window`` (outside every real pass, never read as one). The latest pass is always in the
  last slot, so a model sees "the most recent radar" at a fixed place. A pass that misses a
  pixel (swath edge, nodata) is masked at that pixel only.
* **Days are relative to D**, so a model learns "how long before the date", the same for
  every season; the season itself is its own input (``season``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from lamap.errors import InputError
from lamap.feature_spec import S1_BANDS, FeatureSpec

__all__ = ["SERIES_INPUTS", "series_variables"]

#: The series inputs and their dimensions (trailing; leading batch dimensions are kept).
SERIES_INPUTS: dict[str, tuple[str, ...]] = {
    "s1_series": ("s1_pass", "s1_band", "y", "x"),
    "s1_series_valid": ("s1_pass", "y", "x"),
    "s1_days": ("s1_pass",),
    "past_days": ("step",),
}


def series_variables(normalised: xr.DataArray, finite: xr.DataArray, days: Sequence[int],
                     past_days: Sequence[int], spec: FeatureSpec) -> dict[str, xr.DataArray]:
    """Put the passes of a series into the spec's slots, lazily (see the module docstring).

    Parameters
    ----------
    normalised : xarray.DataArray
        ``(time, band, y, x)`` normalised backscatter of the passes, oldest first, no NaN.
    finite : xarray.DataArray
        ``(time, y, x)`` booleans: both bands finite at the pixel.
    days : sequence of int
        Each pass's day minus D.
    past_days : sequence of int
        Days from t-2 and from t-1 to D.
    spec : FeatureSpec
        With ``s1_passes`` slots and ``s1_window_days``.

    Returns
    -------
    dict of str to xarray.DataArray
        ``s1_series``, ``s1_series_valid``, ``s1_days``, ``past_days``.

    Raises
    ------
    InputError
        If there are more passes than slots, or days and passes disagree.
    """
    count, slots = normalised.sizes["time"], spec.s1_passes
    if count > slots or len(days) != count:
        raise InputError(
            f"the S1 series has {count} passes and {len(days)} days for {slots} slots: plan it "
            "with lamap.timesteps.plan_time_steps(..., s1_passes=...) of the same spec"
        )
    labels = list(spec.series_labels)
    values = _pad(normalised.data, slots - count, spec.s1_fill)
    valid = _pad(finite.data.astype(np.float32), slots - count, 0.0)
    coords = {name: normalised.indexes[name] for name in ("y", "x") if name in normalised.indexes}
    padded_days = [-float(spec.s1_window_days)] * (slots - count) + [float(d) for d in days]
    return {
        "s1_series": xr.DataArray(values, dims=SERIES_INPUTS["s1_series"],
                                  coords={"s1_pass": labels, "s1_band": list(S1_BANDS),
                                          **coords}),
        "s1_series_valid": xr.DataArray(valid, dims=SERIES_INPUTS["s1_series_valid"],
                                        coords={"s1_pass": labels, **coords}),
        "s1_days": xr.DataArray(np.asarray(padded_days, dtype=np.float32), dims="s1_pass",
                                coords={"s1_pass": labels}),
        "past_days": xr.DataArray(np.asarray(past_days, dtype=np.float32), dims="step",
                                  coords={"step": ["t-2", "t-1"]}),
    }


def _pad(data: Any, missing: int, fill: float) -> Any:
    """Prepend ``missing`` slots of ``fill`` along the first axis (NumPy or dask)."""
    data = data.astype(np.float32)
    if missing == 0:
        return data
    shape = (missing, *data.shape[1:])
    if isinstance(data, da.Array):
        chunks = ((missing,), *data.chunks[1:])
        return da.concatenate([da.full(shape, fill, dtype=np.float32, chunks=chunks), data])
    return np.concatenate([np.full(shape, fill, dtype=np.float32), data])
