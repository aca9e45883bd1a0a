"""The feature definition: one frozen :class:`FeatureSpec`, stored with every checkpoint.

Training writes the spec into its cache and checkpoint; mapping reads it back from the
checkpoint, so both build exactly the same model inputs (:mod:`lamap.features`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from lamap.errors import InputError
from lamap.lai import SNAP_BANDS
from lamap.sharpen import EXTRA_BANDS

__all__ = [
    "ANGLES",
    "DEFAULT_SPEC",
    "FEATURES_VERSION",
    "MODEL_INPUTS",
    "PAST_STEPS",
    "S1_BANDS",
    "S1_STEPS",
    "SCL_CLASSES",
    "SERIES_DEFAULTS",
    "SPEC_ATTR",
    "TARGETS",
    "FeatureSpec",
]

#: Version of the feature definition; bump it whenever a feature changes meaning.
FEATURES_VERSION = 1

#: Sentinel-2 scene classification classes and the channel names used for them.
SCL_CLASSES: dict[int, str] = {
    0: "no_data",
    1: "saturated",
    2: "dark_area",
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium",
    9: "cloud_high",
    10: "thin_cirrus",
    11: "snow",
}

#: Dataset attribute holding the spec as JSON.
SPEC_ATTR = "lamap_feature_spec"

#: Model inputs and their dimensions (trailing; leading batch dimensions are kept).
MODEL_INPUTS: dict[str, tuple[str, ...]] = {
    "s1": ("s1_channel", "y", "x"),
    "lai": ("lai_channel", "y", "x"),
    "masks": ("step", "mask_channel", "y", "x"),
    "season": ("season_channel",),
}
#: Training targets, present when Sentinel-2 at D was given.
TARGETS: dict[str, tuple[str, ...]] = {"target": ("y", "x"), "target_mask": ("y", "x")}

PAST_STEPS = ("t-2", "t-1")
S1_STEPS = ("t-2", "t-1", "t")
S1_BANDS = ("vv", "vh")
ANGLES = ("view_zenith", "sun_zenith", "relative_azimuth")
#: The Sentinel-1 fields and their values for the fused model's inputs; a spec equal to them
#: there leaves them out of :meth:`FeatureSpec.to_dict`, so the fused model's checkpoints,
#: caches and cache keys read exactly as before the time series existed.
SERIES_DEFAULTS: dict[str, Any] = {"s1_at_steps": True, "s1_window_days": 0, "s1_passes": 0}



# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class FeatureSpec:
    """Every parameter of the feature definition; stored in each checkpoint.

    Parameters
    ----------
    lai_scale : float
        LAI (m²/m²) is divided by this (MODEL.md: 5).
    db_scale, db_offset : float
        Backscatter becomes ``dB / db_scale + db_offset`` (MODEL.md: 30 and 1).
    valid_classes : tuple of int
        SCL classes where a past S2 LAI is usable (the ``valid`` input channel; MODEL.md:
        2..6).
    target_classes : tuple of int
        SCL classes where S2 at D is trusted as the truth: the loss mask and the map's
        observed LAI (2, 4, 5, 6: cloud shadows are not a label, see the module notes).
    onehot_classes : tuple of int
        SCL classes with a one-hot channel each, after ``valid`` (MODEL.md: 2..6).
    season_period_days : float
        Period of the (sin, cos) day-of-year encoding.
    lai_clip : tuple of float
        ``(low, high)`` in m²/m²; LAI inputs, target and observed LAI are clipped to it.
    lai_fill : float
        Normalised LAI input where LAI is missing (or not valid, see ``mask_invalid_lai``).
    s1_fill : float
        Normalised S1 input where backscatter is missing (0 is −30 dB with the defaults).
    mask_invalid_lai : bool
        Replace LAI inputs by ``lai_fill`` wherever the pixel is not valid.
    s1_at_steps : bool
        Sentinel-1 at t-2, t-1 and D: the pass nearest to each step (the fused model's
        ``s1``, 6 channels).
    s2_sharpen : int
        Half-width (10-m pixels) of the window in which SNAP's 20-m bands are sharpened
        with the 10-m bands before SNAP, for every S2 LAI: inputs, label and observed LAI
        (:mod:`lamap.sharpen`); 0: the 20-m bands as the loader interpolates them (the
        paper's label).
    s1_window_days, s1_passes : int
        The Sentinel-1 time series: the most recent ``s1_passes`` passes in
        ``[D - s1_window_days, D]`` (``s1_series``, ``s1_series_valid``, ``s1_days``; missing
        passes are masked, never invented; see :mod:`lamap.radar_series`). Both 0: no series.
    version : int
        Version of the feature definition; only :data:`FEATURES_VERSION` is accepted.

    Raises
    ------
    InputError
        If a parameter is out of range; the message names it.
    """

    lai_scale: float = 5.0
    db_scale: float = 30.0
    db_offset: float = 1.0
    valid_classes: tuple[int, ...] = (2, 3, 4, 5, 6)
    target_classes: tuple[int, ...] = (2, 4, 5, 6)
    onehot_classes: tuple[int, ...] = (2, 3, 4, 5, 6)
    season_period_days: float = 365.25
    lai_clip: tuple[float, float] = (0.0, 8.0)
    lai_fill: float = 0.0
    s1_fill: float = 0.0
    mask_invalid_lai: bool = True
    s1_at_steps: bool = True
    s1_window_days: int = 0
    s1_passes: int = 0
    s2_sharpen: int = 0
    version: int = FEATURES_VERSION

    def __post_init__(self) -> None:
        """Validate and normalise (floats, tuples of int)."""
        _check_version(self.version)
        for name in ("lai_scale", "db_scale", "season_period_days"):
            self._set(name, _positive(name, getattr(self, name)))
        for name in ("db_offset", "lai_fill", "s1_fill"):
            self._set(name, _finite(name, getattr(self, name)))
        for name in ("valid_classes", "target_classes", "onehot_classes"):
            self._set(name, _classes(name, getattr(self, name)))
        self._set("lai_clip", _clip_range(self.lai_clip))
        for name in ("mask_invalid_lai", "s1_at_steps"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(
                    f"feature spec {name} must be true or false, got {getattr(self, name)!r}"
                )
        _check_series(self.s1_at_steps, self.s1_window_days, self.s1_passes)
        if (isinstance(self.s2_sharpen, bool) or not isinstance(self.s2_sharpen, int)
                or not 0 <= self.s2_sharpen <= 16):
            raise InputError(f"feature spec s2_sharpen must be an integer radius from 0 (off) "
                             f"to 16 pixels, got {self.s2_sharpen!r}")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    @property
    def s1_labels(self) -> tuple[str, ...]:
        """Labels of the S1 channels: ``vv_t-2, vh_t-2, vv_t-1, vh_t-1, vv_t, vh_t``."""
        return tuple(f"{band}_{step}" for step in S1_STEPS for band in S1_BANDS)

    @property
    def lai_labels(self) -> tuple[str, ...]:
        """Labels of the LAI channels: ``lai_t-2, lai_t-1``."""
        return tuple(f"lai_{step}" for step in PAST_STEPS)

    @property
    def mask_labels(self) -> tuple[str, ...]:
        """Labels of one step's mask channels: ``valid`` then the one-hot classes."""
        return ("valid", *(SCL_CLASSES[c] for c in self.onehot_classes))

    @property
    def s2_bands(self) -> tuple[str, ...]:
        """The Sentinel-2 bands the spec reads: SNAP's, and B08 when it sharpens."""
        return (*SNAP_BANDS, *EXTRA_BANDS) if self.s2_sharpen else SNAP_BANDS

    @property
    def s1_series(self) -> bool:
        """Whether the spec makes the Sentinel-1 time series inputs."""
        return self.s1_passes > 0

    @property
    def series_labels(self) -> tuple[str, ...]:
        """Labels of the series' pass slots, oldest first: ``p-5`` … ``p-0`` for 6 passes."""
        return tuple(f"p-{i}" for i in reversed(range(self.s1_passes)))

    def same_inputs(self, other: FeatureSpec) -> bool:
        """Whether ``other`` makes the same model inputs (it may choose other labels)."""
        return replace(self, target_classes=other.target_classes) == other

    def provides(self, other: FeatureSpec) -> bool:
        """Whether data made with this spec holds every input ``other`` makes, identically.

        A training cache made with both the Sentinel-1 steps and the series serves a model
        of either kind: every other field must be equal (labels may differ), the steps must
        be there if ``other`` takes them, and the series must be the same if it takes one.
        """
        steps = self.s1_at_steps or not other.s1_at_steps
        series = not other.s1_series or (self.s1_window_days, self.s1_passes) == (
            other.s1_window_days, other.s1_passes)
        return steps and series and replace(
            self, target_classes=other.target_classes, **_series_of(other)) == other

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists for tuples), for checkpoints and store attributes.

        The Sentinel-1 fields are left out where they have their fused-model values
        (:data:`SERIES_DEFAULTS`), and ``s2_sharpen`` where it is 0, so those specs read as
        before the series and the sharpening existed.
        """
        data = asdict(self)
        if _series_of(self) == SERIES_DEFAULTS:
            data = {k: v for k, v in data.items() if k not in SERIES_DEFAULTS}
        if not self.s2_sharpen:
            del data["s2_sharpen"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`; strict, so a checkpoint cannot be misread.

        Parameters
        ----------
        data : mapping
            Every field of :class:`FeatureSpec`, as written by :meth:`to_dict`.

        Returns
        -------
        FeatureSpec

        Raises
        ------
        InputError
            If ``data`` is not a mapping, has another version, unknown or missing keys, or
            invalid values.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a feature spec must be a mapping, got {type(data).__name__}")
        _check_version(data.get("version"))
        if "target_classes" not in data and "valid_classes" in data:  # written before it existed
            data = {**data, "target_classes": data["valid_classes"]}
        data = {**SERIES_DEFAULTS, "s2_sharpen": 0, **data}  # left out at their defaults
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data))
        if unknown or missing:
            raise InputError(
                f"feature spec version {FEATURES_VERSION} has keys {sorted(known)}; got "
                f"unknown {unknown} and missing {missing}: the spec was written by another "
                "lamap, or edited by hand; use the lamap that wrote it or retrain the model"
            )
        return cls(**dict(data))


def _check_version(version: object) -> None:
    if version != FEATURES_VERSION or isinstance(version, bool):
        raise InputError(
            f"feature spec version {version!r} is not supported: this lamap reads version "
            f"{FEATURES_VERSION}; use the lamap that wrote the checkpoint or retrain the model"
        )


def _series_of(spec: FeatureSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in SERIES_DEFAULTS}


def _check_series(at_steps: bool, window: object, passes: object) -> None:
    for name, value in (("s1_window_days", window), ("s1_passes", passes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"feature spec {name} must be an integer >= 0, got {value!r}")
    if (window == 0) != (passes == 0):
        raise InputError(
            f"feature spec s1_window_days ({window}) and s1_passes ({passes}) must both be 0 "
            "(no Sentinel-1 series) or both positive, e.g. 36 days and 6 passes"
        )
    if not at_steps and passes == 0:
        raise InputError(
            "feature spec has no Sentinel-1 input: set s1_at_steps (t-2, t-1, t) or a series "
            "(s1_window_days and s1_passes)"
        )


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InputError(f"feature spec {name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InputError(f"feature spec {name} must be finite, got {value!r}")
    return float(value)


def _positive(name: str, value: object) -> float:
    number = _finite(name, value)
    if number <= 0:
        raise InputError(f"feature spec {name} must be > 0, got {value!r}")
    return number


def _classes(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InputError(f"feature spec {name} must be a list of SCL classes, got {value!r}")
    bad = [c for c in value
           if isinstance(c, bool) or not isinstance(c, int) or c not in SCL_CLASSES]
    if bad or not value or len(set(value)) != len(value):
        raise InputError(
            f"feature spec {name} must list distinct SCL classes from 0 to 11, got {list(value)}"
        )
    return tuple(int(c) for c in value)


def _clip_range(value: object) -> tuple[float, float]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise InputError(f"feature spec lai_clip must be (low, high) in m2/m2, got {value!r}")
    low, high = _finite("lai_clip", value[0]), _finite("lai_clip", value[1])
    if low >= high:
        raise InputError(f"feature spec lai_clip must have low < high, got {list(value)}")
    return low, high


#: The paper's feature definition.
DEFAULT_SPEC = FeatureSpec()
