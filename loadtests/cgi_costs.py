"""What a CGI request's time is made of: ``python -m loadtests.cgi_costs``.

Why this module exists
----------------------
Lesson 1 says that CGI is slow because every request pays for a new process: a fork, an
exec and an interpreter start-up. This module measures each of those on the machine at
hand, so that the claim comes with its numbers, and so that ``--spawn posix_spawn`` (see
servers/cgi.py, ``spawn_posix``) can be seen to remove one of them and not the others.

What it measures, each ``runs`` times (plus one untimed run first, to warm the caches)
---------------------------------------------------------------------------------------
=====================  =================================================================
fork                   ``os.fork()`` of a Python process the size of a connection process,
                       whose child exits at once; then ``waitpid``. What copying the page
                       tables of some 20 MB costs, before any program runs.
fork+exec              the same child execs ``/bin/true``: the textbook way to start a
                       program (servers/cgi.py, ``spawn_fork``).
posix_spawn            ``/bin/true`` started by ``os.posix_spawn``: a child that shares the
                       parent's memory until it execs, so nothing is copied.
sh, perl, python       the family's /hello script in sh, Perl and Python, each started by
                       posix_spawn with a CGI environment: the interpreter's start-up, the
                       cost a CGI host cannot remove (the FastCGI lesson's starting point).
request fork,          ``GET /hello`` (the sh script) through our server on a kept-alive
request posix_spawn    connection, one request at a time, in each ``--spawn`` mode.
=====================  =================================================================

The process measurements run in a **probe** (loadtests/cgi_probe.py): a fresh Python that
imports the server and little else, so that it has the size of a real connection process
whatever imports this module (a notebook kernel is several times larger, and a fork of it
would cost several times more). Each run is timed on its own (wall time, with
``time.perf_counter``); the table shows the mean, the median and the best run. For the
probes it also shows the CPU time per run, from ``getrusage`` for the probe and its
reaped children together, which the noise of a busy machine moves less than wall time.

:meth:`Costs.breakdown` splits one request into its parts by subtraction (medians, so
that one disturbed run cannot make a part negative): for ``--spawn fork``, copying the
process, exec, the sh script, and what is left, the server's own work (HTTP, the
environment, pipes, reaping); for ``--spawn posix_spawn`` the same without the copy.

The floor
---------
The "sh" row is the floor of the CGI model: no host, in any language, can serve /hello
for less than starting sh and letting it run, because that is what CGI *is*. A host only
chooses what it adds on top, its own work. Compared with other hosts under load
(``make bench``), CPU time per request is that floor plus the host's work: nginx + fcgiwrap
add nginx's HTTP, a FastCGI connection per request and a fork of a small C process;
``http.server --cgi`` adds a thread, a new connection and a fork of a whole Python process
per request. So the best ratio any host of this model can reach against a peer is the
peer's cost over the floor, and our server's own work is the only part left to win on.
The table's last line says how far from the floor our server is.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.jupyter import JupyterMixin
from rich.table import Table
from rich.text import Text

from servers.launch import REPO_ROOT, ServerProcess, our_server_argv

from .cgi_probe import time_runs

__all__ = ["Cost", "Costs", "main", "measure"]

# The rows, in the table's order: key, label, what it is.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("fork", "fork + wait", "a copy of a {rss} Python process, which exits at once"),
    ("fork+exec", "fork + exec /bin/true", "the copy replaced by a tiny program"),
    ("posix_spawn", "posix_spawn /bin/true", "the same program, nothing copied first"),
    ("sh", "/hello in sh", "posix_spawn of the script: /bin/sh starts and runs it"),
    ("perl", "/hello.pl in Perl", "the same bytes from Perl: its start-up"),
    ("python", "/hello.py in Python", "the same bytes from Python: its start-up"),
    ("request fork", "GET /hello, --spawn fork", "a whole request through our server"),
    ("request posix_spawn", "GET /hello, --spawn posix_spawn", "the same, spawned"),
)


@dataclass(frozen=True)
class Cost:
    """One row: the time of one run of one step, in microseconds."""

    key: str
    label: str
    what: str
    runs: int
    mean_us: float
    median_us: float
    best_us: float
    cpu_us: float | None = None  # probes only: CPU of the probe and its children, per run


@dataclass
class Costs(JupyterMixin):
    """Every row, the probe's size, and what could not be measured here."""

    rows: list[Cost]
    rss_mb: float
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why

    def cost(self, key: str) -> Cost | None:
        return next((row for row in self.rows if row.key == key), None)

    def _median(self, key: str) -> float:
        row = self.cost(key)
        return row.median_us if row is not None else 0.0

    def breakdown(self) -> dict[str, dict[str, float]]:
        """Each request mode split into parts (µs, medians): the bars of a stacked chart."""
        script = max(0.0, self._median("sh") - self._median("posix_spawn"))
        fork, fork_exec = self._median("fork"), self._median("fork+exec")
        spawn = self._median("posix_spawn")
        parts: dict[str, dict[str, float]] = {}
        modes = (
            ("--spawn fork", "request fork", fork, max(0.0, fork_exec - fork)),
            ("--spawn posix_spawn", "request posix_spawn", 0.0, spawn),
        )
        for mode, key, copy, exec_ in modes:
            if self.cost(key) is None:
                continue
            known = {"fork: copy the process": copy, "exec": exec_, "sh runs /hello": script}
            # What is left of the request is the server's own work. It is computed from the
            # parts as shown (each clamped at zero against noise), so the bar adds up to the
            # request; if the parts already exceed it, nothing is left for the server.
            own = max(0.0, self._median(key) - sum(known.values()))
            parts[mode] = {**known, "the server's own work": own}
        return parts

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [asdict(row) for row in self.rows],
            "rss_mb": self.rss_mb,
            "skipped": self.skipped,
            "breakdown": self.breakdown(),
        }

    def __rich__(self) -> RenderableType:
        table = Table(
            title="what a CGI request's time is made of (µs per run)",
            title_justify="left",
            caption="wall time per run; CPU: the probe process and its children, per run",
            caption_justify="left",
        )
        table.add_column("step", no_wrap=True)
        table.add_column("what it is", style="dim", ratio=1)
        for column in ("runs", "mean", "median", "best", "CPU"):
            table.add_column(column, justify="right")
        for row in self.rows:
            cpu = "-" if row.cpu_us is None else f"{row.cpu_us:,.0f}"
            table.add_row(
                Text(row.label, style="bold"),
                row.what,
                str(row.runs),
                f"{row.mean_us:,.0f}",
                f"{row.median_us:,.0f}",
                f"{row.best_us:,.0f}",
                cpu,
            )
        lines: list[RenderableType] = [table]
        for mode, parts in self.breakdown().items():
            shown = ", ".join(f"{name} {us:,.0f}" for name, us in parts.items() if us)
            lines.append(Text(f"a request, {mode} (µs, medians): {shown}", style="dim"))
        floor, best = self._median("sh"), self._median("request posix_spawn")
        if floor and best:
            lines.append(
                Text(
                    f"the floor: no CGI host serves /hello in less than sh's {floor:,.0f} µs;"
                    f" a whole GET /hello through ours (--spawn posix_spawn) takes"
                    f" {best / floor:.1f}× that",
                    style="dim",
                )
            )
        for key, why in self.skipped.items():
            lines.append(Text(f"not measured: {key}: {why}", style="yellow"))
        return Group(*lines)


# ======================================================================================
# The probe's rows, and a whole request through our server
# ======================================================================================
def _run_probe(runs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.cgi_probe", str(runs)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the probe failed ({done.returncode}):\n{done.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def through_server(spawn: str, runs: int) -> list[float]:
    """Wall seconds of each of ``runs`` GET /hello on one kept-alive connection."""
    with ServerProcess(our_server_argv("cgi", "--spawn", spawn), name=f"cgi-{spawn}") as server:
        assert server.port is not None
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:

            def request() -> None:
                connection.request("GET", "/hello")
                response = connection.getresponse()
                if response.read() != b"Hello, world!\n":
                    raise RuntimeError(f"GET /hello answered {response.status}")

            walls, _ = time_runs(request, runs)  # its CPU is the client's: not shown
        finally:
            connection.close()
    return walls


# ======================================================================================
def _cost(key: str, walls: Sequence[float], cpu: float | None, rss_mb: float) -> Cost:
    label, what = next((label, what) for k, label, what in ROWS if k == key)
    return Cost(
        key=key,
        label=label,
        what=what.format(rss=f"{rss_mb:.0f} MB"),
        runs=len(walls),
        mean_us=statistics.fmean(walls) * 1e6,
        median_us=statistics.median(walls) * 1e6,
        best_us=min(walls) * 1e6,
        cpu_us=None if cpu is None else cpu * 1e6,
    )


def measure(runs: int = 200, *, requests: bool = True) -> Costs:
    """Measure every row ``runs`` times (the Python script at most 50: it takes tens of
    milliseconds a run). ``requests=False`` leaves out the two rows that start servers."""
    data = _run_probe(runs)
    rss_mb = float(data["rss_mb"])
    rows = [_cost(key, step["walls"], step["cpu"], rss_mb) for key, step in data["steps"].items()]
    if requests:
        for spawn in ("fork", "posix_spawn"):
            rows.append(_cost(f"request {spawn}", through_server(spawn, runs), None, rss_mb))
    return Costs(rows, rss_mb, dict(data["skipped"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.cgi_costs",
        description="What a CGI request's time is made of: fork, exec, interpreter start-up.",
    )
    parser.add_argument("--runs", type=int, default=200, help="runs per row (default 200)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    costs = measure(args.runs)
    Console().print(costs)
    if args.json is not None:
        args.json.write_text(json.dumps(costs.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
