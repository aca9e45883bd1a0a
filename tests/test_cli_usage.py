"""Command-line usage errors: one 'lamap: error:' line on stderr, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamap.cli.main import main


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["map", "--bbox", "5,48,6,49", "--date", "2024-13-01"], "'2024-13-01' is not a date"),
        (["map", "--bbox", "5,48,6,49"], "Missing option '--date'"),
        (["map", "--bbox", "5,48,6,49", "--date", "2024-01-01", "--workers", "abc"], "--workers"),
        (["map", "--bbox", "5,48,6,49", "--date", "2024-01-01", "--nope"], "No such option"),
        (["map", "--bbox", "5,48,6,49", "--date", "2024-01-01", "--precision", "half"],
         "precision 'half'"),
        (["bogus"], "No such command 'bogus'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lai.zarr"
    extra = ["--out", str(out)] if args[0] == "map" else []
    with pytest.raises(SystemExit) as stop:
        main([*args, *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lamap: error: ") and err.count("\n") == 1, err
    assert says in err
    assert not out.exists()
