"""C10k, measured: hold N keep-alive connections to a server at once, and its peak memory.

Why this module exists
----------------------
Lesson 4's claim is that an event loop holds a connection for the price of a few
kilobytes where a thread-per-request server holds a thread. ``make bench`` measures
requests per second on 50 connections; this measures the other axis: how many
connections one process can *hold*, and what each one costs. ::

    python -m loadtests.connections                      # 10,000 connections, ours and uvicorn
    python -m loadtests.connections --connections 200 --servers asgi

The method, and why each step
-----------------------------
1. **Raise the descriptor limit.** Every connection is a file descriptor on both sides;
   the soft RLIMIT_NOFILE (often 1024) is raised to the hard one, and the servers inherit
   it. If the hard limit is too low for N, we say so and stop, instead of measuring EMFILE.
2. **Both servers on the same run, one after the other**, with the same keep-alive timeout
   (60 s, so that the first connections are not closed as idle while the last ones open)
   and the same event loop (asyncio), started as process groups and stopped cleanly.
3. **Open N connections from one asyncio client**, a bounded number of connects at a time
   (a burst of 10,000 SYNs would overflow the listen backlog and measure retransmission
   timers), and send one request on each; every answer is read and checked.
4. **Then a second request on every connection**, once all N are open: this proves that
   all N were held at the same time and still answer, not merely opened one after another.
5. **Report the server's peak memory**, VmHWM from /proc (the high-water mark of its
   resident set, summed over its process group), and its memory per connection above the
   idle baseline. Memory is robust on a shared machine, where timings are not.

The client closes its sockets with SO_LINGER 0 (a reset), so that 10,000 sockets in
TIME_WAIT do not exhaust the client's ports for the next server of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from servers.launch import ServerProcess, free_port, our_server_argv

__all__ = ["Result", "main", "measure"]

KEEP_ALIVE = 60  # seconds: longer than opening 10,000 connections takes
CONNECTS_AT_ONCE = 256  # bounded connect burst (see step 3)
REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"
EXPECTED = b"Hello, world!\n"


def server_argv(name: str, connections: int) -> tuple[list[str], int | None]:
    """The argv of a server and the port it will use (None: ours, it prints its port)."""
    if name == "asgi":
        extra = ["--idle-timeout", str(KEEP_ALIVE), "--max-connections", str(connections + 100)]
        return our_server_argv("asgi", *extra), None
    if name.startswith("uvicorn"):
        http = "h11" if name == "uvicorn-h11" else "httptools"
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "apps.asgi:app", "--port", str(port),
                "--http", http, "--loop", "asyncio", "--timeout-keep-alive", str(KEEP_ALIVE),
                "--no-access-log", "--log-level", "warning"]  # fmt: skip
        return argv, port
    raise SystemExit(f"unknown server {name!r}: asgi, uvicorn or uvicorn-h11")


@dataclass
class Result:
    server: str
    connections: int
    answered: int  # first request answered with the expected body
    held: int  # second request answered, with all connections open at once
    errors: int
    baseline_rss_kib: int  # the server before any connection
    peak_kib: int  # VmHWM at the end: the most it ever held
    open_seconds: float  # time to open N connections and get N first answers

    @property
    def kib_per_connection(self) -> float:
        return (self.peak_kib - self.baseline_rss_kib) / max(1, self.held)


def raise_fd_limit(needed: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"RLIMIT_NOFILE's hard limit is {hard}; {needed} descriptors are needed for "
            f"this many connections. Raise it (ulimit -Hn, limits.conf) or use fewer."
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def group_memory(server: ServerProcess) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB, summed over the server's process group."""
    rss = hwm = 0
    for pid in server.group_pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss, hwm


async def _answer(reader: asyncio.StreamReader) -> bool:
    """Read one response (Content-Length framed, as /hello is) and check its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200 ") and body == EXPECTED


async def _hold(address: tuple[str, int], count: int) -> tuple[int, int, int, float]:
    """Open ``count`` connections, a request on each; then a second one on all of them."""
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    errors = 0

    async def open_one() -> bool:
        nonlocal errors
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(*address, limit=4096)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.write(REQUEST)
                ok = await asyncio.wait_for(_answer(reader), 60)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                errors += 1
                return False
        streams.append((reader, writer))
        return ok

    started = time.monotonic()
    answered = sum(await asyncio.gather(*(open_one() for _ in range(count))))
    open_seconds = time.monotonic() - started

    async def again(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        nonlocal errors
        try:
            writer.write(REQUEST)
            return await asyncio.wait_for(_answer(reader), 60)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            errors += 1
            return False

    held = sum(await asyncio.gather(*(again(r, w) for r, w in streams)))
    for _, writer in streams:
        writer.close()
    return answered, held, errors, open_seconds


def measure(name: str, connections: int) -> Result:
    argv, port = server_argv(name, connections)
    with ServerProcess(argv, port=port, name=name, http_probe="/hello") as server:
        time.sleep(0.5)  # let the probe's connection go
        baseline, _ = group_memory(server)
        answered, held, errors, seconds = asyncio.run(_hold(server.address, connections))
        _, peak = group_memory(server)
    return Result(name, connections, answered, held, errors, baseline, peak, round(seconds, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.connections", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument(
        "--servers", default="asgi,uvicorn", help="comma-separated: asgi, uvicorn, uvicorn-h11"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    raise_fd_limit(args.connections + 200)
    results = []
    for name in args.servers.split(","):
        print(f"{name}: opening {args.connections} connections ...", flush=True)
        result = measure(name, args.connections)
        results.append(result)
        print(
            f"  answered {result.answered}, held and answered again {result.held}, "
            f"errors {result.errors}, in {result.open_seconds} s\n"
            f"  memory: idle {result.baseline_rss_kib / 1024:.1f} MiB, "
            f"peak (VmHWM) {result.peak_kib / 1024:.1f} MiB, "
            f"{result.kib_per_connection:.1f} KiB per connection",
            flush=True,
        )
    if args.json:
        document = [{**asdict(r), "kib_per_connection": r.kib_per_connection} for r in results]
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(r.held == r.connections and not r.errors for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
