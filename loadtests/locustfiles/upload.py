"""Workload ``upload``: request bodies.

Every user POSTs the same body of B bytes to ``/upload``, which reads it in pieces of at
most 64 KiB, hashes it, and answers ``{"bytes":B,"sha256":"…"}``; this file computes the
expected answer once and checks it. It measures how a server moves a request body to the
application: through a pipe to a CGI script, in FastCGI ``STDIN`` records, as
``wsgi.input``, or as ``http.request`` messages, with the flow control each one has.

Settings:

* ``GATEWAYLAB_UPLOAD_BYTES``: the body's size (default 1048576, 1 MiB, nginx's default
  ``client_max_body_size``; 0 to 1073741824). The body is built once, in memory, so
  every user sends the same bytes and the client spends no time making them.

Stats row: ``POST /upload``.
"""

from __future__ import annotations

import hashlib
import json

from locust import task

from loadtests.locustfiles._common import FamilyUser, env_int

SIZE = env_int("GATEWAYLAB_UPLOAD_BYTES", 1 << 20, 0, 1 << 30)
# A repeating pattern, not zeros: a server or proxy that compressed or skipped zero pages
# would otherwise look faster than it is, and a lost or repeated piece changes the hash.
_PATTERN = bytes(range(256)) * 4 + b"gatewaylab upload\n"
PAYLOAD = (_PATTERN * (SIZE // len(_PATTERN) + 1))[:SIZE]
# The family's JSON (rule 7): keys sorted, no spaces, one newline.
BODY = (
    json.dumps(
        {"bytes": SIZE, "sha256": hashlib.sha256(PAYLOAD).hexdigest()},
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\n"
).encode()
HEADERS = {"Content-Type": "application/octet-stream"}


class UploadUser(FamilyUser):
    @task
    def upload(self) -> None:
        self.fetch("POST", "/upload", "/upload", BODY, data=PAYLOAD, headers=HEADERS)
