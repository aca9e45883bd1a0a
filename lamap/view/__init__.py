"""``lamap view``: a store on a web map, served on 127.0.0.1 with nothing from the internet.

- :mod:`lamap.view.tiles`: :class:`StoreTiles`, Web Mercator tiles from the store's
  pyramid (the level that fits each zoom), a pixel's time series, the page's summary.
- :mod:`lamap.view.server`: :class:`ViewServer`, a small threaded HTTP server for the page
  (``static/``), Leaflet (from ``xstatic-leaflet``), the tiles and the JSON API.

Example::

    with view_store("lai.zarr") as server:
        print(server.url)
"""

from __future__ import annotations

import os

from lamap.store import LaiStore
from lamap.view.server import ViewServer
from lamap.view.tiles import StoreTiles

__all__ = ["StoreTiles", "ViewServer", "view_store"]


def view_store(
    store: str | os.PathLike[str] | LaiStore,
    *,
    port: int = 0,
    storage_options: dict[str, object] | None = None,
) -> ViewServer:
    """Open a store and return its (not yet started) viewer; use it as a context manager.

    Parameters
    ----------
    store : str, path-like or LaiStore
        The store's path or URL.
    port : int
        TCP port on 127.0.0.1; 0 picks a free one.
    storage_options : dict, optional
        fsspec options for a remote store.

    Returns
    -------
    ViewServer

    Raises
    ------
    StoreError
        If there is no lamap store there, or it has no overviews (run ``lamap overviews``).
    InputError
        If the port cannot be used.
    """
    opened = store if isinstance(store, LaiStore) else LaiStore.open(
        store, storage_options=storage_options
    )
    return ViewServer(StoreTiles(opened), port=port)
