"""The continental LAI store: one Zarr v3 store per grid, grown date by date.

A store is created from a :class:`~lamap.grid.Grid` as metadata only (the europe grid,
460 000 x 650 000 px, costs a fraction of a second and well under a megabyte), then receives
one time step per mapped date and region writes of whole shards. Anyone reads it with
``xr.open_zarr(path)``; after ``import rioxarray``, ``ds.rio.crs`` is the grid's CRS.

Layout
------
::

    lai.zarr/
      zarr.json        root group: CF and lamap attributes + consolidated metadata
      lai/             float32 (time, y, x) m2 m-2, NaN where nothing could be estimated
      source/          uint8 (time, y, x) flags, see :class:`Source`; 255 (the fill): not mapped
      lai_sd/          float32 (time, y, x) m2 m-2, the standard error of lai (NaN where
                       unknown); ``lai``'s ``ancillary_variables`` names it
      time/            int64 "days since 1970-01-01", one value per mapped date
      x/, y/           float64 pixel centres in the grid CRS (metres)
      spatial_ref/     0-d CF grid mapping (crs_wkt, spatial_ref, GeoTransform); no chunk
      lamap/           group for lamap's bookkeeping (``xr.open_zarr`` ignores subgroups)
        done/          0-d array holding only attributes, and the done markers:
          <YYYY-MM-DD>/<tile id>.json    one per finished tile and date
        failed/        0-d array, and the failed-tile records (with the reason):
          <YYYY-MM-DD>/<tile id>.json    one per failed tile and date
        no_input/      0-d array, and the records of tiles without input (reason, options):
          <YYYY-MM-DD>/<tile id>.json    one per tile and date; not done, planned again
        lock/          0-d array, and the locks (see :mod:`lamap.store.lock`):
          metadata.lock (local) or metadata.json (object stores), writers/<token>.json,
          insert.json while an insertion moves shards

The records live inside arrays' folders because Zarr never lists an array's contents: in
a plain folder, zarr would warn about an unknown object whenever it walks the hierarchy, as
every commit does. (Stores of earlier lamap versions kept ``failed/`` as a plain folder; their
next commit adds the array.)

``lai`` and ``source`` have inner chunks of ``(1, grid.chunk, grid.chunk)`` (the unit of
reading) inside shards of ``(1, grid.shard, grid.shard)`` (the unit of writing), compressed
with Blosc-zstd. Chunks that hold only the fill value (NaN, 255) are not written, and a shard
of only such chunks is not written either, so unmapped areas cost no disk.

Root attributes: ``Conventions``, ``title``, ``source``, ``history``, ``lamap_grid``
(:meth:`Grid.to_dict`), ``lamap_store_layout``, ``lamap_version``, ``lamap_model`` and
``lamap_dates`` (per date: tiles done, model, the acquisition days and number of items
used per sensor; see :meth:`LaiStore.record_run`). Structured values are JSON strings,
listed in ``lamap_json_attrs``, so that netCDF (``ds.to_netcdf``) can hold every attribute;
:attr:`LaiStore.attrs` parses them (:func:`~lamap.store.attrs.decode_attrs`). The exact
inputs of every tile are in its done marker (:meth:`LaiStore.date_info`).

Time
----
The time axis is chronological whatever order dates are mapped in, so ``ds.sel(time=slice(
"2024-06-01", "2024-06-30"))`` and ``method="nearest"`` work as they are. A date after the
last one is appended; an earlier one is inserted, which moves the later dates' shard folders
(``lai/c/<index>/``) one index up with their bytes unchanged: one rename per date on a local
disk, a copy of each shard object on an object store (:mod:`~lamap.store.timeaxis`). Stores
of earlier lamap versions whose dates are out of order keep appending.

Commits and crash safety
------------------------
The consolidated metadata in the root ``zarr.json`` is the commit record: ``xr.open_zarr``
reads it, and so does :class:`LaiStore`. Adding a date grows ``lai``, ``source`` and ``time``
(metadata only), writes the new time value, then re-consolidates, which replaces the root
``zarr.json`` in one atomic write (a rename on local disks, one PUT on object stores). Until
then readers see the previous dates; an exception rolls the arrays' own metadata back, and a
process killed in between leaves only uncommitted array metadata that the next
:meth:`LaiStore.add_date` overwrites. A date's slice is written only after its commit.

Region writes cover whole shards, and every shard object is replaced atomically, so a write
is idempotent and never touches pixels outside its window. :meth:`LaiStore.write_tile` clears
the tile's done marker, writes the region and only then writes the marker (atomically), so an
interrupted run leaves the tile not done and a rerun redoes it. Markers and failure records
are written with :func:`lamap.runtime.write_atomic`.

Concurrency: any number of runs may share a store (same bbox, neighbouring bboxes, other
dates). Metadata changes (:meth:`LaiStore.create`, :meth:`LaiStore.add_date`,
:meth:`LaiStore.record_run`) hold the store's metadata lock (``flock`` on local disks, leases
made with S3's conditional writes on object stores; :mod:`~lamap.store.lock`): of two
creations one builds and the other joins, and no date is ever lost. A run registers as the
writer of its date (:meth:`LaiStore.writing`); inserting an earlier date waits for the live
runs of the dates it moves. An insertion killed midway is undone by the next change or open.
Region writes and done markers may come from any number of processes at once: dask write
blocks must be aligned with shards, so no two tasks ever write one shard.

Modules
-------
- :mod:`~lamap.store.laistore`: :class:`LaiStore`, the handle callers use.
- :mod:`~lamap.store.schema`: create and open, CF and CRS metadata, commits.
- :mod:`~lamap.store.attrs`: root attributes as netCDF can hold them (JSON strings) and back.
- :mod:`~lamap.store.timeaxis`: the chronological time axis, insertions and their undoing.
- :mod:`~lamap.store.concurrency`: creation, dates and run records under the store's lock.
- :mod:`~lamap.store.lock`: the metadata lock and the writers' registrations.
- :mod:`~lamap.store.objects`: conditional writes (S3 ``If-None-Match``/``If-Match``).
- :mod:`~lamap.store.write`: shard-aligned region writes checked against the contract.
- :mod:`~lamap.store.ledger`: done markers, failed and no-input records, run summaries.
- :mod:`~lamap.store.fs`: locations, the Zarr store and the fsspec file system.
"""

from __future__ import annotations

from lamap.errors import StoreError
from lamap.store.laistore import LaiStore
from lamap.store.ledger import Ledger
from lamap.store.schema import LAI_VALID_RANGE, STORE_LAYOUT, DateLike, Source
from lamap.store.write import ArrayLike, BlockWriter

__all__ = [
    "LAI_VALID_RANGE",
    "STORE_LAYOUT",
    "ArrayLike",
    "BlockWriter",
    "DateLike",
    "LaiStore",
    "Ledger",
    "Source",
    "StoreError",
]

