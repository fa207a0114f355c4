"""Classroom mode: a locust master with two workers, and the web UI beside an era.

Every process is started through ``python -m loadtests.classroom``, as the make targets
start it, in a session of its own, and each session must be empty afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtests import classroom
from loadtests.locust_run import locustfile, read_run
from servers.launch import REPO_ROOT, free_port, pids_in_sessions

TARGET_RE = re.compile(r"against the wsgi era at (http://127\.0\.0\.1:\d+)/")


@contextlib.contextmanager
def _sessions() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in sessions of their own; killed if still there at the end, and
    then the test fails if any of their sessions is not empty."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                for pid in [proc.pid, *pids_in_sessions(proc.pid)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait()
        deadline = time.monotonic() + 5
        while any(pids_in_sessions(p.pid) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = {p.pid: pids_in_sessions(p.pid) for p in procs if pids_in_sessions(p.pid)}
        assert not left, f"processes left behind: {left}"


def _start(procs: list[subprocess.Popen[bytes]], args: list[str], log: Path) -> None:
    with log.open("wb") as out:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "loadtests.classroom", *args],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )


def test_a_master_and_two_workers(tmp_path: Path) -> None:
    """make load-master with MASTER_BIND: the era and the master listen on that address
    (127.0.0.2 here, still loopback), two workers join, and the master adds them up."""
    bind = "127.0.0.2"
    port = str(free_port(bind))
    with _sessions() as procs:
        _start(
            procs,
            ["master", "--era", "wsgi", "--bind", bind, "--port", "0", "--master-port", port,
             "--headless", "3", "--users", "4", "--expect-workers", "2",
             "--csv-dir", str(tmp_path)],
            tmp_path / "master.log",
        )  # fmt: skip
        for n in (1, 2):
            _start(
                procs,
                ["worker", "--master", bind, "--master-port", port],
                tmp_path / f"worker{n}.log",
            )
        for proc in procs:
            proc.wait(timeout=90)
        logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
        assert [p.returncode for p in procs] == [0, 0, 0], logs

    run = read_run(str(tmp_path / "master"), output=logs["master.log"])
    assert run.requests > 0 and run.failure_count == 0, logs
    assert "2 ready workers" in logs["master.log"]
    # Both workers ran users, and the master's totals are exactly what they reported.
    assert len(run.workers) == 2, run.workers
    assert all(int(w["Request Count"]) > 0 for w in run.workers), run.workers
    assert sum(int(w["Request Count"]) for w in run.workers) == run.requests
    assert int(run.row("/hello")["Request Count"]) == run.requests
    # The era served on the bind address, and was stopped with the master.
    m = re.search(r"against http://127\.0\.0\.2:(\d+)/", logs["master.log"])
    assert m, logs["master.log"]
    with pytest.raises(OSError), socket.create_connection((bind, int(m[1])), timeout=2):
        pass


def test_load_serves_an_era_and_the_web_ui_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    web_port = free_port()
    log = tmp_path / "load.log"
    with _sessions() as procs:
        _start(
            procs,
            ["load", "--era", "wsgi", "--port", "0", "--web-port", str(web_port)],
            log,
        )
        deadline = time.monotonic() + 60
        target = ""
        while time.monotonic() < deadline and not target:
            assert procs[0].poll() is None, log.read_text()
            if m := TARGET_RE.search(log.read_text()):
                target = m[1]
            time.sleep(0.1)
        assert target, log.read_text()
        assert httpx.get(target + "/hello", timeout=10).text == "Hello, world!\n"
        ui = ""
        while time.monotonic() < deadline and not ui:
            with contextlib.suppress(httpx.HTTPError):
                ui = httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5).text
            time.sleep(0.1)
        assert "locust" in ui.lower(), log.read_text()
        # The terminal's Ctrl-C reaches the whole foreground group: ours and locust.
        os.killpg(procs[0].pid, signal.SIGINT)
        procs[0].wait(timeout=30)
    # Nothing listens any more: neither the era (in a session of its own) nor the UI.
    for port in (int(target.rsplit(":", 1)[1]), web_port):
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_the_command_lines_listen_on_loopback_unless_told() -> None:
    master = classroom.master_argv("hello", "http://127.0.0.1:8000")
    assert master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    assert master[master.index("--web-host") + 1] == "127.0.0.1"
    assert master[master.index("-f") + 1] == str(locustfile("hello"))
    opened = classroom.master_argv("sleep", "http://10.0.0.5:8000", bind="10.0.0.5")
    assert opened[opened.index("--master-bind-host") + 1] == "10.0.0.5"
    assert opened[opened.index("--web-host") + 1] == "127.0.0.1"  # the UI stays private
    ui = classroom.web_ui_argv("cpu", "http://127.0.0.1:8000")
    assert ui[ui.index("--web-host") + 1] == "127.0.0.1" and "--headless" not in ui
    worker = classroom.worker_argv("hello", "10.0.0.5", processes=4)
    assert worker[worker.index("--master-host") + 1] == "10.0.0.5" and "--worker" in worker
    assert classroom.server_argv("asgi", "127.0.0.1", 8000)[-4:] == [
        "--host", "127.0.0.1", "--port", "8000",
    ]  # fmt: skip


def test_a_wildcard_bind_needs_a_target() -> None:
    with pytest.raises(SystemExit, match="every interface"):
        classroom.main(["master", "--bind", "0.0.0.0"])
    with pytest.raises(SystemExit, match="which master"):
        classroom.main(["worker"])
