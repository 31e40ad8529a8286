"""Open a report in a real headless Chromium and watch it as a person's browser would.

Used by the browser test, `docs/screenshot.py` and the report benchmark (it needs the
`websockets` package of the `test` extra and Debian's `chromium`: `make browser`). It
speaks the Chrome DevTools protocol over one websocket and records what the page did:
console errors, uncaught exceptions, every request it made, and how long it took to load.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass
class PageVisit:
    """What one page load did."""

    url: str
    load_seconds: float
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


class Browser:
    """A private headless Chromium (own profile, own process group), closed on exit."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0):
        self.width, self.height, self.timeout = width, height, timeout
        self.next_id = 0
        self.events: list[dict] = []

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium not found; `make browser` installs it")
        self.profile = tempfile.mkdtemp(prefix="synque-chromium-")
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # Entered as a context manager, as websockets ≥ 17.1 requires; closed in __exit__.
        self.socket = connect(self._devtools_url(), max_size=None, open_timeout=self.timeout).__enter__()
        return self

    def _devtools_url(self) -> str:
        """Chromium writes its port and browser path to DevToolsActivePort once it listens."""
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            lines = marker.read_text().split("\n") if marker.exists() else []
            if len(lines) >= 2 and lines[1]:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise RuntimeError("chromium did not open its DevTools port in time")

    def __exit__(self, *exc) -> None:
        self.socket.close()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group this object started
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command; events that arrive meanwhile are kept in `self.events`."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv(timeout=self.timeout))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _wait_for(self, method: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def open(self, path: Path) -> tuple[str, PageVisit]:
        """Load a local file in a new tab; returns (session, what the load did)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.call(domain, session)
        self.call("Emulation.setDeviceMetricsOverride", session, width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        self.events.clear()
        url = Path(path).resolve().as_uri()
        started = time.perf_counter()
        self.call("Page.navigate", session, url=url)
        self._wait_for("Page.loadEventFired")
        visit = PageVisit(url, time.perf_counter() - started)
        self.evaluate(session, "1")  # let events queued during the load arrive
        for event in self.events:
            visit.requests += _request(event)
            visit.console_errors += _console_error(event)
        return session, visit

    def evaluate(self, session: str, expression: str):
        result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, session: str, target: Path, full_page: bool = False) -> Path:
        """A PNG of the viewport, or of the whole page."""
        params: dict = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session)["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = self.call("Page.captureScreenshot", session, **params)["data"]
        Path(target).write_bytes(base64.b64decode(data))
        return Path(target)


def _request(event: dict) -> list[str]:
    if event.get("method") != "Network.requestWillBeSent":
        return []
    return [event["params"]["request"]["url"]]


def _console_error(event: dict) -> list[str]:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return [" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))]
    if method == "Runtime.exceptionThrown":
        return [params["exceptionDetails"].get("text", "exception")]
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        return [params["entry"].get("text", "")]
    return []
