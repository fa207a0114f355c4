"""Bad scripts and bad clients: each gets its exact status, and the server goes on serving.

A script is an input like a request is: it may print garbage, nothing, or headers without
end, crash, hang, or leave a grandchild behind. The server answers 502 for output that is
not CGI, 504 for a script past its time (and kills the script's whole process group), and
keeps every detail for its own log, never for the client (STYLE rule 8). Clients that
break HTTP get the core's 400 or 431. After each case a plain request must still work.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.launch import ServerProcess
from tests.cgi.support import (
    PYTHON,
    SH,
    alive,
    connect,
    dechunk,
    eventually,
    exchange,
    get,
    make_root,
    processes,
    read_to_eof,
    split,
    start_cgi,
)
from tests.conftest import ServerPool

# Each script that may outlive its answer first writes its pid, so the test can check the
# server killed it.
SCRIPTS = {
    "ok": SH + r"printf 'Content-Type: text/plain\n\nstill serving\n'",
    "garbage": SH + r"printf 'this is not a header line\n\nbody\n'",
    "silent": SH + "exit 0\n",
    "crash": PYTHON + "raise RuntimeError('the script broke: secret detail')\n",
    "half-head": SH + r"printf 'Content-Type: text/plain\n'",
    "flood-head": SH + "echo $$ > flood-head.pid\nexec yes 'X-Flood: yyyyyyyyyyyyyyyyyyyyyyyyy'\n",
    # 40 KiB of fields and the blank line in one write: the cap holds for a header section
    # that arrives complete, not only for one still arriving.
    "big-head": PYTHON
    + "import os\n"
    + "fields = ''.join(f'X-Big-{i}: ' + 'y' * 100 + '\\n' for i in range(400))\n"
    + "os.write(1, (fields + 'Content-Type: text/plain\\n\\nbody\\n').encode())\n",
    "bad-status": SH + r"printf 'Status: abc\nContent-Type: text/plain\n\n'",
    "split": SH + r"printf 'Content-Type: text/plain\nX-Evil: a\rSet-Cookie: b=1\n\nbody'",
    "no-type": SH + r"printf 'X-Only: this\n\nbody'",
    "twice": SH + r"printf 'Status: 200 OK\nStatus: 404 Not Found\nContent-Type: text/plain\n\n'",
    "nph-silent": SH + "exit 0\n",
    # Runs past the timeout, with a grandchild in its process group.
    "hang": SH + "echo $$ > hang.pids\nsleep 300 &\necho $! >> hang.pids\nsleep 300\n",
    "hang-after-head": SH + r"printf 'Content-Type: text/plain\n\nstarted\n'" + "\nsleep 300\n",
    "flood-body": SH
    + "echo $$ > flood-body.pid\nprintf 'Content-Type: text/plain\\n\\n'\nexec yes\n",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("failures"), SCRIPTS)


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    pool = ServerPool()
    try:
        yield start_cgi(pool, root, "--script-timeout", "1")
    finally:
        pool.stop_all()


def assert_still_serving(server: ServerProcess) -> None:
    status, _, body = split(exchange(server, get("/ok")))
    assert (status, dechunk(body)) == (200, b"still serving\n")


def pids_in(path: Path) -> list[int]:
    assert eventually(lambda: path.exists() and path.read_text().count("\n") >= 1)
    return [int(word) for word in path.read_text().split()]


# -- 502: output that is not a CGI response -------------------------------------------------
@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("garbage", b"malformed header line"),
        ("silent", b"no output"),
        ("crash", b"no output"),
        ("half-head", b"ended inside its header section"),
        ("flood-head", b"too large"),
        ("big-head", b"too large"),  # 40 KiB of fields, blank line and all: still too many
        ("bad-status", b"malformed Status"),
        ("split", b"control character"),  # a CR in a value would split our response
        ("no-type", b"neither Content-Type nor Location"),
        ("twice", b"sent twice"),
        ("nph-silent", b"no output"),
    ],
)
def test_broken_output_is_502(server: ServerProcess, script: str, why: bytes) -> None:
    status, headers, body = split(exchange(server, get(f"/{script}")))
    assert status == 502
    assert why in body
    assert "x-evil" not in headers and "set-cookie" not in headers
    assert_still_serving(server)


def test_crash_details_go_to_the_log_not_the_client(server: ServerProcess) -> None:
    raw = exchange(server, get("/crash"))
    assert b"secret detail" not in raw
    assert eventually(lambda: "secret detail" in server.output())  # stderr is the server's


def test_header_flood_is_stopped_and_its_script_killed(server: ServerProcess, root: Path) -> None:
    (root / "flood-head.pid").unlink(missing_ok=True)
    assert split(exchange(server, get("/flood-head")))[0] == 502
    (pid,) = pids_in(root / "flood-head.pid")
    assert eventually(lambda: not alive(pid))


# -- 504: a script past its time, and all of its process group --------------------------------
def test_script_past_its_timeout_is_504_and_its_group_is_killed(
    server: ServerProcess, root: Path
) -> None:
    (root / "hang.pids").unlink(missing_ok=True)
    status, _, body = split(exchange(server, get("/hang")))
    assert status == 504
    assert b"longer than 1 s" in body
    script, grandchild = pids_in(root / "hang.pids")
    assert eventually(lambda: not alive(script) and not alive(grandchild))
    assert not [p for p in processes() if p[3] == script and p[1] != "Z"]
    assert_still_serving(server)


def test_timeout_after_the_head_cuts_the_connection(server: ServerProcess) -> None:
    # 200 went out already: nothing honest is left to say but to close without the last
    # chunk, so that the client knows the body is incomplete.
    status, headers, body = split(exchange(server, get("/hang-after-head")))
    assert (status, headers["transfer-encoding"]) == (200, "chunked")
    assert body.startswith(b"8\r\nstarted\n\r\n")
    assert not body.endswith(b"0\r\n\r\n")
    assert_still_serving(server)


def test_client_leaving_a_flood_of_output_stops_the_script(
    server: ServerProcess, root: Path
) -> None:
    (root / "flood-body.pid").unlink(missing_ok=True)
    with connect(server) as sock:
        sock.sendall(get("/flood-body"))
        received = 0
        while received < 1 << 20:
            received += len(sock.recv(65536))
        # SO_LINGER 0: the close is a reset, as when a client process dies mid-response.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    (pid,) = pids_in(root / "flood-body.pid")
    assert eventually(lambda: not alive(pid))
    assert_still_serving(server)


def test_client_that_stops_reading_is_dropped(root: Path, start_server: ServerPool) -> None:
    # The client reads nothing while the script floods: once the pipe and the socket
    # buffers are full, no send makes progress, and after --request-timeout (SO_SNDTIMEO)
    # the connection process gives up and kills the script, long before --script-timeout.
    server = start_cgi(start_server, root, "--request-timeout", "1", "--script-timeout", "60")
    (root / "flood-body.pid").unlink(missing_ok=True)
    with connect(server) as sock:
        sock.sendall(get("/flood-body"))
        assert eventually(lambda: (root / "flood-body.pid").exists())
        (pid,) = pids_in(root / "flood-body.pid")
        assert eventually(lambda: not alive(pid), timeout=10)
    assert_still_serving(server)


# -- bad HTTP from the client ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /ok HTTP/1.1\nHost: test\n\n", 400),  # bare LF (waitress CVE-2019-16785)
        (b"GET /ok HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /ok HTTP/1.1\r\nHost: test\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),
        (b"GET /ok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: test\r\n\r\n", 414),
        (
            b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET /ok HTTP/2.0\r\nHost: test\r\n\r\n", 505),
    ],
)
def test_bad_requests_get_their_status(
    server: ServerProcess, request_bytes: bytes, status: int
) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        raw = read_to_eof(sock)
    assert split(raw)[0] == status
    assert_still_serving(server)
