"""Draw lamap's progress events (:mod:`lamap.runtime.progress`) as tqdm bars on stderr.

The only place lamap uses tqdm: the library reports events, the command line draws them. One
bar per counted task (``tiles``, ``blocks``, ``patches``, ``batches``, ``steps``), lines above
the bars for messages, links and warnings.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from lamap.runtime.progress import Event

__all__ = ["Bars"]


class Bars:
    """A context manager and a ``progress`` callable: events in, tqdm bars out.

    Parameters
    ----------
    description : str
        Shown before each bar's task name.
    disable : bool, optional
        tqdm's ``disable``: ``None`` (default) draws bars only on a terminal.
    """

    def __init__(self, description: str, *, disable: bool | None = None) -> None:
        self.description, self.disable = description, disable
        self._bars: dict[str, Any] = {}

    def __enter__(self) -> Bars:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __call__(self, event: Event) -> None:
        """Draw one event."""
        from tqdm.auto import tqdm

        if event.kind == "step" and event.task:
            self._advance(event)
            if event.task in ("batches", "blocks", "patches"):
                return  # too many to print: the bar says it
        if event.message:
            tqdm.write(event.message, file=sys.stderr)

    def _advance(self, event: Event) -> None:
        bar = self._bars.get(event.task)
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(desc=f"{self.description}: {event.task}", unit=event.task.rstrip("s"),
                       total=event.total, file=sys.stderr, disable=self.disable, leave=False,
                       position=len(self._bars))  # fmt: skip
            self._bars[event.task] = bar
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        if event.done is not None and event.done < bar.n:  # a new epoch restarts the count
            bar.reset(total=event.total)
        bar.update((event.done or 0) - bar.n)
