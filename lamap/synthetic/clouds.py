"""Clouds, thin cirrus and cloud shadows of the synthetic world, and its Sentinel-2 SCL.

Cumulus clouds are thresholded multi-scale smooth noise whose excess over the threshold
acts as an optical depth, so their opacity rises softly from their edges. Their shadows
are the cloud mask moved by the projection of the cloud height along the sun's rays, away
from the sun, and clouds just outside the frame cast shadows into it. Thin cirrus is a
separate, streaky, large-scale layer that some scenes have.

The scene classification (SCL) follows the Sen2Cor classes of Sentinel-2 L2A products;
see :class:`Scl`. Everything is on a regular north-up pixel grid (rows grow southward)
given by its shape and resolution in metres.

Examples
--------
>>> import numpy as np
>>> sky = cloud_scene((256, 256), np.random.default_rng(0), cover_fraction=0.3,
...                   sun_zenith=35.0, sun_azimuth=150.0)
>>> sorted(set(np.unique(sky.scl_overlay())) - {0, 3, 8, 9, 10})
[]
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import numpy as np
from scipy import special

from lamap.errors import InputError
from lamap.synthetic.noise import smooth_noise
from lamap.synthetic.phenology import Cover

__all__ = [
    "CIRRUS_THRESHOLD",
    "CLOUD_HIGH_THRESHOLD",
    "CLOUD_MEDIUM_THRESHOLD",
    "VEGETATION_LAI",
    "CloudScene",
    "Scl",
    "CLOUD_REGIMES",
    "cloud_cover_sequence",
    "cloud_scene",
    "regime_cover_sequence",
    "combine_scl",
    "surface_scl",
]


class Scl(IntEnum):
    """Sen2Cor scene classification (SCL) values of Sentinel-2 L2A products."""

    NO_DATA = 0
    SATURATED_OR_DEFECTIVE = 1
    DARK_AREA_PIXELS = 2
    CLOUD_SHADOWS = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM_PROBABILITY = 8
    CLOUD_HIGH_PROBABILITY = 9
    THIN_CIRRUS = 10
    SNOW = 11


#: Opacity from which a pixel is classified cloud (medium probability, SCL 8) and casts a
#: shadow; thinner cloud edges pass as clear, as they often do in Sen2Cor.
CLOUD_MEDIUM_THRESHOLD: Final = 0.35
#: Opacity from which a cloud is of high probability (SCL 9).
CLOUD_HIGH_THRESHOLD: Final = 0.7
#: Cirrus thickness from which a pixel without cumulus is thin cirrus (SCL 10).
CIRRUS_THRESHOLD: Final = 0.1
#: LAI from which a clear field pixel is classified vegetation (SCL 4) rather than not
#: vegetated (SCL 5); a green cover of LAI ~0.7 has an NDVI of about 0.4-0.5.
VEGETATION_LAI: Final = 0.7

#: Optical-depth scale of the cumulus, in units of the noise's standard deviation.
_DEPTH_SCALE: Final = 0.35
#: Cumulus noise octaves: correlation lengths (m) and weights.
_CUMULUS_SCALES_M: Final = (5000.0, 2000.0, 800.0, 300.0, 120.0)
_CUMULUS_WEIGHTS: Final = (1.0, 0.8, 0.6, 0.35, 0.2)
#: Number of cloud-height layers whose shadows are cast separately.
_HEIGHT_LAYERS: Final = 4
#: Largest sun zenith angle (degrees) accepted: shadows get kilometres long beyond.
_MAX_SUN_ZENITH: Final = 80.0


@dataclass(frozen=True)
class CloudScene:
    """The clouds of one acquisition on a north-up pixel grid.

    Attributes
    ----------
    opacity : numpy.ndarray
        float32 (H, W) cumulus opacity in [0, 1] (0 clear, 1 opaque).
    cirrus : numpy.ndarray
        float32 (H, W) thin-cirrus thickness in [0, 1].
    shadow : numpy.ndarray
        bool (H, W) cloud shadow, never under a cloud (opacity >= the medium threshold).
    sun_zenith, sun_azimuth : float
        Sun angles (degrees; azimuth clockwise from north) the shadows were cast with.
    """

    opacity: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray
    sun_zenith: float
    sun_azimuth: float

    def __post_init__(self) -> None:
        """Check that the arrays share one shape."""
        shape = self.opacity.shape
        for name in ("cirrus", "shadow"):
            found = getattr(self, name).shape
            if found != shape:
                raise InputError(f"CloudScene.{name} has shape {found}, expected {shape}.")

    @property
    def cloud(self) -> np.ndarray:
        """Boolean cloud mask: opacity at or above :data:`CLOUD_MEDIUM_THRESHOLD`."""
        return np.asarray(self.opacity >= CLOUD_MEDIUM_THRESHOLD)

    def scl_overlay(self) -> np.ndarray:
        """SCL classes the clouds decide, 0 where the surface decides.

        Returns
        -------
        numpy.ndarray
            uint8 (H, W): 9 (opacity >= 0.7), 8 (opacity >= 0.35), else 3 (shadow), else
            10 (cirrus >= 0.1), else 0.
        """
        scl = np.zeros(self.opacity.shape, dtype=np.uint8)
        scl[self.cirrus >= CIRRUS_THRESHOLD] = Scl.THIN_CIRRUS
        scl[self.shadow] = Scl.CLOUD_SHADOWS
        scl[self.opacity >= CLOUD_MEDIUM_THRESHOLD] = Scl.CLOUD_MEDIUM_PROBABILITY
        scl[self.opacity >= CLOUD_HIGH_THRESHOLD] = Scl.CLOUD_HIGH_PROBABILITY
        return scl


# --------------------------------------------------------------------------- cloud scene


def cloud_scene(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    cover_fraction: float,
    sun_zenith: float,
    sun_azimuth: float,
    resolution: float = 10.0,
    cloud_height_m: tuple[float, float] = (1000.0, 3000.0),
    cirrus_probability: float = 0.3,
) -> CloudScene:
    """Make the clouds, thin cirrus and cloud shadows of one acquisition.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (rows, columns); rows grow southward.
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same scene.
    cover_fraction : float
        Share of the frame classified cloud (opacity >= 0.35), in [0, 1]; 0 gives a
        clear sky (no cirrus either) and 1 an overcast one.
    sun_zenith : float
        Sun zenith angle in degrees, in [0, 80].
    sun_azimuth : float
        Sun azimuth in degrees clockwise from north (150 is south-south-east).
    resolution : float, optional
        Pixel size in metres.
    cloud_height_m : tuple of float, optional
        Range of cloud-base heights (m); heights vary smoothly across the scene.
    cirrus_probability : float, optional
        Probability that the scene has a thin-cirrus layer.

    Returns
    -------
    CloudScene
        Opacity, cirrus and shadow arrays of ``shape``.

    Raises
    ------
    InputError
        If an argument is out of its range.
    """
    _check_scene_args(
        shape, cover_fraction, sun_zenith, resolution, cloud_height_m, cirrus_probability
    )
    shape = (int(shape[0]), int(shape[1]))
    if cover_fraction == 0:
        zeros = np.zeros(shape, dtype=np.float32)
        return CloudScene(
            zeros, zeros.copy(), np.zeros(shape, dtype=bool), float(sun_zenith), float(sun_azimuth)
        )
    offsets = _shadow_offsets(sun_zenith, sun_azimuth, cloud_height_m, resolution)
    top, bottom, left, right = _padding(offsets)
    padded = (shape[0] + top + bottom, shape[1] + left + right)
    frame = (slice(top, top + shape[0]), slice(left, left + shape[1]))
    opacity = _cumulus(padded, frame, rng, cover_fraction, resolution)
    layer = _height_layers(padded, rng, resolution, len(offsets))
    shadow = _cast_shadows(opacity >= CLOUD_MEDIUM_THRESHOLD, layer, offsets)[frame]
    opacity = np.ascontiguousarray(opacity[frame])
    shadow &= opacity < CLOUD_MEDIUM_THRESHOLD
    cirrus = _cirrus(shape, rng, resolution, cirrus_probability)
    return CloudScene(
        opacity, cirrus, np.ascontiguousarray(shadow), float(sun_zenith), float(sun_azimuth)
    )


def _check_scene_args(
    shape: tuple[int, int],
    cover_fraction: float,
    sun_zenith: float,
    resolution: float,
    cloud_height_m: tuple[float, float],
    cirrus_probability: float,
) -> None:
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"a grid shape must be two positive integers (rows, cols), got {shape}.")
    checks = [
        (0.0 <= cover_fraction <= 1.0, f"cover_fraction must be in [0, 1], got {cover_fraction}"),
        (
            0.0 <= sun_zenith <= _MAX_SUN_ZENITH,
            f"sun_zenith must be in [0, {_MAX_SUN_ZENITH:g}] degrees, got {sun_zenith}",
        ),
        (resolution > 0, f"resolution must be a positive number of metres, got {resolution}"),
        (
            len(cloud_height_m) == 2 and 0 <= cloud_height_m[0] <= cloud_height_m[1] <= 15000,
            f"cloud_height_m must be (low, high) metres with 0 <= low <= high <= 15000, "
            f"got {cloud_height_m}",
        ),
        (
            0.0 <= cirrus_probability <= 1.0,
            f"cirrus_probability must be in [0, 1], got {cirrus_probability}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message + ".")


def _shadow_offsets(
    sun_zenith: float, sun_azimuth: float, heights: tuple[float, float], resolution: float
) -> list[tuple[int, int]]:
    """Shadow displacement (rows, cols) in pixels of each height layer.

    A shadow falls ``h * tan(sun_zenith)`` away from its cloud toward the anti-sun
    azimuth ``sun_azimuth + 180°``; moving toward azimuth ``a`` (clockwise from north)
    on a north-up grid is ``(-cos a, sin a)`` in (rows, cols), hence
    ``(cos sun_azimuth, -sin sun_azimuth)`` per unit length.
    """
    low, high = heights
    n = 1 if high == low else _HEIGHT_LAYERS
    levels = low + (high - low) * (np.arange(n) + 0.5) / n if n > 1 else np.array([low])
    length = levels * np.tan(np.radians(sun_zenith)) / resolution
    azimuth = np.radians(sun_azimuth)
    rows = np.rint(np.cos(azimuth) * length).astype(int)
    cols = np.rint(-np.sin(azimuth) * length).astype(int)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


def _padding(offsets: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    """Margins (top, bottom, left, right) holding the clouds whose shadows reach the frame."""
    rows = [r for r, _ in offsets]
    cols = [c for _, c in offsets]
    return max(0, *rows), max(0, *(-r for r in rows)), max(0, *cols), max(0, *(-c for c in cols))


def _cumulus(
    shape: tuple[int, int],
    frame: tuple[slice, slice],
    rng: np.random.Generator,
    cover_fraction: float,
    resolution: float,
) -> np.ndarray:
    """Cumulus opacity on ``shape``, thresholded so ``cover_fraction`` of ``frame`` is cloud.

    The noise above a threshold is an optical depth ``tau``; opacity is ``1 - exp(-tau)``.
    """
    noise = np.zeros(shape, dtype=np.float32)
    for scale_m, weight in zip(_CUMULUS_SCALES_M, _CUMULUS_WEIGHTS, strict=True):
        noise += np.float32(weight) * smooth_noise(shape, rng, scale_px=scale_m / resolution)
    inside = noise[frame]
    if cover_fraction >= 1.0:
        cloud_level = float(inside.min())
    else:
        cloud_level = float(np.quantile(_subsample(inside), 1.0 - cover_fraction))
    depth_scale = _DEPTH_SCALE * float(np.sqrt(np.sum(np.square(_CUMULUS_WEIGHTS))))
    edge = cloud_level - depth_scale * np.log(1.0 / (1.0 - CLOUD_MEDIUM_THRESHOLD)) - 1e-4
    noise -= np.float32(edge)
    np.maximum(noise, 0.0, out=noise)
    noise *= np.float32(-1.0 / depth_scale)
    np.exp(noise, out=noise)
    return np.subtract(1.0, noise, out=noise)


def _subsample(array: np.ndarray, size: int = 1_000_000) -> np.ndarray:
    step = max(1, int(np.sqrt(array.size / size)))
    return array[::step, ::step]


def _height_layers(
    shape: tuple[int, int], rng: np.random.Generator, resolution: float, n_layers: int
) -> np.ndarray:
    """Cloud-height layer (0 lowest) of each pixel, varying smoothly over ~10 km."""
    if n_layers == 1:
        return np.zeros(shape, dtype=np.uint8)
    uniform = special.ndtr(smooth_noise(shape, rng, scale_px=6000.0 / resolution))
    return np.minimum(uniform * n_layers, n_layers - 1).astype(np.uint8)


def _cast_shadows(
    cloud: np.ndarray, layer: np.ndarray, offsets: list[tuple[int, int]]
) -> np.ndarray:
    """Union of each height layer's cloud mask moved by its shadow offset."""
    shadow = np.zeros(cloud.shape, dtype=bool)
    for index, (rows, cols) in enumerate(offsets):
        source = cloud if len(offsets) == 1 else cloud & (layer == index)
        _or_shifted(shadow, source, rows, cols)
    return shadow


def _or_shifted(target: np.ndarray, source: np.ndarray, rows: int, cols: int) -> None:
    """``target[r + rows, c + cols] |= source[r, c]`` where both are inside (in place)."""
    height, width = source.shape
    target[max(rows, 0) : height + min(rows, 0), max(cols, 0) : width + min(cols, 0)] |= source[
        max(-rows, 0) : height - max(rows, 0), max(-cols, 0) : width - max(cols, 0)
    ]


def _cirrus(
    shape: tuple[int, int], rng: np.random.Generator, resolution: float, probability: float
) -> np.ndarray:
    """Thin cirrus: streaky bands over 20-80 % of the scene, thickness up to 0.15-0.6."""
    if rng.random() >= probability:
        return np.zeros(shape, dtype=np.float32)
    angle = rng.uniform(0.0, 180.0)
    noise = 0.8 * smooth_noise(
        shape, rng, scale_px=2500.0 / resolution, elongation=4.0, angle_deg=angle
    )
    noise += 0.45 * smooth_noise(
        shape, rng, scale_px=600.0 / resolution, elongation=3.0, angle_deg=angle
    )
    level = float(np.quantile(_subsample(noise), 1.0 - rng.uniform(0.2, 0.8)))
    thickness = np.float32(rng.uniform(0.15, 0.6))
    return (thickness * np.clip(noise - np.float32(level), 0.0, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- SCL


def surface_scl(
    cover: np.ndarray,
    lai: np.ndarray,
    rng: np.random.Generator,
    *,
    dark_rate: float = 0.002,
    unclassified_rate: float = 0.003,
) -> np.ndarray:
    """Scene classification of clear pixels from the land cover and the LAI.

    Vegetation (4) where LAI >= :data:`VEGETATION_LAI` and on forest and grassland (even
    leafless or mown: stems, litter and grass keep them green enough); water (6) on water;
    not vegetated (5) elsewhere (bare soil, built-up, sparse crops). Like Sen2Cor's,
    the map has a little noise: about 0.2 % of pixels dark area (2, as dark soils, deep
    shade or wet patches) and 0.3 % unclassified (7), scattered at random. These rates are
    a modelling choice in the range seen on clear lowland Sen2Cor scenes, not a
    measured statistic.

    Parameters
    ----------
    cover : numpy.ndarray
        (H, W) :class:`~lamap.synthetic.landscape.Cover` values.
    lai : numpy.ndarray
        (H, W) LAI at the acquisition.
    rng : numpy.random.Generator
        Source of randomness for the noise.
    dark_rate, unclassified_rate : float, optional
        Shares of pixels classified dark area (2) and unclassified (7).

    Returns
    -------
    numpy.ndarray
        uint8 (H, W) SCL with values in {2, 4, 5, 6, 7}.

    Raises
    ------
    InputError
        If the shapes differ or the rates are not within [0, 1] together.
    """
    cover = np.asarray(cover)
    lai = np.asarray(lai)
    if cover.shape != lai.shape:
        raise InputError(f"surface_scl: cover {cover.shape} and lai {lai.shape} shapes differ.")
    if not (0 <= dark_rate and 0 <= unclassified_rate and dark_rate + unclassified_rate <= 1):
        raise InputError(
            f"surface_scl: dark_rate ({dark_rate}) and unclassified_rate "
            f"({unclassified_rate}) must be >= 0 and sum to at most 1."
        )
    green = (lai >= VEGETATION_LAI) | (cover == Cover.FOREST) | (cover == Cover.GRASSLAND)
    scl = np.where(green, np.uint8(Scl.VEGETATION), np.uint8(Scl.NOT_VEGETATED))
    scl[cover == Cover.WATER] = Scl.WATER
    draw = rng.random(cover.shape, dtype=np.float32)
    scl[draw < dark_rate + unclassified_rate] = Scl.UNCLASSIFIED
    scl[draw < dark_rate] = Scl.DARK_AREA_PIXELS
    return scl.astype(np.uint8, copy=False)


def combine_scl(surface: np.ndarray, overlay: np.ndarray) -> np.ndarray:
    """Return the final SCL: the cloud overlay where non-zero, else the surface class.

    Parameters
    ----------
    surface : numpy.ndarray
        (H, W) SCL of the clear surface, e.g. from :func:`surface_scl`.
    overlay : numpy.ndarray
        (H, W) SCL from :meth:`CloudScene.scl_overlay`, 0 where the surface decides.

    Returns
    -------
    numpy.ndarray
        uint8 (H, W) SCL.

    Raises
    ------
    InputError
        If the shapes differ.
    """
    surface = np.asarray(surface)
    overlay = np.asarray(overlay)
    if surface.shape != overlay.shape:
        raise InputError(
            f"combine_scl: surface {surface.shape} and overlay {overlay.shape} shapes differ."
        )
    return np.where(overlay != 0, overlay, surface).astype(np.uint8)


# --------------------------------------------------------------------------- time series


def cloud_cover_sequence(
    n: int,
    rng: np.random.Generator,
    *,
    clear_fraction: float = 0.35,
    overcast_fraction: float = 0.15,
    persistence: float = 0.4,
) -> np.ndarray:
    """Cloud cover fractions of a series of acquisitions.

    Each acquisition is clear (cover 0, or a few per cent), partly cloudy (3-88 %,
    skewed low) or overcast (90-100 %). The weather persists: with probability
    ``persistence`` an acquisition repeats the previous one's kind, otherwise its kind is
    drawn afresh, which keeps the long-run shares at the requested fractions. The defaults
    resemble Sentinel-2 revisits over central Europe, where about a third of the scenes
    are usable.

    Parameters
    ----------
    n : int
        Number of acquisitions.
    rng : numpy.random.Generator
        Source of randomness.
    clear_fraction, overcast_fraction : float, optional
        Long-run shares of clear and overcast acquisitions (the rest partly cloudy).
    persistence : float, optional
        Probability in [0, 1) that an acquisition has the previous one's kind of sky.

    Returns
    -------
    numpy.ndarray
        float64 (n,) cover fractions in [0, 1].

    Raises
    ------
    InputError
        If ``n`` < 0 or a share is out of range.
    """
    if int(n) != n or n < 0:
        raise InputError(f"cloud_cover_sequence needs a count n >= 0, got {n}.")
    if not (
        0 <= clear_fraction
        and 0 <= overcast_fraction
        and clear_fraction + overcast_fraction <= 1
        and 0 <= persistence < 1
    ):
        raise InputError(
            f"cloud_cover_sequence: clear_fraction ({clear_fraction}) and overcast_fraction "
            f"({overcast_fraction}) must be >= 0 and sum to at most 1, persistence "
            f"({persistence}) in [0, 1)."
        )
    n = int(n)
    shares = [clear_fraction, 1.0 - clear_fraction - overcast_fraction, overcast_fraction]
    kind = _persistent_states(rng.choice(3, size=n, p=shares), rng.random(n) < persistence)
    clear = np.where(rng.random(n) < 0.6, 0.0, rng.uniform(0.0, 0.03, n))
    partly = 0.03 + 0.85 * rng.beta(1.2, 1.8, n)
    overcast = np.where(rng.random(n) < 0.5, 1.0, rng.uniform(0.9, 1.0, n))
    return np.choose(kind, [clear, partly, overcast])


#: Cloudiness regimes of a world: keyword arguments of :func:`cloud_cover_sequence` and the
#: number of long overcast stretches (each 3 to 6 weeks of 90-100 % cover).
CLOUD_REGIMES: dict[str, tuple[dict[str, float], int]] = {
    "default": ({}, 0),
    "clear": ({"clear_fraction": 0.55, "overcast_fraction": 0.05}, 0),
    "overcast": ({"clear_fraction": 0.3, "overcast_fraction": 0.15}, 2),
}
#: Acquisitions per stretch of :func:`regime_cover_sequence` (one every 5 days: 3-6 weeks).
_STRETCH = (4, 8)


def regime_cover_sequence(
    regime: str, n: int, rng: np.random.Generator, stretch_rng: np.random.Generator
) -> np.ndarray:
    """Cloud cover fractions of ``n`` acquisitions five days apart under a regime.

    ``"default"`` is :func:`cloud_cover_sequence` with its defaults (the same draws from
    ``rng``); ``"clear"`` shifts the shares to clear skies; ``"overcast"`` then overwrites
    up to two stretches of 4 to 8 acquisitions (3 to 6 weeks) with 90-100 % cover, drawn
    from ``stretch_rng`` (so the rest of the sequence stays that of its shares).

    Raises
    ------
    InputError
        If ``regime`` is not one of :data:`CLOUD_REGIMES`.
    """
    if regime not in CLOUD_REGIMES:
        raise InputError(f"unknown cloudiness {regime!r}: use one of {sorted(CLOUD_REGIMES)}.")
    shares, stretches = CLOUD_REGIMES[regime]
    fractions = cloud_cover_sequence(n, rng, **shares)
    for _ in range(stretches if n >= 2 * _STRETCH[0] else 0):
        length = int(stretch_rng.integers(_STRETCH[0], _STRETCH[1] + 1))
        first = int(stretch_rng.integers(0, max(n - length, 0) + 1))
        cover = stretch_rng.uniform(0.9, 1.0, length)
        fractions[first:first + length] = np.where(stretch_rng.random(length) < 0.5, 1.0, cover)
    return fractions


def _persistent_states(fresh: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Each state is the previous one where ``keep``, else the fresh draw."""
    states = fresh.copy()
    for i in range(1, len(states)):
        if keep[i]:
            states[i] = states[i - 1]
    return states
