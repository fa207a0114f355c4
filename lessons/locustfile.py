"""The load a lesson runs: locust users that GET a list of paths as fast as they can.

This file is for ``locust -f`` only, run by :func:`lessons.load.run_load` (through
``loadtests.locust_run``) in a process of its own. Nothing else may import it: locust
patches sockets and threads (gevent) the moment it is imported, which would break the
runner, pytest and a notebook kernel.

Unlike the family's workloads in ``loadtests/locustfiles/``, which check every answer
against the family's bytes, this user requests whatever paths a lesson names, on any
server (the wire server of lesson 0 serves no family), and counts non-2xx answers and
broken connections as failures, which is locust's default.

Configuration comes from the environment, because locust owns the command line:

* ``GATEWAYLAB_LOAD_PATHS``: paths to request, space-separated (default ``/``); each user
  requests them in turn, with no wait between requests (a closed loop: every user has
  one request in flight, which is how the course's load probes count concurrency).
* ``GATEWAYLAB_LOAD_FINAL_PREFIX``: where the final statistics go when locust quits
  (set by ``loadtests.locust_run``; the listener is the workloads' own, in ``_common.py``).
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant, task

# For its listeners only: the final CSV files, written when locust quits, and the clock fix
# that keeps ``-t`` honest on a busy machine. The same module serves every workload.
from loadtests.locustfiles import _common  # noqa: F401

PATHS = os.environ.get("GATEWAYLAB_LOAD_PATHS", "/").split() or ["/"]


class Student(FastHttpUser):
    """One simulated client: keep-alive connection, one request at a time, no think time."""

    wait_time = constant(0)

    @task
    def visit(self) -> None:
        for path in PATHS:
            self.client.get(path)
