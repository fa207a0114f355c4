"""What the application server runs: CGI-style responders, and WSGI applications on top.

FastCGI's promise (spec §1) was that a CGI program keeps its shape and merely stops
exiting: instead of one request per process it loops, ``while (FCGI_Accept() >= 0) {...}``
in libfcgi, reading the same variables, the same stdin, writing the same stdout. So the
application interface of this era is a CGI program's ``main`` turned into a function,
called once per request::

    def respond(params: dict[str, bytes], stdin: BinaryIO, stdout: BinaryIO) -> int

``params`` are the request's PARAMS (the CGI meta-variables, values as bytes), ``stdin``
the STDIN stream (it ends where the body ends), ``stdout`` becomes STDOUT records and must
carry a CGI response (RFC 3875 §6: ``Status:``, headers, a blank line, the body), and the
return value is the exit status a CGI program would have had (END_REQUEST's appStatus).
``apps/responder.py`` is the family written this way.

WSGI (lesson 3) arrived because every framework had to be ported to every such interface.
flup showed the way out in 2005: host a WSGI application *inside* a FastCGI application
server. :class:`WSGIHost` does that here, and it is itself just a responder-shaped
callable: it builds ``environ`` from the params, calls the application, and writes the
CGI response that ``start_response`` and the iterable describe. Deployed behind nginx,
that is exactly how Flask and Django were served over FastCGI.

Both kinds reach the server through one internal shape, :data:`Runner`: the params and
the request's :class:`RequestStreams`, which hold the responder's stdin and stdout and the
STDERR stream (a text stream, WSGI's ``wsgi.errors``), made only when it is used.
"""

from __future__ import annotations

import importlib
import io
import threading
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, TextIO
from urllib.parse import unquote_to_bytes
from wsgiref.types import WSGIApplication

from ..gateway import HOP_BY_HOP, WSGI_BAD_VALUE, WSGI_STATUS, WSGI_TOKEN
from .records import RecordType

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "InputPipe",
    "RequestStreams",
    "Responder",
    "Runner",
    "WSGIHost",
    "load_object",
    "runner_for",
]

Responder = Callable[[dict[str, bytes], BinaryIO, BinaryIO], int]
Runner = Callable[[dict[str, bytes], "RequestStreams"], int]
Output = Callable[[RecordType, bytes], None]  # the server's: bytes -> records on the socket
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def load_object(spec: str) -> object:
    """``"package.module:attribute"`` -> the attribute (as every WSGI server's --app does)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"{spec!r}: expected MODULE:ATTRIBUTE, e.g. apps.wsgi:app")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def runner_for(kind: str, spec: str) -> Runner:
    """The server's view of an application: ``kind`` is "responder" or "wsgi"."""
    target = load_object(spec)
    if not callable(target):
        raise TypeError(f"{spec} is not callable")
    if kind == "wsgi":
        host = WSGIHost(target)

        def run_wsgi(params: dict[str, bytes], streams: RequestStreams) -> int:
            return host(params, streams.stdin, streams.stdout, streams.stderr)

        return run_wsgi
    responder: Responder = target

    def run(params: dict[str, bytes], streams: RequestStreams) -> int:
        return responder(params, streams.stdin, streams.stdout)  # no STDERR: never made

    return run


# ======================================================================================
# The streams a request's application sees, over the server's plumbing
# ======================================================================================
class InputPipe:
    """STDIN bytes of one request, from the thread reading its connection to the one running it.

    Bounded: ``put`` waits while ``limit`` bytes are unread (the backpressure that reaches
    the web server through TCP). Once the request has ended, bytes are dropped, and once
    it was aborted or its connection lost, reading raises."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._ended = False
        self._failure: str | None = None
        self._discarding = False

    def put(self, data: bytes) -> None:
        with self._cond:
            while self._size >= self.limit and not (self._discarding or self._failure):
                self._cond.wait()
            if not (self._discarding or self._failure):
                self._chunks.append(data)
                self._size += len(data)
                self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def fail(self, reason: str) -> None:
        with self._cond:
            self._failure = reason
            self._chunks.clear()
            self._cond.notify_all()

    def discard(self) -> None:
        with self._cond:
            self._discarding = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()

    def read_into(self, buffer: memoryview) -> int:
        with self._cond:
            while not (self._chunks or self._ended or self._failure):
                self._cond.wait()
            if self._failure:
                raise ConnectionAbortedError(self._failure)
            if not self._chunks:
                return 0  # the empty STDIN record came: end of the body
            chunk = self._chunks[0]
            count = min(len(buffer), len(chunk))
            buffer[:count] = chunk[:count]
            if count == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[count:]
            self._size -= count
            self._cond.notify_all()
            return count


class _RawInput(io.RawIOBase):
    __slots__ = ("pipe",)  # see _RawOutput

    def __init__(self, pipe: InputPipe) -> None:
        self.pipe = pipe

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        return self.pipe.read_into(memoryview(buffer).cast("B"))


class _RawOutput(io.RawIOBase):
    """Bytes written by the app become STDOUT (or STDERR) records of its request.

    Once :meth:`hold` is called, written bytes are kept instead of sent: the server calls
    it when the application has returned, so that the response's last bytes leave in one
    write with END_REQUEST (see :meth:`RequestStreams.finish_output`).

    ``__slots__`` because one is made per request: an io object's attributes otherwise
    live in a dict made for each instance, and making this object cost four times as
    much (2 µs of a request's 70, measured with timeit)."""

    __slots__ = ("count", "held", "output", "stream")

    def __init__(self, output: Output, stream: RecordType) -> None:
        self.output = output
        self.stream = stream
        self.count = 0  # bytes that left as records, or were held to leave with the end
        self.held: list[bytes] | None = None

    def writable(self) -> bool:
        return True

    def write(self, buffer: ReadableBuffer, /) -> int:
        data = bytes(buffer)
        if self.held is not None:
            self.held.append(data)
        else:
            self.output(self.stream, data)
        self.count += len(data)
        return len(data)

    def hold(self) -> None:
        self.held = []


class RequestStreams:
    """stdin, stdout and stderr of one request, as real file objects (io.Buffered*,
    TextIOWrapper), so that any code written for files (a CGI program's, a framework's)
    runs unchanged. ``output`` sends bytes as records of the request, or raises
    ConnectionAbortedError once the request was aborted or its connection lost.

    ``body`` is the whole request body when it had arrived before the request started:
    through nginx or our gateway, a GET's records (BEGIN, PARAMS, the empty STDIN) come in
    one write, so most requests start with their body known. Then stdin is a plain
    in-memory file, with no pipe and no lock between the threads. Otherwise stdin reads
    from an :class:`InputPipe` that the connection's reader fills as STDIN records come.

    Made per request, so made cheaply: stderr exists only once the application asks for
    it (a responder never does; a WSGI application gets it as ``wsgi.errors``).
    """

    def __init__(self, stdin_buffer: int, output: Output, body: bytes | None = None) -> None:
        self.pipe: InputPipe | None = None
        self.stdin: BinaryIO
        if body is not None:
            self.stdin = io.BytesIO(body)
        else:
            self.pipe = InputPipe(stdin_buffer)
            self.stdin = io.BufferedReader(_RawInput(self.pipe), 65536)
        self._output = output
        self._stdout = _RawOutput(output, RecordType.STDOUT)
        # Buffered: a CGI program's many small writes become few records; flush() sends.
        self.stdout = io.BufferedWriter(self._stdout, 8192)
        self._stderr: io.TextIOWrapper | None = None

    @property
    def stderr(self) -> TextIO:
        if self._stderr is None:
            self._stderr = io.TextIOWrapper(
                io.BufferedWriter(_RawOutput(self._output, RecordType.STDERR), 8192),
                encoding="utf-8",
                errors="backslashreplace",
                line_buffering=True,
            )
        return self._stderr

    # -- input, from the thread reading the connection ----------------------------------------
    def put(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.put(data)

    def end_input(self) -> None:
        if self.pipe is not None:
            self.pipe.end()

    def fail(self, reason: str) -> None:
        """The request was aborted or its connection lost: reading now raises."""
        if self.pipe is not None:
            self.pipe.fail(reason)

    def discard(self) -> None:
        """The request is over: body bytes still coming are dropped, not buffered."""
        if self.pipe is not None:
            self.pipe.discard()

    # -- output, from the worker ---------------------------------------------------------------
    @property
    def output_started(self) -> bool:
        """Some of the response has left: too late for a 500 in its place."""
        return self._stdout.count > 0

    def finish_output(self) -> bytes:
        """The application returned: flush stderr, and return what stdout still buffers,
        to be sent with END_REQUEST in one write. One write instead of two halves the
        system calls of a small response, and the web server's reads: behind nginx at 50
        connections, nginx's worker spent about 50 µs per request on our responses in two
        writes, and 32 µs in one (measured with /proc, CPU time per request)."""
        if self._stderr is not None:
            self._stderr.flush()
        self._stdout.hold()
        self.stdout.flush()
        held = self._stdout.held or []
        return b"".join(held)

    def close(self) -> None:
        """After END_REQUEST. Closing flushes; a flush into an aborted request raises, and
        would raise again from the garbage collector if it were left to it."""
        for stream in (self.stdout, self._stderr, self.stdin):
            try:
                if stream is not None:
                    stream.close()
            except Exception:
                pass  # see above: the request is over either way


# ======================================================================================
# The WSGI host (PEP 3333 on top of the responder interface)
# ======================================================================================
class WSGIError(Exception):
    """The application broke PEP 3333 (STYLE rule 9: say what was expected, and what came)."""


class WSGIHost:
    """A WSGI application as a responder, the way flup's WSGIServer hosted one.

    Per request: ``environ`` from the params (PEP 3333 "environ Variables"), the WSGI call,
    then the CGI response on stdout: ``Status: 200 OK``, the headers, a blank line, each
    body block flushed as it comes (PEP 3333: a block is never held back).
    """

    def __init__(self, app: WSGIApplication, era: str = "fastcgi") -> None:
        self.app = app
        self.era = era

    def environ(
        self, params: dict[str, bytes], stdin: BinaryIO, stderr: TextIO
    ) -> dict[str, object]:
        # PEP 3333 "Unicode Issues": CGI values are native strings holding latin-1 code
        # points, so every byte survives and encoding back gives the wire bytes.
        environ: dict[str, object] = {name: v.decode("latin-1") for name, v in params.items()}
        environ.setdefault("SCRIPT_NAME", "")
        if "PATH_INFO" not in environ:
            # flup's rule: a web server that sends no PATH_INFO (nginx's stock fastcgi_params
            # does not) gets REQUEST_URI's path minus SCRIPT_NAME. With nginx's default
            # SCRIPT_NAME (the whole path) that is "", which is why a WSGI app that owns the
            # whole URL space wants SCRIPT_NAME "" and PATH_INFO $uri (tests/fastcgi does so).
            path = unquote_to_bytes(params.get("REQUEST_URI", b"").partition(b"?")[0])
            script_name = str(environ["SCRIPT_NAME"])
            text = path.decode("latin-1")
            environ["PATH_INFO"] = text[len(script_name) :] if text.startswith(script_name) else ""
        https = params.get("HTTPS", b"").lower() in (b"on", b"1")
        environ.update(
            {
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "https" if https else "http",
                "wsgi.input": stdin,
                "wsgi.errors": stderr,
                "wsgi.multithread": True,  # a pool of worker threads calls the app
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                # STDIN is a stream ended by an empty record (§3.3): the server knows where
                # the body ends even without CONTENT_LENGTH (a chunked upload via nginx), so
                # the app may read to EOF (the de-facto extension of PEP 3333, see specs.md).
                "wsgi.input_terminated": True,
                "gatewaylab.era": self.era,
            }
        )
        return environ

    def __call__(
        self, params: dict[str, bytes], stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO
    ) -> int:
        reply = _Reply(stdout)
        result = self.app(self.environ(params, stdin, stderr), reply.start_response)  # type: ignore[arg-type]
        try:
            for block in _blocks(result):
                if block:  # PEP 3333: an empty block must not send the headers
                    reply.write(block)
            reply.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # PEP 3333: always, even after an error or an early stop
        return 0


def _blocks(result: Iterable[bytes]) -> Iterable[bytes]:
    for block in result:
        if not isinstance(block, bytes):
            raise WSGIError(f"the app yielded {type(block).__name__}; expected bytes")
        yield block


class _Reply:
    """start_response() and write() of one request: the CGI head goes out with the first
    body bytes (or at the end, for an empty body), never at start_response time."""

    def __init__(self, stdout: BinaryIO) -> None:
        self.stdout = stdout
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    # PEP 3333: too late to replace the response; re-raise the app's error.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise WSGIError("start_response() called twice without exc_info")
        self.status, self.headers = _checked(status, headers)
        return self.write

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise WSGIError("body bytes before start_response()")
        if not isinstance(data, bytes):
            raise WSGIError(f"write({type(data).__name__}); expected bytes")
        if not self.head_sent:
            self.head_sent = True
            data = self._head() + data
        self.stdout.write(data)
        self.stdout.flush()

    def finish(self) -> None:
        if self.status is None:
            raise WSGIError("the app returned without calling start_response()")
        if not self.head_sent:
            self.head_sent = True
            self.stdout.write(self._head())
            self.stdout.flush()

    def _head(self) -> bytes:
        # RFC 3875 §6.3.3: the status travels as a "Status:" header field.
        lines = [f"Status: {self.status}"] + [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _checked(status: object, headers: object) -> tuple[str, list[tuple[str, str]]]:
    """PEP 3333 "The start_response() Callable", checked while the app can still be blamed."""
    if not isinstance(status, str) or not WSGI_STATUS.fullmatch(status):
        raise WSGIError(f"status {status!r}; expected a str such as '200 OK'")
    if type(headers) is not list:
        raise WSGIError(f"headers of type {type(headers).__name__}; expected a list")
    checked: list[tuple[str, str]] = []
    for header in headers:
        if not (isinstance(header, tuple) and len(header) == 2):
            raise WSGIError(f"header {header!r}; expected a (name, value) tuple")
        name, value = header
        if not isinstance(name, str) or not WSGI_TOKEN.fullmatch(name):
            raise WSGIError(f"header name {name!r}; expected a token")
        if not isinstance(value, str) or WSGI_BAD_VALUE.search(value):
            raise WSGIError(f"header {name} value {value!r}; expected a str without controls")
        if name.lower() in HOP_BY_HOP:
            raise WSGIError(f"hop-by-hop header {name}: that is the server's business")
        if name.lower() == "status":
            raise WSGIError("a 'Status' header; the status is start_response()'s first argument")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise WSGIError(f"header {name} value {value!r} is not latin-1") from None
        checked.append((name, value))
    return status, checked
