"""Position of the sun, for the illumination and cloud shadows of the synthetic world.

The NOAA "general solar position" approximation is used: declination and equation of
time from Spencer's (1971) Fourier series in the fractional year, then the hour angle
from the true solar time. It is accurate to a few hundredths of a degree in declination
and about half a minute in time, far better than the world needs. Positions are
geometric (no atmospheric refraction).
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


def _fractional_year(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional year γ (radians) and UTC hour of the day."""
    year = times.astype("datetime64[Y]")
    start = year.astype("datetime64[D]")
    length = ((year + 1).astype("datetime64[D]") - start).astype(np.float64)
    day = times.astype("datetime64[D]")
    day_of_year = (day - start).astype(np.float64) + 1.0
    hours = (times - day) / np.timedelta64(1, "h")
    gamma = 2.0 * np.pi / length * (day_of_year - 1.0 + (hours - 12.0) / 24.0)
    return gamma, hours


def _declination_and_equation_of_time(gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solar declination (radians) and equation of time (minutes), Spencer (1971)."""
    declination = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    equation_of_time = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
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
    gamma, hours = _fractional_year(times)
    declination, equation_of_time = _declination_and_equation_of_time(gamma)
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
