"""The /proc view, checked against processes whose shape the test knows: itself, a thread
it names, a process group it forks, a socket it listens on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from lessons import procview


def test_read_this_process() -> None:
    me = procview.read_process(os.getpid())
    assert me is not None
    assert me.pid == os.getpid() and me.ppid == os.getppid() and me.pgid == os.getpgrp()
    assert me.state in procview.STATES
    assert me.command.startswith("python")  # the interpreter's path, shortened
    assert me.rss_bytes and me.rss_bytes > 1_000_000
    assert me.fds and me.fds >= 3
    assert any(t.tid == os.getpid() for t in me.threads)  # the main thread is the process


def test_a_named_thread_is_listed() -> None:
    ready, done = threading.Event(), threading.Event()

    def worker() -> None:
        # What a server does to name its threads for ps and for this view.
        Path("/proc/thread-self/comm").write_text("gl-probe")
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert ready.wait(5)
        me = procview.read_process(os.getpid())
        assert me is not None
        names = {t.name for t in me.threads}
        assert "gl-probe" in names
        console = Console(width=140, record=True, color_system=None)
        console.print(procview.render([me], "me"))
        text = console.export_text()
        assert "thread gl-probe" in text and "(main thread)" in text
    finally:
        done.set()
        thread.join()


def test_process_group_and_descendants() -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(30); os._exit(0)\ntime.sleep(30)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(group := procview.process_group(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert group[0].pid == proc.pid  # the leader first
        assert len(group) == 2 and group[1].ppid == proc.pid
        tree = procview.descendants(os.getpid())
        assert {proc.pid, group[1].pid} <= {p.pid for p in tree}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_listeners_names_who_holds_a_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert os.getpid() in procview.listeners(port)
    assert os.getpid() not in procview.listeners(port)


def test_a_vanished_process_reads_as_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert procview.read_process(proc.pid) is None
    console = Console(record=True, color_system=None)
    console.print(procview.render([], "gone"))
    assert "no process left" in console.export_text()
