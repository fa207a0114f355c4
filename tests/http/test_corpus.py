"""Replay the request corpus under many fragmentations: the outcome must never depend on
how the bytes were split (STYLE rule 2: partial reads are a designed feature).

For every case of ``corpus.CORPUS``:

(a) the whole input in one ``receive_data``;
(b) one byte at a time;
(c) in two pieces, split at every point (cases under 300 bytes) or at a sample of points;
(d) with a valid request pipelined behind it: a valid case gives its messages and then that
    request, which comes out only once the previous response is sent (``drive`` checks the
    PAUSED in between); an invalid case gives its error and the request behind it is never
    parsed (``check_error_response`` checks that nothing more is read);
(e) for cases that end with the client's close: the close arriving together with the last
    bytes, before the server has read any event from them.

Every run must give the messages and the error status the corpus states; ``drive`` also
checks each error's response (status, Connection: close, the reason in the body). A few
errors also have their reason checked, where the reason is the lesson.
"""

from __future__ import annotations

import pytest

from servers.http import PAUSED, EndOfMessage, Request, ServerConnection

from .corpus import CORPUS, Case, m
from .helpers import Outcome, drive, one_byte_at_a_time, pieces_at

IDS = [case.name for case in CORPUS]
NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
NEXT_MSG = m(target=b"/next")
WHOLE_SPLIT_LIMIT = 300


def expected(case: Case) -> tuple[object, ...]:
    return tuple(case.messages), case.error, case.closed


def check(case: Case, outcome: Outcome, how: str) -> None:
    assert outcome.summary() == expected(case), f"{case.name} fed {how}: {outcome.error_text}"


def test_corpus_is_large_and_documented() -> None:
    valid = [c for c in CORPUS if c.valid]
    invalid = [c for c in CORPUS if not c.valid]
    assert len(CORPUS) >= 120 and len(valid) >= 40 and len(invalid) >= 80
    for case in CORPUS:
        assert case.why.strip(), case.name
        # An invalid case must say where it fails; a valid one must produce a request
        # (except the two that are only about the end of input).
        assert case.valid or case.error in (400, 413, 414, 417, 431, 501, 505)
        assert case.messages or not case.valid or case.eof, case.name


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_whole(case: Case) -> None:
    check(case, drive([case.raw], case.eof, case.limits), "whole")


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_one_byte_at_a_time(case: Case) -> None:
    check(case, drive(one_byte_at_a_time(case.raw), case.eof, case.limits), "byte by byte")


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_every_split_point(case: Case) -> None:
    size = len(case.raw)
    if size <= WHOLE_SPLIT_LIMIT:
        points = range(1, size)
    else:
        # Long cases (the limits): the first and last 100 bytes, where the structure is,
        # and about a hundred points through the filler in between.
        stride = max(97, size // 100)
        points = sorted({*range(1, 100), *range(100, size - 100, stride), *range(size - 100, size)})
    for point in points:
        # The error response is checked by the other runs; here only the outcome counts.
        outcome = drive(pieces_at(case.raw, [point]), case.eof, case.limits, check_error=False)
        check(case, outcome, f"split at {point}")


CLOSING = [c for c in CORPUS if c.eof and c.raw]


@pytest.mark.parametrize("case", CLOSING, ids=[c.name for c in CLOSING])
def test_eof_arriving_with_the_data(case: Case) -> None:
    """The close may be read in the same recv() loop turn as the last bytes: the core sees
    it before it has parsed them."""
    for how, pieces in (("whole", [case.raw]), ("byte by byte", one_byte_at_a_time(case.raw))):
        outcome = drive(pieces, True, case.limits, eof_with_last=True)
        check(case, outcome, how + " with EOF")


# The reason given for some errors, as the client reads it in the response body.
MESSAGES = {
    "bare lf everywhere": "bare LF",
    "bare cr in request line": "bare CR",
    "obs-fold": "obsolete line folding",
    "cl plus te": "both Transfer-Encoding and Content-Length",
    "two differing cl lines": "conflicting Content-Length",
    "te gzip, chunked": "gzip is not implemented",
    "chunk data then XX": "chunk data not followed by CRLF",
    "missing host in 1.1": "without a Host",
    "101 fields": "101 header fields",
    "eof in a cl body": "5 bytes of the body still to come",
}


@pytest.mark.parametrize(("name", "text"), MESSAGES.items())
def test_error_messages(name: str, text: str) -> None:
    (case,) = [c for c in CORPUS if c.name == name]
    outcome = drive([case.raw], case.eof, case.limits)
    assert outcome.error == case.error and text in outcome.error_text


OPEN_ENDED = [c for c in CORPUS if not c.eof]


@pytest.mark.parametrize("case", OPEN_ENDED, ids=[c.name for c in OPEN_ENDED])
def test_with_a_request_behind(case: Case) -> None:
    data = case.raw + NEXT
    messages = list(case.messages)
    if case.valid and messages[-1].keep_alive:
        messages.append(NEXT_MSG)
    for how, pieces in (("whole", [data]), ("byte by byte", one_byte_at_a_time(data))):
        outcome = drive(pieces, False, case.limits)
        assert outcome.summary() == (tuple(messages), case.error, False), (case.name, how)


def test_pipelined_request_waits_for_the_response() -> None:
    """The mechanics ``drive`` relies on, spelled out once: PAUSED until both are done."""
    conn = ServerConnection()
    conn.receive_data(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" + NEXT)
    first = conn.next_event()
    assert isinstance(first, Request) and first.target == b"/1"
    assert isinstance(conn.next_event(), EndOfMessage)
    assert conn.next_event() is PAUSED
    assert conn.buffered == len(NEXT)  # the second request is there, and waits
    conn.send_response(200, body=b"one")
    assert conn.next_event() is PAUSED  # still ours to release
    conn.start_next_cycle()
    second = conn.next_event()
    assert isinstance(second, Request) and second.target == b"/next"
