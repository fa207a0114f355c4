"""The showdown: the four eras on the same app, under the same loads, at rising concurrency.

``make showdown`` (or ``python -m loadtests.showdown``) is lesson 5's experiment. For each
era in turn, for each workload, for 10, 100, 1,000 and 10,000 locust users, it starts a
fresh server, runs one load (:func:`loadtests.measure.measure`), and records what the
clients saw and what the server spent::

    python -m loadtests.showdown                                # everything: about 20 min
    python -m loadtests.showdown --levels 10,100,1000 --workloads sleep --seconds 10
    python -m loadtests.showdown --eras wsgi,asgi --levels 2,4 --seconds 2   # a smoke run

The workloads are the classroom locustfiles (``loadtests/locustfiles/``): ``hello`` (a
fast route, every user asking again at once: throughput), ``sleep`` (``/sleep?ms=1000``:
every user holds a request open for a second, so 1,000 users means 1,000 requests in
flight: concurrency) and ``mixed`` (both kinds of user at once: does a slow request hold
up a fast one?).

Bounded, always
---------------
* **Every run is bounded**: the ramp plus ``--seconds``, then locust is stopped; a run
  that does not end in time is stopped as a group by the runner.
* **An era that stops coping is not pushed further.** When more than half the requests
  of a level fail (``--give-up-ratio``), or the server dies, or locust cannot run, the
  showdown records *how* it failed (503s, refused connections, resets, timeouts, an exit
  status) as "gave up at N users", skips that era's higher levels for that workload, and
  moves on. The failing level stays in the results: it is the era's wall.
* **Nothing is left running**: every server is stopped as a process group when its run
  ends, Ctrl-C included, and the results gathered so far are still written.

What "10,000 users" means on one laptop
---------------------------------------
locust, the servers and the machine's other work share the same cores, and locust spends
about a millisecond of CPU per request (measured on a 2-core machine; the server spends
less for ``/hello`` and ``/sleep``). Users here never pause, so U users on a route that
takes W seconds ask U / W requests a second: ``sleep`` at 1,000 users asks 1,000 a second,
already most of a core for locust; ``hello`` at any level asks as many as locust can send.
So at the top levels the number measured is locust's ceiling as much as the server's. We
run them anyway and flag them: a level where locust reported its own CPU above 90 % is
marked "client-bound" in the table and ``client_saturated`` in the JSON; read such a level
as "at least this much". The last column, ``load``, is the machine's load average as
each run ended: above the number of CPUs (in yellow), other programs competed for the
cores, and the latencies include their waits. Holding 10,000 connections, the question
of lesson 4, is measured properly by ``make c10k``, whose users wait 30 s per request so
that the request rate stays low. (``run_locust`` can spread locust over worker processes,
but on two cores they would take CPU from the server they measure.)

Results
-------
``results/showdown-YYYYmmdd-HHMMSS/`` (``--out`` to choose), and ``results/showdown-latest``
pointing at it:

* ``results.json``: the command, the machine, each era's settings and why, every run
  (clients' numbers, server's numbers, the locust and server command lines) and where each
  era gave up;
* ``results.csv``: one line per run, the same numbers flat, for a spreadsheet;
* ``throughput-WORKLOAD.png``, ``p99-WORKLOAD.png``, ``memory-WORKLOAD.png``: one line per
  era against the number of users (log scale), sized for a slide, and ``overview.png``, the
  three side by side for each workload.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from servers.eras import ERAS, built_eras
from servers.launch import ServerStartError

from . import charts
from .locust_run import WORKLOADS
from .measure import (
    ERA_OPTIONS,
    Measurement,
    describe_machine,
    link_latest,
    measure,
    raise_nofile,
    results_dir,
    write_json,
)
from .measure import Progress as RunProgress

__all__ = ["CSV_FIELDS", "Showdown", "main"]

DEFAULT_LEVELS = (10, 100, 1000, 10000)
DEFAULT_WORKLOADS = ("hello", "sleep", "mixed")
CSV_FIELDS = (
    "era", "workload", "users", "status", "requests", "failures", "failure_ratio", "rps",
    "ok_rps", "p50", "p95", "p99", "how_it_failed", "server_processes", "server_threads",
    "server_fds", "server_peak_mib", "server_cpu_seconds", "server_cpu_percent",
    "client_saturated", "machine_load", "seconds", "ramp_seconds",
)  # fmt: skip


@dataclass
class Showdown:
    """The plan, the results so far, and the live view of both."""

    eras: list[str]
    workloads: list[str]
    levels: list[int]
    seconds: float
    sleep_ms: int
    give_up_ratio: float
    results: list[Measurement] = field(default_factory=list)
    gave_up: list[dict[str, Any]] = field(default_factory=list)
    current: RunProgress | None = None

    def __post_init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]showdown"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("runs"),
            TimeElapsedColumn(),
        )
        self.task = self.bar.add_task("runs", total=len(self.plan()))

    def plan(self) -> list[tuple[str, str, int]]:
        return [(e, w, n) for e in self.eras for w in self.workloads for n in self.levels]

    # -- the live view ----------------------------------------------------------------
    def table(self) -> Table:
        table = Table(title="the showdown: the same app, the same loads", title_justify="left")
        for column, justify in (
            ("era", "left"), ("workload", "left"), ("users", "right"), ("status", "left"),
            ("req/s", "right"), ("p50 ms", "right"), ("p99 ms", "right"),
            ("failed", "right"), ("procs", "right"), ("threads", "right"),
            ("fds", "right"), ("peak MiB", "right"), ("CPU %", "right"), ("load", "right"),
        ):  # fmt: skip
            table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for m in self.results:
            status = {"ok": "[green]ok[/]", "failing": "[red]wall[/]"}.get(
                m.status, f"[red]{m.status}[/]"
            )
            if m.client_saturated:
                status += " [yellow]client-bound[/]"
            table.add_row(
                m.era, m.workload, f"{m.users:,}", status, f"{m.ok_rps:,.0f}", _ms(m.p50),
                _ms(m.p99), f"{m.failure_ratio:.0%}" if m.requests else "-",
                str(m.server_processes), str(m.server_threads), f"{m.server_fds:,}",
                f"{m.server_peak_mib:,.0f}", f"{m.server_cpu_percent:.0f}",
                _load(m.machine_load),
            )  # fmt: skip
        if self.current is not None:
            p = self.current
            server = p.server
            table.add_row(
                p.era, p.workload, f"{p.users:,}",
                f"[cyan]{p.elapsed:.0f}/{p.total_seconds:.0f} s, {p.users_now:,} users[/]",
                f"{p.rps_now:,.0f}", "", "", f"{p.failures:,}",
                str(server.processes) if server else "", str(server.threads) if server else "",
                f"{server.fds:,}" if server else "",
                f"{server.rss_kib / 1024:,.0f}" if server else "", "", "",
            )  # fmt: skip
        return table

    def __rich__(self) -> RenderableType:
        return Group(self.bar, self.table())

    # -- the runs ---------------------------------------------------------------------
    def run(self, live: Live, out: Path) -> None:
        skip: set[tuple[str, str]] = set()
        for era, workload, users in self.plan():
            if (era, workload) in skip:
                self.bar.advance(self.task)
                continue
            self.current = RunProgress(era, workload, users, 0)
            try:
                result = measure(
                    era,
                    workload,
                    users,
                    self.seconds,
                    env={"GATEWAYLAB_SLEEP_MS": str(self.sleep_ms)},
                    on_progress=self._on_progress,
                    csv_dir=out / "locust" / f"{era}-{workload}-{users}",
                    failing_ratio=self.give_up_ratio,
                )
            except ServerStartError as error:
                result = Measurement(era, workload, users, self.seconds, 0.0, status="error")
                result.note = "did not start: " + str(error).splitlines()[0]
            self.current = None
            self.results.append(result)
            self.bar.advance(self.task)
            if result.status != "ok":
                skip.add((era, workload))
                self.gave_up.append(
                    {
                        "era": era,
                        "workload": workload,
                        "users": users,
                        "how": result.how_it_failed(),
                    }
                )
                live.console.print(
                    f"[yellow]{era} gave up at {users:,} users on {workload}:[/] "
                    f"{result.how_it_failed()}"
                )
            live.refresh()

    def _on_progress(self, progress: RunProgress) -> None:
        self.current = progress


def _load(load: float) -> str:
    """The machine's load average, in yellow when it exceeds the CPUs: a busy machine."""
    busy = load > (os.cpu_count() or 1)
    return f"[yellow]{load:.1f}[/]" if busy else f"{load:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def settings_note() -> list[str]:
    """One line per era: the options it ran with, and what they mean."""
    lines = []
    for era in ERAS:
        options, why = ERA_OPTIONS.get(era.name, ((), ""))
        shown = " ".join(options) or "(its defaults)"
        lines.append(f"{era.name}: {shown}: {why}")
    return lines


def write_results(showdown: Showdown, out: Path, argv: Sequence[str]) -> dict[str, Path]:
    """results.json, results.csv and the charts; returns what was written, by name."""
    data = {
        "command": "python -m loadtests.showdown " + shlex.join(argv),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": describe_machine(),
        "eras": showdown.eras,
        "workloads": showdown.workloads,
        "levels": showdown.levels,
        "seconds": showdown.seconds,
        "sleep_ms": showdown.sleep_ms,
        "give_up_ratio": showdown.give_up_ratio,
        "settings": {
            name: {"options": list(options), "why": why}
            for name, (options, why) in ERA_OPTIONS.items()
        },
        "runs": [m.as_dict() for m in showdown.results],
        "gave_up": showdown.gave_up,
    }
    written = {"json": out / "results.json", "csv": out / "results.csv"}
    write_json(written["json"], data)
    with written["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for m in showdown.results:
            writer.writerow(m.as_dict())
    for path in charts.showdown_charts(showdown.results, showdown.workloads, out):
        written[path.stem] = path
    return written


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.showdown",
        description="The four eras under the same loads at rising concurrency.",
    )
    parser.add_argument(
        "--levels",
        default=",".join(map(str, DEFAULT_LEVELS)),
        help="users at each level, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(DEFAULT_WORKLOADS),
        help=f"from {', '.join(WORKLOADS)} (default %(default)s)",
    )
    parser.add_argument(
        "--eras",
        default=",".join(e.name for e in built_eras()),
        help="default: every built era (%(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="measured seconds per run, after the ramp (default %(default)s)",
    )
    parser.add_argument(
        "--sleep-ms",
        type=int,
        default=1000,
        help="the wait of /sleep for the sleep and mixed workloads",
    )
    parser.add_argument(
        "--give-up-ratio",
        type=float,
        default=0.5,
        help="a level with more failures than this ends the era's climb",
    )
    parser.add_argument("--out", help="results folder (default results/showdown-TIMESTAMP)")
    args = parser.parse_args(argv)  # fmt: skip

    levels = sorted({int(n) for n in parse_list(args.levels)})
    workloads = parse_list(args.workloads)
    eras = parse_list(args.eras)
    for workload in workloads:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    built = {e.name for e in built_eras()}
    for era in eras:
        if era not in built:
            parser.error(f"era {era!r} is not built; built: {', '.join(sorted(built))}")
    if not levels or levels[0] < 1:
        parser.error("--levels: positive numbers of users")

    console = Console(highlight=False)
    if not console.is_terminal:  # a log file or a pipe: wide enough for the table
        console = Console(highlight=False, width=160)
    soft, hard = raise_nofile()
    needed = 2 * levels[-1] + 200
    console.print(f"descriptor limit (RLIMIT_NOFILE) raised to {soft:,} (hard {hard:,})")
    if soft < needed:
        console.print(
            f"[yellow]{levels[-1]:,} users need about {needed:,} descriptors (locust and the "
            f"server, one per connection each, plus spares); the limit is {soft:,}, so the "
            "top level may fail for the client's lack of descriptors, not the server's. "
            "Raise the hard limit (ulimit -Hn, /etc/security/limits.conf) to measure it.[/]"
        )
    console.print("era settings (the same for every level):")
    for line in settings_note():
        console.print(f"  {line}")
    out = results_dir("showdown", args.out)
    showdown = Showdown(eras, workloads, levels, args.seconds, args.sleep_ms, args.give_up_ratio)
    interrupted = False
    try:
        with Live(showdown, console=console, refresh_per_second=4) as live:
            showdown.run(live, out)
        if not console.is_terminal:
            console.line()  # a live display's last frame ends without one
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: every server is stopped; writing what was measured")
    written = write_results(showdown, out, argv)
    if args.out is None:
        link_latest(out, "showdown")
    console.print(f"results in {out}/: " + ", ".join(sorted(p.name for p in written.values())))
    for gave_up in showdown.gave_up:
        console.print(
            f"  {gave_up['era']} gave up at {gave_up['users']:,} users on "
            f"{gave_up['workload']}: {gave_up['how']}"
        )
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
