"""The load a lesson runs: locust users that GET a list of paths as fast as they can.

This file is for ``locust -f`` only, run by :func:`lessons.load.run_load` in a process of
its own. Nothing else may import it: locust patches sockets and threads (gevent) the
moment it is imported, which would break the runner, pytest and a notebook kernel.

Configuration comes from the environment, because locust owns the command line:

* ``GATEWAYLAB_LOAD_PATHS``: paths to request, space-separated (default ``/``); each user
  requests them in turn, with no wait between requests (a closed loop: every user has
  one request in flight, which is how the course's load probes count concurrency).
* ``GATEWAYLAB_LOAD_FINAL_CSV``: where to write the final statistics when locust quits.
  locust's own ``--csv`` files are rewritten once a second, so the last second of a short
  run may be missing from them; this file is written after the last request.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

PATHS = os.environ.get("GATEWAYLAB_LOAD_PATHS", "/").split() or ["/"]
FINAL_CSV = os.environ.get("GATEWAYLAB_LOAD_FINAL_CSV", "")

_environment: list[Environment] = []


class Student(FastHttpUser):
    """One simulated client: keep-alive connection, one request at a time, no think time."""

    wait_time = constant(0)

    @task
    def visit(self) -> None:
        for path in PATHS:
            self.client.get(path)


def remember_environment(environment: Environment, **_: Any) -> None:
    _environment.append(environment)


def write_final_stats(**_: Any) -> None:
    if not FINAL_CSV or not _environment:
        return
    with open(FINAL_CSV, "w", newline="") as f:
        StatsCSV(_environment[0], PERCENTILES_TO_REPORT).requests_csv(csv.writer(f))


# Registered by call rather than as decorators: locust's add_listener is untyped; as a
# decorator it would erase the functions' types, as a call it needs only this ignore.
events.init.add_listener(remember_environment)  # type: ignore[no-untyped-call]
events.quit.add_listener(write_final_stats)  # type: ignore[no-untyped-call]
