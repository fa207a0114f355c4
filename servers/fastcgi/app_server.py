"""Era 2, the application's side: a long-running, threaded FastCGI application server.

``python -m servers fastcgi-app --bind 127.0.0.1:9000`` (or ``--bind /path/to/socket``,
or ``--port N`` as every server of ours takes it) serves a responder (``--app
MODULE:ATTR``, the family by default) or a WSGI application (``--wsgi MODULE:ATTR``) to
any FastCGI web server: nginx, cgi-fcgi, our gateway.

What lesson 1 paid for every request (fork, exec, interpreter start-up, imports) is paid
once here: the process stays, and requests arrive as records on sockets it keeps open::

    main thread             connection threads (one per socket)       worker pool
    -----------             -----------------------------------       -----------
    accept() ---------->    recv -> records -> ApplicationConnection
      allow-list (§3.2)       GET_VALUES, UNKNOWN_TYPE: answered here
      connection cap          RequestReady ---- admitted? ------------> runs the app:
                              StdinData  ---> the request's InputPipe ---> stdin.read()
                              AbortRequested -> END_REQUEST now            stdout.write()
                              <---------- STDOUT, END_REQUEST (under the connection's lock)

* **One thread per connection** reads records and never runs application code, so it can
  answer management records and aborts while the application works.
* **A bounded pool of worker threads** runs requests (``--threads``). At most
  ``--max-reqs`` requests are admitted at once (running or waiting for a worker); past it,
  END_REQUEST{OVERLOADED} (§5.5). At most ``--max-conns`` connections are served; past it
  a connection is still read, but every request on it is refused as OVERLOADED, so the web
  server learns why. GET_VALUES reports these two numbers and FCGI_MPXS_CONNS (§4.1), and
  they are the numbers enforced: the answer is true. (flup answers with its descriptor
  limit for both, "another made up number" times 5 when multiplexing, in its own words,
  and caps nothing behind them.)
* **The common case is cheap.** A web server sends a request without a body as one write
  (BEGIN_REQUEST, PARAMS, the empty STDIN): the reader hands the worker its params and
  its (empty) body whole, with no pipe between them, and the worker sends the response's
  last STDOUT bytes with END_REQUEST in one write. Sockets wait with the kernel's
  timeouts, not a poll() before each call (:func:`kernel_timeouts`). With the codec's own
  shortcuts (records.py), they cut the CPU time of a small request behind nginx from about
  180 µs to about 70 (measured on a 2-CPU VM, ``make bench``'s fastcgi-nginx-vs-flup).
* **Multiplexing** (several requests interleaved on one connection, §3.3) is supported:
  the workers of one connection serialise their writes with the connection's lock, so
  records never interleave mid-record. Its known weakness is kept visible rather than
  hidden: FastCGI has no flow control per request, so when one request's STDIN buffer is
  full (``stdin_buffer``), the connection's reader waits, and every request on that
  connection waits with it (head-of-line blocking; Jetty dropped multiplexing for this,
  jetty#2095). nginx never multiplexes, so it never meets this.

House rules:

1. A peer that breaks the protocol loses its connection, and only that one.
2. An application error before any output becomes a 500 CGI response (the details go to
   our stderr, never to the client); after output started, the response is cut short.
3. Signal handlers only set a flag; a wakeup pipe brings the main loop round (as cgi.py).
   SIGTERM: stop accepting, close idle connections, let in-flight requests finish for
   ``graceful_timeout`` seconds, exit 0 (spec §7: SIGTERM asks the application to exit).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ..cli import add_config_options
from ..http.events import NEED_DATA
from ..trace import Tracer, next_connection_id
from .protocol import (
    AbortRequested,
    ApplicationConnection,
    ConnectionEnded,
    RequestKey,
    RequestReady,
    StdinData,
    StdinEnded,
)
from .records import (
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    FastCGIError,
    ProtocolStatus,
    RecordType,
)
from .responder import RequestStreams, Runner, runner_for
from .trace import RecordTracer

__all__ = ["Config", "main", "parse_bind"]

DEFAULT_APP = "apps.responder:respond"
# Variables an application must never see, whatever the web server sent: HTTP_PROXY is
# httpoxy (it hit FastCGI too: mod_fcgid CVE-2016-1000104, HHVM CVE-2016-1000109), and
# nginx passes Content-Type/-Length headers as HTTP_* besides CONTENT_* (CGI §4.1.18).
UNSAFE_PARAMS = ("HTTP_PROXY", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE")


@dataclass(frozen=True)
class Config:
    bind: str = "127.0.0.1:9000"  # HOST:PORT, or the path of a Unix socket
    app: str = DEFAULT_APP
    kind: str = "responder"  # or "wsgi"
    threads: int = 32  # workers; the demo's 32 concurrent /sleep fit at once
    max_reqs: int = 64  # admitted at once: running, or queued for a worker
    max_conns: int = 64  # served connections; libfcgi has no cap (see specs.md §2.10)
    multiplex: bool = True
    graceful_timeout: float = 3.0  # after SIGTERM, for in-flight requests (hypercorn: 3 s)
    io_timeout: float = 60.0  # a stalled record or write (nginx fastcgi_*_timeout: 60 s)
    stdin_buffer: int = 256 * 1024  # a request's unread body, before the reader waits
    trace: bool = False


def parse_bind(text: str) -> tuple[str, int] | str:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); anything with a "/" -> a path."""
    if "/" in text:
        return text
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"--bind {text!r}: expected HOST:PORT or a Unix socket path")
    return host.strip("[]") or "127.0.0.1", int(port)


def allowed_addresses() -> frozenset[str] | None:
    """§3.2: FCGI_WEB_SERVER_ADDRS, comma-separated; unset means any peer may connect."""
    text = os.environ.get("FCGI_WEB_SERVER_ADDRS")
    if text is None:
        return None
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Bound every recv() and send() on ``sock`` by ``seconds``, with the kernel's timers.

    ``sock.settimeout()`` would do the same in Python's way: a poll() before every recv()
    and send(), two system calls (and two trips through the GIL) where one does, on every
    request. SO_RCVTIMEO and SO_SNDTIMEO (socket(7)) make the blocking call itself give
    up: it fails with EAGAIN, which Python raises as BlockingIOError, and that is the
    timeout."""
    interval = struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))  # a timeval
    sock.settimeout(None)  # blocking: the calls wait in the kernel, never in poll()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)


def name_for_the_kernel(name: str) -> None:
    """Show a thread's name in ps, top and /proc (lesson 2's ``procs`` step), not only in
    Python. Python 3.11 keeps thread names to itself, so the kernel calls every thread of
    the process "python"; a thread may name itself by writing /proc/thread-self/comm,
    in at most 15 bytes: "fastcgi-worker-12" becomes "fcgi-worker-12"."""
    try:
        with open("/proc/thread-self/comm", "w") as comm:
            comm.write(name.replace("fastcgi-", "fcgi-")[:15])
    except OSError:
        pass  # not Linux, or no /proc: the names stay Python's own


# ======================================================================================
# The worker pool
# ======================================================================================
class WorkerPool:
    """``size`` daemon threads taking jobs from a queue; ``admit`` bounds the jobs in the
    system (running + queued) to ``limit``, so the queue can never grow without bound.
    Daemon threads: a request stuck past the graceful stop must not keep the process alive."""

    def __init__(self, size: int, limit: int) -> None:
        self.limit = limit
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.in_flight = 0
        for number in range(1, size + 1):
            name = f"fastcgi-worker-{number}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def admit(self) -> bool:
        with self._lock:
            if self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _work(self) -> None:
        name_for_the_kernel(threading.current_thread().name)
        while True:
            self._jobs.get()()


class Job:
    """One admitted request: its params, its streams, and whether it was aborted.
    ``body`` is the whole body if it arrived with the params (see RequestStreams)."""

    def __init__(
        self, connection: Connection, ready: RequestReady, stdin_buffer: int, body: bytes | None
    ) -> None:
        self.connection = connection
        self.key = ready.key
        self.params = ready.params.copy()
        for name in UNSAFE_PARAMS:
            self.params.pop(name, None)
        self.aborted: str | None = None
        self.streams = RequestStreams(
            stdin_buffer, lambda stream, data: connection.output(self, stream, data), body
        )

    def abort(self, reason: str) -> None:
        self.aborted = self.aborted or reason
        self.streams.fail(self.aborted)


# ======================================================================================
# One connection from a web server
# ======================================================================================
class Connection:
    def __init__(self, server: ApplicationServer, sock: socket.socket, refusing: bool) -> None:
        self.server = server
        self.sock = sock
        self.cid = next_connection_id()
        config = server.config
        self.proto = ApplicationConnection(
            server.values,
            # Past the connection cap every request is refused: no request may be active.
            max_requests=0 if refusing else (config.max_reqs if config.multiplex else 1),
        )
        self.refusing = refusing
        # Protocol state and socket writes, in one order. A worker holds it through its
        # sendall(), so records of two requests never interleave mid-record (§3.3).
        self.lock = threading.Lock()
        self.jobs: dict[RequestKey, Job] = {}
        self.broken = False  # a write failed: the peer is gone
        self.closing = False  # close once the last active request has ended
        kernel_timeouts(sock, config.io_timeout)
        if sock.family != socket.AF_UNIX:
            # A streamed response is several writes: with Nagle's algorithm each one after
            # the first waits for the ACK of the one before, which the web server delays
            # by up to 40 ms. Measured: 44 ms per request before this line.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- the reader thread ------------------------------------------------------------------
    def run(self) -> None:
        name_for_the_kernel(threading.current_thread().name)
        tracer = self.server.records
        reason, linger = "closed by the web server", False
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:  # SO_RCVTIMEO passed: see kernel_timeouts()
                    if self.proto.buffering:
                        raise FastCGIError("a record stalled half-way") from None
                    if self.closing:
                        reason = "the web server did not close after our last answer"
                        break
                    continue  # an idle kept connection: the web server decides (§3.5)
                tracer.wire(self.cid, "<", data)
                if data and not self._receive(data):
                    reason, linger = "done: FCGI_KEEP_CONN was clear, or we are stopping", True
                    break
                if not data:
                    self._receive(data)
                    break
        except FastCGIError as error:
            # Rule 1: the peer broke the protocol; this connection ends, the others go on.
            reason, linger = f"protocol error: {error}", True
            print(f"fastcgi-app: c{self.cid}: {error}; closing", file=sys.stderr)
        except OSError as error:
            reason = f"socket error: {error}"
        finally:
            self._close(reason, linger)

    def _receive(self, data: bytes) -> bool:
        """Feed bytes, handle the events; False when the connection is over.

        A request whose params end in this chunk is started at the end of the chunk, not
        at once: if its whole body (usually none: the empty STDIN record) is in the same
        chunk, the worker gets the body whole, without a pipe between the two threads."""
        events = []
        with self.lock:
            self.proto.receive_data(data)
            while (event := self.proto.next_event()) is not NEED_DATA:
                events.append(event)
                if isinstance(event, ConnectionEnded):
                    break
            self._send_locked(self.proto.data_to_send())
        # Ready in this chunk, body still coming: the params and the body pieces so far.
        arriving: dict[RequestKey, tuple[RequestReady, list[bytes]]] = {}
        for event in events:  # outside the lock: putting STDIN may wait (backpressure)
            if isinstance(event, ConnectionEnded):
                return False
            if isinstance(event, RequestReady):
                arriving[event.key] = (event, [])
            elif isinstance(event, StdinData):
                if event.key in arriving:
                    arriving[event.key][1].append(event.data)
                elif (job := self.jobs.get(event.key)) is not None:
                    job.streams.put(event.data)
            elif isinstance(event, StdinEnded):
                if event.key in arriving:
                    ready, pieces = arriving.pop(event.key)
                    self._start(ready, b"".join(pieces))
                elif (job := self.jobs.get(event.key)) is not None:
                    job.streams.end_input()
            elif isinstance(event, AbortRequested):
                arriving.pop(event.key, None)  # aborted before it started: never run
                self._abort(event.key)
        for ready, pieces in arriving.values():  # the rest of the body is on its way
            job = self._start(ready, None)
            for piece in pieces:
                if job is not None:
                    job.streams.put(piece)
        with self.lock:
            return not self._must_close_locked() or bool(self.proto.active_count)

    def _start(self, ready: RequestReady, body: bytes | None) -> Job | None:
        pool = self.server.pool
        if self.server.stopping or not pool.admit():
            self.server.tracer.note(self.cid, f"request {ready.key.request_id}: OVERLOADED")
            with self.lock:
                refusal = self.proto.end_request(ready.key, 0, ProtocolStatus.OVERLOADED)
                self._send_locked(refusal)
            return None
        job = Job(self, ready, self.server.config.stdin_buffer, body)
        self.jobs[ready.key] = job
        pool.submit(lambda: self.server.run_job(job))
        return job

    def _abort(self, key: RequestKey) -> None:
        """§5.4: END_REQUEST goes now, even if the app is still busy; whatever the app
        writes afterwards is dropped, and its next read or write raises."""
        job = self.jobs.get(key)
        if job is not None:
            job.abort("the web server aborted the request (FCGI_ABORT_REQUEST)")
        self.server.tracer.note(self.cid, f"request {key.request_id} aborted: END_REQUEST now")
        self.finish(key, 0)

    # -- called by workers ------------------------------------------------------------------
    def output(self, job: Job, stream: RecordType, data: bytes) -> None:
        if job.aborted or self.broken:
            raise ConnectionAbortedError(job.aborted or "the web server closed the connection")
        with self.lock:
            if stream is RecordType.STDOUT:
                self._send_locked(self.proto.stdout(job.key, data))
            else:
                self._send_locked(self.proto.stderr(job.key, data))

    def finish(self, key: RequestKey, app_status: int, last_output: bytes = b"") -> None:
        """The last STDOUT bytes and END_REQUEST, in one write (if the request is still
        current), then close if it is time to."""
        self.jobs.pop(key, None)
        with self.lock:
            try:
                # Both are empty for a request that is no longer current (aborted).
                tail = self.proto.stdout(key, last_output)
                self._send_locked(tail + self.proto.end_request(key, app_status))
            except OSError:
                pass  # the peer is gone; _send_locked marked the connection broken
            if self._must_close_locked() and not self.proto.active_count:
                # §3.5: FCGI_KEEP_CONN clear (or we are stopping): our side ends here. Only
                # the write half: the reader sees the web server close, then closes too.
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)

    def _must_close_locked(self) -> bool:
        refused_once = self.refusing and self.proto.refused > 0
        return self.proto.must_close or self.closing or refused_once

    def _send_locked(self, data: bytes) -> None:
        if not data or self.broken:
            return
        self.server.records.wire(self.cid, ">", data)
        try:
            self.sock.sendall(data)
        except OSError:
            self.broken = True
            raise

    def drain(self) -> None:
        """Graceful stop: an idle connection closes now, a busy one after its last request."""
        with self.lock:
            self.closing = True
            if not self.proto.active_count:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)

    def _close(self, reason: str, linger: bool) -> None:
        for job in list(self.jobs.values()):
            job.abort("the web server closed the connection")
        with self.lock:
            self.broken = True
        if linger:
            # Closing with unread bytes makes the kernel send a reset, which can destroy
            # our last answer (an END_REQUEST) before the web server reads it. So: send
            # FIN, read what is still coming for a moment, then close.
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
                self.sock.settimeout(1.0)
                deadline = time.monotonic() + 2.0
                while self.sock.recv(65536) and time.monotonic() < deadline:
                    pass
        self.server.tracer.closed(self.cid, f"({reason})")
        self.server.records.forget(self.cid)
        self.server.forget(self)
        self.sock.close()


# ======================================================================================
# The server
# ======================================================================================
class ApplicationServer:
    def __init__(self, config: Config, runner: Runner) -> None:
        self.config = config
        self.runner = runner
        # "app" on every line: under the gateway, both sides trace into the same terminal.
        self.tracer = Tracer(config.trace, prefix="app ")
        self.records = RecordTracer(self.tracer)
        self.pool = WorkerPool(config.threads, config.max_reqs)
        self.allowed = allowed_addresses()
        # §4.1: the answers to GET_VALUES; the same numbers are enforced below.
        self.values = {
            FCGI_MAX_CONNS: str(config.max_conns).encode(),
            FCGI_MAX_REQS: str(config.max_reqs).encode(),
            FCGI_MPXS_CONNS: b"1" if config.multiplex else b"0",
        }
        self.connections: set[Connection] = set()
        self._lock = threading.Lock()
        self.stopping = False
        self.address = parse_bind(config.bind)
        if isinstance(self.address, str):
            path = Path(self.address)
            if path.is_socket():
                path.unlink()  # a stale socket of an earlier run
            # The socket file gets the umask's mode: a web server running as another user
            # (nginx's workers as "nobody") needs write permission on it; loosen it with
            # care (specs.md §2.10: whoever can connect can run requests), or use TCP.
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.address)
            self.listener.listen(1024)
        else:
            self.listener = socket.create_server(self.address, backlog=1024)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True  # rule 3: a flag, nothing else

    def serve_forever(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        self.listener.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        self._ready_line()
        while not self.stopping:
            for key, _ in selector.select(timeout=1.0):
                if key.fileobj == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                else:
                    self._accept_all()
        selector.close()
        return self._shutdown()

    def _ready_line(self) -> None:
        if isinstance(self.address, str):
            where = f"unix:{self.address}"
        else:
            host, port = self.listener.getsockname()[:2]
            where = f"fastcgi://{f'[{host}]' if ':' in host else host}:{port}/"
        print(f"gatewaylab fastcgi-app ready on {where} (pid {os.getpid()})", flush=True)

    def _accept_all(self) -> None:
        while True:
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE and friends: say so, keep serving
                print(f"fastcgi-app: accept failed: {error}", file=sys.stderr)
                return
            tcp = sock.family != socket.AF_UNIX
            if self.allowed is not None and tcp and peer[0] not in self.allowed:
                # §3.2: a peer not on FCGI_WEB_SERVER_ADDRS is closed on at once.
                self.tracer.note(0, f"refused {peer[0]}: not in FCGI_WEB_SERVER_ADDRS")
                sock.close()
                continue
            with self._lock:
                served = sum(not c.refusing for c in self.connections)
                if len(self.connections) >= 2 * self.config.max_conns:
                    sock.close()  # refusing politely has its own cap
                    continue
                connection = Connection(self, sock, refusing=served >= self.config.max_conns)
                self.connections.add(connection)
            note = " (over FCGI_MAX_CONNS: its requests get OVERLOADED)" * connection.refusing
            where = f"{peer[0]}:{peer[1]}" if tcp else "unix socket"
            self.tracer.note(connection.cid, f"open {where}{note}")
            name = f"fastcgi-conn-{connection.cid}"
            threading.Thread(target=connection.run, name=name, daemon=True).start()

    def forget(self, connection: Connection) -> None:
        with self._lock:
            self.connections.discard(connection)

    def run_job(self, job: Job) -> None:
        """One request in a worker thread: the app, its 500 if it fails early, END_REQUEST."""
        connection = job.connection
        if self.tracer.enabled:  # the f-string costs as much as a small request's routing
            worker = threading.current_thread().name
            self.tracer.note(connection.cid, f"request {job.key.request_id} -> {worker}")
        app_status: object = 1  # what a runner returns is checked, not trusted
        streams = job.streams
        last_output = b""
        try:
            app_status = self.runner(job.params, streams)
            last_output = streams.finish_output()
        except Exception as error:
            if not (job.aborted or connection.broken):
                self._app_failed(job, error)
        finally:
            if not isinstance(app_status, int):  # STYLE rule 9: say what broke the contract
                message = f"the app returned {app_status!r}; expected an int exit status"
                print(f"fastcgi-app: {message}", file=sys.stderr)
                app_status = 1
            connection.finish(job.key, app_status, last_output)
            streams.discard()
            streams.close()
            self.pool.release()

    def _app_failed(self, job: Job, error: Exception) -> None:
        # Rule 2: the traceback is for our log; the web server's log gets one line on STDERR.
        print(f"fastcgi-app: request {job.key.request_id} failed:", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)
        streams = job.streams
        with contextlib.suppress(OSError, ValueError):
            streams.stdout.flush()
            if not streams.output_started:
                body = b"500 Internal Server Error: the application failed.\n"
                streams.stdout.write(
                    b"Status: 500 Internal Server Error\r\nContent-Type: text/plain; "
                    b"charset=utf-8\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                streams.stdout.flush()
            streams.stderr.write(f"fastcgi-app: the application raised {type(error).__name__}\n")
            streams.stderr.flush()

    def _shutdown(self) -> int:
        """Rule 3: no new connections; idle ones close now, busy ones after their requests."""
        self.listener.close()
        if isinstance(self.address, str):
            with contextlib.suppress(OSError):
                os.unlink(self.address)
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            connection.drain()
        deadline = time.monotonic() + self.config.graceful_timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.connections:
                    break
            time.sleep(0.02)
        return 0


# ======================================================================================
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servers fastcgi-app",
        description="Era 2, application side: a threaded FastCGI application server",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--bind", help=f"HOST:PORT or a Unix socket path (default {Config.bind})")
    where.add_argument(
        "--port", type=int, help="as every server takes it: --bind HOST:PORT; 0 picks a free one"
    )
    parser.add_argument("--host", default="127.0.0.1", help="with --port (default %(default)s)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--app", help=f"a CGI-style responder MODULE:ATTR (default {DEFAULT_APP})")
    kind.add_argument("--wsgi", help="a WSGI application MODULE:ATTR, e.g. apps.wsgi:app")
    add_config_options(
        parser,
        Config,
        (
            ("threads", "worker threads"),
            ("max_reqs", "requests admitted at once (FCGI_MAX_REQS); past it, OVERLOADED"),
            ("max_conns", "connections served at once (FCGI_MAX_CONNS)"),
            ("graceful_timeout", "seconds in-flight requests get after SIGTERM"),
        ),
    )
    parser.add_argument(
        "--no-multiplex",
        action="store_true",
        help="one request per connection at a time (FCGI_MPXS_CONNS=0, as libfcgi)",
    )
    parser.add_argument("--trace", action="store_true", help="print every record (to stderr)")
    args = parser.parse_args(argv)
    bind = args.bind or Config.bind
    if args.port is not None:
        bind = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    try:
        parse_bind(bind)
    except ValueError as error:
        parser.error(str(error))
    config = Config(
        bind=bind,
        app=args.wsgi or args.app or DEFAULT_APP,
        kind="wsgi" if args.wsgi else "responder",
        threads=args.threads,
        max_reqs=args.max_reqs,
        max_conns=args.max_conns,
        multiplex=not args.no_multiplex,
        graceful_timeout=args.graceful_timeout,
        trace=args.trace,
    )
    try:
        runner = runner_for(config.kind, config.app)
    except (ImportError, AttributeError, ValueError, TypeError) as error:
        parser.error(f"cannot load {config.app}: {error}")
    return ApplicationServer(config, runner).serve_forever()


if __name__ == "__main__":
    sys.exit(main())
