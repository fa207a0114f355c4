"""The walkthrough as instructors and CI run it: every lesson straight through, the
prompts on a terminal, Ctrl-C, and the messages for what goes wrong.

Each test runs ``python -m lessons`` as a process and then checks, from /proc, that every
server it announced ("started NAME: pid N") is gone: nothing left behind is part of the
contract, not a nicety.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lessons.catalog import LessonInfo, course
from servers.eras import ERAS, Era

from .conftest import (
    REPO,
    Terminal,
    assert_groups_gone,
    child_env,
    lessons_argv,
    run_lessons,
    started_pids,
    write_lesson,
)

StartTerminal = Callable[[list[str]], Terminal]

WIRE_SERVER = """
## Start

```console step=server name=wire
$ python -m servers.wire --port 0 --trace
```

```http step=request server=wire
GET /first HTTP/1.1
Host: localhost

```
"""


# -- every lesson, straight through ------------------------------------------------------------
@dataclass
class Run:
    number: int
    title: str
    result: subprocess.CompletedProcess[str]
    record: Path


@pytest.fixture(scope="module", params=[i for i in course() if i.written], ids=lambda i: i.slug)
def lesson_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Each written lesson, run once for the module: not a terminal and no --no-pause, so
    the walkthrough must notice by itself that nobody will press Enter."""
    info = request.param
    record = tmp_path_factory.mktemp("record") / "session.html"
    result = run_lessons(str(info.number), "--record", str(record), timeout=120)
    return Run(info.number, info.title, result, record)


def test_every_lesson_runs_straight_through(lesson_run: Run) -> None:
    out, err = lesson_run.result.stdout, lesson_run.result.stderr
    assert lesson_run.result.returncode == 0, out + err
    assert "running straight through" in out
    assert "Traceback" not in out + err
    assert "failed" not in out
    assert f"end of {lesson_run.title}" in out
    assert_groups_gone(started_pids(out))
    assert lesson_run.record.exists() and lesson_run.title in lesson_run.record.read_text()


LESSON_0_SHOWS = (
    "Request(method=b'POST', target=b'/upload'",  # the core in-process: events
    "NEED_DATA 65 times",  # bytes one at a time
    "1 response (200 OK)",
    "2 responses (200 OK, 200 OK)",  # pipelining
    "1 response (100 Continue)",  # Expect: 100-continue
    "400 Bad Request: bare LF",
    "400 Bad Request: both Transfer-Encoding and Content-Length",
    "431 Request Header Fields Too Large",
    "the server closed the connection",
    "(connection k stays open)",
    "1 process, 2 threads",  # the procs step while k is open
    "Aggregated",  # the load table
    "int() reads: 10 1",
    "stopped wire: exit status 0",
    "stopped quiet: exit status 0",
)


def _lesson_0_shows_what_it_teaches(out: str) -> None:
    missing = [needle for needle in LESSON_0_SHOWS if needle not in out]
    assert not missing, missing
    # The same connection carried both keep-alive requests.
    first = re.search(r"(c\d+) < GET /first", out)
    assert first and f"{first.group(1)} < GET /second" in out


LESSON_1_SHOWS = (
    "Status: 200 OK",  # the script run by hand: a CGI response, not yet HTTP
    "[cgi] env HTTP_X_COURSE=gatewaylab",  # the environment is the interface
    "fork+exec hello -> script pid",
    "what a CGI request's time is made of",  # the cost table
    "GET /hello, --spawn posix_spawn",
    "3 -> socket:[",  # the broken server leaks its listening socket
    "0 -> pipe:[",  # the fixed one hands a script its pipes and nothing else
    "stopped broken: exit status 0",
    "nested bash ran",  # Shellshock: the header reached bash as text
    "403 dot segments are not allowed in a script path",
    "400 encoded slash, backslash or NUL in the path",
    "stopped fastcgi: exit status 0",
)


def _lesson_1_shows_what_it_teaches(out: str) -> None:
    missing = [needle for needle in LESSON_1_SHOWS if needle not in out]
    assert not missing, missing
    # Two zombies under the broken server, none anywhere else.
    assert len(re.findall(r"^\s*\d+\s+\d+\s+zombie\s", out, re.MULTILINE)) == 2
    assert "env HTTP_PROXY" not in out  # httpoxy: the Proxy header made no variable
    assert "  INJECTED\\n" not in out  # Shellshock: nothing ran the payload
    assert "3 -> socket:[" not in out[out.index("started fixed") :]  # no leak in servers/cgi.py
    assert out.count("Aggregated") == 3  # fork, posix_spawn, FastCGI


LESSON_2_SHOWS = (
    "20 different pids",  # CGI: a process per request
    "200 requests",  # FastCGI: the process that stays ...
    "1 pid: ",  # ... one pid for all of them
    "01 01 00 01 00 08 00 00  BEGIN_REQUEST id=1 role=RESPONDER flags=KEEP_CONN",  # the trace
    "END_REQUEST id=1 app_status=0 REQUEST_COMPLETE",
    "BEGIN_REQUEST, 16 bytes: 01 01 00 01 00 08 00 00 00 01 01 00 00 00 00 00",  # by hand
    "0b 80 00 00 c8  lengths 11 and 200",  # a four-byte pair length
    "(a kept connection)",  # FCGI_KEEP_CONN: the gateway reuses its connection
    "thread fcgi-worker-1",  # procs: the workers name themselves for the kernel
    "thread fcgi-watch",  # leader and followers: the watch thread promotes a follower
    "request 2's body: b'Hello, world!\\n'",  # multiplexing, by hand
    "FCGI_MPXS_CONNS = 1",  # GET_VALUES
    "after END_REQUEST: closed",  # without KEEP_CONN
    '"era":"wsgi"',  # flup, behind our gateway
    "Aggregated",  # the load table
    "stopped flup: exit status 0",
    "stopped app: exit status 0",
)


def _lesson_2_shows_what_it_teaches(out: str) -> None:
    missing = [needle for needle in LESSON_2_SHOWS if needle not in out]
    assert not missing, missing
    # Multiplexing: the short request 2 ended before the sleeping request 1.
    both = out[out.index("requests 1 and 2 in one write") :]
    assert both.index("END_REQUEST id=2") < both.index("END_REQUEST id=1")
    # /whoami through the gateway: every answer from the one application server.
    app_pid = re.search(r"server app is pid (\d+)", out)
    assert app_pid and set(re.findall(r"^pid (\d+)  thread", out, re.MULTILINE)) == {app_pid[1]}
    # nginx in front, or a clear word on what to install where nginx is missing.
    assert "nginx -> {'era': 'fastcgi'" in out or "skipped: nginx is not installed" in out


def test_python_steps_reach_the_running_servers(tmp_path: Path) -> None:
    step = '```python step=python\nprint("wire:", server("wire").port, server("wire").pid)\n```\n'
    result = run_lessons(str(write_lesson(tmp_path, WIRE_SERVER + "\n" + step)), "--no-pause")
    assert result.returncode == 0, result.stdout
    (pid,) = started_pids(result.stdout)
    assert re.search(rf"wire: \d+ {pid}\n", result.stdout)
    assert_groups_gone([pid])


LESSON_3_SHOWS = (
    "joined: b'Hello from /by-hand\\n'",  # a WSGI app called by hand, no server
    "[wsgi] environ PATH_INFO=/hello",  # the environ, in the trace
    "[wsgi] environ wsgi.multithread=True",
    "[wsgi] environ PATH_INFO=/caf\\xc3\\xa9",  # latin-1: one character per byte
    "'/cafÃ©' -> /café",
    "[wsgi] start_response '200 OK'",
    "[wsgi] close()",
    "request runs on thread wsgi-worker-",
    "1 process, 5 threads",  # the pool: the I/O thread and four workers
    '"thread":"wsgi-worker-',  # /whoami names its thread
    "1 response (408 Request Timeout)",  # the half-sent head, given up on
    "Aggregated",  # the load tables
    "1 response (501 Not Implemented)",  # /ws: the wall
    "stopped pool: exit status 0",  # SIGTERM with a request in flight
    "stopped wsgi: exit status 0",
)


def _lesson_3_shows_what_it_teaches(out: str) -> None:
    missing = [needle for needle in LESSON_3_SHOWS if needle not in out]
    assert not missing, missing
    # Two load tables (8 and 64 users), and the 64 users met some 503s.
    assert out.count("Aggregated") == 2


LESSON_4_SHOWS = (
    "'type': 'http.response.start', 'status': 200",  # an ASGI app called by hand
    "Hello from /by-hand, body (none)",
    "10,000 waits of 0.2 s took",  # the event loop: ten thousand waits ...
    " s on 1 thread",  # ... on one thread
    "the loop asks the kernel with: EpollSelector",
    "[asgi Task-",  # the trace names the task of every message
    "scope type='http'",
    "type='http.response.start' status=200",
    '"path": "/env",',  # the scope, whole, from /env
    "type='http.request' body=<11 bytes> more_body=False",  # receive() brings the body
    "type='http.response.body' body=<13 bytes> more_body=True",  # streaming
    "1 response (101 Switching Protocols)",  # the WebSocket handshake, by hand
    "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",  # RFC 6455's sample answer
    "81 8b 37 fa 21 3d",  # a masked client frame
    "type='websocket.receive' text='hello, loop'",
    "\\x81\\x0bhello, loop",  # the echo: an unmasked server frame
    "type='websocket.disconnect' code=1000",
    "1 process, 305 threads",  # the pool of 304, plus the I/O thread
    "300 requests of 1000 ms all answered 200",  # held at once, waited together
    "thread stacks in /proc/",  # each reserved whole, touched little
    "KiB reserved each",
    "kernel.pid_max",
    "stopped blocked: exit status 0",
    "stopped fixed: exit status 0",
    "stopped loop: exit status 0",
    "stopped asgi: exit status 0",
)
_COST_ROW = r"│ {what}\s+│ {server}\s+│\s+300 │\s+(-?[\d,.]+) │\s+(-?[\d,.]+) │"
_LOAD_ROW = r"│ GET {path}\s+│\s+([\d,]+) │\s+([\d,]+) │\s+\S+ │\s+([\d.]+) │"


def _kib(match: re.Match[str] | None, column: int) -> float:
    assert match is not None
    return float(match.group(column).replace(",", ""))


def _lesson_4_shows_what_it_teaches(out: str) -> None:
    missing = [needle for needle in LESSON_4_SHOWS if needle not in out]
    assert not missing, missing
    # The costs, measured: an idle connection costs the event loop less RAM than an idle
    # thread costs the pool, and a thread reserves megabytes of address space where a
    # connection reserves kilobytes.
    connection = re.search(_COST_ROW.format(what="an idle connection", server="loop"), out)
    thread = re.search(_COST_ROW.format(what="an idle pool thread", server="pool → pool304"), out)
    assert _kib(connection, 1) < _kib(thread, 1)
    assert _kib(thread, 2) > 1024 > _kib(connection, 2)
    # time.sleep in a handler: /hello was read only after the sleeper had answered.
    blocked = out[out.index("start server blocked") : out.index("load on blocked")]
    assert blocked.index("> slept 1500 ms") < blocked.index("< GET /hello HTTP/1.1")
    # await asyncio.sleep: /hello answered while the other request still slept.
    fixed = out[out.index("start server fixed") : out.index("load on fixed")]
    assert "< GET /hello HTTP/1.1" in fixed and "> slept 1500 ms" not in fixed
    # The locust probes: the fast page waits behind the sleeps on the broken app only.
    hello = re.findall(_LOAD_ROW.format(path="/hello"), out)
    assert len(hello) == 2 and float(hello[0][2]) > float(hello[1][2]), hello
    # Lesson 3's 64 users on one thread: no 503, no failure of any kind.
    (slow,) = re.findall(_LOAD_ROW.format(path=r"/sleep\?ms=100"), out)
    assert int(slow[0].replace(",", "")) > 0 and slow[1] == "0", slow
    assert out.count("Aggregated") == 3
    # The graceful stop waited for the request in flight.
    assert re.search(r"background request to loop finished after [\d.]+ s: .*\(200 OK\)", out)


LESSON_5_SHOWS = (
    "select()",  # the readiness calls, timed
    "epoll_wait()",
    "idle: a process",  # the cost table: one row per unit of each model
    "+ request: a script",
    "+ req: FCGI conn.",
    "pool thread (start)",
    "+ req: busy thread",
    "+ request: a task",
    "cgi: 10 requests of 3000 ms answered 200 in",  # held at once, waited together
    "asgi: 200 requests of 3000 ms answered 200 in",
    "make showdown ARGS='--eras wsgi,asgi --levels 5,20",  # the command it stands for
    "written to results/lesson-5-showdown/:",  # the charts, by path
    "results/lesson-5-showdown/overview.png",
    "results/lesson-5-showdown/throughput-sleep.png",
    "results/lesson-5-showdown/p99-sleep.png",
    "results/lesson-5-showdown/memory-sleep.png",
    "requests inside at once",  # Little's law
    "400 connections to one port; each socket accepted [",  # SO_REUSEPORT
    "stopped cgi: exit status 0",
    "stopped fastcgi: exit status 0",
    "stopped pool: exit status 0",
    "stopped pool1: exit status 0",
    "stopped loop: exit status 0",
)
_PER_REQUEST = r"^{era}\s+([\d,.]+) KiB each \(PSS\)"
_SHOWDOWN_ROW = r"^\s+{era}\s+{users}\s+ok\s+([\d,]+)\s"


def _number(pattern: str, out: str) -> float:
    match = re.search(pattern, out, re.MULTILINE)
    assert match is not None, pattern
    return float(match.group(1).replace(",", ""))


def _lesson_5_shows_what_it_teaches(out: str) -> None:
    missing = [needle for needle in LESSON_5_SHOWS if needle not in out]
    assert not missing, missing
    # poll() looks at every descriptor, epoll_wait() at the ready one: at 10,000 (when the
    # descriptor limit allows that row) select() refuses and poll() is far slower.
    row = re.search(r"^\s+10,000\s+refused \(fd ≥ 1024\)\s+([\d,.]+)\s+([\d,.]+)", out, re.M)
    if row is not None:
        assert float(row.group(1).replace(",", "")) > 5 * float(row.group(2).replace(",", ""))
    # CGI: a process per idle connection, and one more (the script) per request.
    assert re.search(r"idle: a process\s+10\s+\+10\s", out)
    script = re.search(r"\+ request: a script\s+(\d+)\s+\+(\d+)\s", out)
    assert script and script.group(1) == script.group(2) != "0"
    # The price of one waiting request, all in: a process costs megabytes, the others KiB,
    # and a task less than a thread.
    cost = {e: _number(_PER_REQUEST.format(era=e), out) for e in ("cgi", "fastcgi", "wsgi", "asgi")}
    assert cost["cgi"] > 1024 > max(cost["fastcgi"], cost["wsgi"])
    assert cost["asgi"] < cost["wsgi"]
    # The small showdown: 8 threads, each held 100 ms a request, cannot answer more than
    # 80 a second; one event loop with 20 users answers more than that.
    wsgi = _number(_SHOWDOWN_ROW.format(era="wsgi", users=20), out)
    asgi = _number(_SHOWDOWN_ROW.format(era="asgi", users=20), out)
    assert wsgi <= 88 and asgi > wsgi, (wsgi, asgi)
    # Little's law, once per run (the step's own code says the words once more).
    assert len(re.findall(r"\d+ users: +[\d,]+/s x +\d+ ms = +[\d.]+ requests inside", out)) == 4


# What each written lesson must show when it runs straight through. A new lesson adds its
# checks here: the test below fails for a written lesson that has none.
LESSON_CHECKS = {
    0: _lesson_0_shows_what_it_teaches,
    1: _lesson_1_shows_what_it_teaches,
    2: _lesson_2_shows_what_it_teaches,
    3: _lesson_3_shows_what_it_teaches,
    4: _lesson_4_shows_what_it_teaches,
    5: _lesson_5_shows_what_it_teaches,
}


def test_each_lesson_shows_what_it_teaches(lesson_run: Run) -> None:
    check = LESSON_CHECKS.get(lesson_run.number)
    assert check is not None, f"lesson {lesson_run.number} has no entry in LESSON_CHECKS"
    check(lesson_run.result.stdout)


# -- the catalog -------------------------------------------------------------------------------
def test_list_shows_the_whole_course() -> None:
    result = run_lessons("--list")
    assert result.returncode == 0
    for info in course():
        assert re.sub(r"^Lesson \d+ · ", "", info.title).split(":")[0] in result.stdout
    assert "ready: make lesson-0" in result.stdout
    assert "00-http.ipynb" in result.stdout


@pytest.mark.parametrize(
    "info",
    [i for i in course() if not i.written] or [None],
    ids=lambda i: str(getattr(i, "number", "none")),
)
def test_a_lesson_not_written_yet_says_when_it_comes(info: LessonInfo | None) -> None:
    if info is None:
        pytest.skip("every lesson is written")
    number = info.number
    result = run_lessons(str(number))
    assert result.returncode == 3
    assert f"Lesson {number}" in result.stderr or f"lesson {number}" in result.stderr
    assert "--list" in result.stderr
    era = info.era
    if era is not None and not era.built:
        assert f"arrives with the {era.name.upper()} era" in " ".join(result.stderr.split())


def test_usage_errors() -> None:
    assert run_lessons("0", "--step", "999").returncode == 2
    assert run_lessons("no/such/lesson.md").returncode == 2
    assert run_lessons("0", "--record", "x.pdf").returncode == 2


def test_a_lesson_file_that_breaks_the_format(tmp_path: Path) -> None:
    path = write_lesson(tmp_path, "## S\n\n```http step=reqest server=x\nGET /\n```\n")
    result = run_lessons(str(path))
    assert result.returncode == 2
    assert "99-test.md:5: unknown step kind 'reqest'" in result.stderr


# -- starting at a step --------------------------------------------------------------------------
def test_step_k_starts_there_after_starting_the_servers_quietly(tmp_path: Path) -> None:
    path = write_lesson(
        tmp_path,
        WIRE_SERVER
        + """
## Later

```python step=python
greeting = "hello from step 3"
```

This prose introduces step 4.

```http step=request server=wire
GET /fourth HTTP/1.1
Host: localhost

```

```python step=python
print(greeting)
```
""",
    )
    result = run_lessons(str(path), "--step", "4", "--no-pause")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "skipped steps 1-3; ran quietly: 1 server step, 1 python step" in out
    assert "step 1/5" not in out and "GET /first" not in out
    assert "This prose introduces step 4." in out and "step 4/5" in out
    assert "GET /fourth" in out and "hello from step 3" in out


EXPECT_ON_CONNECTION_E = """
## Expect

```console step=server name=wire
$ python -m servers.wire --port 0 --trace
```

```http step=request server=wire conn=e responses=0
POST /up HTTP/1.1
Host: localhost
Content-Length: 5
Expect: 100-continue

```

```http step=request server=wire conn=e
hello
```
"""


def test_step_k_reopens_a_connection_it_goes_on_using(tmp_path: Path) -> None:
    path = write_lesson(tmp_path, EXPECT_ON_CONNECTION_E)
    result = run_lessons(str(path), "--step", "3", "--no-pause")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "ran quietly: 1 server step, 1 request step" in out
    assert "5 bytes on the same connection" in out and "1 response (200 OK)" in out


# -- failures: a message and a fix, never a traceback ----------------------------------------------
def test_port_in_use_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        path = write_lesson(
            tmp_path,
            "## S\n\n```console step=server name=wire\n"
            f"$ python -m servers.wire --port {port}\n```\n",
        )
        result = run_lessons(str(path), "--no-pause")
    out = result.stdout
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in out
    assert "fix:" in out and "--port 0" in out
    assert "--step 1" in out  # how to resume
    assert "Traceback" not in out + result.stderr


@pytest.mark.parametrize(
    ("block", "problem", "fix"),
    [
        (
            "```python step=python\nx = 1\n1 / 0\n```",
            "ZeroDivisionError: division by zero (line 2 of the snippet)",
            "fix the snippet",
        ),
        (
            "```python step=python\nprint(undefined_name)\n```",
            "NameError: name 'undefined_name' is not defined",
            "from an earlier python step",
        ),
        (
            "```console step=shell\n$ gatewaylab-no-such-program --help\n```",
            "program 'gatewaylab-no-such-program' is not installed",
            "install",
        ),
        (
            "```console step=shell\n$ python -c 'raise SystemExit(3)'\n```",
            "python exited with status 3 (expected 0)",
            "read its output",
        ),
        (
            "```console step=server name=peer\n$ gatewaylab-no-such-server --port 0\n```",
            "cannot start peer: program 'gatewaylab-no-such-server' is not installed",
            "install it",
        ),
        (
            "```http step=request server=ghost\nGET / HTTP/1.1\n\n```",
            "no server named 'ghost' was started",
            "start it with a server step",
        ),
    ],
)
def test_a_failing_step_explains_itself(tmp_path: Path, block: str, problem: str, fix: str) -> None:
    path = write_lesson(tmp_path, "## S\n\n" + block + "\n\n## Never reached\n\nNot shown.\n")
    result = run_lessons(str(path), "--no-pause")
    out = " ".join(result.stdout.split())
    assert result.returncode == 1, out
    assert "step 1 failed: " + problem in out
    assert fix in out and "Traceback" not in out + result.stderr
    assert "Not shown." not in out


def test_a_peer_gets_a_free_port_and_references_resolve(tmp_path: Path) -> None:
    """``{port}`` for a program that cannot report its port; ``{NAME.port}`` after it."""
    lesson = """## S

```console step=server name=peer
$ python -m http.server {port} --bind 127.0.0.1 --directory lessons
```

```http step=request server=peer
GET /README.md HTTP/1.1
Host: 127.0.0.1:{peer.port}

```
"""
    result = run_lessons(str(write_lesson(tmp_path, lesson)), "--no-pause")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    port = re.search(r"started peer: pid \d+ \(process group \d+\) on http://127.0.0.1:(\d+)/", out)
    assert port and f"Host: 127.0.0.1:{port.group(1)}\\r\\n" in out
    assert "1 response (200 OK)" in out
    assert_groups_gone(started_pids(out))


def test_optional_program_missing_is_a_note(tmp_path: Path) -> None:
    path = write_lesson(
        tmp_path, "## S\n\n```console step=shell optional\n$ gatewaylab-absent\n```\n"
    )
    result = run_lessons(str(path), "--no-pause")
    assert result.returncode == 0
    assert "skipped: gatewaylab-absent is not installed" in result.stdout


@pytest.mark.parametrize(
    "era", [e for e in ERAS if not e.built][:1] or [None], ids=lambda e: getattr(e, "name", "none")
)
def test_an_era_not_built_yet_in_a_step(tmp_path: Path, era: Era | None) -> None:
    if era is None:
        pytest.skip("every era is built")
    name = era.name
    path = write_lesson(
        tmp_path,
        f"## S\n\n```console step=server name=x\n$ python -m servers {name} --port 0\n```\n",
    )
    result = run_lessons(str(path), "--no-pause")
    out = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert f"the {name} era" in out and "is not built yet" in out
    assert f"arrives with lesson {era.lesson}" in out


# -- interruptions: Ctrl-C and SIGTERM stop everything ---------------------------------------------
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_lesson_stops_every_server(tmp_path: Path, signum: int, status: int) -> None:
    path = write_lesson(
        tmp_path,
        WIRE_SERVER
        + '\n```console step=shell\n$ python -c "import time; time.sleep(61.25)"\n```\n',
    )
    proc = subprocess.Popen(
        lessons_argv(str(path), "--no-pause"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=child_env(),
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # until the long step has started
        lines.append(line)
        if "time.sleep(61.25)" in line:
            break
    sleeper = _pids_running("time.sleep(61.25)")
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=30)
    out = "".join(lines) + rest
    assert proc.returncode == status, out
    assert "interrupted" in out and "stopped what the lesson started: wire (pid" in out
    assert "Traceback" not in out
    assert_groups_gone(started_pids(out) + sleeper)


def _pids_running(token: str) -> list[int]:
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if token.encode() in cmdline and b"lessons" not in cmdline:
                    found.append(int(entry.name))
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no process running {token!r}")


# -- on a terminal: prompts, re-run, quit, Ctrl-C -------------------------------------------------
TERMINAL_LESSON = (
    WIRE_SERVER
    + """
## After

```python step=python
print("third step ran")
```
"""
)


def test_terminal_rerun_then_quit(tmp_path: Path, terminal: StartTerminal) -> None:
    path = write_lesson(tmp_path, TERMINAL_LESSON)
    term = terminal(lessons_argv(str(path)))
    term.wait_for("Enter: next · r: re-run · q: quit")  # after step 1, the server
    term.type("\n")
    term.wait_for("Enter: next · r: re-run · q: quit", count=2)  # after step 2, the request
    term.type("r\n")
    term.wait_for("step 2/3 · request → wire (again)")
    term.wait_for("Enter: next · r: re-run · q: quit", count=3)
    term.type("q\n")
    assert term.finish() == 0
    text = term.text
    assert text.count("GET /first HTTP/1.1\\r\\n") == 2  # sent twice: it re-ran
    assert "quit." in text and "third step ran" not in text
    assert "stopped what the lesson started: wire" in text
    assert "Traceback" not in text
    assert_groups_gone(started_pids(text))


def test_terminal_ctrl_c_at_a_prompt(tmp_path: Path, terminal: StartTerminal) -> None:
    path = write_lesson(tmp_path, TERMINAL_LESSON)
    term = terminal(lessons_argv(str(path)))
    term.wait_for("Enter: next · r: re-run · q: quit")
    term.type("\x03")  # Ctrl-C, delivered by the terminal as SIGINT
    assert term.finish() == 130
    assert "interrupted (Ctrl-C)" in term.text and "Traceback" not in term.text
    assert_groups_gone(started_pids(term.text))


def test_terminal_failed_step_can_be_skipped(tmp_path: Path, terminal: StartTerminal) -> None:
    path = write_lesson(
        tmp_path,
        "## S\n\n```python step=python\n1 / 0\n```\n"
        + TERMINAL_LESSON.replace("## Start", "## Then"),
    )
    term = terminal(lessons_argv(str(path)))
    term.wait_for("r: re-run · Enter: skip it and go on · q: quit")
    term.type("\n")
    term.wait_for("step 2/4 · start server wire")
    term.wait_for("Enter: next", count=1)
    term.type("q\n")
    assert term.finish() == 0
    assert_groups_gone(started_pids(term.text))
