"""gatewaylab's shared HTTP/1.1 core: sans-IO, strict, used by every era's front end.

Bytes in, events out; events in, bytes out. No sockets, no threads, no ``await``: the
forking CGI server, the FastCGI gateway, the threaded WSGI server and the asyncio ASGI
server all wrap the same :class:`ServerConnection` in their own I/O loop, and that loop
is the only thing that differs between them. That difference is the course.

    from servers.http import ServerConnection, Request, Data, EndOfMessage, NEED_DATA

    conn = ServerConnection()
    conn.receive_data(b"GET /hello HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    conn.next_event()   # Request(method=b'GET', target=b'/hello', ...)
    conn.next_event()   # EndOfMessage()
    conn.send_response(200, [(b"Content-Type", b"text/plain")], b"hi\\n")  # -> bytes

The package, in reading order:

* ``events``     the vocabulary: events, NEED_DATA / PAUSED, errors, limits
* ``grammar``    RFC 9110/9112 ABNF as regular expressions, one rule per line
* ``readers``    bytes -> events: request head, Content-Length body, chunked body
* ``writers``    events -> bytes: status line, headers, body framings, Date
* ``connection`` the two-sided state machine that ties them together
"""

from .connection import (
    CLOSED,
    DONE,
    ERROR,
    IDLE,
    MUST_CLOSE,
    SEND_BODY,
    SEND_RESPONSE,
    SERVER_SOFTWARE,
    SWITCHED,
    ServerConnection,
    State,
)
from .events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    InformationalResponse,
    Limits,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    Signal,
)
from .writers import http_date

__all__ = [
    "CLOSED",
    "DONE",
    "ERROR",
    "IDLE",
    "MUST_CLOSE",
    "NEED_DATA",
    "PAUSED",
    "SEND_BODY",
    "SEND_RESPONSE",
    "SERVER_SOFTWARE",
    "SWITCHED",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "Headers",
    "InformationalResponse",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "ServerConnection",
    "Signal",
    "State",
    "http_date",
]
