"""Era 2, the web server's side: an HTTP/1.1 gateway to FastCGI (our small nginx).

``python -m servers fastcgi`` listens for HTTP and hands each request to a FastCGI
application server as records. By default it starts its own (``fastcgi-app`` serving
the family, see upstream.py) and stops it on exit; ``--upstream HOST:PORT`` (repeatable,
or a Unix socket path) points it at others: ours, flup, PHP-FPM, anything FastCGI::

    client thread (one per HTTP connection)                      application server
    ---------------------------------------                      ------------------
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

* **Threads**: one per client connection (up to ``max_connections``; past it, 503), each
  running the keep-alive loop of the shared HTTP core, as the CGI era's connection child
  does in a process. The listening thread only accepts, and restarts the application
  server it started if that one dies.
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
import select
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import IO
from urllib.parse import unquote_to_bytes

from ..cli import base_parser, ready_line
from ..gateway import Peer, body_pieces, meta_variables
from ..http import (
    NEED_DATA,
    Data,
    InformationalResponse,
    Limits,
    ProtocolError,
    RemoteProtocolError,
    Request,
    ServerConnection,
    State,
)
from ..trace import Tracer, escape, next_connection_id
from .app_server import kernel_timeouts
from .exchange import ClientGone, ClientTimeout, Exchange, HttpError, Retry, wait
from .records import FastCGIError
from .trace import RecordTracer
from .upstream import AppServerChild, UpstreamError, Upstreams, parse_upstream

__all__ = ["Config", "main"]

SERVER_SOFTWARE = "gatewaylab-fastcgi/0.1"


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


def fastcgi_params(
    request: Request, peer: Peer, length: int, redirect: bytes | None = None
) -> dict[str, bytes]:
    """The PARAMS of one request: nginx's fastcgi_params, entry by entry. A local
    redirect (RFC 3875 §6.2.2) is a GET for ``redirect`` without the original body."""
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
    )
    params["DOCUMENT_URI"] = decoded.encode("latin-1")  # nginx's $document_uri: decoded
    params["REQUEST_SCHEME"] = b"http"  # and no HTTPS: it is only set when "on"
    params["REDIRECT_STATUS"] = b"200"  # php-cgi's cgi.force_redirect wants it
    return params


# ======================================================================================
# One HTTP client connection, in its own thread
# ======================================================================================
class ClientConnection:
    def __init__(self, gateway: Gateway, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.sock = sock
        local = sock.getsockname()
        self.peer = Peer(local[0], local[1], peer[0], peer[1])
        self.cid = next_connection_id()
        self.conn = ServerConnection(self.config.limits, SERVER_SOFTWARE.encode())
        # Several small writes per response: without this, the last one of each waits for
        # the client's delayed ACK (40 ms per request), as in every era.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking, with the kernel's timeouts (see app_server.kernel_timeouts): a read
        # comes after a poll said the socket is readable, and a write that stalls for
        # request_timeout fails. No poll before every send, as settimeout() would add.
        kernel_timeouts(sock, self.config.request_timeout)
        # The two waits of next_event(), registered once for the connection's life: idle,
        # for the client or the gateway's stop; within a request, for the client alone.
        self._idle_wait = select.poll()
        self._idle_wait.register(sock, select.POLLIN)
        self._idle_wait.register(gateway.stop_r, select.POLLIN)
        self._request_wait = select.poll()
        self._request_wait.register(sock, select.POLLIN)

    def receive(self) -> None:
        data = self.sock.recv(65536)
        self.gateway.tracer.wire(self.cid, "<", data)
        self.conn.receive_data(data)

    def send(self, data: bytes) -> None:
        if data:
            self.gateway.tracer.wire(self.cid, ">", data)
            self.sock.sendall(data)  # bounded by SO_SNDTIMEO: see __init__

    def next_event(self) -> object:
        while (event := self.conn.next_event()) is NEED_DATA:
            idle = self.conn.request is None and self.conn.buffered == 0
            timeout = self.config.idle_timeout if idle else self.config.request_timeout
            # Idle, a stop ends the wait (the stop pipe becomes readable); mid-request, not.
            waiting = self._idle_wait if idle else self._request_wait
            ready = waiting.poll(timeout * 1000)
            if not any(fd == self.sock.fileno() for fd, _ in ready):
                raise ClientTimeout("idle" if idle else "request")
            self.receive()  # readable, or a hang-up or an error for recv() to report
        return event

    def run(self) -> None:
        try:
            while not self.gateway.stopping or self.conn.request is not None:
                event = self.next_event()
                if not isinstance(event, Request):
                    break
                self.handle(event)
                while self.conn.their_state is State.SEND_BODY and self.conn.keep_alive:
                    self.next_event()  # the rest of a body the application did not read
                if not self.conn.can_reuse:
                    break
                self.conn.start_next_cycle()
        except ProtocolError as error:
            with contextlib.suppress(OSError):
                self.send(self.conn.error_response(error))
        except ClientTimeout as error:
            if error.args[:1] != ("idle",):  # RFC 9110 §15.5.9: a request left unfinished
                timeout = RemoteProtocolError("the request took too long to arrive", 408)
                with contextlib.suppress(OSError):
                    self.send(self.conn.error_response(timeout))
        except (OSError, ClientGone):
            pass
        finally:
            self.gateway.tracer.closed(self.cid)
            self.gateway.records.forget(self.cid)
            self.sock.close()
            self.gateway.forget(self)

    def handle(self, request: Request) -> None:
        spool: IO[bytes] | None = None
        try:
            spool = self._spool(request)
            redirect = None
            for _ in range(self.config.max_redirects + 1):
                redirect = self.forward(request, spool, redirect)
                if redirect is None:
                    return
                # RFC 3875 §6.2.2, which FastCGI keeps (§6.1): served by us, as a new GET.
                self.gateway.tracer.note(self.cid, f"local redirect to {escape(redirect)}")
            raise HttpError(500, f"more than {self.config.max_redirects} local redirects")
        except (HttpError, UpstreamError) as error:
            if self.conn.our_state is not State.SEND_RESPONSE:
                raise ClientGone from error  # the response started: all we can do is close
            print(f"fastcgi c{self.cid}: {error.status}: {error}", file=sys.stderr)
            body = f"{error.status} {error}\n".encode()
            headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
            if error.status == 503:
                headers.append((b"Retry-After", b"1"))
            self.send(self.conn.send_response(error.status, headers, body))
        finally:
            if spool is not None:
                spool.close()

    def forward(
        self, request: Request, spool: IO[bytes] | None, redirect: bytes | None
    ) -> bytes | None:
        """One FastCGI request; once more on a new connection if it never reached an app."""
        if redirect is not None:
            spool, length = None, 0  # a local redirect is a GET without the body
        elif spool is not None:
            length = spool.seek(0, os.SEEK_END)
        else:
            length = request.content_length or 0
        params = fastcgi_params(request, self.peer, length, redirect)
        for attempt in (1, 2):
            if spool is not None:
                spool.seek(0)
            upstream = self.gateway.upstreams.acquire(fresh=attempt > 1)
            exchange = Exchange(self, upstream)
            if self.gateway.tracer.enabled:  # not even the f-string when nobody reads it
                kept = " (a kept connection)" if upstream.reused else ""
                self.gateway.tracer.note(self.cid, f"-> {upstream.upstream.name}{kept}")
            body = (
                # One record each (FastCGI §3.3: at most 65535 bytes of content).
                body_pieces(self.conn, request, spool, 65535, lambda: self._continue(request))
                if redirect is None
                else iter(())
            )
            try:
                return exchange.run(params, body)
            except Retry as retry:
                if attempt == 2 or exchange.body_sent:
                    raise HttpError(502, str(retry)) from None
                self.gateway.tracer.note(self.cid, f"{retry}: once more, on a new connection")
            except FastCGIError as error:
                raise HttpError(502, f"the application broke the protocol: {error}") from None
            except ClientGone:
                exchange.abandon()
                raise
            finally:
                # Kept only if its request ended with END_REQUEST and KEEP_CONN (release()
                # checks) and no record is half sent; whatever else happened, closed.
                if exchange.outgoing:
                    upstream.close()
                else:
                    upstream.upstream.release(upstream)
        raise AssertionError("unreachable")

    def _spool(self, request: Request) -> IO[bytes] | None:
        """A chunked body, de-chunked into memory or a temporary file (see the docstring)."""
        if not request.chunked:
            return None
        self._continue(request)
        spool = tempfile.SpooledTemporaryFile(self.config.spool_memory)  # noqa: SIM115
        while isinstance(event := self.next_event(), Data):
            spool.write(event.data)
        return spool

    def _continue(self, request: Request) -> None:
        if request.expects_continue and self.conn.waiting_for_100_continue:
            self.send(self.conn.send(InformationalResponse(100)))  # RFC 9110 §10.1.1


# ======================================================================================
# The listening process
# ======================================================================================
class Gateway:
    BUSY = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 54\r\n\r\n"
        b"503 Service Unavailable: too many connections at once.\n"
    )

    def __init__(self, config: Config, child: AppServerChild | None) -> None:
        self.config = config
        self.child = child
        self.tracer = Tracer(config.trace)
        self.records = RecordTracer(self.tracer)
        addresses = config.upstreams if child is None else (child.address,)
        self.upstreams = Upstreams(addresses, config.keepalive, config.connect_timeout)
        self.listener = socket.create_server((config.host, config.port), backlog=1024)
        self.clients: set[ClientConnection] = set()
        self._lock = threading.Lock()
        self.stopping = False
        # Written once on SIGTERM and never read: readable for every client thread at once.
        self.stop_r, self._stop_w = os.pipe()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True  # a flag, nothing else (I/O waits for the main loop)

    def serve_forever(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        host, port = self.listener.getsockname()[:2]
        ready_line("fastcgi", host, port)
        while not self.stopping:
            readable, _ = wait([self.listener.fileno(), wake_r], [], 1.0)
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            if self.listener.fileno() in readable:
                self._accept()
            self._watch_child()
        return self._shutdown()

    def _accept(self) -> None:
        try:
            sock, peer = self.listener.accept()
        except OSError as error:
            print(f"fastcgi: accept failed: {error}", file=sys.stderr)
            return
        with self._lock:
            if len(self.clients) >= self.config.max_connections:
                with contextlib.suppress(OSError):
                    sock.sendall(self.BUSY)
                sock.close()
                return
            client = ClientConnection(self, sock, peer)
            self.clients.add(client)
        self.tracer.note(client.cid, f"open {peer[0]}:{peer[1]}")
        threading.Thread(
            target=client.run, name=f"fastcgi-client-{client.cid}", daemon=True
        ).start()

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

    def forget(self, client: ClientConnection) -> None:
        with self._lock:
            self.clients.discard(client)

    def _shutdown(self) -> int:
        """No new connections; idle ones end now; requests in flight get graceful_timeout."""
        self.listener.close()
        os.write(self._stop_w, b"x")
        deadline = time.monotonic() + self.config.graceful_timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.clients:
                    break
            time.sleep(0.02)
        self.upstreams.close_idle()
        if self.child is not None:
            self.child.cleanup()  # it got SIGTERM with us, if it shares our group: it drains
        return 0


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
