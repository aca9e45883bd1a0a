"""A store on object storage: ``lamap map --out s3://…`` against a real S3 API on loopback.

The S3 API is moto's server on 127.0.0.1 (the ``s3_endpoint`` fixture); the local Dask
workers inherit its address and test credentials from the environment. Nothing leaves the
machine.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import s3fs
import xarray as xr

from lamap.cli.main import main as cli
from lamap.grid import Grid
from lamap.store import LaiStore
from lamap.synthetic.world import World
from tests.conftest import new_bucket
from tests.oracles.validate import validate_stac

DATE = "2024-04-28"
# rioxarray's own use of affine (not lamap's), in the COG export
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use `@` matmul instead of `\\*` mul:PendingDeprecationWarning"
)


def _bbox(world: World) -> str:
    west, south, east, north = world.bbox
    return f"{west},{south},{west + 0.4 * (east - west)},{north}"


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_map_into_s3_reopen_and_rerun(
    s3_endpoint: str, tiny_world: World, model: Path, grid: Grid, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    bucket = new_bucket(s3_endpoint)
    url = f"s3://{bucket}/maps/lai.zarr"
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps(grid.to_dict()))
    args = ["map", "--catalog", str(tiny_world.root), "--bbox", _bbox(tiny_world), "--date",
            DATE, "--out", url, "--model", str(model), "--grid", str(grid_file),
            "--workers", "2", "--device", "cpu"]  # fmt: skip
    with socket.socket() as busy:  # a second cluster's dashboard already on the port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cli([*args, "--dashboard-address", f"127.0.0.1:{busy.getsockname()[1]}"])
    out, err = capsys.readouterr()
    assert "2 tiles mapped, 0 already done" in out
    assert "Perhaps you already have a cluster running" not in err, err
    busy_lines = [line for line in _lines(err) if "dashboard port" in line]
    assert len(busy_lines) == 1 and busy_lines[0].startswith("lamap: warning: dashboard port")

    ds = xr.open_zarr(url)  # s3fs, the endpoint from the environment
    assert [str(t)[:10] for t in ds.time.values] == [DATE]
    assert int(np.isfinite(ds["lai"].values).sum()) > 10_000
    assert LaiStore.open(url).done_tiles(DATE) == ["r0000c0000", "r0001c0000"]

    cli(args)  # the rerun skips the tiles done
    assert "0 tiles mapped, 2 already done" in capsys.readouterr().out

    collection = json.loads(s3fs.S3FileSystem().cat_file(f"{bucket}/maps/lai.collection.json"))
    validate_stac(collection)
    assert collection["assets"]["zarr"]["href"] == "./lai.zarr"
    cli(["info", url])
    cli(["export", url, "--out", str(tmp_path / "lai.tif"), "--date", DATE])
    printed = capsys.readouterr().out
    assert f"lamap store {url}" in printed and "2 of 4 tiles done" in printed
    assert (tmp_path / "lai.tif").exists() and (tmp_path / "lai.json").exists()


@pytest.mark.parametrize(("url", "extra"), [("gs://bucket/lai.zarr", "gcs"),
                                            ("az://container/lai.zarr", "az")])  # fmt: skip
def test_a_missing_cloud_file_system_is_one_line_naming_the_extra(
    url: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = importlib.import_module("fsspec.registry")._registry  # imported classes
    for package in ("gcsfs", "adlfs"):  # as on a machine without lamap[gcs] / lamap[az]
        monkeypatch.setitem(sys.modules, package, None)
    for protocol in ("gs", "gcs", "az", "abfs"):
        monkeypatch.delitem(registry, protocol, raising=False)
    for command in (["info", url], ["map", "--bbox", "6,48,6.1,48.1", "--date", DATE,
                                    "--out", url, "--catalog", "nowhere"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            cli(command)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert _lines(err) == [
            f'lamap: error: {url}: no file system for {url.split(":")[0]}:// is installed; '
            f'pip install "lamap[{extra}]"'
        ], err
