"""Position of the sun, for the illumination and cloud shadows of the synthetic world.

The algorithm is that of NOAA's solar calculator, after Meeus' *Astronomical
Algorithms*: the sun's apparent ecliptic longitude and the obliquity of the ecliptic give
the declination and the equation of time, the true solar time gives the hour angle.
Between 1800 and 2100 it is accurate to about 0.01°, far better than the world needs.
(The shorter Spencer series of NOAA's "general solar position" page was not used: it
lags the modern equinoxes by about a day, an error of up to 0.4° in declination.)
Positions are geometric (no atmospheric refraction).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lamap.errors import InputError

__all__ = ["sun_position"]


def _utc_datetime64(when: datetime | ArrayLike) -> np.ndarray:
    """Convert times to ``datetime64[ns]`` in UTC, refusing naive ``datetime`` objects."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise InputError(
                f"sun_position needs a timezone-aware datetime, got naive {when.isoformat()}; "
                "pass e.g. datetime(..., tzinfo=datetime.UTC) or a numpy datetime64 in UTC."
            )
        when = np.datetime64(when.astimezone(UTC).replace(tzinfo=None), "ns")
    times = np.asarray(when)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise InputError(
            f"sun_position needs datetime or numpy datetime64 times, got dtype {times.dtype}."
        )
    return times.astype("datetime64[ns]")


def _julian_centuries(times: np.ndarray) -> np.ndarray:
    """Julian centuries since J2000.0 (2000-01-01 12:00 UTC)."""
    days = (times - np.datetime64("2000-01-01T12:00", "ns")) / np.timedelta64(1, "D")
    return days / 36525.0  # type: ignore[no-any-return]


def _declination_and_equation_of_time(centuries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solar declination (radians) and equation of time (minutes), NOAA/Meeus."""
    t = centuries
    mean_longitude = np.deg2rad((280.46646 + t * (36000.76983 + 0.0003032 * t)) % 360.0)
    anomaly = np.deg2rad(357.52911 + t * (35999.05029 - 0.0001537 * t))
    eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = (
        np.sin(anomaly) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + np.sin(2 * anomaly) * (0.019993 - 0.000101 * t)
        + np.sin(3 * anomaly) * 0.000289
    )
    node = np.deg2rad(125.04 - 1934.136 * t)
    apparent = np.rad2deg(mean_longitude) + centre - 0.00569 - 0.00478 * np.sin(node)
    seconds = 21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))
    obliquity = np.deg2rad(23.0 + (26.0 + seconds / 60.0) / 60.0 + 0.00256 * np.cos(node))
    declination = np.arcsin(np.sin(obliquity) * np.sin(np.deg2rad(apparent)))
    y = np.tan(obliquity / 2.0) ** 2
    equation_of_time = 4.0 * np.rad2deg(
        y * np.sin(2 * mean_longitude)
        - 2 * eccentricity * np.sin(anomaly)
        + 4 * eccentricity * y * np.sin(anomaly) * np.cos(2 * mean_longitude)
        - 0.5 * y**2 * np.sin(4 * mean_longitude)
        - 1.25 * eccentricity**2 * np.sin(2 * anomaly)
    )
    return declination, equation_of_time


def sun_position(
    when: datetime | ArrayLike,
    lon: ArrayLike,
    lat: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Solar zenith and azimuth angles at a time and place.

    Parameters
    ----------
    when : datetime or array-like of numpy.datetime64
        Time(s): a timezone-aware :class:`datetime.datetime`, or ``datetime64`` values
        taken as UTC.
    lon, lat : array-like
        Longitude and latitude in degrees (WGS84), broadcastable against ``when``.

    Returns
    -------
    zenith : numpy.ndarray
        Solar zenith angle in degrees (0 overhead, 90 on the horizon); 0-d for scalars.
    azimuth : numpy.ndarray
        Solar azimuth in degrees clockwise from north, within [0, 360).

    Raises
    ------
    InputError
        For a naive datetime, non-time input, or a latitude outside [-90, 90].
    """
    times = _utc_datetime64(when)
    latitude = np.deg2rad(np.asarray(lat, dtype=np.float64))
    if latitude.size and np.nanmax(np.abs(latitude)) > np.pi / 2 + 1e-12:
        raise InputError(f"latitude must be within [-90, 90] degrees, got {lat!r}.")
    declination, equation_of_time = _declination_and_equation_of_time(_julian_centuries(times))
    hours = (times - times.astype("datetime64[D]")) / np.timedelta64(1, "h")
    true_solar_minutes = hours * 60.0 + equation_of_time + 4.0 * np.asarray(lon, np.float64)
    hour_angle = np.deg2rad(true_solar_minutes / 4.0 - 180.0)
    cos_zenith = np.sin(latitude) * np.sin(declination) + np.cos(latitude) * np.cos(
        declination
    ) * np.cos(hour_angle)
    zenith = np.rad2deg(np.arccos(np.clip(cos_zenith, -1.0, 1.0)))
    from_south = np.arctan2(
        np.sin(hour_angle),
        np.cos(hour_angle) * np.sin(latitude) - np.tan(declination) * np.cos(latitude),
    )
    azimuth = (np.rad2deg(from_south) + 180.0) % 360.0
    return np.asarray(zenith), np.asarray(azimuth)
