"""``make demo``: the four eras side by side on the shared app, measured the same way.

For every era that is built, the demo starts its server on a free port, checks that it
serves the family's ``/hello``, then runs two short probes (Beazley's pair):

* **fast**: as many ``/hello`` requests as 8 client threads can make in a few seconds
  (throughput);
* **slow**: 32 concurrent ``/sleep?ms=200`` requests at once (how many can wait
  together: a process, record, thread or task model shows here).

Eras that are not built yet are listed with the lesson that brings them, so that the
table always shows the whole course. The full classroom version, with locust and charts,
is the showdown (lesson 5); this one needs nothing but the project itself.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table

from .eras import ERAS, Era
from .launch import ServerProcess, ServerStartError, our_server_argv

__all__ = ["main"]


def _get(host: str, port: int, path: str, conn: http.client.HTTPConnection | None = None) -> int:
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        if own:
            conn.close()


def probe_fast(host: str, port: int, seconds: float, clients: int = 8) -> float:
    """Requests per second of /hello from ``clients`` keep-alive client threads."""
    deadline = time.monotonic() + seconds
    counts = [0] * clients

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            while time.monotonic() < deadline:
                if _get(host, port, "/hello", conn) == 200:
                    counts[i] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)


def probe_slow(host: str, port: int, concurrency: int = 32, ms: int = 200) -> tuple[float, float]:
    """Median and worst latency (s) of ``concurrency`` simultaneous /sleep requests."""

    def one(_: int) -> float:
        start = time.monotonic()
        _get(host, port, f"/sleep?ms={ms}")
        return time.monotonic() - start

    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(concurrency)))
    return statistics.median(latencies), max(latencies)


def run_era(era: Era, seconds: float) -> dict[str, str]:
    with ServerProcess(our_server_argv(era.name), name=era.name) as server:
        host, port = server.address
        rps = probe_fast(host, port, seconds)
        median, worst = probe_slow(host, port)
    return {
        "fast": f"{rps:,.0f} req/s",
        "slow": f"{median * 1000:,.0f} ms / {worst * 1000:,.0f} ms",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers demo", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the fast probe")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    console.rule("[bold]gatewaylab: four eras, one app")
    table = Table(show_lines=False)
    table.add_column("era")
    table.add_column("model")
    table.add_column("fast: /hello throughput", justify="right")
    table.add_column("slow: 32 x /sleep 200 ms\nmedian / worst", justify="right")
    missing = []
    for era in ERAS:
        if not era.built:
            missing.append(era)
            table.add_row(
                era.name,
                era.model,
                "[yellow]not built yet[/]",
                f"[yellow]arrives with lesson {era.lesson}[/]",
            )
            continue
        console.print(f"starting the {era.name} era ...")
        try:
            row = run_era(era, args.seconds)
        except (ServerStartError, OSError) as error:
            table.add_row(era.name, era.model, "[red]failed[/]", str(error).splitlines()[0])
            continue
        table.add_row(era.name, era.model, row["fast"], row["slow"])
    console.print(table)
    if missing:
        console.print(
            "Not built yet: "
            + ", ".join(f"{e.name} (lesson {e.lesson})" for e in missing)
            + ". The demo runs what exists; each era joins the table when its server lands."
        )
    return 0
