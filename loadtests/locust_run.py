"""Run one of the family's locust workloads in a process of its own, and read back what it saw.

This is the one way the course runs locust: the lessons (``lessons.load``), the notebooks,
the tests and the showdown all come through :func:`run_locust`. locust must never be
imported into those processes: it patches sockets and threads for gevent the moment it is
imported, which would break the lesson runner, pytest and a notebook kernel. So
:func:`run_locust` builds a command line (:func:`locust_argv`)::

    python -m locust -f loadtests/locustfiles/hello.py --headless -u USERS -r RATE
                     -t SECONDS --host URL --csv PREFIX --only-summary --stop-timeout 2

starts it in a new session (its own process group, stopped as a whole if anything goes
wrong in the caller, Ctrl-C included), waits, and reads the CSV files it leaves:

* ``PREFIX_final.csv`` (written by the workloads' ``_common.py`` when locust quits, after
  the last request; locust's own ``PREFIX_stats.csv`` is the fallback): one row per request
  name and an ``Aggregated`` row: counts, failures, response times in ms, requests/s and
  the percentiles 50% … 100%;
* ``PREFIX_final_failures.csv`` (fallback ``PREFIX_failures.csv``): one row per request
  name and error, with its number of occurrences;
* ``PREFIX_stats_history.csv``: one aggregated row per second, for plots over time; it
  is also polled while locust runs, so that a caller can show progress (``on_history``);
* ``PREFIX_final_workers.csv``: in a distributed run, what each worker sent.

Rows are plain dicts of str -> str | float with the numbers converted, so that a notebook
can plot them with matplotlib and no pandas.

A *workload* is a name from :data:`WORKLOADS`, several names joined by commas (locust then
runs all their user classes in one process, users shared among them), or the path of any
locustfile (the lessons' own).

Two limits are raised for the child, not for us: the soft limit on open descriptors goes
up to the hard one (every user holds a connection, and locust wants thousands), and with
``processes=N`` locust forks N workers under a master that listens on a free loopback
port, not on locust's default of every interface.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servers.launch import REPO_ROOT, free_port, signals_deferred

__all__ = [
    "PERCENTILES",
    "REQUEST_NAMES",
    "WORKLOADS",
    "LocustError",
    "LocustRun",
    "classify_failure",
    "locust_argv",
    "locustfile",
    "raise_nofile_limit",
    "read_csv",
    "read_run",
    "run_locust",
]

LOCUSTFILES = Path(__file__).resolve().with_name("locustfiles")
WORKLOADS: tuple[str, ...] = ("hello", "sleep", "cpu", "mixed", "stream", "upload", "websocket")
# The stats rows each workload produces, with its default settings ("Aggregated" aside).
REQUEST_NAMES: dict[str, tuple[str, ...]] = {
    "hello": ("/hello",),
    "sleep": ("/sleep",),
    "cpu": ("/cpu",),
    "mixed": ("/hello (fast)", "/sleep (slow)"),  # "/cpu (slow)" with GATEWAYLAB_MIXED_SLOW=cpu
    "stream": ("/stream",),
    "upload": ("/upload",),
    "websocket": ("/ws connect", "/ws"),
}
# The percentiles locust reports, as its CSV names the columns.
PERCENTILES = ("50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%")
# How often the history CSV is read while locust runs (locust appends a row each second).
POLL_INTERVAL = 0.5
# locust needs a few seconds to import, spawn and stop; the default timeout allows that.
STARTUP_ALLOWANCE = 60.0

Row = dict[str, str | float]


class LocustError(RuntimeError):
    """locust did not run, or left no statistics; the message carries the end of its output."""


def locustfile(workload: str) -> Path:
    """The locustfile of one workload: ``locustfile("hello")`` -> ``.../locustfiles/hello.py``."""
    if workload not in WORKLOADS:
        raise ValueError(f"no workload {workload!r}; the workloads are {', '.join(WORKLOADS)}")
    return LOCUSTFILES / f"{workload}.py"


def _locustfiles(workload: str | Path) -> list[Path]:
    if isinstance(workload, Path):
        return [workload]
    return [locustfile(name.strip()) for name in workload.split(",") if name.strip()]


def _workload_name(workload: str | Path) -> str:
    return workload.stem if isinstance(workload, Path) else workload


# -- reading what locust wrote ---------------------------------------------------------------
def _convert(value: str | None) -> str | float:
    if value is None:
        return ""
    try:
        return float(value)
    except ValueError:
        return value  # names, errors, "N/A"


def _rows(text: str) -> list[Row]:
    return [{k: _convert(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def read_csv(path: Path) -> list[Row]:
    """A locust CSV as rows, numbers converted; [] if the file is missing."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return _rows(f.read())


def _aggregated_history(rows: list[Row]) -> list[Row]:
    # The rows before the first user was spawned hold nothing worth plotting.
    return [
        row
        for row in rows
        if row.get("Name") == "Aggregated" and float(row.get("User Count", 0) or 0) > 0
    ]


@dataclass
class LocustRun:
    """What one locust run measured. ``rows``: one per request name, then ``Aggregated``."""

    workload: str
    host: str
    users: int
    seconds: float
    argv: list[str]
    rows: list[Row] = field(default_factory=list)
    history: list[Row] = field(default_factory=list)
    failures: list[Row] = field(default_factory=list)
    output: str = ""
    exit_code: int = 0
    # In a distributed run: one row per worker (Worker, Request Count, Failure Count).
    workers: list[Row] = field(default_factory=list)

    def row(self, name: str = "Aggregated") -> Row:
        """The stats row of one request name (``"/hello"``), or ``{}``."""
        for row in self.rows:
            if row.get("Name") == name:
                return row
        return {}

    @property
    def total(self) -> Row:
        """The ``Aggregated`` row (all requests together)."""
        return self.row("Aggregated")

    @property
    def requests(self) -> int:
        return int(self.total.get("Request Count", 0) or 0)

    @property
    def failure_count(self) -> int:
        return int(self.total.get("Failure Count", 0) or 0)

    @property
    def rps(self) -> float:
        return float(self.total.get("Requests/s", 0.0) or 0.0)

    def percentile(self, p: str = "99%", name: str = "Aggregated") -> float:
        """Response time in ms at percentile ``p`` ("50%" … "100%") of one row; NaN when the
        row is missing or had no requests (locust writes "N/A")."""
        if p not in PERCENTILES:
            raise ValueError(f"locust reports the percentiles {', '.join(PERCENTILES)}, not {p!r}")
        value = self.row(name).get(p)
        return value if isinstance(value, float) else math.nan

    def failures_by_kind(self) -> dict[str, int]:
        """Failures counted by kind: "refused", "reset", "timeout", "http 503" (each 5xx with
        its code), "http 4xx", "wrong body", "other" (see :func:`classify_failure`)."""
        kinds: dict[str, int] = {}
        for failure in self.failures:
            kind = classify_failure(str(failure.get("Error", "")))
            kinds[kind] = kinds.get(kind, 0) + int(failure.get("Occurrences", 0) or 0)
        return kinds


# A status in the workloads' words ("http 503"), or in locust's ("503 Server Error").
_HTTP_STATUS = re.compile(r"\bhttp (\d{3})\b|\b(\d{3}) (?:client|server) error\b", re.IGNORECASE)


def classify_failure(error: str) -> str:
    """One failure message as a kind. The words come from the workloads (``_common.check``:
    ``http NNN``, ``wrong body``) and from the exceptions Python and gevent raise when a
    connection fails: ECONNREFUSED, ECONNRESET (or a peer that closed mid-answer), and the
    timeouts of connect and read."""
    text = error.lower()
    if "wrong body" in text:
        return "wrong body"
    if m := _HTTP_STATUS.search(text):
        code = m.group(1) or m.group(2)
        return f"http {code}" if code.startswith("5") else "http 4xx" if code[0] == "4" else "other"
    if "refused" in text or "errno 111" in text:
        return "refused"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if any(
        word in text
        for word in (
            "reset",
            "broken pipe",
            "connection closed",
            "connectionclosed",
            "remote end closed",
            "remotedisconnected",
            "connection aborted",
            "unexpected eof",
            "incomplete",
        )
    ):
        return "reset"
    return "other"


def read_run(
    prefix: str,
    *,
    workload: str = "",
    host: str = "",
    users: int = 0,
    seconds: float = 0.0,
    argv: Sequence[str] = (),
    output: str = "",
    exit_code: int = 0,
) -> LocustRun:
    """A :class:`LocustRun` from the files a run left under ``prefix`` (``--csv PREFIX``);
    :class:`LocustError` if there are no statistics."""
    rows = read_csv(Path(prefix + "_final.csv")) or read_csv(Path(prefix + "_stats.csv"))
    if not rows:
        tail = "\n".join(output.splitlines()[-15:])
        raise LocustError(f"locust exited with status {exit_code} and no statistics:\n{tail}")
    failures = read_csv(Path(prefix + "_final_failures.csv"))
    if not Path(prefix + "_final_failures.csv").exists():
        failures = read_csv(Path(prefix + "_failures.csv"))
    return LocustRun(
        workload=workload,
        host=host,
        users=users,
        seconds=seconds,
        argv=list(argv),
        rows=rows,
        history=_aggregated_history(read_csv(Path(prefix + "_stats_history.csv"))),
        failures=failures,
        output=output,
        exit_code=exit_code,
        workers=read_csv(Path(prefix + "_final_workers.csv")),
    )


# -- starting locust --------------------------------------------------------------------------
def locust_argv(
    workload: str | Path,
    host: str,
    *,
    users: int,
    seconds: float,
    spawn_rate: float | None = None,
    csv_prefix: str | None = None,
    processes: int | None = None,
    master_port: int | None = None,
) -> list[str]:
    """The command line of a headless run (also shown by lessons and notebooks).

    ``seconds`` is rounded to whole seconds (locust's ``-t`` takes no fractions). With
    ``processes``, the forked workers talk to their master on ``master_port`` on the
    loopback interface."""
    argv = [
        sys.executable, "-m", "locust",
        "-f", ",".join(str(path) for path in _locustfiles(workload)),
        "--headless",
        "-u", str(users),
        "-r", f"{spawn_rate or users:g}",
        "-t", f"{max(1, round(seconds))}s",
        "--host", host.rstrip("/"),
    ]  # fmt: skip
    if csv_prefix is not None:
        argv += ["--csv", csv_prefix]
    argv += ["--only-summary", "--stop-timeout", "2"]
    if processes:
        port = str(master_port or 5557)
        argv += [
            "--processes", str(processes),
            # locust's master listens on every interface by default; ours stays local.
            "--master-bind-host", "127.0.0.1",
            "--master-bind-port", port,
            "--master-port", port,
        ]  # fmt: skip
    return argv


def raise_nofile_limit() -> None:
    """Raise the soft limit on open descriptors to the hard one (run in the child between
    fork and exec). Each locust user holds a connection; the usual soft limit of 1024 would
    cap a C10k run long before the server does."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def child_env(extra: Mapping[str, str] | None, prefix: str | None) -> dict[str, str]:
    """The environment of a locust child: ours, the caller's settings, our packages on the
    path (the workloads import ``loadtests.locustfiles._common``), and the final prefix."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if prefix is not None:
        env["GATEWAYLAB_LOAD_FINAL_PREFIX"] = prefix
    return env


def run_locust(
    workload: str | Path,
    host: str,
    *,
    users: int,
    seconds: float,
    spawn_rate: float | None = None,
    env: Mapping[str, str] | None = None,
    processes: int | None = None,
    timeout: float | None = None,
    on_history: Callable[[Row], None] | None = None,
    csv_dir: Path | None = None,
) -> LocustRun:
    """Run ``workload`` headless against ``host`` (``http://127.0.0.1:8000``) for ``seconds``
    with ``users`` users, and return its statistics.

    ``env`` adds settings for the workload (``{"GATEWAYLAB_SLEEP_MS": "200"}``).
    ``on_history`` is called in this thread with each new per-second ``Aggregated`` row
    while locust runs. ``csv_dir`` keeps locust's files there (default: a temporary
    directory, removed afterwards). ``timeout`` (default ``seconds`` + 60) bounds the whole
    run; past it locust is stopped and :class:`LocustError` raised.

    Failed requests do not raise: they are in ``rows`` and ``failures``, which is the
    lesson. :class:`LocustError` means locust itself did not run (a broken locustfile, no
    locust) or left no statistics.
    """
    with contextlib.ExitStack() as stack:
        if csv_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="gatewaylab-locust-")
            directory = Path(stack.enter_context(temporary))
        else:
            directory = Path(csv_dir)
            directory.mkdir(parents=True, exist_ok=True)
        name = _workload_name(workload)
        prefix = str(directory / re.sub(r"[^A-Za-z0-9_.-]", "_", name))
        argv = locust_argv(
            workload,
            host,
            users=users,
            seconds=seconds,
            spawn_rate=spawn_rate,
            csv_prefix=prefix,
            processes=processes,
            master_port=free_port() if processes else None,
        )
        out = stack.enter_context(open(prefix + "_output.txt", "w+b"))
        with signals_deferred():  # a Ctrl-C inside Popen would orphan the child
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(env, prefix),
                cwd=directory,
                start_new_session=True,  # its own group: stopped whole if we are interrupted
                preexec_fn=raise_nofile_limit,
            )
        try:
            code = _wait(proc, prefix, seconds + STARTUP_ALLOWANCE if timeout is None else timeout,
                         on_history)  # fmt: skip
        except BaseException:
            stop_group(proc)
            raise
        # Workers forked by --processes are reaped by their master; should one be left over
        # all the same, it goes now: a run leaves nothing behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
        if code is None:
            tail = "\n".join(output.splitlines()[-15:])
            raise LocustError(f"locust did not finish within its timeout; stopped it:\n{tail}")
        return read_run(
            prefix,
            workload=name,
            host=host,
            users=users,
            seconds=seconds,
            argv=argv,
            output=output,
            exit_code=code,
        )
    raise AssertionError("unreachable")  # mypy: ExitStack might swallow exceptions


def _wait(
    proc: subprocess.Popen[bytes],
    prefix: str,
    timeout: float,
    on_history: Callable[[Row], None] | None,
) -> int | None:
    """Wait for locust, feeding ``on_history``; its exit status, or None if stopped at the
    deadline."""
    deadline = time.monotonic() + timeout
    history = _HistoryTail(Path(prefix + "_stats_history.csv"))
    while True:
        try:
            code = proc.wait(timeout=POLL_INTERVAL)
        except subprocess.TimeoutExpired:
            code = None
        if on_history is not None:
            for row in history.new_rows():
                on_history(row)
        if code is not None:
            return code
        if time.monotonic() > deadline:
            stop_group(proc)
            return None


class _HistoryTail:
    """The Aggregated rows of a growing history CSV not handed out yet. Only complete lines
    are read: locust may be in the middle of writing the last one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0

    def new_rows(self) -> Iterator[Row]:
        try:
            text = self.path.read_text()
        except OSError:
            return
        text = text[: text.rfind("\n") + 1]
        rows = _aggregated_history(_rows(text))
        yield from rows[self.seen :]
        self.seen = len(rows)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group (locust then writes its statistics and quits),
    SIGKILL it after a grace period, and reap the child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is not None:
            break
    # Workers forked by --processes may outlive their master: nothing of the group stays.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
