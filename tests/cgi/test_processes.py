"""Fork discipline under load: no zombie, no leaked descriptor, a bounded number of
processes, and a graceful stop.

These are the classic bugs of forking servers (STYLE "Never": unreaped children,
inherited descriptors), so each is checked from the outside, in /proc, after the kind of
traffic that provokes it: many clients at once, half of them leaving mid-response.
"""

from __future__ import annotations

import signal
import socket
import struct
from pathlib import Path

import pytest

from servers.launch import ServerProcess
from tests.cgi.support import (
    SH,
    alive,
    connect,
    dechunk,
    eventually,
    fd_count,
    get,
    make_root,
    processes,
    read_to_eof,
    split,
    start_cgi,
)
from tests.conftest import ServerPool

SCRIPTS = {
    "ok": SH + r"printf 'Content-Type: text/plain\nContent-Length: 3\n\nok\n'",
    # Twenty lines, 50 ms apart; each run leaves its pid behind.
    "stream": SH
    + "echo $$ >> stream.pids\nprintf 'Content-Type: text/plain\\n\\n'\n"
    + "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do\n"
    + "  printf 'line %s\\n' $i\n  sleep 0.05\ndone\n",
    "slow": SH + r"printf 'Content-Type: text/plain\n\nfirst\n'; sleep 1; printf 'last\n'",
}
STREAM_BODY = b"".join(b"line %d\n" % i for i in range(1, 21))
CLIENTS = 50


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path, SCRIPTS)


def quiet(server: ServerProcess, children: int = 0) -> bool:
    """The listening process has exactly ``children`` connection processes left: the
    others have exited *and been reaped*. A child stays in /proc, as a zombie, until its
    parent reaps it, so one scan that counts every process whose parent is the server,
    zombies included, sees what the server's own count of children holds."""
    return sum(1 for p in processes() if p[2] == server.pid) == children


def reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a client that dies mid-response does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_burst_with_disconnects_leaves_no_zombie_and_no_descriptor(
    root: Path, start_server: ServerPool
) -> None:
    server = start_cgi(start_server, root)
    assert eventually(lambda: quiet(server))
    baseline = fd_count(server.pid)

    socks = [connect(server) for _ in range(CLIENTS)]
    for sock in socks:
        sock.sendall(get("/stream"))
    leavers, stayers = socks[::2], socks[1::2]
    for sock in leavers:
        assert sock.recv(1) == b"H"  # the response has started...
        reset(sock)  # ...and the client is gone
    for sock in stayers:
        with sock:
            status, _, body = split(read_to_eof(sock))
        assert (status, dechunk(body)) == (200, STREAM_BODY)

    # Every connection child exits and is reaped, every script is gone, and the listening
    # process holds the descriptors it held before the burst, no more.
    assert eventually(lambda: quiet(server), timeout=10)
    pids = [int(pid) for pid in (root / "stream.pids").read_text().split()]
    assert len(pids) == CLIENTS
    assert eventually(lambda: not any(alive(pid) for pid in pids))
    assert not [p for p in processes() if p[1] == "Z" and p[2] == server.pid]
    assert eventually(lambda: fd_count(server.pid) == baseline)
    status, _, body = split(read_to_eof(_request(server, "/ok")))
    assert (status, body) == (200, b"ok\n")


def _request(server: ServerProcess, target: str) -> socket.socket:
    sock = connect(server)
    sock.sendall(get(target))
    return sock


def test_past_max_children_the_answer_is_503(root: Path, start_server: ServerPool) -> None:
    server = start_cgi(start_server, root, "--max-children", "2")
    assert eventually(lambda: quiet(server))
    # A kept-alive connection holds its connection process, even between requests.
    held = [connect(server) for _ in range(2)]
    for sock in held:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")
        assert sock.recv(4096).endswith(b"\r\n\r\nok\n")
    with _request(server, "/ok") as third:
        status, headers, body = split(read_to_eof(third))
    assert status == 503
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert body == b"503 Service Unavailable: every connection process is busy.\n"
    assert int(headers["content-length"]) == len(body)
    # Once a held connection goes, its process is reaped and a new client gets served.
    held.pop().close()
    assert eventually(lambda: quiet(server, children=1))
    with _request(server, "/ok") as fourth:
        assert split(read_to_eof(fourth))[0] == 200
    for sock in held:
        sock.close()


def test_sigterm_lets_the_request_in_flight_finish(root: Path, start_server: ServerPool) -> None:
    server = start_cgi(start_server, root)
    assert server.proc is not None
    with _request(server, "/slow") as sock:
        received = b""
        while b"first\n" not in received:
            received += sock.recv(4096)  # the script is running: the request is in flight
        server.proc.send_signal(signal.SIGTERM)
        received += read_to_eof(sock)
    status, _, body = split(received)
    assert (status, dechunk(body)) == (200, b"first\nlast\n")  # whole, last chunk included
    assert server.proc.wait(timeout=10) == 0
    with pytest.raises(ConnectionRefusedError):
        connect(server)


def test_sigterm_closes_idle_connections_and_exits_0(root: Path, start_server: ServerPool) -> None:
    server = start_cgi(start_server, root, "--idle-timeout", "60")
    assert server.proc is not None
    with connect(server) as idle:
        idle.sendall(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")
        assert idle.recv(4096).endswith(b"ok\n")
        server.proc.send_signal(signal.SIGTERM)
        # Not the 60 s idle timeout: the connection process hears SIGTERM and leaves.
        assert server.proc.wait(timeout=10) == 0
        assert read_to_eof(idle) == b""
    assert server.group_pids() == []


def _open_files(pid: int) -> set[str]:
    """What each descriptor of ``pid`` above stdio refers to: "socket:[inode]",
    "pipe:[inode]", "anon_inode:[eventpoll]", a path..."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        if int(fd.name) <= 2:  # stdin, stdout and stderr are shared on purpose: the log
            continue
        try:
            found.add(str(fd.readlink()))
        except OSError:
            continue
    return found


def test_connection_child_holds_none_of_the_listening_process_descriptors(
    root: Path, start_server: ServerPool
) -> None:
    # Rule 4 inside the server: the child serves one client. The listener, the parent's
    # epoll instance and its wakeup pipe are the parent's business; a child holding them
    # keeps them alive after the parent closes them, and is woken by signals not its own.
    server = start_cgi(start_server, root)
    parent = _open_files(server.pid)
    with connect(server) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")  # keep-alive
        assert b"ok\n" in sock.recv(4096)  # the child is up, and idle on keep-alive
        (child,) = [p[0] for p in processes() if p[2] == server.pid]
        held = _open_files(child)
    shared = held & parent
    assert shared == set(), f"the connection child holds the parent's {shared}"
    assert not any("eventpoll" in name for name in held)
