"""The family's locust workloads, run for real against every era, and what a failure is.

locust is never imported here: ``run_locust`` starts it as a process of its own.

To keep this short, every workload runs against an era in *one* locust process (``-f``
with all the locustfiles: each user class gets two users), and each workload is proven by
its own stats rows: requests made, none failed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from loadtests.locust_run import (
    REQUEST_NAMES,
    WORKLOADS,
    LocustError,
    classify_failure,
    locust_argv,
    locustfile,
    run_locust,
)
from servers.eras import built_eras
from servers.launch import free_port, our_server_argv
from tests.conftest import ServerPool

# Small settings, so that a few seconds hold many requests of every kind.
QUICK = {
    "GATEWAYLAB_SLEEP_MS": "100",
    "GATEWAYLAB_CPU_N": "20000",
    "GATEWAYLAB_STREAM_CHUNKS": "3",
    "GATEWAYLAB_STREAM_DELAY_MS": "20",
    "GATEWAYLAB_UPLOAD_BYTES": "200000",
    "GATEWAYLAB_WS_INTERVAL": "0.2",
    "GATEWAYLAB_LOAD_TIMEOUT": "30",
}
# User classes per workload (mixed has two: the fast probe and the slow load).
CLASSES = {"mixed": 2}
# Users per class and seconds. CGI starts a Python process for every request but /hello
# (a fraction of a second each, more on a busy machine): fewer users, a longer run.
SHAPE = {"cgi": (1, 5.0)}


@pytest.mark.parametrize("era", [era.name for era in built_eras()])
def test_every_workload_runs_clean_against_each_era(era: str, start_server: ServerPool) -> None:
    server = start_server(our_server_argv(era), name=era)
    # Only ASGI can hand a WebSocket to the application; the other eras answer /ws with 501.
    workloads = [w for w in WORKLOADS if w != "websocket" or era == "asgi"]
    per_class, seconds = SHAPE.get(era, (2, 3.0))
    users = per_class * sum(CLASSES.get(w, 1) for w in workloads)
    run = run_locust(",".join(workloads), server.url, users=users, seconds=seconds, env=QUICK)

    assert run.exit_code == 0, run.output
    assert run.failure_count == 0, (run.failures, run.output[-2000:])
    for workload in workloads:
        for name in REQUEST_NAMES[workload]:
            row = run.row(name)
            assert row, f"{workload}: no stats row {name!r} in {[r['Name'] for r in run.rows]}"
            assert int(row["Request Count"]) > 0, (workload, name, row)
            assert int(row["Failure Count"]) == 0, (workload, name, row)
    # The Aggregated row is the sum of the others: the final CSV came after the last request.
    assert run.requests == sum(int(r["Request Count"]) for r in run.rows[:-1])
    assert run.rows[-1]["Name"] == "Aggregated" and run.rps > 0
    assert 0 < run.percentile("50%") <= run.percentile("99%") <= run.percentile("100%")
    assert run.failures == [] and run.failures_by_kind() == {}
    assert "locust" not in sys.modules  # never imported into this process


def test_wrong_answers_are_failures_of_their_kind(start_server: ServerPool) -> None:
    """hello against a wrong body, sleep against a 503, cpu against a 404, websocket
    against a 501 (what CGI, FastCGI and WSGI answer a handshake): every request made is a
    failure, sorted by kind."""
    server = start_server(
        our_server_argv("wsgi", "--app", "tests.loadtests.wrong_app:app"), name="wrong"
    )
    run = run_locust("hello,sleep,cpu,websocket", server.url, users=4, seconds=2, env=QUICK)
    assert run.requests > 0 and run.failure_count == run.requests, run.output[-2000:]
    kinds = run.failures_by_kind()
    assert set(kinds) == {"wrong body", "http 503", "http 4xx", "http 501"}, run.failures
    assert kinds["wrong body"] == int(run.row("/hello")["Request Count"])
    assert kinds["http 503"] == int(run.row("/sleep")["Request Count"])
    assert kinds["http 4xx"] == int(run.row("/cpu")["Request Count"])
    assert kinds["http 501"] == int(run.row("/ws connect")["Request Count"])
    assert not run.row("/ws")  # no socket was ever open to send a message on
    assert sum(kinds.values()) == run.failure_count
    wrong = next(f for f in run.failures if f["Name"] == "/hello")
    assert "Hello, World!" in str(wrong["Error"])  # the message shows what came back


def test_a_refused_port_is_counted_as_refused() -> None:
    run = run_locust("hello", f"http://127.0.0.1:{free_port()}", users=2, seconds=1)
    assert run.requests > 0
    assert run.failures_by_kind() == {"refused": run.requests}, run.failures


def test_processes_history_and_kept_files(start_server: ServerPool, tmp_path: Path) -> None:
    """--processes 2: a master and two forked workers, all local; the history is handed
    out while locust runs; the CSV files stay where they were asked to go."""
    server = start_server(our_server_argv("asgi"), name="asgi")
    seen: list[dict[str, str | float]] = []
    run = run_locust(
        "hello", server.url, users=4, seconds=3, processes=2, on_history=seen.append,
        csv_dir=tmp_path,
    )  # fmt: skip
    assert run.exit_code == 0 and run.failure_count == 0 and run.requests > 0, run.output
    assert "--processes" in run.argv and "127.0.0.1" in run.argv  # the master stays local
    assert len(run.workers) == 2, run.workers
    assert sum(int(w["Request Count"]) for w in run.workers) == run.requests
    assert seen and all(row["Name"] == "Aggregated" for row in seen)
    assert seen == run.history[: len(seen)]
    assert (tmp_path / "hello_final.csv").exists() and (tmp_path / "hello_output.txt").exists()


def test_classify_failure() -> None:
    cases = {
        "ConnectionRefusedError(111, 'Connection refused')": "refused",
        "ConnectionResetError(104, 'Connection reset by peer')": "reset",
        "BrokenPipeError(32, 'Broken pipe')": "reset",
        "HTTPConnectionClosed('connection closed.')": "reset",
        "ConnectionClosedError(None, None, None)": "reset",
        "TimeoutError('timed out')": "timeout",
        "ConnectTimeout()": "timeout",
        "CatchResponseError('http 503')": "http 503",
        "CatchResponseError('http 500')": "http 500",
        "CatchResponseError('http 429')": "http 4xx",
        "Exception('http 501: the handshake was refused')": "http 501",
        "CatchResponseError(\"wrong body: expected b'Hello', got b'http 500'\")": "wrong body",
        "ValueError('something else')": "other",
    }
    assert {error: classify_failure(error) for error in cases} == cases


def test_command_lines_and_names() -> None:
    assert locustfile("hello").name == "hello.py" and locustfile("hello").exists()
    assert all(locustfile(w).exists() for w in WORKLOADS) and set(REQUEST_NAMES) == set(WORKLOADS)
    with pytest.raises(ValueError, match="no workload"):
        locustfile("nope")
    argv = locust_argv("hello,sleep", "http://127.0.0.1:8000/", users=5, seconds=2.4)
    assert argv[argv.index("-f") + 1] == f"{locustfile('hello')},{locustfile('sleep')}"
    assert argv[argv.index("-t") + 1] == "2s" and argv[argv.index("-r") + 1] == "5"
    assert argv[argv.index("--host") + 1] == "http://127.0.0.1:8000"
    assert "--processes" not in argv and "--csv" not in argv


def test_a_broken_workload_setting_is_a_locust_error() -> None:
    with pytest.raises(LocustError, match="GATEWAYLAB_SLEEP_MS"):
        run_locust("sleep", "http://127.0.0.1:9", users=1, seconds=1,
                   env={"GATEWAYLAB_SLEEP_MS": "soon"})  # fmt: skip


def test_percentile_of_a_missing_row_is_nan() -> None:
    from loadtests.locust_run import LocustRun

    run = LocustRun("hello", "http://x", 1, 1.0, [])
    assert math.isnan(run.percentile("99%", "/nothing"))
    with pytest.raises(ValueError):
        run.percentile("42%")
