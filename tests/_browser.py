"""Headless Chromium (Debian's package) driven through the DevTools protocol, for page tests.

No browser is downloaded: the test uses ``chromium`` from the system (``.ci/run`` installs
Debian's package). Every request the page makes is recorded, so a test can check that
nothing left 127.0.0.1.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from typing import Any

import websocket


def chromium_path() -> str:
    """Return the Debian chromium executable, or fail naming the package to install."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("no chromium: install Debian's package (apt-get install chromium)")
    return path


class Browser:
    """One headless Chromium with one page, driven over its DevTools WebSocket."""

    def __init__(self, width: int = 1024, height: int = 768) -> None:
        self._profile = tempfile.mkdtemp(prefix="lamap-chromium-")
        self._process = subprocess.Popen(
            [chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._ids = itertools.count(1)
        self.requests: list[str] = []
        try:
            self._ws = websocket.create_connection(self._page_socket(), timeout=60)
            self.send("Page.enable")
            self.send("Network.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _page_socket(self) -> str:
        assert self._process.stderr is not None
        deadline = time.monotonic() + 60
        for line in self._process.stderr:
            if line.startswith("DevTools listening on "):
                port = line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("chromium exited before it listened for DevTools")
        drain = threading.Thread(target=self._process.stderr.read, daemon=True)
        drain.start()  # a full stderr pipe would block the browser
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        return str(pages[0]["webSocketDebuggerUrl"])

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are recorded)."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """Return the value of a JavaScript expression (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate to ``url``."""
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Wait until a JavaScript expression is truthy; return its value."""
        deadline, problem = time.monotonic() + timeout, "stayed falsy"
        while time.monotonic() < deadline:
            try:  # the page may still be loading (no body yet)
                value = self.evaluate(expression)
            except RuntimeError as err:
                value, problem = None, str(err)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{expression!r} {problem} for {timeout} s")

    def screenshot(self) -> bytes:
        """Return a PNG of the viewport."""
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def click(self, x: float, y: float) -> None:
        """Click the left mouse button at a viewport point."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)  # fmt: skip

    def close(self) -> None:
        """Close the page's socket and the browser, and remove its profile."""
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
