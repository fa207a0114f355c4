"""Differential test: our request parser against h11's, on generated requests.

Hypothesis builds a request from parts (method, target, version, header fields, Host,
Expect, a Content-Length or chunked body with extensions and trailers), sometimes with one
deliberate flaw, serialises it, cuts the bytes at random points and feeds the same pieces
to both parsers. When the request is clean, both must accept it and agree on the method,
target, version, header fields, body and trailers. When it carries a flaw that both
grammars forbid, both must refuse it. A flaw on which the two parsers differ *on purpose*
is one of the documented differences below, and the test asserts its direction: a later
change to either side that closes (or reverses) a difference fails here and must be
looked at, and an undocumented mismatch is a bug to investigate.

Documented differences (each also has a concrete example in ``DIFFERENCES``, checked by
``test_documented_difference``). "ours" = we reject and h11 accepts; "h11" = the reverse.

ours  bare-lf          Bare LF as a line end in the head or trailers. RFC 9112 §2.2 lets a
                       recipient accept LF alone; we do not (waitress CVE-2019-16785).
ours  obs-fold         A continuation line. RFC 9112 §5.2: reject or replace by SP; h11
                       replaces, we reject (the choice that cannot disagree with a proxy).
ours  ctl-in-value     Control bytes other than NUL/CR/LF/VT/FF (\\x01, \\x1b, \\x7f ...) in a
                       value. RFC 9110 §5.5 field-content is VCHAR/obs-text/SP/HTAB only;
                       h11 allows any byte but NUL and Python's ASCII whitespace.
ours  chunk-size-ows   "5 " or "5\\t" with no extension. RFC 9112 §7.1 has no whitespace
                       there (BWS belongs to chunk-ext); h11 tolerates trailing OWS.
ours  chunk-ext        An extension outside RFC 9112 §7.1.1's grammar (";", ";a=", ";a b",
                       NUL or CR inside, trailing whitespace); h11 accepts ";" then anything.
ours  target-form      A target in none of RFC 9112 §3.2's forms (relative "index.html",
                       authority-form without CONNECT, "*" with a method other than
                       OPTIONS); h11 accepts any run of VCHAR.
ours  connect          CONNECT: 501 from an origin server (RFC 9112 §3.2.3, RFC 9110
                       §9.3.6); h11 parses it as an ordinary request.
ours  host-chars       A Host value that is no uri-host [":" port] (RFC 9110 §7.2, RFC 3986
                       §3.2.2): spaces, "/", "@", obs-text ...; h11 does not check Host.
ours  expect-417       An expectation other than 100-continue on HTTP/1.1: 417 (RFC 9110
                       §10.1.1 allows it); h11 leaves Expect to the application.
ours  te-http10        Transfer-Encoding in an HTTP/1.0 request: RFC 9112 §6.1 says treat
                       the framing as faulty; h11 decodes the chunked body.
ours  major-version    HTTP/0.9, 2.0, 3.x request lines: 505 (RFC 9110 §2.5, §15.6.6);
                       h11 accepts any DIGIT.DIGIT.
ours  minor-alias-host HTTP/1.2..1.9 are answered as 1.1 (RFC 9110 §2.5), so Host is
                       required (RFC 9112 §3.2); h11 requires it for exactly "1.1". (Both
                       accept these versions otherwise; h11 reports "1.2", we "1.1".)
ours  cl-and-te        Content-Length together with Transfer-Encoding: RFC 9112 §6.1 allows
                       rejecting (and it is the CL.TE smuggling vector); h11 uses TE alone.
ours  limits           Over our limits (8190-byte request line or field, 100 fields): 414
                       or 431; h11 bounds only an incomplete head, at 16 KiB.
h11   limits-h11       Conversely a head of 16-32 KiB arriving in pieces: h11 431 (its
                       incomplete-event limit; it accepts the same head in one piece), ours
                       accepts (Limits.max_header_bytes = 32 KiB, like nginx).
h11   leading-crlf     Empty lines before the request line: RFC 9112 §2.2 says a server
                       SHOULD ignore at least one; h11 refuses them.
h11   chunk-ext-bws    BWS before the ";" of a chunk extension ("5 ;a"): RFC 9112 §7.1.1
                       allows it; h11's chunk-size regex does not.
h11   te-empty-item    An empty list element in Transfer-Encoding (", chunked"): RFC 9110
                       §5.6.1 says a recipient MUST ignore it; h11 compares the whole value.
h11   cl-same-value    The same Content-Length spelled two ways ("05, 5"): RFC 9110 §8.6
                       allows taking "the same decimal value" as one; h11 compares strings.
h11   chunk-size-zeros More than 20 digits of chunk size, with leading zeros: RFC 9112 §7.1
                       has 1*HEXDIG; we bound significant digits (16) and the line (4 KiB),
                       h11 bounds all digits (20).
h11   framing-trailer  A trailer field named Transfer-Encoding or Content-Length with a
                       value h11 would refuse in a header: trailers are never merged into
                       the header section (RFC 9110 §6.5.1-6.5.2), so we keep them opaque;
                       h11 validates them as framing headers.

Presentation only (both accept): h11 lower-cases the Transfer-Encoding value and merges
repeated or listed Content-Length values into one; we keep every field as received. So
the comparison leaves those two fields out and compares the framing itself (chunked or
not, and the body bytes) instead.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .helpers import (
    H11Result,
    OursResult,
    h11_parse_request,
    one_byte_at_a_time,
    ours_parse_request,
    pieces_at,
)

OURS_STRICTER = {
    "bare-lf", "obs-fold", "ctl-in-value", "chunk-size-ows", "chunk-ext", "target-form",
    "connect", "host-chars", "expect-417", "te-http10", "major-version", "minor-alias-host",
    "cl-and-te", "limits",
}
H11_STRICTER = {
    "limits-h11", "leading-crlf", "chunk-ext-bws", "te-empty-item", "cl-same-value",
    "chunk-size-zeros", "framing-trailer",
}

# ----------------------------------------------------------------------------------------
# The generator. Each request carries at most one flaw, drawn first, so that its expected
# outcome is known exactly: half the requests are clean, the rest spread over the flaws.
# Clean requests still vary everything the grammar allows (case, OWS, forms, versions,
# repeated or zero-padded lengths, chunk sizes and extensions, trailers, fragmentation).
BOTH_REJECT = {
    "method-char", "target-byte", "version-format", "no-host-11", "two-hosts", "value-nul",
    "value-cr", "value-vt", "name-char", "colon-ws", "cl-differ", "cl-plus", "cl-hex",
    "cl-comma", "cl-empty", "te-gzip-first", "te-gzip-last", "te-twice", "after-chunk-data",
}
GENERATED = sorted((BOTH_REJECT | OURS_STRICTER | H11_STRICTER) - {"limits", "limits-h11"})
CHUNKED_FLAWS = {
    "te-gzip-first", "te-gzip-last", "te-twice", "after-chunk-data", "chunk-size-ows",
    "chunk-ext", "te-http10", "cl-and-te", "chunk-ext-bws", "te-empty-item", "chunk-size-zeros",
    "framing-trailer",
}
LENGTH_FLAWS = {"cl-differ", "cl-plus", "cl-hex", "cl-comma", "cl-empty", "cl-same-value"}
FIELD_FLAWS = {"value-nul", "value-cr", "value-vt", "name-char", "colon-ws", "ctl-in-value"}

TCHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VCHAR = bytes(range(0x21, 0x7F))
OBS_TEXT = bytes(range(0x80, 0x100))
# Control bytes h11 lets through and RFC 9110 §5.5 does not (h11 refuses only NUL and
# Python's ASCII whitespace \t\n\v\f\r in a value, and \t is legal anyway).
H11_TOLERATED_CTL = bytes([*range(0x01, 0x09), *range(0x0E, 0x20), 0x7F])
# Names the core gives meaning to; generated plain fields avoid them.
SPECIAL = {b"host", b"content-length", b"transfer-encoding", b"expect", b"connection"}
HOST_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%"
# VCHAR, some obs-text, and SP / HTAB for inner runs (RFC 9110 §5.5), reached by mapping raw
# bytes onto this alphabet: one draw per value keeps generation cheap.
VALUE_ALPHABET = VCHAR * 2 + OBS_TEXT[::4] + b" \t" * 8
TARGET_ALPHABET = VCHAR


def mapped(alphabet: bytes, min_size: int = 0, max_size: int = 16) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=min_size, max_size=max_size).map(
        lambda raw: bytes(alphabet[x % len(alphabet)] for x in raw)
    )


def token(min_size: int = 1, max_size: int = 10) -> st.SearchStrategy[bytes]:
    return mapped(TCHARS.encode(), min_size, max_size)


clean_value = mapped(VALUE_ALPHABET).map(lambda v: v.strip(b" \t"))
ows = st.sampled_from([b"", b"", b" ", b"\t", b"  "])


@dataclass
class Spec:
    """A generated request: its bytes, what a correct parser must see, and its one flaw."""

    flaw: str | None = None
    raw: bytes = b""
    method: bytes = b""
    target: bytes = b""
    version: bytes = b""  # as we report it (1.2..1.9 -> 1.1)
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)  # without CL and TE
    body: bytes = b""
    chunked: bool = False
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    expects_continue: bool = False


@st.composite
def field_line(draw: st.DrawFn, flaw: str | None, into: list[tuple[bytes, bytes]]) -> bytes:
    """A plain field line (no CRLF), carrying ``flaw`` if it is a field flaw; its expected
    (name, value) is appended to ``into``."""
    name = draw(token(1, 12).filter(lambda n: n.lower() not in SPECIAL))
    # Names are case-insensitive (RFC 9110 §5.1): send them in any case.
    sent = draw(st.sampled_from([bytes.lower, bytes.upper, bytes.title, bytes.swapcase]))(name)
    value = draw(clean_value)
    at = draw(st.integers(0, len(value)))
    if flaw == "ctl-in-value":
        value = value[:at] + bytes([draw(st.sampled_from(H11_TOLERATED_CTL))]) + value[at:]
    elif flaw in ("value-nul", "value-cr", "value-vt"):
        bad = {"value-nul": b"\x00", "value-cr": b"\r", "value-vt": b"\x0b"}[flaw]
        value = value[:at] + bad + value[at:] + b"x"
    elif flaw == "name-char":
        sent += draw(st.sampled_from([b" x", b"(", b"/", b"\xa0", b'"', b"@", b"\x01", b"{"]))
    elif flaw == "colon-ws":
        sent += draw(st.sampled_from([b" ", b"\t"]))
    into.append((name.lower(), value))
    return sent + b":" + draw(ows) + value + draw(ows)


@st.composite
def chunk_ext(draw: st.DrawFn, flaw: str | None = None) -> bytes:
    """A chunk extension (or none), valid unless ``flaw`` is a chunk-line flaw."""
    if flaw == "chunk-size-ows":
        return draw(st.sampled_from([b" ", b"\t", b"  "]))
    if flaw == "chunk-ext":
        return draw(st.sampled_from([b";", b";a=", b";a b", b";a\x00", b";a\rb", b";a=b ",
                                     b";=b", b';a="x', b";a=b;", b";a\x01"]))
    if flaw is None and draw(st.integers(0, 2)):
        return b""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        part = b";" + draw(st.sampled_from([b"", b" "])) + draw(token(1, 5))
        kind = draw(st.sampled_from(["name", "token", "quoted"]))
        eq = draw(st.sampled_from([b"=", b" = ", b"\t="]))  # BWS around "=" (RFC 9112 §7.1.1)
        if kind == "token":
            part += eq + draw(token(1, 5))
        elif kind == "quoted":
            part += eq + b'"' + draw(st.text(string.ascii_letters + ' ;=,\t', max_size=6)
                                     ).encode() + b'"'
        parts.append(part)
    ext = b"".join(parts)
    if flaw == "chunk-ext-bws":
        ext = draw(st.sampled_from([b" ", b"\t"])) + ext  # BWS before ";": h11 refuses it
    return ext


@st.composite
def requests(draw: st.DrawFn, flaws: st.SearchStrategy[str | None] | None = None) -> Spec:
    """A request with at most one flaw: half are clean unless ``flaws`` says otherwise."""
    flaw = draw(flaws if flaws is not None else st.none() | st.sampled_from(GENERATED))
    spec = Spec(flaw=flaw)
    lines: list[bytes] = []
    # A field flaw sits in a header field or, in a chunked request, in a trailer field.
    in_trailer = flaw in FIELD_FLAWS and draw(st.booleans())

    # -- request line -------------------------------------------------------------------
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS"])
                  | token(1, 8).filter(lambda m: m != b"CONNECT"))
    target = b"/" + draw(mapped(TARGET_ALPHABET))  # RFC 9112 §3.2.1 origin-form
    form = draw(st.sampled_from(["origin", "origin", "absolute", "asterisk"]))
    if form == "absolute":  # RFC 9112 §3.2.2
        host = draw(st.text(string.ascii_lowercase + string.digits + ".-", min_size=1,
                            max_size=8)).encode()
        target = b"http://" + host + draw(st.sampled_from([b"", b":8080"])) + target
    elif form == "asterisk":  # RFC 9112 §3.2.4
        method, target = b"OPTIONS", b"*"
    if flaw == "target-form":
        target = draw(st.sampled_from([b"*", b"index.html", b"a.example:80", b"?q", b"a/b"]))
        if target == b"*" and method == b"OPTIONS":
            method = b"GET"
    elif flaw == "target-byte":
        target += draw(st.sampled_from([b"\x7f", b"\x80", b"\xff", b"\x01", b"\x00"]))
    elif flaw == "connect":
        method = b"CONNECT"
        target = draw(st.sampled_from([b"a.example:443", b"/"]))
    elif flaw == "method-char":
        method += draw(st.sampled_from([b"(", b",", b"/", b"\x01", b"@", b"\x80"]))

    if flaw == "te-http10":
        version = b"1.0"
    elif flaw == "no-host-11":
        version = b"1.1"
    elif flaw in CHUNKED_FLAWS or in_trailer or flaw == "expect-417":
        version = draw(st.sampled_from([b"1.1", b"1.1", b"1.2", b"1.9"]))
    elif flaw == "minor-alias-host":
        version = draw(st.sampled_from([b"1.2", b"1.5", b"1.9"]))
    elif flaw == "major-version":
        version = draw(st.sampled_from([b"0.9", b"2.0", b"3.1", b"9.9"]))
    elif flaw == "version-format":
        version = draw(st.sampled_from([b"1.10", b"1", b"1.x", b"11", b"1.1 "]))
    else:
        version = draw(st.sampled_from([b"1.1", b"1.1", b"1.1", b"1.0", b"1.0", b"1.3"]))
    lines.append(method + b" " + target + b" HTTP/" + version)
    spec.method, spec.target = method, target
    spec.version = b"1.1" if version[:2] == b"1." and version > b"1.1" else version
    http_11 = spec.version == b"1.1"

    # -- Host (RFC 9112 §3.2) --------------------------------------------------------------
    if flaw == "host-chars":
        value = b"a" + draw(st.sampled_from([b" b", b"/b", b"@b", b"?", b"#", b"<", b"\xe9",
                                             b'"', b"{", b"\\", b"a:b:c"]))
    elif flaw in ("no-host-11", "minor-alias-host"):
        value = None
    elif not http_11 and flaw not in ("two-hosts", "obs-fold") and draw(st.booleans()):
        value = None  # optional before HTTP/1.1
    else:
        value = draw(st.text(HOST_CHARS, max_size=10)).encode()
        value += draw(st.sampled_from([b"", b"", b":80", b":"]))
    if value is not None:
        lines.append(draw(st.sampled_from([b"Host:", b"host:", b"HOST:"])) + draw(ows) + value)
        spec.fields.append((b"host", value))
        if flaw == "two-hosts":
            lines.append(b"Host: " + value)
            spec.fields.append((b"host", value))

    # -- plain fields; a field flaw goes into one of them (or into a trailer, below) --------
    count = draw(st.integers(0, 4))
    head_flaw_at = draw(st.integers(0, count)) if flaw in FIELD_FLAWS and not in_trailer else -1
    for i in range(count + (head_flaw_at == count)):
        lines.append(draw(field_line(flaw if i == head_flaw_at else None, spec.fields)))
    if flaw == "obs-fold":
        if len(lines) == 1:
            lines.append(draw(field_line(None, spec.fields)))
        lines.append(draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(token()))

    # -- Expect (RFC 9110 §10.1.1) ----------------------------------------------------------
    if flaw == "expect-417":
        expect: bytes | None = draw(st.sampled_from([b"nonsense", b"100-continue, x", b"200"]))
    elif spec.version == b"1.0":
        expect = draw(st.sampled_from([None, None, b"100-continue", b"nonsense"]))  # ignored
    else:
        expect = draw(st.sampled_from([None, None, None, b"100-continue", b"100-Continue"]))
        spec.expects_continue = expect is not None
    if expect is not None:
        lines.append(b"Expect: " + expect)
        spec.fields.append((b"expect", expect))

    # -- framing (RFC 9112 §6) --------------------------------------------------------------
    if flaw in CHUNKED_FLAWS or (in_trailer and flaw in FIELD_FLAWS):
        framing = "chunked"
    elif flaw in LENGTH_FLAWS:
        framing = "length"
    elif flaw in ("te-http10", "major-version") or spec.version == b"1.0":
        framing = draw(st.sampled_from(["none", "length"]))
    else:
        framing = draw(st.sampled_from(["none", "length", "chunked", "chunked"]))
    needs_chunk = flaw in ("after-chunk-data", "chunk-size-ows", "chunk-ext-bws",
                           "chunk-size-zeros")
    body = draw(st.binary(min_size=int(needs_chunk), max_size=40)) if framing != "none" else b""
    spec.body = body
    payload = b""
    if framing == "length":
        payload = body
        n = b"%d" % len(body)
        spelling = {"cl-differ": n + b", 1" + n, "cl-plus": b"+" + n, "cl-hex": b"0x" + n,
                    "cl-comma": n + b",", "cl-empty": b"", "cl-same-value": b"0" + n + b", " + n
                    }.get(flaw or "")
        if spelling is not None:
            lines.append(b"Content-Length: " + spelling)
        else:  # RFC 9110 §8.6: plain, zero-padded, repeated or listed identical values
            lines += draw(st.sampled_from([[b"Content-Length:" + draw(ows) + n + draw(ows)],
                                           [b"content-length: 00" + n],
                                           [b"Content-Length: " + n, b"Content-Length: " + n],
                                           [b"Content-Length: " + n + b", " + n]]))
    elif framing == "chunked":
        spec.chunked = True
        coding = {"te-gzip-first": b"gzip, chunked", "te-gzip-last": b"chunked, gzip",
                  "te-empty-item": b", chunked"}.get(flaw or "")
        lines.append(b"Transfer-Encoding:" + draw(ows)
                     + (coding or draw(st.sampled_from([b"chunked", b"Chunked", b"CHUNKED"]))))
        if flaw == "te-twice":
            lines.append(b"Transfer-Encoding: chunked")
        elif flaw == "cl-and-te":
            lines.insert(draw(st.integers(1, len(lines))), b"Content-Length: %d" % len(body))
        # The chunks: random sizes, hex case and zero padding, extensions.
        cuts = draw(st.lists(st.integers(0, len(body)), max_size=4))
        for i, piece in enumerate(pieces_at(body, cuts)):
            chunk_flaw = flaw if i == 0 else None
            size = (b"%x" if draw(st.booleans()) else b"%X") % len(piece)
            zeros = 21 if chunk_flaw == "chunk-size-zeros" else draw(st.sampled_from([0, 0, 1, 3]))
            payload += b"0" * zeros + size + draw(chunk_ext(chunk_flaw)) + b"\r\n" + piece
            if chunk_flaw == "after-chunk-data":  # in place of the CRLF (h11 CVE-2025-43859)
                payload += draw(st.sampled_from([b"XX", b"\n", b"\r", b"\n\r", b" \r", b"\r "]))
            else:
                payload += b"\r\n"
        last_flaw = flaw if not body and flaw == "chunk-ext" else None
        payload += b"0" + draw(chunk_ext(last_flaw)) + b"\r\n"
        trailer_lines = []
        trailer_flaw_at = draw(st.integers(0, 1)) if in_trailer else -1
        for i in range(draw(st.integers(0, 2)) if trailer_flaw_at < 0 else 2):
            trailer_lines.append(draw(field_line(flaw if i == trailer_flaw_at else None,
                                                 spec.trailers)))
        if flaw == "framing-trailer":
            name, value = draw(st.sampled_from([(b"Transfer-Encoding", b"gzip"),
                                                (b"Content-Length", b"x")]))
            trailer_lines.append(name + b": " + value)
            spec.trailers.append((name.lower(), value))
        payload += b"".join(line + b"\r\n" for line in trailer_lines) + b"\r\n"

    # -- line ends, and what comes before the request line --------------------------------
    ends = [b"\r\n"] * (len(lines) + 1)  # one per line, then the blank line
    if flaw == "bare-lf":
        for i in draw(st.lists(st.integers(0, len(ends) - 1), min_size=1, max_size=3)):
            ends[i] = b"\n"
    leading = b"\r\n" * draw(st.integers(1, 2)) if flaw == "leading-crlf" else b""
    spec.raw = leading + b"".join(map(bytes.__add__, lines, ends)) + ends[-1] + payload
    return spec


# ----------------------------------------------------------------------------------------
def compare(spec: Spec, ours: OursResult | None, theirs: H11Result | None) -> None:
    ours_ok = ours is not None and ours.accepted
    h11_ok = theirs is not None and theirs.accepted
    why = f"{spec.raw!r}\nflaw={spec.flaw}\n"
    why += f"ours: {ours and ours.error}\nh11: {theirs and theirs.error}"
    event(f"flaw: {spec.flaw}" if spec.flaw else "clean")
    if spec.flaw in BOTH_REJECT:
        assert not ours_ok and not h11_ok, "a flaw both grammars forbid got through\n" + why
        return
    if spec.flaw in OURS_STRICTER:
        assert (ours_ok, h11_ok) == (False, True), "documented difference did not hold\n" + why
        return
    if spec.flaw in H11_STRICTER:
        assert (ours_ok, h11_ok) == (True, False), "documented difference did not hold\n" + why
    else:
        assert ours_ok and h11_ok, "a clean request was refused\n" + why
    assert ours is not None and ours.request is not None
    request = ours.request
    # What we parsed, against what the generator built ...
    framing = (b"content-length", b"transfer-encoding")
    our_fields = [(n, v) for n, v in request.headers if n not in framing]
    assert (request.method, request.target, request.http_version) == (
        spec.method, spec.target, spec.version,
    )
    assert our_fields == spec.fields
    assert (ours.body, list(ours.trailers), request.chunked) == (
        spec.body, spec.trailers, spec.chunked,
    )
    assert request.content_length == (None if spec.chunked else len(spec.body))
    assert request.expects_continue == spec.expects_continue
    if not h11_ok:
        return
    # ... and against what h11 parsed.
    assert theirs is not None
    assert (theirs.method, theirs.target) == (request.method, request.target)
    their_version = b"1.1" if theirs.version > b"1.1" else theirs.version
    assert their_version == request.http_version
    assert [(n, v) for n, v in theirs.headers if n not in framing] == our_fields
    assert any(n == b"transfer-encoding" for n, _ in theirs.headers) == request.chunked
    assert (theirs.body, theirs.trailers) == (ours.body, tuple(ours.trailers))
    assert theirs.waiting_for_100 == request.expects_continue


FAST = settings(
    max_examples=350,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(spec=requests(), data=st.data())
def test_same_decision_as_h11(spec: Spec, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(spec.raw)), max_size=6), label="cuts")
    pieces = pieces_at(spec.raw, cuts)
    compare(spec, ours_parse_request(pieces), h11_parse_request(pieces))


@pytest.mark.parametrize("flaw", GENERATED)
@settings(FAST, max_examples=10)
@given(data=st.data())
def test_each_flaw(flaw: str, data: st.DataObject) -> None:
    """Every flaw, every run: the main test draws them at random and may miss a few."""
    spec = data.draw(requests(st.just(flaw)), label="spec")
    cuts = data.draw(st.lists(st.integers(0, len(spec.raw)), max_size=4), label="cuts")
    pieces = pieces_at(spec.raw, cuts)
    compare(spec, ours_parse_request(pieces), h11_parse_request(pieces))


@settings(FAST, max_examples=100)
@given(spec=requests())
def test_same_decision_as_h11_one_byte_at_a_time(spec: Spec) -> None:
    pieces = one_byte_at_a_time(spec.raw)
    compare(spec, ours_parse_request(pieces), h11_parse_request(pieces))


@settings(FAST, max_examples=100)
@given(spec=requests())
def test_whole_and_one_byte_agree(spec: Spec) -> None:
    """Our own outcome does not depend on fragmentation, for every generated request."""
    whole = ours_parse_request([spec.raw])
    split = ours_parse_request(one_byte_at_a_time(spec.raw))
    assert whole is not None and split is not None  # every generated request is complete
    assert (whole.accepted, whole.status) == (split.accepted, split.status)
    assert (whole.request, whole.body, whole.trailers) == (
        split.request, split.body, split.trailers,
    )


# ----------------------------------------------------------------------------------------
# One concrete example per documented difference, checked by experiment both ways.
GET = b"GET / HTTP/1.1\r\nHost: a\r\n"
POST_TE = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
DIFFERENCES: list[tuple[str, bytes, bool]] = [  # (name, request, fed in pieces)
    ("bare-lf", b"GET / HTTP/1.1\nHost: a\n\n", False),
    ("obs-fold", GET + b"X: a\r\n b\r\n\r\n", False),
    ("ctl-in-value", GET + b"X: a\x01b\r\n\r\n", False),
    ("ctl-in-value", GET + b"X: \x1b[31m\x7f\r\n\r\n", False),
    ("chunk-size-ows", POST_TE + b"5 \r\nhello\r\n0\r\n\r\n", False),
    ("chunk-ext", POST_TE + b"5;\x00\r\nhello\r\n0\r\n\r\n", False),
    ("chunk-ext", POST_TE + b"5;a b\r\nhello\r\n0\r\n\r\n", False),
    ("chunk-ext", POST_TE + b"5;a\rb\r\nhello\r\n0\r\n\r\n", False),
    ("target-form", b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("target-form", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", False),
    ("host-chars", b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", False),
    ("expect-417", GET + b"Expect: nonsense\r\n\r\n", False),
    ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
    ("major-version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", False),
    ("minor-alias-host", b"GET / HTTP/1.2\r\n\r\n", False),
    ("cl-and-te", GET + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
    ("limits", GET + b"X: 1\r\n" * 100 + b"\r\n", False),
    ("limits", GET + b"X: " + b"a" * 9000 + b"\r\n\r\n", False),
    ("limits-h11", GET + b"".join(b"X%d: %s\r\n" % (i, b"a" * 1000) for i in range(20)) + b"\r\n",
     True),
    ("leading-crlf", b"\r\n" + GET + b"\r\n", False),
    ("chunk-ext-bws", POST_TE + b"5 ;a=b\r\nhello\r\n0\r\n\r\n", False),
    ("te-empty-item", POST_TE.replace(b": chunked", b": , chunked") + b"0\r\n\r\n", False),
    ("cl-same-value", GET + b"Content-Length: 05, 5\r\n\r\nhello", False),
    ("cl-same-value", GET + b"Content-Length: 5\r\nContent-Length: 005\r\n\r\nhello", False),
    ("chunk-size-zeros", POST_TE + b"0" * 20 + b"5\r\nhello\r\n0\r\n\r\n", False),
    ("framing-trailer", POST_TE + b"0\r\nContent-Length: x\r\n\r\n", False),
    ("framing-trailer", POST_TE + b"0\r\nTransfer-Encoding: gzip\r\n\r\n", False),
]


@pytest.mark.parametrize(("name", "raw", "in_pieces"), DIFFERENCES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(DIFFERENCES)])
def test_documented_difference(name: str, raw: bytes, in_pieces: bool) -> None:
    assert name in OURS_STRICTER | H11_STRICTER
    pieces = one_byte_at_a_time(raw) if in_pieces else [raw]
    ours, theirs = ours_parse_request(pieces), h11_parse_request(pieces)
    ours_ok = ours is not None and ours.accepted
    h11_ok = theirs is not None and theirs.accepted
    if name in OURS_STRICTER:
        assert (ours_ok, h11_ok) == (False, True), (ours, theirs)
    else:
        assert (ours_ok, h11_ok) == (True, False), (ours, theirs)


def test_every_documented_difference_has_an_example() -> None:
    assert {name for name, _, _ in DIFFERENCES} == OURS_STRICTER | H11_STRICTER
