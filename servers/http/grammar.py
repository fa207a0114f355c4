"""The ABNF of RFC 9110 and RFC 9112 that the core enforces, written as regular expressions.

One rule per line, each with its RFC section, so that a student can hold the regex next
to the RFC and check it. Strictness is the point: every rule here is one that a lenient
server once relaxed and paid for with a request-smuggling advisory (bare LF: waitress
CVE-2019-16785; "+10" and "0x01" read by int(): waitress CVE-2022-24761; junk after a chunk
size: h11 CVE-2025-43859).

House rules:
* Patterns are matched with ``fullmatch`` on one line that has already been cut at CRLF,
  so no pattern needs anchors and none can run past its line.
* No pattern has two ways to match the same text (no nested quantifiers over the same
  characters), so matching time stays linear: a regex is never a denial-of-service vector.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2: token = 1*tchar
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`"
#           / "|" / "~" / DIGIT / ALPHA
TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TOKEN = TCHAR + rb"+"
token_re = re.compile(TOKEN)

# RFC 9110 §5.5: field-value = *field-content, made of VCHAR, SP, HTAB and obs-text
#   (%x80-FF). Anything else (NUL, CR, LF, the other controls, DEL) is forbidden: these
#   bytes, as the body of a character class, for every pattern below that needs them.
FORBIDDEN_IN_VALUE = rb"\x00-\x08\x0a-\x1f\x7f"

# RFC 9112 §3: request-line = method SP request-target SP HTTP-version
#   One SP exactly between the parts (§3 allows a server to be lenient here; we are not:
#   whitespace tricks are how two parsers end up disagreeing). The target is matched as
#   visible ASCII only (§3.2: no whitespace is allowed in a target), its form checked after.
#   HTTP-version = "HTTP" "/" DIGIT "." DIGIT  (RFC 9112 §2.3, case-sensitive)
request_line_re = re.compile(
    rb"(?P<method>" + TOKEN + rb") (?P<target>[\x21-\x7e]+) HTTP/(?P<major>[0-9])\.(?P<minor>[0-9])"
)

# RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
#   No whitespace between the name and the colon: §5.1 says a server MUST reject that
#   with 400, because a proxy that strips it and one that does not disagree on the name.
#   The value is everything after the colon; it is checked and trimmed separately.
field_line_re = re.compile(rb"(?P<name>" + TOKEN + rb"):(?P<value>.*)", re.DOTALL)

# The same grammar for a whole header section at once: every line a token, a colon, and a
#   value free of forbidden bytes, each ended by CRLF. Matching it in one call is the fast
#   path; when it fails, the lines are checked one by one to report the exact fault.
field_lines_re = re.compile(rb"(?:" + TOKEN + rb":[^" + FORBIDDEN_IN_VALUE + rb"]*\r\n)*")

# A whole request head in origin-form, request line and field lines, each ended by CRLF
#   (the final empty line excluded): the two rules above in one pass. It admits only
#   HTTP/1.x and a target starting with "/", the everyday request; anything else, and
#   everything it refuses, is left to the line-by-line rules for the exact error. Its four
#   groups are read in this order with one match.groups() (readers.py, _parse_fast).
head_re = re.compile(
    rb"(?P<method>" + TOKEN + rb") (?P<target>/[\x21-\x7e]*) HTTP/1\.(?P<minor>[0-9])\r\n"
    rb"(?P<fields>(?:" + TOKEN + rb":[^" + FORBIDDEN_IN_VALUE + rb"]*\r\n)*)"
)

# RFC 9110 §5.5 again: we find a forbidden byte with one search instead of matching the
#   whole grammar.
forbidden_in_value_re = re.compile(rb"[" + FORBIDDEN_IN_VALUE + rb"]")

# RFC 9110 §5.6.3: OWS = *( SP / HTAB ). Only these two bytes are whitespace in HTTP;
#   bytes.strip() would also strip \x0b, \x0c and \x1c-\x1f, so we never call it bare.
OWS = b" \t"

# RFC 9112 §6.3 step 5, RFC 9110 §8.6: Content-Length = 1*DIGIT. No sign, no "0x", no
#   spaces inside; int() would accept "+10", " 10" and "1_0", so we match first.
content_length_re = re.compile(rb"[0-9]+")

# RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
#   chunk-size = 1*HEXDIG
#   chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#   chunk-ext-val = token / quoted-string
#   We accept extensions (the RFC says a recipient MUST ignore unknown ones) but only in
#   their exact grammar: "5 ; junk\x00" or "5xyz" is an error, not a chunk of 5 bytes.
QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_EXT_VAL = rb"(?:" + TOKEN + rb"|" + QUOTED_STRING + rb")"
CHUNK_EXT = rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*" + CHUNK_EXT_VAL + rb")?)*"
chunk_line_re = re.compile(rb"(?P<size>[0-9A-Fa-f]+)" + CHUNK_EXT)

# A chunk size of more than 16 hex digits cannot be a real length (2**64); reading it
# would only let a client make us build a huge integer.
MAX_CHUNK_SIZE_DIGITS = 16

# RFC 9110 §7.2 and RFC 3986 §3.2.2: Host = uri-host [ ":" port ]. We check the characters
#   only (reg-name, IP-literal in brackets, port); the value is a name, not a place for
#   spaces, slashes or "@", which are how Host-header injection attacks look.
host_re = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%]*(?::[0-9]*)?|\[[0-9A-Fa-f:.]+\](?::[0-9]*)?")

# RFC 9110 §4.2.1 absolute-form prefix (RFC 9112 §3.2.2): scheme "://" authority ...
absolute_form_re = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://[^/?#]*(?:[/?].*)?")
