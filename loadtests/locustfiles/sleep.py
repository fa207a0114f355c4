"""Workload ``sleep``: requests that wait on I/O, the concurrency probe.

Every user sends ``GET /sleep?ms=N``: the application waits N milliseconds without using
the CPU, then answers ``slept N ms``. A server that serves U such requests at once answers
each in about N ms, whatever U is; a server that serves only K at a time makes the others
queue, and the response time climbs in steps of N ms as U passes K. So with N = 1000 and
U users, the requests per second read off how many requests the server holds at once:
about U while it keeps up, and stuck at K (threads in a pool, processes) when it does not.

Settings:

* ``GATEWAYLAB_SLEEP_MS``: how long each request waits, in ms (default 1000; 0 to 60000).

Stats row: ``GET /sleep`` (one row whatever N is).
"""

from __future__ import annotations

from locust import task

from loadtests.locustfiles._common import FamilyUser, env_int, sleep_request

SLEEP_MS = env_int("GATEWAYLAB_SLEEP_MS", 1000, 0, 60000)
PATH, BODY = sleep_request(SLEEP_MS)


class SleepUser(FamilyUser):
    @task
    def sleep(self) -> None:
        self.fetch("GET", PATH, "/sleep", BODY)
