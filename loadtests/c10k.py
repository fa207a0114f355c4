"""``make c10k``: ten thousand clients at once on one event loop, and the walls of the others.

Dan Kegel's C10k problem (1999) asked how one server could serve ten thousand clients at
the same time. Lesson 4's answer is an event loop: a waiting request costs a task and a
socket, not a thread or a process. This demo proves it on this machine, then shows what
the same load does to the eras that pay a thread or a process per request::

    make c10k                                              # about 4 minutes
    python -m loadtests.c10k --users 200 --wait-ms 2000 --hold 5 --eras asgi   # a small one

The experiment
--------------
1. **Descriptors first.** Each user is one keep-alive connection: one descriptor in locust
   and one in the server, each its own process with its own RLIMIT_NOFILE. The soft limit
   is raised to the hard one (the processes we start inherit it; the runner does it for
   locust too). If the hard limit is below the users plus some spares, the demo says so
   and stops, instead of measuring "Too many open files".
2. **10,000 locust users on ``/sleep?ms=30000``** against the ASGI server (one process, one
   thread, one event loop). Why a 30 s wait: the claim is about *holding* connections,
   not about a request rate, so the rate is kept low enough that locust and the server
   share two cores with room to spare. Measured on a 2-core machine: about 1 ms of
   locust's CPU and 0.7 ms of the server's per ``/sleep`` request. 10,000 users that each
   wait 10 s ask 1,000 requests a second, which would need most of both cores (and a
   busy machine turns that into late requests, that is, failed latency checks); waiting
   30 s, they ask 333 a second, about half a core for the two together. The 20 %
   tolerance is then 6 s.
3. **A ramp** at ``--spawn-rate`` users a second (500: 20 s for 10,000; a burst of 10,000
   connects at once would overflow the listen backlog and measure SYN retransmission
   timers), shown live: users connected, requests per second, failures, and the server's
   descriptors and memory.
4. **A hold** of ``--hold`` seconds once all users are in (40 s; at least the wait plus
   2 s, so that the last user to join has finished a request before the end).
5. **The verdict.** PASS when all of these hold:

   * locust reached ``--users`` users, and they completed at least that many requests;
   * not one request failed (no refused or reset connection, no timeout, no 503, no wrong
     body: the locustfile checks every answer);
   * the server held them at once: its peak of open descriptors (sampled from /proc) is at
     least the number of users, one socket per user;
   * the latency is the route's designed wait, within 20 %: locust's median (p50) and
     99th percentile (p99) over *all* requests of the run, measured by the client from
     sending the request to the last byte of the answer, connecting included, are both
     at most 1.2 x ``--wait-ms``.

   The server's peak memory (the sampled maximum of its resident set) is reported beside
   the verdict, and how much of it each connection costs above the idle server.

   Run it on a quiet machine. locust needs about half a core for this load and gets it
   on an idle laptop; on a machine whose load average is many times its CPUs, locust is
   starved for seconds at a time, its requests finish late and the latency checks fail
   although the server held every connection. The output prints the load average
   when it is above the number of CPUs, so that such a run is not read as the server's.
6. **Then the same load against the threaded WSGI server and the forking CGI server**,
   each bounded to ``--wall-seconds`` (ramp included), with the limits they ship with
   (``loadtests.measure.ERA_OPTIONS``: 8 threads and 64 waiting requests; 64 connection
   processes). They are expected to fail: the table shows how (503s from a full queue,
   timeouts, refused connections), how many requests they still served, and what
   threads or processes they spent.

Results: a table, and ``results/c10k-YYYYmmdd-HHMMSS/results.json`` (``results/c10k-latest``
points at it). The exit status is 0 when the ASGI era passed (or was not asked for).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from servers.eras import built_eras
from servers.launch import ServerStartError

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

__all__ = ["Verdict", "main", "verdict"]

TOLERANCE = 0.20  # latency within 20 % of the designed wait
SPARE_FDS = 200  # the listener, the interpreter's own files, locust's extra sockets


@dataclass(frozen=True)
class Verdict:
    passed: bool
    checks: list[tuple[str, bool, str]]  # (what, passed, the measured value)


def verdict(m: Measurement, wait_ms: int, idle_fds: int) -> Verdict:
    """The pass conditions of step 5 of the module docstring, each with what was measured."""
    limit = wait_ms * (1 + TOLERANCE)
    held = m.server_fds - idle_fds
    checks = [
        (f"locust reached {m.users:,} users", m.peak_users >= m.users, f"{m.peak_users:,}"),
        (f"at least {m.users:,} requests completed", m.requests >= m.users, f"{m.requests:,}"),
        ("no failed request", m.failures == 0 and m.status == "ok", m.how_it_failed()),
        (
            f"server held {m.users:,} connections at once (peak descriptors above idle)",
            held >= m.users,
            f"{held:,}",
        ),
        (
            f"p50 within 20% of {wait_ms:,} ms (at most {limit:,.0f})",
            m.p50 is not None and m.p50 <= limit,
            f"{m.p50:,.0f} ms" if m.p50 is not None else "none",
        ),
        (
            f"p99 within 20% of {wait_ms:,} ms (at most {limit:,.0f})",
            m.p99 is not None and m.p99 <= limit,
            f"{m.p99:,.0f} ms" if m.p99 is not None else "none",
        ),
    ]
    return Verdict(all(ok for _, ok, _ in checks), checks)


class LiveView:
    """The run in progress: the connections the server holds (sampled ten times a second
    from /proc: its descriptors above the idle count) and the users locust reports (its
    history file, flushed every 5 s), then the client's and the server's numbers."""

    def __init__(self, users: int) -> None:
        self.progress: RunProgress | None = None
        self.users = users
        self.peak = 0
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[what]}"),
            TimeElapsedColumn(),
        )
        self.held = self.bar.add_task("", total=users, what="connections held by the server")
        self.joined = self.bar.add_task("", total=users, what="users started by locust")

    def start(self, era: str, users: int) -> None:
        self.progress = None
        self.peak = 0
        for task in (self.held, self.joined):
            self.bar.reset(task, total=users, description=f"[bold]{era}[/]")

    def update(self, progress: RunProgress) -> None:
        self.progress = progress
        self.peak = max(self.peak, progress.users_now)  # not the fall as locust stops
        self.bar.update(self.joined, completed=self.peak)

    def __rich__(self) -> RenderableType:
        p = self.progress
        if p is None:
            return Group(self.bar, Text("starting the server and locust ...", style="dim"))
        self.bar.update(self.held, completed=min(self.users, p.server_connections))
        line = (
            f"{p.elapsed:4.0f}/{p.total_seconds:.0f} s   {p.rps_now:8,.0f} req/s   "
            f"{p.requests:9,} requests   {p.failures:,} failed"
        )
        if p.server is not None:
            s = p.server
            line += (
                f"   server: {s.processes} proc, {s.threads} threads, "
                f"{s.fds:,} fds, {s.rss_kib / 1024:,.0f} MiB"
            )
        return Group(self.bar, Text(line))


def results_table(results: list[Measurement], wait_ms: int) -> Table:
    table = Table(
        title=f"C10k: every user waits {wait_ms:,} ms per request (times in ms)",
        title_justify="left",
    )
    for column in (
        "era", "users", "served ok", "ok req/s", "p50", "p99", "failures",
        "procs", "threads", "peak fds", "peak MiB",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("era", "failures") else "right")
    for m in results:
        table.add_row(
            m.era, f"{m.peak_users:,}", f"{m.requests - m.failures:,}", _rate(m.ok_rps),
            "-" if m.p50 is None else f"{m.p50:,.0f}", "-" if m.p99 is None else f"{m.p99:,.0f}",
            m.how_it_failed(), str(m.server_processes), str(m.server_threads),
            f"{m.server_fds:,}", f"{m.server_peak_mib:,.0f}",
        )  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.c10k",
        description="10,000 concurrent users on a slow route: ASGI, then WSGI and CGI.",
    )
    parser.add_argument("--users", type=int, default=10_000, help="default %(default)s")
    parser.add_argument(
        "--wait-ms", type=int, default=30_000, help="the wait of /sleep, ms (default %(default)s)"
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=40.0,
        help="seconds with every user in, after the ramp (default %(default)s;"
        " at least the wait + 2 s)",
    )
    parser.add_argument(
        "--spawn-rate",
        type=float,
        default=500.0,
        help="users joining per second (default %(default)s)",
    )
    parser.add_argument(
        "--eras",
        default="asgi,wsgi,cgi",
        help="in order; ASGI is judged, the others shown (default %(default)s)",
    )
    parser.add_argument(
        "--wall-seconds",
        type=float,
        default=60.0,
        help="bound on each non-ASGI era's run, ramp included (default %(default)s)",
    )
    parser.add_argument("--out", help="results folder (default results/c10k-TIMESTAMP)")
    args = parser.parse_args(argv)  # fmt: skip

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    eras = [e.strip() for e in args.eras.split(",") if e.strip()]
    built = {e.name for e in built_eras()}
    for era in eras:
        if era not in built:
            parser.error(f"era {era!r} is not built; built: {', '.join(sorted(built))}")
    if args.users < 1 or args.wait_ms < 0 or args.spawn_rate <= 0:
        parser.error("--users and --spawn-rate must be positive, --wait-ms at least 0")
    hold = max(args.hold, args.wait_ms / 1000 + 2)
    if hold > args.hold:
        console.print(f"--hold raised to {hold:g} s: the wait plus 2 s, so that the last "
                      "user to join finishes a request before the end")  # fmt: skip

    # Step 1: descriptors, on both sides.
    soft, hard = raise_nofile()
    needed = args.users + SPARE_FDS
    console.print(
        f"open-files limit (RLIMIT_NOFILE): soft raised to {soft:,} (the hard limit, {hard:,}); "
        f"{args.users:,} users need {needed:,} on each side (locust, server)"
    )
    if soft < needed:
        console.print(
            f"[red]The hard limit {hard:,} is too low for {args.users:,} users.[/] Each user "
            "holds a socket in locust and one in the server. Raise it (as root: "
            f"`ulimit -Hn {needed}` in the shell that runs make, or a `nofile` line in "
            "/etc/security/limits.conf, or LimitNOFILE= for a systemd service), or run "
            f"fewer: --users {max(1, soft - SPARE_FDS):,}."
        )
        return 2

    extra: tuple[str, ...] = ()
    if args.users + 100 > 10240:  # ERA_OPTIONS' cap for asgi
        extra = ("--max-connections", str(args.users + 100))
    spawn_rate = min(args.spawn_rate, float(args.users))  # a ramp of at least a second
    ramp = args.users / spawn_rate
    out = results_dir("c10k", args.out)
    view = LiveView(args.users)
    results: list[Measurement] = []
    checked: Verdict | None = None
    idle: dict[str, tuple[int, float]] = {}
    try:
        for era in eras:
            judged = era == "asgi"
            seconds = hold if judged else max(1.0, args.wall_seconds - ramp)
            era_extra = extra if judged else ()
            if era == "cgi":
                # CGI kills a script after --script-timeout (30 s) with a 504: give the
                # route's wait room, so that the wall shown is the process cap, not that.
                era_extra = ("--script-timeout", f"{args.wait_ms / 1000 + 30:g}")
            options = " ".join(ERA_OPTIONS.get(era, ((), ""))[0] + era_extra)
            console.rule(f"[bold]{era}[/]: {args.users:,} users x /sleep?ms={args.wait_ms}")
            console.print(
                f"server: python -m servers {era} {options}".rstrip()
                + f"; ramp {ramp:.0f} s at {spawn_rate:g} users/s, then {seconds:g} s"
                + ("" if judged else " (bounded: this era is shown, not judged)")
            )
            view.start(era, args.users)
            with Live(view, console=console, refresh_per_second=4, transient=False):
                try:
                    m = measure(
                        era,
                        "sleep",
                        args.users,
                        seconds,
                        env={
                            "GATEWAYLAB_SLEEP_MS": str(args.wait_ms),
                            # locust's own timeout (60 s) must not end a request that is
                            # only doing what it was asked: waiting.
                            "GATEWAYLAB_LOAD_TIMEOUT": f"{args.wait_ms / 1000 + 60:g}",
                        },
                        spawn_rate=spawn_rate,
                        extra_server_args=era_extra,
                        on_progress=view.update,
                        csv_dir=out / "locust" / era,
                        sample_interval=0.2,  # listing 10,000 descriptors is not free
                        failing_ratio=0.0 if judged else 0.5,
                    )
                except ServerStartError as error:
                    console.print(f"[red]{era} did not start:[/] {error}")
                    continue
            if not console.is_terminal:
                console.line()  # a live display's last frame ends without one
            results.append(m)
            idle[era] = (m.server_idle_fds, m.server_idle_mib)
            console.print(results_table([m], args.wait_ms))
            if judged:
                checked = verdict(m, args.wait_ms, idle[era][0])
                print_verdict(console, checked, m, idle[era][1])
            else:
                console.print(wall_sentence(m, args.wait_ms))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every server and locust are stopped[/]")
        return 130
    finally:
        save(out, argv, args, hold, results, checked, idle)
        if args.out is None:
            link_latest(out, "c10k")
    if len(results) > 1:
        console.rule("[bold]side by side")
        console.print(results_table(results, args.wait_ms))
    console.print(f"results: {out / 'results.json'}")
    if "asgi" in eras:
        return 0 if checked is not None and checked.passed else 1
    return 0


def print_verdict(console: Console, v: Verdict, m: Measurement, idle_mib: float) -> None:
    for what, ok, value in v.checks:
        mark = "[green]yes[/]" if ok else "[red]NO[/]"
        console.print(f"  {mark}  {what}: {value}")
    per_connection = (m.server_peak_mib - idle_mib) * 1024 / max(1, m.users)
    console.print(
        f"  server peak memory {m.server_peak_mib:,.0f} MiB (idle {idle_mib:,.0f} MiB): "
        f"about {per_connection:,.1f} KiB per connection; {m.server_threads} thread(s), "
        f"{m.server_processes} process(es), CPU {m.server_cpu_percent:.0f}% of a core"
    )
    cpus = os.cpu_count() or 1
    if m.machine_load > cpus:
        console.print(
            f"  [yellow]the machine's load average was {m.machine_load:.1f} on {cpus} CPUs[/]: "
            "other programs competed with locust and the server, and late requests may be "
            "the client's or the machine's, not the server's"
        )
    if v.passed:
        console.print(f"[bold green]PASS[/]: {m.users:,} users served at once, none failed.")
    else:
        console.print("[bold red]FAIL[/]: see the checks above.")


def _rate(rps: float) -> str:
    return f"{rps:,.0f}" if rps >= 10 else f"{rps:.1f}"


def wall_sentence(m: Measurement, wait_ms: int) -> str:
    """How a bounded era met its wall, in one sentence built from its numbers."""
    served = m.requests - m.failures
    spent = (
        f"{m.server_processes} processes"
        if m.server_processes > 1
        else f"{m.server_threads} threads"
    )
    waited = ""
    if m.p50 is not None and m.p50 > wait_ms * (1 + TOLERANCE):
        waited = f"; requests queued for their turn: p50 {m.p50:,.0f} ms for a {wait_ms:,} ms wait"
    if not m.failures and m.status == "ok":
        return (
            f"{m.era}: no failures; {served:,} requests served ({_rate(m.ok_rps)}/s) with at most "
            f"{spent}{waited}."
        )
    return (
        f"{m.era} met its wall: {m.how_it_failed()}; it still served {served:,} requests "
        f"({_rate(m.ok_rps)}/s) with at most {spent}{waited}."
    )


def save(
    out: Path,
    argv: list[str],
    args: argparse.Namespace,
    hold: float,
    results: list[Measurement],
    checked: Verdict | None,
    idle: dict[str, tuple[int, float]],
) -> None:
    data: dict[str, Any] = {
        "command": "python -m loadtests.c10k " + shlex.join(argv),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": describe_machine(),
        "users": args.users,
        "wait_ms": args.wait_ms,
        "hold": hold,
        "spawn_rate": args.spawn_rate,
        "wall_seconds": args.wall_seconds,
        "tolerance": TOLERANCE,
        "idle": {era: {"fds": fds, "mib": round(mib, 1)} for era, (fds, mib) in idle.items()},
        "runs": [m.as_dict() for m in results],
        "verdict": None
        if checked is None
        else {
            "passed": checked.passed,
            "checks": [{"what": w, "passed": ok, "measured": v} for w, ok, v in checked.checks],
        },
    }
    write_json(out / "results.json", data)


if __name__ == "__main__":
    sys.exit(main())
