"""One era under one load: start the server, run locust against it, sample the server, stop all.

The showdown (``make showdown``), the C10k demo (``make c10k``) and ``make demo`` all ask
the same question many times: "this era, this workload, this many users: what did the
clients see, and what did the server spend?" This module answers it once, as
:func:`measure`, which returns a :class:`Measurement` (plain numbers, ready for JSON).

One measurement, step by step
-----------------------------
1. **A fresh server** for every measurement (``servers.launch.ServerProcess``, its own
   process group). Memory a Python process once took is rarely given back, so a server
   reused from the previous level would report that level's peak; and a server that a
   previous level pushed past its wall (a queue of dead connections, a thousand
   children being reaped) would handicap the next one.
2. **A sampler** (:mod:`loadtests.procstats`) reads the server's process group from
   /proc ten times a second: processes, threads, descriptors, memory, CPU.
3. **locust**, through ``loadtests.locust_run.run_locust`` (its own process, its own
   group), with a short **ramp** (users join at ``spawn_rate`` a second) and then the
   measured **steady part**. Throughput is computed from locust's per-second history
   over the steady part only: requests counted after the last user joined, divided by
   the time since. Latency percentiles are locust's for the whole run (the ramp is kept
   short beside the run, and the history's percentiles are rolling windows that cannot
   be combined). Failed requests count in the percentiles too: a quick 503 is quick.
4. **The server is stopped** (SIGTERM to the group, then SIGKILL), whatever happened.

The era settings
----------------
Each era runs with the limits it ships with, written out in :data:`ERA_OPTIONS` so that
they show in every report. They make the comparison fair in the way that matters for the
course: each of the three older eras admits **about 64 requests at once** and answers 503
past that (a designed wall, since each request in service costs a process or a thread),
while the ASGI era admits as many connections as its descriptors allow, because a waiting
request costs it a task, a few kilobytes:

* ``cgi --max-children 64``: 64 connection processes at once (each forks its scripts);
* ``fastcgi``: the gateway's 256 connection threads feed an application server with 32
  worker threads that admits 64 requests at once (FCGI_MAX_REQS); past it, OVERLOADED,
  which the gateway answers with 503;
* ``wsgi --threads 8 --backlog 64``: 8 worker threads, as ``make bench`` runs it, and 64
  complete requests waiting for one; past that, 503;
* ``asgi --max-connections 10240``: one event loop, 10,240 connections (10,000 users and
  room to spare); past it, 503.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servers.eras import era_named
from servers.launch import ServerProcess, our_server_argv

from .locust_run import LocustError, LocustRun, run_locust
from .procstats import GroupSampler, Sample, Usage

__all__ = [
    "ERA_OPTIONS",
    "Measurement",
    "Progress",
    "describe_machine",
    "link_latest",
    "measure",
    "raise_nofile",
    "ramp_for",
    "results_dir",
    "server_argv",
    "write_json",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

# Each era's limits, spelled out (see "The era settings" in the module docstring).
ERA_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "cgi": (("--max-children", "64"), "64 connection processes at once; past it, 503"),
    "fastcgi": ((), "app server: 32 threads, 64 requests admitted; past it, 503"),
    "wsgi": (("--threads", "8", "--backlog", "64"), "8 threads + 64 waiting; past it, 503"),
    "asgi": (("--max-connections", "10240"), "one event loop, 10,240 connections"),
}

# How fast users join: fast enough that the ramp is short beside the run, slow enough
# that one locust process can open the connections (10,000 users join in 10 s).
MAX_SPAWN_RATE = 1000.0


@dataclass
class Progress:
    """What a live display shows about the run in progress (updated from locust's history)."""

    era: str
    workload: str
    users: int
    total_seconds: float
    started: float = field(default_factory=time.monotonic)
    users_now: int = 0
    rps_now: float = 0.0
    requests: int = 0
    failures: int = 0
    sampler: GroupSampler | None = None
    # locust flushes its history file every 5 s (CSV_STATS_FLUSH_INTERVAL_SEC), so the
    # client's numbers above arrive in steps; the server's, sampled ten times a second,
    # are read fresh by every refresh of a live display:

    @property
    def server(self) -> Sample | None:
        return self.sampler.latest if self.sampler is not None else None

    @property
    def server_connections(self) -> int:
        """Descriptors the server holds above its idle count: about one per connection."""
        if self.sampler is None or not self.sampler.samples:
            return 0
        latest = self.sampler.latest
        return max(0, latest.fds - self.sampler.samples[0].fds) if latest else 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Measurement:
    """What one run saw (the clients) and cost (the server). Times in ms, memory in MiB."""

    era: str
    workload: str
    users: int
    seconds: float  # the steady part, after the ramp
    ramp_seconds: float
    status: str = "ok"  # "ok", "failing" (over the failure ratio), "error" (no run)
    requests: int = 0
    failures: int = 0
    rps: float = 0.0  # answers of any kind a second, over the steady part
    ok_rps: float = 0.0  # successful answers a second, over the steady part
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    by_name: dict[str, dict[str, float | None]] = field(default_factory=dict)
    peak_users: int = 0
    server_processes: int = 0
    server_threads: int = 0
    server_fds: int = 0
    server_peak_mib: float = 0.0
    server_idle_fds: int = 0  # at rest: the listener, logs, the interpreter's own
    server_idle_mib: float = 0.0
    server_cpu_seconds: float = 0.0  # over the steady part
    server_cpu_percent: float = 0.0  # 100 = one core, over the steady part
    server_exit: int | None = None  # set if the server died during the run
    server_pid: int = 0  # its process group id, too: gone when the measurement returns
    client_saturated: bool = False  # locust said its own CPU was above 90%
    # The machine's 1-minute load average as the run ended: above the number of CPUs,
    # other work competed with locust and the server, and latencies include its waits.
    machine_load: float = 0.0
    note: str = ""
    server_argv: list[str] = field(default_factory=list)
    locust_argv: list[str] = field(default_factory=list)

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def how_it_failed(self) -> str:
        """One line: the share of failures and their kinds, most frequent first."""
        parts = []
        if self.server_exit is not None:
            parts.append(f"the server exited (status {self.server_exit})")
        if self.note and self.status == "error":
            parts.append(self.note)
        if self.failures:
            kinds = sorted(self.failures_by_kind.items(), key=lambda kv: -kv[1])
            listed = ", ".join(f"{kind} x{count:,}" for kind, count in kinds)
            parts.append(f"{self.failure_ratio:.0%} failed ({listed})")
        return "; ".join(parts) or "no failures"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failure_ratio"] = round(self.failure_ratio, 4)
        data["how_it_failed"] = self.how_it_failed()
        return data


def raise_nofile() -> tuple[int, int]:
    """Raise our soft RLIMIT_NOFILE to the hard limit; servers we start inherit it.

    Every connection is a descriptor on both sides. Returns (soft, hard) after the change."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def ramp_for(users: int) -> tuple[float, float]:
    """(spawn rate, ramp seconds) for ``users``: at least a second, at most MAX_SPAWN_RATE/s."""
    ramp = max(1.0, users / MAX_SPAWN_RATE)
    return users / ramp, ramp


def _num(value: float) -> float | None:
    """locust writes "N/A" or nothing where no request was made: None, not NaN (JSON)."""
    return None if value is None or math.isnan(value) else round(value, 2)


def _steady_start(run: LocustRun, users: int) -> float | None:
    """Unix time of the first history row with every user running (the ramp's end)."""
    for row in run.history:
        if float(row.get("User Count", 0) or 0) >= users:
            return float(row["Timestamp"])
    return None


def _steady_rates(run: LocustRun, users: int) -> tuple[float, float, float] | None:
    """(requests/s, failures/s, seconds) over the history rows after the last user joined,
    from the cumulative counters of locust's history; None if too few such rows."""
    steady = [row for row in run.history if float(row.get("User Count", 0) or 0) >= users]
    if len(steady) < 2:
        return None
    first, last = steady[0], steady[-1]
    seconds = float(last["Timestamp"]) - float(first["Timestamp"])
    if seconds <= 0:
        return None
    requests = float(last["Total Request Count"]) - float(first["Total Request Count"])
    failures = float(last["Total Failure Count"]) - float(first["Total Failure Count"])
    return requests / seconds, failures / seconds, seconds


def server_argv(era: str, *extra: str) -> list[str]:
    return our_server_argv(era, *ERA_OPTIONS.get(era, ((), ""))[0], *extra)


def measure(
    era: str,
    workload: str,
    users: int,
    seconds: float,
    *,
    env: Mapping[str, str] | None = None,
    spawn_rate: float | None = None,
    extra_server_args: tuple[str, ...] = (),
    sample_interval: float = 0.1,
    on_progress: Callable[[Progress], None] | None = None,
    csv_dir: Path | None = None,
    failing_ratio: float = 0.5,
    processes: int | None = None,
) -> Measurement:
    """Start ``era``, run ``workload`` with ``users`` for a ramp and ``seconds`` more, stop it.

    Never raises for a server that fails under load (that is a result: ``status``,
    ``failures_by_kind``, ``server_exit``); raises only for a server that does not start
    (``ServerStartError``) and for Ctrl-C, after stopping everything."""
    era_named(era)  # a clear KeyError for a typo
    if spawn_rate is None:
        spawn_rate, ramp = ramp_for(users)
    else:
        ramp = users / spawn_rate
    total = ramp + seconds
    argv = server_argv(era, *extra_server_args)
    result = Measurement(era, workload, users, seconds, round(ramp, 2), server_argv=argv)
    progress = Progress(era, workload, users, total)
    with ServerProcess(argv, name=era) as server:
        result.server_pid = server.pid

        def on_history(row: Mapping[str, Any]) -> None:
            if not progress.requests and not progress.users_now:
                progress.started = time.monotonic()  # locust is up: count from here
            progress.users_now = int(float(row.get("User Count", 0) or 0))
            progress.rps_now = float(row.get("Requests/s", 0) or 0)
            progress.requests = int(float(row.get("Total Request Count", 0) or 0))
            progress.failures = int(float(row.get("Total Failure Count", 0) or 0))
            if on_progress is not None:
                on_progress(progress)

        with GroupSampler(server.pid, interval=sample_interval) as sampler:
            progress.sampler = sampler
            if on_progress is not None:
                on_progress(progress)
            run: LocustRun | None = None
            try:
                run = run_locust(
                    workload,
                    server.url,
                    users=users,
                    seconds=total,
                    spawn_rate=spawn_rate,
                    env=dict(env or {}),
                    timeout=total + 60 + users / 200,
                    on_history=on_history,
                    csv_dir=csv_dir,
                    processes=processes,
                )
            except LocustError as error:
                run = None
                result.status = "error"
                result.note = str(error).splitlines()[0] if str(error) else "locust failed"
        if server.proc is not None and server.proc.poll() is not None:
            result.server_exit = server.proc.returncode
    result.machine_load = round(os.getloadavg()[0], 1)
    whole: Usage = sampler.usage()
    steady = whole
    if run is not None and (start := _steady_start(run, users)) is not None:
        # locust stamps its history in Unix seconds, the sampler in monotonic ones.
        window = sampler.usage(since=start - (time.time() - time.monotonic()))
        if window.samples >= 2 and window.seconds >= 1:
            steady = window
    result.server_processes = whole.peak_processes
    result.server_threads = whole.peak_threads
    result.server_fds = whole.peak_fds
    result.server_peak_mib = round(whole.peak_rss_mib, 1)
    if sampler.samples:
        # The fewest descriptors seen: the server at rest, before the first user or after
        # the last (the first sample may still hold the readiness probe's connection).
        result.server_idle_fds = min(s.fds for s in sampler.samples)
        result.server_idle_mib = round(sampler.samples[0].rss_kib / 1024, 1)
    result.server_cpu_seconds = round(steady.cpu_seconds, 2)
    result.server_cpu_percent = round(steady.cpu_percent, 1)
    if run is None:
        return result
    _fill_from_run(result, run, failing_ratio)
    return result


def _fill_from_run(result: Measurement, run: LocustRun, failing_ratio: float) -> None:
    result.locust_argv = list(run.argv)
    result.requests = run.requests
    result.failures = run.failure_count
    result.failures_by_kind = dict(run.failures_by_kind())
    result.p50 = _num(run.percentile("50%"))
    result.p95 = _num(run.percentile("95%"))
    result.p99 = _num(run.percentile("99%"))
    result.peak_users = max(
        (int(float(row.get("User Count", 0) or 0)) for row in run.history), default=0
    )
    rates = _steady_rates(run, result.users)
    if rates is not None:
        rps, fps, _ = rates
    else:  # a run too short for two steady rows: the whole run's rate
        rps = run.rps
        fps = run.rps * result.failure_ratio
    result.rps = round(rps, 1)
    result.ok_rps = round(max(0.0, rps - fps), 1)
    for row in run.rows:
        name = str(row.get("Name", ""))
        if name and name != "Aggregated":
            result.by_name[name] = {
                "requests": float(row.get("Request Count", 0) or 0),
                "failures": float(row.get("Failure Count", 0) or 0),
                "p50": _num(run.percentile("50%", name)),
                "p99": _num(run.percentile("99%", name)),
                "rps": _num(float(row.get("Requests/s", 0) or 0)),
            }
    result.client_saturated = "CPU usage above" in run.output
    if result.server_exit is not None or (result.requests and result.failure_ratio > failing_ratio):
        result.status = "failing"
    elif result.requests == 0:
        result.status = "error"
        result.note = "no request completed"


def results_dir(kind: str, out: str | None = None) -> Path:
    """``results/KIND-YYYYmmdd-HHMMSS`` (or ``out``), created. :func:`link_latest` points
    ``results/KIND-latest`` at it once the results are written."""
    folder = Path(out) if out else REPO_ROOT / "results" / time.strftime(f"{kind}-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def link_latest(folder: Path, kind: str) -> Path | None:
    """Point ``<parent>/KIND-latest`` at ``folder``: a relative symlink, replaced
    atomically. Returns the link, or None where a symlink cannot be made."""
    latest = folder.parent / f"{kind}-latest"
    if latest.resolve() == folder.resolve():
        return None
    temporary = folder.parent / f".{kind}-latest.{os.getpid()}"
    try:
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        temporary.symlink_to(folder.name)
        os.replace(temporary, latest)  # atomic: a reader never sees no link at all
    except OSError:
        return None
    return latest


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def describe_machine() -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "nofile": [soft, hard],
    }
