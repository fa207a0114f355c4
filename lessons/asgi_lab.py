"""Lesson 4's bench: what a connection, a waiting request and a thread cost, read from /proc.

The C10k argument is about memory and the kernel's limits, so lesson 4 measures it on the
servers themselves instead of quoting numbers: hold N connections (or N requests in
flight) against a running server, and read its memory from ``/proc/PID/status`` before
and after. The difference divided by N is the price of one.

Two columns, because a thread and a task differ in two ways that are easy to confuse:

* **resident** (``VmRSS``): the RAM the kernel has actually given the process, page by page,
  as it touched memory. This is what ten thousand of something cost in RAM.
* **address space** (``VmSize``): what the process has *reserved*. A thread's stack is a
  reservation of ``ulimit -s`` (8 MiB on most Linux systems) of which the kernel backs only
  the pages the thread touches; :func:`thread_stacks` shows both numbers for each stack,
  from ``/proc/PID/smaps``. Reservations are free until they run out: a 32-bit process
  has 3 GiB of them, and ``ulimit -v``, cgroups and the kernel's thread and pid limits
  (:func:`thread_limits`) bound what a 64-bit one may have.

The client side is deliberately plain (blocking sockets, one request each, no threads):
the lesson's own process must not be what is measured, and a few hundred sockets opened
one after the other take well under a second on loopback.

How the lesson uses it::

    from lessons.asgi_lab import CostTable, hold, thread_cost

    costs = hold(server("loop"), 300)   # 300 idle connections, then a /sleep waiting on each
    costs += [thread_cost(server("pool"), server("pool304"))]  # what one more thread costs
    CostTable(costs)                    # per connection, per request, per thread, in KiB
"""

from __future__ import annotations

import itertools
import os
import resource
import select
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Group, RenderableType
from rich.jupyter import JupyterMixin
from rich.table import Table
from rich.text import Text

from .client import read_responses
from .lab import LabServer

__all__ = [
    "Cost",
    "CostTable",
    "Footprint",
    "StackMapping",
    "answers",
    "footprint",
    "hold",
    "room_for",
    "stack_summary",
    "thread_cost",
    "thread_limits",
    "thread_stacks",
]

HELLO = b"GET /hello HTTP/1.1\r\nHost: lesson-4\r\n\r\n"


# -- reading the server --------------------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """A server process at one moment: memory in KiB, threads, descriptors."""

    rss_kib: int  # VmRSS: resident, backed by RAM
    size_kib: int  # VmSize: address space reserved
    threads: int
    fds: int


def footprint(pid: int) -> Footprint:
    """The memory, threads and descriptors of process ``pid`` (our servers are one process
    each: the asyncio one and the threaded one; a forking server would need its group)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        raise RuntimeError(f"process {pid} is gone: has the server stopped?") from None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def number(name: str) -> int:
        return int(fields.get(name, "0").split()[0])

    return Footprint(number("VmRSS"), number("VmSize"), number("Threads"), fds)


def _settled(pid: int, quiet: float = 0.15, limit: float = 2.0) -> Footprint:
    """The footprint once the resident size has not changed for ``quiet`` seconds: the
    server has read what we sent and started what it will start (a thread takes its
    request, a task reaches its first await)."""
    deadline = time.monotonic() + limit
    last = footprint(pid)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = footprint(pid)
        if now.rss_kib != last.rss_kib:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


@dataclass(frozen=True)
class StackMapping:
    """One thread's stack, as the kernel maps it: reserved, and the part that is resident."""

    size_kib: int
    rss_kib: int


@dataclass
class _Mapping:
    start: int
    end: int
    perms: str
    anonymous: bool
    size_kib: int = 0
    rss_kib: int = 0


def thread_stacks(pid: int) -> list[StackMapping]:
    """The stacks of the threads a process started, from ``/proc/PID/smaps``.

    glibc gives each new thread an anonymous mapping of the stack size (``ulimit -s``)
    with one inaccessible *guard page* just below it, so that running off the end faults
    instead of scribbling on a neighbour: that pair is how a stack is told apart from the
    heap here. (The main thread's stack is the ``[stack]`` mapping, not counted.)
    """
    mappings: list[_Mapping] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(" ", 1)[0]
        if "-" in first and ":" not in first:  # a mapping's header: start-end perms offset ...
            low, high = first.split("-")
            parts = line.split()
            # An anonymous mapping has five fields; a sixth names a file, [heap] or [stack].
            mappings.append(_Mapping(int(low, 16), int(high, 16), parts[1], len(parts) == 5))
        elif line.startswith("Size:") and mappings:
            mappings[-1].size_kib = int(line.split()[1])
        elif line.startswith("Rss:") and mappings:
            mappings[-1].rss_kib = int(line.split()[1])
    page_kib = resource.getpagesize() // 1024
    stacks = []
    for guard, stack in itertools.pairwise(mappings):
        if (
            guard.perms == "---p"
            and guard.size_kib == page_kib
            and stack.perms == "rw-p"
            and stack.anonymous
            and stack.start == guard.end
        ):
            stacks.append(StackMapping(stack.size_kib, stack.rss_kib))
    return stacks


def stack_summary(pid: int) -> str:
    """One line on the thread stacks of ``pid``: how many, reserved and resident."""
    stacks = thread_stacks(pid)
    if not stacks:
        return (
            f"no thread stack recognised in /proc/{pid}/smaps (a C library other than glibc "
            "lays them out differently)"
        )
    reserved = sorted({s.size_kib for s in stacks})
    low, high = min(s.rss_kib for s in stacks), max(s.rss_kib for s in stacks)
    return (
        f"{len(stacks)} thread stacks in /proc/{pid}/smaps: "
        f"{'/'.join(f'{r:,}' for r in reserved)} KiB reserved each, "
        f"{low if low == high else f'{low} to {high}'} KiB of it resident"
    )


def thread_limits() -> dict[str, str]:
    """What bounds the number of threads on this machine, as the kernel reports it."""

    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return "?"

    def limit(which: int) -> str:
        soft = resource.getrlimit(which)[0]
        return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft:,}"

    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    return {
        "kernel.threads-max (threads, whole machine)": read("/proc/sys/kernel/threads-max"),
        "kernel.pid_max (every thread takes an id)": read("/proc/sys/kernel/pid_max"),
        "vm.max_map_count (a thread's stack and guard: 2)": read("/proc/sys/vm/max_map_count"),
        "ulimit -u (processes and threads, per user)": limit(resource.RLIMIT_NPROC),
        "ulimit -s (a new thread's stack)": (
            "unlimited" if stack == resource.RLIM_INFINITY else f"{stack // 1024:,} KiB"
        ),
    }


# -- holding connections -------------------------------------------------------------------------
def room_for(count: int, spare: int = 64) -> None:
    """Each socket is a descriptor: lift our soft limit towards the hard one if ``count``
    more (and ``spare`` for what the lesson already has open) would not fit under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + spare
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeError(
            f"{count:,} connections need {needed:,} file descriptors and this shell allows "
            f"{hard:,} (ulimit -Hn): ask for fewer"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextmanager
def _connections(server: LabServer, count: int) -> Iterator[list[socket.socket]]:
    room_for(count)
    with ExitStack() as stack:
        socks = []
        for i in range(count):
            try:
                sock = socket.create_connection(server.process.address, timeout=10)
            except OSError as error:
                raise RuntimeError(
                    f"connection {i + 1} of {count} to {server.name} failed: "
                    f"{error.strerror or error}"
                ) from None
            stack.enter_context(sock)
            socks.append(sock)
        yield socks


@dataclass(frozen=True)
class Cost:
    """What ``count`` of something cost a server: its footprint before and after."""

    what: str
    server: str
    count: int
    before: Footprint
    after: Footprint
    note: str = ""  # what happened meanwhile, in words

    @property
    def rss_each(self) -> float:
        return (self.after.rss_kib - self.before.rss_kib) / self.count

    @property
    def size_each(self) -> float:
        return (self.after.size_kib - self.before.size_kib) / self.count


def hold(server: LabServer, count: int = 500, ms: int = 1500) -> list[Cost]:
    """Two measurements on the same ``count`` connections, in the order that keeps them
    honest (memory a server frees stays in its resident set, so a second measurement on
    a fresh set of connections would reuse the first one's and under-count):

    1. open them, send ``GET /hello`` on each and read the answer, so that each one is an
       established keep-alive connection the server holds; with all of them idle, measure;
    2. send ``GET /sleep?ms=MS`` on every one of them at once; while they all wait,
       measure again; then read every answer. All ``200`` after about ``ms`` (not
       ``count`` times ``ms``) proves that they waited together.
    """
    pid = server.pid
    before = _settled(pid)
    sleep = f"GET /sleep?ms={ms} HTTP/1.1\r\nHost: lesson-4\r\n\r\n".encode()
    with _connections(server, count) as socks:
        for sock in socks:
            sock.sendall(HELLO)
            answer = read_responses(sock, [b"GET"], 1, timeout=10)
            if [r.status for r in answer.finals] != [200] or answer.closed:
                raise RuntimeError(f"{server.name} did not answer /hello and keep the connection")
        idle = _settled(pid)
        started = time.monotonic()
        for sock in socks:
            sock.sendall(sleep)
        waiting = _settled(pid, limit=ms / 1000 * 0.6)
        statuses = answers(socks, timeout=ms / 1000 + 30)
        seconds = time.monotonic() - started
    answered = statuses.count(200)
    if answered != count:
        others = sorted(set(statuses) - {200})
        raise RuntimeError(
            f"only {answered} of {count} sleeping requests were answered 200 by {server.name} "
            f"(others: {others or 'no answer'}); does it have room for {count} at once?"
        )
    return [
        Cost(
            "an idle connection",
            server.name,
            count,
            before,
            idle,
            f"{count} connections held, {idle.fds} descriptors, "
            f"{idle.threads} thread{'s' if idle.threads != 1 else ''}",
        ),
        Cost(
            "+ a request waiting",
            server.name,
            count,
            idle,
            waiting,
            f"{count} requests of {ms} ms all answered 200 after {seconds:.2f} s: together",
        ),
    ]


def answers(socks: list[socket.socket], timeout: float) -> list[int]:
    """The status of the one response expected on each socket, read as they come."""
    pending = {sock.fileno(): sock for sock in socks}
    heads: dict[int, bytes] = dict.fromkeys(pending, b"")
    statuses: dict[int, int] = {}
    poller = select.epoll()
    with poller:
        for fd in pending:
            poller.register(fd, select.EPOLLIN)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(0.1):
                try:
                    chunk = pending[fd].recv(65536)
                except OSError:
                    chunk = b""
                heads[fd] += chunk
                head, sep, _ = heads[fd].partition(b"\r\n\r\n")
                if not chunk or sep:
                    parts = head.split(b" ", 2)
                    statuses[fd] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                    poller.unregister(fd)
                    del pending[fd]
    return [statuses.get(sock.fileno(), 0) for sock in socks]


def thread_cost(small: LabServer, big: LabServer) -> Cost:
    """Two thread-pool servers that differ only in ``--threads``: the difference in their
    footprints, per thread, is what one idle pool thread costs."""
    a, b = _settled(small.pid), _settled(big.pid)
    extra = b.threads - a.threads
    if extra <= 0:
        raise RuntimeError(f"{big.name} should have more threads than {small.name}")
    return Cost(
        "an idle pool thread",
        f"{small.name} → {big.name}",
        extra,
        a,
        b,
        f"{a.threads} threads, then {b.threads}",
    )


# -- showing it ----------------------------------------------------------------------------------
@dataclass
class CostTable(JupyterMixin):
    """Costs side by side, per unit, in KiB."""

    costs: list[Cost]

    def __init__(self, costs: Iterable[Cost]) -> None:
        self.costs = list(costs)

    def __rich__(self) -> RenderableType:
        table = Table(
            title="what one costs, KiB: resident (RSS), reserved (address space)",
            title_justify="left",
        )
        table.add_column("one …", no_wrap=True)
        table.add_column("server", no_wrap=True)
        table.add_column("N", justify="right")
        table.add_column("RSS", justify="right")
        table.add_column("reserved", justify="right")
        for cost in self.costs:
            table.add_row(
                cost.what,
                cost.server,
                f"{cost.count:,}",
                f"{cost.rss_each:,.1f}",
                f"{cost.size_each:,.0f}",
            )
        notes = [Text(f"{c.server}: {c.note}", style="dim") for c in self.costs if c.note]
        return Group(table, *notes)

    def __str__(self) -> str:
        return "\n".join(
            f"{c.what} ({c.server}, N={c.count}): {c.rss_each:.1f} KiB resident, "
            f"{c.size_each:.0f} KiB address space"
            for c in self.costs
        )
