"""The offline demo world as a catalog: served on 127.0.0.1, searched like any STAC API.

A demo world (``lamap demo``) is a directory of COGs, STAC items and ``world.json``.
``with open_catalog(world_dir) as profile:`` serves it through :func:`serve_world` (a real
``rustac serve`` STAC API, :mod:`lamap.catalog.server`) for the duration of the block, so
mapping and training search it with pystac-client exactly as they search Planetary Computer.

This module is the one door from the rest of lamap to :mod:`lamap.synthetic`: the world's
types and generator (:class:`World`, :class:`WorldSpec`, :func:`generate_world`,
:func:`load_world`) and the pixel-free continental catalog of the planner benchmark
(:func:`continental_result`, :data:`EEA39_BBOX`) are re-exported from here.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager

from lamap._inputs import BBox, as_bbox
from lamap.catalog.profiles import CatalogProfile, open_catalog
from lamap.catalog.server import StacServer
from lamap.errors import CatalogError
from lamap.synthetic.continent import EEA39_BBOX, continental_result
from lamap.synthetic.family import family_worlds, is_family
from lamap.synthetic.world import World, WorldSpec, generate_world, load_world

__all__ = [
    "EEA39_BBOX",
    "World",
    "WorldSpec",
    "continental_result",
    "family_worlds",
    "generate_world",
    "is_family",
    "load_world",
    "local_world",
    "serve_world",
    "world_defaults",
    "world_server",
]


def world_server(
    world: World | str | os.PathLike[str], *, startup_timeout: float = 60.0
) -> StacServer:
    """Return a (not yet started) STAC API server over a demo world's collections and items.

    Parameters
    ----------
    world : World or path-like
        The world, or its directory.
    startup_timeout : float
        Seconds to wait for the API to answer (:class:`~lamap.catalog.server.StacServer`).

    Returns
    -------
    StacServer
        Use it as ``with world_server(world) as server: server.url``.

    Raises
    ------
    InputError
        If the path holds no world (:func:`load_world`).
    """
    loaded = world if isinstance(world, World) else load_world(world)
    return StacServer(
        loaded.item_paths, collections=loaded.collection_paths, startup_timeout=startup_timeout
    )


@contextmanager
def serve_world(profile: CatalogProfile) -> Iterator[CatalogProfile]:
    """Serve a local profile's world on 127.0.0.1; yield the profile with the server's URL.

    This is what ``with profile:`` does for a local world (:class:`CatalogProfile`). The
    server stops when the block ends, also on an exception.

    Parameters
    ----------
    profile : CatalogProfile
        A profile from :func:`open_catalog` on a demo-world directory.

    Yields
    ------
    CatalogProfile
        The same profile, its ``url`` the local STAC API's (``http://127.0.0.1:PORT``).

    Raises
    ------
    CatalogError
        If the profile names no local world, or the server cannot start.
    """
    if profile.local_world is None:
        raise CatalogError(
            f"catalog {profile.name!r} has neither a STAC API URL nor a local world to serve; "
            "give open_catalog() a profile name, an http(s):// URL or a demo-world directory"
        )
    with world_server(profile.local_world) as server:
        yield profile.with_url(server.url)


def local_world(source: str | os.PathLike[str]) -> World | None:
    """Return the demo world a ``--catalog`` value names, or None for a remote catalog.

    Raises
    ------
    CatalogError
        If ``source`` is not a catalog at all (:func:`open_catalog`).
    InputError
        If its ``world.json`` is not a lamap world.
    """
    profile = open_catalog(source)
    return None if profile.local_world is None else load_world(profile.local_world)


def world_defaults(source: str | os.PathLike[str]) -> tuple[BBox, dt.date, dt.date]:
    """Return a demo world's bbox and its first and last Sentinel-2 day.

    Raises
    ------
    CatalogError
        If ``source`` is not a demo-world directory.
    """
    world = local_world(source)
    if world is None:
        raise CatalogError(
            f"catalog {str(source)!r} is not a demo world, so it has no default bbox or dates; "
            "give them, or a directory made by `lamap demo`"
        )
    return as_bbox(world.bbox), world.s2_dates[0], world.s2_dates[-1]
