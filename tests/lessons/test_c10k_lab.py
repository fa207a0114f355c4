"""Lesson 5's helpers: the readiness calls, the price per connection in each model, the
small showdown's plumbing, SO_REUSEPORT.

The live measurements are checked by what does not depend on how busy the machine is:
counts (processes, threads, descriptors added), which model costs more than which, and
which call grows with the number of descriptors. The whole lesson and its notebook run in
test_runner.py and test_notebooks.py.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from rich.console import Console

from lessons.c10k_lab import (
    ModelTable,
    ReadinessTable,
    ShowdownSummary,
    hold,
    readiness_costs,
    reuseport_demo,
    small_showdown,
    tree_footprint,
)
from lessons.catalog import NOTEBOOKS_DIR
from lessons.lab import Lab, command_argv
from loadtests import showdown as showdown_module
from loadtests.measure import Measurement
from loadtests.procstats import read_group
from loadtests.showdown import Showdown
from servers.launch import pids_in_groups


def _text(renderable: object) -> str:
    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_select_refuses_past_fd_setsize_and_epoll_does_not_look_at_idle_ones() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2400:
        pytest.skip(f"needs 2,400 descriptors; the hard limit is {hard}")
    table = readiness_costs((10, 2000), repeat=30)
    small, big = table.rows
    assert small.select_us is not None  # 10 descriptors: numbered below 1024
    assert big.select_us is None  # 2,000: some are numbered past FD_SETSIZE
    # poll() looks at all 2,000 at every call; epoll_wait() only returns the ready one.
    assert big.poll_us > 5 * big.epoll_us
    assert big.poll_us > 5 * small.poll_us
    assert "refused (fd ≥ 1024)" in _text(table)


def test_readiness_skips_what_the_descriptor_limit_cannot_hold() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no descriptor limit here")
    table = readiness_costs((10, hard), repeat=2)
    assert [r.watched for r in table.rows] == [10] and table.skipped == [hard]
    assert "over this shell's limit" in _text(table)


def test_reuseport_spreads_connections_over_the_sockets() -> None:
    shared = reuseport_demo(listeners=3, connections=150)
    assert sum(shared.accepted) == 150
    assert len(shared.accepted) == 3 and sum(1 for n in shared.accepted if n > 0) >= 2


def test_the_tree_holds_what_the_process_group_misses() -> None:
    """A child in a process group of its own (as a CGI script is) is in the tree only."""
    code = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'],"
        " process_group=0)\n"
        "print('ready', flush=True); time.sleep(30)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 10
        while tree_footprint(parent.pid).processes < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = tree_footprint(parent.pid)
        assert tree.processes == 2 and pids_in_groups(parent.pid) == [parent.pid]
        assert read_group(parent.pid)[0] == 2  # the showdown's sampler follows the tree too
        assert tree.pss_kib > 0 and tree.rss_kib >= tree.pss_kib
    finally:
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        for pid in children:
            os.kill(int(pid), 9)
        os.killpg(parent.pid, 9)
        parent.wait()
        for pid in children:  # reaped by init once the parent is gone: just wait for it
            deadline = time.monotonic() + 5
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)


def test_hold_counts_a_process_per_cgi_connection_and_a_script_per_request() -> None:
    with Lab() as lab:
        cgi = lab.start("cgi", command_argv("$ python -m servers cgi --port 0 --idle-timeout 30"))
        loop = lab.start("loop", command_argv("$ python -m servers asgi --port 0"))
        costs = hold([(cgi, 3), (loop, 20)], ms=1500)
    idle, script, connection, task = costs
    assert (idle.era, idle.count, idle.processes) == ("cgi", 3, 3)  # a child each
    assert script.processes == script.count > 0  # and a script each (in its own group)
    assert script.pss_each > 1024  # a whole interpreter: megabytes, even in PSS
    assert idle.rss_each > idle.pss_each  # forked: shared with the parent, copy-on-write
    # The event loop: a descriptor per connection, no process, no thread, KiB not MiB.
    assert (connection.processes, connection.threads, connection.fds) == (0, 0, 20)
    assert (task.processes, task.threads) == (0, 0)
    assert task.pss_each + connection.pss_each < 256
    per_request = ModelTable(costs).per_request()
    assert per_request["cgi"][1] > 10 * per_request["asgi"][1]
    text = _text(ModelTable(costs))
    assert "idle: a process" in text and "+ request: a task" in text
    assert "3 requests of 1500 ms answered 200" in text


def test_hold_says_clearly_when_requests_are_refused() -> None:
    with Lab() as lab:
        pool = lab.start(
            "pool", command_argv("$ python -m servers wsgi --port 0 --threads 1 --backlog 1")
        )
        with pytest.raises(RuntimeError, match=r"only \d+ of 6 sleeping requests .* \[503\]"):
            hold([(pool, 6)], ms=300)


def test_a_second_showdown_adds_its_eras_to_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge a notebook uses to run one era per cell, without running locust or
    matplotlib: the runs and the charts are stubbed, results.json is write_results's."""

    def fake_run(self: Showdown, live: object, out: Path) -> None:
        for era in self.eras:
            for users in self.levels:
                m = Measurement(era, "sleep", users, self.seconds, 1.0, requests=10)
                m.ok_rps, m.p50, m.p99 = 10.0 * users, 100.0, 150.0
                self.results.append(m)

    def fake_charts(results: list[Measurement], workloads: list[str], out: Path) -> list[Path]:
        eras = sorted({m.era for m in results})
        path = out / f"overview-{'-'.join(eras)}.png"
        path.touch()
        return [path]

    monkeypatch.setattr(Showdown, "run", fake_run)
    monkeypatch.setattr(showdown_module.charts, "showdown_charts", fake_charts)
    first = small_showdown(eras=("wsgi",), levels=(5, 20), seconds=1, out=tmp_path)
    both = small_showdown(eras=("asgi",), add_to=first)
    assert [(m.era, m.users) for m in both.results] == [
        ("wsgi", 5), ("wsgi", 20), ("asgi", 5), ("asgi", 20),
    ]  # fmt: skip
    assert "--eras wsgi,asgi --levels 5,20" in both.command
    # One set of charts, drawn from both calls' runs; the first call's set is gone.
    assert [p.name for p in both.charts] == ["overview-asgi-wsgi.png"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["overview-asgi-wsgi.png"]
    assert '"eras": [\n    "wsgi",\n    "asgi"\n  ]' in (tmp_path / "results.json").read_text()
    assert isinstance(both, ShowdownSummary) and "asgi" in _text(both)


def test_notebook_5_measures_shows_the_charts_and_ends_clean() -> None:
    """The notebook tells lesson 5's story with the same tools (it is executed, top to
    bottom, by test_notebooks.py)."""
    path = NOTEBOOKS_DIR / "05-c10k.ipynb"
    source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    for name in (
        "readiness_costs(",
        "hold(",
        "pool_thread_cost(",
        "small_showdown(",
        "add_to=summary",
        "Image(",
        "little(",
        "reuseport_demo(",
        "plt.subplots",
        "stop_all()",
    ):
        assert name in source, name
    assert "ALL_ERAS = False" in source  # CGI and FastCGI in the showdown: a switch
    assert isinstance(readiness_costs((10,), repeat=1), ReadinessTable)
