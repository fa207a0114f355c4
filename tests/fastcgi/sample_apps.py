"""Small applications for the FastCGI tests: responders and WSGI apps that misbehave on
purpose, and a Flask app served unmodified through the WSGI host."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import BinaryIO
from wsgiref.types import StartResponse, WSGIEnvironment

from flask import Flask, Response, request, stream_with_context


def crash(params: dict[str, bytes], stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Fails before writing anything: the server must answer 500 for it."""
    raise RuntimeError("a secret that must not reach the client")


def exit_seven(params: dict[str, bytes], stdin: BinaryIO, stdout: BinaryIO) -> int:
    """A CGI program that exits 7 after a good answer: appStatus 7 in END_REQUEST."""
    stdout.write(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nbye\n")
    return 7


def garbage(params: dict[str, bytes], stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Not a CGI response at all: the gateway must answer 502."""
    stdout.write(b"this is not a header line\r\n\r\nbody")
    return 0


def slow_then_hello(params: dict[str, bytes], stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Waits SLEEP seconds (from the query string), then answers."""
    time.sleep(float(params.get("QUERY_STRING", b"0") or b"0"))
    stdout.write(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nawake\n")
    return 0


def wsgi_with_errors(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Writes to wsgi.errors, which FastCGI carries as STDERR records."""
    environ["wsgi.errors"].write("a line for the web server's log\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fine\n"]


flask_app = Flask(__name__)


@flask_app.get("/greet/<name>")
def greet(name: str) -> dict[str, object]:
    return {"hello": name, "query": request.args.get("q"), "script_root": request.script_root}


@flask_app.post("/form")
def form() -> str:
    a, b = int(request.form["a"]), int(request.form["b"])
    return f"{a}+{b}={a + b}\n"


@flask_app.get("/lines")
def lines() -> Response:
    def generate() -> Iterable[str]:
        for i in range(3):
            yield f"line {i}\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")
