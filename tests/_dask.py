"""Test helper: fail when code computes dask graphs it should only build."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dask
import dask.local

__all__ = ["CountingScheduler", "raise_if_dask_computes"]


class CountingScheduler:
    """A synchronous dask scheduler that counts computes and raises past a limit.

    Parameters
    ----------
    max_computes : int
        Computes allowed before the next one raises ``RuntimeError``.
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.max_computes = max_computes
        self.computes = 0

    def __call__(self, dsk: Mapping[Any, Any], keys: Any, **kwargs: Any) -> Any:
        self.computes += 1
        if self.computes > self.max_computes:
            raise RuntimeError(
                f"dask computed {self.computes} time(s), at most {self.max_computes} allowed: "
                "something computes while building a graph (.values, .compute(), bool(), "
                "float() on lazy data)"
            )
        return dask.local.get_sync(dsk, keys, **kwargs)


@contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Within the block, any dask compute beyond ``max_computes`` raises ``RuntimeError``.

    Yields the scheduler, whose ``computes`` attribute counts the computes.
    """
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler
