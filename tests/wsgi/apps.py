"""The applications the WSGI tests serve: each small enough to read beside its test.

The server under test loads them by name, ``--app tests.wsgi.apps:probe`` (or
``validated_family``), in its own process. Two rules decide how an app is mounted:

1. **Apps that keep the contract run under ``wsgiref.validate.validator``**, inside the
   server, with :class:`wsgiref.validate.WSGIWarning` turned into an error. A warning then
   becomes an exception in the app, so a 500, where the tests expect a 200. The validator
   checks the server's half as well: ``environ`` is a plain dict of native strings with the
   required keys, ``wsgi.input`` and ``wsgi.errors`` have their methods and return the
   right types, and the iterable is closed (an unclosed one complains when collected, in
   the server's log, which the tests read).
2. **Apps under ``/bare/`` run without it.** Most break the contract on purpose, to see
   the server refuse them, and the validator would catch the mistake before our server
   does. The others keep the contract but need the server and the app to see each
   other's own objects, which the validator wraps: a ``wsgi.file_wrapper`` result (hidden
   from the sendfile path once wrapped), a one-item list (whose length the server may
   count), ``environ["wsgi.input"]`` as the server made it; and ``read()`` with no size,
   which PEP 3333 allows and the validator, written for PEP 333, refuses.

Gates. Some tests must know where an app is at a given moment: blocked before it reads
the body, between two chunks, inside a slow request. Such an app creates
``TOKEN.entered`` in the probe directory (``$GATEWAYLAB_PROBE_DIR``), then waits until
``TOKEN.release`` exists; a ``close()`` leaves ``TOKEN.closed``. Files, because the app
runs in the server's process and the test in its own.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgiref.validate import WSGIWarning, validator

from apps.wsgi import app as family_app

__all__ = ["probe", "validated_family"]

# Rule 1: a validator warning is a failure, not a line in a log nobody reads.
warnings.simplefilter("error", WSGIWarning)

# Copied into each call ([*TEXT]), never passed itself: PEP 3333 lets the server change the
# list it is given, and ours does (it may add Content-Length); a shared list would grow.
TEXT = [("Content-Type", "text/plain; charset=utf-8")]
GATE_LIMIT = 30.0  # seconds a gate waits for its release before giving up


# -- gates ---------------------------------------------------------------------------------
def probe_dir() -> Path:
    return Path(os.environ.get("GATEWAYLAB_PROBE_DIR") or tempfile.gettempdir())


def mark(token: str, what: str) -> None:
    (probe_dir() / f"{token}.{what}").touch()


def wait_for_release(token: str) -> bool:
    release = probe_dir() / f"{token}.release"
    deadline = time.monotonic() + GATE_LIMIT
    while not release.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def query(environ: WSGIEnvironment) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response: StartResponse, value: object) -> list[bytes]:
    body = json.dumps(value, sort_keys=True).encode() + b"\n"
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


# -- apps that keep the contract (mounted under the validator) ---------------------------------
def environ_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """What the server handed over: strings as they are, anything else by its type."""
    shown: dict[str, object] = {}
    for key, value in environ.items():
        if type(value) in (str, bool):
            shown[key] = value
        elif type(value) is tuple:
            shown[key] = list(value)
        else:
            shown[key] = f"<{type(value).__name__}>"
    return _json(start_response, {"type": type(environ).__name__, "environ": shown})


def input_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Reads the body in the way ``?how=`` names; answers the pieces it got, in order."""
    stream = environ["wsgi.input"]
    how = query(environ).get("how", "read-sizes")
    pieces: list[bytes] = []
    if how == "read-sizes":
        pieces = [stream.read(3), stream.read(0), stream.read(4), stream.read(1000)]
        pieces.append(stream.read(10))  # exhausted: b""
    elif how == "readline":
        pieces = [stream.readline(), stream.readline(4), stream.readline(0)]
        while line := stream.readline():
            pieces.append(line)
        pieces.append(stream.readline())
    elif how == "readlines":
        pieces = stream.readlines()
    elif how == "readlines-none":
        pieces = stream.readlines(None)  # None: no hint, as for io's readlines()
    elif how == "readlines-hint":
        pieces = [*stream.readlines(5), b"|", stream.read(1000)]
    elif how == "iter":
        pieces = list(stream)
    return _json(start_response, [piece.decode("latin-1") for piece in pieces])


def write_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """PEP 3333 "The write() Callable": what write() sends comes before the iterable."""
    write = start_response("200 OK", [*TEXT])
    write(b"one,")
    write(b"two,")
    return [b"three\n"]


def empty_first_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    """An empty chunk, then a pause: the headers must wait for the first real byte."""
    token = query(environ)["token"]
    start_response("200 OK", [*TEXT])
    yield b""
    mark(token, "entered")  # the server has taken the empty chunk and asked for more
    wait_for_release(token)
    yield b"after the pause\n"


def exc_before_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """An error before any byte went out: start_response(..., exc_info) replaces the answer."""
    start_response("200 OK", [*TEXT, ("X-First", "yes")])
    try:
        raise ValueError("a failure the app handles itself")
    except ValueError:
        start_response("503 Service Unavailable", [*TEXT, ("X-Replaced", "yes")], sys.exc_info())
    return [b"replaced\n"]


def exc_after_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    """An error after the head went out: start_response(..., exc_info) must re-raise."""
    token = query(environ).get("token", "exc-after")
    start_response("200 OK", [*TEXT])
    try:
        yield b"partial\n"
        try:
            raise ValueError("oops-after-the-head")
        except ValueError:
            start_response("500 Internal Server Error", [*TEXT], sys.exc_info())
        yield b"never sent\n"
    finally:
        mark(token, "closed")  # GeneratorExit or the re-raised error both pass here


class ClosingBody:
    """An iterable with close(), which leaves TOKEN.closed behind. ``mode``:
    ok: three chunks; raise-early: fails before the first chunk; raise: fails after the
    first; slow: up to 600 chunks 50 ms apart (a client that leaves makes it stop)."""

    def __init__(self, token: str, mode: str) -> None:
        self.token = token
        self.mode = mode

    def __iter__(self) -> Iterator[bytes]:
        if self.mode == "raise-early":
            raise RuntimeError("failed before the first chunk")
        count = 600 if self.mode == "slow" else 3
        for i in range(count):
            if i and self.mode == "raise":
                raise RuntimeError("failed after the first chunk")
            if i and self.mode == "slow":
                time.sleep(0.05)
            yield b"chunk %d\n" % i

    def close(self) -> None:
        mark(self.token, "closed")


def close_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    start_response("200 OK", [*TEXT])
    return ClosingBody(params["token"], params.get("mode", "ok"))


class RecordingFile(io.FileIO):
    """A real file (it has fileno(), so sendfile applies) whose close() is recorded."""

    token = ""

    def close(self) -> None:
        if not self.closed and self.token:
            mark(self.token, "closed")
        super().close()


class RecordingBytes(io.BytesIO):
    """A file-like object with no descriptor: file_wrapper must fall back to read()."""

    token = ""

    def close(self) -> None:
        if self.token:
            mark(self.token, "closed")
        super().close()


def file_content(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def _open_file(params: dict[str, str]) -> RecordingFile | RecordingBytes:
    """``size`` bytes, as a real file (kind=file) or in memory (kind=bytes)."""
    content = file_content(int(params.get("size", "100000")))
    if params.get("kind", "file") == "bytes":
        memory = RecordingBytes(content)
        memory.token = params.get("token", "")
        return memory
    fd, name = tempfile.mkstemp(dir=probe_dir())
    os.write(fd, content)
    os.close(fd)
    real = RecordingFile(name, "r")
    os.unlink(name)  # the open file lives on; nothing is left in the directory
    real.token = params.get("token", "")
    return real


def file_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """PEP 3333 "Optional Platform-Specific File Handling". ``declared`` sets Content-Length."""
    params = query(environ)
    headers = [("Content-Type", "application/octet-stream")]
    if "declared" in params:
        headers.append(("Content-Length", params["declared"]))
    start_response("200 OK", headers)
    wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
    return wrapper(_open_file(params), 8192)


def write_then_file_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """write() output first, then a file_wrapper for the rest, under one Content-Length."""
    params = query(environ)
    size = int(params.get("size", "5000"))
    prefix = b"prefix:"
    headers = [("Content-Type", "application/octet-stream")]
    write = start_response("200 OK", [*headers, ("Content-Length", str(len(prefix) + size))])
    write(prefix)
    wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
    return wrapper(_open_file(params))


def length_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Content-Length ``declared``, then chunks of the sizes in ``chunks`` (``5,5``)."""
    params = query(environ)
    sizes = [int(n) for n in params.get("chunks", "5").split(",")]
    start_response("200 OK", [*TEXT, ("Content-Length", params["declared"])])
    return numbered_chunks(sizes, params.get("token", ""))


def numbered_chunks(sizes: list[int], token: str) -> Iterator[bytes]:
    """Chunk i is the digit i repeated; closing the generator leaves TOKEN.closed."""
    try:
        for number, size in enumerate(sizes):
            yield (b"%d" % number) * size
    finally:
        if token:
            mark(token, "closed")


def gate_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Waits at its gate, then answers: a slow request the test controls exactly."""
    token = query(environ)["token"]
    mark(token, "entered")
    released = wait_for_release(token)
    start_response("200 OK", [*TEXT])
    return [b"released\n" if released else b"gave up waiting\n"]


def gate_read_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Waits at its gate before touching wsgi.input, then echoes CONTENT_LENGTH bytes."""
    token = query(environ)["token"]
    mark(token, "entered")
    wait_for_release(token)
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [*TEXT])
    return [b"read: " + body + b"\n"]


def thread_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])
    return [threading.current_thread().name.encode() + b"\n"]


def errors_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """wsgi.errors is a text stream: write(str), writelines(), flush()."""
    errors = environ["wsgi.errors"]
    errors.write("errors-line-one\n")
    errors.writelines(["errors-line-two\n", "errors-line-three\n"])
    errors.flush()
    start_response("200 OK", [*TEXT])
    return [b"logged\n"]


def crash_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("the app broke: secret-detail-42")


def crash_late_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [*TEXT])
    yield b"first\n"
    raise RuntimeError("the app broke after its first chunk")


# -- apps that break the contract on purpose, or need the server to see their objects ---------
def header_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """One extra header, ``name: value`` from the query (hop-by-hop, CR/LF, non-latin-1)."""
    params = query(environ)
    start_response("200 OK", [*TEXT, (params["name"], params.get("value", "x"))])
    return [b"should not be sent\n"]


def status_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The status line as the query spells it (``200OK``, ``200 OK\\r\\nX: y``, ...)."""
    start_response(query(environ)["s"], [*TEXT])
    return [b"should not be sent\n"]


def int_status_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response(200, [*TEXT])  # type: ignore[arg-type]  # wrong on purpose
    return [b"should not be sent\n"]


def tuple_headers_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", tuple(TEXT))  # type: ignore[arg-type]  # a tuple, not a list
    return [b"should not be sent\n"]


def twice_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])
    start_response("200 OK", [*TEXT])  # no exc_info: a fatal error (PEP 3333)
    return [b"should not be sent\n"]


def twice_after_refusal_app(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """The first call is refused (a bad header); a second call without exc_info is still a
    second call, whatever became of the first."""
    try:
        start_response("200 OK", [("Bad Name", "x")])
    except Exception:
        start_response("200 OK", [*TEXT])
    return [b"should not be sent\n"]


def str_body_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])
    return ["text, not bytes\n"]  # type: ignore[list-item]  # wrong on purpose


def bytes_result_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])
    return b"bytes, not a list of bytes\n"  # type: ignore[return-value]  # iterates as ints


def no_start_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    return [b"start_response was never called\n"]


def empty_no_start_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    return []


def sys_exit_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """sys.exit() in a view: in a worker thread it cannot stop the server, only the thread."""
    sys.exit("an app called sys.exit()")


def read_all_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """read() with no size: the rest of the body (PEP 3333 "Input and Error Streams")."""
    stream = environ["wsgi.input"]
    first, again = stream.read(), stream.read()
    start_response("200 OK", [*TEXT])
    return [b"%d %d\n" % (len(first), len(again)), first]


def one_item_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """No Content-Length, a one-item list: the server may count it (PEP 3333)."""
    start_response("200 OK", [*TEXT])
    return [b"ten bytes\n"]


def never_reads_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*TEXT])
    return [b"did not read the body\n"]


CONFORMING: dict[str, WSGIApplication] = {
    "/environ": environ_app,
    "/input": input_app,
    "/write": write_app,
    "/empty-first": empty_first_app,
    "/exc-before": exc_before_app,
    "/exc-after": exc_after_app,
    "/close": close_app,
    "/file": file_app,
    "/length": length_app,
    "/gate": gate_app,
    "/gate-read": gate_read_app,
    "/thread": thread_app,
    "/errors": errors_app,
    "/crash": crash_app,
    "/crash-late": crash_late_app,
    "/never-reads": never_reads_app,
}
BARE: dict[str, WSGIApplication] = {
    "/bare/environ": environ_app,
    "/bare/file": file_app,
    "/bare/write-then-file": write_then_file_app,
    "/bare/read-all": read_all_app,
    "/bare/header": header_app,
    "/bare/status": status_app,
    "/bare/int-status": int_status_app,
    "/bare/tuple-headers": tuple_headers_app,
    "/bare/twice": twice_app,
    "/bare/twice-after-refusal": twice_after_refusal_app,
    "/bare/str-body": str_body_app,
    "/bare/bytes-result": bytes_result_app,
    "/bare/no-start": no_start_app,
    "/bare/empty-no-start": empty_no_start_app,
    "/bare/one-item": one_item_app,
    "/bare/sys-exit": sys_exit_app,
}
ROUTES: dict[str, WSGIApplication] = {
    **{path: validator(app) for path, app in CONFORMING.items()},
    **BARE,
}


def probe(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Route on PATH_INFO to one of the apps above (``/environ/ANY`` is ``/environ``, for
    paths that carry odd bytes); anything else is the family."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/environ/"):
        path = "/environ"
    app = ROUTES.get(path, validated_family)
    return app(environ, start_response)


# The family under the validator: the contract suite's app, checked from the inside.
validated_family: WSGIApplication = validator(family_app)
