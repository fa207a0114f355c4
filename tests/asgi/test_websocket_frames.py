"""servers/websocket.py without sockets: frames in, events out, one byte at a time.

Client frames are built with ``frame_bytes(..., mask=...)`` (a client must mask) or by
wsproto, a second implementation, as the reference: what wsproto's client sends we must
read as it meant, and what we send wsproto's client must read as we meant. The failures
follow the Autobahn TestSuite's sections (3: reserved bits, 4: opcodes, 5: fragmentation,
6: UTF-8, 7: close handling, 9: sizes), each checked for the close code RFC 6455 §7.4.1
assigns to it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage as WpBytes
from wsproto.events import CloseConnection as WpClose
from wsproto.events import Message as WpMessage
from wsproto.events import TextMessage as WpText

from servers import websocket as ws
from servers.http import NEED_DATA, Headers, Request
from servers.websocket import (
    BytesMessage,
    CloseReceived,
    Connection,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    State,
    TextMessage,
    frame_bytes,
)

MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = MASK) -> bytes:
    return frame_bytes(opcode, payload, fin=fin, mask=mask)


def events_of(data: bytes, step: int | None = None, max_message: int = ws.MAX_MESSAGE) -> list:
    """Feed ``data`` (whole, or ``step`` bytes at a time) and collect every event."""
    conn = Connection(max_message)
    events = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def error_of(data: bytes, max_message: int = ws.MAX_MESSAGE) -> ProtocolError:
    """The ProtocolError ``data`` raises, fed whole and a byte at a time (the same one)."""
    errors = []
    for step in (None, 1):
        with pytest.raises(ProtocolError) as caught:
            events_of(data, step, max_message)
        errors.append(caught.value)
    assert errors[0].code == errors[1].code and str(errors[0]) == str(errors[1])
    return errors[0]


# -- messages ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_every_length_encoding_reads_back_a_byte_at_a_time(size: int) -> None:
    # §5.2: 7-bit lengths up to 125, then 16-bit (126), then 64-bit (127).
    payload = bytes(i % 251 for i in range(size))
    data = client_frame(Opcode.BINARY, payload)
    step = 1 if size < 1000 else 997
    assert events_of(data, step) == [BytesMessage(payload)]


def test_text_arrives_as_str() -> None:
    assert events_of(client_frame(Opcode.TEXT, "héllo ☃".encode())) == [TextMessage("héllo ☃")]


def test_fragments_are_reassembled_and_control_frames_may_interleave() -> None:
    # §5.4: a character split across two fragments; a Ping between fragments is answered
    # in place (it comes out first), and the message comes out whole.
    snowman = "☃".encode()
    data = (
        client_frame(Opcode.TEXT, b"a" + snowman[:1], fin=False)
        + client_frame(Opcode.PING, b"are you there", fin=True)
        + client_frame(Opcode.CONTINUATION, snowman[1:], fin=False)
        + client_frame(Opcode.CONTINUATION, b"z", fin=True)
    )
    for step in (None, 1):
        assert events_of(data, step) == [Ping(b"are you there"), TextMessage("a☃z")]


def test_ping_and_pong_events_carry_their_payload() -> None:
    data = client_frame(Opcode.PING, b"p" * 125) + client_frame(Opcode.PONG, b"")
    assert events_of(data, 1) == [Ping(b"p" * 125), Pong(b"")]


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), max_size=5),
    cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8),
    mask=st.binary(min_size=4, max_size=4),
    step=st.integers(min_value=1, max_value=64),
)
def test_round_trip_any_fragmentation_any_chunking(
    messages: list[str | bytes], cuts: list[int], mask: bytes, step: int
) -> None:
    """Any messages, cut into fragments at any sizes, masked with any key, fed in any
    chunks: the same messages come out, in order."""
    data = b""
    for message in messages:
        payload = message.encode() if isinstance(message, str) else message
        opcode = Opcode.TEXT if isinstance(message, str) else Opcode.BINARY
        pieces, rest = [], payload
        for cut in cuts:
            if not rest:
                break
            pieces.append(rest[:cut])
            rest = rest[cut:]
        pieces.append(rest)
        for i, piece in enumerate(pieces):
            code = opcode if i == 0 else Opcode.CONTINUATION
            data += client_frame(code, piece, fin=i == len(pieces) - 1, mask=mask)
    expected = [TextMessage(m) if isinstance(m, str) else BytesMessage(m) for m in messages]
    assert events_of(data, step) == expected


# -- against wsproto, both directions ----------------------------------------------------------
def test_what_a_wsproto_client_sends_we_read() -> None:
    client = WsprotoConnection(ConnectionType.CLIENT)
    data = b"".join(
        [
            client.send(WpText("hello")),
            client.send(WpText("split ", message_finished=False)),
            client.send(WpText("message", message_finished=True)),
            client.send(WpBytes(b"\x00\xff" * 100)),
            client.send(WpClose(code=1000, reason="bye")),
        ]
    )
    assert events_of(data, 3) == [
        TextMessage("hello"),
        TextMessage("split message"),
        BytesMessage(b"\x00\xff" * 100),
        CloseReceived(1000, "bye"),
    ]


def test_what_we_send_a_wsproto_client_reads() -> None:
    conn = Connection()
    data = conn.send_text("héllo") + conn.send_bytes(b"x" * 70000) + conn.send_close(4000, "done")
    client = WsprotoConnection(ConnectionType.CLIENT)
    client.receive_data(data)
    received = list(client.events())
    messages = [e for e in received if isinstance(e, WpMessage)]
    assert [m.data for m in messages] == ["héllo", b"x" * 70000]
    (close,) = [e for e in received if isinstance(e, WpClose)]
    assert (close.code, close.reason) == (4000, "done")


def test_server_frames_are_never_masked() -> None:
    # §5.1: a server MUST NOT mask the frames it sends.
    assert Connection().send_text("x")[1] & 0x80 == 0


# -- Autobahn-style failures -------------------------------------------------------------------
@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
def test_reserved_bits_fail_with_1002(rsv: int) -> None:  # Autobahn 3.x
    data = bytearray(client_frame(Opcode.TEXT, b"hi"))
    data[0] |= rsv
    assert error_of(bytes(data)).code == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_fail_with_1002(opcode: int) -> None:  # Autobahn 4.x
    assert error_of(client_frame(opcode, b"")).code == 1002


def test_an_unmasked_client_frame_fails_from_its_first_two_bytes() -> None:
    # §5.1: the server MUST close on an unmasked frame; we know it from the header alone.
    conn = Connection()
    conn.receive_data(frame_bytes(Opcode.TEXT, b"hello")[:2])
    with pytest.raises(ProtocolError, match="unmasked") as caught:
        conn.next_event()
    assert caught.value.code == 1002


def test_control_frames_are_small_and_whole() -> None:  # Autobahn 2.5, 5.1-5.2
    assert error_of(client_frame(Opcode.PING, b"x" * 126)).code == 1002
    assert error_of(client_frame(Opcode.PING, b"x", fin=False)).code == 1002
    assert error_of(client_frame(Opcode.CLOSE, b"\x03\xe8", fin=False)).code == 1002


def test_fragment_sequence_errors() -> None:  # Autobahn 5.x
    lone_continuation = client_frame(Opcode.CONTINUATION, b"x")
    assert "no message to continue" in str(error_of(lone_continuation))
    interrupted = client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b")
    assert "before the fragmented message ended" in str(error_of(interrupted))


def test_lengths_must_be_minimal_and_63_bit() -> None:
    short_in_16 = bytes([0x82, 0x80 | 126]) + (5).to_bytes(2, "big") + MASK + b"x" * 5
    assert "shortest form" in str(error_of(short_in_16))
    huge = bytes([0x82, 0x80 | 127]) + (1 << 63).to_bytes(8, "big") + MASK
    assert "most significant bit" in str(error_of(huge))


@pytest.mark.parametrize(
    "payload",
    [
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",  # a UTF-16 surrogate
        b"\xff",
        b"\xc0\xaf",  # an overlong encoding of "/"
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"ok\xe2\x82",  # cut in the middle of a character at the end of the message
    ],
)
def test_invalid_utf8_in_text_fails_with_1007(payload: bytes) -> None:  # Autobahn 6.x
    assert error_of(client_frame(Opcode.TEXT, payload)).code == 1007


def test_invalid_utf8_fails_at_its_fragment_not_at_the_end() -> None:  # Autobahn 6.4.1
    conn = Connection()
    conn.receive_data(client_frame(Opcode.TEXT, "κόσμε".encode(), fin=False))
    assert conn.next_event() is NEED_DATA
    conn.receive_data(client_frame(Opcode.CONTINUATION, b"\xf4\x90\x80\x80", fin=False))
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()  # the last fragment has not even been sent
    assert caught.value.code == 1007


def test_binary_messages_are_not_checked_for_utf8() -> None:
    assert events_of(client_frame(Opcode.BINARY, b"\xff\xfe")) == [BytesMessage(b"\xff\xfe")]


def test_a_message_over_the_limit_fails_with_1009_from_the_header() -> None:  # Autobahn 9.x
    conn = Connection(max_message=1000)
    header_only = client_frame(Opcode.BINARY, b"x" * 1001)[:8]  # 2 + 2 length + 4 mask
    conn.receive_data(header_only)
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()  # refused before a byte of the payload is buffered
    assert caught.value.code == 1009


def test_the_limit_counts_every_fragment_of_a_message() -> None:
    data = client_frame(Opcode.TEXT, b"a" * 600, fin=False) + client_frame(
        Opcode.CONTINUATION, b"b" * 600
    )
    assert error_of(data, max_message=1000).code == 1009
    exactly = client_frame(Opcode.TEXT, b"a" * 500, fin=False) + client_frame(
        Opcode.CONTINUATION, b"b" * 500
    )
    assert events_of(exactly, max_message=1000) == [TextMessage("a" * 500 + "b" * 500)]


# -- the closing handshake ---------------------------------------------------------------------
def test_close_without_a_code_is_reported_as_1005() -> None:
    # §7.1.5: no status code in the Close frame: the close code is considered 1005.
    assert events_of(client_frame(Opcode.CLOSE, b"")) == [CloseReceived(1005, "")]


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999])
def test_valid_close_codes_are_read(code: int) -> None:  # Autobahn 7.7.x
    data = client_frame(Opcode.CLOSE, code.to_bytes(2, "big") + b"why")
    assert events_of(data) == [CloseReceived(code, "why")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_codes_fail_with_1002(code: int) -> None:  # Autobahn 7.9.x
    assert error_of(client_frame(Opcode.CLOSE, code.to_bytes(2, "big"))).code == 1002


def test_close_frame_edge_cases() -> None:  # Autobahn 7.3.x, 7.5.1
    assert error_of(client_frame(Opcode.CLOSE, b"\x03")).code == 1002  # a one-byte body
    assert error_of(client_frame(Opcode.CLOSE, b"\x03\xe8\xff")).code == 1007  # bad reason


def test_the_closing_handshake_as_a_table() -> None:
    # They close first: we owe our Close, then both are done.
    conn = Connection()
    conn.receive_data(client_frame(Opcode.CLOSE, b"\x03\xe8"))
    assert conn.next_event() == CloseReceived(1000, "")
    assert conn.state is State.CLOSE_RECEIVED
    with pytest.raises(ValueError, match="cannot send TEXT"):
        conn.send_text("too late")  # §5.5.1: no data after a Close
    conn.send_close(1000)
    assert conn.state is State.CLOSED
    # We close first: the client's Close completes it; frames after it are ignored.
    conn = Connection()
    conn.send_close(1001)
    assert conn.state is State.CLOSE_SENT
    conn.receive_data(client_frame(Opcode.CLOSE, b"\x03\xe9") + client_frame(Opcode.TEXT, b"x"))
    assert conn.next_event() == CloseReceived(1001, "")
    assert conn.next_event() is NEED_DATA
    assert conn.state is State.CLOSED


def test_1005_and_1006_are_never_sent() -> None:
    # §7.4.1: they describe a close, they are not codes to put in a Close frame.
    for code in (1005, 1006, 1015):
        with pytest.raises(ValueError, match="may not be sent"):
            Connection().send_close(code)
    assert Connection().send_close(None) == b"\x88\x00"  # no code at all is fine
    with pytest.raises(ValueError, match="123"):
        Connection().send_close(1000, "x" * 124)


# -- the opening handshake ---------------------------------------------------------------------
def handshake_request(*extra: tuple[bytes, bytes], method: bytes = b"GET", version: bytes = b"1.1"):
    headers = [
        (b"host", b"example"),
        (b"upgrade", b"websocket"),
        (b"connection", b"keep-alive, Upgrade"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
    ]
    names = {name for name, _ in extra}
    headers = [h for h in headers if h[0] not in names] + [h for h in extra if h[1]]
    return Request(method, b"/chat", version, Headers(headers))


def test_accept_key_is_the_rfc_example() -> None:
    # RFC 6455 §1.3: this key gives this accept value.
    assert ws.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_valid_handshake_and_its_subprotocols() -> None:
    request = handshake_request((b"sec-websocket-protocol", b"chat, superchat"), (b"x", b"y"))
    request = Request(
        request.method,
        request.target,
        request.http_version,
        Headers([*request.headers, (b"sec-websocket-protocol", b"v2.json")]),
    )
    assert ws.is_upgrade(request)
    handshake = ws.check_handshake(request)
    assert handshake.subprotocols == ["chat", "superchat", "v2.json"]


def test_upgrade_needs_both_headers_and_ignores_other_protocols() -> None:
    assert not ws.is_upgrade(handshake_request((b"connection", b"keep-alive")))
    assert not ws.is_upgrade(handshake_request((b"upgrade", b"h2c")))
    assert ws.is_upgrade(handshake_request((b"upgrade", b"WebSocket")))  # case-insensitive


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"method": b"POST"}, 400, "GET"),
        ({"version": b"1.0"}, 400, "HTTP/1.1"),
        ({"extra": (b"sec-websocket-key", b"short")}, 400, "16 bytes"),
        ({"extra": (b"sec-websocket-key", b"")}, 400, "16 bytes"),
        ({"extra": (b"sec-websocket-version", b"8")}, 426, "version 13"),
    ],
)
def test_bad_handshakes_get_400_or_426(change: dict, status: int, words: str) -> None:
    extra = (change["extra"],) if "extra" in change else ()
    request = handshake_request(
        *extra, method=change.get("method", b"GET"), version=change.get("version", b"1.1")
    )
    with pytest.raises(ws.HandshakeError, match=words) as caught:
        ws.check_handshake(request)
    assert caught.value.status == status
    if status == 426:  # §4.2.2: and which version we do speak
        assert caught.value.headers == [(b"sec-websocket-version", b"13")]
