"""Era 2, the web server's side: an HTTP/1.1 gateway to FastCGI (our small nginx).

``python -m servers fastcgi`` listens for HTTP and hands each request to a FastCGI
application server as records. By default it starts its own (``fastcgi-app`` serving
the family, see upstream.py) and stops it on exit; ``--upstream HOST:PORT`` (repeatable,
or a Unix socket path) points it at others: ours, flup, PHP-FPM, anything FastCGI::

    one event loop, every HTTP connection                          application server
    -------------------------------------                          ------------------
    HTTP/1.1 via servers.http -> Request
    params (as nginx's fastcgi_params) -- BEGIN_REQUEST, PARAMS --> a worker starts
    body (Content-Length: streamed) ------- STDIN records --------> reads stdin
    HTTP response  <- parse_cgi_response <-- STDOUT records ------- writes stdout
    keep the connection in the pool  <------- END_REQUEST ---------  done

Compare servers/cgi.py: the same request travels the same way, but where CGI forked and
exec'd a script and spoke to it through pipes, the gateway writes records on a socket
that stays open (upstream.py keeps it), to a process that stays up. How one request is
relayed both ways, and how every failure of the application server maps to a status
(502, 503, 504), is exchange.py; this module is the HTTP front end around it:

* **One thread, one event loop** (epoll, through ``selectors``), as nginx's worker: every
  client connection and every connection to the application servers is a non-blocking
  socket in the loop, and each one's state is an object (ClientConnection here, Exchange
  in exchange.py) that the loop calls when its socket is ready. A gateway waits almost
  all the time (for clients, for the application) and computes little, which is the case
  an event loop is made for. The threaded version this replaced (a thread per client,
  blocking calls) spent about 40% of its CPU time handing the GIL from thread to thread
  and in the scheduler (perf, under ``make bench``'s 50 connections): one loop does no
  hand-off at all, and cut the gateway's CPU time per request by about 40%. Up to
  ``max_connections`` clients at once; past it, 503. Timeouts are deadlines that the
  loop checks a few times a second, not a timer per socket.
* **Params** are nginx's ``fastcgi_params`` (QUERY_STRING ... REDIRECT_STATUS) plus the
  HTTP_* variables by the shared rules (servers/gateway.py: no HTTP_PROXY, no "_"
  names, no credentials). ``SCRIPT_NAME`` is "" and ``PATH_INFO`` the decoded path: the
  application owns the whole URL space. nginx's stock SCRIPT_NAME (the whole path, no
  PATH_INFO) suits PHP, which finds a file; it breaks WSGI routing, which reads PATH_INFO.
  DOCUMENT_ROOT and SCRIPT_FILENAME name files, and there are none here: left out.
* **A chunked body is spooled** (memory, then a temporary file) and sent with its
  CONTENT_LENGTH, as nginx does by default (``fastcgi_request_buffering on``): CGI-style
  programs and flup-hosted WSGI apps read CONTENT_LENGTH bytes and nothing else (§6.2).
  A Content-Length body is streamed as it arrives, with backpressure.
* **The response is streamed**: each STDOUT record is passed on at once (nginx with
  ``fastcgi_buffering off``), so ``/stream`` reaches the client line by line, chunked.
* **Retries**: a request that never reached an application (CANT_MPX_CONN, or a kept
  connection that the application server closed while it sat in the pool) goes once
  more on a new connection, if it can be replayed: no body, or a spooled one.
* **SIGTERM**: no new connections, idle ones close, requests in flight get
  ``graceful_timeout``; then the application server we started is stopped and reaped.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, NoReturn
from urllib.parse import unquote_to_bytes

from ..cli import base_parser, ready_line
from ..gateway import Peer, body_pieces, connection_variables, meta_variables
from ..http import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    Limits,
    ProtocolError,
    RemoteProtocolError,
    Request,
    ServerConnection,
    State,
)
from ..trace import Tracer, escape, next_connection_id
from .exchange import (
    CLIENT_OUTPUT_LIMIT,
    ClientGone,
    ClientTimeout,
    Exchange,
    HttpError,
    Retry,
)
from .records import FastCGIError, encode_pairs
from .trace import RecordTracer
from .upstream import (
    AppServerChild,
    Upstream,
    UpstreamError,
    Upstreams,
    parse_upstream,
    rewatch,
)

__all__ = ["Config", "main"]

SERVER_SOFTWARE = "gatewaylab-fastcgi/0.1"
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
# Pipelined bytes read while a request is served (to notice a client that leaves), past
# which the client is not read until its turn comes: the core would keep them all.
PIPELINE_LIMIT = 65536


@dataclass(frozen=True)
class Config:
    upstreams: tuple[tuple[str, int] | str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    max_connections: int = 256  # client connections at once; past it, 503
    keepalive: int = 64  # idle upstream connections kept (nginx's keepalive N): past it, a
    # request pays a connect, and the application server a new thread; 64 covers the 50
    # connections of make bench and the 64 connections fastcgi-app serves
    idle_timeout: float = 5.0  # keep-alive wait for the next request (uvicorn, hypercorn: 5 s)
    request_timeout: float = 10.0  # to receive a request head or a body piece (slowloris)
    upstream_timeout: float = 60.0  # no byte from the application server: 504 (nginx: 60 s)
    connect_timeout: float = 5.0  # to the application server (nginx: 60 s; ours is local)
    graceful_timeout: float = 3.0  # after SIGTERM, for in-flight requests (as the CGI era)
    max_redirects: int = 10  # local redirects per request (Apache LimitInternalRecursion)
    max_cgi_head: int = 32768  # the application's header section, like a client's
    spool_memory: int = 1 << 20  # a chunked body is kept in memory up to this, then on disk
    limits: Limits = field(default_factory=Limits)
    trace: bool = False


def connection_params(peer: Peer) -> dict[str, bytes]:
    """The PARAMS that are the same for every request of one client connection: the
    addresses and ports, the software, and two constants. A connection encodes them once
    (see ClientConnection) instead of once per request, as nginx compiles its
    ``fastcgi_param`` lines once instead of parsing them per request."""
    params = connection_variables(peer, SERVER_SOFTWARE)
    params["REQUEST_SCHEME"] = b"http"  # and no HTTPS: it is only set when "on"
    params["REDIRECT_STATUS"] = b"200"  # php-cgi's cgi.force_redirect wants it
    return params


def fastcgi_params(
    request: Request,
    peer: Peer,
    length: int,
    redirect: bytes | None = None,
    connection: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    """The PARAMS of one request: nginx's fastcgi_params, entry by entry. A local
    redirect (RFC 3875 §6.2.2) is a GET for ``redirect`` without the original body.

    ``connection`` is included as the first params: connection_params(peer) by default;
    ``{}`` leaves them out, for a caller that sends them already encoded."""
    path = request.path if redirect is None else redirect.partition(b"?")[0]
    decoded = unquote_to_bytes(path).decode("latin-1")
    params = meta_variables(
        request,
        peer,
        script_name="",  # the application owns the whole URL space (see the docstring)
        path_info=decoded,
        content_length=length,
        server_software=SERVER_SOFTWARE,
        method=None if redirect is None else b"GET",
        target=redirect,
        connection=connection_params(peer) if connection is None else connection,
    )
    params["DOCUMENT_URI"] = decoded.encode("latin-1")  # nginx's $document_uri: decoded
    return params


# ======================================================================================
# One HTTP client connection, driven by the event loop
# ======================================================================================
class ClientConnection:
    """One client's socket, its HTTP state (the shared sans-IO core) and the exchange that
    serves its current request. Every method runs on the loop's thread and returns at
    once: where a thread per connection would wait (for the head, the body, the
    application), this one records what it waits for, and the loop calls back when it is
    there."""

    def __init__(self, gateway: Gateway, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.sock = sock
        local = sock.getsockname()
        self.peer = Peer(local[0], local[1], peer[0], peer[1])
        self.cid = next_connection_id()
        self.conn = ServerConnection(self.config.limits, SERVER_SOFTWARE.encode())
        # The params every request of this connection shares, encoded once (about a
        # third of the pairs; nginx's fastcgi_params, see connection_params()).
        constant = connection_params(self.peer).items()
        self.constant_pairs = encode_pairs([(name.encode("latin-1"), v) for name, v in constant])
        sock.setblocking(False)
        # A response may still be several sends (a stream): without this, each one after
        # the first waits for the client's delayed ACK (40 ms), as in every era.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.outbuf = bytearray()  # response bytes the socket has not taken yet
        self.blocked = False  # a send left bytes in outbuf: wait for the socket (WRITE)
        self.exchange: Exchange | None = None
        self.request: Request | None = None
        self.spool: IO[bytes] | None = None  # a chunked body, de-chunked (see the docstring)
        self.redirects = 0
        self.closing = False  # close once outbuf is sent; read nothing more
        self.closed = False
        now = time.monotonic()
        self.last_read = now  # for the idle and request timeouts
        self.last_write = now  # for a client that stops reading its response
        self.events = rewatch(gateway.selector, sock, self, 0, READ)

    # -- the loop calls these -------------------------------------------------------------
    def on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # a reset: the client is gone, as with EOF
        self.gateway.tracer.wire(self.cid, "<", data)
        self.last_read = time.monotonic()
        self.guard(lambda: self._received(data))

    def on_writable(self) -> None:
        self.flush()

    def check(self, now: float) -> None:
        """The loop's periodic look at the clock (timeouts without a timer per socket)."""
        if self.outbuf:
            # A response is going out, however slowly: the client is not idle, but it
            # must keep taking bytes (the same request_timeout a sendall() would have).
            if now > self.last_write + self.config.request_timeout:
                self.close()  # it stopped reading its response: nothing more to say to it
        elif (exchange := self.exchange) is not None:
            self.guard(lambda: exchange.check(now))  # 504, or 408 for a stalled body
        elif not self.closing:
            idle = self.conn.request is None and self.conn.buffered == 0
            timeout = self.config.idle_timeout if idle else self.config.request_timeout
            if now > self.last_read + timeout:
                self.guard(lambda: _raise(ClientTimeout("idle" if idle else "request")))

    # -- the one place where failures become answers ------------------------------------
    def guard(self, step: Callable[[], object]) -> None:
        """Run one step of this connection's work; what it raises decides what the client
        gets. Then send what the step produced, in one system call when the socket takes
        it all (a small response: head and body in one write), and tell the loop what the
        client's socket waits for now (flush -> update_interest): once per step, however
        many things the step changed."""
        try:
            step()
        except ProtocolError as error:  # the client broke HTTP/1.1: say why, then close
            self._abandon()
            self.send(self.conn.error_response(error))
            self.closing = True
        except ClientTimeout as error:
            self._abandon()
            if error.args[:1] != ("idle",):  # RFC 9110 §15.5.9: a request left unfinished
                timeout = RemoteProtocolError("the request took too long to arrive", 408)
                self.send(self.conn.error_response(timeout))
            self.closing = True
        except ClientGone:
            self._abandon()
            self.close()
        except Retry as retry:
            self._retry(retry)
        except FastCGIError as error:
            self._failed(HttpError(502, f"the application broke the protocol: {error}"))
        except (HttpError, UpstreamError) as error:
            self._failed(error)
        self.flush()

    # -- reading requests -----------------------------------------------------------------
    def _received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is not None and not data:
            raise ClientGone  # EOF (or a half-close) while its request is served
        self.conn.receive_data(data)
        if exchange is None:
            self.process()
        elif exchange.need_client:
            exchange.pump()  # the body piece the exchange was waiting for
        # else: pipelined bytes, kept in the core; guard() reads no more than a few of them

    def process(self) -> None:
        """Turn buffered bytes into the next step: start a request, spool a chunked body,
        skip the rest of a body the application did not read, or start the next cycle."""
        conn = self.conn
        while self.exchange is None and not self.closing:
            if conn.response_complete:
                if not conn.keep_alive:
                    self.closing = True
                    break
                if conn.can_reuse:
                    conn.start_next_cycle()
                    self._request_over()
            if self.gateway.stopping and conn.request is None:
                self.closing = True  # SIGTERM: no new request on this connection
                break
            event = conn.next_event()
            if isinstance(event, Request):
                self.request, self.redirects = event, 0
                if event.chunked:
                    self._continue()
                    self.spool = tempfile.SpooledTemporaryFile(self.config.spool_memory)  # noqa: SIM115
                else:
                    self._forward()
            elif isinstance(event, Data):
                if self.spool is not None and not conn.response_complete:
                    self.spool.write(event.data)
                # else: the rest of a body the application did not read, dropped
            elif isinstance(event, EndOfMessage):
                if self.spool is not None and not conn.response_complete:
                    self._forward()  # the chunked body is whole: now the request goes
            elif isinstance(event, ConnectionClosed):
                self.close()
                return
            else:
                break  # NEED_DATA (the loop reads on), or PAUSED

    def _continue(self) -> None:
        request = self.request
        if request is not None and request.expects_continue and self.conn.waiting_for_100_continue:
            self.send(self.conn.send(InformationalResponse(100)))  # RFC 9110 §10.1.1

    # -- one FastCGI request per HTTP request (or per local redirect) --------------------------
    def _forward(
        self,
        redirect: bytes | None = None,
        attempt: int = 1,
        refused: frozenset[Upstream] = frozenset(),
    ) -> None:
        request = self.request
        assert request is not None
        spool = self.spool
        if redirect is not None:
            spool, length = None, 0  # a local redirect is a GET without the body
        elif spool is not None:
            length = spool.seek(0, os.SEEK_END)
            spool.seek(0)
        else:
            length = request.content_length or 0
        params = fastcgi_params(request, self.peer, length, redirect, connection={})
        upstream = self.gateway.upstreams.acquire(fresh=attempt > 1, refused=refused)
        body: Iterator[bytes | None] = (
            # One record each (FastCGI §3.3: at most 65535 bytes of content).
            body_pieces(self.conn, request, spool, 65535, self._continue)
            if redirect is None
            else iter(())
        )
        exchange = Exchange(self, upstream, body, redirect, attempt, refused)
        self.exchange = exchange
        if self.gateway.tracer.enabled:  # not even the f-string when nobody reads it
            kept = " (a kept connection)" if upstream.reused else ""
            self.gateway.tracer.note(self.cid, f"-> {upstream.upstream.name}{kept}")
        exchange.start(params, self.constant_pairs)

    def exchange_done(self, exchange: Exchange) -> None:
        """END_REQUEST came: a response is complete, or a local redirect is to be served."""
        self._detach()
        if exchange.redirect is not None:
            # RFC 3875 §6.2.2, which FastCGI keeps (§6.1): served by us, as a new GET.
            self.redirects += 1
            if self.redirects > self.config.max_redirects:
                raise HttpError(500, f"more than {self.config.max_redirects} local redirects")
            self.gateway.tracer.note(self.cid, f"local redirect to {escape(exchange.redirect)}")
            self._forward(exchange.redirect)
            return
        self.process()  # the next request, if the client pipelined one

    def _retry(self, retry: Retry) -> None:
        """Once more on a new connection, if the request never reached an application and
        can be replayed: no body, or a spooled one."""
        exchange = self._detach()
        if exchange is None or exchange.attempt == 2 or exchange.body_sent:
            self._failed(HttpError(502, str(retry)))
            return
        self.gateway.tracer.note(self.cid, f"{retry}: once more, on a new connection")
        target = exchange.target
        self.guard(lambda: self._forward(target, attempt=2))

    def _failed(self, error: HttpError | UpstreamError) -> None:
        exchange = self._detach()
        if isinstance(error, UpstreamError) and error.refused and exchange is not None:
            # A connect that failed late (TCP): the next application server, if any is left.
            refused = exchange.refused | {error.refused}
            if len(refused) < len(self.gateway.upstreams.members):
                target, attempt = exchange.target, exchange.attempt
                self.guard(lambda: self._forward(target, attempt, refused))
                return
        if self.conn.our_state is not State.SEND_RESPONSE:
            self.close()  # the response started: all we can do is close
            return
        print(f"fastcgi c{self.cid}: {error.status}: {error}", file=sys.stderr)
        body = f"{error.status} {error}\n".encode()
        headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
        if error.status == 503:
            headers.append((b"Retry-After", b"1"))
        self.send(self.conn.send_response(error.status, headers, body))
        self.process()  # skip the rest of the body, then the next request

    def _detach(self) -> Exchange | None:
        """The exchange is over: its connection back to the pool (release() keeps it only
        if its request ended with END_REQUEST and KEEP_CONN), or closed if a record is
        half sent."""
        exchange, self.exchange = self.exchange, None
        self.last_read = time.monotonic()  # the wait for the next request starts now
        if exchange is not None:
            if exchange.outgoing:
                exchange.upstream.close()
            else:
                exchange.upstream.upstream.release(exchange.upstream)
        return exchange

    def _abandon(self) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.abandon()

    def _request_over(self) -> None:
        self.request = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    # -- writing ----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue response bytes; guard() sends them when the step is over."""
        if data:
            self.gateway.tracer.wire(self.cid, ">", data)
            if not self.outbuf:
                self.last_write = time.monotonic()  # the stall clock starts now
            self.outbuf += data

    def flush(self) -> None:
        if self.closed:
            return
        if self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._abandon()
                self.close()
                return
            if sent:
                del self.outbuf[:sent]
                self.last_write = time.monotonic()
                if not self.outbuf:
                    self.last_read = self.last_write  # all sent: the idle wait starts now
        self.blocked = bool(self.outbuf)
        if self.closing and not self.outbuf:
            self.close()
            return
        exchange = self.exchange
        if exchange is not None and exchange.paused and len(self.outbuf) <= CLIENT_OUTPUT_LIMIT:
            exchange.resume()
        self.update_interest()

    def update_interest(self) -> None:
        """Read while there is a reason to, write while bytes wait; tell the loop if that
        changed. During an exchange the client is read when the body needs more bytes, and,
        once the body is in, to notice a client that leaves (a few pipelined bytes may come
        with that, and wait in the core; past PIPELINE_LIMIT the client is not read)."""
        if self.closed:
            return
        # WRITE only after a send could not take everything: bytes merely queued during a
        # step are sent by guard() at its end, and asking epoll for WRITE in between would
        # cost two epoll_ctl calls per request (measured with strace -c) for nothing.
        wanted = WRITE if self.blocked else 0
        exchange = self.exchange
        if not self.closing and (
            exchange is None
            or exchange.need_client
            or (not exchange.proto.stdin_open and self.conn.buffered < PIPELINE_LIMIT)
        ):
            wanted |= READ
        self.events = rewatch(self.gateway.selector, self.sock, self, self.events, wanted)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._abandon()
        self.events = rewatch(self.gateway.selector, self.sock, self, self.events, 0)
        self.sock.close()
        self._request_over()
        self.gateway.tracer.closed(self.cid)
        self.gateway.records.forget(self.cid)
        self.gateway.clients.discard(self)


def _raise(error: Exception) -> NoReturn:
    raise error


# ======================================================================================
# The listening process: one event loop
# ======================================================================================
class Gateway:
    BUSY = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 54\r\n\r\n"
        b"503 Service Unavailable: too many connections at once.\n"
    )
    SWEEP = 0.1  # seconds between two looks at the deadlines

    def __init__(self, config: Config, child: AppServerChild | None) -> None:
        self.config = config
        self.child = child
        self.tracer = Tracer(config.trace)
        self.records = RecordTracer(self.tracer)
        # epoll(7) on Linux: one system call tells which of all the sockets are ready, and
        # costs the same for 1 or 10,000 (select(2) breaks past descriptor 1023, which is
        # how libfcgi got CVE-2012-6687).
        self.selector = selectors.DefaultSelector()
        addresses = config.upstreams if child is None else (child.address,)
        self.upstreams = Upstreams(
            addresses, config.keepalive, config.connect_timeout, self.selector
        )
        self.listener = socket.create_server((config.host, config.port), backlog=1024)
        self.listener.setblocking(False)
        self.clients: set[ClientConnection] = set()
        self.orphans: set[Exchange] = set()  # abandoned by their clients (exchange.py)
        self.stopping = False

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True  # a flag, nothing else (the loop does the work)

    def serve_forever(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        # A signal writes a byte to wake_w, so the loop wakes at once instead of at the
        # end of its select() timeout.
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        self.selector.register(self.listener, READ, self._accept)
        self.selector.register(wake_r, READ, lambda: _drain(wake_r))
        host, port = self.listener.getsockname()[:2]
        ready_line("fastcgi", host, port)
        deadline = None  # of the graceful stop, once SIGTERM came
        next_sweep = time.monotonic() + self.SWEEP
        while True:
            if self.stopping and deadline is None:
                deadline = time.monotonic() + self.config.graceful_timeout
                self._stop_accepting()
            if deadline is not None and (not self.clients or time.monotonic() > deadline):
                break
            for key, mask in self.selector.select(self.SWEEP):
                handler = key.data
                if callable(handler):
                    handler()  # the listener, the wakeup pipe
                    continue
                # A handler closed earlier in this same batch is skipped: its descriptor
                # number may already belong to a new socket.
                if mask & READ and not handler.closed:
                    handler.on_readable()
                if mask & WRITE and not handler.closed:
                    handler.on_writable()
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + self.SWEEP
                self._sweep(now)
        return self._shutdown()

    def _accept(self) -> None:
        for _ in range(64):  # a burst of connections, without starving the others
            try:
                sock, peer = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                print(f"fastcgi: accept failed: {error}", file=sys.stderr)
                return
            if len(self.clients) >= self.config.max_connections:
                with contextlib.suppress(OSError):
                    sock.setblocking(False)
                    sock.send(self.BUSY)  # small enough for any socket buffer
                sock.close()
                continue
            client = ClientConnection(self, sock, peer)
            self.clients.add(client)
            self.tracer.note(client.cid, f"open {peer[0]}:{peer[1]}")

    def _sweep(self, now: float) -> None:
        """Deadlines, and the application server we started: the loop's periodic chores."""
        for client in list(self.clients):
            client.check(now)
        for orphan in list(self.orphans):
            if orphan.orphan_expired(now):
                self.orphans.discard(orphan)
                orphan.upstream.close()  # no END_REQUEST in time: not reusable
        self._watch_child()

    def _watch_child(self) -> None:
        """A process manager's duty: an application server that died is started again."""
        if self.stopping or self.child is None:
            return
        if (status := self.child.exited()) is not None:
            print(f"fastcgi: the application server exited ({status}); restarting", file=sys.stderr)
            try:
                self.child.start()
            except RuntimeError as error:
                print(f"fastcgi: {error}", file=sys.stderr)

    def _stop_accepting(self) -> None:
        """SIGTERM: no new connections; idle ones end now; requests in flight go on."""
        self.selector.unregister(self.listener)
        self.listener.close()
        for client in list(self.clients):
            if client.exchange is None and client.conn.request is None and not client.conn.buffered:
                client.closing = True
                client.flush()

    def _shutdown(self) -> int:
        for client in list(self.clients):
            client.close()  # past the graceful timeout
        self.upstreams.close_idle()
        if self.child is not None:
            self.child.cleanup()  # it got SIGTERM with us, if it shares our group: it drains
        return 0


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.read(fd, 512)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("fastcgi", "Era 2: an HTTP gateway to FastCGI application servers")
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="HOST:PORT|PATH",
        help="a FastCGI application server to use (repeatable); default: start our own",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--app", help="the responder MODULE:ATTR our own app server runs")
    kind.add_argument("--wsgi", help="or a WSGI app MODULE:ATTR for it, e.g. apps.wsgi:app")
    parser.add_argument(
        "--upstream-timeout",
        type=float,
        default=Config.upstream_timeout,
        help="seconds without a byte from the application: 504 (default %(default)s)",
    )
    args = parser.parse_args(argv)
    child = None
    upstreams: tuple[tuple[str, int] | str, ...] = ()
    if args.upstream and (args.app or args.wsgi):
        parser.error("--app and --wsgi choose what our own application server runs; "
                     "with --upstream there is none")  # fmt: skip
    if args.upstream:
        try:
            upstreams = tuple(parse_upstream(text) for text in args.upstream)
        except ValueError as error:
            parser.error(str(error))
    else:
        options = ["--trace"] if args.trace else []
        options += ["--wsgi", args.wsgi] if args.wsgi else ["--app", args.app] if args.app else []
        child = AppServerChild(options)
        try:
            child.start()
        except RuntimeError as error:
            child.cleanup()
            print(f"fastcgi: {error}", file=sys.stderr)
            return 1
    config = Config(
        upstreams=upstreams,
        host=args.host,
        port=args.port,
        upstream_timeout=args.upstream_timeout,
        trace=args.trace,
    )
    try:
        return Gateway(config, child).serve_forever()
    finally:
        if child is not None:
            child.cleanup()


if __name__ == "__main__":
    sys.exit(main())
