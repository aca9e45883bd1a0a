"""Shared test fixtures: the test data in tests/data, tiny seeded worlds, a local STAC API."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"
"""Files the tests read, kept in the repository (tests/data/PROVENANCE.md says whence)."""
FIXTURES = DATA / "stac"
"""Real STAC items and search pages from Planetary Computer and Earth Search."""
REFERENCE = DATA / "reference"
"""Reference values the code must reproduce (the SNAP LAI network's test vectors)."""


TINY_WORLD = {"seed": 7, "size": 192, "days": 30}


def _forbid_reads_under(folder: str) -> None:
    """Make any open or listing of a path under ``folder`` fail in this process.

    ``.ci/run`` names the checkout's ``../shared`` in ``LAMAP_TEST_FORBIDDEN_DIR``, so a test
    that still reads data from outside the repository fails there instead of passing by luck.
    """
    root = os.path.realpath(folder)

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event not in ("open", "os.listdir", "os.scandir") or not args:
            return
        if not isinstance(args[0], str | bytes | os.PathLike):
            return  # a file descriptor, or None (the current folder)
        path = os.path.abspath(os.fsdecode(args[0]))
        if path == root or path.startswith(root + os.sep):
            raise PermissionError(
                f"a test read {path}, outside the repository; test data belongs in tests/data"
            )

    sys.addaudithook(audit)


if os.environ.get("LAMAP_TEST_FORBIDDEN_DIR"):
    _forbid_reads_under(os.environ["LAMAP_TEST_FORBIDDEN_DIR"])


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small seeded world (two UTM zones, 6 S2 and 5 S1 dates), generated once."""
    from lamap.synthetic.world import WorldSpec, generate_world

    return generate_world(tmp_path_factory.mktemp("tiny") / "world", WorldSpec(**TINY_WORLD))


@pytest.fixture(scope="session")
def tiny_api(tiny_world):  # type: ignore[no-untyped-def]
    """The tiny world's STAC API on 127.0.0.1 (rustac serve), for the whole session."""
    from lamap.catalog.server import StacServer

    with StacServer(tiny_world.item_paths, collections=tiny_world.collection_paths) as server:
        yield server


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained checkpoint of the tiny network (fast, same receptive field).

    Not residual: the legacy per-tile graph and the block engine read the tile's halo
    rows through different windows, where 1e-4 px warp differences flip uint16 rounding
    (up to 0.03 LAI/5 after SNAP); an untrained residual network would pass them straight
    to its output and the seam tests compare outputs to 5e-3. The residual output has its
    own tests (test_model).
    """
    from dataclasses import replace

    from lamap.features import FeatureSpec
    from lamap.model import ModelConfig, save_checkpoint, seeded_model

    path = tmp_path_factory.mktemp("model") / "seeded.pt"
    config = replace(ModelConfig.tiny(), residual=False)
    save_checkpoint(path, seeded_model(0, config), feature_spec=FeatureSpec().to_dict())
    return path


@pytest.fixture(scope="session")
def grid(tiny_world):  # type: ignore[no-untyped-def]
    """A small EPSG:3035 grid over the tiny world: 128-px chunks and shards, 256-px tiles."""
    from lamap.grid import Grid

    return Grid.from_bbox(tiny_world.bbox, crs="EPSG:3035", chunk=128, shard=128, tile=256)


def _atomic_moto_server() -> type:
    """moto's threaded server, answering conditional requests one at a time.

    moto 5.2.5 checks a conditional PutObject or DeleteObject (``If-None-Match: *``,
    ``If-Match``) and then stores or deletes the object in a separate step, with no lock:
    two concurrent requests can both pass the check. S3 evaluates the condition and writes
    atomically; answering conditional requests one at a time gives moto the same guarantee
    for objects that are only ever written conditionally (lamap's leases).
    """
    import threading

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    conditional = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH")

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

            def one_at_a_time(environ: Any, start_response: Any) -> Any:
                if not any(key in environ for key in conditional):
                    return app(environ, start_response)
                with lock:
                    return list(app(environ, start_response))

            self._server = make_server(
                self._ip_address, self._port, one_at_a_time, True,
                request_handler=MotoRequestHandler,
            )  # fmt: skip
            self._server_ready_event.set()
            self._server.serve_forever()

    return Server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on 127.0.0.1 (moto's server), for the session; yields its URL.

    The process environment points every AWS client at it (``AWS_ENDPOINT_URL`` and test
    credentials), so ``s3://bucket/...`` works in this process and in Dask workers started
    after this fixture. Make a fresh bucket per test with :func:`new_bucket`.
    """
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = _atomic_moto_server()(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    patch = pytest.MonkeyPatch()
    for name, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        patch.setenv(name, value)
    try:
        yield url
    finally:
        patch.undo()
        server.stop()


def new_bucket(endpoint: str) -> str:
    """Create a bucket with a fresh name on the loopback S3 API; return its name."""
    import uuid

    import s3fs

    name = f"lamap-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}).mkdir(name)
    return name
