"""A short locust load in a process of its own, read back as a table.

Lessons and notebooks end a story with "and under load?": a few users for a few seconds
against one server, and a table of what they saw. locust is the tool (its FastHttpUser
is quick enough that a Python server, not the client, is the bottleneck), but it must run
**in its own process**: importing it patches sockets and threads for gevent, which would
break the lesson runner, pytest and a notebook kernel. So :func:`run_load` only builds a
command line::

    python -m locust -f lessons/locustfile.py --headless -u USERS -r RATE -t SECONDS
                     --host URL --csv PREFIX --only-summary

runs it in a new process group (stopped as a group if the caller is interrupted), and
reads the CSV files it leaves in a temporary directory:

* ``PREFIX_final.csv`` (written by our locustfile when locust quits): one row per
  request name and an ``Aggregated`` row: counts, failures, response times in ms,
  requests/s, and the percentiles 50% … 100%;
* ``PREFIX_stats_history.csv``: one aggregated row per second, for plots over time.

Rows are plain dicts of str -> str | float, numbers converted, so that a notebook can plot
them with matplotlib and no pandas.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.jupyter import JupyterMixin
from rich.table import Table
from rich.text import Text

__all__ = ["LOCUSTFILE", "LoadError", "LoadResult", "locust_argv", "run_load"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# The percentiles locust reports, as its CSV names the columns.
PERCENTILES = ("50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%")


class LoadError(RuntimeError):
    """locust did not run; the message carries the end of its output."""


Row = dict[str, str | float]


@dataclass
class LoadResult(JupyterMixin):
    """What a load run measured. ``rows``: one per request name, then ``Aggregated``."""

    url: str
    users: int
    seconds: float
    argv: list[str]
    rows: list[Row] = field(default_factory=list)
    history: list[Row] = field(default_factory=list)
    output: str = ""
    exit_code: int = 0

    @property
    def total(self) -> Row:
        """The ``Aggregated`` row (all requests together)."""
        for row in self.rows:
            if row.get("Name") == "Aggregated":
                return row
        return self.rows[-1] if self.rows else {}

    @property
    def requests(self) -> int:
        return int(self.total.get("Request Count", 0))

    @property
    def failures(self) -> int:
        return int(self.total.get("Failure Count", 0))

    @property
    def rps(self) -> float:
        return float(self.total.get("Requests/s", 0.0))

    def percentiles(self, name: str = "Aggregated") -> dict[str, float]:
        """Response time in ms at each percentile, e.g. ``{"50%": 1.0, ..., "100%": 27.0}``."""
        for row in self.rows:
            if row.get("Name") == name:
                return {p: float(row[p]) for p in PERCENTILES if isinstance(row.get(p), float)}
        return {}

    def __rich__(self) -> RenderableType:
        table = Table(
            title=f"{self.users} users for {self.seconds:g} s against {self.url} (times in ms)",
            title_justify="left",
        )
        table.add_column("request", no_wrap=True, min_width=10)
        for column in ("count", "fails", "req/s", "median", "95%", "99%", "max"):
            table.add_column(column, justify="right", no_wrap=True)
        for row in self.rows:
            table.add_row(
                f"{row.get('Type', '')} {row.get('Name', '')}".strip(),
                f"{int(row.get('Request Count', 0)):,}",
                f"{int(row.get('Failure Count', 0)):,}",
                _num(row.get("Requests/s"), "{:,.0f}"),
                _num(row.get("Median Response Time"), "{:.1f}"),
                _num(row.get("95%"), "{:.0f}"),
                _num(row.get("99%"), "{:.0f}"),
                _num(row.get("Max Response Time"), "{:.1f}"),
            )
        note = Text(
            "locust's response times include the client's own work; compare servers on the "
            "same machine, never absolute numbers.",
            style="dim",
        )
        return Group(table, note)


def _num(value: str | float | None, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, float) else "—"


def _convert(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value  # names, "N/A"


def read_csv(path: Path) -> list[Row]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: _convert(v) for k, v in row.items()} for row in csv.DictReader(f)]


def locust_argv(
    url: str,
    users: int,
    seconds: float,
    prefix: str,
    spawn_rate: float | None = None,
    locustfile: Path = LOCUSTFILE,
) -> list[str]:
    return [
        sys.executable, "-m", "locust",
        "-f", str(locustfile),
        "--headless",
        "-u", str(users),
        "-r", f"{spawn_rate or users:g}",
        "-t", f"{max(1, round(seconds))}s",
        "--host", url.rstrip("/"),
        "--csv", prefix,
        "--only-summary",
        "--stop-timeout", "2",
    ]  # fmt: skip


def run_load(
    url: str,
    *,
    users: int = 4,
    seconds: float = 3,
    paths: Sequence[str] = ("/",),
    spawn_rate: float | None = None,
    locustfile: Path = LOCUSTFILE,
) -> LoadResult:
    """Run locust headless against ``url`` and return its statistics.

    Raises :class:`LoadError` if locust cannot run (not installed, a bad locustfile).
    Failed requests do not raise: they are in the table, which is the lesson.
    """
    with tempfile.TemporaryDirectory(prefix="gatewaylab-load-") as tmp:
        prefix = str(Path(tmp, "load"))
        argv = locust_argv(url, users, seconds, prefix, spawn_rate, locustfile)
        env = {
            **os.environ,
            "GATEWAYLAB_LOAD_PATHS": " ".join(paths),
            "GATEWAYLAB_LOAD_FINAL_CSV": prefix + "_final.csv",
            "PYTHONUNBUFFERED": "1",
        }
        with open(Path(tmp, "output.txt"), "w+b") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                start_new_session=True,  # its own group: stopped whole if we are interrupted
            )
            try:
                # locust needs a second or two to import and stop; allow generously.
                code = proc.wait(timeout=seconds + 60)
            except BaseException:
                _stop_group(proc)
                raise
            out.seek(0)
            output = out.read().decode("utf-8", "replace")
        rows = read_csv(Path(prefix + "_final.csv")) or read_csv(Path(prefix + "_stats.csv"))
        if not rows:
            tail = "\n".join(output.splitlines()[-12:])
            raise LoadError(f"locust exited with status {code} and no statistics:\n{tail}")
        history = [
            row
            for row in read_csv(Path(prefix + "_stats_history.csv"))
            if row.get("Name") == "Aggregated" and float(row.get("User Count", 0) or 0) > 0
        ]
    return LoadResult(url, users, seconds, argv, rows, history, output, code)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 3
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is not None:
            break
    proc.wait()
