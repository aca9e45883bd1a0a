"""Tests for lamap.runtime.atomic: the one atomic writer, local and fsspec."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import fsspec
import numpy as np
import pytest

from lamap.errors import InputError
from lamap.runtime import atomic_path, write_atomic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh folder on fsspec's in-memory file system, removed afterwards."""
    root = f"memory://atomic-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- local files


def test_bytes_and_callbacks_replace_the_file(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    write_atomic(target, b"old")
    assert target.read_bytes() == b"old"
    write_atomic(str(target), lambda stream: stream.write(b"new"))
    assert target.read_bytes() == b"new"
    write_atomic(target, lambda stream: np.save(stream, np.arange(3)))
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert leftovers(tmp_path) == []


def test_new_files_get_the_permissions_open_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    write_atomic(tmp_path / "atomic", b"x")
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == stat.S_IMODE(
        plain.stat().st_mode
    )


def test_an_exception_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"the old checkpoint")

    def crash(stream: IO[bytes]) -> None:
        stream.write(b"half of the new one")
        stream.flush()
        raise RuntimeError("out of memory while serialising")

    with pytest.raises(RuntimeError, match="out of memory"):
        write_atomic(target, crash)
    assert target.read_bytes() == b"the old checkpoint"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    target.write_bytes(b"complete old state")
    script = (
        "import os, signal, sys\n"
        "from lamap.runtime import write_atomic\n"
        "def die(stream):\n"
        "    stream.write(b'partial new state')\n"
        "    stream.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "write_atomic(sys.argv[1], die)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script, str(target)], env=env, timeout=120, check=False
    )
    assert result.returncode == -9
    assert target.read_bytes() == b"complete old state"
    stray = leftovers(tmp_path)  # a killed process cannot clean up; the target is intact
    assert all(name.startswith(".state.pt.") for name in stray)


def test_the_file_is_synced_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(descriptor: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync")
        fsync(descriptor)

    def recording_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("replace")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    write_atomic(tmp_path / "marker.json", b"{}")
    expected = ["fsync", "replace", "fsync folder"] if os.name == "posix" else ["replace"]
    assert events == expected


def test_missing_folders_are_refused_or_made(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "marker.json"
    with pytest.raises(FileNotFoundError, match="create it first") as info:
        write_atomic(deep, b"x")
    assert info.value.filename == str(deep.parent)
    assert not (tmp_path / "a").exists()
    write_atomic(deep, b"x", make_dirs=True)
    assert deep.read_bytes() == b"x"


def test_wrong_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="give bytes or a callback"):
        write_atomic(tmp_path / "x", "text, not bytes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="either fs or storage_options"):
        write_atomic("x", b"x", fs=fsspec.filesystem("memory"), storage_options={"a": 1})
    assert leftovers(tmp_path) == []


def test_atomic_path_publishes_what_a_named_writer_wrote(tmp_path: Path) -> None:
    target = tmp_path / "image.tif"
    target.write_bytes(b"old image")
    with pytest.raises(OSError, match="GDAL failed"), atomic_path(target) as temporary:
        temporary.write_bytes(b"half an image")
        raise OSError("GDAL failed")
    assert target.read_bytes() == b"old image" and leftovers(tmp_path) == []
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and not temporary.exists()
        temporary.write_bytes(b"new image")
        assert target.read_bytes() == b"old image"  # nothing visible before the end
    assert target.read_bytes() == b"new image" and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- fsspec


def test_memory_targets_are_written_in_one_put(memory_root: str) -> None:
    target = f"{memory_root}/done/2024-06-15/r0000c0000.json"
    write_atomic(target, b'{"tile": 1}')
    with fsspec.open(target, "rb") as handle:
        assert handle.read() == b'{"tile": 1}'
    write_atomic(target, lambda stream: stream.write(b'{"tile": 2}'))
    fs = fsspec.filesystem("memory")
    assert fs.cat_file(target) == b'{"tile": 2}'
    write_atomic(target.removeprefix("memory://"), b"via fs", fs=fs)
    assert fs.cat_file(target) == b"via fs"


def test_a_failing_callback_writes_no_object(memory_root: str) -> None:
    target = f"{memory_root}/model.pt"
    write_atomic(target, b"old object")

    def crash(stream: IO[bytes]) -> None:
        stream.write(b"partial")
        raise RuntimeError("serialisation failed")

    with pytest.raises(RuntimeError, match="serialisation failed"):
        write_atomic(target, crash)
    with pytest.raises(RuntimeError):
        write_atomic(f"{memory_root}/fresh.pt", crash)
    fs = fsspec.filesystem("memory")
    assert fs.cat_file(target) == b"old object"
    assert not fs.exists(f"{memory_root}/fresh.pt")
