"""The chat page in a real browser: headless Chromium, driven over the DevTools Protocol.

The family's /chat is course material that a student opens in a browser, so a test that
only speaks WebSocket from Python would miss the half that matters: the page's script,
its ``ws://`` URL built from ``location``, the DOM it writes. Here two tabs open the page
served by our asgi era, one sends a line with the page's own form, and both must show it.
A third tab opens the page from the wsgi era and must say why there is no room.

Chromium is driven with nothing but the ``websockets`` client: the Chrome DevTools
Protocol is JSON over a WebSocket, ``{"id", "method", "params"}`` out, ``{"id", "result"}``
back, with events interleaved. One connection to the browser drives every tab through
"flat" sessions (``Target.attachToTarget`` with ``flatten``: each command names its tab's
``sessionId``). Chromium runs in its own process group, which is killed whole at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from servers.launch import ServerProcess, our_server_argv, pids_in_groups
from tests.conftest import ServerPool
from tests.peers import require_program

# Generous: two cores shared with other test workers, and a browser is a heavy program.
START_TIMEOUT = 60.0
DOM_TIMEOUT = 30.0
NO_WEBSOCKETS = "This era cannot host WebSockets; run the asgi era (python -m servers asgi)."


class CDPError(Exception):
    """The browser answered a command with an error (a tab still loading, for one)."""


class DevTools:
    """A minimal Chrome DevTools Protocol client over one WebSocket to the browser."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = iter(range(1, 1 << 31))

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer, skipping the events in between."""
        command: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        self.ws.send(json.dumps(command))
        deadline = time.monotonic() + DOM_TIMEOUT
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == command["id"]:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    def open_tab(self, url: str) -> str:
        """A new tab on ``url``; returns the session that drives it."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        session: str = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        """The value of a JavaScript expression in the tab (JSON-serializable values only)."""
        result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, check: Callable[[Any], bool]) -> Any:
        """Evaluate ``expression`` until ``check`` accepts its value, or fail with the last.
        Errors count as "not yet": a tab that is still loading has no page to look at."""
        deadline = time.monotonic() + DOM_TIMEOUT
        while True:
            try:
                value = self.evaluate(session, expression)
            except CDPError as error:
                value = error
            else:
                if check(value):
                    return value
            if time.monotonic() > deadline:
                pytest.fail(f"{expression!r} is still {value!r} after {DOM_TIMEOUT} s")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    chromium = require_program("chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = profile.parent / "chromium.log"
    argv = [
        chromium,
        "--headless=new",
        "--no-sandbox",  # the tests may run as root, where the sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        "--no-first-run",
        "--disable-background-networking",
        "--disable-extensions",
        "--remote-debugging-port=0",  # the kernel picks; Chromium writes it down (below)
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    with log.open("wb") as output:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole below
        )  # fmt: skip
    try:
        # DevToolsActivePort: the port on line 1, the browser target's path on line 2.
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while len(lines := _read_lines(port_file)) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        url = f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        with connect(url, proxy=None, open_timeout=30, max_size=None) as ws:
            yield DevTools(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the browser and every helper it forked
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while (left := pids_in_groups(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"chromium processes left behind: {left}"


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    pool = ServerPool()
    try:
        yield {era: pool(our_server_argv(era), name=era) for era in ("asgi", "wsgi")}
    finally:
        pool.stop_all()


STATE = "document.getElementById('state').textContent"
# Each line of the log as [text, class], the class saying whose it is.
LOG = "Array.from(document.querySelectorAll('#log li'), (li) => [li.textContent, li.className])"


def _member_number(state: str) -> int:
    return int(state.removeprefix("Connected as member ").rstrip("."))


def test_two_tabs_chat_through_the_page(
    browser: DevTools, servers: dict[str, ServerProcess]
) -> None:
    url = servers["asgi"].url + "chat"
    tab_a, tab_b = browser.open_tab(url), browser.open_tab(url)
    connected = "Connected as member "
    a = _member_number(browser.wait_for(tab_a, STATE, lambda s: str(s).startswith(connected)))
    b = _member_number(browser.wait_for(tab_b, STATE, lambda s: str(s).startswith(connected)))
    assert a != b
    # Both are in the room before anything is said: the tab that joined first (the lower
    # number; the two tabs load at once, so either may) heard the other come in.
    earlier, later = (tab_a, b) if a < b else (tab_b, a)
    browser.wait_for(earlier, LOG, lambda log: [f"member {later} joined (2 here)", "notice"] in log)

    # Typed and sent with the page's own form, as a person would.
    line = "hello from tab A: <b>not bold</b> & caf\u00e9"
    sent = browser.evaluate(
        tab_a,
        f"document.getElementById('text').value = {json.dumps(line)};"
        " document.getElementById('send').click();"
        " document.getElementById('text').value",
    )
    assert sent == ""  # the form cleared its input: the message went out
    said = f"member {a}: {line}"
    # The room sent it to both, and each page shows it as text (no markup was made).
    browser.wait_for(tab_b, LOG, lambda log: [said, "theirs"] in log)
    browser.wait_for(tab_a, LOG, lambda log: [said, "mine"] in log)
    assert browser.evaluate(tab_b, "document.querySelectorAll('#log b').length") == 0

    # The page refuses an oversized line itself, before the server would close (1009).
    browser.evaluate(
        tab_a,
        "document.getElementById('text').value = 'x'.repeat(1025);"
        " document.getElementById('send').click();",
    )
    refused = "Not sent: a message holds at most 1024 bytes."
    browser.wait_for(tab_a, LOG, lambda log: [refused, "notice"] in log)
    assert browser.evaluate(tab_a, "document.getElementById('text').disabled") is False

    # Tab B goes away; A hears it leave.
    browser.call("Page.close", tab_b)
    browser.wait_for(tab_a, LOG, lambda log: [f"member {b} left (1 here)", "notice"] in log)
    browser.call("Page.close", tab_a)


def test_the_page_under_wsgi_says_to_run_the_asgi_era(
    browser: DevTools, servers: dict[str, ServerProcess]
) -> None:
    tab = browser.open_tab(servers["wsgi"].url + "chat")
    assert browser.wait_for(tab, STATE, lambda state: state == NO_WEBSOCKETS) == NO_WEBSOCKETS
    assert browser.evaluate(tab, "document.getElementById('text').disabled") is True
    browser.call("Page.close", tab)
