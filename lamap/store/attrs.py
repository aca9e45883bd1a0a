"""Root attributes that netCDF can hold: structured values as JSON strings, and back.

Zarr attributes are JSON, netCDF attributes are not: ``ds.to_netcdf()`` refuses a dict
(``TypeError: Invalid value for attr``). The store therefore keeps every structured value
(``lamap_grid``, ``lamap_dates``, ``lamap_model``, a user's dict) as JSON text and lists
those keys in :data:`JSON_ATTRS`; :func:`decode_attrs` gives the values back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lamap.errors import StoreError

__all__ = ["JSON_ATTRS", "decode_attrs", "encode_attrs"]

#: The root attribute listing the attributes held as JSON strings (see :func:`encode_attrs`).
JSON_ATTRS = "lamap_json_attrs"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _netcdf_ready(value: Any) -> bool:
    """Tell whether netCDF (and so ``Dataset.to_netcdf``) can hold an attribute as it is."""
    if isinstance(value, str) or _number(value):
        return True
    return isinstance(value, list) and bool(value) and (
        all(_number(item) for item in value) or all(isinstance(item, str) for item in value)
    )


def encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return attributes that netCDF can hold: structured values become JSON strings.

    Dicts, booleans, None, empty or mixed lists are written as JSON text, and their keys
    are listed (space-separated) in the attribute :data:`JSON_ATTRS`, so that
    ``xr.open_zarr(store).to_netcdf(...)`` works and :func:`decode_attrs` gives the values
    back.

    Parameters
    ----------
    attrs : mapping
        JSON-ready attributes, decoded (:func:`decode_attrs`).

    Returns
    -------
    dict
    """
    encoded: dict[str, Any] = {}
    names = []
    for key, value in attrs.items():
        if key == JSON_ATTRS:
            continue
        if _netcdf_ready(value):
            encoded[key] = value
        else:
            encoded[key] = json.dumps(value, sort_keys=True, allow_nan=False)
            names.append(key)
    encoded[JSON_ATTRS] = " ".join(sorted(names))
    return encoded


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return attributes with the JSON strings listed in :data:`JSON_ATTRS` parsed.

    Stores of layout 1 hold those values as JSON objects; they are returned as they are.

    Raises
    ------
    StoreError
        If a listed attribute is not valid JSON (the store was edited by hand).
    """
    decoded = {key: value for key, value in attrs.items() if key != JSON_ATTRS}
    for key in str(attrs.get(JSON_ATTRS, "")).split():
        value = decoded.get(key)
        if not isinstance(value, str):
            continue
        try:
            decoded[key] = json.loads(value)
        except ValueError as err:
            raise StoreError(
                f"the store attribute {key!r} should hold JSON ({err}); it was edited by "
                "hand: restore it, or write to a new store"
            ) from err
    return decoded
