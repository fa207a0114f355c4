"""Workload ``cpu``: CPU-bound requests.

Every user sends ``GET /cpu?n=N``: the application steps a 32-bit linear congruential
generator N times in pure Python and answers the result, which this file computes once
and checks. Nothing waits here, so more users cannot make it faster: the requests per
second stop at what the server's CPUs (and, for threads in one process, the GIL) allow,
and the response time grows with the queue. Compare with ``sleep``.

Settings:

* ``GATEWAYLAB_CPU_N``: steps per request (default 100000, about 10 ms of CPython;
  0 to 10000000).

Stats row: ``GET /cpu``.
"""

from __future__ import annotations

from locust import task

from loadtests.locustfiles._common import FamilyUser, cpu_request, env_int

CPU_N = env_int("GATEWAYLAB_CPU_N", 100000, 0, 10_000_000)
PATH, BODY = cpu_request(CPU_N)


class CpuUser(FamilyUser):
    @task
    def cpu(self) -> None:
        self.fetch("GET", PATH, "/cpu", BODY)
