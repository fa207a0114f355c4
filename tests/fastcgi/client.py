"""A tiny FastCGI test client on our codec: the tests' web server, one record at a time.

It speaks records exactly as a test needs them (in order or not, complete or cut short),
which no real web server would do, and reads back what the application answers, with a
deadline on every wait so that a missing answer fails the test instead of hanging it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from servers.fastcgi.records import (
    BeginRequest,
    EndRequest,
    Params,
    Record,
    RecordReader,
    Role,
    Stderr,
    Stdin,
    Stdout,
    encode,
    encode_pairs,
)
from servers.http.events import Signal

TIMEOUT = 10.0


@dataclass
class Answer:
    """What came back for one request id."""

    stdout: bytes = b""
    stderr: bytes = b""
    end: EndRequest | None = None
    records: list[Record] = field(default_factory=list)


def request_records(
    request_id: int,
    params: dict[str, str | bytes],
    body: bytes = b"",
    *,
    keep_conn: bool = True,
    role: int = Role.RESPONDER,
) -> bytes:
    """BEGIN, PARAMS + its end, STDIN + its end: a whole request as a web server sends it."""
    pairs = encode_pairs(
        [
            (name.encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
            for name, value in params.items()
        ]
    )
    return b"".join(
        [
            encode(BeginRequest(request_id, role, 1 if keep_conn else 0)),
            encode(Params(request_id, pairs)) if pairs else b"",  # empty would end it
            encode(Params(request_id, b"")),
            encode(Stdin(request_id, body)) if body else b"",
            encode(Stdin(request_id, b"")),
        ]
    )


def family_params(
    path: str, method: str = "GET", query: str = "", **extra: str
) -> dict[str, str | bytes]:
    params: dict[str, str | bytes] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_URI": path + ("?" + query if query else ""),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    params.update(extra)
    return params


class Client:
    def __init__(self, address: tuple[str, int] | str, source: str | None = None) -> None:
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(address)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.connect(address)
        self.reader = RecordReader()
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_record(self, timeout: float = TIMEOUT) -> Record | None:
        """The next record, or None if the application closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.reader.next_record()
            if not isinstance(record, Signal):
                return record
            if self.closed:
                return None
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                continue
            self.reader.receive_data(data)

    def answer(self, request_id: int = 1, timeout: float = TIMEOUT) -> Answer:
        """Read records until END_REQUEST for ``request_id`` (others are kept aside)."""
        answer = Answer()
        while True:
            record = self.read_record(timeout)
            assert record is not None, "the application closed before END_REQUEST"
            answer.records.append(record)
            if getattr(record, "request_id", None) != request_id:
                continue
            if isinstance(record, Stdout):
                answer.stdout += record.data
            elif isinstance(record, Stderr):
                answer.stderr += record.data
            elif isinstance(record, EndRequest):
                answer.end = record
                return answer

    def wait_closed(self, timeout: float = TIMEOUT) -> list[Record]:
        """Every record until the application closes; fails if it does not in time."""
        records = []
        while (record := self.read_record(timeout)) is not None:
            records.append(record)
        return records

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
