"""RFC 6455 WebSocket, server side, sans-IO: frames in, messages out; messages in, frames out.

The HTTP core (servers/http/) ends where a WebSocket begins: a GET with ``Upgrade:
websocket`` is answered ``101 Switching Protocols``, and from the byte after that answer
the connection carries *frames*. This module is the frame layer, written like the HTTP
core (STYLE rule 1): no sockets, no asyncio. :class:`Connection` is fed bytes with
``receive_data()`` and hands out whole messages with ``next_event()``; ``send_*()`` turn
what the server wants to say into bytes for the transport. The ASGI server
(servers/asgi_websocket.py) is the I/O loop around it.

A frame on the wire (RFC 6455 §5.2)::

     0               1               2               3
     F R R R opcode  M length(7)     [length: 16 or 64 bits, if length(7) is 126 or 127]
     I S S S (4)     A
     N V V V         S               [masking key: 32 bits, if MASK]
       1 2 3         K               payload ...

How bytes become events, and the reader's three outcomes (STYLE rule 2):

1. ``next_event()`` **returns an event**: a whole text or binary message (fragments are
   reassembled here: §5.4), a Ping, a Pong, or the peer's Close;
2. it **returns NEED_DATA** when the buffer holds no complete frame yet; a frame may
   arrive a byte at a time, and the header is checked as soon as its bytes are in, so a
   frame that can never be valid is refused before its payload is waited for;
3. it **raises ProtocolError** carrying the close code to answer with: 1002 for a broken
   frame, 1007 for a text message that is not UTF-8, 1009 for a message over the size
   limit (§7.4.1). After that the connection is failed (§7.1.7): the server sends that
   Close and drops the TCP connection.

House rules:

* **Strict, because the peer is a client.** Client frames MUST be masked (§5.1), reserved
  bits MUST be zero when no extension was negotiated (§5.2; we negotiate none),
  control frames are at most 125 bytes and never fragmented (§5.5), and lengths use the
  fewest bytes (§5.2). Each of these is one ``if`` below, with its section.
* **Bounded.** A message (all its fragments) may not exceed ``max_message``; the check is
  made on the *declared* frame length, so an over-long frame is refused from its header,
  before a byte of its payload is buffered.
* **UTF-8 is checked incrementally**, fragment by fragment, with an incremental decoder:
  a text message that goes wrong in its second fragment is failed at that fragment, not
  after the last one (Autobahn's "fail fast" cases, 6.4.x).
* **1005 and 1006 never go on the wire** (§7.4.1): they *describe* a close without a code
  and a close without a Close frame. ``send_close`` refuses them.
"""

from __future__ import annotations

import base64
import codecs
import enum
import hashlib
import struct
from dataclasses import dataclass

from .http import NEED_DATA, Request, Signal

__all__ = [
    "MAX_MESSAGE",
    "BytesMessage",
    "CloseCode",
    "CloseReceived",
    "Connection",
    "Event",
    "HandshakeError",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "State",
    "TextMessage",
    "accept_key",
    "check_handshake",
    "is_upgrade",
    "valid_close_code",
]

# §1.3: the GUID every server appends to the client's key; proves it read the handshake.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A whole message, all fragments together. websockets and daphne default to 1 MiB, uvicorn
# and hypercorn to 16 MiB. 1 MiB is plenty for chat and JSON, and bounds what one slow
# reader can make us hold; servers take --ws-max-size to raise it.
MAX_MESSAGE = 1024 * 1024
# §5.5: every control frame carries at most 125 bytes of payload, so it fits a 7-bit length.
MAX_CONTROL = 125


class Opcode(enum.IntEnum):
    """§5.2 and §11.8: 3-7 and 11-15 are reserved for future use, and fail the connection."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """The close codes the server itself uses or must recognise (§7.4.1, IANA registry)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server is stopping
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # a Close without a code; never sent
    ABNORMAL = 1006  # no Close frame at all (the TCP connection dropped); never sent
    INVALID_DATA = 1007  # e.g. a text message that is not UTF-8
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011


def valid_close_code(code: int) -> bool:
    """May ``code`` travel in a Close frame? §7.4.1-7.4.2 and the IANA registry:

    1000-1003 and 1007-1011 are defined by RFC 6455, 1012-1014 were registered since
    (service restart, try again later, bad gateway); 1004 is reserved, 1005, 1006 and 1015
    are for reporting only; the rest of 1000-2999 is reserved for future RFCs;
    3000-3999 belong to libraries and frameworks, 4000-4999 to applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# -- events: what the client said (frozen dataclasses, STYLE rule 4) ---------------------------
@dataclass(frozen=True, slots=True)
class TextMessage:
    data: str


@dataclass(frozen=True, slots=True)
class BytesMessage:
    data: bytes

    def __repr__(self) -> str:
        return f"BytesMessage(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's Close frame: its code (1005 when it gave none, §7.1.5) and reason."""

    code: int
    reason: str = ""


Event = TextMessage | BytesMessage | Ping | Pong | CloseReceived


class ProtocolError(Exception):
    """The client broke RFC 6455. ``code`` is the close code that answers it (§7.4.1)."""

    def __init__(self, message: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- the closing handshake, as a state table (STYLE rule 3) ------------------------------------
class State(enum.Enum):
    OPEN = "OPEN"  # messages flow both ways
    CLOSE_SENT = "CLOSE_SENT"  # we sent Close and wait for the client's (§7.1.2)
    CLOSE_RECEIVED = "CLOSE_RECEIVED"  # the client sent Close; we owe it ours (§5.5.1)
    CLOSED = "CLOSED"  # both Close frames crossed: the TCP connection may go (§7.1.1)

    def __repr__(self) -> str:
        return self.name


# (state, who closes) -> next state. "sent": we write a Close; "received": we read one.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.OPEN, "sent"): State.CLOSE_SENT,
    (State.OPEN, "received"): State.CLOSE_RECEIVED,
    (State.CLOSE_SENT, "received"): State.CLOSED,
    (State.CLOSE_RECEIVED, "sent"): State.CLOSED,
}


class Connection:
    """One WebSocket connection, server side, after the 101. Not thread-safe."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self.state = State.OPEN
        self._buf = bytearray()
        # The header of the frame whose payload we wait for: (fin, opcode, start, length).
        self._header: tuple[bool, int, int, int] | None = None
        # A fragmented message in progress (§5.4): its opcode, pieces and size so far.
        self._message_opcode: int | None = None
        self._text: list[str] = []
        self._binary: list[bytes] = []
        self._message_size = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    # -- the client's side ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> Event | Signal:
        """The next message or control frame, or NEED_DATA; raises ProtocolError."""
        while True:
            frame = self._next_frame()
            if frame is None:
                return NEED_DATA
            fin, opcode, payload = frame
            if self.state in (State.CLOSE_RECEIVED, State.CLOSED):
                continue  # §5.5.1: nothing the client sends after its Close counts
            if opcode >= Opcode.CLOSE:
                return self._control(opcode, payload)
            event = self._data(fin, opcode, payload)
            if event is not None:
                return event

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        if self._header is None:
            self._header = self._read_header(buf)
            if self._header is None:
                return None
        fin, opcode, start, length = self._header
        end = start + 4 + length
        if len(buf) < end:
            return None
        mask = bytes(buf[start : start + 4])
        payload = _unmask(bytes(buf[start + 4 : end]), mask)
        del buf[:end]
        self._header = None
        return fin, opcode, payload

    def _read_header(self, buf: bytearray) -> tuple[bool, int, int, int] | None:
        """Check a frame header as soon as its bytes are in (outcome 3 before the payload)."""
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            # §5.2: RSV1-3 MUST be 0 unless an extension defines them; none was negotiated
            # (so a permessage-deflate frame is refused here, and cannot become a bomb).
            raise ProtocolError("reserved bits set, but no extension was negotiated")
        if opcode not in _OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")  # §5.2
        if not second & 0x80:
            # §5.1: the server MUST close the connection upon an unmasked client frame.
            raise ProtocolError("unmasked frame from a client (RFC 6455 §5.1)")
        length, start = second & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, start = struct.unpack_from("!H", buf, 2)[0], 4
            if length < 126:
                raise ProtocolError("frame length not in its shortest form (§5.2)")
        elif length == 127:
            if len(buf) < 10:
                return None
            length, start = struct.unpack_from("!Q", buf, 2)[0], 10
            if length >> 63:
                raise ProtocolError("frame length with its most significant bit set (§5.2)")
            if length < 65536:
                raise ProtocolError("frame length not in its shortest form (§5.2)")
        if opcode >= Opcode.CLOSE:
            # §5.5: control frames MUST have a payload of 125 bytes or less and MUST NOT be
            # fragmented (they may come *between* the fragments of a message, §5.4).
            if length > MAX_CONTROL:
                raise ProtocolError(f"control frame of {length} bytes; the limit is 125")
            if not fin:
                raise ProtocolError("fragmented control frame")
        else:
            self._check_sequence(opcode)
            if self._message_size + length > self.max_message:
                raise ProtocolError(
                    f"message over {self.max_message} bytes", CloseCode.TOO_BIG
                )  # §7.4.1: 1009, refused from the header, before the payload is buffered
        return fin, opcode, start, length

    def _check_sequence(self, opcode: int) -> None:
        """§5.4: a message is one TEXT/BINARY frame then CONTINUATIONs up to the FIN bit."""
        in_message = self._message_opcode is not None
        if opcode == Opcode.CONTINUATION and not in_message:
            raise ProtocolError("continuation frame with no message to continue")
        if opcode != Opcode.CONTINUATION and in_message:
            raise ProtocolError("new data frame before the fragmented message ended")

    def _data(self, fin: bool, opcode: int, payload: bytes) -> Event | None:
        if opcode != Opcode.CONTINUATION:
            self._message_opcode = opcode
        text = self._message_opcode == Opcode.TEXT
        self._message_size += len(payload)
        if text:
            try:
                # Incremental: a character split across two fragments is fine, an invalid
                # byte fails now; final=fin catches a sequence cut off at the end.
                piece = self._utf8.decode(payload, final=fin)
            except UnicodeDecodeError as error:
                self._utf8.reset()
                raise ProtocolError(
                    f"text message is not UTF-8: {error.reason}", CloseCode.INVALID_DATA
                ) from None  # §8.1
            self._text.append(piece)
        else:
            self._binary.append(payload)
        if not fin:
            return None
        self._message_opcode, self._message_size = None, 0
        if text:
            message, self._text = "".join(self._text), []
            return TextMessage(message)
        data, self._binary = b"".join(self._binary), []
        return BytesMessage(data)

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == Opcode.PING:
            return Ping(payload)
        if opcode == Opcode.PONG:
            return Pong(payload)
        # §5.5.1: a Close body, if any, is a 2-byte code and then a UTF-8 reason.
        if len(payload) == 1:
            raise ProtocolError("close frame with a one-byte body")
        code: int = CloseCode.NO_STATUS
        reason = ""
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                raise ProtocolError(f"close code {code} may not be sent (§7.4)")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("close reason is not UTF-8", CloseCode.INVALID_DATA) from None
        self.state = TRANSITIONS[self.state, "received"]
        return CloseReceived(code, reason)

    # -- our side ------------------------------------------------------------------------------
    def send_text(self, text: str) -> bytes:
        return self._frame(Opcode.TEXT, text.encode("utf-8"))

    def send_bytes(self, data: bytes) -> bytes:
        return self._frame(Opcode.BINARY, data)

    def send_ping(self, payload: bytes = b"") -> bytes:
        return self._frame(Opcode.PING, payload)

    def send_pong(self, payload: bytes) -> bytes:
        return self._frame(Opcode.PONG, payload)

    def send_close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Our Close frame; ``code=None`` sends one without a body (the peer sees 1005).

        ValueError for a code that may not be sent (1005, 1006: §7.4.1) or a reason over
        the 123 bytes a control frame leaves for it (§5.5)."""
        if code is None:
            payload = b""
        else:
            if not valid_close_code(code):
                raise ValueError(f"close code {code} may not be sent on the wire (RFC 6455 §7.4)")
            payload = code.to_bytes(2, "big") + reason.encode("utf-8")
            if len(payload) > MAX_CONTROL:
                raise ValueError(f"close reason of {len(payload) - 2} bytes; at most 123 fit")
        try:
            self.state = TRANSITIONS[self.state, "sent"]
        except KeyError:
            raise ValueError(f"cannot send CLOSE in state {self.state!r}") from None
        return frame_bytes(Opcode.CLOSE, payload)

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        if self.state is not State.OPEN:
            # §5.5.1: after a Close (ours or theirs) an endpoint sends no more data frames.
            raise ValueError(f"cannot send {Opcode(opcode).name} in state {self.state!r}")
        return frame_bytes(opcode, payload)

    @property
    def buffered(self) -> int:
        return len(self._buf)


_OPCODES = frozenset(Opcode)


def frame_bytes(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One frame, §5.2. A server never masks (§5.1); ``mask`` is for test clients."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    length = len(payload)
    if length < 126:
        head = bytes((first, mask_bit | length))
    elif length < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask is None:
        return head + payload
    return head + mask + _unmask(payload, mask)


def _unmask(data: bytes, mask: bytes) -> bytes:
    """§5.3: XOR with the 4-byte key, repeated. Done as one big-integer XOR, which runs in C
    and costs about as much as a copy, instead of a Python loop over every byte."""
    length = len(data)
    if not length:
        return data
    key = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(data, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(length, "big")


# ============================================================================================
# The opening handshake (§4.2): an HTTP request the HTTP core has already parsed
# ============================================================================================
class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket handshake: answer ``status`` (§4.2.1)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        # §4.2.2: with 426, the versions the server speaks, so the client can retry.
        return [(b"sec-websocket-version", b"13")] if self.status == 426 else []


def _tokens(request: Request, name: bytes) -> list[bytes]:
    """A comma-separated header (possibly on several lines) as lower-case tokens."""
    return [
        item.strip(b" \t").lower()
        for value in request.headers.get_all(name)
        for item in value.split(b",")
        if item.strip(b" \t")
    ]


def is_upgrade(request: Request) -> bool:
    """Does the client ask to switch to WebSocket? (RFC 9110 §7.8, RFC 6455 §4.1 items 5-6.)
    Any other Upgrade (h2c) is ignored: a server MAY, and answers in HTTP/1.1 instead."""
    if request.headers.get(b"upgrade") is None:  # the common case, decided in one scan
        return False
    return b"websocket" in _tokens(request, b"upgrade") and b"upgrade" in _tokens(
        request, b"connection"
    )


@dataclass(frozen=True)
class Handshake:
    key: bytes
    subprotocols: list[str]


def check_handshake(request: Request) -> Handshake:
    """§4.2.1: what a server must find in the client's opening handshake, item by item."""
    if request.method != b"GET":  # item 1
        raise HandshakeError("a WebSocket handshake is a GET request")
    if request.http_version != b"1.1":  # item 1: HTTP/1.1 or higher
        raise HandshakeError("a WebSocket handshake needs HTTP/1.1")
    if request.has_body:  # what follows the head is frames, not a body
        raise HandshakeError("a WebSocket handshake has no body")
    # Items 2-4 (Host, Upgrade, Connection): Host was checked by the HTTP core, and the
    # other two by is_upgrade(), which is how we got here.
    keys = request.headers.get_all(b"sec-websocket-key")
    # Item 5: the key is 16 random bytes, base64-encoded: 24 characters.
    if len(keys) != 1 or not _valid_key(keys[0]):
        raise HandshakeError("Sec-WebSocket-Key must be one base64 value of 16 bytes")
    # Item 6: version 13. Otherwise 426 and the versions we speak (§4.2.2, §4.4).
    versions = request.headers.get_all(b"sec-websocket-version")
    if versions != [b"13"]:
        raise HandshakeError("this server speaks WebSocket version 13 only", 426)
    protocols = [
        item.strip(b" \t").decode("latin-1")
        for value in request.headers.get_all(b"sec-websocket-protocol")
        for item in value.split(b",")
        if item.strip(b" \t")
    ]
    return Handshake(keys[0], protocols)


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def accept_key(key: bytes) -> bytes:
    """§4.2.2 item 5.4: base64(SHA-1(key + GUID)), the proof in Sec-WebSocket-Accept."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())
