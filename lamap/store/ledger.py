"""The store's ledger: done markers, the failed-tile records and the run summaries.

One small JSON object per tile and date, written atomically
(:func:`lamap.runtime.write_atomic`) by whichever process finished or failed the tile::

    lamap/done/<YYYY-MM-DD>/<tile id>.json       the tile is written completely
    lamap/failed/<YYYY-MM-DD>/<tile id>.json     the tile failed, and why
    lamap/no_input/<YYYY-MM-DD>/<tile id>.json   the tile had no input, why, with which options

A marker is written only after its tile's region, so an interrupted run leaves the tile not
done and a rerun redoes it; marking a tile done removes its failure and no-input records. A
tile without input is not done: the next run plans it again, with its own options and the
catalog as it is then. The folders are those of 0-d arrays (created with the store, or by
the next commit for stores of earlier lamap versions), because Zarr never lists an array's
contents: a plain folder would make it warn whenever it walks the hierarchy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec

import lamap
from lamap.errors import StoreError
from lamap.grid import Grid
from lamap.runtime.atomic import write_atomic
from lamap.store.fs import filesystem
from lamap.store.schema import DONE_NODE, FAILED_NODE, NO_INPUT_NODE, now

__all__ = ["Ledger", "run_summary"]


@dataclass(frozen=True)
class Ledger:
    """The bookkeeping of one store: cheap, picklable, holding no open file.

    Takes exact types (a ``datetime.date`` and a tile id of ``grid``); :class:`LaiStore`
    normalises what users give and checks the time axis first.

    Parameters
    ----------
    url : str
        The store's normalised location.
    grid : Grid
        The store's grid (tile ids name tiles of it).
    storage_options : dict
        fsspec options for remote URLs.
    """

    url: str
    grid: Grid
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)

    # ----------------------------------------------------------------- done markers

    def mark_done(self, day: dt.date, tile_id: str, info: dict[str, Any]) -> dict[str, Any]:
        """Write a tile's done marker (atomically) and forget any failure of it.

        Returns
        -------
        dict
            The marker: ``date``, ``tile``, ``window``, ``done_at``, ``lamap_version``,
            ``info``.
        """
        window = self.grid.tile_from_id(tile_id).window
        marker = {
            "date": day.isoformat(),
            "tile": tile_id,
            "window": [window.row_start, window.row_stop, window.col_start, window.col_stop],
            "done_at": now(),
            "lamap_version": lamap.__version__,
            "info": info,
        }
        fs, path = self._path(DONE_NODE, day, tile_id)
        write_atomic(path, json.dumps(marker, indent=1).encode(), fs=fs, make_dirs=True)
        self.clear_failed(day, tile_id)
        self._remove(NO_INPUT_NODE, day, tile_id)
        return marker

    def clear_done(self, day: dt.date, tile_id: str) -> None:
        """Forget that a tile is done (nothing happens if it was not)."""
        self._remove(DONE_NODE, day, tile_id)

    def is_done(self, day: dt.date, tile_id: str) -> bool:
        """Return whether a tile of a date is marked done."""
        fs, path = self._path(DONE_NODE, day, tile_id)
        fs.invalidate_cache(path.rsplit("/", 1)[0])  # other processes write markers
        return bool(fs.exists(path))

    def done_tiles(self, day: dt.date) -> list[str]:
        """Return the ids of the tiles marked done for a date, sorted (row, col)."""
        fs, folder = self._path(DONE_NODE, day)
        fs.invalidate_cache(folder)  # other processes write markers
        try:
            paths = fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        names = (str(path).rstrip("/").rsplit("/", 1)[-1] for path in paths)
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and n[0] != ".")

    def date_info(self, day: dt.date) -> dict[str, dict[str, Any]]:
        """Return the done markers of a date by tile id.

        Raises
        ------
        StoreError
            If a marker cannot be read.
        """
        fs, folder = self._path(DONE_NODE, day)
        paths = [f"{folder}/{tile_id}.json" for tile_id in self.done_tiles(day)]
        try:
            raw = fs.cat(paths, on_error="raise") if paths else {}
            return {
                path.rsplit("/", 1)[-1][: -len(".json")]: json.loads(raw[path])
                for path in sorted(raw)
            }
        except (OSError, ValueError) as err:
            raise StoreError(
                f"cannot read the done markers of {day} in {folder} ({err}): clear the broken "
                "one with store.clear_done(date, tile) and map that tile again"
            ) from err

    # ----------------------------------------------------------------- failures

    def mark_failed(self, day: dt.date, tile_id: str, reason: str) -> dict[str, Any]:
        """Record (atomically) that a tile of a date failed, and why.

        Returns
        -------
        dict
            The record: ``date``, ``tile``, ``reason``, ``failed_at``, ``lamap_version``.
        """
        record = {"date": day.isoformat(), "tile": tile_id, "reason": str(reason),
                  "failed_at": now(), "lamap_version": lamap.__version__}  # fmt: skip
        fs, path = self._path(FAILED_NODE, day, tile_id)
        write_atomic(path, json.dumps(record, indent=1).encode(), fs=fs, make_dirs=True)
        return record

    def failed_tiles(self, day: dt.date) -> dict[str, str]:
        """Return the tiles recorded as failed for a date (id → reason), sorted.

        A record that cannot be read (being replaced, damaged) is left out.
        """
        records = self._records(FAILED_NODE, day)
        return {tile: str(record["reason"]) for tile, record in records.items()}

    # ----------------------------------------------------------------- tiles without input

    def mark_no_input(
        self, day: dt.date, tile_id: str, reason: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Record (atomically) that a tile of a date had no input, why, and the options used.

        Returns
        -------
        dict
            The record: ``date``, ``tile``, ``reason``, ``options``, ``recorded_at``,
            ``lamap_version``.
        """
        self.grid.tile_from_id(tile_id)
        record = {"date": day.isoformat(), "tile": tile_id, "reason": str(reason),
                  "options": options, "recorded_at": now(),
                  "lamap_version": lamap.__version__}  # fmt: skip
        fs, path = self._path(NO_INPUT_NODE, day, tile_id)
        write_atomic(path, json.dumps(record, indent=1).encode(), fs=fs, make_dirs=True)
        return record

    def no_input_tiles(self, day: dt.date) -> dict[str, dict[str, Any]]:
        """Return the tiles recorded without input for a date (id → record), sorted."""
        return self._records(NO_INPUT_NODE, day)

    def clear_no_input(self, day: dt.date, tile_id: str) -> None:
        """Forget that a tile of a date had no input (nothing happens if it had)."""
        self._remove(NO_INPUT_NODE, day, tile_id)

    def clear_failed(self, day: dt.date, tile_id: str) -> None:
        """Forget that a tile of a date failed (nothing happens if it did not)."""
        self._remove(FAILED_NODE, day, tile_id)

    # ----------------------------------------------------------------- private

    def _path(
        self, kind: str, day: dt.date, tile_id: str | None = None
    ) -> tuple[fsspec.AbstractFileSystem, str]:
        """Return the file system and the folder of a date, or the record of a tile."""
        fs, root = filesystem(self.url, self.storage_options)
        folder = f"{root}/{kind}/{day.isoformat()}"
        return fs, folder if tile_id is None else f"{folder}/{tile_id}.json"

    def _records(self, kind: str, day: dt.date) -> dict[str, dict[str, Any]]:
        """Return a date's records of one kind by tile id, sorted; unreadable ones left out."""
        fs, folder = self._path(kind, day)
        fs.invalidate_cache(folder)
        try:
            paths = sorted(p for p in fs.ls(folder, detail=False) if str(p).endswith(".json"))
        except FileNotFoundError:
            return {}
        raw = fs.cat(paths, on_error="omit") if paths else {}
        records = {}
        for text in raw.values():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(text)
                records[str(record["tile"])] = dict(record)
        return dict(sorted(records.items()))

    def _remove(self, kind: str, day: dt.date, tile_id: str) -> None:
        fs, path = self._path(kind, day, tile_id)
        with contextlib.suppress(FileNotFoundError):  # absent already: nothing to forget
            fs.rm_file(path)


# --------------------------------------------------------------------------- run records


def run_summary(
    markers: Mapping[str, Mapping[str, Any]], model: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Summarise a date's done markers: what :meth:`LaiStore.record_run` stores.

    Returns
    -------
    dict
        ``tiles_done``, ``model``, ``inputs`` (per top-level key of the markers'
        ``info["inputs"]``: the acquisition ``days`` used and the number of distinct
        ``items``), ``lamap_version`` and ``updated``.
    """
    return {
        "tiles_done": len(markers),
        "model": None if model is None else dict(model),
        "inputs": _summarise_inputs(markers),
        "lamap_version": lamap.__version__,
        "updated": now(),
    }


def _summarise_inputs(markers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per top-level input key (``s2``, ``s1``): the days used and how many items."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for marker in markers.values():
        inputs = (marker.get("info") or {}).get("inputs")
        for key, value in inputs.items() if isinstance(inputs, Mapping) else ():
            days, items = found.setdefault(str(key), (set(), set()))
            _collect(value, days, items)
    return {
        key: {"days": sorted(days), "items": len(items)}
        for key, (days, items) in sorted(found.items())
        if days or items
    }


def _collect(value: object, days: set[str], items: set[str]) -> None:
    """Gather acquisition days and item ids from a TimeSteps-like JSON tree."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key == "items" and isinstance(inner, list):
                items.update(str(item) for item in inner)
            elif key in ("day", "datetime") and isinstance(inner, str):
                days.add(inner[:10])
            else:
                _collect(inner, days, items)
    elif isinstance(value, list):
        for inner in value:
            _collect(inner, days, items)
