"""Smooth random fields for the synthetic world: single-scale and fractal Gaussian noise.

White noise on a coarse lattice is Gaussian-filtered (optionally stretched into streaks and
rotated) and bilinearly interpolated to the grid, so the cost barely depends on the scale.
Everything is a pure function of its arguments and of the ``numpy.random.Generator`` it is
given.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lamap.errors import InputError

__all__ = ["check_shape", "fractal_noise", "smooth_noise"]



def smooth_noise(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    scale_px: float,
    elongation: float = 1.0,
    angle_deg: float = 0.0,
) -> np.ndarray:
    """Smooth Gaussian random field of zero mean and about unit variance.

    White noise on a coarse lattice is Gaussian-filtered and bilinearly interpolated to
    the grid, so the cost barely depends on the scale.

    Parameters
    ----------
    shape : tuple of int
        Output shape (rows, columns).
    rng : numpy.random.Generator
        Source of randomness.
    scale_px : float
        Correlation length (Gaussian sigma) in pixels, across the streaks if elongated.
    elongation : float, optional
        Ratio of the correlation length along the streaks to ``scale_px`` (>= 1).
    angle_deg : float, optional
        Direction of the streaks, degrees counter-clockwise from the column axis.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.

    Raises
    ------
    InputError
        If ``shape`` is not two positive sizes, ``scale_px`` <= 0 or ``elongation`` < 1.
    """
    check_shape(shape)
    if not scale_px > 0 or not elongation >= 1:
        raise InputError(
            f"smooth_noise needs scale_px > 0 and elongation >= 1, got {scale_px} and {elongation}."
        )
    step = max(1.0, scale_px / 3.0)
    sigma = (scale_px / step, scale_px * elongation / step)
    margin = int(np.ceil(4 * max(sigma))) + 2
    lattice = (
        int(np.ceil(shape[0] / step)) + 2 * margin,
        int(np.ceil(shape[1] / step)) + 2 * margin,
    )
    if elongation > 1:
        coarse = _streaks(lattice, rng, sigma, angle_deg)
    else:
        coarse = rng.standard_normal(lattice, dtype=np.float32)
        coarse = ndimage.gaussian_filter(coarse, sigma[0], mode="reflect")
        coarse /= np.float32(_filtered_std(sigma[0]) ** 2)
    origin = margin - 1 + rng.random(2)
    return _bilinear(coarse, shape, step, (float(origin[0]), float(origin[1])))


def _filtered_std(sigma: float) -> float:
    """Return the standard deviation of unit white noise after a 1-D Gaussian filter.

    The kernel is scipy's: truncated at 4 sigma and normalised.
    """
    radius = int(4.0 * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights /= weights.sum()
    return float(np.sqrt((weights**2).sum()))


def _streaks(
    lattice: tuple[int, int], rng: np.random.Generator, sigma: tuple[float, float], angle: float
) -> np.ndarray:
    """Anisotropic lattice noise, rotated by ``angle`` degrees, unit variance."""
    side = int(np.ceil(np.hypot(*lattice))) + 2
    noise = rng.standard_normal((side, side), dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    noise = ndimage.rotate(noise, angle, reshape=False, order=1, mode="wrap")
    r0, c0 = (side - lattice[0]) // 2, (side - lattice[1]) // 2
    coarse = noise[r0 : r0 + lattice[0], c0 : c0 + lattice[1]]
    return (coarse - coarse.mean()) / max(float(coarse.std()), 1e-12)


def _bilinear(
    coarse: np.ndarray, shape: tuple[int, int], step: float, origin: tuple[float, float]
) -> np.ndarray:
    """Sample ``coarse`` at ``origin + index / step`` on each axis, bilinearly."""
    rows = _interp_axis(coarse, shape[0], step, origin[0], axis=0)
    return _interp_axis(rows, shape[1], step, origin[1], axis=1)


def _interp_axis(array: np.ndarray, n: int, step: float, origin: float, axis: int) -> np.ndarray:
    position = origin + np.arange(n) / step
    lower = np.floor(position).astype(np.intp)
    weight = (position - lower).astype(np.float32)
    if axis == 0:
        weight = weight[:, None]
    out = np.take(array, lower + 1, axis=axis)
    low = np.take(array, lower, axis=axis)
    out -= low
    out *= weight
    out += low
    return out


def fractal_noise(
    shape: tuple[int, int],
    rng: np.random.Generator,
    scales_px: tuple[float, ...],
    weights: tuple[float, ...],
) -> np.ndarray:
    """Weighted sum of smooth noises at several scales, about unit variance."""
    total = np.zeros(shape, dtype=np.float32)
    for scale, weight in zip(scales_px, weights, strict=True):
        total += np.float32(weight) * smooth_noise(shape, rng, scale_px=scale)
    total /= np.float32(np.sqrt(np.sum(np.square(weights))))
    return total


def check_shape(shape: tuple[int, int]) -> None:
    """Raise InputError unless ``shape`` is two positive integers (rows, cols)."""
    if len(shape) != 2 or min(shape) < 1 or any(int(s) != s for s in shape):
        raise InputError(f"a grid shape must be two positive integers (rows, cols), got {shape}.")
