"""Catalog profiles: where a STAC catalog is and how to read its Sentinel items.

A :class:`CatalogProfile` names the collections to search, the asset key of each of lamap's
bands (never the ambiguous ``common_name``: Planetary Computer calls B05, B06, B07 *and* B8A
``rededge``), how hrefs are signed and how the Sentinel-2 BOA offset is read.
:func:`open_catalog` resolves a ``--catalog`` value: ``planetary-computer`` (the default),
``earth-search``, any STAC API URL, or a local demo-world directory.

A profile is also a context manager: ``with open_catalog(source) as profile:`` yields a
profile with a URL. Remote catalogs yield themselves; a local demo world is served on
127.0.0.1 for the duration of the block (:func:`lamap.catalog.local.serve_world`).

Hrefs are never signed while parsing: :meth:`CatalogProfile.sign` (Planetary Computer's SAS
API, imported lazily) is only called by whoever reads pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeAlias
from urllib.parse import urlparse

from lamap.errors import CatalogError, InputError

__all__ = [
    "EARTH_SEARCH",
    "PLANETARY_COMPUTER",
    "PROFILES",
    "S1_BANDS",
    "S2_BANDS",
    "BoaRule",
    "CatalogProfile",
    "HrefSigner",
    "open_catalog",
    "sign_planetary_computer",
]

#: lamap's Sentinel-2 bands (10 and 20 m; the SNAP LAI bands plus B02, B08) and the SCL.
S2_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "SCL",
)
#: lamap's Sentinel-1 bands: gamma0 VV and VH (linear power).
S1_BANDS: tuple[str, ...] = ("vv", "vh")

#: ``href -> signed href``.
HrefSigner: TypeAlias = Callable[[str], str]
#: How :func:`lamap.catalog.boa_offset` reads the Sentinel-2 offset.
BoaRule: TypeAlias = Literal["processing-baseline", "item-metadata"]

_PC_S2_KEYS = tuple((band, band) for band in S2_BANDS)
_ES_S2_KEYS = (
    ("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B05", "rededge1"),
    ("B06", "rededge2"), ("B07", "rededge3"), ("B08", "nir"), ("B8A", "nir08"),
    ("B11", "swir16"), ("B12", "swir22"), ("SCL", "scl"),
)
_S1_KEYS = (("vv", "vv"), ("vh", "vh"))
_ES_NO_S1 = (
    "Earth Search v1 offers Sentinel-1 only as 'sentinel-1-grd': Level-1 GRD amplitude in "
    "radar geometry (proj:epsg 4326, a degree grid), neither terrain-corrected gamma0 nor "
    "map-projected, on requester-pays s3://sentinel-s1-l1c; lamap's model takes RTC gamma0. "
    "Use the 'planetary-computer' catalog (collection 'sentinel-1-rtc') for Sentinel-1."
)


def sign_planetary_computer(href: str) -> str:
    """Sign a Planetary Computer blob href with a SAS token (needs the network).

    Parameters
    ----------
    href : str
        An unsigned ``https://*.blob.core.windows.net/...`` href.

    Returns
    -------
    str
        The href with a SAS token appended.

    Raises
    ------
    CatalogError
        If the ``planetary-computer`` package is missing or the token request fails.
    """
    try:
        import planetary_computer
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise CatalogError(
            "signing Planetary Computer hrefs needs the 'planetary-computer' package; "
            "install it with `pip install planetary-computer`"
        ) from err
    try:
        return str(planetary_computer.sign(href))
    except OSError as err:
        raise CatalogError(
            f"could not sign {href} through the Planetary Computer SAS API: {err}; "
            "check the network or set PC_SDK_SUBSCRIPTION_KEY"
        ) from err


@dataclass(frozen=True)
class CatalogProfile:
    """Where a STAC catalog is and how to read its Sentinel items.

    Use it as a context manager to get a profile with a URL: ``with profile as served:``
    yields the profile itself for a remote catalog, and for a local demo world a copy
    pointing at a STAC API on 127.0.0.1 that runs until the block ends. Enter one profile
    from one thread at a time; every :func:`open_catalog` call returns its own profile.

    Attributes
    ----------
    name : str
        Profile name (``planetary-computer``, ``earth-search``, ``stac-api``, ``local``).
    url : str or None
        STAC API root; None for a local world that is not served (see ``with``).
    s2_collection : str
        Sentinel-2 L2A collection id.
    s1_collection : str or None
        Sentinel-1 RTC collection id, None when the catalog has none (see ``s1_note``).
    s2_asset_keys : tuple of (band, key) or None
        Asset key of each band of :data:`S2_BANDS`; None detects Planetary-Computer-style
        (``B04``) or Earth-Search-style (``red``) keys per item.
    s1_asset_keys : tuple of (band, key)
        Asset key of ``vv`` and ``vh``.
    signer : callable or None
        ``href -> signed href``, called only by :meth:`sign`.
    boa_offset_rule : {"processing-baseline", "item-metadata"}
        How :func:`lamap.catalog.boa_offset` reads the Sentinel-2 offset.
    s1_note : str
        Why there is no Sentinel-1 collection, for the error message.
    local_world : str or None
        The demo-world directory this profile serves, if any.
    """

    name: str
    url: str | None
    s2_collection: str = "sentinel-2-l2a"
    s1_collection: str | None = "sentinel-1-rtc"
    s2_asset_keys: tuple[tuple[str, str], ...] | None = _PC_S2_KEYS
    s1_asset_keys: tuple[tuple[str, str], ...] = _S1_KEYS
    signer: HrefSigner | None = None
    boa_offset_rule: BoaRule = "processing-baseline"
    s1_note: str = ""
    local_world: str | None = field(default=None, compare=False)
    _serving: list[AbstractContextManager[CatalogProfile]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Check that the asset keys name every band once."""
        if self.s2_asset_keys is not None:
            _check_bands("s2_asset_keys", self.s2_asset_keys, S2_BANDS)
        _check_bands("s1_asset_keys", self.s1_asset_keys, S1_BANDS)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the profile without the servers it runs (they stay in this process)."""
        return {**self.__dict__, "_serving": []}

    def __enter__(self) -> CatalogProfile:
        """Return a profile with a URL, serving a local world on 127.0.0.1 if need be.

        Raises
        ------
        CatalogError
            If the profile has neither a URL nor a local world, or the server fails.
        """
        if self.url is not None:
            return self
        from lamap.catalog.local import serve_world  # rustac and the world only when used

        server = serve_world(self)
        served = server.__enter__()
        self._serving.append(server)
        return served

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server the matching ``with`` started, if any."""
        if self.url is None and self._serving:
            self._serving.pop().__exit__(exc_type, exc, tb)

    def with_url(self, url: str) -> CatalogProfile:
        """Return this profile pointing at ``url`` (e.g. a local ``StacServer``'s)."""
        return replace(self, url=url.rstrip("/"))

    def sign(self, href: str) -> str:
        """Return ``href`` signed for reading (unchanged when the catalog needs no signing)."""
        return href if self.signer is None else self.signer(href)

    def require_s1(self) -> str:
        """Return the Sentinel-1 collection id, or raise why this catalog has none.

        Raises
        ------
        CatalogError
            If the profile has no Sentinel-1 RTC collection.
        """
        if self.s1_collection is None:
            note = self.s1_note or "this catalog profile has no Sentinel-1 RTC collection"
            raise CatalogError(f"catalog {self.name!r}: {note}")
        return self.s1_collection

    def s2_keys_for(self, item_id: str, asset_keys: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """Return the (band, asset key) pairs to read from one Sentinel-2 item.

        Raises
        ------
        CatalogError
            If the keys are not configured and the item's assets match neither convention.
        """
        if self.s2_asset_keys is not None:
            return self.s2_asset_keys
        keys = set(asset_keys)
        for candidate in (_PC_S2_KEYS, _ES_S2_KEYS):
            if all(key in keys for _, key in candidate):
                return candidate
        raise CatalogError(
            f"item {item_id!r} from {self.url}: its assets {sorted(keys)} follow neither "
            "Planetary Computer's keys (B02 … B12, B8A, SCL) nor Earth Search's (blue, green, "
            "red, rededge1-3, nir, nir08, swir16, swir22, scl); give the keys explicitly with "
            "dataclasses.replace(profile, s2_asset_keys=...)"
        )


def _check_bands(what: str, pairs: tuple[tuple[str, str], ...], bands: tuple[str, ...]) -> None:
    named = [band for band, _ in pairs]
    if sorted(named) != sorted(bands):
        raise InputError(f"{what} must name each of {bands} once, got {named}")


PLANETARY_COMPUTER = CatalogProfile(
    name="planetary-computer",
    url="https://planetarycomputer.microsoft.com/api/stac/v1",
    signer=sign_planetary_computer,
)
EARTH_SEARCH = CatalogProfile(
    name="earth-search",
    url="https://earth-search.aws.element84.com/v1",
    s1_collection=None,
    s2_asset_keys=_ES_S2_KEYS,
    boa_offset_rule="item-metadata",
    s1_note=_ES_NO_S1,
)
#: Named profiles; ``planetary-computer`` is the default for real data.
PROFILES: dict[str, CatalogProfile] = {p.name: p for p in (PLANETARY_COMPUTER, EARTH_SEARCH)}


def open_catalog(
    source: str | os.PathLike[str] = "planetary-computer",
    *,
    s2_collection: str | None = None,
    s1_collection: str | None = None,
) -> CatalogProfile:
    """Resolve a ``--catalog`` value to a :class:`CatalogProfile` (no network access).

    Parameters
    ----------
    source : str or path-like
        A profile name (``planetary-computer``, ``earth-search``), an ``http(s)://`` STAC API
        URL, or a local demo-world directory (one holding ``world.json``). Other URLs get
        Planetary Computer's collection ids, per-item detection of the asset keys and the
        metadata-first BOA rule; the two known hosts get their named profile.
    s2_collection, s1_collection : str, optional
        Override the collection ids (e.g. Earth Search's ``sentinel-2-c1-l2a``).

    Returns
    -------
    CatalogProfile
        Also a context manager: ``with open_catalog(source) as profile:`` gives a profile
        with a URL, serving a local world on 127.0.0.1 until the block ends. Outside
        ``with``, a local world's ``url`` is None (nothing is started).

    Raises
    ------
    CatalogError
        If ``source`` is none of the above.

    Examples
    --------
    >>> with open_catalog("demo-world") as profile:  # doctest: +SKIP
    ...     result = search(profile, bbox, start, end)
    """
    profile = _resolve(os.fspath(source))
    changes: dict[str, Any] = {}
    if s2_collection is not None:
        changes["s2_collection"] = s2_collection
    if s1_collection is not None:
        changes["s1_collection"] = s1_collection
    return replace(profile, **changes) if changes else profile


def _resolve(source: str) -> CatalogProfile:
    if source in PROFILES:
        return PROFILES[source]
    if source.startswith(("http://", "https://")):
        return _profile_for_url(source.rstrip("/"))
    path = Path(source).expanduser()
    if (path / "world.json").is_file():
        return CatalogProfile(name="local", url=None, local_world=str(path.resolve()))
    hint = " (a directory without world.json)" if path.is_dir() else ""
    raise CatalogError(
        f"unknown catalog {source!r}{hint}; use one of {sorted(PROFILES)}, an http(s):// STAC "
        "API URL, or a demo-world directory made by `lamap demo` (it holds world.json)"
    )


def _profile_for_url(url: str) -> CatalogProfile:
    host = urlparse(url).hostname or ""
    for profile in PROFILES.values():
        known = urlparse(profile.url or "").hostname
        if host == known:
            return replace(profile, url=url)
    return CatalogProfile(
        name="stac-api", url=url, s2_asset_keys=None, boa_offset_rule="item-metadata"
    )
