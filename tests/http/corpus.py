"""A corpus of HTTP/1.1 requests, valid and malformed, each with the outcome the core must give.

Layout. ``CORPUS`` is a list of :class:`Case`, in themed groups (basics, line ends, request
line, header fields, Host, Content-Length, Transfer-Encoding, chunked bodies, trailers,
Expect, persistence, limits, pipelining, end of input). A case holds:

* ``raw``: the exact bytes the client sends, written out with every ``\\r\\n`` visible;
* ``messages``: the requests the server must see, in order, each a :class:`~helpers.Msg`
  (method, target, version, lower-cased headers, de-chunked body, trailers, and the framing
  and persistence facts the core derives). A message that fails half-way through its body
  is listed with ``complete=False`` and the body bytes that came before the fault;
* ``error``: the status of the RemoteProtocolError that ends the run, or None;
* ``eof``: whether the client closes its side after ``raw``; ``closed`` then says whether the
  server sees that close as a ConnectionClosed (it does unless it had already decided to
  close the connection itself);
* ``why``: one line with the RFC section or the advisory the case comes from;
* ``limits``: a Limits for the few cases that test a limit lowered for the purpose.

How the server is driven (answering each complete request with a 200 before the next one
may come out) is in ``helpers.drive``; ``test_corpus.py`` replays every case whole, one
byte at a time, split at every point, and with a valid request pipelined behind it.

Header expectations are written out, never computed from ``raw``: a corpus that derives its
answers from its questions proves nothing. Host is "a" throughout to keep cases short
(short cases can be split at every point).
"""

from __future__ import annotations

from dataclasses import dataclass

from servers.http import Limits

from .helpers import Fields, Msg

H: Fields = ((b"host", b"a"),)  # the usual header section: just "Host: a"
CHUNKED_H: Fields = ((b"host", b"a"), (b"transfer-encoding", b"chunked"))
POST_CHUNKED = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    why: str
    messages: tuple[Msg, ...] = ()
    error: int | None = None
    eof: bool = False
    closed: bool = False
    limits: Limits | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


def m(
    method: bytes = b"GET",
    target: bytes = b"/",
    version: bytes = b"1.1",
    headers: Fields = H,
    body: bytes = b"",
    *,
    trailers: Fields = (),
    length: int | None = -1,
    keep_alive: bool | None = None,
    expects_continue: bool = False,
    complete: bool = True,
) -> Msg:
    """An expected message. ``length`` defaults to len(body) (None means chunked); keep-alive
    defaults to the version's default (RFC 9112 §9.3): on for 1.1, off for 1.0."""
    return Msg(
        method=method,
        target=target,
        version=version,
        headers=headers,
        body=body,
        trailers=trailers,
        content_length=len(body) if length == -1 else length,
        keep_alive=(version == b"1.1") if keep_alive is None else keep_alive,
        expects_continue=expects_continue,
        complete=complete,
    )


def chunked(body: bytes, *, trailers: Fields = (), complete: bool = True) -> Msg:
    """An expected POST /up with a chunked body."""
    return m(b"POST", b"/up", b"1.1", CHUNKED_H, body, trailers=trailers, length=None,
             complete=complete)


CORPUS: list[Case] = []


def ok(name: str, raw: bytes, why: str, *messages: Msg, eof: bool = False,
       limits: Limits | None = None) -> None:
    closed = eof and (not messages or messages[-1].keep_alive)
    CORPUS.append(Case(name, raw, why, messages, None, eof, closed, limits))


def bad(name: str, raw: bytes, status: int, why: str, *messages: Msg, eof: bool = False,
        limits: Limits | None = None) -> None:
    CORPUS.append(Case(name, raw, why, messages, status, eof, False, limits))


# ========================================================================================
# Basics
ok("get 1.1", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "RFC 9112 §3: the smallest 1.1 request", m())
ok("get 1.0 without host", b"GET / HTTP/1.0\r\n\r\n",
   "RFC 9112 §3.2: Host is required of HTTP/1.1 only", m(version=b"1.0", headers=()))
ok("get 1.0 with host", b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n",
   "RFC 9112 §3.2: a 1.0 client may send Host", m(target=b"/x", version=b"1.0"))
ok("head", b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n", "RFC 9110 §9.3.2", m(b"HEAD", b"/h"))
ok("post content-length", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
   "RFC 9112 §6.2: Content-Length frames the body",
   m(b"POST", b"/f", headers=(*H, (b"content-length", b"5")), body=b"hello"))
ok("post content-length 0", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
   "RFC 9112 §6.2: an empty body", m(b"POST", b"/f", headers=(*H, (b"content-length", b"0"))))
ok("get with a body", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
   "RFC 9110 §9.3.1: a GET body has no defined meaning, but the framing still holds",
   m(headers=(*H, (b"content-length", b"2")), body=b"hi"))
ok("names lower-cased", b"GET / HTTP/1.1\r\nHoSt: a\r\nX-MiXed-CASE: KeepMe\r\n\r\n",
   "RFC 9110 §5.1: names are case-insensitive; values keep their case",
   m(headers=((b"host", b"a"), (b"x-mixed-case", b"KeepMe"))))
ok("ows stripped", b"GET / HTTP/1.1\r\nHost: a\r\nX:  \t a  b\t \r\n\r\n",
   "RFC 9112 §5.1: OWS around the value is not part of it; inner spaces are",
   m(headers=(*H, (b"x", b"a  b"))))
ok("no space after colon", b"GET / HTTP/1.1\r\nHost:a\r\nX:1\r\n\r\n",
   "RFC 9112 §5: OWS after the colon is optional", m(headers=(*H, (b"x", b"1"))))
ok("empty value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Blank:   \r\n\r\n",
   "RFC 9110 §5.5: field-value = *field-content, may be empty",
   m(headers=(*H, (b"x-empty", b""), (b"x-blank", b""))))
ok("obs-text in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \xff\x80\r\n\r\n",
   "RFC 9110 §5.5: obs-text (%x80-FF) is allowed in values",
   m(headers=(*H, (b"x", b"caf\xc3\xa9 \xff\x80"))))
ok("value with inner htab", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n",
   "RFC 9110 §5.5: HTAB inside field-content", m(headers=(*H, (b"x", b"a\tb"))))
ok("underscore name", b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1\r\n\r\n",
   "RFC 9110 §5.6.2: '_' is a tchar; dropping such names is the CGI/WSGI era's job",
   m(headers=(*H, (b"x_forwarded_for", b"1"))))
ok("every tchar in a name", b"GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09az: t\r\n\r\n",
   "RFC 9110 §5.6.2: tchar", m(headers=(*H, (b"!#$%&'*+-.^_`|~09az", b"t"))))
ok("duplicate field kept", b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\n\r\n",
   "RFC 9110 §5.3: repeated lines are kept in order",
   m(headers=(*H, (b"accept", b"a"), (b"accept", b"b"))))
ok("query target", b"GET /s?q=1&r=%20 HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §3.2.1: origin-form = absolute-path [ ? query ]", m(target=b"/s?q=1&r=%20"))
ok("percent-encoded utf-8 target", b"GET /caf%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 3986 §2.1: non-ASCII reaches a target percent-encoded", m(target=b"/caf%C3%A9"))
ok("absolute-form", b"GET http://a/p?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §3.2.2: a server MUST accept the absolute-form", m(target=b"http://a/p?q=1"))
ok("absolute-form without path", b"GET http://a HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §3.2.2", m(target=b"http://a"))
ok("options asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §3.2.4: asterisk-form, OPTIONS only", m(b"OPTIONS", b"*"))
ok("extension method", b"PURGE /c HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9110 §9.1: method = token; unknown methods are the app's business",
   m(b"PURGE", b"/c"))
ok("method with tchars", b"M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9110 §9.1: a method is any token", m(b"M-SEARCH", b"/x"))
ok("lower-case method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9110 §9.1: methods are case-sensitive; 'get' is a different method, not an error",
   m(b"get"))
ok("http/1.2 as 1.1", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
   "RFC 9110 §2.5: a higher minor version is answered as the highest 1.x we speak", m())
ok("http/1.9 as 1.1", b"GET / HTTP/1.9\r\nHost: a\r\n\r\n", "RFC 9110 §2.5", m())
ok("long ows run is linear", b"GET / HTTP/1.1\r\nHost: a\r\nX: a" + b" \t" * 3000 + b"b\r\n\r\n",
   "waitress CVE-2020-5236: a header regex with backtracking; ours are linear",
   m(headers=(*H, (b"x", b"a" + b" \t" * 3000 + b"b"))))

# ========================================================================================
# Line ends: CRLF and nothing else (RFC 9112 §2.2)
ok("one leading crlf", b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request", m())
ok("several leading crlf", b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §2.2", m())
bad("bare lf after request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400,
    "waitress CVE-2019-16785: bare LF as a line end")
bad("bare lf after a field", b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400,
    "waitress CVE-2019-16785; RFC 9112 §2.2 lets us reject")
bad("bare lf everywhere", b"GET / HTTP/1.1\nHost: a\n\n", 400, "waitress CVE-2019-16785")
bad("bare lf ends the head", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "RFC 9112 §2.2")
bad("bare lf refused before the head ends", b"GET / HTTP/1.1\nHost: a", 400,
    "readers.py: refused as soon as it arrives, not when the client gives up")
bad("bare cr refused before the head ends", b"GET / HTTP/1.1\r\nHost: a\rX", 400,
    "readers.py: refused as soon as the byte after the CR arrives")
bad("bare lf refused before the chunk line ends", POST_CHUNKED + b"5\nhel", 400,
    "RFC 9112 §7.1", chunked(b"", complete=False))
bad("leading bare lf", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §2.2: only an empty CRLF line is ignored")
bad("bare cr in request line", b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400,
    "RFC 9112 §2.2: a bare CR MUST be rejected or replaced by SP")
bad("bare cr in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, "RFC 9112 §2.2")
bad("cr cr lf", b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400, "RFC 9112 §2.2: CR CR LF")
bad("leading bare cr", b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "RFC 9112 §2.2")
bad("bare lf in chunk-size line", POST_CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400,
    "waitress CVE-2019-16785 in a chunk line", chunked(b"", complete=False))
bad("bare lf after chunk data", POST_CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400,
    "RFC 9112 §7.1: chunk-data is followed by CRLF", chunked(b"hello", complete=False))
bad("bare cr in chunk-size line", POST_CHUNKED + b"5\rhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §2.2", chunked(b"", complete=False))
bad("bare lf in trailers", POST_CHUNKED + b"0\r\nX: 1\n\r\n", 400, "RFC 9112 §2.2",
    chunked(b"", complete=False))

# ========================================================================================
# The request line (RFC 9112 §3)
bad("two spaces after method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3: exactly one SP between the parts")
bad("two spaces before version", b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "RFC 9112 §3")
bad("tab separator", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3: SP, not HTAB (lenient parsers disagree on this)")
bad("trailing space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "RFC 9112 §3")
bad("missing version", b"GET /\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3: HTTP/0.9 simple requests are not HTTP/1.x")
bad("missing target", b"GET HTTP/1.1\r\nHost: a\r\n\r\n", 400, "RFC 9112 §3")
bad("lower-case http", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §2.3: HTTP-name is case-sensitive")
bad("https name", b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400, "RFC 9112 §2.3")
bad("two-digit minor", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §2.3: HTTP-version = DIGIT . DIGIT")
bad("no minor", b"GET / HTTP/1\r\nHost: a\r\n\r\n", 400, "RFC 9112 §2.3")
bad("http/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505,
    "RFC 9110 §15.6.6: another major version is not supported")
bad("http/0.9", b"GET / HTTP/0.9\r\n\r\n", 505, "RFC 9110 §15.6.6")
bad("http/3.1", b"GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505, "RFC 9110 §15.6.6")
bad("http/1.2 still needs host", b"GET / HTTP/1.2\r\n\r\n", 400,
    "RFC 9112 §3.2: answered as 1.1, so Host is required")
bad("extra word", b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400, "RFC 9112 §3")
bad("empty method", b" / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "RFC 9110 §9.1: method = token")
bad("non-token method", b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "RFC 9110 §9.1")
bad("asterisk with get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3.2.4: asterisk-form is only for OPTIONS")
bad("connect authority-form", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501,
    "RFC 9112 §3.2.3: CONNECT is for proxies; this is an origin server")
bad("connect origin-form", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 501,
    "RFC 9110 §9.3.6: CONNECT never takes an origin-form target")
bad("authority-form with get", b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3.2.3: authority-form is only for CONNECT")
bad("relative target", b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3.2: no form allows a relative reference")
bad("non-ascii target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3.2: the target is ASCII; non-ASCII is percent-encoded")
bad("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3.2: no whitespace in a target (gunicorn nonascii/space cases)")
bad("escape in target", b"GET /\x1b[31mred HTTP/1.1\r\nHost: a\r\n\r\n", 400,
    "uvicorn CVE-2020-7694: terminal escapes through the path into logs")
bad("nul in target", b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "RFC 9112 §3.2")
bad("binary garbage", b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n", 400,
    "a TLS handshake sent to the plain-text port is not a request line")

# ========================================================================================
# Header fields (RFC 9112 §5, RFC 9110 §5.5)
bad("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-Y : 1\r\n\r\n", 400,
    "RFC 9112 §5.1: a server MUST reject whitespace between name and colon")
bad("tab before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-Y\t: 1\r\n\r\n", 400, "RFC 9112 §5.1")
bad("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400,
    "RFC 9112 §5.2: obs-fold MUST be rejected or replaced by SP; we reject")
bad("obs-fold with tab", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400, "RFC 9112 §5.2")
bad("whitespace before the first field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400,
    "RFC 9112 §2.2: whitespace-preceded line after the start-line")
bad("nul in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400,
    "RFC 9110 §5.5: NUL MUST be rejected or replaced")
bad("soh in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400,
    "RFC 9110 §5.5: control characters are not field-content")
bad("del in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400,
    "RFC 9110 §5.5: DEL is not VCHAR")
bad("escape in value", b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: \x1b]0;pwned\x07\r\n\r\n", 400,
    "uvicorn CVE-2020-7694: terminal escapes into logs")
bad("vertical tab in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", 400,
    "RFC 9110 §5.6.3: VT is not whitespace in HTTP (waitress CVE-2019-16789)")
bad("form feed after value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0c\r\n\r\n", 400,
    "RFC 9110 §5.6.3: only SP and HTAB are OWS (waitress CVE-2019-16789)")
bad("space in name", b"GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n", 400,
    "RFC 9110 §5.1: field-name = token")
bad("paren in name", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", 400, "RFC 9110 §5.6.2")
bad("slash in name", b"GET / HTTP/1.1\r\nHost: a\r\nX/y: 1\r\n\r\n", 400, "RFC 9110 §5.6.2")
bad("non-ascii name", b"GET / HTTP/1.1\r\nHost: a\r\nN\xc3\xa4me: 1\r\n\r\n", 400,
    "RFC 9110 §5.6.2: a token is ASCII (gunicorn nonascii_* cases)")
bad("nul in name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: 1\r\n\r\n", 400, "RFC 9110 §5.6.2")
bad("empty name", b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400, "RFC 9110 §5.6.2: 1*tchar")
bad("no colon", b"GET / HTTP/1.1\r\nHost: a\r\nGarbage\r\n\r\n", 400, "RFC 9112 §5")

# ========================================================================================
# Host (RFC 9112 §3.2)
bad("missing host in 1.1", b"GET / HTTP/1.1\r\n\r\n", 400,
    "RFC 9112 §3.2: a server MUST respond 400 to a 1.1 request without Host")
bad("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
    "RFC 9112 §3.2: more than one Host MUST get 400")
bad("two identical hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400,
    "RFC 9112 §3.2: 'more than one', even when equal")
bad("two hosts in 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400,
    "RFC 9112 §3.2 applies to any request with several Hosts")
ok("empty host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
   "RFC 9112 §3.2: Host may be empty when the target URI has no authority",
   m(headers=((b"host", b""),)))
ok("host with port", b"GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", "RFC 9110 §7.2",
   m(headers=((b"host", b"a.example:8080"),)))
ok("ipv6 host", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "RFC 3986 §3.2.2: IP-literal",
   m(headers=((b"host", b"[::1]:80"),)))
bad("host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400,
    "RFC 9110 §7.2: Host = uri-host [ : port ]; no spaces")
bad("host with slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400,
    "RFC 9110 §7.2: Host-header injection (a path in the authority)")
bad("host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400,
    "RFC 9110 §4.2.4: userinfo is deprecated and not part of uri-host")
bad("space before colon on host", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400,
    "RFC 9112 §5.1, and so no Host at all")

# ========================================================================================
# Content-Length (RFC 9110 §8.6, RFC 9112 §6.3 step 5)
CL = b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: "


def cl_msg(value: bytes, body: bytes, *extra: tuple[bytes, bytes]) -> Msg:
    return m(b"POST", b"/f", headers=(*H, (b"content-length", value), *extra), body=body)


bad("cl plus sign", CL + b"+10\r\n\r\nhelloworld", 400,
    "waitress CVE-2022-24761: int() takes '+10'")
bad("cl hex", CL + b"0x01\r\n\r\nh", 400, "waitress CVE-2022-24761: int(x, 0) takes '0x01'")
bad("cl underscore", CL + b"1_0\r\n\r\nhelloworld", 400, "Python int() takes '1_0' (PEP 515)")
bad("cl inner space", CL + b"1 0\r\n\r\nhelloworld", 400, "RFC 9110 §8.6: 1*DIGIT")
bad("cl negative", CL + b"-1\r\n\r\n", 400, "RFC 9110 §8.6: 1*DIGIT")
bad("cl empty", CL + b"\r\n\r\n", 400, "RFC 9112 §6.3 step 5: an invalid Content-Length")
bad("cl exponent", CL + b"1e1\r\n\r\nhelloworld", 400, "RFC 9110 §8.6: 1*DIGIT")
bad("cl vertical tab", CL + b"\x0b5\r\n\r\nhello", 400,
    "waitress CVE-2019-16789: VT stripped as whitespace by str.strip()")
ok("cl '10 '", CL + b"10 \r\n\r\nhelloworld",
   "RFC 9112 §5.1: trailing OWS belongs to the field line, not the value (so int() never "
   "sees it)", cl_msg(b"10", b"helloworld"))
ok("cl ' 10'", CL + b" 10\r\n\r\nhelloworld", "RFC 9112 §5.1: leading OWS likewise",
   cl_msg(b"10", b"helloworld"))
ok("cl ows with tabs", CL + b"\t5 \t\r\n\r\nhello", "RFC 9110 §5.6.3: OWS is SP or HTAB",
   cl_msg(b"5", b"hello"))
ok("cl leading zeros", CL + b"005\r\n\r\nhello", "RFC 9110 §8.6: 1*DIGIT allows zeros",
   cl_msg(b"005", b"hello"))
bad("cl huge", CL + b"99999999999999999999999\r\n\r\n", 413,
    "RFC 9110 §8.6: guard against overflow; far over any body we accept")
bad("cl over max_body", CL + b"16777217\r\n\r\n", 413,
    "RFC 9110 §15.5.14: 413 for a body over the limit, known from the head")
bad("cl plus te", CL + b"5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
    "RFC 9112 §6.1: CL with TE is the CL.TE smuggling vector; we reject and close")
bad("te plus cl", b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400, "RFC 9112 §6.1: the TE.CL order")
bad("two differing cl lines", CL + b"5\r\nContent-Length: 6\r\n\r\nhello!", 400,
    "waitress CVE-2019-16792; RFC 9112 §6.3 step 5: unrecoverable")
bad("cl list 5, 6", CL + b"5, 6\r\n\r\nhello!", 400, "RFC 9110 §8.6: differing values")
ok("two identical cl lines", CL + b"5\r\nContent-Length: 5\r\n\r\nhello",
   "RFC 9110 §8.6: identical duplicates MAY be accepted as one",
   cl_msg(b"5", b"hello", (b"content-length", b"5")))
ok("cl list 5, 5", CL + b"5, 5\r\n\r\nhello", "RFC 9110 §8.6: 'Content-Length: 42, 42'",
   cl_msg(b"5, 5", b"hello"))
bad("cl list with empty item", CL + b"5,\r\n\r\nhello", 400,
    "RFC 9110 §8.6: Content-Length is not a list field; '5,' is not 1*DIGIT")
bad("cl plus an empty cl line", CL + b"5\r\nContent-Length:\r\n\r\nhello", 400,
    "RFC 9112 §6.3 step 5: a peer reading the empty one as 0 would desynchronise")
bad("cl space before colon", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
    400, "RFC 9112 §5.1: the name may not be followed by whitespace")
ok("body that looks like a request", CL + b"35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §6.2: body bytes are opaque, whatever they look like",
   cl_msg(b"35", b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"))

# ========================================================================================
# Transfer-Encoding (RFC 9112 §6.1, §6.3 steps 3-4)
TE = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
END = b"\r\n\r\n0\r\n\r\n"
ok("te chunked", TE + b"chunked" + END, "RFC 9112 §7.1", chunked(b""))
ok("te Chunked", TE + b"Chunked" + END,
   "RFC 9112 §7: transfer-coding names are case-insensitive",
   m(b"POST", b"/up", headers=(*H, (b"transfer-encoding", b"Chunked")), length=None))
ok("te with tab ows", TE[:-1] + b"\tchunked" + END, "RFC 9110 §5.6.3: HTAB is OWS", chunked(b""))
ok("te empty list item", TE + b", chunked" + END,
   "RFC 9110 §5.6.1: a recipient MUST ignore empty list elements",
   m(b"POST", b"/up", headers=(*H, (b"transfer-encoding", b", chunked")), length=None))
bad("te nbsp before colon", b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\xa0: chunked"
    + END, 400, "gunicorn rfc9112_smuggle cases: NBSP makes the name a non-token")
bad("te space before colon", b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked"
    + END, 400, "RFC 9112 §5.1: MUST reject whitespace before the colon")
bad("te chunked, gzip", TE + b"chunked, gzip" + END, 400,
    "RFC 9112 §6.3 step 4: chunked is not the final coding of a request")
bad("te gzip, chunked", TE + b"gzip, chunked" + END, 501,
    "RFC 9112 §6.1: an unimplemented transfer coding SHOULD get 501")
bad("te identity, chunked", TE + b"identity, chunked" + END, 501,
    "gunicorn CVE-2024-6827: 'identity' is no longer a registered coding (RFC 9112 §7)")
bad("te chunked, chunked", TE + b"chunked, chunked" + END, 400,
    "RFC 9112 §7: chunked MUST NOT be applied more than once")
bad("te chunked twice on two lines", TE + b"chunked\r\nTransfer-Encoding: chunked" + END, 400,
    "gunicorn CVE-2024-1135: duplicate TE lines are one list (RFC 9110 §5.3)")
bad("te chunked then identity line", TE + b"chunked\r\nTransfer-Encoding: identity" + END, 400,
    "gunicorn CVE-2024-1135: the final coding across lines is identity")
bad("te xchunked", TE + b"xchunked" + END, 400, "RFC 9112 §6.3 step 4: not chunked")
bad("te identity", TE + b"identity" + END, 400, "RFC 9112 §6.3 step 4: final coding not chunked")
bad("te gzip alone", TE + b"gzip" + END, 400, "RFC 9112 §6.3 step 4")
bad("te quoted", TE + b'"chunked"' + END, 400, "RFC 9112 §6.1: a coding is a token")
bad("te with parameter", TE + b"chunked;q=1" + END, 400,
    "RFC 9112 §7.1: chunked takes no parameters")
bad("te empty", TE + END, 400, "RFC 9112 §6.1: Transfer-Encoding = #transfer-coding, not empty")
bad("te vertical tab", TE + b"\x0bchunked" + END, 400, "waitress CVE-2019-16789")
bad("te in http/1.0", b"POST /up HTTP/1.0\r\nTransfer-Encoding: chunked" + END, 400,
    "RFC 9112 §6.1: TE in a 1.0 message means faulty framing")
bad("te.te obfuscation", TE + b"chunked\r\nTransfer-encoding: cow" + END, 400,
    "PortSwigger TE.TE: the last coding is not chunked")
bad("cl.te smuggling probe", CL + b"6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400,
    "PortSwigger CL.TE probe: refused before any byte of body is read")

# ========================================================================================
# Chunked bodies (RFC 9112 §7.1)
ok("two chunks", POST_CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "RFC 9112 §7.1",
   chunked(b"hello world"))
ok("upper-case hex", POST_CHUNKED + b"A\r\n0123456789\r\n0\r\n\r\n",
   "RFC 5234 HEXDIG is case-insensitive", chunked(b"0123456789"))
ok("lower-case hex", POST_CHUNKED + b"a\r\n0123456789\r\n0\r\n\r\n", "RFC 9112 §7.1",
   chunked(b"0123456789"))
ok("chunk size leading zeros", POST_CHUNKED + b"0005\r\nhello\r\n000\r\n\r\n",
   "RFC 9112 §7.1: chunk-size = 1*HEXDIG", chunked(b"hello"))
ok("twenty-digit zero-padded size", POST_CHUNKED + b"00000000000000000005\r\nhello\r\n0\r\n\r\n",
   "RFC 9112 §7.1: leading zeros do not make a size large", chunked(b"hello"))
ok("chunk data holding crlf 0 crlf", POST_CHUNKED + b"7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n",
   "RFC 9112 §7.1: chunk-data is opaque, only the size counts", chunked(b"\r\n0\r\n\r\n"))
ok("chunk ext name", POST_CHUNKED + b"5;ext\r\nhello\r\n0\r\n\r\n",
   "RFC 9112 §7.1.1: unknown extensions MUST be ignored", chunked(b"hello"))
ok("chunk ext token value", POST_CHUNKED + b"5;name=value\r\nhello\r\n0\r\n\r\n",
   "RFC 9112 §7.1.1", chunked(b"hello"))
ok("chunk ext quoted value", POST_CHUNKED + b'5;name="a \\"q\\" ;=x"\r\nhello\r\n0\r\n\r\n',
   "RFC 9110 §5.6.4: quoted-string with quoted-pairs", chunked(b"hello"))
ok("chunk ext several with bws", POST_CHUNKED + b"5 ; a = 1 ;b;c=\"\"\r\nhello\r\n0\r\n\r\n",
   "RFC 9112 §7.1.1: BWS around ';' and '='", chunked(b"hello"))
ok("last chunk with ext", POST_CHUNKED + b"0;done=1\r\n\r\n", "RFC 9112 §7.1: last-chunk",
   chunked(b""))
bad("junk after size", POST_CHUNKED + b"5xyz\r\nhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1: chunk-size then only chunk-ext", chunked(b"", complete=False))
bad("garbage after space", POST_CHUNKED + b"5 garbage\r\nhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1", chunked(b"", complete=False))
bad("space after size", POST_CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1: BWS only before ';'", chunked(b"", complete=False))
bad("ext with empty name", POST_CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1.1: chunk-ext-name = token", chunked(b"", complete=False))
bad("ext with empty value", POST_CHUNKED + b"5;a=\r\nhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1.1: chunk-ext-val = token / quoted-string", chunked(b"", complete=False))
bad("ext unterminated quote", POST_CHUNKED + b'5;a="x\r\nhello\r\n0\r\n\r\n', 400,
    "RFC 9110 §5.6.4", chunked(b"", complete=False))
bad("ext value with space", POST_CHUNKED + b"5;a=b c\r\nhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1.1", chunked(b"", complete=False))
bad("ext with nul", POST_CHUNKED + b"5;a\x00\r\nhello\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1.1: h11 used to take ';.*'", chunked(b"", complete=False))
bad("chunk data then XX", POST_CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400,
    "h11 CVE-2025-43859: any two bytes were taken as the CRLF after chunk data",
    chunked(b"hello", complete=False))
bad("chunk longer than its size", POST_CHUNKED + b"5\r\nhelloworld\r\n0\r\n\r\n", 400,
    "RFC 9112 §7.1: the size is exact", chunked(b"hello", complete=False))
bad("plus sign size", POST_CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400,
    "waitress CVE-2022-24761 in a chunk size", chunked(b"", complete=False))
bad("0x size", POST_CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400,
    "waitress CVE-2022-24761: int(x, 16) takes '0x5'", chunked(b"", complete=False))
bad("negative size", POST_CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400, "RFC 9112 §7.1",
    chunked(b"", complete=False))
bad("empty size line", POST_CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400, "RFC 9112 §7.1: 1*HEXDIG",
    chunked(b"", complete=False))
bad("seventeen significant hex digits", POST_CHUNKED + b"10000000000000000\r\nx\r\n", 400,
    "RFC 9112 §7.1: guard the integer conversion (more than 2**64)",
    chunked(b"", complete=False))
bad("size over max_body", POST_CHUNKED + b"fffffffffffffff\r\nhello", 413,
    "RFC 9110 §15.5.14: a size alone can exceed the limit", chunked(b"", complete=False))
bad("chunk line over max_chunk_line",
    POST_CHUNKED + b"5;x=" + b"y" * 4100 + b"\r\nhello\r\n0\r\n\r\n", 400,
    "a bounded chunk line (Limits.max_chunk_line, 4 KiB)", chunked(b"", complete=False))
ok("chunk line at max_chunk_line", POST_CHUNKED + b"5;x=" + b"y" * 4092 + b"\r\nhello\r\n0\r\n\r\n",
   "the limit itself is allowed, however the bytes arrive", chunked(b"hello"))

# ========================================================================================
# Trailers (RFC 9112 §7.1.2, RFC 9110 §6.5)
ok("one trailer", POST_CHUNKED + b"5\r\nhello\r\n0\r\nX-Sum: abc\r\n\r\n", "RFC 9112 §7.1.2",
   chunked(b"hello", trailers=((b"x-sum", b"abc"),)))
ok("two trailers", POST_CHUNKED + b"0\r\nX-A: 1\r\nx-b:  2 \r\n\r\n",
   "RFC 9112 §7.1.2: trailer fields follow the field-line grammar",
   chunked(b"", trailers=((b"x-a", b"1"), (b"x-b", b"2"))))
bad("trailer space before colon", POST_CHUNKED + b"0\r\nX-Sum : abc\r\n\r\n", 400,
    "RFC 9112 §5.1 applies to trailers", chunked(b"", complete=False))
bad("trailer obs-fold", POST_CHUNKED + b"0\r\nX: a\r\n b\r\n\r\n", 400, "RFC 9112 §5.2",
    chunked(b"", complete=False))
bad("trailer without colon", POST_CHUNKED + b"0\r\nnonsense\r\n\r\n", 400, "RFC 9112 §5",
    chunked(b"", complete=False))
bad("trailer control char", POST_CHUNKED + b"0\r\nX: a\x01\r\n\r\n", 400, "RFC 9110 §5.5",
    chunked(b"", complete=False))
bad("101 trailer fields", POST_CHUNKED + b"0\r\n" + b"X: 1\r\n" * 101 + b"\r\n", 431,
    "the header count limit holds for trailers too", chunked(b"", complete=False))
ok("trailer section at max_header_bytes",
   POST_CHUNKED + b"0\r\n" + b"\r\n".join([b"X: " + b"a" * 8000] * 4) + b"\r\nY: "
   + b"b" * (32768 - 4 * 8005 - 3) + b"\r\n\r\n",
   "the limit itself is allowed, however the bytes arrive",
   chunked(b"", trailers=(*[(b"x", b"a" * 8000)] * 4, (b"y", b"b" * (32768 - 4 * 8005 - 3)))))
bad("trailer section over max_header_bytes",
    POST_CHUNKED + b"0\r\n" + b"\r\n".join([b"X: " + b"a" * 8000] * 4) + b"\r\nY: "
    + b"b" * (32769 - 4 * 8005 - 3) + b"\r\n\r\n",
    431, "RFC 9110 §15.5.20: 431 for an oversized field section", chunked(b"", complete=False))

# ========================================================================================
# Expect (RFC 9110 §10.1.1)
EXPECT = b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: "
ok("expect 100-continue", EXPECT + b"100-continue\r\n\r\nabc", "RFC 9110 §10.1.1",
   m(b"POST", b"/e", headers=(*H, (b"content-length", b"3"), (b"expect", b"100-continue")),
     body=b"abc", expects_continue=True))
ok("expect 100-Continue", EXPECT + b"100-Continue\r\n\r\nabc",
   "RFC 9110 §10.1.1: the expectation is case-insensitive",
   m(b"POST", b"/e", headers=(*H, (b"content-length", b"3"), (b"expect", b"100-Continue")),
     body=b"abc", expects_continue=True))
ok("expect on http/1.0",
   b"POST /e HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
   "RFC 9110 §10.1.1: a server MUST ignore 100-continue from a 1.0 client",
   m(b"POST", b"/e", b"1.0", ((b"content-length", b"3"), (b"expect", b"100-continue")), b"abc"))
bad("expect unknown", EXPECT + b"teapot\r\n\r\nabc", 417,
    "RFC 9110 §10.1.1: a server MAY answer 417 to an expectation it cannot meet")
bad("expect 100-continue plus another", EXPECT + b"100-continue, x\r\n\r\nabc", 417,
    "RFC 9110 §10.1.1")

# ========================================================================================
# Persistence (RFC 9112 §9.3)
ok("connection close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
   "RFC 9112 §9.6: close ends the connection after this response",
   m(headers=(*H, (b"connection", b"close")), keep_alive=False))
ok("connection Close, other", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: TE, Close\r\n\r\n",
   "RFC 9110 §7.6.1: connection options are a case-insensitive list",
   m(headers=(*H, (b"connection", b"TE, Close")), keep_alive=False))
ok("keep-alive in 1.0", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
   "RFC 9112 §9.3: a 1.0 connection persists only when asked",
   m(version=b"1.0", headers=((b"connection", b"keep-alive"),), keep_alive=True))
ok("Keep-Alive in 1.0", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "RFC 9112 §9.3",
   m(version=b"1.0", headers=((b"connection", b"Keep-Alive"),), keep_alive=True))
ok("close in 1.0", b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", "RFC 9112 §9.3",
   m(version=b"1.0", headers=((b"connection", b"close"),), keep_alive=False))
ok("keep-alive and close", b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
   "RFC 9112 §9.3: close wins", m(version=b"1.0",
   headers=((b"connection", b"keep-alive, close"),), keep_alive=False))
ok("connection upgrade", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n",
   "RFC 9112 §9.3: 1.1 persists unless close", m(headers=(*H, (b"connection", b"Upgrade"))))

# ========================================================================================
# Limits (events.Limits; peers.md)
RL = b" HTTP/1.1\r\nHost: a\r\n\r\n"
ok("request line at 8190", b"GET /" + b"a" * (8190 - 14) + RL,
   "Limits.max_request_line: the limit itself is allowed", m(target=b"/" + b"a" * (8190 - 14)))
bad("request line over 8190", b"GET /" + b"a" * (8191 - 14) + RL, 414,
    "RFC 9112 §3: a server that receives a target longer than it will parse answers 414")
bad("endless request line", b"GET /" + b"a" * 9000, 414,
    "the 414 comes as soon as the limit is passed, not at the end of the line")
ok("field at 8190", b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 8187 + b"\r\n\r\n",
   "Limits.max_field_size: the limit itself is allowed", m(headers=(*H, (b"x", b"v" * 8187))))
bad("field over 8190", b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 8188 + b"\r\n\r\n", 431,
    "RFC 6585 §5: 431 for one field too large")
ok("100 fields", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 99 + b"\r\n",
   "Limits.max_header_count = 100, as gunicorn", m(headers=(*H, *[(b"x", b"1")] * 99)))
bad("101 fields", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 100 + b"\r\n", 431,
    "RFC 6585 §5: 431 for too many fields")
FILL = b"".join(b"X%d: " % i + b"a" * 8000 + b"\r\n" for i in range(4))  # 4 x 8006 bytes
ok("header section at 32 KiB", b"GET / HTTP/1.1\r\nHost: a\r\n" + FILL + b"Y: "
   + b"b" * (32768 - 9 - 4 * 8006 - 5) + b"\r\n\r\n",
   "Limits.max_header_bytes: the limit itself is allowed",
   m(headers=(*H, *[(b"x%d" % i, b"a" * 8000) for i in range(4)],
              (b"y", b"b" * (32768 - 9 - 4 * 8006 - 5)))))
bad("header section over 32 KiB", b"GET / HTTP/1.1\r\nHost: a\r\n" + FILL + b"Y: "
    + b"b" * (32769 - 9 - 4 * 8006 - 5) + b"\r\n\r\n", 431, "RFC 6585 §5: 431")
bad("endless header section", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 8000, 431,
    "a head that never ends is refused once it passes every limit")
SMALL = Limits(max_body=16)
ok("cl body at max_body", CL + b"16\r\n\r\n" + b"x" * 16, "Limits.max_body itself is allowed",
   cl_msg(b"16", b"x" * 16), limits=SMALL)
bad("cl body over max_body", CL + b"17\r\n\r\n" + b"x" * 17, 413,
    "RFC 9110 §15.5.14: 413 Content Too Large, before reading it", limits=SMALL)
ok("chunked body at max_body", POST_CHUNKED + b"8\r\nxxxxxxxx\r\n8\r\nxxxxxxxx\r\n0\r\n\r\n",
   "Limits.max_body counts de-chunked bytes", chunked(b"x" * 16), limits=SMALL)
bad("chunked body over max_body", POST_CHUNKED + b"8\r\nxxxxxxxx\r\n9\r\nxxxxxxxxx\r\n0\r\n\r\n",
    413, "RFC 9110 §15.5.14: a chunked body is counted as it comes",
    chunked(b"x" * 8, complete=False), limits=SMALL)

# ========================================================================================
# Pipelining (RFC 9112 §9.3.2)
ok("two pipelined gets", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §9.3.2: answered in order", m(target=b"/1"), m(target=b"/2"))
ok("pipelined post between gets",
   b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" + CL + b"5\r\n\r\nhello"
   + POST_CHUNKED + b"3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §9.3.2: bodies are framed, so the next request starts right after",
   m(target=b"/1"), cl_msg(b"5", b"hello"), chunked(b"abc"), m(target=b"/3"))
ok("crlf between pipelined requests",
   CL + b"2\r\n\r\nhi\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §2.2: the extra CRLF old clients sent after a POST body",
   cl_msg(b"2", b"hi"), m(target=b"/2"))
ok("1.0 keep-alive pipelined",
   b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
   "RFC 9112 §9.3: the second 1.0 request closes",
   m(target=b"/1", version=b"1.0", headers=((b"connection", b"keep-alive"),), keep_alive=True),
   m(target=b"/2", version=b"1.0", headers=()))
ok("close stops the pipeline",
   b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §9.6: a server MUST NOT process requests after the one that said close",
   m(target=b"/1", headers=(*H, (b"connection", b"close")), keep_alive=False))
bad("valid then malformed", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 400,
    "RFC 9112 §3.2: the second request lacks Host; the first was answered", m(target=b"/1"))
bad("valid then bare lf", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\nHost: a\n\n", 400,
    "waitress CVE-2019-16785 in a pipelined request", m(target=b"/1"))

# ========================================================================================
# End of input (RFC 9112 §8, §9.6)
ok("eof at once", b"", "RFC 9112 §9.6: a client may close without sending anything", eof=True)
ok("eof between requests", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
   "RFC 9112 §9.6: the close after a complete request is a ConnectionClosed", m(), eof=True)
ok("eof after an empty line", b"\r\n", "RFC 9112 §2.2: the empty line is ignored, then EOF",
   eof=True)
bad("eof in the request line", b"GET / HT", 400, "RFC 9112 §8: an incomplete message", eof=True)
bad("eof in the head", b"GET / HTTP/1.1\r\nHost: a\r\n", 400, "RFC 9112 §8", eof=True)
bad("eof after a lone cr", b"GET / HTTP/1.1\r\nHost: a\r\n\r", 400, "RFC 9112 §8", eof=True)
bad("eof in a cl body", CL + b"10\r\n\r\nhello", 400,
    "RFC 9112 §8: fewer bytes than Content-Length is an incomplete message",
    m(b"POST", b"/f", headers=(*H, (b"content-length", b"10")), body=b"hello", length=10,
      complete=False), eof=True)
bad("eof in chunk data", POST_CHUNKED + b"a\r\nhello", 400, "RFC 9112 §8",
    chunked(b"hello", complete=False), eof=True)
bad("eof before the last chunk", POST_CHUNKED + b"5\r\nhello\r\n", 400,
    "RFC 9112 §7.1: last-chunk is required", chunked(b"hello", complete=False), eof=True)
bad("eof before the final crlf", POST_CHUNKED + b"0\r\n", 400,
    "RFC 9112 §7.1: the trailer section ends with CRLF", chunked(b"", complete=False), eof=True)
bad("eof in the trailers", POST_CHUNKED + b"0\r\nX: 1\r\n", 400, "RFC 9112 §8",
    chunked(b"", complete=False), eof=True)
bad("eof in a pipelined request", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2", 400,
    "RFC 9112 §8: the first is answered, the second is incomplete", m(target=b"/1"), eof=True)
