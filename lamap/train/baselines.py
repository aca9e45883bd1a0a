"""The baselines the fused model is scored against (:mod:`lamap.train.evaluate`).

* ``persistence``: the last valid past LAI (t-1 where valid, else t-2, else no prediction),
  "valid" as in MODEL.md's mask (SCL 2..6);
* ``clear persistence``: the same, but a past LAI under a cloud shadow (SCL 3) does not count
  (only SCL classes that make a label, ``target_classes``, :func:`label_steps`): the
  baseline a careful user would build;
* ``linear interpolation``: the line through (t-2, LAI) and (t-1, LAI), extrapolated to t with
  ``past_days`` and clipped to the LAI range; where only one past step is valid it falls back
  to persistence, where none is it makes no prediction;
* ``linear regression``, ``random forest``: pixel-wise scikit-learn models on the same
  per-pixel inputs as the network (6 S1 + 2 LAI + 12 mask channels + 2 season values,
  :func:`pixel_features`), fitted on a random subsample of training pixels
  (:func:`fit_regressions`).

All predictions are in m²/m², clipped to the feature spec's LAI range, as the maps are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lamap.features import FeatureSpec

__all__ = [
    "MODEL_INPUTS",
    "fit_regressions",
    "label_steps",
    "linear_interpolation",
    "persistence",
    "pixel_features",
    "pixel_table",
    "regression_predictions",
    "temporal_baselines",
]

#: The network's inputs, in the order :func:`pixel_features` stacks them.
MODEL_INPUTS = ("s1", "lai", "masks", "season")


def persistence(lai: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Last valid past LAI: t-1 where valid, else t-2 where valid, else NaN.

    Parameters
    ----------
    lai : numpy.ndarray
        ``(..., 2, H, W)`` LAI at t-2, t-1 (any scale).
    valid : numpy.ndarray
        ``(..., 2, H, W)`` booleans, whether each step is valid.

    Returns
    -------
    numpy.ndarray
        ``(..., H, W)`` float32 prediction, NaN where no step is valid.
    """
    valid = valid.astype(bool)
    older = np.where(valid[..., 0, :, :], lai[..., 0, :, :], np.nan)
    return np.where(valid[..., 1, :, :], lai[..., 1, :, :], older).astype(np.float32)


def linear_interpolation(lai: np.ndarray, valid: np.ndarray, past_days: np.ndarray, *,
                         clip: tuple[float, float] = (0.0, 8.0)) -> np.ndarray:
    """Extrapolate the line through (t-2, LAI) and (t-1, LAI) to t.

    With ``d2``, ``d1`` the days from t-2 and t-1 to t, the prediction is
    ``L1 + (L1 - L2) · d1 / (d2 - d1)``, clipped to ``clip``. Where only one step is valid
    (or ``d2 <= d1``) it is persistence; where none is, NaN.

    Parameters
    ----------
    lai : numpy.ndarray
        ``(..., 2, H, W)`` LAI at t-2, t-1, in m²/m² (``clip`` is in the same unit).
    valid : numpy.ndarray
        ``(..., 2, H, W)`` booleans.
    past_days : numpy.ndarray
        ``(..., 2)`` days from t-2 and from t-1 to t.
    clip : tuple of float
        Range of the result.

    Returns
    -------
    numpy.ndarray
        ``(..., H, W)`` float32.
    """
    days = np.asarray(past_days, dtype=np.float64)[..., None, None]
    d2, d1 = days[..., 0, :, :], days[..., 1, :, :]
    both = valid[..., 0, :, :].astype(bool) & valid[..., 1, :, :].astype(bool) & (d2 > d1)
    l2, l1 = lai[..., 0, :, :].astype(np.float64), lai[..., 1, :, :].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        line = np.clip(l1 + (l1 - l2) * d1 / (d2 - d1), *clip)
    return np.where(both, line, persistence(lai, valid)).astype(np.float32)


def pixel_features(s1: np.ndarray, lai: np.ndarray, masks: np.ndarray,
                   season: np.ndarray) -> np.ndarray:
    """Per-pixel inputs of the network as a feature stack, for pixel-wise baselines.

    Parameters
    ----------
    s1 : numpy.ndarray
        ``(B, 6, H, W)``.
    lai : numpy.ndarray
        ``(B, 2, H, W)``.
    masks : numpy.ndarray
        ``(B, 2, 6, H, W)``.
    season : numpy.ndarray
        ``(B, 2)``.

    Returns
    -------
    numpy.ndarray
        ``(B, 22, H, W)`` float32: 6 S1, 2 LAI, 12 mask channels, 2 season values.
    """
    batch, _, height, width = s1.shape
    flat_masks = masks.reshape(batch, -1, height, width)
    seasons = np.broadcast_to(season[:, :, None, None], (batch, season.shape[1], height, width))
    return np.concatenate([s1, lai, flat_masks, seasons], axis=1, dtype=np.float32)


def pixel_table(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Return :func:`pixel_features` of a batch with the features last, ``(B, H, W, 22)``.

    Parameters
    ----------
    data : mapping
        Cache arrays of a batch of patches, with every name in :data:`MODEL_INPUTS`.

    Returns
    -------
    numpy.ndarray
        float32, one row of features per pixel after indexing with a ``(B, H, W)`` mask.
    """
    return np.moveaxis(pixel_features(*(data[k] for k in MODEL_INPUTS)), 1, -1)


def temporal_baselines(data: Mapping[str, np.ndarray],
                       spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Predict LAI at t from the past steps alone: persistence, clear persistence, the line.

    Parameters
    ----------
    data : mapping
        Cache arrays of a batch: ``lai`` (LAI/5), ``masks`` and ``past_days``.
    spec : FeatureSpec
        Scale, clip range and mask classes of the cache.

    Returns
    -------
    dict
        Method name → ``(B, H, W)`` float32 LAI in m²/m², NaN where it predicts nothing.
    """
    lai = data["lai"].astype(np.float32) * spec.lai_scale
    valid = data["masks"][:, :, 0] > 0
    return {"persistence": persistence(lai, valid),
            "clear persistence": persistence(lai, label_steps(data["masks"], spec)),
            "linear interpolation": linear_interpolation(lai, valid, data["past_days"],
                                                         clip=spec.lai_clip)}


def label_steps(masks: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Where a past step's LAI would have made a label: ``valid`` minus non-label classes.

    Parameters
    ----------
    masks : numpy.ndarray
        ``(..., 2, mask_channel, H, W)``: ``valid`` then one-hot ``spec.onehot_classes``.
    spec : FeatureSpec
        Feature parameters; classes in ``valid_classes`` but not in ``target_classes``
        (cloud shadow by default) are removed, through their one-hot channels.

    Returns
    -------
    numpy.ndarray
        ``(..., 2, H, W)`` booleans.
    """
    keep = masks[..., 0, :, :] > 0
    for i, cls in enumerate(spec.onehot_classes, start=1):
        if cls in spec.valid_classes and cls not in spec.target_classes:
            keep &= masks[..., i, :, :] == 0
    return keep


def fit_regressions(x: np.ndarray, y: np.ndarray, *, max_pixels: int, rf_max_pixels: int,
                    rf_trees: int, rf_depth: int, threads: int,
                    seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the pixel-wise linear regression and random forest.

    Parameters
    ----------
    x : numpy.ndarray
        ``(n, 22)`` pixel features (:func:`pixel_table`) in random order.
    y : numpy.ndarray
        ``(n,)`` targets on the LAI/5 scale.
    max_pixels, rf_max_pixels : int
        The first pixels the linear regression and the random forest are fitted on.
    rf_trees, rf_depth : int
        Trees and maximum depth of the random forest.
    threads : int
        Random-forest jobs.
    seed : int
        Seed of the random forest.

    Returns
    -------
    regressors : dict
        ``"linear regression"`` and ``"random forest"``, fitted.
    meta : dict
        Pixels used and forest size.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    try:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.linear_model import LinearRegression
    except ImportError as err:
        raise ImportError(
            "the pixel-wise baselines need scikit-learn: pip install scikit-learn, or "
            "evaluate with baselines=False"
        ) from err
    linear = LinearRegression().fit(x[:max_pixels], y[:max_pixels])
    forest = RandomForestRegressor(n_estimators=rf_trees, max_depth=rf_depth, n_jobs=threads,
                                   random_state=seed).fit(x[:rf_max_pixels], y[:rf_max_pixels])
    meta = {"fit_pixels_linear": int(min(max_pixels, len(y))),
            "fit_pixels_forest": int(min(rf_max_pixels, len(y))), "rf_trees": rf_trees,
            "rf_depth": rf_depth}
    return {"linear regression": linear, "random forest": forest}, meta


def regression_predictions(regressors: Mapping[str, Any], data: Mapping[str, np.ndarray],
                           where: np.ndarray, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Predict with fitted regressors at the pixels ``where``; NaN elsewhere (never scored).

    Parameters
    ----------
    regressors : mapping
        Method name → fitted regressor (:func:`fit_regressions`).
    data : mapping
        Cache arrays of a batch, with every name in :data:`MODEL_INPUTS`.
    where : numpy.ndarray
        ``(B, H, W)`` booleans: the pixels to predict.
    spec : FeatureSpec
        Scale and clip range.

    Returns
    -------
    dict
        Method name → ``(B, H, W)`` float32 LAI in m²/m².
    """
    feats = pixel_table(data)[where]
    out = {}
    for name, regressor in regressors.items():
        full = np.full(where.shape, np.nan, dtype=np.float32)
        if feats.shape[0]:
            full[where] = np.clip(regressor.predict(feats) * spec.lai_scale, *spec.lai_clip)
        out[name] = full
    return out
