"""The :class:`LaiStore` handle: what callers use to create, grow, write and read a store.

Its methods normalise what users give (dates, tiles, paths) and delegate to the role
modules: :mod:`~lamap.store.schema` (create, open, time axis, commits),
:mod:`~lamap.store.write` (shard-aligned region writes) and :mod:`~lamap.store.ledger`
(done markers, failed tiles, run records).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dask
import xarray as xr
import zarr
from dask.base import tokenize
from dask.delayed import Delayed

from lamap._inputs import as_date
from lamap.errors import GridError
from lamap.grid import Grid, Tile, Window
from lamap.store import concurrency, schema, timeaxis
from lamap.store.fs import normalise_url, zarr_store
from lamap.store.ledger import Ledger, run_summary
from lamap.store.schema import DateLike, json_ready
from lamap.store.write import ArrayLike, BlockWriter, check_window, write_region

__all__ = ["LaiStore"]


def _mark_after(
    ledger: Ledger, day: dt.date, tile_id: str, info: dict[str, Any], written: object
) -> dict[str, Any]:
    """Write a tile's done marker once its region is written (``written`` is the dependency)."""
    return ledger.mark_done(day, tile_id, info)


@dataclass(frozen=True)
class LaiStore:
    """A handle on a lamap LAI store: cheap, picklable, holding no open file.

    Get one with :meth:`create`, :meth:`open` or :meth:`open_or_create`; the constructor
    does no I/O and checks nothing.

    Parameters
    ----------
    url : str
        Absolute local path or fsspec URL (``s3://bucket/lai.zarr``) of the store.
    grid : Grid
        The store's grid, as recorded in its attributes.
    storage_options : dict
        Passed to fsspec for remote URLs (credentials, endpoint).
    """

    url: str
    grid: Grid
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(
        cls,
        url: str | os.PathLike[str],
        grid: Grid,
        *,
        attrs: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> LaiStore:
        """Create the store for a grid (metadata only), or open it if it exists on that grid.

        Creation writes array metadata, the x/y coordinates and the attributes, never a data
        chunk, and the root ``zarr.json`` last. It holds the store's lock: of several
        processes creating one store at once, one builds it and the others open it. A store
        left half-created by an interrupted creation holds no data and is created again.

        Parameters
        ----------
        url : str or os.PathLike
            Local path or fsspec URL.
        grid : Grid
            The output grid.
        attrs : mapping, optional
            Extra JSON-ready global attributes (``title``, ``institution``...), applied when
            the store is created; keys may not start with ``lamap_``.
        storage_options : mapping, optional
            fsspec options for remote URLs.

        Returns
        -------
        LaiStore

        Raises
        ------
        GridError
            If a store exists at ``url`` on a different grid (listing the differences).
        StoreError
            If something else than a lamap store exists at ``url``.
        InputError
            If ``attrs`` are not JSON-ready or use reserved keys.
        """
        location, options = normalise_url(url), dict(storage_options or {})
        extra = schema.check_user_attrs(attrs)
        concurrency.create(location, options, grid, extra)
        return cls.open(location, grid=grid, storage_options=options)

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str],
        *,
        grid: Grid | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> LaiStore:
        """Open an existing store; its grid comes from its attributes.

        An insertion of a date that a killed process left half done is undone first (see
        :mod:`lamap.store.timeaxis`).

        Parameters
        ----------
        url : str or os.PathLike
            Local path or fsspec URL.
        grid : Grid, optional
            The grid the caller expects; refused if it differs from the store's.
        storage_options : mapping, optional
            fsspec options for remote URLs.

        Returns
        -------
        LaiStore

        Raises
        ------
        StoreError
            If there is no lamap store at ``url``, or it is damaged.
        GridError
            If ``grid`` differs from the store's grid (listing the differences).
        """
        location, options = normalise_url(url), dict(storage_options or {})
        stored = schema.stored_grid(location, schema.open_group(location, options, write=False))
        concurrency.repair(location, options)
        if grid is not None:
            stored.check_same(grid, what=f"the store {location}")
        return cls(location, stored, options)

    @classmethod
    def open_or_create(
        cls,
        url: str | os.PathLike[str],
        grid: Grid | None = None,
        *,
        attrs: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> LaiStore:
        """Open the store, or create it when ``grid`` is given and nothing is there.

        With ``grid=None`` the store must exist and its own grid is used (what a rerun
        without ``--grid`` wants); otherwise this is :meth:`create`.

        Raises
        ------
        StoreError, GridError, InputError
            As :meth:`open` and :meth:`create`.
        """
        if grid is None:
            return cls.open(url, storage_options=storage_options)
        return cls.create(url, grid, attrs=attrs, storage_options=storage_options)

    # ----------------------------------------------------------------- reading

    @property
    def attrs(self) -> dict[str, Any]:
        """The store's global attributes (committed state), JSON strings parsed."""
        return schema.decode_attrs(self._group().attrs.asdict())

    @property
    def dates(self) -> list[dt.date]:
        """The dates of the time axis, in index order (chronological, see :meth:`add_date`)."""
        return timeaxis.read_dates(self._group())

    def time_index(self, date: DateLike) -> int:
        """Return the index of ``date`` on the time axis.

        Raises
        ------
        StoreError
            If the date was not added (:meth:`add_date`).
        """
        return timeaxis.date_index(self.url, self._group(), as_date(date))

    def dataset(self, **kwargs: Any) -> xr.Dataset:
        """Open the store lazily with :func:`xarray.open_zarr` (committed state).

        Parameters
        ----------
        **kwargs
            Passed to :func:`xarray.open_zarr` (``chunks``...).
        """
        store = zarr_store(self.url, self.storage_options, read_only=True)
        return xr.open_zarr(store, consolidated=True, **kwargs)

    # ----------------------------------------------------------------- time axis

    def add_date(self, date: DateLike) -> int:
        """Return the index of ``date`` on the time axis, inserting it in order if new.

        The time axis stays chronological: a date after the last one is appended (the
        arrays grow by one step, metadata only); an earlier one is inserted, which moves the
        shard folders of the later dates one index up, their bytes unchanged
        (:mod:`lamap.store.timeaxis`). The new slice reads as NaN / no_input. Safe to call
        from several processes at once: the change is made under the store's lock, and an
        insertion waits while a run registered with :meth:`writing` writes a later date.

        Returns
        -------
        int
            The index of the date (later dates move up by one when it is inserted).

        Raises
        ------
        StoreError
            If the store cannot be opened or written.
        """
        return concurrency.add_date(self.url, self.storage_options, as_date(date))[0]

    @contextlib.contextmanager
    def writing(
        self, date: DateLike, *, progress: Callable[[str], None] | None = None
    ) -> Iterator[BlockWriter]:
        """Add ``date`` (:meth:`add_date`) and be its registered writer inside the block.

        While registered, no insertion of an earlier date moves this date's shards, so the
        yielded writer's index stays right; several runs may write one date at once
        (shard-exclusive blocks). The registration ends with the block, and with its process
        if that dies. Inside the block, do not add a date earlier than this one from the same
        process: that insertion would wait for this very registration.

        Parameters
        ----------
        date : date or str
            The date to write.
        progress : callable, optional
            Told when the insertion waits for other runs.

        Yields
        ------
        BlockWriter
            The writer of the date's blocks (picklable, for workers).
        """
        day = as_date(date)
        index, registration = concurrency.add_date(
            self.url, self.storage_options, day, register=True, say=progress
        )
        try:
            yield self._writer(index)
        finally:
            if registration is not None:
                registration.close()

    # ----------------------------------------------------------------- writing

    def write_region(
        self,
        date: DateLike,
        window: Window,
        lai: ArrayLike,
        source: ArrayLike,
        *,
        compute: bool = True,
    ) -> Delayed | None:
        """Write ``lai`` and ``source`` of one date into a shard-aligned window.

        Only the shards inside the window change, each replaced whole, so writing the same
        window again is idempotent and neighbouring windows never interfere. Every block is
        checked against the store contract (flags 0-2, ``lai`` NaN exactly where
        ``source`` is 0, finite values in :data:`LAI_VALID_RANGE`) before it is written.

        Parameters
        ----------
        date : date or str
            A date already on the time axis (:meth:`add_date`).
        window : Window
            Inside the grid, with edges on shard boundaries (or the grid's last row/col).
        lai, source : numpy.ndarray or dask.array.Array or xarray.DataArray
            2-D ``(y, x)`` arrays of the window's shape: LAI (floats, cast to float32) and
            :class:`Source` flags (integers). Dask blocks must not cut a shard
            (``rechunk(grid.shard)`` makes them fit); each block is written by its own task.
        compute : bool
            Write now, or return a :class:`dask.delayed.Delayed` that writes when computed
            (and returns the window), for one compute over many regions.

        Returns
        -------
        Delayed or None
            None when ``compute`` is True.

        Raises
        ------
        GridError
            If the window is outside the grid or not aligned with its shards.
        StoreError
            If the date is not on the time axis.
        InputError
            If an array has the wrong shape, dtype or blocks, or breaks the contract (raised
            when the block is computed, for dask arrays).
        """
        check_window(self.grid, window)
        if not compute:
            return write_region(self.block_writer(date), self.grid, window, lai, source,
                                compute=False)  # fmt: skip
        with concurrency.registered(self.url, self.storage_options, as_date(date)) as index:
            return write_region(self._writer(index), self.grid, window, lai, source, compute=True)

    def write_tile(
        self,
        date: DateLike,
        tile: Tile | str,
        lai: ArrayLike,
        source: ArrayLike,
        *,
        info: Mapping[str, Any] | None = None,
        compute: bool = True,
    ) -> Delayed | dict[str, Any]:
        """Write one tile of one date, then mark it done.

        The tile's done marker is cleared first (a rewrite that fails leaves the tile not
        done) and written after its region, by a task that depends on the region's writes.

        Parameters
        ----------
        date : date or str
            A date already on the time axis (:meth:`add_date`).
        tile : Tile or str
            A tile of the store's grid, or its id.
        lai, source : array-like
            As for :meth:`write_region`, with the tile's shape.
        info : mapping, optional
            JSON-ready record of what produced the tile, kept in the marker: by convention
            ``{"inputs": TimeSteps.to_dict(), "model": {"id": ..., "sha256": ...}}``.
        compute : bool
            Write now, or return a Delayed that writes region and marker when computed.

        Returns
        -------
        dict or Delayed
            The marker written (see :meth:`date_info`), or a Delayed giving it.

        Raises
        ------
        GridError, StoreError, InputError
            As :meth:`write_region`, and if the tile is not of this grid or ``info`` is not
            JSON-ready.
        """
        day, checked = as_date(date), self._tile(tile)
        payload = json_ready(info or {}, f"info of tile {checked.id}")
        written = self.write_region(day, checked.window, lai, source, compute=False)
        assert written is not None
        self.ledger.clear_done(day, checked.id)
        token = tokenize(self.url, day, checked.id, payload, written.key)
        marker = dask.delayed(_mark_after, pure=True)(
            self.ledger, day, checked.id, payload, written, dask_key_name=f"lamap-done-{token}"
        )
        if not compute:
            return marker
        with concurrency.registered(self.url, self.storage_options, day):
            return dict(marker.compute())

    # ----------------------------------------------------------------- bookkeeping

    @property
    def ledger(self) -> Ledger:
        """The store's done markers and failed-tile records, by exact date and tile id.

        The methods below take any :data:`DateLike` and a tile or its id, and delegate to it.
        """
        return Ledger(self.url, self.grid, self.storage_options)

    def mark_done(
        self, date: DateLike, tile: Tile | str, info: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record that a tile of a date is written (atomically; rewrites replace it).

        :meth:`write_tile` does this after the tile's data; call it yourself only after
        writing the tile's region with :meth:`write_region`.

        Returns
        -------
        dict
            The marker written: ``date``, ``tile``, ``window``, ``done_at``, ``lamap_version``
            and ``info``.

        Raises
        ------
        StoreError
            If the date is not on the time axis.
        GridError, InputError
            If the tile is not of this grid or ``info`` is not JSON-ready.
        """
        day, checked = as_date(date), self._tile(tile)
        self.time_index(day)
        return self.ledger.mark_done(day, checked.id, json_ready(info or {}, "info"))

    def clear_done(self, date: DateLike, tile: Tile | str) -> None:
        """Forget that a tile of a date is done (nothing happens if it was not)."""
        self.ledger.clear_done(as_date(date), self._tile(tile).id)

    def block_writer(self, date: DateLike) -> BlockWriter:
        """Return a small picklable writer of shard-aligned blocks of ``date``.

        Its ``write(window, lai, source, lai_sd)`` is what a block task calls on a worker;
        the window must be shard-aligned (one task per shard). The writer holds the date's
        index: where other processes may add dates concurrently, take it from
        :meth:`writing` instead, which keeps that index valid until the block ends.

        Raises
        ------
        StoreError
            If the date is not on the time axis.
        """
        group = schema.open_group(self.url, self.storage_options, write=False)
        return self._writer(timeaxis.date_index(self.url, group, as_date(date)))

    def mark_failed(self, date: DateLike, tile: Tile | str, reason: str) -> dict[str, Any]:
        """Record in the store's ledger that a tile of a date failed, and why.

        A failed tile is not done: the next run of the date maps it again, and marking it
        done clears the record.

        Returns
        -------
        dict
            The record written: ``date``, ``tile``, ``reason``, ``failed_at`` and
            ``lamap_version``.

        Raises
        ------
        GridError
            If the tile is not of this grid.
        """
        return self.ledger.mark_failed(as_date(date), self._tile(tile).id, reason)

    def mark_no_input(
        self, date: DateLike, tile: Tile | str, reason: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Record that a tile of a date has no input, why, and with which options.

        The tile is not done: the next run of the date plans it again (with other options,
        or after new data reached the catalog), and marking it done clears the record.

        Returns
        -------
        dict
            The record written: ``date``, ``tile``, ``reason``, ``options``,
            ``recorded_at`` and ``lamap_version``.

        Raises
        ------
        GridError, InputError
            If the tile is not of this grid or ``options`` are not JSON-ready.
        """
        checked = json_ready(options, "options")
        return self.ledger.mark_no_input(as_date(date), self._tile(tile).id, reason, checked)

    def no_input_tiles(self, date: DateLike) -> dict[str, dict[str, Any]]:
        """Return the tiles recorded without input for a date (id → record), sorted."""
        return self.ledger.no_input_tiles(as_date(date))

    def failed_tiles(self, date: DateLike) -> dict[str, str]:
        """Return the tiles recorded as failed for a date (id → reason), sorted."""
        return self.ledger.failed_tiles(as_date(date))

    def clear_failed(self, date: DateLike, tile: Tile | str) -> None:
        """Forget that a tile of a date failed (nothing happens if it did not)."""
        self.ledger.clear_failed(as_date(date), self._tile(tile).id)

    def is_done(self, date: DateLike, tile: Tile | str) -> bool:
        """Return whether a tile of a date is marked done."""
        return self.ledger.is_done(as_date(date), self._tile(tile).id)

    def done_tiles(self, date: DateLike) -> list[str]:
        """Return the ids of the tiles marked done for a date, sorted (row, col)."""
        return self.ledger.done_tiles(as_date(date))

    def date_info(self, date: DateLike) -> dict[str, dict[str, Any]]:
        """Return the done markers of a date by tile id: what produced every tile.

        Raises
        ------
        StoreError
            If a marker cannot be read (clear it with :meth:`clear_done` and remap the tile).
        """
        return self.ledger.date_info(as_date(date))

    def record_run(
        self, date: DateLike, *, model: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Summarise a date's done tiles into the attributes (end of a run, driver only).

        Sets ``lamap_version``, ``lamap_model`` (if given) and ``lamap_dates[date]`` =
        ``{"tiles_done", "model", "inputs", "lamap_version", "updated"}`` where ``inputs``
        maps each top-level key of the markers' ``info["inputs"]`` (``s1``, ``s2`` for
        :meth:`TimeSteps.to_dict`) to the acquisition ``days`` used and the number of
        distinct ``items``. The attributes are rewritten with the committed metadata in one
        atomic write.

        Parameters
        ----------
        date : date or str
            A date on the time axis.
        model : mapping, optional
            JSON-ready model identity, e.g. ``{"id": "fused-v1", "sha256": "..."}``.

        Returns
        -------
        dict
            The summary stored for the date.

        Raises
        ------
        StoreError
            If the date is not on the time axis or markers cannot be read.
        """
        day = as_date(date)
        model_record = None if model is None else json_ready(model, "model")
        with concurrency.locked(self.url, self.storage_options, f"recording the run of {day}"):
            # the date checked under the lock: an insertion in another process rewrites the
            # time values before it commits the new shape, so a read outside could miss it
            self.time_index(day)
            # markers read under the lock: the last run to record a date counts them all
            summary = run_summary(self.ledger.date_info(day), model_record)
            schema.record_date(self.url, self.storage_options, day, summary, model_record)
        return summary

    # ----------------------------------------------------------------- private

    def _group(self) -> zarr.Group:
        return schema.open_group(self.url, self.storage_options, write=False)

    def _writer(self, index: int) -> BlockWriter:
        group = schema.open_group(self.url, self.storage_options, write=True)
        lai, source = schema.array(group, "lai"), schema.array(group, "source")
        sd = schema.array(group, "lai_sd") if "lai_sd" in group else None  # not in old stores
        return BlockWriter(self.url, index, lai, source, sd)

    def _tile(self, tile: Tile | str) -> Tile:
        if isinstance(tile, str):
            return self.grid.tile_from_id(tile)
        if not isinstance(tile, Tile) or tile.grid != self.grid:
            raise GridError(
                f"{tile!r} is not a tile of the store's grid {self.grid.label}: take tiles from "
                "store.grid (e.g. store.grid.tiles_for_bbox(bbox))"
            )
        return tile

    def __repr__(self) -> str:
        """Return ``LaiStore('/data/lai.zarr', grid='europe')`` (no I/O)."""
        return f"LaiStore({self.url!r}, grid={self.grid.name!r})"
