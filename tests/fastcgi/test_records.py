"""The record codec (servers/fastcgi/records.py), without sockets.

Every record type is fed one byte at a time (a reader must work with any split), every
layout of a name-value length is checked byte for byte against the spec, and hypothesis
round-trips generated records and pair lists, including 4-byte lengths and values longer
than one record can hold.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.fastcgi.records import (
    FCGI_BEGIN_REQUEST,
    FCGI_END_REQUEST,
    FCGI_GET_VALUES,
    FCGI_HEADER_LEN,
    FCGI_KEEP_CONN,
    FCGI_MAX_LENGTH,
    FCGI_UNKNOWN_TYPE,
    AbortRequest,
    BeginRequest,
    Data,
    EndRequest,
    FastCGIError,
    GetValues,
    GetValuesResult,
    PairDecoder,
    Params,
    ProtocolStatus,
    Record,
    RecordReader,
    RecordType,
    Role,
    Stderr,
    Stdin,
    Stdout,
    StreamRecord,
    UnknownRecord,
    UnknownType,
    decode_pairs,
    encode,
    encode_pairs,
)
from servers.http.events import NEED_DATA, Signal


def header(version: int, kind: int, request_id: int, length: int, padding: int) -> bytes:
    return struct.pack("!BBHHBx", version, kind, request_id, length, padding)


def read_all(data: bytes, step: int = 1, reader: RecordReader | None = None) -> list[Record]:
    """Feed ``data`` ``step`` bytes at a time; every record that comes out, in order."""
    reader = reader or RecordReader()
    records: list[Record] = []
    for start in range(0, len(data), step):
        reader.receive_data(data[start : start + step])
        while not isinstance(record := reader.next_record(), Signal):
            records.append(record)
    assert reader.next_record() is NEED_DATA
    assert reader.buffered == 0
    return records


EVERY_TYPE: list[Record] = [
    BeginRequest(1, Role.RESPONDER, FCGI_KEEP_CONN),
    AbortRequest(2),
    EndRequest(3, 7, ProtocolStatus.OVERLOADED),
    Params(4, encode_pairs([(b"REQUEST_METHOD", b"GET")])),
    Stdin(5, b"body"),
    Stdout(6, b"Status: 200 OK\r\n\r\n"),
    Stderr(7, b"oops\n"),
    Data(8, b"filter data"),
    GetValues((b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS")),
    GetValuesResult(((b"FCGI_MAX_CONNS", b"10"),)),
    UnknownType(42),
    UnknownRecord(42, 0, b"whatever"),
]


# -- the header and the eleven types ------------------------------------------------------
def test_the_header_is_eight_big_endian_bytes() -> None:
    wire = encode(BeginRequest(0x0102, Role.RESPONDER, FCGI_KEEP_CONN))
    # version 1, type 1, requestId 0x0102, contentLength 8, padding 0, reserved 0 (§3.3)
    assert wire[:FCGI_HEADER_LEN] == bytes([1, 1, 0x01, 0x02, 0, 8, 0, 0])
    # role RESPONDER (2 bytes), flags KEEP_CONN, 5 reserved bytes (§5.1)
    assert wire[FCGI_HEADER_LEN:] == bytes([0, 1, 1, 0, 0, 0, 0, 0])
    assert FCGI_BEGIN_REQUEST == RecordType.BEGIN_REQUEST == 1


def test_the_eleven_types_have_the_specs_numbers() -> None:
    assert [t.name for t in RecordType] == [
        "BEGIN_REQUEST", "ABORT_REQUEST", "END_REQUEST", "PARAMS", "STDIN", "STDOUT",
        "STDERR", "DATA", "GET_VALUES", "GET_VALUES_RESULT", "UNKNOWN_TYPE",
    ]  # fmt: skip
    assert [int(t) for t in RecordType] == list(range(1, 12))
    assert (FCGI_END_REQUEST, FCGI_GET_VALUES, FCGI_UNKNOWN_TYPE) == (3, 9, 11)


@pytest.mark.parametrize("record", EVERY_TYPE, ids=lambda r: type(r).__name__)
def test_every_type_round_trips_one_byte_at_a_time(record: Record) -> None:
    wire = encode(record)
    assert len(wire) % 8 == 0  # §3.3: senders keep records aligned on 8 bytes
    assert read_all(wire, step=1) == [record]


def test_a_stream_of_every_type_read_in_odd_splits() -> None:
    wire = b"".join(encode(record) for record in EVERY_TYPE)
    for step in (1, 3, 7, 8, 13, len(wire)):
        assert read_all(wire, step) == EVERY_TYPE


def test_request_ids_are_kept_exactly() -> None:
    for request_id in (1, 2, 255, 256, 0xBEEF, 0xFFFF):
        wire = encode(EndRequest(request_id, 0))
        assert wire[2:4] == request_id.to_bytes(2, "big")
        assert read_all(wire) == [EndRequest(request_id, 0)]


def test_end_request_body_and_app_status() -> None:
    wire = encode(EndRequest(1, 0xDEADBEEF, ProtocolStatus.UNKNOWN_ROLE))
    assert wire[8:] == bytes([0xDE, 0xAD, 0xBE, 0xEF, 3, 0, 0, 0])  # §5.5


# -- padding and streams ----------------------------------------------------------------
def test_padding_is_written_to_align_and_skipped_on_read() -> None:
    wire = encode(Stdout(1, b"12345"))
    assert wire[4:7] == bytes([0, 5, 3])  # 5 bytes of content, 3 of padding
    assert len(wire) == 16
    # A sender may choose any padding up to 255 bytes (§3.3); readers skip all of it.
    odd = header(1, RecordType.STDOUT, 1, 5, 255) + b"12345" + b"\xff" * 255
    both = odd + encode(Stdout(1, b""))
    assert read_all(both, step=1) == [Stdout(1, b"12345"), Stdout(1, b"")]


def test_an_empty_record_ends_a_stream() -> None:
    assert encode(Stdin(9, b"")) == header(1, RecordType.STDIN, 9, 0, 0)
    assert read_all(encode(Stdin(9, b""))) == [Stdin(9, b"")]


def test_a_payload_over_65535_bytes_is_split() -> None:
    payload = bytes(range(256)) * 800  # 204800 bytes
    wire = encode(Stdin(3, payload))
    records = read_all(wire, step=4096)
    assert [len(r.data) for r in records if isinstance(r, Stdin)] == [65535, 65535, 65535, 8195]
    assert all(isinstance(r, Stdin) and r.request_id == 3 for r in records)
    assert b"".join(r.data for r in records if isinstance(r, Stdin)) == payload


def test_a_discrete_record_cannot_be_split() -> None:
    huge = ((b"N", b"v" * FCGI_MAX_LENGTH),)
    with pytest.raises(ValueError, match="do not fit in one record"):
        encode(GetValuesResult(huge))


# -- name-value pairs (§3.4) ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name_length", "value_length", "prefix"),
    [
        (1, 127, bytes([1, 127])),  # 11: both lengths in one byte
        (1, 128, bytes([1, 0x80, 0, 0, 128])),  # 14: a long value
        (200, 3, bytes([0x80, 0, 0, 200, 3])),  # 41: a long name
        (0x10000, 0x7FFFF, bytes([0x80, 1, 0, 0, 0x80, 7, 0xFF, 0xFF])),  # 44
    ],
    ids=["11", "14", "41", "44"],
)
def test_the_four_pair_layouts(name_length: int, value_length: int, prefix: bytes) -> None:
    name, value = b"n" * name_length, b"v" * value_length
    wire = encode_pairs([(name, value)])
    assert wire == prefix + name + value
    caps = {"max_name": 1 << 20, "max_value": 1 << 20, "max_total": 1 << 21}
    assert decode_pairs(wire, **caps) == [(name, value)]


def test_a_pair_split_inside_its_four_byte_length() -> None:
    wire = encode_pairs([(b"HTTP_COOKIE", b"c" * 300), (b"A", b"")])
    decoder = PairDecoder()
    pairs = []
    for byte in wire:
        pairs += decoder.feed(bytes([byte]))
    decoder.finish()
    assert pairs == [(b"HTTP_COOKIE", b"c" * 300), (b"A", b"")]


def test_a_stream_that_ends_inside_a_pair_is_an_error() -> None:
    decoder = PairDecoder()
    assert decoder.feed(encode_pairs([(b"NAME", b"value")])[:-1]) == []
    with pytest.raises(FastCGIError, match="inside a pair"):
        decoder.finish()


def test_a_huge_declared_length_is_refused_before_its_bytes_arrive() -> None:
    # The shape of libfcgi CVE-2025-23016: a 4-byte length near 2**31, trusted, overflowed
    # an allocation. Here the declared length is refused after 8 bytes, nothing allocated.
    decoder = PairDecoder()
    with pytest.raises(FastCGIError, match="over the cap"):
        decoder.feed(bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x01]) + b"\x00\x00\x00")
    with pytest.raises(FastCGIError, match="over the cap"):
        PairDecoder(max_value=100).feed(encode_pairs([(b"N", b"v" * 101)])[:10])


def test_the_pairs_of_one_stream_are_capped_in_total() -> None:
    decoder = PairDecoder(max_total=1000)
    decoder.feed(encode_pairs([(b"A", b"x" * 400)] * 2))
    with pytest.raises(FastCGIError, match="over 1000 bytes"):
        decoder.feed(encode_pairs([(b"B", b"x" * 400)]))


def test_unparsed_bytes_are_capped() -> None:
    reader = RecordReader(max_buffer=100)
    reader.receive_data(b"\x01" * 100)
    with pytest.raises(FastCGIError, match="more than 100 bytes"):
        reader.receive_data(b"\x01")


# -- what a reader refuses ------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 2, 0x48])  # 0x48: "H", someone speaking HTTP to us
def test_a_wrong_version_is_refused_at_once(version: int) -> None:
    reader = RecordReader()
    reader.receive_data(header(version, RecordType.STDIN, 1, 100, 0))  # content not there yet
    with pytest.raises(FastCGIError, match=f"version {version}"):
        reader.next_record()


@pytest.mark.parametrize(
    ("kind", "length"),
    [
        (RecordType.BEGIN_REQUEST, 7),
        (RecordType.BEGIN_REQUEST, 9),
        (RecordType.END_REQUEST, 16),
        (RecordType.ABORT_REQUEST, 1),
        (RecordType.UNKNOWN_TYPE, 0),
    ],
)
def test_a_discrete_body_of_the_wrong_size_is_refused(kind: RecordType, length: int) -> None:
    request_id = 0 if kind is RecordType.UNKNOWN_TYPE else 1
    reader = RecordReader()
    reader.receive_data(header(1, kind, request_id, length, 0) + bytes(length))
    with pytest.raises(FastCGIError, match=f"{length} bytes; the spec says"):
        reader.next_record()


@pytest.mark.parametrize(
    ("kind", "request_id"),
    [
        (RecordType.GET_VALUES, 1),  # management records travel on id 0 only (§3.3)
        (RecordType.UNKNOWN_TYPE, 7),
        (RecordType.BEGIN_REQUEST, 0),  # application records never on id 0
        (RecordType.STDIN, 0),
    ],
)
def test_management_and_application_ids_are_not_mixed(kind: RecordType, request_id: int) -> None:
    body = bytes(8) if kind in (RecordType.BEGIN_REQUEST, RecordType.UNKNOWN_TYPE) else b""
    reader = RecordReader()
    reader.receive_data(header(1, kind, request_id, len(body), 0) + body)
    with pytest.raises(FastCGIError, match=f"on request id {request_id}"):
        reader.next_record()


def test_an_unknown_type_is_kept_whole_for_the_caller() -> None:
    wire = header(1, 200, 0, 3, 5) + b"abc" + bytes(5)
    assert read_all(wire, step=1) == [UnknownRecord(200, 0, b"abc")]


def test_the_raw_header_is_kept_for_the_trace() -> None:
    reader = RecordReader()
    reader.receive_data(encode(Stdout(5, b"hi")))
    reader.next_record()
    assert reader.last_header == bytes([1, 6, 0, 5, 0, 2, 6, 0])


# -- generated round trips ------------------------------------------------------------------
ids = st.integers(1, 0xFFFF)
# Long values are built from a short random seed: generating 100 KB of random bytes per
# example would spend the test's time in hypothesis, not in the codec.
long_blobs = st.builds(
    lambda seed, size: (seed * (size // len(seed) + 1))[:size],
    st.binary(min_size=1, max_size=16),
    st.integers(65530, 140_000),
)
blobs = st.binary(max_size=300) | long_blobs
names = st.binary(min_size=1, max_size=200)
pairs = st.lists(st.tuples(names, st.binary(max_size=300)), max_size=12)
stream_classes = st.sampled_from([Params, Stdin, Stdout, Stderr, Data])

records = st.one_of(
    st.builds(BeginRequest, ids, st.sampled_from(list(Role)), st.integers(0, 255)),
    st.builds(AbortRequest, ids),
    st.builds(EndRequest, ids, st.integers(0, 0xFFFFFFFF), st.sampled_from(list(ProtocolStatus))),
    st.builds(lambda cls, i, data: cls(i, data), stream_classes, ids, blobs),
    st.builds(lambda ns: GetValues(tuple(ns)), st.lists(names, max_size=5)),
    st.builds(lambda ps: GetValuesResult(tuple(ps)), pairs),
    st.builds(UnknownType, st.integers(0, 255)),
)


def _as_split(record: Record) -> list[Record]:
    """What a receiver sees of one record: a stream payload in pieces of at most 65535."""
    if not isinstance(record, StreamRecord) or len(record.data) <= FCGI_MAX_LENGTH:
        return [record]
    data, cls = record.data, type(record)
    return [
        cls(record.request_id, data[i : i + FCGI_MAX_LENGTH])
        for i in range(0, len(data), FCGI_MAX_LENGTH)
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(records, max_size=6), st.integers(1, 70_000))
def test_generated_records_round_trip(sequence: list[Record], step: int) -> None:
    wire = b"".join(encode(record) for record in sequence)
    decoded = read_all(wire, step, RecordReader(max_buffer=1 << 22))
    assert decoded == [piece for record in sequence for piece in _as_split(record)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(names, st.binary(max_size=200) | long_blobs),
        max_size=5,
    ),
    st.integers(1, 5000),
)
def test_generated_pairs_round_trip_through_params_records(
    pair_list: list[tuple[bytes, bytes]], step: int
) -> None:
    """Pairs become one PARAMS stream; values over 65535 bytes are cut across records,
    and the decoder rebuilds them from the records' contents, however they were split."""
    wire = encode(Params(1, encode_pairs(pair_list))) + encode(Params(1, b""))
    decoder = PairDecoder(max_name=1 << 16, max_value=1 << 18, max_total=1 << 20)
    decoded: list[tuple[bytes, bytes]] = []
    for record in read_all(wire, step):
        assert isinstance(record, Params) and len(record.data) <= FCGI_MAX_LENGTH
        decoded += decoder.feed(record.data)
    decoder.finish()
    assert decoded == pair_list
