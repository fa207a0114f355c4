"""A short locust load in a process of its own, read back as a table.

Lessons and notebooks end a story with "and under load?": a few users for a few seconds
against one server, and a table of what they saw. locust is the tool (its FastHttpUser
is quick enough that a Python server, not the client, is the bottleneck), but it must run
**in its own process**: importing it patches sockets and threads for gevent, which would
break the lesson runner, pytest and a notebook kernel.

There is one way to run locust in gatewaylab, :func:`loadtests.locust_run.run_locust`,
and :func:`run_load` is that function with the lesson's locustfile (``locustfile.py``
here: users that GET the paths a lesson names) and a result that prints as a table::

    python -m locust -f lessons/locustfile.py --headless -u USERS -r RATE -t SECONDS
                     --host URL --csv PREFIX --only-summary --stop-timeout 2

Its rows come from ``PREFIX_final.csv`` (written when locust quits): one per request name
and an ``Aggregated`` row, numbers converted; ``history`` holds one aggregated row per
second, for plots over time. Rows are plain dicts of str -> str | float, so that a
notebook can plot them with matplotlib and no pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.jupyter import JupyterMixin
from rich.table import Table
from rich.text import Text

from loadtests.locust_run import PERCENTILES, LocustError, Row, read_csv, run_locust
from loadtests.locust_run import locust_argv as _locust_argv

__all__ = [
    "LOCUSTFILE",
    "PERCENTILES",
    "LoadError",
    "LoadResult",
    "locust_argv",
    "read_csv",
    "run_load",
]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

# The exception is locust_run's own: ``except LoadError`` catches what run_locust raises.
LoadError = LocustError


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


def locust_argv(
    url: str,
    users: int,
    seconds: float,
    prefix: str,
    spawn_rate: float | None = None,
    locustfile: Path = LOCUSTFILE,
) -> list[str]:
    """The command line :func:`run_load` runs (shown by lessons before they run it)."""
    return _locust_argv(
        locustfile, url, users=users, seconds=seconds, spawn_rate=spawn_rate, csv_prefix=prefix
    )


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
    run = run_locust(
        locustfile,
        url,
        users=users,
        seconds=seconds,
        spawn_rate=spawn_rate,
        env={"GATEWAYLAB_LOAD_PATHS": " ".join(paths)},
    )
    return LoadResult(
        url, users, seconds, run.argv, run.rows, run.history, run.output, run.exit_code
    )
