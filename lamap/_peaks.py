"""Peak values polled in a background thread (memory during a bench)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

__all__ = ["peaks"]


@contextmanager
def peaks(samplers: Sequence[Callable[[], float]], every: float = 0.25) -> Iterator[list[float]]:
    """Poll every sampler until the block ends; yields their running maxima, in order.

    A sampler that raises is skipped for that round (polling never stops a measurement);
    each sampler is read once more when the block ends.
    """
    found = [0.0] * len(samplers)
    stop = threading.Event()

    def poll() -> None:
        for i, sample in enumerate(samplers):
            try:
                found[i] = max(found[i], float(sample()))
            except Exception:  # noqa: BLE001, S112 - a missed sample is not an error
                continue

    def loop() -> None:
        while not stop.is_set():
            poll()
            stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        poll()
