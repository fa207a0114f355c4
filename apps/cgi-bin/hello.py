#!/usr/bin/env python3
"""GET /hello in Python: the same bytes as /hello (POSIX sh) and /hello.pl, as a CGI script.

It imports nothing but ``os`` and ``sys`` on purpose: timed against the sh and Perl
versions, it shows what starting an interpreter costs, which every CGI request pays. The
family's rules by hand: PATH_INFO (as in /hello.py/x) makes an unknown path, methods other
than GET and HEAD get a 405 with Allow, and HEAD gets the headers without the body
(RFC 3875 §4.3.3).
"""

import os
import sys

method = os.environ.get("REQUEST_METHOD", "GET")
status, body, allow = "200 OK", b"Hello, world!\n", ""
if os.environ.get("PATH_INFO"):
    status = "404 Not Found"
    body = (
        b"Not found: the family's routes are /hello, /echo, /env, /whoami, /sleep, /cpu,"
        b" /stream, /events, /upload, /page, /ws and /chat.\n"
    )
elif method not in ("GET", "HEAD"):
    status, allow = "405 Method Not Allowed", "GET, HEAD"
    body = f"Method not allowed: /hello accepts {allow}.\n".encode()

head = f"Status: {status}\nContent-Type: text/plain; charset=utf-8\nContent-Length: {len(body)}\n"
if allow:
    head += f"Allow: {allow}\n"
sys.stdout.buffer.write(head.encode() + b"\n" + (body if method != "HEAD" else b""))
