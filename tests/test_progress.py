"""The progress protocol: the library's events, and the command line's bars."""

from __future__ import annotations

import pytest

from lamap.cli.progress import Bars
from lamap.runtime.progress import Event, Reporter, as_progress, stderr_lines


def test_a_reporter_sends_typed_events() -> None:
    events: list[Event] = []
    say = Reporter(events.append)
    say.info("hello")
    say.link("dashboard: http://127.0.0.1:1/status")
    say.step("tiles", 2, 5, "tile r1c1 done (2/5)")
    say.warning("tile r1c2 failed")
    assert [e.kind for e in events] == ["info", "link", "step", "warning"]
    assert events[2] == Event("tile r1c1 done (2/5)", "step", "tiles", 2, 5)
    assert bool(say) and not Reporter(None) and not Reporter(False)


def test_quiet_and_plain_front_ends(capsys: pytest.CaptureFixture[str]) -> None:
    Reporter(None).info("nobody hears this")
    assert as_progress(True) is stderr_lines and as_progress(False) is None
    Reporter(True).info("a line")
    Reporter(True).step("tiles", 1, 2)  # no message: nothing printed
    assert capsys.readouterr().err == "a line\n"


def test_bars_count_steps_and_print_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with Bars("mapping", disable=False) as bars:
        bars(Event("dashboard: http://127.0.0.1:1/status", "link"))
        for done in (1, 2, 3):
            bars(Event("", "step", "blocks", done))
        bars(Event("tile r0c0 done (1/2)", "step", "tiles", 1, 2))
        bars(Event("", "step", "batches", 4, 10))
        bars(Event("", "step", "batches", 1, 10))  # a new epoch: the bar restarts
        assert bars._bars["blocks"].n == 3 and bars._bars["tiles"].n == 1
        assert bars._bars["tiles"].total == 2 and bars._bars["batches"].n == 1
    err = capsys.readouterr().err
    assert "dashboard: http://127.0.0.1:1/status" in err and "tile r0c0 done (1/2)" in err
    assert not bars._bars
