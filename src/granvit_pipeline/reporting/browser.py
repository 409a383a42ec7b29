"""Open an HTML file in headless Chromium, collect its console errors and take a screenshot.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON), so it needs no port and no websocket library, and it sees every console
message with its level: with ``--enable-logging=stderr`` Chromium logs all console messages of
an ordinary page at level INFO, so ``console.error`` could not be told from ``console.log``.

Errors collected: ``console.error``/``console.assert`` calls, uncaught exceptions, and
browser log entries of level ``error`` (e.g. a resource that failed to load).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ENV_BROWSER = "GRANVIT_CHROMIUM"  # an explicit browser binary wins over the PATH search
WINDOW = (1280, 2000)


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer in time."""


@dataclass
class PageResult:
    """What a page did when opened: its console errors and a PNG screenshot of the viewport."""

    screenshot: bytes
    console_errors: list[str] = field(default_factory=list)
    console_messages: list[str] = field(default_factory=list)  # every level, for debugging


def find_chromium() -> str | None:
    """The Chromium binary: ``$GRANVIT_CHROMIUM``, else the first of :data:`CANDIDATES` on
    the PATH; None when there is none (``make browser`` installs Debian's ``chromium``)."""
    explicit = os.environ.get(ENV_BROWSER)
    if explicit:
        return shutil.which(explicit)
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class _Pipe:
    """The DevTools protocol over Chromium's debugging pipe (one request at a time)."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise BrowserError("Chromium closed the debugging pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and return its result; events read meanwhile go to ``events``."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(index)
        while True:
            event = self._read_message()
            if event.get("method") == method:
                return event
            self.events.append(event)


def _describe(event: dict[str, Any]) -> tuple[str, str] | None:
    """(level, text) of a console-like event, None for other events."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled":
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        level = "error" if params.get("type") in ("error", "assert") else params.get("type", "")
        return level, f"console.{params.get('type')}: {text}"
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        text = details.get("exception", {}).get("description") or details.get("text", "")
        return "error", f"Uncaught {text}"
    if method == "Log.entryAdded":
        entry = params.get("entry", {})
        text = f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
        return entry.get("level", ""), text.strip()
    return None


def _command(binary: str, profile: str, window: tuple[int, int]) -> list[str]:
    return [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
        f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
        "--remote-debugging-pipe", "about:blank",
    ]  # fmt: skip


def open_page(
    html_path: str | Path,
    binary: str | None = None,
    window: tuple[int, int] = WINDOW,
    timeout_s: float = 60.0,
) -> PageResult:
    """Load ``html_path`` in a fresh headless Chromium and screenshot the viewport
    (``window``: width, height in CSS pixels)."""
    binary = binary or find_chromium()
    if binary is None:
        raise BrowserError("no Chromium found: `make browser` installs Debian's chromium")
    url = Path(html_path).resolve().as_uri()
    to_child, from_us = os.pipe()  # the browser reads commands on fd 3
    to_us, from_child = os.pipe()  # and writes replies on fd 4
    with (
        tempfile.TemporaryDirectory(prefix="granvit-chromium-") as profile,
        open(Path(profile) / "stderr.log", "wb") as stderr,  # a file: a full pipe would block
    ):
        # bash only renumbers the pipe ends to 3 and 4, then becomes the browser (exec).
        wrapper = ["bash", "-c", f'exec "$0" "$@" 3<&{to_child} 4>&{from_child}']
        proc = subprocess.Popen(
            wrapper + _command(binary, profile, window), pass_fds=(to_child, from_child),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
        os.close(to_child)
        os.close(from_child)
        pipe = _Pipe(from_us, to_us, time.monotonic() + timeout_s)
        try:
            return _load_and_capture(pipe, url, window)
        except BrowserError as err:
            log = (Path(profile) / "stderr.log").read_text(errors="replace")[-2000:]
            raise BrowserError(f"{err}; Chromium's stderr ends with:\n{log}") from err
        finally:
            _close(pipe, proc)
            os.close(from_us)
            os.close(to_us)


def _load_and_capture(pipe: _Pipe, url: str, window: tuple[int, int]) -> PageResult:
    target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})
    sid = session["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        pipe.send(f"{domain}.enable", session=sid)
    # --window-size includes the (invisible) browser frame; the viewport is what we want.
    metrics = {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False}
    pipe.send("Emulation.setDeviceMetricsOverride", metrics, session=sid)
    pipe.events.clear()  # about:blank's own events
    pipe.send("Page.navigate", {"url": url}, session=sid)
    pipe.wait_event("Page.loadEventFired")
    # One round trip after the load, so late console messages have arrived.
    pipe.send("Runtime.evaluate", {"expression": "document.readyState"}, session=sid)
    shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=sid)
    messages = [d for e in pipe.events if (d := _describe(e)) is not None]
    return PageResult(
        screenshot=base64.b64decode(shot["data"]),
        console_errors=[text for level, text in messages if level == "error"],
        console_messages=[f"{level}: {text}" for level, text in messages],
    )


def _close(pipe: _Pipe, proc: subprocess.Popen) -> None:
    try:
        pipe.deadline = time.monotonic() + 5
        pipe.send("Browser.close")
    except (BrowserError, OSError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Its own session and group: helpers (zygote, renderer) that outlive the browser go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
