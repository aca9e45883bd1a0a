"""One progress protocol: the library reports structured events, front ends draw them.

Long work (mapping tiles and blocks, building a training cache, training epochs, generating a
demo world, benchmarks) reports :class:`Event` objects to a ``progress`` callable. An event
carries a human line (``message``), and, for countable work, what is counted (``task``), how
many are done and of how many. The library never draws bars or prints; the command line
turns events into tqdm bars (:mod:`lamap.cli.progress`), a notebook can do the same, a
service can log them.

Example::

    events = []
    lamap.map_lai(bbox, date, "lai.zarr", progress=events.append)
    [e.message for e in events if e.kind == "link"]   # the dashboard
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["Event", "EventKind", "Progress", "Reporter", "as_progress", "stderr_lines"]

#: ``info``: a line for humans; ``link``: a URL to open (the dashboard); ``step``: countable
#: work moved on (``task``, ``done``, ``total``); ``warning``: something went wrong but the
#: work goes on (a failed tile).
EventKind: TypeAlias = Literal["info", "link", "step", "warning"]


@dataclass(frozen=True)
class Event:
    """One progress event.

    Parameters
    ----------
    message : str
        A line for humans (may be empty for a bare step).
    kind : {"info", "link", "step", "warning"}
        What the event is (:data:`EventKind`).
    task : str
        For steps: what is counted (``"tiles"``, ``"blocks"``, ``"patches"``, ``"batches"``).
    done, total : int, optional
        For steps: units done so far (cumulative) and in all (None when unknown).
    """

    message: str = ""
    kind: EventKind = "info"
    task: str = ""
    done: int | None = None
    total: int | None = None


#: What a ``progress=`` argument takes.
Progress: TypeAlias = Callable[[Event], None]


def stderr_lines(event: Event) -> None:
    """Print each event's message on standard error (the plain front end)."""
    if event.message:
        print(event.message, file=sys.stderr, flush=True)


def as_progress(value: Progress | bool | None) -> Progress | None:
    """Normalise a ``progress=`` argument: ``True`` prints lines, ``False``/``None`` is quiet."""
    if value is True:
        return stderr_lines
    if value is False or value is None:
        return None
    return value


class Reporter:
    """Send events to an optional ``progress`` callable (no-op when there is none).

    Parameters
    ----------
    progress : callable or bool, optional
        Where events go (:func:`as_progress`).
    """

    def __init__(self, progress: Progress | bool | None) -> None:
        self._sink = as_progress(progress)

    def __bool__(self) -> bool:
        """Whether anyone listens (skip building costly messages when not)."""
        return self._sink is not None

    def info(self, message: str) -> None:
        """Report a line."""
        self._emit(Event(message))

    def link(self, message: str) -> None:
        """Report a line holding a link (the dashboard)."""
        self._emit(Event(message, "link"))

    def warning(self, message: str) -> None:
        """Report a problem the work survives."""
        self._emit(Event(message, "warning"))

    def step(self, task: str, done: int, total: int | None = None, message: str = "") -> None:
        """Report countable progress: ``done`` of ``total`` ``task`` units."""
        self._emit(Event(message, "step", task, done, total))

    def _emit(self, event: Event) -> None:
        if self._sink is not None:
            self._sink(event)
