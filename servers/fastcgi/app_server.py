"""Era 2, the application's side: a long-running, threaded FastCGI application server.

``python -m servers fastcgi-app --bind 127.0.0.1:9000`` (or ``--bind /path/to/socket``,
or ``--port N`` as every server of ours takes it) serves a responder (``--app
MODULE:ATTR``, the family by default) or a WSGI application (``--wsgi MODULE:ATTR``) to
any FastCGI web server: nginx, cgi-fcgi, our gateway.

What lesson 1 paid for every request (fork, exec, interpreter start-up, imports) is paid
once here: the process stays, and requests arrive as records on sockets it keeps open::

    main thread        the pool: up to --threads + 1 threads, taking turns (WorkerPool)
    -----------        ------------------------------------------------------------
    accept() ------>   one epoll for every connection
      allow-list         the leader: epoll.poll() -> a readable connection
      (§3.2)               recv -> records -> ApplicationConnection
      connection cap         GET_VALUES, UNKNOWN_TYPE: answered here
                             AbortRequested -> END_REQUEST now
                             StdinData -> the request's InputPipe
                           re-arm the connection (someone reads it again from now on)
                           RequestReady, admitted -> the leader runs the app itself:
                             stdin.read(), stdout.write()
                             -> STDOUT, END_REQUEST (under the connection's lock)
                         busy past PROMOTE_AFTER? the watch thread makes a follower
                         the leader; the old one finishes its request, then follows

* **Leader and followers.** One thread of the pool at a time waits for records on every
  connection; the one that reads a complete request runs it itself, so a request never
  changes threads (handing each one from a reader thread to a worker thread cost a fifth
  to a quarter of the server's CPU time per request). The connection is read again
  before the application starts, and a follower takes over reading if the leader stays
  busy, so management records and aborts are still answered while the application works.
* **A bounded pool** runs requests: at most ``--threads`` at once, so that one thread is
  always left to read. At most ``--max-reqs`` requests are admitted at once (running or
  waiting for a thread); past it, END_REQUEST{OVERLOADED} (§5.5). At most
  ``--max-conns`` connections are served; past it a connection is still read, but every
  request on it is refused as OVERLOADED, so the web server learns why. GET_VALUES
  reports these two numbers and FCGI_MPXS_CONNS (§4.1), and they are the numbers
  enforced: the answer is true. (flup answers with its descriptor limit for both,
  "another made up number" times 5 when multiplexing, in its own words, and caps nothing
  behind them.)
* **The common case is cheap.** A web server sends a request without a body as one write
  (BEGIN_REQUEST, PARAMS, the empty STDIN): the application gets its params and its
  (empty) body whole, with no pipe to fill, and the response's last STDOUT bytes leave
  with END_REQUEST in one write. A read starts only when epoll says bytes are there;
  writes wait with the kernel's timeouts, not a poll() before each call
  (:func:`kernel_timeouts`); a record stalled half-way is found by the watch thread's
  sweep. With the codec's own shortcuts (records.py), they cut the CPU time of a small
  request behind nginx from about 180 µs to about 70 (measured on a 2-CPU VM, ``make
  bench``'s fastcgi-nginx-vs-flup); leader and followers cut another fifth (measured as
  the comments at BATCH and PROMOTE_AFTER say).
* **Multiplexing** (several requests interleaved on one connection, §3.3) is supported:
  the threads running one connection's requests serialise their writes with the
  connection's lock, so records never interleave mid-record. Its known weakness is kept
  visible rather than hidden: FastCGI has no flow control per request, so when one
  request's STDIN buffer is full (``stdin_buffer``), the thread reading that connection
  waits, and every request on that connection waits with it (head-of-line blocking; Jetty
  dropped multiplexing for this, jetty#2095). nginx never multiplexes, so it never meets
  this.

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
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
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

    The pool reads a connection only when epoll says bytes are there, so it is the sends
    that this bounds (a web server that stops reading our answers), and the rare recv()
    woken for nothing. ``sock.settimeout()`` would do the same in Python's way: a poll()
    before every recv() and send(), two system calls (and two trips through the GIL) where
    one does, on every request. SO_RCVTIMEO and SO_SNDTIMEO (socket(7)) make the blocking
    call itself give up: it fails with EAGAIN, which Python raises as BlockingIOError, and
    that is the timeout. A record stalled half-way is the watch thread's to find
    (Connection.expire)."""
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
# The worker pool: leader and followers
# ======================================================================================
# Connections taken from one epoll wait: under load, one wait (and one trip through the
# GIL) serves many connections. Measured behind nginx at 50 connections: taken one at a
# time, nginx's share of a request grew by half, as it met our answers one by one.
BATCH = 16
# How long the leader may go without progress (reading a connection, starting a request)
# before a follower takes over reading. While the leader is busy, the watch thread looks
# this often, and each look is a trip through the GIL: behind nginx, a request cost the
# server 94 µs of CPU with 1 ms, 83 with 5 ms. 5 ms is also the most that a slow request
# can delay the reading of the others, far below what a person notices.
PROMOTE_AFTER = 0.005
SWEEP_EVERY = 1.0  # seconds between two looks for stalled connections (io_timeout)
ARMED = select.EPOLLIN | select.EPOLLONESHOT


class WorkerPool:
    """Up to ``size`` + 1 daemon threads, started as the load needs them, that take turns
    reading every connection and running requests; ``admit`` bounds the requests in the
    system (running + queued) to ``limit``.

    **Leader and followers** (Schmidt et al., "Leader/Followers", PLoP 2000). One thread
    at a time, the *leader*, waits in epoll for connections with bytes to read, reads
    them and handles their records. The requests that completes, the leader runs itself,
    one after the other: no other thread is woken and no request changes hands. Before,
    a reader thread per connection handed each request to a pool's worker thread; behind
    nginx that server spent 108 µs of CPU per request, this one 83 (the same codec, the
    same run: two threads woken per request, and the GIL passed between them, cost more
    than the application's own work). The other threads, the *followers*, wait.

    **Reading never stops for long.** A connection is re-armed (EPOLLONESHOT: reported to
    one thread, then not again until re-armed) as soon as its bytes are consumed,
    *before* its request runs. If the leader makes no progress for ``PROMOTE_AFTER`` (a
    slow request, a full STDIN pipe), the watch thread makes a follower the leader, so
    management records, ABORT_REQUEST and new requests on every connection are read
    within milliseconds, as a dedicated reader thread would read them; the followers
    also take the requests still queued. A fast request (most of them) ends long before:
    then no follower is ever woken.

    At most ``size`` requests run at once, so one thread is always left to lead.
    Daemon threads: a request stuck past the graceful stop must not keep the process alive.
    """

    def __init__(self, size: int, limit: int, sweep: Callable[[float], None]) -> None:
        self.size = size
        self.limit = limit
        self.in_flight = 0  # admitted: running or queued
        self._sweep = sweep  # the server's look for stalled connections, every SWEEP_EVERY
        self._epoll = select.epoll()
        self._connections: dict[int, Connection] = {}  # by file descriptor
        self._lock = threading.Lock()
        self._followers = threading.Condition(self._lock)  # waiting to lead, or for a job
        self._watching = threading.Condition(self._lock)  # the watch thread, idle
        self._jobs: deque[Callable[[], None]] = deque()  # admitted, waiting for a thread
        self._running = 0  # requests running now
        self._leader: int | None = None  # the leading thread's ident
        self._busy_since: float | None = None  # the leader stopped waiting in epoll then
        self._watch_parked = False
        self._threads = 0  # started so far: the pool grows as the load needs (see _wake)
        self._waiting = 0  # followers waiting to be woken
        with self._lock:
            self._wake(1)  # the first leader
        threading.Thread(target=self._watch, name="fastcgi-watch", daemon=True).start()

    # -- admission, as before -------------------------------------------------------------
    def admit(self) -> bool:
        with self._lock:
            if self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    # -- connections ----------------------------------------------------------------------
    def watch(self, connection: Connection) -> None:
        """Start reading a new connection (from the accepting thread)."""
        fd = connection.sock.fileno()
        self._connections[fd] = connection
        self._epoll.register(fd, ARMED)

    def forget(self, connection: Connection) -> None:
        """Before the socket closes: its descriptor number may be reused at once."""
        fd = connection.sock.fileno()
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)
        self._connections.pop(fd, None)

    # -- the threads ----------------------------------------------------------------------
    def _wake(self, count: int) -> None:
        """Wake ``count`` followers (the lock is held), starting the threads that are
        missing, up to ``size`` + 1 in all. The pool grows with the load, as flup's does
        (flup also ends threads that stay idle; ours keeps them, which is simpler): a server
        that never has two requests at once runs on one thread, and lesson 5 can count a
        thread per waiting request."""
        woken = min(count, self._waiting)
        self._waiting -= woken
        self._followers.notify(woken)
        for _ in range(min(count - woken, self.size + 1 - self._threads)):
            self._threads += 1
            name = f"fastcgi-worker-{self._threads}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        name_for_the_kernel(threading.current_thread().name)
        me = threading.get_ident()
        while True:
            with self._lock:
                while True:
                    if self._leader is None:  # reading first: it keeps every request moving
                        self._leader = me
                        job = None
                        break
                    if self._jobs and self._running < self.size:
                        self._running += 1
                        job = self._jobs.popleft()
                        break
                    self._waiting += 1  # _wake() counts it down when it wakes us
                    self._followers.wait()
            if job is None:
                self._lead(me)
            else:
                self._run(job)

    def _lead(self, me: int) -> None:
        """Wait for a connection, read it, run what it completed; until demoted."""
        while self._leader == me:
            events = self._epoll.poll(SWEEP_EVERY, BATCH)  # the GIL is released meanwhile
            if not events:
                continue
            with self._lock:
                self._busy_since = time.monotonic()
                if self._watch_parked:  # the watch thread waits for a busy leader
                    self._watching.notify()
            # First read every connection that epoll reported, re-arming each: none waits
            # behind a request that turns out to be slow. Then run what they completed.
            jobs: list[tuple[Callable[[], None], bool]] = []
            for index, (fd, _) in enumerate(events):
                if self._leader != me:
                    # Demoted while reading (a connection's close lingers, a request's
                    # STDIN pipe is full): the connections not read yet go back to
                    # epoll, still readable, for the new leader.
                    for unread, _ in events[index:]:
                        with contextlib.suppress(OSError):
                            self._epoll.modify(unread, ARMED)
                    break
                self._busy_since = time.monotonic()  # progress: see _watch
                connection = self._connections.get(fd)
                started = connection.readable() if connection is not None else None
                if started is not None:  # None: the connection closed and was forgotten
                    with contextlib.suppress(OSError):
                        self._epoll.modify(fd, ARMED)
                    jobs += started
            if jobs:
                self._run_here(me, jobs)
            with self._lock:
                if self._leader == me:  # not demoted meanwhile: idle again, in epoll
                    self._busy_since = None

    def _run_here(self, me: int, jobs: list[tuple[Callable[[], None], bool]]) -> None:
        """Queue the requests, then run them here one after the other while this thread
        still leads. A follower is woken only for a request whose body is still coming
        (it would hold the leader until its STDIN records come), or by the watch thread
        if the leader stays busy: then the followers take what is still queued."""
        with self._lock:
            for job, whole in jobs:
                self._jobs.append(job)
                if not whole:
                    self._wake(1)
        while True:
            with self._lock:
                if self._leader != me:
                    self._wake(len(self._jobs))  # demoted: they take the rest
                    return
                if not self._jobs or self._running >= self.size:
                    return  # a thread that finishes a request takes the next (_run)
                self._running += 1
                job = self._jobs.popleft()
                self._busy_since = time.monotonic()  # progress: see _watch
            self._run(job, wake=False)

    def _run(self, job: Callable[[], None], wake: bool = True) -> None:
        try:
            job()
        finally:
            with self._lock:
                self._running -= 1
                if wake and self._jobs:
                    self._wake(1)  # one was waiting for a free thread

    def _watch(self) -> None:
        """Promote a follower when the leader is busy for long; sweep stalled connections."""
        name_for_the_kernel(threading.current_thread().name)
        next_sweep = time.monotonic() + SWEEP_EVERY
        with self._lock:
            while True:
                now = time.monotonic()
                if now >= next_sweep:
                    self._lock.release()
                    try:
                        self._sweep(now)
                    finally:
                        self._lock.acquire()
                    next_sweep = now + SWEEP_EVERY
                busy_since = self._busy_since
                if busy_since is None:
                    self._watch_parked = True  # the leader wakes us when it gets busy
                    self._watching.wait(max(next_sweep - now, 0.0))
                    self._watch_parked = False
                elif now - busy_since >= PROMOTE_AFTER:
                    # The leader is running a request (or waiting on one): a follower
                    # leads from now on; the old leader becomes a follower when done.
                    self._leader = None
                    self._busy_since = None
                    # One follower leads; as many more as there are queued requests.
                    self._wake(1 + len(self._jobs))
                else:
                    self._watching.wait(PROMOTE_AFTER - (now - busy_since))


class Job:
    """One admitted request: its params, its streams, and whether it was aborted.
    ``body`` is the whole body if it arrived with the params (see RequestStreams)."""

    __slots__ = ("aborted", "connection", "key", "params", "streams")  # one per request

    def __init__(
        self, connection: Connection, ready: RequestReady, stdin_buffer: int, body: bytes | None
    ) -> None:
        self.connection = connection
        self.key = ready.key
        # The protocol hands the request's params over and never touches them again, so
        # they are the application's own, no copy needed; only the unsafe ones go.
        self.params = ready.params
        for name in UNSAFE_PARAMS:
            if name in self.params:
                del self.params[name]
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
        self.last_input = time.monotonic()  # for expire()
        self.expired: str | None = None  # why expire() shut the connection down
        kernel_timeouts(sock, config.io_timeout)
        if sock.family != socket.AF_UNIX:
            # A streamed response is several writes: with Nagle's algorithm each one after
            # the first waits for the ACK of the one before, which the web server delays
            # by up to 40 ms. Measured: 44 ms per request before this line.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- reading, by whichever thread of the pool leads -----------------------------------
    def readable(self) -> list[tuple[Callable[[], None], bool]] | None:
        """Read what epoll says has arrived; handle it. Returns the requests it completed
        (each to run, and whether its whole body is here), or None once the connection is
        closed. One thread at a time runs this for a connection (EPOLLONESHOT)."""
        reason, linger = "closed by the web server", False
        try:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:  # readable, yet nothing: nothing to do
                return []
            self.server.records.wire(self.cid, "<", data)
            self.last_input = time.monotonic()
            if data:
                jobs: list[tuple[Callable[[], None], bool]] = []
                if self._receive(data, jobs):
                    return jobs
                reason, linger = "done: FCGI_KEEP_CONN was clear, or we are stopping", True
            else:
                self._receive(data, [])
            if self.expired:
                reason = self.expired
        except FastCGIError as error:
            # Rule 1: the peer broke the protocol; this connection ends, the others go on.
            reason, linger = f"protocol error: {self.expired or error}", True
            print(f"fastcgi-app: c{self.cid}: {self.expired or error}; closing", file=sys.stderr)
        except OSError as error:
            reason = f"socket error: {error}"
        self._close(reason, linger)
        return None

    def expire(self, now: float, timeout: float) -> None:
        """Called every second by the pool's watch thread (io_timeout, ``Config``): a record
        begun and not finished, or no close from the web server after our last answer,
        ends the connection. Shutting the socket down wakes whichever thread reads it."""
        if now - self.last_input < timeout:
            return
        if self.proto.buffering:
            self.expired = "a record stalled half-way"
        elif self.closing and not self.proto.active_count:
            self.expired = "the web server did not close after our last answer"
        else:
            return  # an idle kept connection: the web server decides when it ends (§3.5)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _receive(self, data: bytes, jobs: list[tuple[Callable[[], None], bool]]) -> bool:
        """Feed bytes, handle the events, add the requests started to ``jobs``; False when
        the connection is over.

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
                    self._start(ready, b"".join(pieces), jobs)
                elif (job := self.jobs.get(event.key)) is not None:
                    job.streams.end_input()
            elif isinstance(event, AbortRequested):
                arriving.pop(event.key, None)  # aborted before it started: never run
                self._abort(event.key)
        for ready, pieces in arriving.values():  # the rest of the body is on its way
            job = self._start(ready, None, jobs)
            for piece in pieces:
                if job is not None:
                    job.streams.put(piece)
        with self.lock:
            return not self._must_close_locked() or bool(self.proto.active_count)

    def _start(
        self, ready: RequestReady, body: bytes | None, jobs: list[tuple[Callable[[], None], bool]]
    ) -> Job | None:
        pool = self.server.pool
        if self.server.stopping or not pool.admit():
            self.server.tracer.note(self.cid, f"request {ready.key.request_id}: OVERLOADED")
            with self.lock:
                refusal = self.proto.end_request(ready.key, 0, ProtocolStatus.OVERLOADED)
                self._send_locked(refusal)
            return None
        job = Job(self, ready, self.server.config.stdin_buffer, body)
        self.jobs[ready.key] = job
        jobs.append((lambda: self.server.run_job(job), body is not None))
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
        self.allowed = allowed_addresses()
        # §4.1: the answers to GET_VALUES; the same numbers are enforced below.
        self.values = {
            FCGI_MAX_CONNS: str(config.max_conns).encode(),
            FCGI_MAX_REQS: str(config.max_reqs).encode(),
            FCGI_MPXS_CONNS: b"1" if config.multiplex else b"0",
        }
        self.connections: set[Connection] = set()
        self._lock = threading.Lock()
        self.pool = WorkerPool(config.threads, config.max_reqs, self._expire_stalled)
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
            self.pool.watch(connection)

    def forget(self, connection: Connection) -> None:
        """A connection about to close leaves both registers: ours, and the pool's epoll."""
        with self._lock:
            self.connections.discard(connection)
        self.pool.forget(connection)

    def _expire_stalled(self, now: float) -> None:
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            connection.expire(now, self.config.io_timeout)

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
