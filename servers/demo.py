"""``make demo``: the four eras side by side on the shared app, under the same short load.

For every era that is built, the demo starts its server (with the limits of
``loadtests.measure.ERA_OPTIONS``, the showdown's), and runs locust's ``mixed`` workload
against it for a few seconds: Beazley's two probes at once,

* **fast** users asking ``/hello`` again and again: the throughput, and the latency a
  quick request sees while the server is busy;
* **slow** users asking ``/sleep?ms=1000``: requests that hold whatever the era gives a
  request (a process, a worker thread, a thread, a task) for a second;

while the server's process group is sampled from /proc (processes, threads, memory).
Then a table, with one sentence per era that says what *its numbers* show: the sentence
is built from the measurements (did the slow requests wait together or queue, did the
fast ones stay fast, what did it cost), never written in advance, so that it cannot claim
what this run did not show. A PNG chart of the same numbers goes to
``results/demo-YYYYmmdd-HHMMSS/demo.png`` with ``results.json`` beside it
(``results/demo-latest`` points at the newest).

Why locust, and how a minute is kept
------------------------------------
The demo uses the same locust workload and the same measurement as the showdown
(lesson 5), so a student who goes on from ``make demo`` to ``make showdown`` sees the same
numbers grow, not a second tool. locust costs about two seconds of start-up per run on a
laptop, so the demo runs **one** mixed load per era, not a fast and a slow one apart:
four eras x (start-up + 1 s ramp + 8 s) is about a minute. ``--quick`` (1 s runs, fewer
users, a shorter wait) is for the tests.

Eras that are not built yet are listed with the lesson that brings them, so that the
table always shows the whole course.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from .eras import ERAS
from .launch import ServerStartError

__all__ = ["EraResult", "main", "sentence"]

TOLERANCE = 0.2  # a slow request "waited its own time" within 20 % of it


@dataclass
class EraResult:
    """One era's numbers in the demo (times in ms)."""

    era: str
    model: str
    hello_rps: float
    hello_p50: float | None
    hello_p99: float | None
    sleep_p50: float | None
    sleep_p99: float | None
    sleep_rps: float
    slow_users: int
    fast_users: int
    failures: int
    failures_how: str
    processes: int
    threads: int
    peak_mib: float


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def sentence(r: EraResult, best_hello_p50: float, sleep_ms: int) -> str:
    """What this era's numbers show, in one sentence built from them.

    Three clauses, each chosen by a threshold on a measured number:

    1. the slow requests: their median within 20 % of the designed wait means they all
       waited *together*; longer, and the sentence gives how many times longer and how
       many finished a second (with U slow users each waiting W, a server that holds them
       all finishes U/W a second; one that holds K at a time, K/W: the era's capacity);
    2. the fast requests, against the quickest era's /hello median of this run: "stayed
       fast" within 3x of it; beyond, how many times slower, and, from half the slow
       requests' wait up, that they took about as long as that wait;
    3. what the era spent at its peak: processes, threads, memory;

    and any failures, with their kinds, in front."""
    parts = []
    if r.failures:
        parts.append(f"{r.failures:,} requests failed ({r.failures_how})")
    if r.sleep_p50 is None:
        parts.append("no slow request finished during the run")
    elif r.sleep_p50 <= sleep_ms * (1 + TOLERANCE):
        parts.append(
            f"all {r.slow_users} slow requests waited together "
            f"(/sleep p50 {_fmt_ms(r.sleep_p50)} ms for a {sleep_ms:,} ms wait)"
        )
    else:
        parts.append(
            f"slow requests took {r.sleep_p50 / sleep_ms:.1f}x their designed wait "
            f"(/sleep p50 {_fmt_ms(r.sleep_p50)} ms for {sleep_ms:,} ms; "
            f"{r.sleep_rps:.1f} finished a second for {r.slow_users} slow users)"
        )
    if r.hello_p50 is not None and best_hello_p50 > 0:
        ratio = r.hello_p50 / best_hello_p50
        if ratio <= 3:
            parts.append(f"fast requests stayed fast (/hello p50 {_fmt_ms(r.hello_p50)} ms)")
        elif r.hello_p50 >= sleep_ms / 2:
            than = "about as long as" if r.hello_p50 <= 2 * sleep_ms else "longer than"
            parts.append(
                f"fast requests took {than} the slow ones' wait "
                f"(/hello p50 {_fmt_ms(r.hello_p50)} ms, {ratio:.0f}x the quickest era's)"
            )
        else:
            parts.append(
                f"each fast request took {ratio:.0f}x the quickest era's time "
                f"(/hello p50 {_fmt_ms(r.hello_p50)} ms)"
            )
    processes = f"{r.processes} process" + "es" * (r.processes != 1)
    threads = f"{r.threads} thread" + "s" * (r.threads != 1)
    parts.append(f"at its peak {processes}, {threads}, {r.peak_mib:,.0f} MiB")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def run_era(era: str, model: str, users: int, seconds: float, sleep_ms: int) -> EraResult:
    # Imported here: `python -m servers wsgi` must not pay for locust's runner or rich's live
    # display, only the demo needs them. loadtests never imports a server (it starts them).
    from loadtests.measure import measure

    slow = users // 2
    m = measure(
        era,
        "mixed",
        users,
        seconds,
        env={
            "GATEWAYLAB_SLEEP_MS": str(sleep_ms),
            "GATEWAYLAB_MIXED_SLOW": "sleep",
            "GATEWAYLAB_MIXED_SLOW_USERS": str(slow),
        },
        failing_ratio=1.0,  # the demo shows whatever happened; it never gives up
    )
    hello = _by_name(m.by_name, "/hello")
    sleep = _by_name(m.by_name, "/sleep")
    return EraResult(
        era=era,
        model=model,
        hello_rps=_ok_rate(hello),
        hello_p50=_opt(hello.get("p50")),
        hello_p99=_opt(hello.get("p99")),
        sleep_p50=_opt(sleep.get("p50")),
        sleep_p99=_opt(sleep.get("p99")),
        sleep_rps=_ok_rate(sleep),
        slow_users=slow,
        fast_users=users - slow,
        failures=m.failures,
        failures_how=", ".join(f"{k} x{v:,}" for k, v in sorted(m.failures_by_kind.items())),
        processes=m.server_processes,
        threads=m.server_threads,
        peak_mib=m.server_peak_mib,
    )


def _by_name(rows: dict[str, dict[str, float | None]], prefix: str) -> dict[str, float | None]:
    """The stats row whose name starts with ``prefix`` ("/hello (fast)" in ``mixed``)."""
    for name, row in rows.items():
        if name.startswith(prefix):
            return row
    return {}


def _opt(value: float | None) -> float | None:
    return None if value is None else float(value)


def _ok_rate(row: dict[str, float | None]) -> float:
    """Successful requests a second: the row's rate, less its share of failures."""
    requests = row.get("requests") or 0.0
    failures = row.get("failures") or 0.0
    rps = row.get("rps") or 0.0
    return rps * (requests - failures) / requests if requests else 0.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m servers demo",
        description="The four eras side by side: the same app, the same short load.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=8.0,
        help="measured seconds per era, after a 1 s ramp (default %(default)s)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=40,
        help="locust users per era, half fast, half slow (default %(default)s)",
    )
    parser.add_argument(
        "--sleep-ms", type=int, default=1000, help="the slow requests' wait (default %(default)s)"
    )
    parser.add_argument("--eras", help="comma-separated (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 s runs, 10 users, a 300 ms wait: checks the demo, fast",
    )
    parser.add_argument("--out", help="results folder (default results/demo-TIMESTAMP)")
    args = parser.parse_args(argv)  # fmt: skip
    if args.quick:
        args.seconds, args.users, args.sleep_ms = 1.0, 10, 300
    if args.users < 2:
        parser.error("--users: at least 2 (one fast, one slow)")
    wanted = {e.strip() for e in args.eras.split(",")} if args.eras else None

    from loadtests import charts
    from loadtests.measure import ERA_OPTIONS, link_latest, raise_nofile, results_dir, write_json

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=150)
    raise_nofile()
    console.rule("[bold]gatewaylab: four eras, one app")
    console.print(
        f"Each era: {args.users - args.users // 2} users asking /hello (fast) and "
        f"{args.users // 2} asking /sleep?ms={args.sleep_ms} (slow), at once, for "
        f"{args.seconds:g} s after a 1 s ramp (locust), while /proc is sampled."
    )
    started = time.monotonic()
    results: list[EraResult] = []
    missing = []
    failed: list[tuple[str, str]] = []
    for era in ERAS:
        if wanted is not None and era.name not in wanted:
            continue
        if not era.built:
            missing.append(era)
            continue
        options = " ".join(ERA_OPTIONS.get(era.name, ((), ""))[0])
        console.print(f"[bold]{era.name}[/] ({era.model}): python -m servers {era.name} {options}")
        try:
            results.append(run_era(era.name, era.model, args.users, args.seconds, args.sleep_ms))
        except (ServerStartError, OSError) as error:
            failed.append((era.name, str(error).splitlines()[0]))
    console.print(render(results, args.sleep_ms))
    for name, why in failed:
        console.print(f"[red]{name} failed:[/] {why}")
    for era in missing:
        console.print(
            f"[yellow]{era.name} is not built yet[/]: it arrives with lesson {era.lesson}."
        )
    if results:
        out = results_dir("demo", args.out)
        rows = [(r.era, r.hello_rps, r.hello_p99, r.sleep_p99, r.peak_mib) for r in results]
        chart = charts.demo_chart(rows, args.sleep_ms, out / "demo.png")
        best = _best_hello(results)
        data: dict[str, Any] = {
            "command": "python -m servers demo " + shlex.join(argv),
            "users": args.users,
            "seconds": args.seconds,
            "sleep_ms": args.sleep_ms,
            "eras": [{**vars(r), "sentence": sentence(r, best, args.sleep_ms)} for r in results],
            "not_built": [e.name for e in missing],
            "failed": dict(failed),
        }
        write_json(out / "results.json", data)
        if args.out is None:
            link_latest(out, "demo")
        console.print(f"chart: {chart}   numbers: {out / 'results.json'}")
    console.print(
        f"[dim]{time.monotonic() - started:.0f} s. The full experiment, 10 to 10,000 users: "
        "make showdown; ten thousand at once: make c10k.[/]"
    )
    return 1 if failed else 0


def _best_hello(results: list[EraResult]) -> float:
    return min((r.hello_p50 for r in results if r.hello_p50), default=0.0)


def render(results: list[EraResult], sleep_ms: int) -> Table:
    best = _best_hello(results)
    table = Table(show_lines=True, title_justify="left",
                  title="the same load on each era (times in ms)")  # fmt: skip
    table.add_column("era", no_wrap=True)
    table.add_column("/hello\nreq/s", justify="right", no_wrap=True)
    table.add_column("/hello\np50 / p99", justify="right", no_wrap=True)
    table.add_column(f"/sleep {sleep_ms} ms\np50 / p99", justify="right", no_wrap=True)
    table.add_column("procs /\nthreads", justify="right", no_wrap=True)
    table.add_column("peak\nMiB", justify="right", no_wrap=True)
    table.add_column("what the numbers show", ratio=1)
    for r in results:
        table.add_row(
            f"[bold]{r.era}[/]\n[dim]{r.model}[/]",
            f"{r.hello_rps:,.0f}",
            f"{_fmt_ms(r.hello_p50)} / {_fmt_ms(r.hello_p99)}",
            f"{_fmt_ms(r.sleep_p50)} / {_fmt_ms(r.sleep_p99)}",
            f"{r.processes} / {r.threads}",
            f"{r.peak_mib:,.0f}",
            sentence(r, best, sleep_ms),
        )
    return table
