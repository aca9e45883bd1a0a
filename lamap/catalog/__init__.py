"""STAC catalogs: profiles, one search per run, and normalised Sentinel scenes.

Real catalogs describe the same Sentinel products differently (see
``tests/data/stac/PROVENANCE.md``). This package absorbs the differences at the boundary
and hands the rest of lamap small frozen records. Its modules, in the order data flows:

* :mod:`~lamap.catalog.profiles`: :class:`CatalogProfile` (where a catalog is, its
  collections, asset keys, signing, BOA rule) and :func:`open_catalog`, which resolves
  ``planetary-computer`` (default), ``earth-search``, a STAC API URL or a demo world.
* :mod:`~lamap.catalog.search`: :func:`search`, one paginated pystac-client search per
  collection over the whole bbox and window, de-duplicated (:func:`deduplicate_s2`);
  :func:`assign_to_tiles` by footprint.
* :mod:`~lamap.catalog.items` (with :mod:`~lamap.catalog.assets`): :class:`S2Scene` and
  :class:`S1Scene` from item dicts: per-band grids, BOA offset, sun and view angles.
* :mod:`~lamap.catalog.local` (imported on demand): the offline demo world as a catalog,
  served on 127.0.0.1 by :mod:`~lamap.catalog.server` (``rustac serve``).

Examples
--------
>>> with open_catalog("demo-world") as profile:  # doctest: +SKIP
...     result = search(profile, "6.0,48.7,6.1,48.8", "2024-04-01", "2024-04-30")
"""

from __future__ import annotations

from typing import TypeAlias

from lamap.catalog.assets import BandAsset, Bounds, parse_datetime
from lamap.catalog.items import (
    APPROX_RELATIVE_AZIMUTH_DEG,
    BOA_OFFSET_DN,
    MEAN_VIEW_ZENITH_DEG,
    S1_DEFAULT_NODATA,
    S2_DEFAULT_NODATA,
    S1Scene,
    S2Scene,
    boa_offset,
    parse_s1_item,
    parse_s2_item,
)
from lamap.catalog.profiles import (
    EARTH_SEARCH,
    PLANETARY_COMPUTER,
    PROFILES,
    S1_BANDS,
    S2_BANDS,
    CatalogProfile,
    HrefSigner,
    open_catalog,
    sign_planetary_computer,
)
from lamap.catalog.search import (
    Duplicate,
    FootprintLike,
    SearchClient,
    SearchResult,
    as_geometry,
    assign_to_tiles,
    deduplicate_s2,
    parse_items,
    search,
)
from lamap.errors import CatalogWarning

#: A lon/lat ``(W, S, E, N)`` tuple, as before the package split; kept for
#: :mod:`lamap.synthetic.continent`. New code takes :class:`lamap._inputs.BBox`.
BBox: TypeAlias = Bounds

__all__ = [
    "APPROX_RELATIVE_AZIMUTH_DEG",
    "BOA_OFFSET_DN",
    "EARTH_SEARCH",
    "MEAN_VIEW_ZENITH_DEG",
    "PLANETARY_COMPUTER",
    "PROFILES",
    "S1_BANDS",
    "S1_DEFAULT_NODATA",
    "S2_BANDS",
    "S2_DEFAULT_NODATA",
    "BandAsset",
    "BBox",
    "CatalogProfile",
    "CatalogWarning",
    "Duplicate",
    "FootprintLike",
    "HrefSigner",
    "S1Scene",
    "S2Scene",
    "SearchClient",
    "SearchResult",
    "as_geometry",
    "assign_to_tiles",
    "boa_offset",
    "deduplicate_s2",
    "open_catalog",
    "parse_datetime",
    "parse_items",
    "parse_s1_item",
    "parse_s2_item",
    "search",
    "sign_planetary_computer",
]
