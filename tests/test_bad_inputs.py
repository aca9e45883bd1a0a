"""The hostile user: every mistake on the command line is one clean line, and changes nothing.

Each case runs ``lamap`` (in this process, through :func:`lamap.cli.main.main`) with one
mistake and asserts: exit code 2, exactly one ``lamap: error:`` line on stderr (the last
one; lamap warnings may precede it), no traceback, the expected words, the bytes of an
existing store unchanged (hashed before and after), and nothing created where new outputs
would go. A few cases also run as a separate process, as a user would.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lamap.cli.main import main
from lamap.grid import Grid
from lamap.store import LaiStore
from lamap.synthetic.world import World
from tests._trials import tile_data

DATE = "2024-04-28"  # mapped in the store below
BBOX = "5.995,48.695,6.005,48.705"  # inside the tiny world


@dataclass(frozen=True)
class Case:
    """A command line with one mistake, and words its error line must hold."""

    args: tuple[str, ...]
    says: str


def case(says: str, *args: str) -> Any:
    return pytest.param(Case(args, says), id=f"{args[0]}: {says}")


def store_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def unwritable_folder(tmp: Path) -> Path:
    """A folder nothing can be written in: read-only for a user, a read-only mount for root."""
    if os.geteuid() != 0:
        folder = tmp / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    for folder in (Path("/sys"), Path("/proc/sys")):
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError:
            return folder
    raise AssertionError("no read-only folder found for root: mount one to run this suite")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_world: World, model: Path,
        grid: Grid) -> dict[str, str]:  # fmt: skip
    """Paths the cases refer to as {name}: a mapped store, files, folders, new outputs."""
    root = tmp_path_factory.mktemp("hostile")
    store = LaiStore.create(root / "lai.zarr", grid)
    tile = grid.get_tile(0, 0)
    store.write_tile(DATE, tile, *tile_data(DATE, tile)) if store.add_date(DATE) == 0 else None
    store.record_run(DATE, model={"id": "test"})
    (root / "file.txt").write_text("not a store, not a checkpoint, not a world\n")
    (root / "folder").mkdir()
    (root / "folder" / "notes.txt").write_text("keep me")
    (root / "empty").mkdir()
    scratch = root / "scratch"
    scratch.mkdir()
    return {
        "store": str(root / "lai.zarr"), "world": str(tiny_world.root), "model": str(model),
        "file": str(root / "file.txt"), "folder": str(root / "folder"),
        "empty": str(root / "empty"), "scratch": str(scratch),
        "new": str(scratch / "new"), "unwritable": str(unwritable_folder(root)),
    }  # fmt: skip


MAP = ("map", "--bbox", BBOX, "--date", DATE, "--out", "{new}.zarr", "--catalog", "{world}",
       "--model", "{model}")  # fmt: skip
OLD = ("map", "--bbox", BBOX, "--date", "2024-04-24", "--out", "{store}", "--catalog",
       "{world}", "--model", "{model}")  # fmt: skip


def with_option(base: tuple[str, ...], option: str, *value: str) -> tuple[str, ...]:
    """Replace (or add) an option of a command line."""
    args = list(base)
    if option in args:
        i = args.index(option)
        del args[i : i + 2]
    return (*args, option, *value)


MAP_CASES = [
    case("'2024-02-30' is not a date", *with_option(MAP, "--date", "2024-02-30")),
    case("is not a date", *with_option(MAP, "--date", "15/06/2024")),
    case("is not a date", *with_option(MAP, "--date", "2024-13-01")),
    case("Missing option '--date'", "map", "--bbox", BBOX, "--out", "{new}.zarr"),
    case("Missing option '--bbox'", "map", "--date", DATE, "--out", "{new}.zarr"),
    case("Missing option '--out'", "map", "--bbox", BBOX, "--date", DATE),
    case("--workers", *with_option(MAP, "--workers", "abc")),
    case("--workers", *with_option(MAP, "--workers", "0")),
    case("--workers", *with_option(MAP, "--workers", "-2")),
    case("No such option", *MAP, "--nope"),
    case("Got unexpected extra argument", *MAP, "extra"),
    case("'gpu' is not a device", *with_option(MAP, "--device", "gpu")),
    case("cuda:99", *with_option(MAP, "--device", "cuda:99")),
    case("precision 'half'", *with_option(MAP, "--precision", "half")),
    case("must be a number greater than 0", *with_option(MAP, "--resolution", "0")),
    case("must be a number greater than 0", *with_option(MAP, "--resolution", "-10")),
    case("must be a finite number", *with_option(MAP, "--resolution", "nan")),
    case("is not a number", *with_option(MAP, "--resolution", "ten")),
    case("--lookback", *with_option(MAP, "--lookback", "0")),
    case("--s1-tolerance", *with_option(MAP, "--s1-tolerance", "-1")),
    case("is not HOST:PORT", *with_option(MAP, "--dashboard-address", "bogus")),
    case("127.0.0.1 only", *with_option(MAP, "--dashboard-address", "0.0.0.0:8787")),
    case("is not HOST:PORT", *with_option(MAP, "--dashboard-address", "127.0.0.1:99999")),
    case("W >= E", *with_option(MAP, "--bbox", "6,48,5,49")),
    case("bbox", *with_option(MAP, "--bbox", "5,48,6")),
    case("bbox", *with_option(MAP, "--bbox", "west,south,east,north")),
    case("bbox", *with_option(MAP, "--bbox", "5,95,6,96")),
    case("grid", *with_option(OLD, "--bbox", "20,60,21,61")),
    case("grid", *with_option(MAP, "--grid", "bogus")),
    case("differs from the grid", *with_option(OLD, "--grid", "utm32n")),
    case("not both", *MAP, "--grid", "utm32n", "--crs", "EPSG:32632"),
    case("coordinate reference system", *with_option(MAP, "--crs", "bogus")),
    case("unknown catalog", *with_option(MAP, "--catalog", "{new}-catalog")),
    case("without world.json", *with_option(MAP, "--catalog", "{empty}")),
    case("could not open the STAC API", *with_option(MAP, "--catalog", "http://127.0.0.1:9/api")),
    case("checkpoint", *with_option(MAP, "--model", "{new}.pt")),
    case("checkpoint", *with_option(MAP, "--model", "{file}")),
    case("is a file", *with_option(MAP, "--out", "{file}")),
    case("lies inside a file", *with_option(MAP, "--out", "{file}/lai.zarr")),
    case("cannot write", *with_option(MAP, "--out", "{unwritable}/lai.zarr")),
    case("not a lamap store", *with_option(MAP, "--out", "{folder}")),
    case("no input for 2099-01-01", *with_option(MAP, "--date", "2099-01-01")),
    case("no input for 1900-01-01", *with_option(MAP, "--date", "1900-01-01")),
    case("--lookback", *with_option(OLD, "--lookback", "1")),
    case("increase lookback_days", *with_option(OLD, "--lookback", "4")),
    case("cannot reach the Dask scheduler", *with_option(OLD, "--scheduler", "tcp://127.0.0.1:9")),
]

TRAIN = ("train", "--out", "{new}.pt", "--catalog", "{world}", "--preset", "cpu-demo")
TRAIN_CASES = [
    case("--preset 'bogus'", *with_option(TRAIN, "--preset", "bogus")),
    case("--epochs", *TRAIN, "--epochs", "-1"),
    case("0 epochs in every stage", *TRAIN, "--epochs", "0", "--epochs-pretrain", "0",
         "--epochs-sigma", "0"),
    case("must be a finite number", *TRAIN, "--cloudy-weight", "nan"),
    case("at least 0", *TRAIN, "--cloudy-weight", "-1"),
    case("is not a number", *TRAIN, "--cloudy-weight", "heavy"),
    case("is a folder", *with_option(TRAIN, "--out", "{folder}")),
    case("a file", *with_option(TRAIN, "--out", "{file}/model.pt")),
    case("cannot write", *with_option(TRAIN, "--out", "{unwritable}/model.pt")),
    case("no state file", *TRAIN, "--resume"),
    case("multiple of 4", *TRAIN, "--patch", "0"),
    case("multiple of 4", *TRAIN, "--patch", "10"),
    case("is a file", *TRAIN, "--cache", "{file}"),
    case("is not a date", *TRAIN, "--start", "2024-02-30"),
    case("'tpu' is not a device", *TRAIN, "--device", "tpu"),
    case("unknown catalog", *with_option(TRAIN, "--catalog", "{new}-catalog")),
    case("Missing option '--out'", "train", "--catalog", "{world}"),
    case("W >= E", *TRAIN, "--bbox", "6,48,5,49"),
]

EVALUATE_CASES = [
    case("Missing option '--model'", "evaluate", "--cache", "{new}.cache"),
    case("does not exist", "evaluate", "--model", "{new}.pt", "--cache", "{new}.cache"),
    case("is a folder", "evaluate", "--model", "{folder}", "--cache", "{new}.cache"),
    case("training cache", "evaluate", "--model", "{model}", "--cache", "{new}.cache"),
    case("--max-patches", "evaluate", "--model", "{model}", "--cache", "{empty}",
         "--max-patches", "0"),
    case("is a folder", "evaluate", "--model", "{model}", "--cache", "{empty}", "--csv",
         "{folder}"),
]

EXPORT_CASES = [
    case("no lamap store", "export", "{new}.zarr", "--out", "{new}.tif", "--date", DATE),
    case("no lamap store", "export", "{folder}", "--out", "{new}.tif", "--date", DATE),
    case("not in the store", "export", "{store}", "--out", "{new}.tif", "--date", "2024-05-01"),
    case("is not a date", "export", "{store}", "--out", "{new}.tif", "--date", "2024-04-31"),
    case("is a folder", "export", "{store}", "--out", "{folder}", "--date", DATE),
    case(".tif", "export", "{store}", "--out", "{new}.png", "--date", DATE),
    case("does not exist", "export", "{store}", "--out", "{new}/sub/lai.tif", "--date", DATE),
    case("a file", "export", "{store}", "--out", "{file}/lai.tif", "--date", DATE),
    case("bbox", "export", "{store}", "--out", "{new}.tif", "--date", DATE, "--bbox",
         "20,60,21,61"),
    case("--date is needed", "export", "{store}", "--out", "{new}.tif"),
    case("cannot write", "export", "{store}", "--out", "{unwritable}/lai.tif", "--date", DATE),
]

QUICKLOOK_CASES = [
    case("no lamap store", "quicklook", "{new}.zarr", "--out", "{new}.png", "--date", DATE),
    case("--max-size", "quicklook", "{store}", "--out", "{new}.png", "--date", DATE,
         "--max-size", "0"),
    case("is a folder", "quicklook", "{store}", "--out", "{folder}", "--date", DATE),
    case("not in the store", "quicklook", "{store}", "--out", "{new}.png", "--date",
         "2024-05-01"),
    case("W >= E", "quicklook", "{store}", "--out", "{new}.png", "--date", DATE, "--bbox",
         "6,48,5,49"),
]

INFO_CASES = [
    case("no lamap store", "info", "{new}.zarr"),
    case("no lamap store", "info", "{file}"),
    case("no lamap store", "info", "{folder}"),
    case("Missing argument 'store'", "info"),
]

DEMO_CASES = [
    case("multiple of 4", "demo", "--out", "{new}", "--size", "1023"),
    case("at least 64", "demo", "--out", "{new}", "--size", "32"),
    case("--days", "demo", "--out", "{new}", "--days", "3"),
    case("is a file", "demo", "--out", "{file}"),
    case("--seed", "demo", "--out", "{new}", "--seed", "-1"),
    case("is not a date", "demo", "--out", "{new}", "--start", "2024-02-30"),
    case("cannot write", "demo", "--out", "{unwritable}/world"),
]

SERVE_CASES = [
    case("no lamap world", "serve", "{new}"),
    case("no lamap world", "serve", "{empty}"),
    case("no lamap world", "serve", "{file}"),
]

OTHER_CASES = [
    case("No such command 'bogus'", "bogus"),
    case("No such option", "--nope"),
    case("--tiles", "bench", "--tiles", "0"),
    case("is not a list of whole numbers", "bench", "--plan-only", "--plan-tiles", "ten"),
    case("'gpu' is not a device", "bench", "--device", "gpu"),
    case("is a folder", "bench", "--plan-only", "--json", "{folder}"),
    case("--block", "bench", "--block", "10"),
]

ALL_CASES = (MAP_CASES + TRAIN_CASES + EVALUATE_CASES + EXPORT_CASES + QUICKLOOK_CASES
             + INFO_CASES + DEMO_CASES + SERVE_CASES + OTHER_CASES)  # fmt: skip


def test_the_suite_is_large_and_covers_every_command() -> None:
    assert len(ALL_CASES) >= 80
    commands = {param.values[0].args[0] for param in ALL_CASES}
    assert {"map", "train", "evaluate", "export", "quicklook", "info", "demo",
            "serve"} <= commands  # fmt: skip


@pytest.mark.parametrize("bad", ALL_CASES)
def test_a_mistake_is_one_line_exit_2_and_changes_nothing(
    bad: Case, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store = Path(env["store"])
    before = store_hash(store)
    args = [arg.format(**env) for arg in bad.args]
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("lamap: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert all(line.startswith("lamap: warning: ") for line in lines[:-1]), err
    assert "Traceback" not in err
    assert bad.says in errors[0], errors[0]
    assert store_hash(store) == before
    assert not list(Path(env["scratch"]).iterdir()), "a mistake created an output"
    assert Path(env["folder"], "notes.txt").read_text() == "keep me"


def pick(cases: list[Any], says: str) -> Any:
    return next(param for param in cases if param.values[0].says == says)


@pytest.mark.parametrize(
    "bad",
    [pick(MAP_CASES, "'2024-02-30' is not a date"), pick(MAP_CASES, "is a file"),
     pick(TRAIN_CASES, "must be a finite number"), pick(OTHER_CASES, "No such command 'bogus'")],
)
def test_the_command_as_a_process_prints_one_line(bad: Any, env: dict[str, str]) -> None:
    args = [arg.format(**env) for arg in bad.args]
    done = subprocess.run([sys.executable, "-m", "lamap.cli.main", *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("lamap: error: ") == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("lamap: error: ")


def test_a_creation_stopped_midway_resumes_with_the_same_command(
    env: dict[str, str], tmp_path: Path, grid: Grid, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A store whose creation stopped (no root zarr.json) is created by the same command."""
    import lamap.store.schema as schema

    out, grid_file = tmp_path / "lai.zarr", tmp_path / "grid.json"
    grid_file.write_text(json.dumps(grid.to_dict()))
    written, write = [], schema.write_atomic

    def stopping(*args: Any, **kwargs: Any) -> None:
        written.append(args[0])
        if len(written) == 4:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the creation
        write(*args, **kwargs)

    monkeypatch.setattr(schema, "write_atomic", stopping)
    command = ["map", "--bbox", BBOX, "--date", DATE, "--out", str(out), "--catalog",
               env["world"], "--model", env["model"], "--grid", str(grid_file), "--workers",
               "1", "--dashboard-address", "127.0.0.1:0"]  # fmt: skip
    try:
        main(command)
    except SystemExit as stop:
        assert stop.code == 130, capsys.readouterr()
    else:
        raise AssertionError(f"the run did not stop: {capsys.readouterr()} {written}")
    assert out.exists() and not (out / "zarr.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    main(command)  # the same command: no "no lamap store", no traceback
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "lamap: error" not in captured.err
    store = LaiStore.open(out)
    assert store.grid == grid and store.dates == [dt.date.fromisoformat(DATE)]
    assert store.done_tiles(DATE)
