"""Workload ``mixed``: two probes at once, fast requests while slow ones run.

Beazley's experiment, on the family: some users send fast requests (``GET /hello``) while
the others keep slow ones running (``GET /sleep``, or ``GET /cpu`` to make them CPU-bound).
Read the *fast* row: its response time is the latency a quick request sees while the
server is busy with slow work, and its requests per second are what is left of the
server's throughput. An event loop keeps ``/hello`` fast while a thousand ``/sleep`` wait,
but one ``/cpu`` on the loop stalls every ``/hello`` behind it; a pool of threads does the
opposite trade. Two user classes, so the two probes have their own rows:

* ``GET /hello (fast)``: the latency probe;
* ``GET /sleep (slow)`` (or ``GET /cpu (slow)``): the load that the server must carry.

Settings:

* ``GATEWAYLAB_MIXED_SLOW``: ``sleep`` (default) or ``cpu``: what the slow users request;
* ``GATEWAYLAB_SLEEP_MS`` (default 1000) and ``GATEWAYLAB_CPU_N`` (default 100000): how
  slow, as in the ``sleep`` and ``cpu`` workloads;
* ``GATEWAYLAB_MIXED_SLOW_USERS``: how many of the users are slow (default 0, which means
  half of them, rounded down, by locust's weights; then the fast ones get the rest).
"""

from __future__ import annotations

import os

from locust import task

from loadtests.locustfiles._common import (
    FamilyUser,
    cpu_request,
    env_int,
    sleep_request,
)

HELLO_BODY = b"Hello, world!\n"
SLOW = os.environ.get("GATEWAYLAB_MIXED_SLOW", "sleep").strip() or "sleep"
if SLOW == "sleep":
    SLOW_PATH, SLOW_BODY = sleep_request(env_int("GATEWAYLAB_SLEEP_MS", 1000, 0, 60000))
elif SLOW == "cpu":
    SLOW_PATH, SLOW_BODY = cpu_request(env_int("GATEWAYLAB_CPU_N", 100000, 0, 10_000_000))
else:
    raise SystemExit(f"GATEWAYLAB_MIXED_SLOW={SLOW!r}: expected 'sleep' or 'cpu'")
SLOW_NAME = f"/{SLOW} (slow)"
SLOW_USERS = env_int("GATEWAYLAB_MIXED_SLOW_USERS", 0)


class MixedFastUser(FamilyUser):
    @task
    def hello(self) -> None:
        self.fetch("GET", "/hello", "/hello (fast)", HELLO_BODY)


class MixedSlowUser(FamilyUser):
    # locust shares users among classes by weight (equal here: half each); a class with a
    # fixed_count gets exactly that many, and the other classes share the rest.
    fixed_count = SLOW_USERS

    @task
    def slow(self) -> None:
        self.fetch("GET", SLOW_PATH, SLOW_NAME, SLOW_BODY)
