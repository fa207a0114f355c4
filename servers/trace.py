"""The wire tracer: one format for what every era's server sees and says.

With ``--trace``, each server prints every byte that crosses its socket and every
interface event it exchanges with the application, one line per item::

    12:00:01.234 c1 * open 127.0.0.1:53122
    12:00:01.235 c1 < GET /hello HTTP/1.1
    12:00:01.235 c1 < Host: 127.0.0.1:8000
    12:00:01.235 c1 <
    12:00:01.236 c1 < [wsgi] environ REQUEST_METHOD='GET' PATH_INFO='/hello' ...
    12:00:01.236 c1 > [wsgi] start_response '200 OK' [('Content-Type', 'text/plain')]
    12:00:01.237 c1 > HTTP/1.1 200 OK
    12:00:01.237 c1 > <14 bytes>
    12:00:01.240 c1 * close (client closed)

Rules, so that traces of the four eras can be read side by side:

* ``<`` is what comes **in** (from the client, or passed on towards the application) and
  ``>`` what goes **out** (from the application, or to the client). ``*`` marks the
  server's own doings: a connection opened or closed, a fork, a thread picked.
* Every line carries the connection id ``cN``, because under load lines of many
  connections interleave.
* Message heads are shown line by line; bodies are shown as ``<N bytes>`` unless short
  and printable. Client bytes are escaped before printing: a request must never be able
  to write terminal escape codes into an operator's screen (uvicorn CVE-2020-7694).
* On a terminal the directions are coloured with rich; otherwise (a pipe, a log file, a
  test) the same text is printed plain.

The tracer costs nothing when off: every method returns at once if ``enabled`` is false,
and servers may also test ``tracer.enabled`` before building an expensive detail string.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
from typing import TextIO

from rich.console import Console
from rich.text import Text

__all__ = ["Tracer", "escape", "next_connection_id", "show_bytes"]

_connection_ids = itertools.count(1)

# Bodies longer than this are summarised as <N bytes>.
BODY_PREVIEW = 64
# A head starts with a request line or a status line; anything else after a head is body.
_START = rb"(?:[A-Z][A-Z0-9_\-]* [\x21-\x7e]+ HTTP/\d\.\d\r\n|HTTP/\d\.\d \d{3}[ \r])"
_START_LINE = re.compile(_START)
# Pipelined bytes: the next head may follow a body directly, with no separator at all.
_NEXT_START = re.compile(rb"(?=" + _START + rb")")
_PRINTABLE = re.compile(rb"[\x20-\x7e\t\r\n]*")

_STYLES = {"<": "cyan", ">": "green", "*": "yellow"}


def next_connection_id() -> int:
    """A process-wide connection counter (atomic enough: itertools.count under the GIL)."""
    return next(_connection_ids)


def escape(data: bytes) -> str:
    """Bytes as printable text: anything outside printable ASCII is shown as an escape."""
    return repr(data)[2:-1]


def show_bytes(data: bytes, preview: int = BODY_PREVIEW) -> str:
    """Short printable data as escaped text, anything else as ``<N bytes>``."""
    if len(data) <= preview and _PRINTABLE.fullmatch(data):
        return escape(data)
    return f"<{len(data)} bytes>"


class Tracer:
    """Prints trace lines for one server process. Thread-safe; cheap when disabled."""

    def __init__(
        self,
        enabled: bool = False,
        stream: TextIO | None = None,
        color: bool | None = None,
        prefix: str = "",
    ) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.prefix = prefix  # e.g. "pid 4242 " for forking servers
        # Colour only on a real terminal, unless asked: a server's stderr is often a pipe
        # or a log file read by a lesson or a notebook, and FORCE_COLOR in the environment
        # (Jupyter sets it) must not put escape codes into those.
        if color is None:
            color = self.stream.isatty()
        self._console = Console(
            file=self.stream,
            highlight=False,
            soft_wrap=True,
            no_color=not color,
            force_terminal=color,
        )
        self._lock = threading.Lock()
        # Per (connection, direction): True while inside a message head.
        self._in_head: dict[tuple[int, str], bool] = {}

    # -- raw bytes on the socket -----------------------------------------------------------
    def wire(self, conn: int, direction: str, data: bytes) -> None:
        """Bytes received (``<``) or sent (``>``) on connection ``conn``, shown as HTTP:
        head lines one by one, then the body (up to a pipelined next head) in one line."""
        if not self.enabled:
            return
        lines: list[str] = []
        key = (conn, direction)
        in_head = self._in_head.get(key, True)  # a connection starts with a head
        pos = 0
        while pos < len(data):
            if not in_head:
                head = _next_head(data, pos)
                if head > pos:
                    lines.append(show_bytes(data[pos:head]))
                pos, in_head = head, head < len(data)
                continue
            end = data.find(b"\r\n", pos)
            if end == -1:  # a head split across two reads: show what we have
                lines.append(escape(data[pos:]))
                break
            line = data[pos:end]
            lines.append(escape(line))
            pos = end + 2
            if not line:  # the blank line ends the head
                in_head = False
        self._in_head[key] = in_head
        self._emit(conn, direction, lines)

    # -- interface events and the server's own doings -----------------------------------------
    def event(self, conn: int, direction: str, label: str, detail: str = "") -> None:
        """An interface event: ``event(3, "<", "wsgi", "environ ...")`` -> ``c3 < [wsgi] ...``."""
        if not self.enabled:
            return
        self._emit(conn, direction, [f"[{label}] {detail}".rstrip()])

    def note(self, conn: int, text: str) -> None:
        """The server's own doings: ``note(3, "fork pid 4243")`` -> ``c3 * fork pid 4243``."""
        if not self.enabled:
            return
        self._emit(conn, "*", [text])

    def closed(self, conn: int, reason: str = "") -> None:
        if not self.enabled:
            return
        self._in_head.pop((conn, "<"), None)
        self._in_head.pop((conn, ">"), None)
        self._emit(conn, "*", [f"close {reason}".rstrip()])

    def _emit(self, conn: int, direction: str, lines: list[str]) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        style = _STYLES.get(direction, "")
        with self._lock:
            for line in lines:
                text = Text(f"{stamp} {self.prefix}c{conn} ", style="dim")
                text.append(f"{direction} {line}".rstrip(), style=style)
                self._console.print(text)


def _next_head(data: bytes, pos: int) -> int:
    """Where the next message head starts in ``data`` at or after ``pos`` (len if nowhere)."""
    if _START_LINE.match(data, pos):
        return pos
    match = _NEXT_START.search(data, pos)
    return match.start() if match else len(data)
