"""Era 3: the threaded WSGI server (PEP 3333). The application is a function call.

No process per request (lesson 1), no records over a socket (lesson 2): the application
lives inside the server, as a Python callable, ``app(environ, start_response)``, and the
server calls it on one of its threads. That is the model Flask and Django grew up on.

How the work is split::

                 +-------------------- the I/O thread ---------------------+
    accept() --> | idle connections wait here, in a selector               |
                 | bytes arrive -> the HTTP core -> a complete Request?     |
                 +---------------------------|------------------------------+
                                             | bounded queue (full: 503)
                                             v
                 +------------------- N worker threads --------------------+
                 | environ <- Request     app(environ, start_response)      |
                 | wsgi.input reads the body from the socket, on demand     |
                 | the iterable's chunks -> the HTTP core -> sendall()      |
                 +---------------------------|------------------------------+
                                             | keep-alive: back to the selector

Why two kinds of thread? A worker thread is the scarce resource of this era: with N of
them, N requests run at once, and that is the whole capacity. So no worker ever waits for
a client that has not finished sending its request head. The I/O thread reads heads
with the shared core, and a connection reaches a worker only with a complete request,
which is what keeps slow clients (slowloris) from pinning the pool. Idle keep-alive
connections cost a selector entry, not a thread. When every worker is busy, complete
requests wait in a bounded queue; past it, the server answers 503 with Retry-After
rather than queueing without bound.

What a worker does is PEP 3333, section by section: build ``environ`` (the CGI variables
of servers/gateway.py, plus the wsgi.* keys), call the app, validate what it hands to
``start_response`` (and raise in the app's own stack frame when it is wrong), send the
headers only with the first non-empty chunk, call ``close()`` on the iterable on every
path, and answer an exception with a plain 500 (the traceback goes to wsgi.errors,
never to the client).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes

from .cli import add_config_options, base_parser, ready_line
from .gateway import HOP_BY_HOP, WSGI_BAD_VALUE, WSGI_STATUS, WSGI_TOKEN, http_variables
from .http import (
    NEED_DATA,
    Data,
    EndOfMessage,
    InformationalResponse,
    Limits,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    ServerConnection,
    State,
)
from .trace import Tracer, escape, next_connection_id

SERVER_SOFTWARE = "gatewaylab-wsgi/0.1"
SWEEP = 0.25  # seconds between two looks for connections past their deadline

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Config:
    app: str = "apps.wsgi:app"
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 8  # the pool; waitress defaults to 4, gunicorn gthread to 1 per worker
    backlog: int = 64  # complete requests waiting for a thread; past it, 503
    idle_timeout: float = 5.0  # keep-alive wait for the next request (uvicorn: 5 s)
    request_timeout: float = 10.0  # to receive a head, or the next piece of a body
    graceful_timeout: float = 10.0  # on SIGTERM, time left to in-flight requests
    limits: Limits = field(default_factory=Limits)
    trace: bool = False


class ClientGone(Exception):
    """The client went away (or stalled past the timeout) while we talked to it."""


# ======================================================================================
# One client connection: the state that lives as long as the socket (STYLE rule 10)
# ======================================================================================
class Client:
    def __init__(
        self, sock: socket.socket, address: tuple[str, int], config: Config, environ: Environ
    ) -> None:
        self.sock = sock
        self.cid = next_connection_id()
        self.conn = ServerConnection(config.limits, SERVER_SOFTWARE.encode())
        self.request: Request | None = None  # parsed by the I/O thread, run by a worker
        self.busy = False  # a worker owns it; the I/O thread must not touch it
        self.deadline = 0.0
        self.timeout = config.request_timeout
        # The environ keys that say who talks to whom (RFC 3875 §4.1.8, §4.1.15) are the
        # same for every request on this connection: added to the server's once, here.
        local = sock.getsockname()
        self.environ = environ | {
            "SERVER_ADDR": local[0],
            "SERVER_PORT": str(local[1]),  # §4.1.15: even the default port
            "REMOTE_ADDR": address[0],
            "REMOTE_HOST": address[0],  # §4.1.9: the address stands in for the name
            "REMOTE_PORT": str(address[1]),
        }
        # Non-blocking, and every wait bounded by hand (wait() below). A socket with a
        # timeout would do the same, but CPython polls before *every* recv and send on
        # one, even when the data is already there: two system calls where one does.
        sock.setblocking(False)
        # Head, body and last chunk go out in separate writes; without this, Nagle holds
        # the last small one until the client's delayed ACK: 40 ms per keep-alive request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # The worker's side of the socket. The client may be slow, so a call may wait, but never
    # longer than request_timeout for the next piece (as nginx's send_timeout): a client
    # that stalls lets go of the thread.
    def recv(self) -> bytes:
        while True:
            try:
                return self.sock.recv(65536)
            except BlockingIOError:
                self.wait(select.POLLIN)
            except OSError as error:  # reset: the client is gone for us
                raise ClientGone(str(error)) from None

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]  # all of it at once, nearly always
            except BlockingIOError:  # the client reads slower than we write
                self.wait(select.POLLOUT)
            except OSError as error:
                raise ClientGone(str(error)) from None

    def wait(self, event: int) -> None:
        poller = select.poll()
        poller.register(self.sock, event)
        if not poller.poll(self.timeout * 1000):
            raise ClientGone("timed out")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# ======================================================================================
# The server: the I/O thread and the pool
# ======================================================================================
class ThreadedServer:
    def __init__(self, config: Config, app: WSGIApp) -> None:
        self.config = config
        self.app = app
        self.tracer = Tracer(config.trace)
        # PEP 3333 "environ Variables": the keys that are the same for every request this
        # server will ever run, built once. A connection adds its addresses (Client), a
        # request its own keys (Exchange.environ); each request gets a copy of its own.
        self.environ: Environ = {
            "GATEWAY_INTERFACE": "CGI/1.1",  # RFC 3875 §4.1.4
            "SERVER_SOFTWARE": SERVER_SOFTWARE,  # §4.1.17
            "SCRIPT_NAME": "",  # §4.1.13: the app is mounted at the root, set even when empty
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            # The server ends the input itself (Content-Length or the last chunk), so an
            # app may read to EOF safely: the de-facto extension gunicorn and waitress set.
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "gatewaylab.era": "wsgi",
        }
        self.listener = socket.create_server((config.host, config.port), backlog=1024)
        self.listener.setblocking(False)
        # epoll with EPOLLONESHOT: a connection reports "readable" once, then stays silent
        # until it is re-armed. The I/O thread arms it while the connection is idle; a
        # worker re-arms it itself when its response is done (epoll_ctl is thread-safe),
        # so handing a keep-alive connection back costs one system call, not a trip
        # through a queue and a wake-up of the I/O thread.
        self.epoll = select.epoll()
        self.clients: dict[int, Client] = {}  # fd -> client, every open connection
        # Complete requests waiting for a worker. SimpleQueue is the C queue (no Python-level
        # Condition per put and get); only this thread puts, so checking its size before
        # putting is an exact bound.
        self.requests: queue.SimpleQueue[Client | None] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()  # a signal becomes a byte on this pipe
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.stopping = False
        self.workers = [
            threading.Thread(target=self._worker, name=f"wsgi-worker-{i}", daemon=True)
            for i in range(config.threads)
        ]

    def serve_forever(self) -> int:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        for worker in self.workers:
            worker.start()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.epoll.register(self.wake_r, select.EPOLLIN)
        host, port = self.listener.getsockname()[:2]
        ready_line("wsgi", host, port)
        listener, sweep = self.listener.fileno(), 0.0
        while not self.stopping:
            for fd, _ in self.epoll.poll(timeout=SWEEP):
                if fd == listener:
                    self._accept()
                elif fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                elif (client := self.clients.get(fd)) is not None:
                    self._readable(client)
            # Timeouts are seconds long: a look at every connection a few times a second
            # is enough, not after every wake-up (that would cost O(connections) each).
            if (now := time.monotonic()) >= sweep:
                self._expire(now)
                sweep = now + SWEEP
        return self._shutdown()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True  # only a flag: the loop does the work

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE: say so, keep serving the others
                print(f"wsgi: accept failed: {error}", file=sys.stderr)
                return
            client = Client(sock, address, self.config, self.environ)
            self.tracer.note(client.cid, f"open {address[0]}:{address[1]}")
            self.clients[sock.fileno()] = client
            client.deadline = time.monotonic() + self.config.idle_timeout
            self.epoll.register(sock.fileno(), select.EPOLLIN | select.EPOLLONESHOT)

    def rearm(self, client: Client, deadline: float) -> None:
        """Idle again: wait for the next bytes (called by the I/O thread or a worker)."""
        client.deadline = deadline
        client.busy = False
        self.epoll.modify(client.sock.fileno(), select.EPOLLIN | select.EPOLLONESHOT)

    def _readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:  # a spurious wake-up: nothing to read after all
            self.rearm(client, client.deadline)
            return
        except OSError:
            data = b""
        self.tracer.wire(client.cid, "<", data)
        client.conn.receive_data(data)
        self.parse(client)

    def parse(self, client: Client) -> None:
        """Run the core on what is buffered: a complete head goes to the pool."""
        try:
            event = client.conn.next_event()
        except RemoteProtocolError as error:
            self._reply_and_close(client, client.conn.error_response(error))
            return
        if isinstance(event, Request):
            client.request, client.busy = event, True
            if self.requests.qsize() >= self.config.backlog:
                self._busy(client)
            else:
                self.requests.put(client)
        elif event is NEED_DATA:
            # A head that has started gets request_timeout in all, not per read: a client
            # sending one byte a second must not hold its connection forever (slowloris).
            deadline = time.monotonic() + self.config.idle_timeout
            if client.conn.buffered:
                deadline = min(client.deadline, time.monotonic() + self.config.request_timeout)
            self.rearm(client, deadline)
        else:  # ConnectionClosed: the client left between requests
            self.close(client, "client closed")

    def _busy(self, client: Client) -> None:
        """Every thread busy and the queue full: 503 now, rather than an unbounded wait."""
        body = b"503 Service Unavailable: every worker thread is busy; try again shortly.\n"
        head = [
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Retry-After", b"1"),
            (b"Connection", b"close"),
        ]
        self._reply_and_close(client, client.conn.send_response(503, head, body))

    def _reply_and_close(self, client: Client, data: bytes) -> None:
        self.tracer.wire(client.cid, ">", data)
        # A few hundred bytes into an empty socket buffer: they fit. If they do not (a
        # client that sends and never reads), BlockingIOError: the I/O thread never waits.
        with contextlib.suppress(OSError):
            client.sock.sendall(data)
        self.close(client, "after an error answer")

    def close(self, client: Client, why: str = "") -> None:
        self.clients.pop(client.sock.fileno(), None)
        self.tracer.closed(client.cid, f"({why})" if why else "")
        client.close()  # closing the socket also removes it from the epoll set

    def _expire(self, now: float) -> None:
        for client in list(self.clients.values()):
            if client.busy or client.deadline >= now:
                continue
            if client.conn.buffered:  # RFC 9110 §15.5.9: a head that never finished
                timeout = RemoteProtocolError("the request took too long to arrive", 408)
                self._reply_and_close(client, client.conn.error_response(timeout))
            else:
                self.close(client, "idle timeout")

    def _shutdown(self) -> int:
        """Graceful stop: no new connections, idle ones closed, in-flight requests finish
        within graceful_timeout; then exit 0."""
        self.listener.close()
        for client in list(self.clients.values()):
            if not client.busy:
                self.close(client, "server stopping")
        for _ in self.workers:
            self.requests.put(None)  # each worker stops after the request it is running
        deadline = time.monotonic() + self.config.graceful_timeout
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return 0

    # -- the worker threads ---------------------------------------------------------------
    def _worker(self) -> None:
        while (client := self.requests.get()) is not None:
            keep = False
            try:
                keep = self._serve(client)
            except Exception:
                traceback.print_exc()
            if keep and not self.stopping:
                self.rearm(client, time.monotonic() + self.config.idle_timeout)
            else:
                self.close(client)

    def _serve(self, client: Client) -> bool:
        """Run every request that is complete; True if the connection may be kept."""
        conn = client.conn
        while client.request is not None:
            request, client.request = client.request, None
            ok = Exchange(self, client, request).run()
            if not ok or not conn.keep_alive:
                return False
            try:
                # Read what the app left of the body, so the next request can be parsed.
                while conn.their_state is State.SEND_BODY:
                    _receive_event(client, self.tracer)
                conn.start_next_cycle()
                # A pipelined request may already be here; most often nothing is.
                event = conn.next_event() if conn.buffered else NEED_DATA
            except (ProtocolError, ClientGone, OSError):
                return False
            if isinstance(event, Request):
                client.request = event
            elif event is not NEED_DATA:
                return False
        return True


def _receive_event(client: Client, tracer: Tracer) -> object:
    """The next event from the client, reading the socket as needed (worker side)."""
    while (event := client.conn.next_event()) is NEED_DATA:
        data = client.recv()
        tracer.wire(client.cid, "<", data)
        client.conn.receive_data(data)
    return event


# ======================================================================================
# One request, one call of the application (PEP 3333): the per-request state
# ======================================================================================
_END = EndOfMessage()  # the same for every response (the core keeps one too)
# An app sends the same few header lines again and again (Content-Type: text/html...):
# each is checked once, then found here, already encoded. Like the core's own cache, it
# stops growing at 4096 lines, so an app that echoes what clients send cannot fill memory.
Checked = tuple[tuple[bytes, bytes], bool]  # the encoded line; is it Content-Length?
_CHECKED: dict[tuple[str, str], Checked] = {}


def _check_header(name: str, value: str) -> Checked:
    """PEP 3333 "The start_response() Callable": what a header line may be, or ValueError."""
    if not WSGI_TOKEN.fullmatch(name):
        raise ValueError(f"header name {name!r} is not an RFC 9110 token")
    if WSGI_BAD_VALUE.search(value):
        raise ValueError(f"header {name}: CR, LF and control characters are not allowed")
    lower = name.lower()
    if lower in HOP_BY_HOP:
        raise ValueError(f"hop-by-hop header {name!r}: it belongs to the server")
    try:  # the encoding is the latin-1 check
        checked = (name.encode("latin-1"), value.encode("latin-1")), lower == "content-length"
    except UnicodeEncodeError:
        raise ValueError(f"header {name}: a value must be latin-1 (PEP 3333)") from None
    if len(_CHECKED) < 4096:
        _CHECKED[name, value] = checked
    return checked


def _shown(value: object, width: int = 60) -> str:
    """An environ value as --trace shows it. A long value is cut, not replaced by its size,
    so that a long User-Agent still says what it is; what the client chose is escaped
    (uvicorn CVE-2020-7694). Plain values are written as Python writes them, ``(1, 0)``
    and ``True``; objects by their type."""
    if isinstance(value, str):
        text = escape(value.encode("latin-1"))
        return text if len(text) <= width else f"{text[:width]}... ({len(value)} characters)"
    if isinstance(value, bool | int | tuple):
        return repr(value)
    return type(value).__name__


class Exchange:
    """Everything about one request/response: environ, start_response, write, close."""

    def __init__(self, server: ThreadedServer, client: Client, request: Request) -> None:
        self.server = server
        self.client = client
        self.request = request
        self.tracer = server.tracer
        self.status: str | None = None
        self.fields: list[tuple[bytes, bytes]] = []  # the app's headers, checked and encoded
        self.length: str | None = None  # the app's Content-Length, if it gave one
        self.started = False  # start_response() was called, even if it raised
        self.head_sent = False

    # -- the environ ------------------------------------------------------------------------
    def environ(self) -> Environ:
        """RFC 3875 §4.1 and PEP 3333: the request's own keys, on a copy of what the server
        and the connection set once. The names and rules are those of meta_variables() in
        servers/gateway.py, which builds them for CGI and FastCGI (a test holds the two
        equal); the HTTP_* fields, with the security rules, come from there directly."""
        request, target = self.request, self.request.target
        environ = self.client.environ.copy()
        environ["REQUEST_METHOD"] = request.method.decode("latin-1")  # §4.1.12
        environ["REQUEST_URI"] = target.decode("latin-1")
        environ["QUERY_STRING"] = target.partition(b"?")[2].decode("latin-1")  # §4.1.7: encoded
        # PEP 3333: PATH_INFO is the decoded path, as a native str holding latin-1 code
        # points ("bytes-as-unicode"): a UTF-8 path arrives as mojibake that the app can
        # turn back into bytes with .encode("latin-1"), losslessly.
        path = request.path  # §4.1.5 (most paths have no %-escape: no call for them)
        environ["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        environ["SERVER_PROTOCOL"] = "HTTP/" + request.http_version.decode()  # §4.1.16
        # §4.1.14: the name the client asked for (Host without its port), else our address.
        host = request.headers.get(b"host") or b""
        name = host.rstrip(b"0123456789")
        name = name[:-1] if name.endswith(b":") else host
        environ["SERVER_NAME"] = name.decode("latin-1") or environ["SERVER_ADDR"]
        if request.content_length:  # §4.1.2: only with a body (chunked: length unknown)
            environ["CONTENT_LENGTH"] = str(request.content_length)
        if (content_type := request.headers.get(b"content-type")) is not None:
            environ["CONTENT_TYPE"] = content_type.decode("latin-1")  # §4.1.3
        for key, value in http_variables(request).items():  # §4.1.18
            environ[key] = value.decode("latin-1")
        environ["wsgi.input"] = InputStream(self)
        if self.tracer.enabled:
            thread = threading.current_thread().name
            self.tracer.note(self.client.cid, f"request runs on thread {thread}")
            # CGI's names first, then the wsgi.* keys (the copy put those in between).
            for key, value in sorted(environ.items(), key=lambda item: "." in item[0]):
                self.tracer.event(self.client.cid, "<", "wsgi", f"environ {key}={_shown(value)}")
        return environ

    # -- start_response and write (PEP 3333 "The start_response() Callable") --------------------
    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:  # too late to change the answer: re-raise the app's error
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # PEP 3333: do not keep the traceback alive (a cycle)
        elif self.started:
            raise AssertionError("start_response() called twice without exc_info (PEP 3333)")
        # Counted before the checks below. PEP 3333 makes a second call without
        # exc_info fatal even when the first was refused; an app that caught our ValueError
        # and retried with other headers would otherwise answer as if nothing had happened.
        self.started = True
        if type(status) is not str or not WSGI_STATUS.fullmatch(status):
            raise ValueError(f"expected a status like '200 OK' (str), got {status!r}")
        if type(headers) is not list:
            raise TypeError(f"expected the headers as a list, got {type(headers).__name__}")
        fields, length = [], None
        for item in headers:
            # The types first, exactly (a str subclass is not a str here), then the cache.
            if type(item) is not tuple or len(item) != 2:
                raise TypeError(f"expected a header as a (str, str) tuple, got {item!r}")
            name, value = item
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"expected a header as a (str, str) tuple, got {item!r}")
            line, is_length = _CHECKED.get(item) or _check_header(name, value)
            fields.append(line)  # encoded once, here
            if is_length:
                length = value
        self.status, self.fields, self.length = status, fields, length
        if self.tracer.enabled:  # the repr() of the headers is not free
            detail = f"start_response {status!r} {headers!r}"
            self.tracer.event(self.client.cid, ">", "wsgi", detail)
        return self.write

    def write(self, data: bytes) -> None:
        """The write() callable, and the path of every chunk of the iterable."""
        if type(data) is not bytes:
            raise TypeError(f"expected bytes from the application, got {type(data).__name__}")
        if self.status is None:
            raise AssertionError("body data before start_response() (PEP 3333)")
        if self.tracer.enabled:
            self.tracer.event(self.client.cid, ">", "wsgi", f"body <{len(data)} bytes>")
        head = self._head()
        try:
            body = self.client.conn.send(Data(data))
        except LocalProtocolError:
            # More than the app's Content-Length (PEP 3333 "Handling the Content-Length
            # Header": send no more than it allows, and raise). The core has produced the
            # head already: send it, so that a first chunk that is too long does not leave
            # the client with a closed connection and no answer at all.
            self._send(head)
            raise
        self._send(head + body)

    def _head(self) -> bytes:
        if self.head_sent:
            return b""
        if self.status is None:
            # Not an assert: it must hold under python -O too, with a message. STYLE rule 9.
            raise AssertionError("the application's iterable ended before start_response()")
        code, _, reason = self.status.partition(" ")
        response = Response(int(code), tuple(self.fields), reason.encode("latin-1"))
        head = self.client.conn.send(response)
        self.head_sent = True
        return head

    def _send(self, data: bytes) -> None:
        if data:
            self.tracer.wire(self.client.cid, ">", data)
            self.client.sendall(data)

    # -- the call ----------------------------------------------------------------------------
    def run(self) -> bool:
        """Call the app and send its response. True if the connection is still usable."""
        result: Iterable[bytes] | None = None
        try:
            result = self.server.app(self.environ(), self.start_response)
            if isinstance(result, FileWrapper) and self._sendfile(result):
                pass
            else:
                self._send_iterable(result)
            self._send(self._head() + self.client.conn.send(_END))
            return True
        except ClientGone:
            return False
        except RemoteProtocolError as error:  # raised by wsgi.input: the body was bad
            if not self.head_sent:
                self._send_quietly(self.client.conn.error_response(error))
            return False
        except (Exception, SystemExit):
            # SystemExit too (sys.exit() in a view, argparse's error()). It goes past
            # "except Exception", and threading ends a thread on SystemExit without a word:
            # the pool would lose a worker for good, and the client would wait for an answer
            # that never comes. In a worker thread it cannot mean "stop the server" anyway.
            self._app_failed()
            return False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()  # PEP 3333: on every path, errors and disconnects included
                    self.tracer.event(self.client.cid, ">", "wsgi", "close()")
                except (Exception, SystemExit):  # SystemExit, as above
                    traceback.print_exc(file=sys.stderr)

    def _send_iterable(self, result: Iterable[bytes]) -> None:
        # Only before the head went out: once write() has sent it (with data), the length
        # of the iterable says nothing about the length of the body.
        if (
            not self.head_sent
            and isinstance(result, list | tuple)
            and len(result) == 1
            and self.status is not None
            and self.length is None
        ):
            # PEP 3333 "Handling the Content-Length Header": a one-item list has a known
            # length, so the server may send Content-Length instead of chunking.
            body = result[0]
            if type(body) is bytes:
                self.fields.append((b"Content-Length", str(len(body)).encode()))
        for chunk in result:
            if chunk:  # PEP 3333: an empty chunk must not trigger the headers
                self.write(chunk)
            elif type(chunk) is not bytes:
                raise TypeError(f"expected bytes from the iterable, got {type(chunk).__name__}")

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        """wsgi.file_wrapper's fast path: the kernel copies the file to the socket."""
        filelike = wrapper.filelike
        try:
            offset = filelike.tell()
            size = os.fstat(filelike.fileno()).st_size - offset
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False  # not a real file: plain iteration, PEP 3333 says it must work
        if self.status is None:
            raise AssertionError("the app returned before calling start_response()")
        count = size if self.length is None else min(size, int(self.length))
        if self.length is None:
            self.fields.append((b"Content-Length", str(count).encode()))
        self._send(self._head())
        framing = self.client.conn.send_file_data(count)
        if framing is None:  # HEAD, 204, 304: no body on the wire
            return True
        self.tracer.event(self.client.cid, ">", "wsgi", f"sendfile <{count} bytes>")
        before, after = framing
        self._send(before)
        sock = self.client.sock
        sock.settimeout(self.client.timeout)  # socket.sendfile() refuses a non-blocking one
        try:
            sock.sendfile(filelike, offset, count)
        except OSError as error:
            raise ClientGone(str(error)) from None
        finally:
            sock.setblocking(False)
        self._send(after)
        return True

    def _app_failed(self) -> None:
        """STYLE rule 8: details to wsgi.errors, a plain 500 to the client, never the
        traceback; if the response had started, all we can do is close."""
        print(
            f"wsgi: the application failed on {self.request.method.decode()} "
            f"{self.request.target.decode('latin-1')}:",
            file=sys.stderr,
        )
        traceback.print_exc(file=sys.stderr)
        if self.head_sent:
            return
        failure = LocalProtocolError("the application failed; see the server log")
        self._send_quietly(self.client.conn.error_response(failure))

    def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(ClientGone):
            self._send(data)


# ======================================================================================
# wsgi.input and wsgi.file_wrapper
# ======================================================================================
class InputStream:
    """wsgi.input: the request body, read from the socket only when the app asks.

    The first read sends "100 Continue" if the client waits for it (PEP 3333 "HTTP 1.1
    Expect/Continue": the server may wait for the app's first read). The body is already
    de-chunked by the core, and ends where the message ends: read() never blocks past it.
    """

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.buffer = bytearray()
        self.done = exchange.client.conn.their_state is not State.SEND_BODY

    def _fill(self) -> bool:
        """Append the next body piece to the buffer; False at the end of the body."""
        if self.done:
            return False
        client = self.exchange.client
        if client.conn.waiting_for_100_continue:
            self.exchange._send(client.conn.send(InformationalResponse(100)))
        event = _receive_event(client, self.exchange.tracer)
        if isinstance(event, Data):
            self.buffer += event.data
            return True
        self.done = True  # EndOfMessage
        return False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            size = len(self.buffer)
        while len(self.buffer) < size and self._fill():
            pass
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            limit = size if size is not None and size >= 0 else None
            if end != -1 and (limit is None or end < limit):
                return self.read(end + 1)
            if limit is not None and len(self.buffer) >= limit:
                return self.read(limit)
            if not self._fill():
                return self.read(len(self.buffer))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            # io's readlines() takes None as "no hint"; so do we.
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333 "Optional Platform-Specific File Handling"): iterates
    like ``iter(filelike.read, b"")`` anywhere, and lets this server use sendfile(2)."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.filelike.read(self.blksize):
            yield chunk

    def close(self) -> None:
        if hasattr(self.filelike, "close"):
            self.filelike.close()


# ======================================================================================
def load_app(spec: str) -> WSGIApp:
    """``module:attr`` -> the object, with a sentence instead of a traceback on a typo."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        app: WSGIApp = getattr(module, attr or "app")
    except (ImportError, AttributeError) as error:
        raise SystemExit(f"wsgi: cannot load the application {spec!r}: {error}") from None
    return app


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        "wsgi", "Era 3: the threaded WSGI server (PEP 3333)", default_app=Config.app
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=Config.threads,
        help="worker threads: requests running at once (default %(default)s)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=Config.backlog,
        help="complete requests waiting for a thread; past it, 503",
    )
    timeouts = ("idle_timeout", "request_timeout", "graceful_timeout")
    add_config_options(parser, Config, [(name, "seconds") for name in timeouts])
    args = parser.parse_args(argv)
    if args.threads < 1 or args.backlog < 1:
        # queue.Queue(maxsize=0) is unbounded, so --backlog 0 would mean "wait forever",
        # the opposite of the 503 policy; and --threads 0 would answer nobody. Both are
        # refused with a usage error (exit status 2).
        parser.error("--threads and --backlog must be at least 1")
    config = Config(**vars(args))
    return ThreadedServer(config, load_app(config.app)).serve_forever()


if __name__ == "__main__":
    sys.exit(main())
