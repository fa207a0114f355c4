"""`make bench` (loadtests/bench.py): the wrk parser, the statistics, and the harness end to end.

The parser and the statistics are tested without any process, on wrk reports captured from
wrk 4.1.0 (Debian) against uvicorn and against small misbehaving servers. The end-to-end
tests run the real command on a baseline pair with the tiniest settings (--smoke): they check
the shape of the results and that nothing is left running, never how fast anything is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtests import bench
from loadtests.bench import RunRecord, SocketErrors, WrkOutputError, WrkResult, parse_wrk
from servers.eras import Era
from servers.launch import pids_in_groups
from tests.peers import require_program

REPO_ROOT = Path(__file__).resolve().parent.parent

# -- captured wrk reports ------------------------------------------------------------------

CLEAN = """\
Running 2s test @ http://127.0.0.1:18123/hello
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.93ms    0.97ms  36.22ms   96.96%
    Req/Sec    26.50k     3.55k   35.85k    70.00%
  Latency Distribution
     50%    1.91ms
     75%    2.10ms
     90%    2.30ms
     99%    4.13ms
  52706 requests in 2.00s, 7.59MB read
Requests/sec:  26306.10
Transfer/sec:      3.79MB
"""

# One connection: the fast percentiles come out in microseconds, the slow one in ms.
MICROSECONDS = """\
Running 1s test @ http://127.0.0.1:18123/hello
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   217.49us  305.50us   4.69ms   92.66%
    Req/Sec     6.20k     0.90k    7.53k    70.00%
  Latency Distribution
     50%  143.00us
     75%  166.00us
     90%  329.00us
     99%    1.44ms
  6165 requests in 1.00s, 0.89MB read
Requests/sec:   6159.49
Transfer/sec:      0.89MB
"""

# Every route but /hello answers 404.
NON_2XX = """\
Running 1s test @ http://127.0.0.1:18123/nope
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.79ms  761.25us  26.36ms   94.68%
    Req/Sec    28.31k     6.66k   40.99k    80.00%
  Latency Distribution
     50%    1.77ms
     75%    2.07ms
     90%    2.34ms
     99%    3.48ms
  28171 requests in 1.00s, 4.24MB read
  Non-2xx or 3xx responses: 28171
Requests/sec:  28105.46
Transfer/sec:      4.23MB
"""

# A server that sleeps up to 2.5 s against wrk --timeout 2s: timeouts, and latencies in
# seconds. wrk pads a time printed in seconds to the width of "ms", hence "1.50s ".
TIMEOUTS = """\
Running 4s test @ http://127.0.0.1:18124/hello
  1 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   695.74ms  648.35ms   1.50s    26.98%
    Req/Sec    37.23     33.88   100.00     76.92%
  Latency Distribution
     50%  900.20ms
     75%    1.50s@
     90%    1.50s@
     99%    1.50s@
  73 requests in 4.01s, 10.76KB read
  Socket errors: connect 0, read 0, write 0, timeout 10
Requests/sec:     18.22
Transfer/sec:      2.69KB
""".replace("@", " ")

# A server that closes a third of its connections without answering: read errors.
READ_ERRORS = """\
Running 1s test @ http://127.0.0.1:18125/hello
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.25ms  793.50us   9.89ms   88.35%
    Req/Sec     2.66k   490.95     3.30k    70.00%
  Latency Distribution
     50%    2.07ms
     75%    2.43ms
     90%    2.97ms
     99%    5.16ms
  2649 requests in 1.00s, 106.06KB read
  Socket errors: connect 0, read 3974, write 0, timeout 0
Requests/sec:   2647.40
Transfer/sec:    106.00KB
"""

# A server that accepts and never answers: no request completes, the averages are NaN.
NOTHING = """\
Running 1s test @ http://127.0.0.1:18126/hello
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.00s, 0.00B read
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


# -- (a) the parser -------------------------------------------------------------------------


def test_parse_clean_run() -> None:
    result = parse_wrk(CLEAN)
    assert result == WrkResult(
        requests=52706,
        duration_s=2.0,
        requests_per_sec=26306.10,
        latency_p50_ms=1.91,
        latency_p75_ms=2.10,
        latency_p90_ms=2.30,
        latency_p99_ms=4.13,
    )
    assert result.problems == ()


def test_parse_converts_every_time_unit_to_milliseconds() -> None:
    micro = parse_wrk(MICROSECONDS)
    assert micro.latency_p50_ms == pytest.approx(0.143)
    assert micro.latency_p90_ms == pytest.approx(0.329)
    assert micro.latency_p99_ms == pytest.approx(1.44)
    seconds = parse_wrk(TIMEOUTS)
    assert seconds.latency_p50_ms == pytest.approx(900.2)
    assert seconds.latency_p99_ms == pytest.approx(1500.0)
    assert seconds.duration_s == pytest.approx(4.01)


def test_parse_non_2xx_responses_flag_the_run() -> None:
    result = parse_wrk(NON_2XX)
    assert result.non_2xx_3xx == 28171
    assert result.socket_errors == SocketErrors()
    assert result.problems == ("non-2xx/3xx responses: 28171",)


def test_parse_socket_errors_flag_the_run() -> None:
    timeouts = parse_wrk(TIMEOUTS)
    assert timeouts.socket_errors == SocketErrors(timeout=10)
    assert timeouts.requests_per_sec == pytest.approx(18.22)
    assert timeouts.problems == ("socket errors: timeout 10",)
    reads = parse_wrk(READ_ERRORS)
    assert reads.socket_errors == SocketErrors(connect=0, read=3974, write=0, timeout=0)
    assert reads.socket_errors.total == 3974
    assert reads.problems == ("socket errors: read 3974",)


def test_parse_both_error_lines_together() -> None:
    both = READ_ERRORS.replace(
        "  Socket errors: connect 0, read 3974, write 0, timeout 0\n",
        "  Socket errors: connect 2, read 3974, write 1, timeout 7\n"
        "  Non-2xx or 3xx responses: 12\n",
    )
    result = parse_wrk(both)
    assert result.socket_errors == SocketErrors(connect=2, read=3974, write=1, timeout=7)
    assert result.non_2xx_3xx == 12
    assert result.problems == (
        "socket errors: connect 2, read 3974, write 1, timeout 7",
        "non-2xx/3xx responses: 12",
    )


def test_parse_no_request_completed() -> None:
    result = parse_wrk(NOTHING)
    assert result.requests == 0
    assert result.requests_per_sec == 0.0
    assert result.latency_p99_ms == 0.0
    assert result.problems == ("no request completed",)


def test_parse_without_latency_distribution() -> None:
    # Without --latency wrk prints no distribution; the totals still parse.
    lines = CLEAN.splitlines(keepends=True)
    without = "".join(lines[:5] + lines[10:])
    result = parse_wrk(without)
    assert result.requests_per_sec == pytest.approx(26306.10)
    assert result.latency_p50_ms is None
    assert result.latency_p99_ms is None


@pytest.mark.parametrize(
    "output",
    [
        "",
        "unable to connect to 127.0.0.1:9 Connection refused\n",
        "Usage: wrk <options> <url>\n  Options:\n    -c, --connections <N>\n",
        CLEAN.replace("Requests/sec:  26306.10\n", ""),  # cut short
    ],
)
def test_parse_rejects_output_without_totals(output: str) -> None:
    with pytest.raises(WrkOutputError):
        parse_wrk(output)


# -- (b) medians and ratios -----------------------------------------------------------------


def _run(rps: float, round_: int = 1, p99: float = 5.0, **problems: int) -> RunRecord:
    errors = SocketErrors(read=problems.get("read", 0))
    wrk = WrkResult(1000, 1.0, rps, p99 / 2, None, None, p99, errors, problems.get("non2xx", 0))
    return RunRecord("ours", round_, ("wrk",), wrk, client_cpu=0.3)


def test_summary_is_the_median_of_clean_measured_runs() -> None:
    runs = [
        _run(999_999, round_=0),  # the warm-up never counts
        _run(100, p99=4.0),
        _run(300, p99=9.0),
        _run(200, p99=5.0),
        _run(5_000, read=3),  # flagged: left out, but still a run
        _run(6_000, non2xx=1),
    ]
    summary = bench.summarize(runs)
    assert summary.runs == 5
    assert summary.clean_runs == 3
    assert summary.median_rps == 200
    assert summary.median_p99_ms == 5.0
    assert summary.median_p50_ms == 2.5


def test_summary_of_an_even_number_of_runs_averages_the_middle_two() -> None:
    assert bench.summarize([_run(100), _run(400), _run(200), _run(300)]).median_rps == 250


def test_summary_without_a_clean_run_has_no_median() -> None:
    failed = RunRecord("peer", 1, ("wrk",), None, error="exit status 1")
    summary = bench.summarize([failed, _run(100, read=1)])
    assert (summary.runs, summary.clean_runs, summary.median_rps) == (2, 0, None)
    assert failed.problems == ("wrk failed: exit status 1",)


def test_ratio() -> None:
    assert bench.ratio(300.0, 200.0) == pytest.approx(1.5)
    assert bench.ratio(None, 200.0) is None
    assert bench.ratio(300.0, None) is None
    assert bench.ratio(300.0, 0.0) is None


def test_pair_status_after_the_runs() -> None:
    pair = bench.PAIRS[0]
    result = bench.PairResult(pair, 50)
    result.ours.runs = [_run(10, round_=0, read=5), _run(300), _run(100)]
    result.peer.runs = [_run(100), _run(200), _run(900, non2xx=1)]
    result.settle_status()
    assert result.status == "flagged"  # a bad measured run; the bad warm-up does not matter
    assert result.ratio == pytest.approx(200 / 150)
    assert result.to_json()["flags"] == ["B round 1: non-2xx/3xx responses: 1"]


def test_pair_fails_without_a_clean_run_on_a_side() -> None:
    result = bench.PairResult(bench.PAIRS[0], 50)
    result.ours.runs = [_run(300)]
    result.peer.runs = [_run(100, read=1)]
    result.settle_status()
    assert result.status == "failed"
    assert result.message == "no clean run for B (uvicorn (h11))"
    assert result.ratio is None


# -- the registry and the command line, without load ----------------------------------------


def test_registry_names_are_unique_and_baselines_need_no_era() -> None:
    names = [pair.name for pair in bench.PAIRS]
    assert len(names) == len(set(names))
    baselines = [pair for pair in bench.PAIRS if pair.baseline]
    assert {pair.name for pair in baselines} >= {"baseline-asgi", "baseline-wsgi"}
    for pair in baselines:
        assert pair.ours.era is None and pair.peer.era is None
        assert pair.ratio_of == "A/B"


def test_select_pairs_by_name_and_glob() -> None:
    assert [p.name for p in bench.select_pairs("baseline-*", bench.PAIRS)] == [
        "baseline-asgi",
        "baseline-wsgi",
    ]
    assert [p.name for p in bench.select_pairs("baseline-wsgi", bench.PAIRS)] == ["baseline-wsgi"]
    with pytest.raises(KeyError, match="no pair matches 'nope'"):
        bench.select_pairs("baseline-asgi,nope", bench.PAIRS)


def test_pair_of_an_unbuilt_era_is_not_runnable(monkeypatch: pytest.MonkeyPatch) -> None:
    unbuilt = Era("wsgi", "servers.not_written_yet", "t", "m", 3, "apps.wsgi:app")
    monkeypatch.setattr(bench, "era_named", lambda name: unbuilt)
    pair = bench.Pair("x", "/hello", 1, bench.ours("wsgi"), bench.WAITRESS)
    assert bench.why_not_runnable(pair) == "not built yet: servers.not_written_yet (lesson 3)"


def test_peer_template_fills_in_the_port(tmp_path: Path) -> None:
    target = bench.peer("p", "{python}", "-m", "srv", "--bind={host}:{port}", "--dir={dir}")
    (launch,) = target.recipe(bench.Workspace(tmp_path))
    assert launch.port is not None
    assert list(launch.argv) == [
        sys.executable, "-m", "srv", f"--bind=127.0.0.1:{launch.port}", f"--dir={tmp_path}",
    ]  # fmt: skip


def test_list_shows_every_pair(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--list"]) == 0
    out = capsys.readouterr().out
    for pair in bench.PAIRS:
        assert pair.name in out


def test_missing_wrk_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "find_program", lambda program: None)
    assert bench.main(["--smoke", "--pairs", "baseline-asgi"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "bench: wrk is not installed: sudo apt-get install wrk"


# -- (c) end to end -------------------------------------------------------------------------


def _bench_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadtests.bench", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.peer
@pytest.mark.slow
def test_smoke_run_of_a_baseline_pair(tmp_path: Path) -> None:
    require_program("wrk")
    out = tmp_path / "bench.json"
    done = subprocess.run(
        _bench_command("--smoke", "--pairs", "baseline-asgi", "--json", str(out)),
        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(out.read_text())
    assert document["machine"]["nproc"] == os.cpu_count()
    assert "--smoke" in document["command"]
    (pair,) = document["pairs"]
    assert pair["name"] == "baseline-asgi"
    assert pair["status"] in ("ok", "flagged")
    assert pair["ratio_of"] == "A/B"
    assert pair["ratio"] is not None and pair["ratio"] > 0
    groups = set()
    for side in ("ours", "peer"):
        assert pair[side]["summary"]["median_rps"] > 0
        assert len(pair[side]["warmup"]) == 1
        assert len(pair[side]["runs"]) == 1
        run = pair[side]["runs"][0]
        assert run["wrk"]["requests_per_sec"] > 0
        assert "wrk -t1 -c50 -d1s --latency" in run["argv"]
        groups |= {process["process_group"] for process in pair[side]["processes"]}
    assert len(groups) == 2
    assert pids_in_groups(*groups) == []
    assert "baseline-asgi" in done.stdout and "A/B" in done.stdout


@pytest.mark.peer
def test_a_server_that_fails_to_start_fails_its_pair_with_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_program("wrk")
    broken = bench.peer("broken", "{python}", "-c", "print('no app here'); raise SystemExit(3)")
    pairs = (bench.Pair("broken-pair", "/hello", 4, broken, bench.UVICORN_H11, baseline=True),)
    out = tmp_path / "bench.json"
    assert bench.main(["--smoke", "--json", str(out)], pairs=pairs) == 1
    (pair,) = json.loads(out.read_text())["pairs"]
    assert pair["status"] == "failed"
    assert "A (broken) did not start" in pair["message"]
    assert "no app here" in pair["message"]
    assert "no app here" in capsys.readouterr().out


# A stdlib HTTP server that exits by itself 1.5 s after it starts: under load, mid-bench.
SHORT_LIVED = """\
import os, sys, threading
from http.server import HTTPServer, SimpleHTTPRequestHandler
def leave():
    print("leaving in the middle of the load", flush=True)
    os._exit(3)
threading.Timer(1.5, leave).start()
HTTPServer(("127.0.0.1", int(sys.argv[1])), SimpleHTTPRequestHandler).serve_forever()
"""


@pytest.mark.peer
def test_a_server_that_dies_under_load_fails_its_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_program("wrk")
    dying = bench.peer("short-lived", "{python}", "-c", SHORT_LIVED, "{port}")
    stdlib = bench.peer(
        "http.server", "{python}", "-m", "http.server", "--bind", "{host}", "{port}"
    )
    pairs = (bench.Pair("dying-pair", "/", 4, dying, stdlib, baseline=True),)
    out = tmp_path / "bench.json"
    assert bench.main(["--smoke", "--json", str(out)], pairs=pairs) == 1
    (pair,) = json.loads(out.read_text())["pairs"]
    assert pair["status"] == "failed"
    assert "A (short-lived) exited with status 3 during the runs" in pair["message"]
    assert "leaving in the middle of the load" in pair["message"]  # the output's tail
    assert pair["ours"]["warmup"]  # it did get as far as the runs


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                children.append(int(entry.name))
    return children


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_every_server(tmp_path: Path, signum: signal.Signals) -> None:
    require_program("wrk")
    proc = subprocess.Popen(
        _bench_command("--pairs", "baseline-asgi", "--runs", "5", "--duration", "5",
                       "--json", str(tmp_path / "never.json")),
        cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        # Both servers are up once the warm-up of A is reported: then interrupt mid-run.
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            if "warm-up A" in line or time.monotonic() > deadline:
                break
        servers = set(_children_of(proc.pid))  # both servers, and maybe wrk warming up B
        assert len(servers) >= 2
        # Only to the bench process, not its group: the bench must stop wrk itself too.
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, rest
    assert "interrupted" in rest
    assert not (tmp_path / "never.json").exists()
    # The servers' groups are empty, and wrk (in the bench's own group) is gone too.
    assert pids_in_groups(*servers) == []
    assert [pid for pid in servers if _alive(pid)] == []
