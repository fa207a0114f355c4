"""Lesson 5's bench: the four models' price per connection, the kernel's readiness calls, a
small showdown, and SO_REUSEPORT, each measured live on this machine.

Lesson 4 measured a task against a thread, on one process each (``lessons.asgi_lab``).
Lesson 5 puts the four eras side by side, and two of them are more than one process: a
CGI server forks a child per connection and that child execs a script per request; the
FastCGI gateway starts an application server. So "the server" here is its whole
**process tree**, the process we started and every descendant, read from /proc (as
``loadtests.procstats`` samples it for the showdown). Not its process group: a CGI script
runs in a process group of its own (so that a timeout can kill it and whatever it
started), so it is in the server's tree but not in its group. For each member: threads,
open descriptors, resident memory (RSS), and one number that is too slow to sample ten
times a second:

* **PSS**, the *proportional* set size, from ``/proc/PID/smaps_rollup``: each page counted
  once, split between the processes that share it. A forked CGI child shares most of its
  pages with its parent until it writes to them, so the sum of the resident sets counts
  those pages once per child; the sum of PSS is what the tree really takes from RAM. For
  a server of one process the two differ only by the shared libraries.

What :func:`hold` does to each server, all servers at once (separate trees: what one
spends does not show in another's numbers):

1. **at rest**: the tree's footprint once nothing changes any more;
2. **N idle connections**: open N connections and send nothing yet. Each model pays its
   price per connection: a forked process (CGI), a state object in an event loop (the
   FastCGI gateway, the WSGI server's I/O thread, the ASGI loop);
3. **+ N requests waiting**: send ``GET /sleep?ms=MS`` on every one and measure while they
   all wait. Now CGI execs a script per request, the FastCGI gateway opens a connection to
   its application server per request (which gives it a thread), a WSGI worker thread
   takes each request, and ASGI starts a task;
4. read every answer: all ``200`` after about MS (not N times MS) proves they waited
   together.

A thread pool starts its threads with the server, so the request a WSGI thread takes
costs little *more*; the thread itself was paid at start. :func:`pool_thread_cost`
measures that price as lesson 4 did: two pools that differ only in size.

The rest of the module: :func:`readiness_costs` times ``select``, ``poll`` and ``epoll``
over thousands of descriptors (why the C10k answer needed a new system call),
:func:`small_showdown` runs ``loadtests.showdown`` at a classroom scale and writes its
results and charts, and :func:`reuseport_demo` shows the kernel sharing one port between
several listening sockets, the first step beyond one process.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import resource
import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.jupyter import JupyterMixin
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loadtests.measure import Measurement
from loadtests.showdown import Showdown, write_results
from servers.launch import REPO_ROOT

from . import procview
from .asgi_lab import answers, room_for
from .lab import LabServer

__all__ = [
    "Footprint",
    "ModelCost",
    "ModelTable",
    "ReadinessTable",
    "ShowdownSummary",
    "hold",
    "little",
    "pool_thread_cost",
    "readiness_costs",
    "reuseport_demo",
    "small_showdown",
    "tree_footprint",
]

PAGE_KIB = resource.getpagesize() // 1024
SHOWDOWN_OUT = REPO_ROOT / "results" / "lesson-5-showdown"


# -- reading a process tree ----------------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """A server's process tree at one moment: counts, and memory in KiB."""

    processes: int
    threads: int
    fds: int
    rss_kib: int  # the sum of the resident sets: a shared page counted once per process
    pss_kib: int  # the sum of the proportional sets: a shared page split between sharers


def _pss_kib(pid: int) -> int:
    """``Pss:`` of /proc/PID/smaps_rollup (Linux 4.14+), in KiB; 0 for a process gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    """The children of ``pid``, from /proc/PID/task/TID/children (Linux 3.5+), or by
    reading every process's parent where the kernel does not list children."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except FileNotFoundError:
            return [p.pid for p in procview.descendants(pid) if p.ppid == pid]
        except OSError:
            continue
    return found


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    order, stack = [], [pid]
    while stack:
        current = stack.pop()
        order.append(current)
        stack.extend(_children(current))
    return order


def _counts(pid: int) -> tuple[int, int, int, int]:
    """(processes, threads, fds, RSS KiB) of the tree under ``pid``, zombies left out. From
    /proc/PID/stat (proc(5): the state, num_threads, rss in pages) and /proc/PID/fd."""
    processes = threads = fds = rss_kib = 0
    for member in _tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
            count = len(os.listdir(f"/proc/{member}/fd"))
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3, the state
        if fields[0] in "ZX":
            continue
        processes += 1
        threads += int(fields[17])  # (20) num_threads
        rss_kib += int(fields[21]) * PAGE_KIB  # (24) rss, in pages
        fds += count
    return processes, threads, fds, rss_kib


def tree_footprint(pid: int) -> Footprint:
    """Processes, threads, descriptors, RSS and PSS of ``pid`` and all its descendants.

    The tree, not the process group (as ``loadtests.procstats.read_group``): a CGI server puts
    each script in a process group of its own, so that a timeout can kill the script and
    whatever it started, so a script is in the server's tree but not in its group."""
    processes, threads, fds, rss_kib = _counts(pid)
    if processes == 0:
        raise RuntimeError(f"process {pid} is gone: has the server stopped?")
    pss = sum(_pss_kib(member) for member in _tree(pid))
    return Footprint(processes, threads, fds, rss_kib, pss)


def _settled(
    pid: int,
    want: Callable[[int, int], bool] = lambda processes, threads: True,
    quiet: float = 0.3,
    limit: float = 5.0,
) -> Footprint:
    """The footprint once ``want(processes, threads)`` holds and the counts and the RSS
    have not changed for ``quiet`` seconds: the server has done what our last move asked
    (a child forked, a script started, a task reached its first await). After ``limit``
    seconds, whatever it is then."""
    deadline = time.monotonic() + limit
    last = _counts(pid)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = _counts(pid)
        if now != last or not want(now[0], now[1]):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return tree_footprint(pid)


# -- the price of a connection and of a request, per model ---------------------------------------
@dataclass(frozen=True)
class ModelCost:
    """What ``count`` of something cost one server: its footprint before and after."""

    era: str
    what: str
    count: int
    before: Footprint
    after: Footprint
    note: str = ""

    def _each(self, name: str) -> float:
        after: int = getattr(self.after, name)
        before: int = getattr(self.before, name)
        return (after - before) / self.count

    @property
    def rss_each(self) -> float:
        return self._each("rss_kib")

    @property
    def pss_each(self) -> float:
        return self._each("pss_kib")

    @property
    def processes(self) -> int:
        return self.after.processes - self.before.processes

    @property
    def threads(self) -> int:
        return self.after.threads - self.before.threads

    @property
    def fds(self) -> int:
        return self.after.fds - self.before.fds


# What a waiting request adds, in each model (the ``what`` column of the table).
WAITING = {
    "cgi": "+ request: a script",
    "fastcgi": "+ req: FCGI conn.",
    "wsgi": "+ req: busy thread",
    "asgi": "+ request: a task",
}
CGI_START_SECONDS = 10.0  # more time for CGI's scripts to start (see hold)
SETTLE_ORDER = {"asgi": 0, "wsgi": 1, "fastcgi": 2, "cgi": 3}
IDLE = {
    "cgi": "idle: a process",
}


def _kib(value: float) -> str:
    """1,558 or 17.6: a decimal only where it means something."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _era_of(server: LabServer) -> str:
    """The era a lab server runs (``python -m servers ERA ...``), else its name."""
    argv = server.process.argv
    if len(argv) >= 4 and list(argv[1:3]) == ["-m", "servers"]:
        return argv[3]
    return server.name


def _wanted_when_idle(era: str, rest: Footprint, count: int) -> Callable[[int, int], bool]:
    """What must be true once ``count`` connections are open: a process each, for CGI."""
    if era == "cgi":
        return lambda processes, threads: processes >= rest.processes + count
    return lambda processes, threads: True


def _wanted_when_waiting(era: str, idle: Footprint, count: int) -> Callable[[int, int], bool]:
    """What must be true once ``count`` requests wait, for the models that grow a visible
    unit per request: a script process (CGI), an application-server thread (FastCGI)."""
    if era == "cgi":
        return lambda processes, threads: processes >= idle.processes + count
    if era == "fastcgi":
        return lambda processes, threads: threads >= idle.threads + count
    return lambda processes, threads: True


def hold(plan: Sequence[tuple[LabServer, int]], ms: int = 3000) -> list[ModelCost]:
    """Hold N idle connections, then N waiting requests, against each server of ``plan``
    (``(server, N)`` pairs), all at once; two :class:`ModelCost` per server, in order.
    See the module docstring for the steps and why."""
    room_for(sum(count for _, count in plan), spare=256)
    sleep = f"GET /sleep?ms={ms} HTTP/1.1\r\nHost: lesson-5\r\nConnection: close\r\n\r\n"
    with ExitStack() as stack:
        rest = [_settled(server.pid, quiet=0.2) for server, _ in plan]
        opened: list[list[socket.socket]] = []
        for server, count in plan:
            socks = []
            for i in range(count):
                try:
                    sock = socket.create_connection(server.process.address, timeout=10)
                except OSError as error:
                    raise RuntimeError(
                        f"connection {i + 1} of {count} to {server.name} failed: "
                        f"{error.strerror or error}"
                    ) from None
                socks.append(stack.enter_context(sock))
            opened.append(socks)
        # A CGI server forks a process per connection: wait for all of them.
        idle = [
            _settled(server.pid, _wanted_when_idle(_era_of(server), base, count))
            for (server, count), base in zip(plan, rest, strict=True)
        ]
        started = time.monotonic()
        for socks in opened:
            for sock in socks:
                sock.sendall(sleep.encode())
        # Measured while every request still waits: one deadline for all, the models that
        # settle at once first, CGI (a script to exec per request) last.
        deadline = started + ms / 1000 * 0.8
        waiting: dict[int, Footprint] = {}
        order = sorted(range(len(plan)), key=lambda i: SETTLE_ORDER.get(_era_of(plan[i][0]), 0))
        for i in order:
            server, count = plan[i]
            # A CGI script starts to sleep only once it has started, which on a busy
            # machine may be seconds after its request: it gets more time.
            extra = CGI_START_SECONDS if _era_of(server) == "cgi" else 0.0
            waiting[i] = _settled(
                server.pid,
                _wanted_when_waiting(_era_of(server), idle[i], count),
                limit=max(0.1, deadline + extra - time.monotonic()),
            )
        statuses = answers([s for socks in opened for s in socks], timeout=ms / 1000 + 30)
        seconds = time.monotonic() - started
    costs = []
    offset = 0
    busy_list = [waiting[i] for i in range(len(plan))]
    for (server, count), base, held, busy in zip(plan, rest, idle, busy_list, strict=True):
        era = _era_of(server)
        answered = statuses[offset : offset + count]
        offset += count
        if answered.count(200) != count:
            others = sorted(set(answered) - {200})
            raise RuntimeError(
                f"only {answered.count(200)} of {count} sleeping requests were answered 200 "
                f"by {server.name} (others: {others or 'no answer'}); does it have room for "
                f"{count} at once?"
            )
        note = f"{count} requests of {ms} ms answered 200 in {seconds:.1f} s: together"
        units = count
        if era == "cgi":
            # Divide by the scripts alive when measured: on a busy machine the first may
            # have finished before the last one started.
            scripts = busy.processes - held.processes
            if scripts <= 0:
                raise RuntimeError(
                    f"no CGI script was running when {server.name} was measured: the "
                    f"machine is too busy to start {count} scripts in {ms} ms; ask for "
                    "fewer connections or a longer sleep"
                )
            if scripts < count:
                units = scripts
                note += f"; {scripts} of {count} scripts alive at once when measured"
        costs.append(ModelCost(era, IDLE.get(era, "idle connection"), count, base, held))
        costs.append(ModelCost(era, WAITING.get(era, "+ its request"), units, held, busy, note))
    return costs


def pool_thread_cost(small: LabServer, big: LabServer) -> ModelCost:
    """Two pools that differ only in ``--threads``: the difference, per thread, is what one
    idle pool thread costs (paid when the server starts, before any request)."""
    a, b = _settled(small.pid, quiet=0.2), _settled(big.pid, quiet=0.2)
    extra = b.threads - a.threads
    if extra <= 0:
        raise RuntimeError(f"{big.name} should have more threads than {small.name}")
    return ModelCost(
        _era_of(big), "pool thread (start)", extra, a, b,
        f"{small.name}: {a.threads} threads, {big.name}: {b.threads}",
    )  # fmt: skip


@dataclass
class ModelTable(JupyterMixin):
    """The costs side by side, per unit: counts added, memory in KiB."""

    costs: list[ModelCost]

    def __init__(self, costs: Iterable[ModelCost]) -> None:
        self.costs = list(costs)

    def __rich__(self) -> RenderableType:
        table = Table(
            title="what one costs, in KiB (RSS, PSS), and what N of them added",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        table.add_column("era", no_wrap=True)
        table.add_column("one …", no_wrap=True)
        for name in ("N", "+proc", "+thr", "+fd", "RSS", "PSS"):
            table.add_column(name, justify="right", no_wrap=True)
        previous = ""
        for c in self.costs:
            table.add_row(
                c.era if c.era != previous else "", c.what, f"{c.count:,}", f"{c.processes:+,}",
                f"{c.threads:+,}", f"{c.fds:+,}", _kib(c.rss_each), _kib(c.pss_each),
            )  # fmt: skip
            previous = c.era
        notes = [Text(f"{c.era}: {c.note}", style="dim") for c in self.costs if c.note]
        return Group(table, *notes)

    def __str__(self) -> str:
        return "\n".join(
            f"{c.era} {c.what} (N={c.count}): {c.processes:+} processes, {c.threads:+} threads, "
            f"{c.fds:+} fds, {c.rss_each:.1f} KiB RSS, {c.pss_each:.1f} KiB PSS each"
            for c in self.costs
        )

    def per_request(self) -> dict[str, tuple[float, float]]:
        """Each era's whole price of one request waiting on its own connection, in KiB:
        (RSS, PSS), the sum of its rows (the pool thread included for a pool)."""
        totals: dict[str, tuple[float, float]] = {}
        for c in self.costs:
            rss, pss = totals.get(c.era, (0.0, 0.0))
            totals[c.era] = (rss + c.rss_each, pss + c.pss_each)
        return totals


# -- why epoll: the cost of asking the kernel which sockets are ready ----------------------------
@dataclass(frozen=True)
class ReadinessRow:
    watched: int  # descriptors watched, all idle but one
    select_us: float | None  # None: select() cannot watch that many
    poll_us: float
    epoll_us: float


@contextlib.contextmanager
def _watched(count: int) -> Iterator[tuple[list[int], socket.socket]]:
    """``count`` descriptors to watch: ``count - 1`` of an idle socket (dup()s of one end of
    a socket pair, which nobody writes to) and, last, one end with a byte waiting."""
    room_for(count + 4, spare=256)
    idle_a, idle_b = socket.socketpair()
    ready_a, ready_b = socket.socketpair()
    fds: list[int] = []
    try:
        ready_b.send(b"x")
        fds = [os.dup(idle_a.fileno()) for _ in range(count - 1)] + [ready_a.fileno()]
        yield fds, ready_a
    finally:
        for fd in fds[:-1]:
            os.close(fd)
        for sock in (idle_a, idle_b, ready_a, ready_b):
            sock.close()


def _best_of(call: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` calls, in microseconds: the others met a busy CPU."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def readiness_costs(
    counts: Sequence[int] = (10, 100, 1000, 10000), repeat: int = 20
) -> ReadinessTable:
    """One call of each readiness API over ``count`` descriptors of which one is ready.

    ``select`` and ``poll`` hand the kernel the whole list at every call and the kernel
    looks at every descriptor in it: the time grows with the number watched. An ``epoll``
    instance keeps the list in the kernel, registered once, and the kernel keeps a ready
    list as packets arrive: ``epoll_wait`` returns the ready ones without looking at the
    rest. ``select`` also stops at FD_SETSIZE (1024): a descriptor numbered above it is
    refused. A count that does not fit under this shell's descriptor limit is skipped."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    table = ReadinessTable([])
    for count in counts:
        if hard != resource.RLIM_INFINITY and count + 300 > hard:
            table.skipped.append(count)
            continue
        with _watched(count) as (fds, ready):
            select_us: float | None = None
            if max(fds) < 1024:  # FD_SETSIZE: select()'s bitmaps have 1024 bits
                select_us = _best_of(functools.partial(select.select, fds, [], [], 0), repeat)
            poller = select.poll()
            for fd in fds:
                poller.register(fd, select.POLLIN)
            poll_us = _best_of(functools.partial(poller.poll, 0), repeat)
            epoll = select.epoll()
            with epoll:
                for fd in fds:
                    epoll.register(fd, select.EPOLLIN)
                found = epoll.poll(0)
                if [fd for fd, _ in found] != [ready.fileno()]:
                    raise RuntimeError(f"epoll found {found}, not the one ready socket")
                epoll_us = _best_of(functools.partial(epoll.poll, 0), repeat)
        table.rows.append(ReadinessRow(count, select_us, poll_us, epoll_us))
    return table


@dataclass
class ReadinessTable(JupyterMixin):
    rows: list[ReadinessRow]
    skipped: list[int] = field(default_factory=list)  # counts over the descriptor limit

    def __rich__(self) -> RenderableType:
        table = Table(
            title="µs per call, with one descriptor ready",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for name in ("watched", "select()", "poll()", "epoll_wait()"):
            table.add_column(name, justify="right", no_wrap=True)
        for r in self.rows:
            table.add_row(
                f"{r.watched:,}",
                "refused (fd ≥ 1024)" if r.select_us is None else f"{r.select_us:,.1f}",
                f"{r.poll_us:,.1f}",
                f"{r.epoll_us:,.1f}",
            )
        if not self.skipped:
            return table
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        note = Text(
            f"skipped {', '.join(f'{n:,}' for n in self.skipped)}: over this shell's limit "
            f"of {limit:,} descriptors (ulimit -Hn)",
            style="yellow",
        )
        return Group(table, note)


# -- the showdown, at a classroom scale ----------------------------------------------------------
@dataclass
class ShowdownSummary(JupyterMixin):
    """A small showdown's results, its files, and what each run's numbers imply."""

    showdown: Showdown
    out: Path
    written: dict[str, Path]
    command: str
    seconds: float = 0.0

    @property
    def results(self) -> list[Measurement]:
        return self.showdown.results

    @property
    def charts(self) -> list[Path]:
        return sorted(p for p in self.written.values() if p.suffix == ".png")

    def __rich__(self) -> RenderableType:
        table = Table(
            title=(
                f"the showdown, small: {len(self.results)} runs in {self.seconds:.0f} s "
                "(ms; ok/s: answered 200)"
            ),
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for name, justify in (
            ("era", "left"), ("users", "right"), ("status", "left"), ("ok/s", "right"),
            ("p50", "right"), ("p99", "right"), ("errors", "right"),
            ("procs", "right"), ("thr", "right"), ("MiB", "right"),
        ):  # fmt: skip
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for m in self.results:
            table.add_row(
                m.era, f"{m.users:,}", "ok" if m.status == "ok" else f"[red]{m.status}[/]",
                f"{m.ok_rps:,.0f}", _ms(m.p50), _ms(m.p99),
                f"{m.failure_ratio:.0%}" if m.requests else "-",
                str(m.server_processes), str(m.server_threads), f"{m.server_peak_mib:,.0f}",
            )  # fmt: skip
        # The command on one line, however narrow the console: it is to be copied.
        command = Text(self.command, style="bold", no_wrap=True, overflow="ignore")
        lines: list[RenderableType] = [command, table]
        for gave_up in self.showdown.gave_up:
            lines.append(
                Text(
                    f"{gave_up['era']} gave up at {gave_up['users']:,} users: {gave_up['how']}",
                    style="yellow",
                )
            )
        lines.append(Text(f"written to {_shown(self.out)}/:", style="bold"))
        for path in sorted(self.written.values()):
            lines.append(Text(f"  {_shown(path)}"))
        return Group(*lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it: shorter, and the same on
    every machine."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(REPO_ROOT))
    return str(path)


def _clean(out: Path) -> None:
    """Remove a previous small showdown's files (only those it writes) from ``out``."""
    for pattern in ("*.png", "results.json", "results.csv"):
        for path in out.glob(pattern):
            path.unlink()


def small_showdown(
    eras: Sequence[str] = ("wsgi", "asgi"),
    levels: Sequence[int] = (5, 20),
    workload: str = "sleep",
    seconds: float = 2.0,
    sleep_ms: int = 100,
    out: Path | None = None,
    add_to: ShowdownSummary | None = None,
) -> ShowdownSummary:
    """``python -m loadtests.showdown`` at a classroom scale, in this process: the same
    :class:`loadtests.showdown.Showdown` (a fresh server per run, locust in its own
    process, an era that gives up is not pushed further) and the same files
    (:func:`loadtests.showdown.write_results`: results.json, results.csv, the charts), in
    ``out`` (``results/lesson-5-showdown/`` by default, replaced at every run).

    ``add_to``: a previous summary to extend with more eras (same levels and workload),
    so that a notebook can run one era per cell and still get one set of charts."""
    if add_to is not None:
        previous = add_to.showdown
        levels, seconds, sleep_ms = previous.levels, previous.seconds, previous.sleep_ms
        workload, out = previous.workloads[0], add_to.out
    # Absolute: locust runs in the repository's folder, a notebook in notebooks/.
    out = (out if out is not None else SHOWDOWN_OUT).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    showdown = Showdown(list(eras), [workload], sorted(levels), seconds, sleep_ms, 0.5)
    # Showdown.run draws a live view; here it draws into nothing (a lesson step prints its
    # output when it ends, and a notebook shows the summary).
    quiet = Console(file=io.StringIO(), force_terminal=False, force_jupyter=False)
    started = time.monotonic()
    with Live(showdown, console=quiet, auto_refresh=False) as live:
        showdown.run(live, out)
    seconds_taken = time.monotonic() - started
    if add_to is not None:  # one showdown with the eras of both, as if run in one go
        previous = add_to.showdown
        showdown.eras = previous.eras + showdown.eras
        showdown.results = previous.results + showdown.results
        showdown.gave_up = previous.gave_up + showdown.gave_up
        seconds_taken += add_to.seconds
    argv = [
        "--eras", ",".join(showdown.eras), "--levels", ",".join(map(str, showdown.levels)),
        "--workloads", workload, "--seconds", f"{seconds:g}", "--sleep-ms", str(sleep_ms),
    ]  # fmt: skip
    written = write_results(showdown, out, argv)
    command = "make showdown ARGS='" + " ".join(argv) + "'"
    return ShowdownSummary(showdown, out, written, command, seconds_taken)


def little(m: Measurement) -> float:
    """Little's law, L = λ W: the requests in the server at once, on average, from the
    rate it answered them (λ, per second) and the time each one spent (W, the median)."""
    return m.ok_rps * (m.p50 or 0.0) / 1000


# -- beyond one process: one port, several listening sockets -------------------------------------
@dataclass
class ReuseportResult:
    listeners: int
    connections: int
    accepted: list[int] = field(default_factory=list)  # per listening socket


def reuseport_demo(listeners: int = 4, connections: int = 400) -> ReuseportResult:
    """``listeners`` sockets bound to the *same* port with SO_REUSEPORT (Linux 3.9), then
    ``connections`` connections to it: the kernel spreads them over the sockets (by a hash
    of each connection's addresses and ports). In a server, each socket belongs to another
    process, one per core, each with its own event loop: no process accepts for the others.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("this system has no SO_REUSEPORT")
    room_for(2 * connections + listeners, spare=256)
    result = ReuseportResult(listeners, connections)
    with ExitStack() as stack:
        socks = []
        port = 0
        for _ in range(listeners):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", port))
            port = sock.getsockname()[1]  # the first one chose it; the others share it
            sock.listen(connections)
            sock.setblocking(False)
            socks.append(sock)
        for _ in range(connections):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        for sock in socks:
            count = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    accepted, _ = sock.accept()
                    accepted.close()
                    count += 1
            result.accepted.append(count)
    if sum(result.accepted) != connections:
        raise RuntimeError(f"{sum(result.accepted)} of {connections} connections were accepted")
    return result
