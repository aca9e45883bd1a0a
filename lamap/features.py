"""Cubes to model inputs: the one definition shared by training and mapping.

The fused model (MODEL.md) takes, for a date D with Sentinel-2 days t-2, t-1 before it:

* ``s1`` ``(s1_channel=6, y, x)``: VV, VH in dB at t-2, t-1, D, each ``dB / 30 + 1``;
* ``lai`` ``(lai_channel=2, y, x)``: SNAP LAI at t-2, t-1, divided by 5;
* ``masks`` ``(step=2, mask_channel=6, y, x)``: for t-2 and t-1, ``valid`` (SCL in 2..6)
  then one-hot SCL == 2, 3, 4, 5, 6;
* ``season`` ``(season_channel=2)``: ``sin``, ``cos`` of 2π·doy(D)/365.25.

With Sentinel-2 at D it also gives the training ``target`` (LAI/5 at D), its
``target_mask`` (the loss mask: SCL in 2, 4, 5, 6) and ``observed_lai`` (m²/m², the map's
"observed" source, on the same pixels).
Every parameter lives in :class:`FeatureSpec`, which goes into each checkpoint, so mapping
cannot drift from training.

Choices MODEL.md leaves open, and why:

* **Model inputs never hold NaN.** A NaN reaching a convolution spreads over its whole
  receptive field, so every nodata input is replaced by a fill value *after* normalisation.
* **LAI inputs are clipped to** ``lai_clip`` = [0, 8] m²/m², the range of the products
  (MODEL.md). SNAP's network goes slightly negative over soil and water and can overshoot
  on odd reflectance; clipping keeps inputs, target and ``observed_lai`` on one scale, so the
  model learns to reproduce the product it stands in for. :func:`lamap.lai.snap_lai` itself
  stays unclipped (it must match the reference vectors).
* **LAI where the pixel is not valid is the fill 0** (``lai_fill``, i.e. LAI 0 after scaling):
  SNAP's LAI over clouds, shadows or snow is meaningless and its value depends on the cloud,
  so a constant input lets the network rely on the ``valid`` mask, which says where the LAI
  is real. ``mask_invalid_lai=False`` keeps the values as computed (as the authors' data did)
  and fills only NaN.
* **``valid`` also requires a finite LAI.** SCL is resampled with nearest neighbour and the
  bands bilinearly, so at swath edges a pixel can have a valid class but NaN reflectance; it
  is marked not valid, because its LAI input is the fill. The five one-hot channels are the
  SCL classes exactly.
* **S1 nodata is the fill 0 after normalisation** (``s1_fill``), i.e. −30 dB: about the
  noise floor, what radar shows where nothing comes back (shadow, calm water), rather than
  a typical vegetation value that would look like signal. MODEL.md has no S1 mask channel,
  so the model layout stays 6 + 2 + 2×6 + 2; the dataset carries ``s1_valid`` (not a model
  input) so a map can flag pixels estimated without full radar.
* **Cloud shadows are not a label** (``target_classes`` = 2, 4, 5, 6). MODEL.md's loss
  "ignores cloudy, shadowed and no-data pixels", while the authors' ``valid`` (SCL 2..6)
  includes SCL 3, cloud shadow. A shadowed pixel's SNAP LAI is the LAI of a darkened
  spectrum, not of the canopy: on the demo world's held-out area 7.4 % of the pixels that
  ``valid`` allows at t were under a cloud shadow, where the label is about 1.6 m²/m² off the
  cloud-free one. So the loss mask and the map's observed LAI use ``target_classes``; the
  inputs keep MODEL.md's ``valid`` and the one-hot SCL 3 channel, which tell the network
  that a past LAI is shadowed. Specs written before the field existed read back with
  ``target_classes = valid_classes`` (what they were trained with).
* **The target is 0 where ``target_mask`` is 0**, so a masked loss never meets a NaN
  (0 × NaN is NaN).

All per-pixel functions work on NumPy, dask and xarray alike (lazily for the latter two);
building features computes nothing. :func:`to_tensors` is where computing happens.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import xarray as xr

from lamap._inputs import DateLike, as_date
from lamap.errors import InputError
from lamap.feature_spec import (
    DEFAULT_SPEC,
    FEATURES_VERSION,
    MODEL_INPUTS,
    PAST_STEPS,
    S1_BANDS,
    SCL_CLASSES,
    SPEC_ATTR,
    TARGETS,
    FeatureSpec,
)
from lamap.lai import s2_lai
from lamap.radar_series import series_variables
from lamap.sharpen import sharpen_20m

if TYPE_CHECKING:
    from lamap.cube import TileCubes

ArrayT = TypeVar("ArrayT")

__all__ = [
    "DEFAULT_SPEC",
    "FEATURES_VERSION",
    "MODEL_INPUTS",
    "SCL_CLASSES",
    "SPEC_ATTR",
    "TARGETS",
    "DateLike",
    "FeatureSpec",
    "build_features",
    "features_from_arrays",
    "lai_channels",
    "normalise_s1",
    "observed_lai",
    "s2_lai",
    "scl_masks",
    "season",
    "sharpened",
    "target",
    "to_tensors",
    "valid_pixels",
]



# --------------------------------------------------------------------------- per-pixel functions


def _where(cond: Any, yes: Any, no: Any) -> Any:
    """``np.where`` for NumPy and dask, ``xr.where`` when an xarray object is involved."""
    if any(isinstance(v, xr.DataArray) for v in (cond, yes, no)):
        return xr.where(cond, yes, no, keep_attrs=True)
    return np.where(cond, yes, no)


def _stack(arrays: list[Any], dim: str, labels: Sequence[str]) -> Any:
    """Stack along a new channel axis before the last two (y, x)."""
    first = arrays[0]
    if isinstance(first, xr.DataArray):
        stacked = xr.concat(arrays, dim=dim).assign_coords({dim: list(labels)})
        return stacked.transpose(*first.dims[:-2], dim, *first.dims[-2:])
    return np.stack(arrays, axis=-3)


def _in_classes(scl: Any, classes: Sequence[int]) -> Any:
    result = scl == classes[0]
    for value in classes[1:]:
        result = result | (scl == value)
    return result


def normalise_s1(db: ArrayT, *, spec: FeatureSpec = DEFAULT_SPEC) -> ArrayT:
    """Backscatter in dB to model input: ``dB / db_scale + db_offset``, nodata to ``s1_fill``.

    Parameters
    ----------
    db : array-like
        VV or VH in dB (any shape), NaN where missing. NumPy, dask or xarray.
    spec : FeatureSpec
        Feature parameters.

    Returns
    -------
    array-like
        float32, same shape and array type, no NaN.
    """
    value: Any = db
    scaled = value / spec.db_scale + spec.db_offset
    return cast(ArrayT, _where(np.isfinite(value), scaled, spec.s1_fill).astype(np.float32))


def valid_pixels(scl: ArrayT, lai: Any = None, *, spec: FeatureSpec = DEFAULT_SPEC) -> ArrayT:
    """Where Sentinel-2 is usable: SCL in ``valid_classes`` (and ``lai`` finite, if given).

    Parameters
    ----------
    scl : array-like
        Scene classification (any shape). NumPy, dask or xarray.
    lai : array-like, optional
        LAI of the same pixels; pixels where it is NaN are not valid.
    spec : FeatureSpec
        Feature parameters.

    Returns
    -------
    array-like
        Boolean, same shape and array type as ``scl``.
    """
    valid = _in_classes(scl, spec.valid_classes)
    return cast(ArrayT, valid if lai is None else valid & np.isfinite(lai))


def lai_channels(lai: ArrayT, scl: Any, *, spec: FeatureSpec = DEFAULT_SPEC) -> ArrayT:
    """LAI (m²/m²) to model input: clipped to ``lai_clip``, divided by ``lai_scale``, filled.

    Parameters
    ----------
    lai : array-like
        SNAP LAI (any shape), NaN where missing. NumPy, dask or xarray.
    scl : array-like
        Scene classification of the same pixels.
    spec : FeatureSpec
        Feature parameters; with ``mask_invalid_lai`` every pixel that is not valid gets
        ``lai_fill``, otherwise only NaN pixels.

    Returns
    -------
    array-like
        float32, same shape and array type, no NaN.
    """
    value: Any = lai
    keep = valid_pixels(scl, value, spec=spec) if spec.mask_invalid_lai else np.isfinite(value)
    low, high = spec.lai_clip
    scaled = np.minimum(np.maximum(value, low), high) / spec.lai_scale
    return cast(ArrayT, _where(keep, scaled, spec.lai_fill).astype(np.float32))


def scl_masks(scl: ArrayT, lai: Any = None, *, spec: FeatureSpec = DEFAULT_SPEC) -> ArrayT:
    """SCL to 0/1 mask channels: ``valid`` then one-hot ``onehot_classes``.

    Parameters
    ----------
    scl : array-like
        Scene classification ``(..., y, x)``. NumPy, dask or xarray.
    lai : array-like, optional
        LAI of the same pixels; the ``valid`` channel is 0 where it is NaN.
    spec : FeatureSpec
        Feature parameters.

    Returns
    -------
    array-like
        float32 ``(..., mask_channel, y, x)``; for xarray a ``mask_channel`` dimension
        labelled with :attr:`FeatureSpec.mask_labels`.
    """
    channels = [valid_pixels(scl, lai, spec=spec)]
    channels += [cast(Any, scl) == value for value in spec.onehot_classes]
    stacked = _stack(channels, "mask_channel", spec.mask_labels)
    return cast(ArrayT, stacked.astype(np.float32))


def target(
    lai: ArrayT, scl: Any, *, spec: FeatureSpec = DEFAULT_SPEC
) -> tuple[ArrayT, ArrayT]:
    """Training target and loss mask at D.

    Parameters
    ----------
    lai : array-like
        SNAP LAI at D (m²/m²), NaN where missing. NumPy, dask or xarray.
    scl : array-like
        Scene classification at D.
    spec : FeatureSpec
        Feature parameters.

    Returns
    -------
    target : array-like
        float32 clipped LAI / ``lai_scale`` where the mask is 1, 0 elsewhere (never NaN).
    mask : array-like
        float32 1 where the pixel is a label (SCL in ``target_classes`` and LAI finite),
        else 0.
    """
    value: Any = lai
    valid = _label_pixels(scl, value, spec)
    low, high = spec.lai_clip
    scaled = np.minimum(np.maximum(value, low), high) / spec.lai_scale
    result = _where(valid, scaled, 0.0).astype(np.float32)
    return cast(ArrayT, result), cast(ArrayT, valid.astype(np.float32))


def observed_lai(lai: ArrayT, scl: Any, *, spec: FeatureSpec = DEFAULT_SPEC) -> ArrayT:
    """Observed LAI at D in m²/m², clipped to ``lai_clip``, NaN where SCL is no label.

    Parameters
    ----------
    lai : array-like
        SNAP LAI at D (m²/m²). NumPy, dask or xarray.
    scl : array-like
        Scene classification at D.
    spec : FeatureSpec
        Feature parameters.

    Returns
    -------
    array-like
        float32, same shape and array type.
    """
    value: Any = lai
    low, high = spec.lai_clip
    clipped = np.minimum(np.maximum(value, low), high)
    return cast(ArrayT, _where(_label_pixels(scl, value, spec), clipped, np.nan)
                .astype(np.float32))


def _label_pixels(scl: Any, lai: Any, spec: FeatureSpec) -> Any:
    """Where S2 at D is trusted as the truth: SCL in ``target_classes`` and LAI finite."""
    return _in_classes(scl, spec.target_classes) & np.isfinite(lai)


def season(date: DateLike, *, spec: FeatureSpec = DEFAULT_SPEC) -> np.ndarray:
    """Season encoding of a date: ``[sin, cos]`` of 2π·doy / ``season_period_days``.

    Parameters
    ----------
    date : datetime.date, numpy.datetime64 or str
        The date D (day of year 1 is 1 January).
    spec : FeatureSpec
        Feature parameters.

    Returns
    -------
    numpy.ndarray
        float32, shape (2,).

    Raises
    ------
    InputError
        If ``date`` is not a date.
    """
    angle = 2.0 * math.pi * as_date(date).timetuple().tm_yday / spec.season_period_days
    return np.array([math.sin(angle), math.cos(angle)], dtype=np.float32)


# --------------------------------------------------------------------------- cubes to a dataset


def _strip(arr: xr.DataArray) -> xr.DataArray:
    """Drop every coordinate but ``y`` and ``x`` (inputs are matched by position in time)."""
    return arr.drop_vars([name for name in arr.coords if name not in ("y", "x")])


def _check(arr: xr.DataArray, what: str, dims: tuple[str, ...],
           sizes: Mapping[str, int]) -> xr.DataArray:
    """Check dimensions and sizes; return ``arr`` with its dims in order."""
    if set(arr.dims) != set(dims):
        raise InputError(f"{what} must have dims {dims}, got {arr.dims}")
    if any(arr.sizes[d] != n for d, n in sizes.items()):
        raise InputError(f"{what} must have sizes {dict(sizes)}, got {dict(arr.sizes)}")
    return arr.transpose(*dims)


def _plain(arr: xr.DataArray, what: str, dims: tuple[str, ...],
           sizes: Mapping[str, int]) -> xr.DataArray:
    """:func:`_check`, then strip every coordinate but y/x."""
    return _strip(_check(arr, what, dims, sizes))


def _now(arr: xr.DataArray) -> xr.DataArray:
    """Drop a ``time`` dimension of length 1 (S2 at D)."""
    if "time" not in arr.dims:
        return arr
    if arr.sizes["time"] != 1:
        raise InputError(f"S2 at D must have one time step, got {arr.sizes['time']}")
    return arr.isel(time=0)


def _s1_bands(s1: xr.DataArray) -> xr.DataArray:
    if "band" in s1.coords and set(S1_BANDS) <= {str(b) for b in s1.indexes["band"]}:
        return s1.sel(band=list(S1_BANDS))
    return s1


def _check_pixels(arrays: Mapping[str, xr.DataArray]) -> None:
    """All inputs cover the same pixels (same size, and same y/x where labelled)."""
    (first, ref), *others = arrays.items()
    for name, arr in others:
        same = arr.sizes["y"] == ref.sizes["y"] and arr.sizes["x"] == ref.sizes["x"]
        for dim in ("y", "x"):
            if same and dim in arr.indexes and dim in ref.indexes:
                same = arr.indexes[dim].equals(ref.indexes[dim])
        if not same:
            raise InputError(
                f"{name} and {first} cover different pixels ({arr.sizes['y']}x"
                f"{arr.sizes['x']} vs {ref.sizes['y']}x{ref.sizes['x']} or other y/x "
                "coordinates): build all cubes on one lamap.cube.CubeWindow"
            )


def _flatten(arr: xr.DataArray, dim: str, labels: Sequence[str]) -> xr.DataArray:
    """Merge the leading dimensions of ``(..., y, x)`` into one labelled channel dim."""
    data = arr.data.reshape((len(labels), *arr.shape[-2:]))
    coords = {name: arr.indexes[name] for name in ("y", "x") if name in arr.indexes}
    return xr.DataArray(data, dims=(dim, "y", "x"), coords={dim: list(labels), **coords})


def features_from_arrays(
    s2: xr.DataArray,
    scl: xr.DataArray,
    s1: xr.DataArray | None,
    date: DateLike,
    s2_now: xr.DataArray | None = None,
    scl_now: xr.DataArray | None = None,
    *,
    spec: FeatureSpec = DEFAULT_SPEC,
    s1_series: xr.DataArray | None = None,
    series_days: Sequence[int] = (),
    past_days: Sequence[int] = (),
) -> xr.Dataset:
    """Model inputs (and targets) from the cubes of one tile and date, lazily.

    Parameters
    ----------
    s2 : xarray.DataArray
        Reflectance ``(time=2, band, y, x)`` at t-2, t-1 with angle coordinates
        (see :func:`s2_lai`).
    scl : xarray.DataArray
        SCL ``(time=2, y, x)`` at t-2, t-1.
    s1 : xarray.DataArray or None
        Backscatter in dB ``(time=3, band=[vv, vh], y, x)`` at t-2, t-1, D; None when the
        spec has no Sentinel-1 steps.
    date : datetime.date, numpy.datetime64 or str
        The date D.
    s2_now, scl_now : xarray.DataArray, optional
        Reflectance and SCL at D (``time`` of length 1, or no ``time``); both or neither.
    spec : FeatureSpec
        Feature parameters.
    s1_series : xarray.DataArray, optional
        Backscatter in dB ``(time, band, y, x)`` of the series' passes, oldest first (when the
        spec has a series, :mod:`lamap.radar_series`).
    series_days, past_days : sequence of int
        Each series pass's day minus D; days from t-2 and t-1 to D (with a series).

    Returns
    -------
    xarray.Dataset
        ``s1``, ``lai``, ``masks``, ``season`` (see :data:`MODEL_INPUTS`) and ``s1_valid``
        ``(y, x)`` (1 where all six S1 inputs exist; with a series only, where any pass is
        valid); with a series also ``s1_series``, ``s1_series_valid``, ``s1_days`` and
        ``past_days``; with S2 at D also ``target``, ``target_mask`` and ``observed_lai``.
        Attributes: the spec as JSON under :data:`SPEC_ATTR`, and ``date``. Nothing is
        computed.

    Raises
    ------
    InputError
        If an input has the wrong dimensions or sizes, or the inputs cover different pixels.
    """
    if (s2_now is None) != (scl_now is None):
        raise InputError("give both s2_now and scl_now (S2 at D), or neither")
    day = as_date(date)
    s2_dims = ("time", "band", "y", "x")
    lai_past = s2_lai(sharpened(_check(s2, "s2", s2_dims, {"time": 2}), spec))
    scl_past = _plain(scl, "scl", ("time", "y", "x"), {"time": 2})
    cubes = {"s2": lai_past, "scl": scl_past}
    if spec.s1_at_steps:
        cubes["s1"] = _plain(_s1_bands(_needed(s1, "s1")), "s1", s2_dims, {"time": 3, "band": 2})
    if spec.s1_series:
        series = _needed(s1_series, "s1_series")
        cubes["s1_series"] = _plain(_s1_bands(series), "s1_series", s2_dims, {"band": 2})
    _check_pixels(cubes)
    variables = _input_variables(lai_past, scl_past, cubes.get("s1"), day, spec)
    if spec.s1_series:
        variables |= _series_variables(cubes["s1_series"], series_days, past_days, spec)
    if s2_now is not None and scl_now is not None:
        variables |= _now_variables(s2_now, scl_now, lai_past, spec)
    attrs = {SPEC_ATTR: json.dumps(spec.to_dict()), "date": day.isoformat()}
    return xr.Dataset(variables, attrs=attrs)


def sharpened(s2: xr.DataArray, spec: FeatureSpec = DEFAULT_SPEC) -> xr.DataArray:
    """Reflectance as the spec's S2 LAI takes it: 20-m bands sharpened when it says so.

    Parameters
    ----------
    s2 : xarray.DataArray
        Reflectance ``(..., band, y, x)`` with the spec's ``s2_bands``.
    spec : FeatureSpec
        Feature parameters (``s2_sharpen``, see :mod:`lamap.sharpen`).

    Returns
    -------
    xarray.DataArray
        ``s2`` itself, or with SNAP's 20-m bands sharpened by the 10-m ones.
    """
    return sharpen_20m(s2, spec.s2_sharpen) if spec.s2_sharpen else s2


def _needed(cube: xr.DataArray | None, name: str) -> xr.DataArray:
    if cube is None:
        raise InputError(f"the feature spec takes {name} but none was given: build the cubes "
                         "with lamap.cube.tile_cubes from a plan made for this spec")
    return cube


def _input_variables(lai: xr.DataArray, scl: xr.DataArray, s1: xr.DataArray | None,
                     day: dt.date, spec: FeatureSpec) -> dict[str, xr.DataArray]:
    masks = scl_masks(scl, lai, spec=spec).rename(time="step")
    variables = {} if s1 is None else {
        "s1": _flatten(normalise_s1(s1, spec=spec), "s1_channel", spec.s1_labels)}
    variables |= {
        "lai": _flatten(lai_channels(lai, scl, spec=spec), "lai_channel", spec.lai_labels),
        "masks": masks.assign_coords(step=list(PAST_STEPS)),
        "season": xr.DataArray(season(day, spec=spec), dims="season_channel",
                               coords={"season_channel": ["sin", "cos"]}),
    }
    if s1 is not None:
        finite = cast(xr.DataArray, np.isfinite(s1))
        variables["s1_valid"] = finite.all(dim=("time", "band")).astype(np.float32)
    return variables


def _series_variables(s1: xr.DataArray, days: Sequence[int], past_days: Sequence[int],
                      spec: FeatureSpec) -> dict[str, xr.DataArray]:
    finite = cast(xr.DataArray, np.isfinite(s1)).all(dim="band")
    variables = series_variables(normalise_s1(s1, spec=spec), finite, days, past_days, spec)
    if not spec.s1_at_steps:  # any radar at all, as has_input reads it
        variables["s1_valid"] = variables["s1_series_valid"].max("s1_pass")
    return variables


def _now_variables(s2_now: xr.DataArray, scl_now: xr.DataArray, ref: xr.DataArray,
                   spec: FeatureSpec) -> dict[str, xr.DataArray]:
    lai = s2_lai(sharpened(_check(_now(s2_now), "s2_now", ("band", "y", "x"), {}), spec))
    scl = _plain(_now(scl_now), "scl_now", ("y", "x"), {})
    _check_pixels({"s2": ref, "s2_now": lai, "scl_now": scl})
    goal, mask = target(lai, scl, spec=spec)
    return {"target": goal, "target_mask": mask, "observed_lai": observed_lai(lai, scl, spec=spec)}


def build_features(cubes: TileCubes, spec: FeatureSpec = DEFAULT_SPEC) -> xr.Dataset:
    """Model inputs (and targets) of one tile and date, lazily: the entry point.

    Parameters
    ----------
    cubes : lamap.cube.TileCubes
        The tile's cubes (``s2``, ``scl``, ``s1``, optional ``s2_now``/``scl_now``, ``date``).
    spec : FeatureSpec
        Feature parameters (from the checkpoint when mapping).

    Returns
    -------
    xarray.Dataset
        As :func:`features_from_arrays`.
    """
    steps = cubes.steps
    past = ((steps.date - steps.t2.day).days, (steps.date - steps.t1.day).days)
    return features_from_arrays(cubes.s2, cubes.scl, cubes.s1, cubes.date,
                                cubes.s2_now, cubes.scl_now, spec=spec,
                                s1_series=cubes.s1_series, series_days=steps.series_days(),
                                past_days=past)


# --------------------------------------------------------------------------- to arrays


def to_tensors(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Compute a features dataset into model-ready float32 NumPy arrays (one compute).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`build_features` (possibly a block or patch of it, or with leading batch
        dimensions).

    Returns
    -------
    dict of str to numpy.ndarray
        ``s1 (..., 6, H, W)``, ``lai (..., 2, H, W)``, ``masks (..., 2, 6, H, W)``,
        ``season (..., 2)``, and ``target``/``target_mask (..., H, W)`` when present;
        C-contiguous float32.

    Raises
    ------
    InputError
        If a model input is missing or holds NaN.
    """
    missing = [name for name in MODEL_INPUTS if name not in ds.data_vars]
    if missing:
        raise InputError(f"features lack {missing}: build them with lamap.features.build_features")
    dims = MODEL_INPUTS | {k: v for k, v in TARGETS.items() if k in ds.data_vars}
    computed = ds[list(dims)].compute()
    arrays = {name: _array(computed[name], order) for name, order in dims.items()}
    bad = [name for name, arr in arrays.items() if not np.isfinite(arr).all()]
    if bad:
        raise InputError(f"features {bad} hold NaN or inf: they were not made by build_features")
    return arrays


def _array(arr: xr.DataArray, order: tuple[str, ...]) -> np.ndarray:
    return np.ascontiguousarray(arr.transpose(..., *order).values, dtype=np.float32)
