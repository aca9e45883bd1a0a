"""Offline validation of STAC Items, Collections and Catalogs.

Two layers, neither of which touches the network:

1. The STAC 1.1.0 core JSON schemas and the GeoJSON schemas that pystac bundles
   (``pystac/validation/jsonschemas``), checked with :mod:`jsonschema` through a local
   :mod:`referencing` registry. A ``$ref`` to anything that is not bundled fails with
   :class:`~lamap.errors.CatalogError`; nothing is ever downloaded.
2. lamap's own checks of the extension fields it relies on (``proj:*``, ``eo:cloud_cover``,
   ``sat:*``, ``sar:polarizations``, ``s2:processing_baseline``, ``raster:bands``) and of
   datetimes, because the extension schemas themselves cannot be downloaded.

STAC versions
    The bundled core schemas pin ``stac_version`` to ``"1.1.0"``. Planetary Computer and
    Earth Search publish ``"1.0.0"`` objects; STAC 1.1 only adds optional fields and rules
    that 1.0 objects already follow, so a 1.0.0 object is validated with the 1.1.0 rules
    (its ``stac_version`` is taken as 1.1.0 for that purpose only). Other versions are
    reported as problems.
Datetimes
    JSON-schema ``format`` keywords are not enforced (whether jsonschema checks
    ``date-time`` depends on optional packages); lamap parses every datetime itself.
    By default a space in place of ``T`` is accepted, as Planetary Computer writes
    Sentinel-1 ``start_datetime``/``end_datetime`` that way and every STAC API reads it;
    ``strict_datetime=True`` demands RFC 3339 to the letter.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
from jsonschema.exceptions import ValidationError
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing.jsonschema import DRAFT7

from lamap._stac import parse_stac_datetime
from lamap.errors import CatalogError, InputError

__all__ = ["SUPPORTED_STAC_VERSIONS", "StacValidationError", "stac_problems", "validate_stac"]

SUPPORTED_STAC_VERSIONS = ("1.0.0", "1.1.0")
"""STAC versions that :func:`validate_stac` accepts, both checked with the 1.1.0 schemas."""

_SCHEMA_VERSION = "1.1.0"
_SCHEMA_FILES = {
    "Feature": "stac-spec/v1.1.0/item.json",
    "Collection": "stac-spec/v1.1.0/collection.json",
    "Catalog": "stac-spec/v1.1.0/catalog.json",
}
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
_DATA_TYPES = frozenset(
    "int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 "
    "cint16 cint32 cfloat32 cfloat64 other".split()
)
_POLARIZATIONS = frozenset({"HH", "VV", "HV", "VH"})


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
        If a schema refers to a schema that is not bundled with pystac.
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
        If a schema refers to a schema that is not bundled with pystac.
    """
    if not isinstance(obj, Mapping):
        return [f"$: expected a JSON object, got {type(obj).__name__}"]
    kind = obj.get("type")
    if kind == "FeatureCollection":
        return _collection_of_items_problems(obj, strict_datetime)
    if kind not in _SCHEMA_FILES:
        return [f"$.type: {kind!r} is not a STAC type; expected one of {sorted(_SCHEMA_FILES)}"]
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
        f"{' and '.join(SUPPORTED_STAC_VERSIONS)} with the STAC {_SCHEMA_VERSION} schemas"
    ]


def _schema_problems(obj: Mapping[str, Any], kind: str) -> list[str]:
    """Validate against the bundled core schema of ``kind``."""
    document = dict(obj)
    if isinstance(document.get("stac_version"), str):
        document["stac_version"] = _SCHEMA_VERSION
    validator = _validator(kind)
    try:
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    except referencing.exceptions.Unresolvable as err:
        raise CatalogError(
            f"the STAC schemas refer to {err}, which is not bundled with pystac; "
            "lamap never downloads schemas (check the installed pystac version)"
        ) from err
    return [line for error in errors for line in _format_error(error)]


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
    geometries) with the fewest errors.
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


@functools.cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    """Return a validator for the bundled schema of ``kind``, resolving refs locally."""
    registry = _registry()
    uri = _uri_of(_SCHEMA_FILES[kind])
    schema = registry.contents(uri)
    return jsonschema.Draft7Validator(schema, registry=registry)


def _schema_root() -> Traversable:
    """Return pystac's folder of bundled JSON schemas."""
    root = resources.files("pystac.validation") / "jsonschemas"
    if not root.is_dir():
        raise CatalogError(
            f"pystac's bundled STAC schemas are missing ({root}); install pystac>=1.12"
        )
    return root


def _schema_files(folder: Traversable, prefix: str = "") -> Iterable[tuple[str, Traversable]]:
    """Yield ``(relative path, file)`` for every JSON file under ``folder``."""
    for entry in folder.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _schema_files(entry, name + "/")
        elif entry.name.endswith(".json"):
            yield name, entry


@functools.cache
def _bundled_schemas() -> dict[str, dict[str, Any]]:
    """Return the bundled schemas by their path under the schema folder."""
    return {name: json.loads(f.read_text("utf-8")) for name, f in _schema_files(_schema_root())}


def _uri_of(name: str) -> str:
    """Return the URI under which the schema file ``name`` is referenced.

    That is the directory of its ``$id`` plus its file name; the two differ where an
    ``$id`` is misspelt (STAC 1.1.0's ``common.json`` says ``commonjson``).
    """
    schema_id = str(_bundled_schemas()[name]["$id"]).split("#")[0]
    return schema_id.rsplit("/", 1)[0] + "/" + name.rsplit("/", 1)[-1]


@functools.cache
def _registry() -> referencing.Registry[Any]:
    """Return a registry of the bundled schemas plus the JSON-schema metaschemas.

    It has no way to retrieve anything else, so an unknown ``$ref`` fails loudly.
    """
    resources_by_uri: dict[str, referencing.Resource[Any]] = {}
    for name, schema in _bundled_schemas().items():
        resource = referencing.Resource.from_contents(schema, default_specification=DRAFT7)
        resources_by_uri[_uri_of(name)] = resource
        resources_by_uri.setdefault(str(schema["$id"]).split("#")[0], resource)
    local: referencing.Registry[Any] = referencing.Registry().with_resources(
        resources_by_uri.items()
    )
    return local.combine(METASCHEMAS)


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


def _is_number(value: Any) -> bool:
    """Tell whether ``value`` is a finite JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    """Tell whether ``value`` is a JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value: Any, counts: tuple[int, ...]) -> bool:
    """Tell whether ``value`` is a list of finite numbers of one of the given lengths."""
    return isinstance(value, list) and len(value) in counts and all(map(_is_number, value))


def _check_epsg(value: Any) -> str | None:
    """``proj:epsg``: an integer code, or null."""
    if value is None or _is_int(value):
        return None
    return f"{value!r} must be an integer EPSG code such as 32632 (or null)"


def _check_code(value: Any) -> str | None:
    """``proj:code``: ``AUTHORITY:CODE``, or null."""
    if value is None or (isinstance(value, str) and re.fullmatch(r"[^:\s]+:[^:\s]+", value)):
        return None
    return f"{value!r} must be a string such as 'EPSG:32632' (or null)"


def _check_shape(value: Any) -> str | None:
    """``proj:shape``: ``[rows, cols]`` positive integers."""
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value):
        return None
    return f"{value!r} must be [rows, cols], two positive integers"


def _check_transform(value: Any) -> str | None:
    """``proj:transform``: 6 or 9 numbers."""
    if _numbers(value, (6, 9)):
        return None
    return f"{value!r:.80} must be a list of 6 or 9 numbers (an affine transform)"


def _check_proj_bbox(value: Any) -> str | None:
    """``proj:bbox``: 4 or 6 numbers."""
    if _numbers(value, (4, 6)):
        return None
    return f"{value!r:.80} must be a list of 4 or 6 numbers"


def _check_cloud_cover(value: Any) -> str | None:
    """``eo:cloud_cover``: a percentage."""
    if _is_number(value) and 0 <= value <= 100:
        return None
    return f"{value!r} must be a number from 0 to 100 (percent)"


def _check_orbit(value: Any) -> str | None:
    """``sat:relative_orbit`` / ``sat:absolute_orbit``: a positive integer."""
    if _is_int(value) and value >= 1:
        return None
    return f"{value!r} must be a positive integer orbit number"


def _check_orbit_state(value: Any) -> str | None:
    """``sat:orbit_state``: ascending or descending."""
    if value in ("ascending", "descending"):
        return None
    return f"{value!r} must be 'ascending' or 'descending'"


def _check_baseline(value: Any) -> str | None:
    """``s2:processing_baseline``: ``NN.NN``."""
    if isinstance(value, str) and re.fullmatch(r"\d{2}\.\d{2}", value):
        return None
    return f"{value!r} must be a string 'NN.NN' such as '05.10'"


def _check_polarizations(value: Any) -> str | None:
    """``sar:polarizations``: distinct HH/VV/HV/VH."""
    if (
        isinstance(value, list)
        and value
        and all(v in _POLARIZATIONS for v in value)
        and len(set(value)) == len(value)
    ):
        return None
    return f"{value!r} must be a non-empty list of distinct values from HH, VV, HV, VH"


def _band_problem(band: Any) -> str | None:
    """Check one ``raster:bands`` entry."""
    if not isinstance(band, Mapping):
        return f"{band!r:.60} is not an object"
    nodata = band.get("nodata")
    if "nodata" in band and not (_is_number(nodata) or nodata in ("nan", "inf", "-inf")):
        return f"nodata {nodata!r} must be a number or 'nan', 'inf', '-inf'"
    if "data_type" in band and band["data_type"] not in _DATA_TYPES:
        return f"data_type {band['data_type']!r} must be one of {sorted(_DATA_TYPES)}"
    for key in ("scale", "offset"):
        if key in band and not _is_number(band[key]):
            return f"{key} {band[key]!r} must be a number"
    return None


def _check_raster_bands(value: Any) -> str | None:
    """``raster:bands``: a list of band objects with valid nodata/data_type/scale/offset."""
    if not isinstance(value, list):
        return f"{value!r:.60} must be a list of band objects"
    for index, band in enumerate(value):
        message = _band_problem(band)
        if message:
            return f"band {index}: {message}"
    return None


_FIELD_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "proj:epsg": _check_epsg,
    "proj:code": _check_code,
    "proj:shape": _check_shape,
    "proj:transform": _check_transform,
    "proj:bbox": _check_proj_bbox,
    "eo:cloud_cover": _check_cloud_cover,
    "sat:relative_orbit": _check_orbit,
    "sat:absolute_orbit": _check_orbit,
    "sat:orbit_state": _check_orbit_state,
    "s2:processing_baseline": _check_baseline,
    "sar:polarizations": _check_polarizations,
    "raster:bands": _check_raster_bands,
}
