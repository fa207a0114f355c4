"""What a server costs while it works: its process group, sampled from /proc several times a second.

Why this module exists
----------------------
The four eras differ in what one waiting request costs: a process (CGI), a worker thread
fed records (FastCGI), a thread (WSGI), a task (ASGI). locust tells us what the clients
saw; this tells us what the *server* spent to show it: how many processes and threads it
ran, how many descriptors it held open, how much memory, how much CPU. The showdown, the
C10k demo and ``make demo`` all put these numbers beside locust's.

How it works
------------
Every gatewaylab server runs in its own process group (``servers.launch``), and every
process it starts is a descendant of that group's leader: a CGI server's connection
children and their scripts, the FastCGI gateway and the application server it started.
So "the server" is the leader and everything below it. (Not the process group alone: the
CGI server puts each script in a group of its own, so that a timeout can kill the
script's whole group and nothing else.) A background thread wakes every ``interval`` seconds
(0.1 s: ten samples a second), finds those processes, and reads for each (proc(5))::

    /proc/PID/stat     state, pgrp, utime, stime, cutime, cstime, num_threads, rss
    /proc/PID/fd/      one entry per open descriptor

and stores one :class:`Sample` of the sums. A short CGI script may live and die between
two samples; its *memory* is then missed (a sampled peak is a lower bound), but its *CPU*
is not: see ``cpu_seconds`` below.

House rules, each for a reason:

* **CPU is counted so that it never goes backwards or counts twice.** When a process is
  reaped, the kernel adds its utime+stime, and its own reaped children's (cutime+cstime),
  to its parent's cutime+cstime. So over the group, ``utime+stime+cutime+cstime`` summed
  over the processes alive now (zombies included: they still hold their times) counts
  every process that ever ran in it exactly once, dead CGI scripts included, as long as
  they were reaped by a member of the group. The number can still dip for an instant
  (a child gone, its parent not yet updated), so a sample never reports less than the
  one before it.
* **Memory is the sum of resident sets (RSS).** A forked child shares its parent's pages
  until it writes to them, and each RSS counts the shared pages again: the sum overstates
  what a forking server really uses (PSS, from smaps_rollup, would not, but costs the
  kernel a page-table walk per process, too slow to do ten times a second for a thousand
  processes). The overstatement is largest for CGI's connection children; the exec'd
  scripts are separate interpreters and really do cost their own memory.
* **Descriptors** are counted as entries of ``/proc/PID/fd``; for a server, nearly all of
  them are sockets, one per open connection. Another user's process hides them: 0.
* **A vanished pid is normal**, not an error: a process may exit between listing /proc
  and reading its files.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Self

__all__ = ["GroupSampler", "Sample", "Usage", "alive", "read_group"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class Sample:
    """The server's process group at one instant (sums over its processes)."""

    t: float  # time.monotonic() when taken
    processes: int
    threads: int
    fds: int
    rss_kib: int
    cpu_seconds: float  # cumulative since the group started (see the module docstring)


@dataclass(frozen=True)
class Usage:
    """What the group used over a window of samples: peaks, and CPU spent in the window."""

    samples: int
    seconds: float  # from the first sample of the window to the last
    peak_processes: int
    peak_threads: int
    peak_fds: int
    peak_rss_kib: int
    cpu_seconds: float

    @property
    def cpu_percent(self) -> float:
        """CPU time over wall time: 100 is one core busy all the time."""
        return 100 * self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "cpu_percent": round(self.cpu_percent, 1)}


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if the pid is gone.

    The command name is in parentheses and may itself hold spaces and parentheses, so we
    split after the *last* ')': field 3 of proc(5) (the state) is then index 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _fd_count(pid: str) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # gone, or not ours to look at
        return 0


def _descendants(pid: str) -> Iterator[str]:
    """``pid`` and every process below it, from /proc/PID/task/TID/children (Linux 3.5+,
    CONFIG_PROC_CHILDREN): a few reads per sample, where listing /proc reads the stat of
    every process on the machine, thousands on a busy one, ten times a second."""
    stack = [pid]
    while stack:
        current = stack.pop()
        yield current
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/children", "rb") as f:
                    stack.extend(f.read().decode("ascii").split())
            except OSError:
                continue


_HAVE_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def read_group(pgid: int) -> tuple[int, int, int, int, float]:
    """(processes, threads, fds, rss KiB, cumulative CPU seconds) of process group ``pgid``.

    The server is its leader and every process below it (CGI scripts run in groups of
    their own), found from the kernel's lists of children. Where the kernel keeps no such
    list, or the leader is gone, we list all of /proc and take the processes whose pgrp is
    ``pgid``, which misses such scripts. Field indexes below are proc(5)'s field numbers
    minus 3 (we start at the state)."""
    processes = threads = fds = rss_pages = 0
    ticks = 0
    below_leader = _HAVE_CHILDREN and os.path.exists(f"/proc/{pgid}")
    candidates = (
        _descendants(str(pgid))
        if below_leader
        else (pid for pid in os.listdir("/proc") if pid.isdigit())
    )
    for pid in candidates:
        fields = _stat_fields(pid)
        if fields is None or (not below_leader and int(fields[2]) != pgid):  # (5) pgrp
            continue
        # (14) utime, (15) stime, (16) cutime, (17) cstime: see "CPU is counted" above.
        ticks += sum(int(x) for x in fields[11:15])
        if fields[0] in "ZX":  # a zombie holds CPU times, nothing else
            continue
        processes += 1
        threads += int(fields[17])  # (20) num_threads
        rss_pages += int(fields[21])  # (24) rss, in pages
        fds += _fd_count(pid)
    return processes, threads, fds, rss_pages * PAGE_KIB, ticks / CLOCK_TICKS


@dataclass
class GroupSampler:
    """Sample process group ``pgid`` every ``interval`` seconds in a background thread.

    Use it around a load run::

        with GroupSampler(server.pid) as sampler:
            run_locust(...)
        usage = sampler.usage()          # the whole run
        usage = sampler.usage(since=t0)  # only after the ramp

    The thread is a daemon and stops when the block ends; ``latest`` is there for a live
    display."""

    pgid: int
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def sample(self) -> Sample:
        """Take one sample now (the thread calls this; a caller may too)."""
        processes, threads, fds, rss, cpu = read_group(self.pgid)
        with self._lock:
            if self.samples:  # CPU never goes backwards (module docstring)
                cpu = max(cpu, self.samples[-1].cpu_seconds)
            sample = Sample(time.monotonic(), processes, threads, fds, rss, cpu)
            self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            # Sampling a thousand CGI processes takes a while: never sleep a negative time.
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> Self:
        self.sample()  # a first sample now: the baseline before any load
        self._thread = threading.Thread(target=self._run, name="procstats", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def latest(self) -> Sample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def _window(self, since: float | None, until: float | None) -> Iterator[Sample]:
        with self._lock:
            samples = list(self.samples)
        for sample in samples:
            if (since is None or sample.t >= since) and (until is None or sample.t <= until):
                yield sample

    def usage(self, since: float | None = None, until: float | None = None) -> Usage:
        """Peaks and CPU over the samples taken between ``since`` and ``until`` (monotonic
        times; None: from the first, to the last). An empty window gives zeros."""
        window = list(self._window(since, until))
        if not window:
            return Usage(0, 0.0, 0, 0, 0, 0, 0.0)
        return Usage(
            samples=len(window),
            seconds=window[-1].t - window[0].t,
            peak_processes=max(s.processes for s in window),
            peak_threads=max(s.threads for s in window),
            peak_fds=max(s.fds for s in window),
            peak_rss_kib=max(s.rss_kib for s in window),
            cpu_seconds=window[-1].cpu_seconds - window[0].cpu_seconds,
        )


def alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` is still running (zombies excluded)."""
    return read_group(pgid)[0] > 0
