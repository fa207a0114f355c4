"""Lesson 2's bench: FastCGI spoken by hand, the cost of a process per request, nginx.

Lesson 2 (``lessons/02-fastcgi.md``) and its notebook look at FastCGI from the web
server's chair, closer than a real web server lets you: records sent one by one, two
requests interleaved on one connection, a management question (GET_VALUES). A real web
server never does the last two (nginx sends one request at a time per connection), so
this module is a small web server's end written for looking, on the same codec as the
servers (``servers.fastcgi.records``):

* :class:`RecordClient` connects to an application server, sends records, and reads
  records back, each shown as the servers' ``--trace`` shows it (the 8 header bytes in
  hex, then their meaning), with a deadline on every wait;
* :func:`time_cgi_script` and :func:`time_fastcgi` measure the wall of lesson 1: the
  same ``/whoami`` answered by a new process per request (fork, exec, interpreter, the
  family's imports), then by one process that stays, on a kept connection;
* :class:`NginxFront` puts a real nginx in front of an application server for the span
  of one step or cell, with the configuration of ``servers/fastcgi/nginx.py``, and stops
  it (its whole process group) on the way out, whatever happens. Where nginx is not
  installed it raises :class:`PeerMissing`, whose message says what to install: lesson 2
  runs on a machine without nginx, and says what it would have shown.

House rules as in the rest of ``lessons``: everything started is stopped in a
``finally``; nothing here is imported by a server.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from servers.fastcgi.nginx import find_nginx, nginx_argv, nginx_config, prepare_directory
from servers.fastcgi.records import (
    FCGI_KEEP_CONN,
    BeginRequest,
    EndRequest,
    Params,
    Record,
    RecordReader,
    Role,
    Stdin,
    Stdout,
    encode,
    encode_pairs,
)
from servers.fastcgi.trace import describe
from servers.http.events import Signal
from servers.launch import REPO_ROOT, ServerProcess, ServerStartError, free_port

__all__ = [
    "NGINX_HINT",
    "NginxFront",
    "PeerMissing",
    "Received",
    "RecordClient",
    "Timing",
    "cgi_params",
    "request_records",
    "stdout_of",
    "time_cgi_script",
    "time_fastcgi",
]

NGINX_HINT = "nginx is not installed: sudo apt-get install nginx-light"
CGI_BIN = REPO_ROOT / "apps" / "cgi-bin"


class PeerMissing(RuntimeError):
    """A program the step needs is not installed; the message says how to get it."""


# ----------------------------------------------------------------------------------------
# A request, as a web server describes it
def cgi_params(path: str, method: str = "GET", query: str = "") -> dict[str, bytes]:
    """The CGI variables of a request for ``path``, as our gateway sends them (the few an
    application reads; nginx sends some twenty)."""
    return {
        "REQUEST_METHOD": method.encode(),
        "SCRIPT_NAME": b"",  # the application owns the whole URL space
        "PATH_INFO": path.encode("latin-1"),
        "QUERY_STRING": query.encode("latin-1"),
        "REQUEST_URI": (path + ("?" + query if query else "")).encode("latin-1"),
        "SERVER_NAME": b"localhost",
        "SERVER_PORT": b"80",
        "SERVER_PROTOCOL": b"HTTP/1.1",
        "GATEWAY_INTERFACE": b"CGI/1.1",
        "REMOTE_ADDR": b"127.0.0.1",
    }


def request_records(
    request_id: int, params: Mapping[str, bytes], body: bytes = b"", keep_conn: bool = True
) -> list[Record]:
    """A whole responder request (spec App. B, example 1): BEGIN_REQUEST, the PARAMS
    stream and its empty end, the STDIN stream and its empty end."""
    pairs = encode_pairs([(name.encode("ascii"), value) for name, value in params.items()])
    records: list[Record] = [
        BeginRequest(request_id, Role.RESPONDER, FCGI_KEEP_CONN if keep_conn else 0),
        Params(request_id, pairs),
        Params(request_id, b""),
    ]
    if body:
        records.append(Stdin(request_id, body))
    records.append(Stdin(request_id, b""))
    return records


# ----------------------------------------------------------------------------------------
# The web server's end, by hand
@dataclass(frozen=True)
class Received:
    """One record that came back, with its raw header (for the hex view)."""

    header: bytes
    record: Record

    def __str__(self) -> str:
        return f"{self.header.hex(' ')}  {describe(self.record, self.header)}"


class RecordClient:
    """One connection to a FastCGI application server, spoken record by record.

    ``address`` is ``(host, port)`` or a Unix socket path. Every read has a deadline, so a
    missing answer is an error in the step, not a lesson that hangs."""

    def __init__(self, address: tuple[str, int] | str, timeout: float = 5.0) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.timeout = timeout
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self._reader = RecordReader()
        self.closed = False  # the application closed its end

    def send(self, records: Iterable[Record]) -> bytes:
        """Send records in one write; returns the bytes, for a look at them."""
        data = b"".join(encode(record) for record in records)
        self.sock.sendall(data)
        return data

    def receive(self) -> Received | None:
        """The next record, or None once the application closed the connection."""
        deadline = time.monotonic() + self.timeout
        while isinstance(record := self._reader.next_record(), Signal):
            if self.closed:
                return None
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                message = f"no record from the application in {self.timeout:g} s"
                raise TimeoutError(message) from None
            if data:
                self._reader.receive_data(data)
            else:
                self.closed = True
        return Received(self._reader.last_header, record)

    def until_end(self, request_ids: Iterable[int]) -> list[Received]:
        """Records until every one of ``request_ids`` has had its END_REQUEST."""
        waiting = set(request_ids)
        got = []
        while waiting:
            received = self.receive()
            if received is None:
                raise ConnectionError(f"closed before END_REQUEST of {sorted(waiting)}")
            got.append(received)
            if isinstance(received.record, EndRequest):
                waiting.discard(received.record.request_id)
        return got

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RecordClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stdout_of(records: Iterable[Received], request_id: int) -> bytes:
    """The STDOUT stream of one request: what its application printed, a CGI response."""
    return b"".join(
        r.record.data
        for r in records
        if isinstance(r.record, Stdout) and r.record.request_id == request_id
    )


# ----------------------------------------------------------------------------------------
# The wall of lesson 1, measured
@dataclass(frozen=True)
class Timing:
    """``runs`` requests answered one after another: the time each took, and the pid that
    answered each (from /whoami)."""

    label: str
    seconds: tuple[float, ...]
    pids: tuple[int, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def per_second(self) -> float:
        return len(self.seconds) / sum(self.seconds)

    def __str__(self) -> str:
        pids = sorted(set(self.pids))
        shown = ", ".join(map(str, pids[:3])) + (", ..." if len(pids) > 3 else "")
        noun = "pid" if len(pids) == 1 else "different pids"
        return (
            f"{self.label:<34} {len(self.seconds):>4} requests, {self.median_ms:8.2f} ms "
            f"each (median), {self.per_second:8.0f} a second; {len(pids)} {noun}: {shown}"
        )


def _pid_of(cgi_response: bytes) -> int:
    """The pid in a /whoami answer (a CGI response: head, blank line, JSON)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        _, found, body = cgi_response.partition(separator)
        if found:
            pid: int = json.loads(body)["pid"]
            return pid
    raise ValueError(f"not a CGI response: {cgi_response[:80]!r}")


def time_cgi_script(script: Path = CGI_BIN / "whoami", runs: int = 20) -> Timing:
    """Run a CGI script ``runs`` times as a CGI server does: a new process each time
    (fork and exec, then the interpreter's start-up and the script's imports), the
    request in its environment, the answer read from its stdout."""
    environment = {
        # As servers/cgi.py sets it: the project's Python first, so "python3" is ours.
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        **{name: value.decode("latin-1") for name, value in cgi_params("/whoami").items()},
        "SCRIPT_NAME": "/whoami",  # a CGI server maps the path to the script
        "PATH_INFO": "",
    }
    seconds, pids = [], []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [str(script)], env=environment, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=30, check=True,
        )  # fmt: skip
        seconds.append(time.perf_counter() - started)
        pids.append(_pid_of(done.stdout))
    return Timing("CGI: a process per request", tuple(seconds), tuple(pids))


def time_fastcgi(address: tuple[str, int] | str, runs: int = 200) -> Timing:
    """``runs`` /whoami requests to a FastCGI application server, one after another on
    one kept connection (FCGI_KEEP_CONN), as nginx sends them."""
    seconds, pids = [], []
    with RecordClient(address) as client:
        for _ in range(runs):
            started = time.perf_counter()
            client.send(request_records(1, cgi_params("/whoami")))
            answer = client.until_end([1])
            seconds.append(time.perf_counter() - started)
            pids.append(_pid_of(stdout_of(answer, 1)))
    return Timing("FastCGI: one process, kept connection", tuple(seconds), tuple(pids))


# ----------------------------------------------------------------------------------------
# nginx in front, for one step
class NginxFront:
    """nginx in front of the application server at ``upstream``, for a ``with`` block.

    On entering: a private directory with nginx.conf (servers/fastcgi/nginx.py), nginx in
    the foreground as its own process group on a free port, ready once the port accepts.
    On leaving: the group stopped, the directory removed. :class:`PeerMissing` if nginx
    is not installed."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        self.upstream = upstream
        self.directory: Path | None = None
        self.process: ServerProcess | None = None
        self.config = ""

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.url

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> NginxFront:
        nginx = find_nginx()
        if nginx is None:
            raise PeerMissing(NGINX_HINT)
        self.directory = Path(tempfile.mkdtemp(prefix="gatewaylab-nginx-"))
        try:
            prepare_directory(self.directory)
            for _ in range(3):  # a free port can be taken between our look and nginx's bind
                port = free_port()
                # No buffering: a streamed answer goes on record by record, as our gateway's.
                self.config = nginx_config(self.directory, port, [self.upstream], buffering=False)
                (self.directory / "nginx.conf").write_text(self.config)
                # The probe is a TCP connect: an HTTP probe would be a request to the
                # application, and show up in its trace.
                process = ServerProcess(
                    nginx_argv(nginx, self.directory), port=port, http_probe=None, name="nginx"
                )
                try:
                    self.process = process.start()
                    return self
                except ServerStartError as error:
                    process.__exit__(None, None, None)
                    if "Address already in use" not in str(error):
                        raise
            raise ServerStartError("nginx found no free port in three tries")
        except BaseException:
            self._remove_directory()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self.process is not None:
                self.process.__exit__(kind, error, traceback)  # stops the whole group
        finally:
            self._remove_directory()

    def output(self) -> str:
        assert self.process is not None
        return self.process.output()

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
