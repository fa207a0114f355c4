"""What a server's processes and threads are doing, read from /proc: a small ``ps`` for lessons.

The four eras differ in one thing, the concurrency model: a process per request (CGI), a
long-running process fed records (FastCGI), a pool of threads (WSGI), tasks on one event
loop (ASGI). Lessons make that visible by looking at the server while it works. Every
server runs in its own process group (``servers.launch``), so "the server" is exactly the
set of processes whose process group id is the server's pid, and for each of them the
kernel publishes, under ``/proc/PID``::

    stat        pid, command, state, ppid, pgrp, CPU time, thread count (one line)
    cmdline     the argv, NUL-separated
    statm       memory in pages; the second field is the resident set (RSS)
    fd/         one entry per open descriptor (sockets, files, pipes)
    task/TID/   the same stat and comm per thread (the process itself is one of them)

Reading these files is what ``ps -L -o pid,tid,stat,comm -g PGID`` does; doing it here
keeps the view the same on every machine and lets it render as a rich table in a terminal
and in a notebook.

Limits, stated so a student is not misled:

* Tasks of an asyncio loop are not threads; the kernel cannot see them. The ASGI era
  shows them through its trace and ``/whoami``.
* Python 3.11 does not name its threads for the kernel, so every thread of a Python
  server is called ``python`` here; a server that wants named threads writes the name to
  ``/proc/thread-self/comm`` itself.
* Another user's process hides its ``fd/`` from us; those counts show as "?".
* A process may exit between two reads: every reader tolerates a vanished pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = [
    "ProcInfo",
    "ThreadInfo",
    "descendants",
    "listeners",
    "process_group",
    "read_process",
    "render",
]

PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# The one-letter states of proc(5), with the word a student can read.
STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk wait",
    "Z": "zombie",
    "T": "stopped",
    "t": "traced",
    "X": "dead",
    "I": "idle",
    "P": "parked",
}
# A process with many threads (a pool of 50) would fill the screen; show this many.
MAX_THREADS_SHOWN = 12


@dataclass(frozen=True)
class ThreadInfo:
    tid: int
    name: str  # /proc/PID/task/TID/comm: at most 15 bytes, set by the thread itself
    state: str  # one letter, see STATES
    cpu_seconds: float


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    name: str  # comm
    argv: tuple[str, ...]
    cpu_seconds: float
    rss_bytes: int | None
    fds: int | None  # None when we may not look (another user's process)
    threads: tuple[ThreadInfo, ...] = field(default=())

    @property
    def command(self) -> str:
        """The argv as one line, with a Python interpreter's long path shortened to ``python``."""
        if not self.argv:
            return f"[{self.name}]"  # a kernel thread, or a zombie: no cmdline
        program, *rest = self.argv
        if program == sys.executable or re.fullmatch(r"python[0-9.]*", os.path.basename(program)):
            program = "python"
        return " ".join([program, *rest])


def _parse_stat(text: str) -> tuple[str, list[str]]:
    """Split a stat line into (comm, the fields after it).

    The command name is in parentheses and may itself contain spaces and ")", so the
    fields start after the *last* ")" (proc(5)). ``fields[0]`` is the state, field 3 of
    the line; ``fields[i]`` is field ``i + 3``.
    """
    open_paren, close_paren = text.index("("), text.rindex(")")
    return text[open_paren + 1 : close_paren], text[close_paren + 2 :].split()


def _cpu(fields: list[str]) -> float:
    # utime and stime, fields 14 and 15, in clock ticks.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _read_threads(pid: int) -> tuple[ThreadInfo, ...]:
    threads = []
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(PROC / str(pid) / "task"), key=lambda e: int(e.name)):
            with contextlib.suppress(OSError, ValueError, IndexError):
                name, fields = _parse_stat(Path(entry.path, "stat").read_text())
                threads.append(ThreadInfo(int(entry.name), name, fields[0], _cpu(fields)))
    return tuple(threads)


def read_process(pid: int) -> ProcInfo | None:
    """Everything the view shows about one process; None if it is gone (or never was)."""
    base = PROC / str(pid)
    try:
        name, fields = _parse_stat((base / "stat").read_text())
        argv = tuple(
            a for a in (base / "cmdline").read_bytes().decode(errors="replace").split("\0") if a
        )
    except (OSError, ValueError, IndexError):
        return None
    rss: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        rss = int((base / "statm").read_text().split()[1]) * _PAGE_SIZE
    fds: int | None = None
    with contextlib.suppress(OSError):
        fds = len(os.listdir(base / "fd"))
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        state=fields[0],
        name=name,
        argv=argv,
        cpu_seconds=_cpu(fields),
        rss_bytes=rss,
        fds=fds,
        threads=_read_threads(pid),
    )


def _all_pids() -> list[int]:
    return sorted(int(e.name) for e in os.scandir(PROC) if e.name.isdigit())


def process_group(pgid: int) -> list[ProcInfo]:
    """Every process of one process group, the leader first, then by pid."""
    found = []
    for pid in _all_pids():
        info = read_process(pid)
        if info is not None and info.pgid == pgid:
            found.append(info)
    found.sort(key=lambda p: (p.pid != pgid, p.pid))
    return found


def descendants(pid: int) -> list[ProcInfo]:
    """A process and all its children, grandchildren, ... (by parent pid), parents first."""
    infos = {p.pid: p for p in (read_process(q) for q in _all_pids()) if p is not None}
    if pid not in infos:
        return []
    order, frontier = [infos[pid]], [pid]
    while frontier:
        parent = frontier.pop(0)
        children = sorted(q for q, p in infos.items() if p.ppid == parent and q != parent)
        order.extend(infos[c] for c in children)
        frontier.extend(children)
    return order


def listeners(port: int) -> list[int]:
    """Pids of our processes listening on TCP ``port`` (any address), for "port in use".

    /proc/net/tcp lists sockets with their inode; a process holds a socket when one of
    its fd links reads ``socket:[INODE]``. Only processes we may inspect are found.
    """
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                # State 0A is LISTEN; the port is the hex after the colon.
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return []
    pids = []
    for pid in _all_pids():
        with contextlib.suppress(OSError):
            for fd in os.scandir(PROC / str(pid) / "fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in inodes:
                        pids.append(pid)
                        break
    return pids


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1024 / 1024:.1f}M"


def render(
    procs: list[ProcInfo], title: str = "", max_threads: int = MAX_THREADS_SHOWN
) -> RenderableType:
    """A ps-like table: one row per process, then one dim row per thread beneath it."""
    if not procs:
        return Text(f"{title}: no process left" if title else "no process", style="yellow")
    table = Table(title=title or None, title_justify="left", box=None, pad_edge=False)
    for column, justify in (
        ("pid", "right"),
        ("ppid", "right"),
        ("state", "left"),
        ("thr", "right"),
        ("fds", "right"),
        ("rss", "right"),
        ("cpu s", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("command, or thread name", overflow="fold", ratio=1)
    for proc in procs:
        table.add_row(
            Text(str(proc.pid), style="bold"),
            str(proc.ppid),
            STATES.get(proc.state, proc.state),
            str(len(proc.threads)),
            "?" if proc.fds is None else str(proc.fds),
            _size(proc.rss_bytes),
            f"{proc.cpu_seconds:.2f}",
            Text(proc.command, style="bold"),
        )
        # A single-threaded process's one thread is the process itself: nothing to add.
        if len(proc.threads) > 1:
            for thread in proc.threads[:max_threads]:
                main = " (main thread)" if thread.tid == proc.pid else ""
                table.add_row(
                    Text(f"└ {thread.tid}", style="dim"),
                    "",
                    Text(STATES.get(thread.state, thread.state), style="dim"),
                    "",
                    "",
                    "",
                    Text(f"{thread.cpu_seconds:.2f}", style="dim"),
                    Text(f"thread {thread.name}{main}", style="dim"),
                )
            if len(proc.threads) > max_threads:
                more = len(proc.threads) - max_threads
                table.add_row(*[""] * 7, Text(f"… and {more} more threads", style="dim"))
    total_threads = sum(len(p.threads) for p in procs)
    summary = Text(
        f"{len(procs)} process{'es' if len(procs) != 1 else ''}, {total_threads} "
        f"thread{'s' if total_threads != 1 else ''}",
        style="dim",
    )
    return Group(table, summary)
