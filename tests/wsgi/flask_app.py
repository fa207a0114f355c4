"""An ordinary Flask app, nothing in it written for our server: ``tests.wsgi.flask_app:app``.

Flask's own documentation says it is not a server: ``flask run`` hosts the app on
Werkzeug's development server, and production hosts it on gunicorn, waitress or mod_wsgi.
That is the promise of PEP 3333 this app tests from the other side: if our server keeps
the contract, a framework that has never heard of it runs unchanged, with the parts of
the contract frameworks lean on hardest: a JSON body, a multipart upload (wsgi.input read
by Werkzeug's form parser), a streamed response that still sees its request
(``stream_with_context``), and ``send_file`` (wsgi.file_wrapper, with ranges).

``validated`` is the same app under ``wsgiref.validate.validator``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from wsgiref.validate import WSGIWarning, validator

from flask import Flask, Response, jsonify, request, send_file, stream_with_context

warnings.simplefilter("error", WSGIWarning)

app = Flask(__name__)
SERVED_FILE = Path(__file__)  # send_file serves this very module


@app.get("/json")
def json_get() -> Response:
    return jsonify(path=request.path, args=request.args, method=request.method)


@app.post("/json")
def json_post() -> Response:
    return jsonify(received=request.get_json(), length=request.content_length)


@app.post("/upload")
def upload() -> Response:
    sent = request.files["file"]
    content = sent.read()
    return jsonify(
        name=sent.filename,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        note=request.form.get("note"),
    )


@app.get("/stream")
def stream() -> Response:
    count = request.args.get("n", 3, type=int)

    def lines() -> Iterator[str]:
        # Runs after the view has returned, while the server iterates the response;
        # stream_with_context keeps the request available in here.
        for number in range(1, count + 1):
            yield f"line {number} of {count} for {request.path}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/file")
def file() -> Response:
    return send_file(SERVED_FILE, mimetype="text/x-python")


@app.get("/fail")
def fail() -> Response:
    raise RuntimeError("a bug in a Flask view")


validated = validator(app)
