"""Lesson 4's helpers: the deliberately blocking app and its fixes, and the /proc measurements.

The blocking app is checked in-process, on one event loop, by the *order* in which two
concurrent requests finish (a fast one sent while a slow one sleeps): an order does not
depend on how busy the machine is, a duration would.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from rich.console import Console

from lessons.asgi_lab import CostTable, footprint, hold, thread_limits, thread_stacks
from lessons.blocking_app import app as blocking
from lessons.blocking_app import fixed, offloaded
from lessons.catalog import NOTEBOOKS_DIR
from lessons.lab import Lab, LabServer, command_argv


def _scope(path: str, query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"host", b"test")],
    }


async def _finishing_order(app: Any) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Start a /sleep of 300 ms, then a /hello 50 ms later; return who finished first."""
    order: list[str] = []
    sent: dict[str, list[dict[str, Any]]] = {"sleep": [], "hello": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call(name: str, scope: dict[str, Any]) -> None:
        async def send(message: dict[str, Any]) -> None:
            sent[name].append(message)

        await app(scope, receive, send)
        order.append(name)

    async def hello_later() -> None:
        await asyncio.sleep(0.05)
        await call("hello", _scope("/hello"))

    await asyncio.gather(call("sleep", _scope("/sleep", b"ms=300")), hello_later())
    return order, sent


@pytest.mark.parametrize(
    ("app", "first"),
    [(blocking, "sleep"), (fixed, "hello"), (offloaded, "hello")],
    ids=["time.sleep blocks the loop", "asyncio.sleep", "asyncio.to_thread"],
)
def test_a_fast_request_waits_only_behind_the_blocking_sleep(app: Any, first: str) -> None:
    order, sent = asyncio.run(_finishing_order(app))
    assert order[0] == first, order
    # Every variant answers both requests correctly: the bug is in when, not what.
    assert sent["sleep"][0]["status"] == 200 and sent["sleep"][1]["body"] == b"slept 300 ms\n"
    assert sent["hello"][1]["body"] == b"Hello, world!\n"


def test_a_bad_ms_goes_to_the_family_app_and_its_400() -> None:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(blocking(_scope("/sleep", b"ms=soon"), receive, send))
    assert messages[0]["status"] == 400


# -- /proc -----------------------------------------------------------------------------------
@pytest.fixture
def parked_threads() -> Iterator[int]:
    release = threading.Event()
    threads = [threading.Thread(target=release.wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    yield len(threads)
    release.set()
    for thread in threads:
        thread.join()


def test_thread_stacks_are_reserved_whole_and_touched_little(parked_threads: int) -> None:
    stacks = thread_stacks(os.getpid())
    assert len(stacks) >= parked_threads
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if soft != resource.RLIM_INFINITY:
        # glibc sizes a new thread's stack from ulimit -s ...
        assert sum(s.size_kib == soft // 1024 for s in stacks) >= parked_threads
    # ... and the kernel backs only the pages a parked thread touched.
    assert all(s.rss_kib < s.size_kib for s in stacks)
    assert footprint(os.getpid()).threads >= parked_threads + 1


def test_thread_limits_come_from_the_kernel() -> None:
    limits = thread_limits()
    pid_max = limits["kernel.pid_max (every thread takes an id)"]
    assert pid_max.isdigit() and int(pid_max) > 300
    assert limits["ulimit -s (a new thread's stack)"].endswith(("KiB", "unlimited"))


@pytest.fixture(scope="module")
def asgi_server() -> Iterator[LabServer]:
    with Lab() as lab:
        yield lab.start("loop", command_argv("$ python -m servers asgi --port 0"))


def test_hold_measures_idle_connections_then_waiting_requests(asgi_server: LabServer) -> None:
    idle, waiting = hold(asgi_server, 40, ms=300)
    assert (idle.count, waiting.count) == (40, 40)
    # All 40 were held at once by the one thread of the server, then all 40 waited together.
    # (Not "before + 40": the launcher's readiness probe may still be open before.)
    assert idle.after.fds >= 40 and idle.after.threads == 1
    assert "40 connections held" in idle.note
    assert idle.after.rss_kib >= idle.before.rss_kib and waiting.before == idle.after
    assert "40 requests of 300 ms all answered 200" in waiting.note
    console = Console(width=100, record=True)
    console.print(CostTable([idle, waiting]))
    text = console.export_text()
    assert "an idle connection" in text and "+ a request waiting" in text


def test_hold_says_clearly_when_requests_are_refused() -> None:
    with Lab() as lab:
        pool = lab.start(
            "pool", command_argv("$ python -m servers wsgi --port 0 --threads 1 --backlog 1")
        )
        with pytest.raises(RuntimeError, match=r"only \d+ of 6 sleeping requests .* \[503\]"):
            hold(pool, 6, ms=300)


def test_notebook_4_measures_probes_and_plots() -> None:
    """The notebook tells lesson 4's story with the same tools (it is executed, top to
    bottom, by test_notebooks.py)."""
    path = NOTEBOOKS_DIR / "04-asgi.ipynb"
    source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    for name in ("start(", "send(", "procs(", "load(", "plt.subplots", "stop_all()"):
        assert name in source
    for name in (
        "hold(",
        "thread_cost(",
        "stack_summary(",
        "lessons.blocking_app:",
        "frame_bytes(",
    ):
        assert name in source
    # The 1,000-user run and lesson 3's pool are switches, off to keep the suite quick.
    assert "TRY_1000 = False" in source and "TRY_WSGI = False" in source
