"""Offline validation of STAC Items, Collections and Catalogs, for the tests.

Two layers, neither of which touches the network:

1. pystac's :class:`~pystac.validation.JsonSchemaSTACValidator`, checking the core schema
   of the object's ``stac_version`` and the schema of every extension it lists in
   ``stac_extensions``. Its schema cache is pre-filled from the published schema files kept
   in ``tests/data/schemas`` (each stored under its URI without ``https://``; see
   ``tests/data/PROVENANCE.md``). A schema that is not stored there fails with
   :class:`~lamap.errors.CatalogError`; nothing is ever downloaded.
2. The rules of fields lamap reads that the schemas leave out: ``proj:epsg``,
   ``proj:shape`` and the ``sat:*_orbit`` numbers written as integers (JSON schema takes
   ``78.0`` for an integer); ``s2:processing_baseline``, which Planetary Computer items
   carry without listing the sentinel-2 schema; datetimes that parse and are in order; and
   extension fields used without their schema listed in ``stac_extensions``.

STAC versions
    1.0.0 and 1.1.0 objects are checked with their own version's core schemas. Other
    versions are reported as problems.
Datetimes
    JSON-schema ``format`` keywords are not enforced (pystac's validator does not ask for
    them); lamap parses every datetime itself. By default a space in place of ``T`` is
    accepted, as Planetary Computer writes Sentinel-1 ``start_datetime``/``end_datetime``
    that way and every STAC API reads it; ``strict_datetime=True`` demands RFC 3339 to the
    letter.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import referencing.exceptions
from jsonschema.exceptions import ValidationError
from pystac import STACObjectType
from pystac.errors import STACValidationError
from pystac.validation import JsonSchemaSTACValidator

from lamap.errors import CatalogError, InputError
from tests.oracles.stac import parse_stac_datetime

__all__ = [
    "SCHEMA_DIR",
    "SUPPORTED_STAC_VERSIONS",
    "OfflineValidator",
    "SchemaNotStoredError",
    "StacValidationError",
    "stac_problems",
    "stored_schemas",
    "validate_stac",
]

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "data" / "schemas"
"""The published JSON schemas, each at its URI's path: ``<host>/<path>``."""
SUPPORTED_STAC_VERSIONS = ("1.0.0", "1.1.0")
"""STAC versions that :func:`validate_stac` accepts, each checked with its own schemas."""

_STAC_TYPES = {kind.value: kind for kind in STACObjectType}
_MESSAGE_CHARS = 200
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATETIME_FIELDS = ("datetime", "start_datetime", "end_datetime", "created", "updated")
_EXTENSION_PATHS = {
    "eo": "/eo/",
    "proj": "/projection/",
    "raster": "/raster/",
    "sar": "/sar/",
    "sat": "/sat/",
    "view": "/view/",
}


class StacValidationError(CatalogError):
    """A STAC object breaks the STAC schemas or lamap's extension rules.

    Parameters
    ----------
    what
        Which object was checked, such as ``"item 'S2A_...'"``.
    problems
        One line per problem, each starting with a JSON path.
    """

    def __init__(self, what: str, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{what} is not valid STAC ({len(self.problems)} problems):\n{listing}")


class SchemaNotStoredError(CatalogError):
    """A schema was asked for that ``tests/data/schemas`` does not hold."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(
            f"the STAC schema {uri} is not stored in {SCHEMA_DIR}; the tests never download "
            "schemas: add the published file there (and to tests/data/PROVENANCE.md)"
        )


@functools.cache
def stored_schemas() -> dict[str, dict[str, Any]]:
    """Return every stored schema by its URI, ``https://`` plus its path under SCHEMA_DIR."""
    return {
        f"https://{path.relative_to(SCHEMA_DIR).as_posix()}": json.loads(path.read_text("utf-8"))
        for path in sorted(SCHEMA_DIR.rglob("*.json"))
    }


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator with the stored schemas as its whole schema cache.

    Instead of fetching a schema it lacks, it raises :class:`SchemaNotStoredError`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.schema_cache = dict(stored_schemas())

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        """Return a stored schema, never fetching one (overrides pystac's download)."""
        try:
            return self.schema_cache[schema_uri]
        except KeyError:
            raise SchemaNotStoredError(schema_uri) from None


@functools.cache
def _validator() -> OfflineValidator:
    return OfflineValidator()


def validate_stac(obj: Mapping[str, Any], *, strict_datetime: bool = False) -> None:
    """Check a STAC Item, Collection, Catalog or FeatureCollection of items, offline.

    Parameters
    ----------
    obj
        The STAC object as parsed JSON.
    strict_datetime
        Demand RFC 3339 datetimes exactly (``T`` between date and time).

    Raises
    ------
    StacValidationError
        Listing every problem found, each with its JSON path.
    CatalogError
        If a schema is needed that is not stored in ``tests/data/schemas``.
    """
    problems = stac_problems(obj, strict_datetime=strict_datetime)
    if problems:
        raise StacValidationError(_describe(obj), problems)


def stac_problems(obj: Mapping[str, Any], *, strict_datetime: bool = False) -> list[str]:
    """Return the problems :func:`validate_stac` would raise, or an empty list.

    Parameters
    ----------
    obj
        The STAC object as parsed JSON.
    strict_datetime
        Demand RFC 3339 datetimes exactly.

    Returns
    -------
    list of str
        One line per problem, each starting with a JSON path.

    Raises
    ------
    CatalogError
        If a schema is needed that is not stored in ``tests/data/schemas``.
    """
    if not isinstance(obj, Mapping):
        return [f"$: expected a JSON object, got {type(obj).__name__}"]
    kind = obj.get("type")
    if kind == "FeatureCollection":
        return _collection_of_items_problems(obj, strict_datetime)
    if kind not in _STAC_TYPES:
        return [f"$.type: {kind!r} is not a STAC type; expected one of {sorted(_STAC_TYPES)}"]
    problems = _version_problems(obj) + _schema_problems(obj, kind)
    return _unique(problems + _lamap_problems(obj, kind, strict_datetime))


def _describe(obj: Mapping[str, Any]) -> str:
    """Name an object for an error message."""
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}
    label = kind.get(str(obj.get("type")), str(obj.get("type", "object")))
    return f"STAC {label} {obj.get('id')!r}" if "id" in obj else f"STAC {label}"


def _unique(problems: Iterable[str]) -> list[str]:
    """Drop repeated problems, keeping the first occurrence."""
    return list(dict.fromkeys(problems))


def _collection_of_items_problems(obj: Mapping[str, Any], strict: bool) -> list[str]:
    """Problems of every item in a FeatureCollection (an ItemCollection or search page)."""
    features = obj.get("features")
    if not isinstance(features, list):
        return ["$.features: a FeatureCollection needs a 'features' list"]
    problems = []
    for index, feature in enumerate(features):
        label = f"$.features[{index}]"
        if isinstance(feature, Mapping) and "id" in feature:
            label += f" (id {feature['id']!r})"
        problems += [f"{label} {p}" for p in stac_problems(feature, strict_datetime=strict)]
    return problems


def _version_problems(obj: Mapping[str, Any]) -> list[str]:
    """Report an unsupported ``stac_version``."""
    version = obj.get("stac_version")
    if version is None or version in SUPPORTED_STAC_VERSIONS:
        return []
    return [
        f"$.stac_version: {version!r} is not supported; lamap validates "
        f"{' and '.join(SUPPORTED_STAC_VERSIONS)}, each with its own STAC schemas"
    ]


def _schema_problems(obj: Mapping[str, Any], kind: str) -> list[str]:
    """Validate with pystac against the core schema and each listed extension schema."""
    document = json.loads(json.dumps(obj))
    version = document.get("stac_version")
    if version not in SUPPORTED_STAC_VERSIONS:
        # Reported by _version_problems; check the rest with the newest schemas.
        version = SUPPORTED_STAC_VERSIONS[-1]
        if isinstance(document.get("stac_version"), str):
            document["stac_version"] = version
    object_type = _STAC_TYPES[kind]
    extensions = document.get("stac_extensions")
    checks: list[Callable[[], object]] = [
        functools.partial(_validator().validate_core, document, object_type, version)
    ]
    checks += [
        functools.partial(_validator().validate_extension, document, object_type, version, uri)
        for uri in (extensions if isinstance(extensions, list) else [])
        if isinstance(uri, str)
    ]
    problems = []
    for check in checks:
        try:
            check()
        except STACValidationError as err:
            problems += [line for error in err.source for line in _format_error(error)]
        except referencing.exceptions.Unresolvable as err:
            raise CatalogError(
                f"the STAC schemas refer to {err}, which is not stored in {SCHEMA_DIR}; "
                "the tests never download schemas"
            ) from err
    return problems


def _format_error(error: ValidationError) -> list[str]:
    """Lines for a schema error, from its most specific causes."""
    lines = []
    for leaf in _leaves(error):
        message = leaf.message
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 3] + "..."
        lines.append(f"{leaf.json_path}: {message}")
    return lines


def _leaves(error: ValidationError) -> list[ValidationError]:
    """Return the causes of an error, following the likeliest branch of oneOf/anyOf.

    The likeliest branch is the one whose ``type`` discriminator matches (GeoJSON
    geometries, an extension's Item and Collection branches) with the fewest errors.
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for cause in error.context:
        branches.setdefault(cause.relative_schema_path[0], []).append(cause)
    chosen = min(branches.values(), key=_branch_rank)
    if _branch_rank(chosen)[0]:
        return [error]
    return [leaf for cause in chosen for leaf in _leaves(cause)]


def _branch_rank(errors: list[ValidationError]) -> tuple[bool, int]:
    """Rank a oneOf/anyOf branch: first whether it is for another kind of value, then size.

    A branch is for another kind when its ``type`` member does not match (GeoJSON
    geometry types) or it only allows null.
    """
    wrong_kind = any(
        (e.validator in ("const", "enum") and list(e.relative_path)[-1:] == ["type"])
        or (e.validator == "type" and e.validator_value == "null")
        for e in errors
    )
    return wrong_kind, len(errors)


def _lamap_problems(obj: Mapping[str, Any], kind: str, strict: bool) -> list[str]:
    """Run lamap's checks of extension fields and datetimes, wherever the fields appear."""
    problems = []
    for path, fields in _field_holders(obj, kind):
        problems += _field_problems(path, fields, strict)
    if kind == "Feature":
        problems += _interval_problems(obj.get("properties"))
    return problems + _declaration_problems(obj, kind)


def _field_holders(obj: Mapping[str, Any], kind: str) -> list[tuple[str, Mapping[str, Any]]]:
    """Return ``(JSON path, dict)`` of every place extension fields may live."""
    holders = []
    if kind == "Feature" and isinstance(obj.get("properties"), Mapping):
        holders.append(("$.properties", obj["properties"]))
    for section in ("assets", "item_assets"):
        assets = obj.get(section)
        if isinstance(assets, Mapping):
            holders += [
                (f"$.{section}.{key}", asset)
                for key, asset in assets.items()
                if isinstance(asset, Mapping)
            ]
    return holders


def _field_problems(path: str, fields: Mapping[str, Any], strict: bool) -> list[str]:
    """Check the known fields of one properties or asset dict."""
    problems = []
    for name, check in _FIELD_CHECKS.items():
        if name in fields:
            message = check(fields[name])
            if message:
                problems.append(f"{path}.{name}: {message}")
    for name in _DATETIME_FIELDS:
        if fields.get(name) is not None:
            message = _datetime_problem(fields[name], strict)
            if message:
                problems.append(f"{path}.{name}: {message}")
    return problems


def _datetime_problem(value: Any, strict: bool) -> str | None:
    """Check a datetime string (RFC 3339; a space for ``T`` unless strict)."""
    if strict and not (isinstance(value, str) and _RFC3339.match(value)):
        return f"{value!r} is not an RFC 3339 date-time such as 2024-06-15T10:30:00Z"
    try:
        parse_stac_datetime(value)
    except InputError as err:
        return str(err)
    return None


def _interval_problems(props: Any) -> list[str]:
    """Check that an item's start_datetime is not after its end_datetime."""
    if not isinstance(props, Mapping):
        return []
    try:
        start = parse_stac_datetime(props["start_datetime"])
        end = parse_stac_datetime(props["end_datetime"])
    except (KeyError, InputError):
        return []
    if start > end:
        return ["$.properties: start_datetime is after end_datetime"]
    return []


def _declaration_problems(obj: Mapping[str, Any], kind: str) -> list[str]:
    """Report extension fields used without their schema in ``stac_extensions``."""
    declared = " ".join(str(url) for url in obj.get("stac_extensions") or [])
    used = {
        name.split(":", 1)[0]
        for _, fields in _field_holders(obj, kind)
        for name in fields
        if ":" in name
    }
    return [
        f"$.stac_extensions: '{prefix}:*' fields are used but no {path.strip('/')} "
        "extension schema is listed"
        for prefix, path in sorted(_EXTENSION_PATHS.items())
        if prefix in used and path not in declared
    ]


def _is_int(value: Any) -> bool:
    """Tell whether ``value`` is a JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_epsg(value: Any) -> str | None:
    """``proj:epsg``: an integer code, or null."""
    if value is None or _is_int(value):
        return None
    return f"{value!r} must be an integer EPSG code such as 32632 (or null)"


def _check_shape(value: Any) -> str | None:
    """``proj:shape``: ``[rows, cols]`` positive integers."""
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value):
        return None
    return f"{value!r} must be [rows, cols], two positive integers"


def _check_orbit(value: Any) -> str | None:
    """``sat:relative_orbit`` / ``sat:absolute_orbit``: a positive integer."""
    if _is_int(value) and value >= 1:
        return None
    return f"{value!r} must be a positive integer orbit number"


def _check_baseline(value: Any) -> str | None:
    """``s2:processing_baseline``: ``NN.NN``."""
    if isinstance(value, str) and re.fullmatch(r"\d{2}\.\d{2}", value):
        return None
    return f"{value!r} must be a string 'NN.NN' such as '05.10'"


_FIELD_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "proj:epsg": _check_epsg,
    "proj:shape": _check_shape,
    "sat:relative_orbit": _check_orbit,
    "sat:absolute_orbit": _check_orbit,
    "s2:processing_baseline": _check_baseline,
}
"""Fields lamap reads whose rules the schemas leave out (the rest is the schemas' job)."""
