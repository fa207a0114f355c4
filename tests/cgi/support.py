"""What the CGI tests share: script roots built in a temporary directory, raw HTTP on a
socket, and a few views of /proc.

Each test module spells out the scripts it needs, next to the tests that use them (a
script is a few lines of sh or Python, and reading it is reading the test), builds a root
from them with :func:`make_root`, and starts the era on it with :func:`start_cgi`.

Raw sockets, not httpx, wherever the bytes on the wire are the point (NPH, HEAD, framing)
or where a client library would "fix" the request first (httpx removes ``/../``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from servers.launch import ServerProcess, our_server_argv
from tests.conftest import ServerPool

# Test scripts in Python run on the venv's interpreter by absolute path: no PATH lookup.
PYTHON = f"#!{sys.executable}\n"
SH = "#!/bin/sh\n"

# A Python script that reports what it was given, as JSON: the environment exactly as
# execve passed it (/proc/self/environ; os.environ would show Python's own LC_CTYPE), its
# argv, working directory, open descriptors, process group and the body from stdin.
DUMP = (
    PYTHON
    + r"""
import json, os, sys
with open("/proc/self/environ", "rb") as f:
    env = dict(e.decode("latin-1").partition("=")[::2] for e in f.read().split(b"\0") if e)
fds = {}
for name in os.listdir("/proc/self/fd"):
    try:
        fds[name] = os.readlink(f"/proc/self/fd/{name}")
    except OSError:
        pass  # the descriptor listdir itself used, closed by now
body, left = b"", int(os.environ.get("CONTENT_LENGTH") or 0)
while left > 0 and (piece := os.read(0, left)):
    body, left = body + piece, left - len(piece)
report = {"env": env, "argv": sys.argv, "cwd": os.getcwd(), "fds": fds, "pid": os.getpid(),
          "pgid": os.getpgid(0), "stdin": body.decode("latin-1")}
sys.stdout.buffer.write(b"Content-Type: application/json\n\n" + json.dumps(report).encode())
"""
)


def make_root(base: Path, scripts: Mapping[str, str], mode: int = 0o755) -> Path:
    """Write ``scripts`` (relative path -> text) under ``base/root``; return the root."""
    root = base / "root"
    for name, text in scripts.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    return root


def start_cgi(pool: ServerPool, root: Path, *options: str) -> ServerProcess:
    return pool(our_server_argv("cgi", "--root", str(root), *options), name="cgi")


# -- raw HTTP -------------------------------------------------------------------------------
def connect(server: ServerProcess, timeout: float = 10) -> socket.socket:
    return socket.create_connection(server.address, timeout=timeout)


def exchange(server: ServerProcess, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data``, then read until the server closes: every byte it answered."""
    with connect(server, timeout) as sock:
        sock.sendall(data)
        return read_to_eof(sock)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def get(target: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    """A request head that asks the server to close after answering (Host: test unless
    ``headers`` has one)."""
    host = [] if any(h.lower().startswith("host:") for h in headers) else ["Host: test"]
    lines = [f"{method} {target} HTTP/{version}", *host, *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, everything after the blank line)."""
    assert raw.startswith(b"HTTP/1."), f"not an HTTP response: {raw[:200]!r}"
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    """Decode a complete chunked body (RFC 9112 §7.1), strictly enough for a test."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", body
            return out
        out, body = out + body[:size], body[size:]
        assert body[:2] == b"\r\n"
        body = body[2:]


def dump(raw: bytes) -> dict[str, Any]:
    """The DUMP script's report from a raw response."""
    status, headers, body = split(raw)
    assert status == 200, raw
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    report: dict[str, Any] = json.loads(body)
    return report


# -- processes ------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def processes() -> list[tuple[int, str, int, int]]:
    """Every process as (pid, state, ppid, pgid), read from /proc."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                stat = Path(entry.path, "stat").read_text()
                state, ppid, pgid = stat[stat.rindex(")") + 2 :].split()[:3]
                found.append((int(entry.name), state, int(ppid), int(pgid)))
    return found


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (processes end asynchronously)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
