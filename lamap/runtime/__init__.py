"""What lamap runs on: the Dask client and the one atomic file writer.

- :mod:`lamap.runtime.cluster`: :class:`ClusterSpec` and :func:`get_client`, a local cluster
  of worker processes or any running scheduler.
- :mod:`lamap.runtime.progress`: :class:`Event`, the one progress protocol (the library
  reports events; front ends draw them).
- :mod:`lamap.runtime.atomic`: :func:`write_atomic` and :func:`atomic_path`, which replace a
  file so that readers see the old content or the new, never a part (fsync'd locally, one
  object PUT on fsspec object stores).
"""

from __future__ import annotations

from lamap.runtime.atomic import Content, atomic_path, write_atomic
from lamap.runtime.cluster import ClusterSpec, dashboard_link, get_client
from lamap.runtime.progress import Event, Progress, Reporter

__all__ = [
    "ClusterSpec",
    "Content",
    "Event",
    "Progress",
    "Reporter",
    "atomic_path",
    "dashboard_link",
    "get_client",
    "write_atomic",
]
