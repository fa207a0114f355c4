"""The showdown: a tiny real run writes its JSON, CSV and charts and leaves nothing behind;
its give-up rule stops an era's climb; the /proc sampler sees what a server spends.

locust runs as its own process (the showdown starts it through loadtests.locust_run); the
showdown itself imports no locust, so running it in a subprocess here is for isolation only.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from rich.live import Live

from loadtests import showdown
from loadtests.measure import Measurement
from loadtests.procstats import GroupSampler, read_group
from servers.launch import REPO_ROOT, ServerProcess, our_server_argv

PNG = b"\x89PNG\r\n\x1a\n"


def _group_gone(pgid: int, grace: float = 3.0) -> bool:
    deadline = time.monotonic() + grace
    while read_group(pgid)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    return read_group(pgid)[0] == 0


def test_tiny_showdown_writes_json_csv_and_charts(tmp_path: Path) -> None:
    out = tmp_path / "showdown"
    argv = [sys.executable, "-m", "loadtests.showdown", "--eras", "wsgi,asgi", "--levels", "2,4",
            "--seconds", "1", "--workloads", "hello", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    data = json.loads((out / "results.json").read_text())
    assert data["levels"] == [2, 4] and data["eras"] == ["wsgi", "asgi"]
    assert data["settings"]["wsgi"]["options"] == ["--threads", "8", "--backlog", "64"]
    runs = {(r["era"], r["users"]): r for r in data["runs"]}
    assert set(runs) == {("wsgi", 2), ("wsgi", 4), ("asgi", 2), ("asgi", 4)}
    for run in runs.values():
        assert run["workload"] == "hello"
        assert run["status"] == "ok", run["how_it_failed"]
        assert run["requests"] > 0 and run["failures"] == 0
        assert run["ok_rps"] > 0 and run["p50"] is not None and run["p99"] >= run["p50"]
        assert run["server_peak_mib"] > 5 and run["server_processes"] == 1
        assert run["server_fds"] >= run["users"]  # one socket per user, at least
        assert "failures_by_kind" in run and "server_cpu_percent" in run
        # Nothing left behind: the server's process group is empty.
        assert _group_gone(run["server_pid"]), f"server group {run['server_pid']} still alive"
    # The thread pool shows in the numbers: 8 workers and the I/O thread, against one.
    assert runs[("wsgi", 4)]["server_threads"] >= 9
    assert runs[("asgi", 4)]["server_threads"] == 1

    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["era"], r["users"]) for r in rows] == [
        ("wsgi", "2"), ("wsgi", "4"), ("asgi", "2"), ("asgi", "4"),
    ]  # fmt: skip
    for name in ("throughput-hello", "p99-hello", "memory-hello", "overview"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG, name
    # locust's own files are kept beside, one folder per run.
    assert (out / "locust" / "asgi-hello-4").is_dir()


def test_an_era_that_fails_badly_is_not_pushed_further(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []

    def fake_measure(
        era: str, workload: str, users: int, seconds: float, **_: object
    ) -> Measurement:
        calls.append((era, users))
        m = Measurement(era, workload, users, seconds, 1.0, requests=100, p50=1.0, p99=2.0)
        if era == "wsgi" and users >= 20:  # the wall: 80 % of answers are 503
            m.failures, m.status = 80, "failing"
            m.failures_by_kind = {"http 503": 80}
        return m

    monkeypatch.setattr(showdown, "measure", fake_measure)
    plan = showdown.Showdown(["wsgi", "asgi"], ["hello"], [10, 20, 40], 1.0, 1000, 0.5)
    console = Console(file=io.StringIO())
    with Live(plan, console=console) as live:
        plan.run(live, tmp_path)
    assert calls == [("wsgi", 10), ("wsgi", 20), ("asgi", 10), ("asgi", 20), ("asgi", 40)]
    assert plan.gave_up == [
        {"era": "wsgi", "workload": "hello", "users": 20, "how": "80% failed (http 503 x80)"}
    ]
    # The failing level is kept: it is the era's wall, drawn in the charts.
    assert [m.status for m in plan.results if m.era == "wsgi"] == ["ok", "failing"]


def test_sampler_counts_threads_descriptors_and_cpu_of_the_group() -> None:
    with ServerProcess(our_server_argv("wsgi", "--threads", "5"), name="wsgi") as server:
        with GroupSampler(server.pid, interval=0.05) as sampler:
            with httpx.Client(base_url=server.url) as client:
                for _ in range(200):
                    assert client.get("/hello").status_code == 200
            time.sleep(0.2)
        usage = sampler.usage()
    assert usage.peak_processes == 1
    assert usage.peak_threads == 6  # five workers and the I/O thread
    assert usage.peak_fds >= 4  # the listener, the client's connection, stdio
    assert usage.peak_rss_kib > 5 * 1024
    assert usage.cpu_seconds > 0
    assert usage.samples >= 3
    # CPU is cumulative and never goes backwards between samples.
    cpu = [s.cpu_seconds for s in sampler.samples]
    assert cpu == sorted(cpu)


def test_sampler_counts_cgi_scripts_that_run_in_groups_of_their_own() -> None:
    # The CGI server gives each script a process group of its own (so that a timeout kills
    # the script's group and nothing else); the sampler must still count it as the server's.
    answer: list[int] = []
    with ServerProcess(our_server_argv("cgi"), name="cgi") as server:
        client = httpx.Client(base_url=server.url, timeout=30)
        waiting = threading.Thread(
            target=lambda: answer.append(client.get("/sleep?ms=3000").status_code)
        )
        waiting.start()
        deadline = time.monotonic() + 10
        counted = 0
        while time.monotonic() < deadline and counted < 3:
            counted = read_group(server.pid)[0]
            time.sleep(0.05)
        waiting.join()
        client.close()
    assert answer == [200]
    assert counted >= 3  # the listener, the connection child and the script
