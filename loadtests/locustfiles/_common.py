"""What the family's locustfiles share: settings, the response check, the final statistics.

Each locustfile of this folder is one *workload* (``hello``, ``sleep``, ``cpu``, ``mixed``,
``stream``, ``upload``, ``websocket``) and runs against any era by host and port alone,
because the four eras serve the family's routes on the same paths (apps/README.md). They
are for ``locust -f`` only: locust patches sockets and threads for gevent the moment it is
imported, so nothing in the course imports these files; ``loadtests.locust_run`` starts
locust as a process of its own and reads back the CSV files it leaves.

Three things live here so that every workload does them the same way:

* **Settings from the environment.** locust owns the command line, so a workload is tuned
  by ``GATEWAYLAB_*`` variables, each documented at the top of the file that reads it.
  One applies to every workload:

  - ``GATEWAYLAB_LOAD_TIMEOUT``: seconds a request may take, connecting included, before
    it counts as a ``timeout`` failure (default 60, locust's own).

* **The check.** A load test that counts answers without reading them measures how fast a
  server can fail. Every request is made with ``catch_response=True`` and passes through
  :func:`check`: status 200 and, where the family's body is deterministic, exactly that
  body, or the request is a failure whose message names the kind (``http 503``,
  ``wrong body``); connection errors keep locust's own exception (refused, reset,
  timed out). ``loadtests.locust_run`` sorts failures into kinds by these words.

* **The final statistics.** locust rewrites its ``--csv`` files once a second, so the last
  second of a short run may be missing from them. When locust quits, :func:`write_final`
  writes, next to them (``GATEWAYLAB_LOAD_FINAL_PREFIX`` is the same prefix as ``--csv``):

  - ``PREFIX_final.csv``: one row per request name and an ``Aggregated`` row;
  - ``PREFIX_final_failures.csv``: Method, Name, Error, Occurrences (and when seen);
  - ``PREFIX_final_workers.csv``: in a distributed run, what each worker reported to the
    master (Worker, Request Count, Failure Count), so a class can see who sent what.

  A worker writes nothing: its statistics are sent to the master, which aggregates them.
"""

from __future__ import annotations

import csv
import os
import time
from collections import defaultdict
from typing import Any

import gevent  # type: ignore[import-untyped]  # gevent ships no type hints
import locust.stats
from locust import FastHttpUser, constant, events
from locust.contrib.fasthttp import LocustBadStatusCode, ResponseContextManager
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, Runner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

# locust writes its CSV files every 5 s by default; the showdown and the C10k demo read
# the per-second history while a run goes on to show progress, so write it every second.
locust.stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1

__all__ = [
    "FamilyUser",
    "check",
    "cpu_request",
    "env_float",
    "env_int",
    "sleep_request",
]


def env_int(name: str, default: int, low: int = 0, high: int | None = None) -> int:
    """An integer setting from the environment, or a clear error naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a whole number") from None
    if value < low or (high is not None and value > high):
        raise SystemExit(f"{name}={value}: expected {low} to {high if high is not None else '∞'}")
    return value


def env_float(name: str, default: float, low: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a number") from None
    if value < low:
        raise SystemExit(f"{name}={value}: expected at least {low}")
    return value


TIMEOUT = env_float("GATEWAYLAB_LOAD_TIMEOUT", 60.0, low=0.001)


# -- the family's deterministic answers (apps/README.md, "Route by route") ------------------
def sleep_request(ms: int) -> tuple[str, bytes]:
    """The path of ``/sleep`` for ``ms`` milliseconds, and the body every era answers."""
    return f"/sleep?ms={ms}", f"slept {ms} ms\n".encode()


def cpu_request(n: int) -> tuple[str, bytes]:
    """The path of ``/cpu`` for ``n`` steps, and its body: the family's 32-bit linear
    congruential generator stepped n times from zero, computed here once so that every
    answer can be checked against it."""
    x = 0
    for _ in range(n):
        x = (1664525 * x + 1013904223) & 0xFFFFFFFF
    return f"/cpu?n={n}", f"cpu n={n} result={x}\n".encode()


# -- the check every request goes through ----------------------------------------------------
def check(response: ResponseContextManager, expected: bytes | None) -> None:
    """Mark one response as a success or a failure, inside its ``with`` block.

    Three outcomes, in this order:

    1. no answer, or an answer cut short (refused, reset, timed out): locust already holds
       the exception; we leave it, so the failure keeps the exception's own words;
    2. a status other than 200: ``http NNN`` (a 503 from a server shedding load must not
       count as a served request);
    3. a body other than the family's (when it is deterministic): ``wrong body``, with the
       start of both, since a server that answers fast and wrong is not fast.
    """
    error = response.request_meta.get("exception")
    if error is not None and not isinstance(error, LocustBadStatusCode):
        return
    status = response.status_code
    if status != 200:
        response.failure(f"http {status}")  # type: ignore[no-untyped-call]
    elif expected is not None and response.content != expected:
        got = response.content or b""
        wrong = f"wrong body: expected {expected[:40]!r}, got {got[:40]!r}"
        response.failure(wrong)  # type: ignore[no-untyped-call]
    else:
        response.success()  # type: ignore[no-untyped-call]


class FamilyUser(FastHttpUser):
    """A client of the family: one keep-alive connection, one request at a time, and no
    think time (a closed loop: ``users`` is then exactly the number of requests in flight,
    which is how the course counts concurrency)."""

    abstract = True  # not a workload by itself: locust skips it
    wait_time = constant(0)
    network_timeout = TIMEOUT
    connection_timeout = TIMEOUT

    def fetch(
        self, method: str, path: str, name: str, expected: bytes | None, **kwargs: Any
    ) -> None:
        """One request under a stable ``name`` (one stats row however the query varies)."""
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as r:
            check(r, expected)


# -- the final statistics, written when locust quits -----------------------------------------
FINAL_PREFIX = os.environ.get("GATEWAYLAB_LOAD_FINAL_PREFIX", "")

_environment: list[Environment] = []
# Worker id -> [requests, failures], summed from the reports each worker sends the master
# about every 3 s (each report holds only what happened since the previous one).
_worker_totals: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
# Workers that have sent their last report of this test (see collect_final_reports).
_reported: set[str] = set()
FINAL_REPORT = "gatewaylab_final_report"  # master -> workers: stop, report, answer
FINAL_REPORT_SENT = "gatewaylab_final_report_sent"  # worker -> master: done


def on_init(environment: Environment, runner: Runner | None = None, **_: Any) -> None:
    _environment.append(environment)
    # locust arms its ``-t`` timer right after this event, on the event loop's clock. libev
    # reads the clock only when the loop turns, and it has not turned since locust began
    # importing the locustfiles: on a busy machine that is seconds ago, and a ``-t 2s`` run
    # would stop after a fraction of a second. Bring the clock up to date first.
    gevent.get_hub().loop.update_now()
    if isinstance(runner, WorkerRunner):
        runner.register_message(FINAL_REPORT, send_final_report)
    elif isinstance(runner, MasterRunner):
        runner.register_message(FINAL_REPORT_SENT, note_final_report)
        hooks = environment.events
        hooks.test_start.add_listener(forget_worker_totals)  # type: ignore[no-untyped-call]
        hooks.test_stopping.add_listener(collect_final_reports)  # type: ignore[no-untyped-call]


# -- distributed runs: no report left behind --------------------------------------------------
# A worker reports to the master every 3 s. When a headless run ends, locust's master sends
# "quit", waits half a second for the workers' last reports, and stops listening; a worker
# first stops its users (up to --stop-timeout for a request in flight) and only then
# reports, so on a busy machine the last seconds of every worker are lost, and a short run
# can end with nothing at all. So, as the test stops, the master asks each worker to stop
# its users and send its last report *now*, and waits until every worker says it has
# (messages from one worker arrive in order: its report before its answer).
def collect_final_reports(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    # A worker that stopped answering heartbeats cannot answer this either.
    workers = {client.id for client in runner.clients.all if client.state != STATE_MISSING}
    _reported.clear()
    runner.send_message(FINAL_REPORT)
    deadline = time.monotonic() + (environment.stop_timeout or 0) + 10
    while not workers <= _reported and time.monotonic() < deadline:
        gevent.sleep(0.05)


def send_final_report(environment: Environment, msg: Any, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        return
    runner.stop()  # the users finish their requests (within --stop-timeout) and stop
    runner._send_stats()  # what they did since the last report
    runner.send_message(FINAL_REPORT_SENT)


def note_final_report(environment: Environment, msg: Any, **_: Any) -> None:
    _reported.add(msg.node_id)


def forget_worker_totals(**_: Any) -> None:
    """A new test from the web UI starts from zero, as locust's own statistics do."""
    _worker_totals.clear()


def count_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    total = data.get("stats_total") or {}
    _worker_totals[client_id][0] += int(total.get("num_requests", 0))
    _worker_totals[client_id][1] += int(total.get("num_failures", 0))


def write_final(**_: Any) -> None:
    if not FINAL_PREFIX or not _environment:
        return
    environment = _environment[0]
    if isinstance(environment.runner, WorkerRunner):
        return  # the master holds the aggregate; a worker's own stats are only deltas
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with open(FINAL_PREFIX + "_final.csv", "w", newline="") as f:
        writer.requests_csv(csv.writer(f))
    with open(FINAL_PREFIX + "_final_failures.csv", "w", newline="") as f:
        writer.failures_csv(csv.writer(f))
    if _worker_totals:
        with open(FINAL_PREFIX + "_final_workers.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["Worker", "Request Count", "Failure Count"])
            for worker, (requests, failures) in sorted(_worker_totals.items()):
                out.writerow([worker, requests, failures])


# Registered by call rather than as decorators: locust's add_listener is untyped; as a
# decorator it would erase the functions' types, as a call it needs only this ignore.
# This module is imported once per process however many locustfiles import it, so each
# listener is registered once.
events.init.add_listener(on_init)  # type: ignore[no-untyped-call]
events.worker_report.add_listener(count_worker_report)  # type: ignore[no-untyped-call]
events.quit.add_listener(write_final)  # type: ignore[no-untyped-call]
