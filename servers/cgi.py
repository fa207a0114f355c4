"""Era 1: the forking CGI/1.1 server (RFC 3875). A new process for every request.

How a request travels (the whole era in one picture)::

    listening process          connection child               script (grandchild)
    -----------------          ----------------               -------------------
    accept() ----fork()----->  HTTP/1.1 via servers.http
                               resolve the script (confined)
                               build the environment  -----fork(), dup2(), execve()--->
                               request body  ---------------- stdin pipe ----------> reads stdin
                               parse CGI head  <------------- stdout pipe ---------- writes stdout
                               HTTP response to the client                           exits
                               waitpid() <----------------------------------------------'
    waitpid() <--- exits after the last keep-alive request

Three kinds of process, each with one job:

* The **listening process** only accepts and forks. It never reads a request, so a slow
  client cannot stall it. Children are capped (``--max-children``): past the cap it answers
  503 itself instead of queueing without bound. It reaps every child that exits.
* A **connection child** speaks HTTP/1.1 with one client through the shared core, for as
  many keep-alive requests as the client sends. For each request it forks a script.
* The **script** is any executable: sh, Python, Perl, C. It sees the request only through
  its environment (RFC 3875 §4.1), its stdin (§4.2) and its stdout (§6). That is the whole
  interface, which is why CGI is language-neutral, and why it is slow: a fork, an exec and
  an interpreter start-up for every request. Lesson 2 (FastCGI) starts from that cost.

Two ways to start a script (``--spawn``). ``fork`` is the picture above, step by step in
:func:`spawn_fork`, and the default. It is also the slow way: fork() copies the page
tables of a 20 MB Python process only for execve() to throw the copy away.
``posix_spawn`` (:func:`spawn_posix`) declares the same steps to posix_spawn(3), whose
child borrows the parent's memory until it execs: same script, same environment, same
descriptors, about a third of the time per request (``python -m loadtests.cgi_costs``).

House rules of fork discipline (each one a classic bug of CGI servers):

1. Every fork is followed, in the child, by a ``try/finally: os._exit()``: a child never
   returns into the parent's code, never runs the parent's ``finally`` blocks twice.
2. Every child is reaped. The listening process reaps on SIGCHLD; the connection child
   waits for its script. A zombie is a bug.
3. Signal handlers only set a flag. ``signal.set_wakeup_fd`` turns the signal into a byte
   on a pipe that the select loop watches: the loop does the work, not the handler.
4. The script inherits exactly stdin, stdout and stderr. Python creates descriptors
   non-inheritable (PEP 446), the listening process marks any it inherited so at start-up,
   and the fork path's child closes every other descriptor before execve, so neither the
   listening socket nor the client's socket leaks into a script.
5. The environment is built from scratch, never copied from ``os.environ``, and the
   script is executed by ``execve`` with an argv list: no shell ever parses request data.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import selectors
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Literal
from urllib.parse import unquote_to_bytes

from .cli import add_config_options, base_parser, ready_line
from .gateway import (
    BadGateway,
    Peer,
    body_pieces,
    connection_variables,
    find_head_end,
    meta_variables,
    parse_cgi_response,
)
from .http import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    Limits,
    ProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    ServerConnection,
    State,
)
from .launch import REPO_ROOT
from .trace import Tracer, escape, next_connection_id, show_bytes

SERVER_SOFTWARE = "gatewaylab-cgi/0.1"
DEFAULT_ROOT = REPO_ROOT / "apps" / "cgi-bin"
# A script's PATH is fixed, the venv first so that "#!/usr/bin/env python3" finds the
# course's Python (with jinja2): never the server's own environment (rule 5).
SCRIPT_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin".encode()


@dataclass(frozen=True)
class Config:
    root: Path  # the script root: URL paths map onto files below it
    host: str = "127.0.0.1"
    port: int = 8000
    max_children: int = 64  # connection children at once; past it, 503 (Apache's default is 150)
    script_timeout: float = 30.0  # a script's whole run; then 504 and its group killed
    idle_timeout: float = 5.0  # keep-alive wait for the next request (uvicorn, hypercorn: 5 s)
    request_timeout: float = 10.0  # to receive a request head or a body piece (slowloris)
    graceful_timeout: float = 3.0  # on SIGTERM, time left to in-flight requests (hypercorn: 3 s)
    max_redirects: int = 10  # local redirects per request (Apache LimitInternalRecursion: 10)
    max_cgi_head: int = 32768  # a script's header section, like a client's (Limits)
    not_found: str = "/not-found"  # the script that answers unknown paths, if the root has it
    spawn: Literal["fork", "posix_spawn"] = "fork"  # how a script starts: see above
    limits: Limits = field(default_factory=Limits)
    trace: bool = False


class Stop(Exception):
    """SIGTERM arrived while the connection was idle: leave quietly."""


class HttpError(Exception):
    """An answer decided before any byte of the response went out: status and a sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _wakeup_pipe() -> tuple[int, int]:
    """A pipe that ``signal.set_wakeup_fd`` writes to (house rule 3)."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    return r, w


def _no_inherited_fds() -> None:
    """Rule 4 for the descriptors we did not open: whoever started the server (a shell, a
    test harness) may have left some inheritable. They are made close-on-exec once, at
    start-up, so that no script receives one, however it is spawned (spawn_posix has no
    closerange to rely on)."""
    with contextlib.suppress(OSError):
        for name in os.listdir("/dev/fd"):  # Linux and the BSDs; macOS too
            with contextlib.suppress(OSError):  # listdir's own descriptor is closed by now
                if int(name) > 2:
                    os.set_inheritable(int(name), False)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


# ======================================================================================
# The listening process
# ======================================================================================
class ForkingServer:
    _BUSY_BODY = b"503 Service Unavailable: every connection process is busy.\n"
    BUSY = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (len(_BUSY_BODY), _BUSY_BODY)
    )

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tracer = Tracer(config.trace)
        _no_inherited_fds()
        self.listener = socket.create_server((config.host, config.port), backlog=1024)
        self.listener.setblocking(False)
        self.children: dict[int, int] = {}  # pid -> connection id
        self.lingering: dict[socket.socket, float] = {}  # refused sockets, drained then closed
        self.stopping = False

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True  # rule 3: a flag, nothing else

    def serve_forever(self) -> int:
        wake_r, _ = self.wake = _wakeup_pipe()
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the loop
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        selector = self.selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ, "accept")
        selector.register(wake_r, selectors.EVENT_READ, "signal")
        host, port = self.listener.getsockname()[:2]
        ready_line("cgi", host, port)
        while not self.stopping:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "signal":
                    _drain(wake_r)
                elif key.data == "accept":
                    self._accept_all(selector)
                else:
                    self._linger(selector, key.fileobj)  # type: ignore[arg-type]
            self._reap()
            self._expire_lingering(selector)
        return self._shutdown(selector, wake_r)

    def _accept_all(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE and friends: say so, keep serving
                print(f"cgi: accept failed: {error}", file=sys.stderr)
                return
            if len(self.children) >= self.config.max_children:
                self._refuse(selector, sock)
            else:
                self._fork_connection(sock, peer)

    def _fork_connection(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        cid = next_connection_id()
        pid = os.fork()
        if pid == 0:  # -- the connection child (rule 1: it ends in os._exit, always) --
            status = 1
            try:
                self.listener.close()  # rule 4: the child never holds the listener,
                for other in self.lingering:  # nor the other clients' sockets,
                    other.close()
                self.selector.close()  # nor the parent's epoll and wakeup pipe
                for fd in self.wake:
                    os.close(fd)
                ConnectionChild(self.config, sock, peer, cid, self.tracer).run()
                status = 0
            except BaseException as error:
                with contextlib.suppress(Exception):
                    print(f"cgi: connection c{cid} failed: {error!r}", file=sys.stderr)
            finally:
                os._exit(status)
        sock.close()  # the parent's copy; the child has its own
        self.children[pid] = cid
        self.tracer.note(cid, f"fork: connection from {peer[0]}:{peer[1]} -> child pid {pid}")

    def _refuse(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        """Past the cap: 503 now, then drain what the client sent before closing, so that
        the close does not turn into a reset that destroys our 503 in flight."""
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.send(self.BUSY)
            sock.shutdown(socket.SHUT_WR)
        if len(self.lingering) >= 1024:
            sock.close()
            return
        self.lingering[sock] = time.monotonic() + 2.0
        selector.register(sock, selectors.EVENT_READ, "linger")

    def _linger(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        selector.unregister(sock)
        del self.lingering[sock]
        sock.close()

    def _expire_lingering(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for sock, deadline in list(self.lingering.items()):
            if now > deadline:
                selector.unregister(sock)
                del self.lingering[sock]
                sock.close()

    def _reap(self) -> None:
        """Rule 2: collect every child that has exited (WNOHANG: never block the loop)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            cid = self.children.pop(pid, 0)
            self.tracer.note(
                cid, f"reaped child pid {pid} (exit {os.waitstatus_to_exitcode(status)})"
            )

    def _shutdown(self, selector: selectors.BaseSelector, wake_r: int) -> int:
        """Graceful stop: no new connections; in-flight requests get graceful_timeout."""
        selector.close()
        self.listener.close()
        for sock in self.lingering:
            sock.close()
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # each child finishes its request, then exits
        deadline = time.monotonic() + self.config.graceful_timeout + 1.0
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while self.children:
            pid, _ = os.waitpid(-1, 0)
            self.children.pop(pid, None)
        os.close(wake_r)
        return 0


# ======================================================================================
# A connection child: HTTP/1.1 with one client, one script per request
# ======================================================================================
class ConnectionChild:
    def __init__(
        self,
        config: Config,
        sock: socket.socket,
        peer: tuple[str, int],
        cid: int,
        tracer: Tracer,
    ) -> None:
        self.config = config
        self.root = str(config.root)  # absolute and resolved: see main()
        self.sock = sock
        local = sock.getsockname()
        self.peer = Peer(local[0], local[1], peer[0], peer[1])
        self.cid = cid
        self.tracer = tracer
        self.conn = ServerConnection(config.limits, SERVER_SOFTWARE.encode())
        # The meta-variables no request on this connection changes, built once, and PATH.
        env = connection_variables(self.peer, SERVER_SOFTWARE, self.root)
        self.constant_env = {"PATH": SCRIPT_PATH, **env}
        self.stopping = False
        self.stop_deadline = float("inf")
        # The parent's handlers and wakeup pipe are not ours: start clean.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # we wait for our scripts ourselves
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the listening process's
        signal.signal(signal.SIGTERM, self._on_stop)
        self.wake_r, _ = _wakeup_pipe()
        self.between = select.poll()  # between requests: the client's socket, or a signal
        self.between.register(sock.fileno(), select.POLLIN)
        self.between.register(self.wake_r, select.POLLIN)
        sock.setblocking(True)
        # A response goes out in several writes (head, body pieces, last chunk). With
        # Nagle's algorithm on, the last small write waits for the client's delayed ACK:
        # 40 ms per keep-alive request. Every HTTP server turns it off.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A client that stops reading must not hold this process for ever: one send that
        # makes no progress for request_timeout fails (SO_SNDTIMEO, then EAGAIN). Set once
        # on the blocking socket, it spares every write Python's timeout mode, which costs
        # two more system calls and a poll each time it is switched on and off.
        timeout = config.request_timeout
        timeval = struct.pack("@ll", int(timeout), int(timeout % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    # -- socket I/O, always bounded by a deadline and interruptible by SIGTERM -------------
    def _wait(self, poller: select.poll, deadline: float, what: str) -> dict[int, int]:
        """poll(2) until a descriptor is ready (descriptor -> events: poll adds POLLHUP and
        POLLERR by itself, so that the read (EOF) or the write (EPIPE) reports them), the
        deadline passes (TimeoutError), or a signal arrives (then nothing may be ready).
        After SIGTERM an idle connection leaves at once (Stop), and the request in flight
        gets graceful_timeout more, no longer."""
        if self.stopping:
            if what == "idle":
                raise Stop
            if self.stop_deadline == float("inf"):
                self.stop_deadline = time.monotonic() + self.config.graceful_timeout
        left = min(deadline, self.stop_deadline) - time.monotonic()
        if left <= 0:
            raise TimeoutError(what)
        ready = dict(poller.poll(left * 1000))
        if self.wake_r in ready:
            _drain(self.wake_r)
        return ready

    def _receive(self) -> None:
        """The client's next bytes: within idle_timeout between requests (then the
        connection ends quietly), within request_timeout inside one (then 408)."""
        if self.conn.request is None and self.conn.buffered == 0:
            what, deadline = "idle", time.monotonic() + self.config.idle_timeout
        else:
            what, deadline = "request", time.monotonic() + self.config.request_timeout
        while self.sock.fileno() not in self._wait(self.between, deadline, what):
            pass  # a signal woke us: _wait has dealt with it
        data = self.sock.recv(65536)
        self.tracer.wire(self.cid, "<", data)
        self.conn.receive_data(data)

    def send(self, data: bytes) -> None:
        """All of ``data`` within request_timeout, or OSError: a client that stops reading,
        or reads a trickle to keep each send alive, cannot hold this process."""
        if not data:
            return
        self.tracer.wire(self.cid, ">", data)
        deadline = time.monotonic() + self.config.request_timeout
        unsent = memoryview(data)
        while unsent:
            if time.monotonic() > deadline:
                raise OSError("the client reads too slowly")
            unsent = unsent[self.sock.send(unsent) :]  # blocks up to SO_SNDTIMEO

    def next_event(self) -> object:
        while (event := self.conn.next_event()) is NEED_DATA:
            self._receive()
        return event

    # -- the keep-alive loop ----------------------------------------------------------------
    def run(self) -> None:
        try:
            while True:
                event = self.next_event()
                if isinstance(event, Request):
                    self.handle(event)
                    self._finish_request()
                    if not self.conn.can_reuse or self.stopping:
                        break
                    self.conn.start_next_cycle()
                elif isinstance(event, ConnectionClosed) or event is PAUSED:
                    break
        except ProtocolError as error:
            self.send(self.conn.error_response(error))
        except TimeoutError as error:
            if error.args[:1] != ("idle",):
                # RFC 9110 §15.5.9: a request that started but never finished gets 408.
                timeout = RemoteProtocolError("the request took too long to arrive", 408)
                self.send(self.conn.error_response(timeout))
        except (Stop, OSError):
            pass
        finally:
            self.tracer.closed(self.cid)
            self.sock.close()

    def _finish_request(self) -> None:
        """Read what is left of the request body (a script need not read it all), so the
        connection can carry the next request; bounded by the core's body limit."""
        while self.conn.their_state is State.SEND_BODY and self.conn.keep_alive:
            self.next_event()

    def handle(self, request: Request) -> None:
        """One request: answer it fully, or raise to close the connection."""
        spool = None
        try:
            spool = self._request_body(request)
            # RFC 9112 §3.2.2: "GET http://host/x?q" names what "GET /x?q" names.
            target = request.path + b"".join(request.target.partition(b"?")[1:])
            self.dispatch(request.method, target, request, spool, depth=0)
        except HttpError as error:
            if self.conn.our_state is not State.SEND_RESPONSE:
                raise OSError("error after the response started") from error
            body = f"{error.status} {error}\n".encode()
            text = [(b"Content-Type", b"text/plain; charset=utf-8")]
            self.send(self.conn.send_response(error.status, text, body))
        finally:
            if spool is not None:
                spool.close()

    # -- the request body: streamed for Content-Length, spooled for chunked ----------------
    def _request_body(self, request: Request) -> IO[bytes] | None:
        """RFC 3875 §4.2: CONTENT_LENGTH must be exact, so a chunked body (length unknown
        until its end) is de-chunked into a temporary file first. A Content-Length body is
        streamed straight from the socket into the script's stdin instead."""
        if not request.chunked:
            return None
        self._continue(request)
        spool = tempfile.TemporaryFile(prefix="gatewaylab-cgi-")  # noqa: SIM115 -- returned
        while isinstance(event := self.next_event(), Data):
            spool.write(event.data)
        spool.seek(0)
        return spool

    def _continue(self, request: Request) -> None:
        if request.expects_continue and self.conn.waiting_for_100_continue:
            self.send(self.conn.send(InformationalResponse(100)))  # RFC 9110 §10.1.1

    # -- resolution, environment, execution ----------------------------------------------------
    def dispatch(
        self, method: bytes, target: bytes, request: Request, spool: IO[bytes] | None, depth: int
    ) -> None:
        extra: dict[str, bytes] = {}
        try:
            script, script_name, path_info = resolve_script(self.root, target)
        except HttpError as missing:
            # Apache's "ErrorDocument 404 /not-found": a script of the root answers for the
            # paths no script matches (so the family's 404 is the family's own bytes), told
            # which path that was. Without one, the server's own sentence.
            if missing.status != 404 or not self.config.not_found:
                raise
            try:
                found = resolve_script(self.root, self.config.not_found.encode())
            except HttpError:
                raise missing from None
            script, script_name, path_info = found
            extra = {"REDIRECT_STATUS": b"404", "REDIRECT_URL": target.partition(b"?")[0]}
        length = 0  # §6.2.2: a local redirect's GET has no body; the first script had it
        if depth == 0 and spool is not None:
            length = spool.seek(0, os.SEEK_END)
            spool.seek(0)
        elif depth == 0:
            length = request.content_length or 0
        # Names str, values bytes: execve and posix_spawn encode the names (fsencode, in C).
        env = meta_variables(
            request,
            self.peer,
            script_name=script_name,
            path_info=path_info,
            content_length=length,
            server_software=SERVER_SOFTWARE,
            document_root=self.root,
            script_filename=script,
            method=method,
            target=target,
            connection=self.constant_env,
        )
        env.update(extra)
        if self.tracer.enabled:
            for name, value in env.items():
                self.tracer.event(self.cid, "<", "cgi", f"env {name}={show_bytes(value, 72)}")
        pieces = (  # no body (a GET, a local redirect): stdin is closed at once
            body_pieces(self.conn, request, spool, 65536, lambda: self._continue(request))
            if length
            else iter(())
        )
        # §5.1: an NPH script is known by its name, the one in the URL (not a symlink's target).
        nph = script_name.rsplit("/", 1)[-1].startswith("nph-")
        redirect = self.run_script(script, env, pieces, nph)
        if redirect is not None:
            # RFC 3875 §6.2.2: a local redirect is served by the server itself, as a new GET
            # for the new path (the body was for the first script only).
            if depth >= self.config.max_redirects:
                raise HttpError(500, f"more than {self.config.max_redirects} local redirects")
            self.tracer.note(self.cid, f"local redirect to {escape(redirect)}")
            self.dispatch(b"GET", redirect, request, None, depth + 1)

    def run_script(
        self, script: str, env: dict[str, bytes], pieces: Iterator[bytes | None], nph: bool
    ) -> bytes | None:
        """Fork, exec, feed stdin, read stdout, answer. Returns a local redirect target.

        One poll loop moves three streams at once: body bytes from the client socket to
        the script's stdin, and the script's stdout to the client. Doing them in turn
        instead would deadlock as soon as a script writes more than a pipe holds (64 KiB)
        before it has read all of its input. Once the script has all its stdin and has
        closed its stdout (POLLHUP: no writer left), reads cannot block: the rest is read
        without polling, so a GET of a script done before we look costs one poll, not three."""
        pid, to_script, from_script = SPAWN[self.config.spawn](script, env)
        if self.tracer.enabled:  # the hot path formats no trace line it will not print
            how = "fork+exec" if self.config.spawn == "fork" else self.config.spawn
            self.tracer.note(self.cid, f"{how} {os.path.basename(script)} -> script pid {pid}")
        reply = ScriptReply(self, nph)
        deadline = time.monotonic() + self.config.script_timeout
        pending = b""  # body bytes not yet taken by the script's stdin
        stdin_open = True
        hung_up = False  # POLLHUP seen on the script's stdout
        sock = self.sock.fileno()
        # Its stdout and signals always; the client's socket while the core needs bytes,
        # its stdin while body bytes wait for it (register() again just updates).
        poller = select.poll()
        poller.register(from_script, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        try:
            while True:
                if stdin_open and not pending:
                    piece = next(pieces, b"")
                    if piece is None:
                        poller.register(sock, select.POLLIN)  # the core needs more bytes
                    elif piece:
                        pending = piece
                        # Written only when poll says it can take some, never waiting
                        # for the rest: a GET, with no body, makes no system call here.
                        os.set_blocking(to_script, False)
                        poller.register(to_script, select.POLLOUT)
                    else:
                        os.close(to_script)  # the whole body is in: EOF on stdin
                        stdin_open = False
                if stdin_open or not hung_up:
                    ready = self._wait(poller, deadline, "script")
                    if sock in ready:
                        poller.unregister(sock)
                        data = self.sock.recv(65536)
                        self.tracer.wire(self.cid, "<", data)
                        self.conn.receive_data(data)
                    if to_script in ready:
                        try:
                            pending = pending[os.write(to_script, pending[:65536]) :]
                        except BlockingIOError:
                            pass
                        except BrokenPipeError:  # the script stopped reading: its right
                            os.close(to_script)
                            stdin_open, pending = False, b""
                        if not pending:
                            poller.unregister(to_script)
                    if from_script not in ready:
                        continue
                    hung_up = bool(ready[from_script] & select.POLLHUP)
                data = os.read(from_script, 65536)
                if not data:
                    return reply.finish()
                reply.feed(data)
        except TimeoutError:
            self.tracer.note(self.cid, f"script pid {pid} timed out: killing its process group")
            if reply.started:
                raise OSError("the script timed out in the middle of its response") from None
            raise HttpError(
                504, f"the script ran longer than {self.config.script_timeout:g} s"
            ) from None
        finally:
            os.close(from_script)
            if stdin_open:
                os.close(to_script)
            # Kill whatever the script left running in its group, then reap it (rule 2).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            if self.tracer.enabled:
                code = os.waitstatus_to_exitcode(status)
                self.tracer.note(self.cid, f"script pid {pid} exit status {code}")


# An ignored signal stays ignored through execve: Python ignores SIGPIPE and SIGXFSZ, the
# connection child SIGINT. A script starts with them at their default, as subprocess does,
# or its "yes | head" would never see its SIGPIPE.
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)


def spawn_fork(script: str, env: dict[str, bytes]) -> tuple[int, int, int]:
    """fork + dup2 + execve: the CGI invocation of RFC 3875 §3.4 and §7.2, by hand."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # -- the script's process (rule 1) --
        try:
            os.setpgid(0, 0)  # its own group: a timeout kills the script and its children
            os.dup2(stdin_r, 0)
            os.dup2(stdout_w, 1)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # rule 4: only 0, 1 and 2 survive
            for number in DEFAULT_SIGNALS:  # not ignored, whatever the server ignores
                signal.signal(number, signal.SIG_DFL)
            os.chdir(os.path.dirname(script))  # RFC 3875 §7.2: the script's directory
            # RFC 3875 §4.4 would pass an "indexed" query (no "=") as argv words. We do not:
            # that is how "?-s" and "?-d ..." reached php-cgi's options (CVE-2012-1823).
            os.execve(script, [script], env)
        except BaseException as error:
            with contextlib.suppress(Exception):
                os.write(2, f"cgi: cannot execute {script}: {error}\n".encode())
        finally:
            os._exit(127)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # set it on both sides: no race with an early killpg
    os.close(stdin_r)
    os.close(stdout_w)
    return pid, stdin_w, stdout_r


def spawn_posix(script: str, env: dict[str, bytes]) -> tuple[int, int, int]:
    """The same invocation as :func:`spawn_fork`, its steps declared as data for posix_spawn.

    fork() copies the page tables of the whole connection child (some 20 MB of Python) to
    run a few system calls and then throw the copy away in execve(). posix_spawn(3) in
    glibc starts the child in the parent's memory instead (clone with CLONE_VM and
    CLONE_VFORK: the parent waits until the exec), so nothing is copied. The price is that
    the child can only do what the spawn attributes can say, each step of
    :func:`spawn_fork` becoming one:

    * ``setpgroup=0``: its own process group, set before exec, so no race with killpg;
    * ``file_actions``: the pipes dup2'ed onto 0 and 1 (dup2 clears close-on-exec);
    * ``setsigdef``: the signals the fork path resets to their default;
    * rule 4 without closerange: every descriptor Python opens is close-on-exec (PEP 446),
      and the listening process made the few it inherited so too (``_no_inherited_fds``);
    * no chdir action exists in Python 3.11 (glibc has one since 2.29,
      ``posix_spawn_file_actions_addchdir_np``, which Python does not expose). The
      connection child, a process of its own for this one client that uses only absolute
      paths, moves to the script's directory itself, and the script inherits it (§7.2).
      No helper program, no shell: the chdir happens where it costs one system call.
    """
    os.chdir(os.path.dirname(script))  # RFC 3875 §7.2, by inheritance (see above)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    try:
        pid = os.posix_spawn(
            script,
            [script],  # no argv from the query: see spawn_fork (CVE-2012-1823)
            env,
            file_actions=[(os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, stdout_w, 1)],
            setpgroup=0,
            setsigdef=DEFAULT_SIGNALS,
        )
    except OSError as error:  # the exec failed, and posix_spawn says so here, in the parent
        for fd in (stdin_w, stdout_r):
            os.close(fd)
        print(f"cgi: cannot execute {script}: {error}", file=sys.stderr)
        raise HttpError(502, "the script could not be run") from None
    finally:
        os.close(stdin_r)
        os.close(stdout_w)
    return pid, stdin_w, stdout_r


SPAWN = {"fork": spawn_fork, "posix_spawn": spawn_posix}


# ======================================================================================
# The script's output: CGI response (RFC 3875 §6) to HTTP response
# ======================================================================================
class ScriptReply:
    """Collects the script's header section, decides the response, then streams the body."""

    def __init__(self, child: ConnectionChild, nph: bool) -> None:
        self.child = child
        self.nph = nph  # §5: "non-parsed headers": the script speaks HTTP itself
        self.head = bytearray()
        self.started = False  # bytes of the response went to the client
        self.redirect: bytes | None = None

    def feed(self, data: bytes) -> None:
        child = self.child
        if child.tracer.enabled:
            child.tracer.event(child.cid, ">", "cgi", "stdout " + show_bytes(data))
        if self.nph:
            # §5.2: forwarded unmodified. The core never sends a response head, so the
            # connection cannot be reused and closes after the script: no keep-alive.
            self.started = True
            child.send(data)
        elif self.redirect is not None:
            pass  # §6.2.2: a local redirect has no body; anything more is dropped
        elif self.started:
            child.send(child.conn.send(Data(data)))
        else:
            self.head += data
            end = find_head_end(self.head)
            # Capped like a client's header section, whether its blank line came or not.
            if (len(self.head) if end is None else end[0]) > child.config.max_cgi_head:
                raise HttpError(502, "the script's header section is too large")
            if end is None:
                return
            try:
                reply = parse_cgi_response(bytes(self.head[: end[0]]))
            except BadGateway as error:
                raise HttpError(502, f"the script's response is not CGI: {error}") from None
            if reply.local_redirect is not None:
                self.redirect = reply.local_redirect
                return
            self.started = True
            response = child.conn.send(Response(reply.status, reply.headers, reply.reason))
            child.send(response + child.conn.send(Data(bytes(self.head[end[1] :]))))

    def finish(self) -> bytes | None:
        if self.redirect is not None:
            return self.redirect
        if not self.started:
            if not self.head:
                raise HttpError(502, "the script produced no output")
            raise HttpError(502, "the script's output ended inside its header section")
        if not self.nph:
            self.child.send(self.child.conn.send(EndOfMessage()))
        return None


# ======================================================================================
# Confinement (RFC 3875 §9.8): which file a URL path may run
# ======================================================================================
_ENCODED_SEPARATOR = re.compile(rb"%2[fF]|%5[cC]|%00")


def resolve_script(root: str, target: bytes) -> tuple[str, str, str]:
    """Map a URL path onto a script below ``root``: (file, SCRIPT_NAME, PATH_INFO).

    The path is percent-decoded exactly once, then split into segments. ".." and "." are
    refused, not resolved (Apache 2.4.49's CVE-2021-41773 was a normaliser that missed
    ".%2e"; decoding once and refusing leaves nothing to miss). An encoded "/" (%2F) is
    refused as RFC 3875 §4.1.5 allows, so a segment boundary is always a real "/". Empty
    segments ("//") are skipped. The winning file must lie inside the root once symlinks
    are resolved. PATH_INFO is the rest, with its final "/" if it had one (§4.1.5):
    "/hello/" is the script /hello with PATH_INFO "/", which is not "/hello".

    ``root`` is absolute and free of symlinks (``main`` resolves it once). Then, with no
    ".." in the path, the only way out of the root is a symlink; so the walk uses lstat,
    one system call per segment, and asks for the real path only when it met a symlink.
    Plain strings rather than pathlib: this runs for every request, and pathlib's objects
    cost more than the system calls (a quarter of a connection process's time, profiled).
    """
    raw_path = target.split(b"?", 1)[0]
    if _ENCODED_SEPARATOR.search(raw_path):
        raise HttpError(400, "encoded slash, backslash or NUL in the path")
    path = unquote_to_bytes(raw_path).decode("latin-1")
    segments = [s for s in path.split("/") if s]
    if "." in segments or ".." in segments:
        raise HttpError(403, "dot segments are not allowed in a script path")
    current = root.rstrip("/")
    through_symlink = False
    for i, segment in enumerate(segments):
        candidate = current + "/" + segment
        try:
            mode = os.lstat(candidate).st_mode
            if stat.S_ISLNK(mode):
                through_symlink = True
                mode = os.stat(candidate).st_mode  # what the link points to
        except OSError:  # ENOENT, ENOTDIR, ENAMETOOLONG, ELOOP: nothing to run here
            break
        if stat.S_ISDIR(mode):
            current = candidate
            continue
        real = os.path.realpath(candidate) if through_symlink else candidate
        if not real.startswith(root.rstrip("/") + "/"):
            raise HttpError(403, "the script path leads outside the script root")
        script_name = "/" + "/".join(segments[: i + 1])
        if not os.access(real, os.X_OK):
            raise HttpError(403, f"{script_name} is not executable")
        path_info = "".join("/" + s for s in segments[i + 1 :])
        return real, script_name, path_info + ("/" if path.endswith("/") else "")
    raise HttpError(404, "no script at this path")


# ======================================================================================
def main(argv: list[str] | None = None) -> int:
    parser = base_parser("cgi", "Era 1: the forking CGI/1.1 server (RFC 3875)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the script root")
    add_config_options(
        parser,
        Config,
        (
            ("max_children", "connection processes at once; past it, 503"),
            ("script_timeout", "seconds a script may run; then 504"),
            ("idle_timeout", "seconds a kept-alive connection may wait for its next request"),
            ("request_timeout", "seconds to receive a request head or a body piece"),
            ("graceful_timeout", "seconds in-flight requests get after SIGTERM"),
            (
                "not_found",
                "the script (a URL path) that answers the paths no script matches, if"
                " the root has it, like Apache's ErrorDocument 404; '' for the server's own 404",
            ),
        ),
    )
    parser.add_argument(
        "--spawn",
        choices=sorted(SPAWN),
        default=Config.spawn,
        help="how a script is started: fork (fork, dup2, execve by hand) or posix_spawn"
        " (the same steps, without copying the server's memory) (default %(default)s)",
    )
    args = vars(parser.parse_args(argv))
    if not args["root"].is_dir():
        parser.error(f"the script root {args['root']} is not a directory")
    # Absolute, symlinks resolved, once: a connection child may change its working
    # directory (spawn_posix), and every request would otherwise resolve it again.
    args["root"] = args["root"].resolve()
    args.pop("app", None)
    return ForkingServer(Config(**args)).serve_forever()


if __name__ == "__main__":
    sys.exit(main())
