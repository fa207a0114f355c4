"""Workload ``stream``: responses sent a piece at a time.

Every user sends ``GET /stream?chunks=N&delay_ms=M`` and reads the whole answer: N lines
``chunk i of N``, M ms apart, framed with chunked transfer coding (the response has no
Content-Length). The response time is the time to the last line, about (N - 1) * M ms;
a server holds the connection (a process, a thread, or a task) for all that time, so like
``sleep`` this measures how many slow responses it can keep going at once, while the
body is checked byte for byte, which catches a server that frames chunks wrong.

Settings:

* ``GATEWAYLAB_STREAM_CHUNKS``: lines per response (default 5; 1 to 1000);
* ``GATEWAYLAB_STREAM_DELAY_MS``: ms between two lines (default 100; 0 to 10000).

Stats row: ``GET /stream``.
"""

from __future__ import annotations

from locust import task

from loadtests.locustfiles._common import FamilyUser, env_int

CHUNKS = env_int("GATEWAYLAB_STREAM_CHUNKS", 5, 1, 1000)
DELAY_MS = env_int("GATEWAYLAB_STREAM_DELAY_MS", 100, 0, 10000)
PATH = f"/stream?chunks={CHUNKS}&delay_ms={DELAY_MS}"
BODY = "".join(f"chunk {i} of {CHUNKS}\n" for i in range(1, CHUNKS + 1)).encode()


class StreamUser(FamilyUser):
    @task
    def stream(self) -> None:
        self.fetch("GET", PATH, "/stream", BODY)
