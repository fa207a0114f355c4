"""SIGTERM with work in flight: stop accepting, let requests finish (or cancel them at the
graceful bound), close WebSockets with 1001, run lifespan shutdown, exit 0."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

from servers.launch import ServerProcess, our_server_argv
from tests.wsgi.support import Gates, Wire, get

from .test_websocket import open_ws


def test_sigterm_finishes_requests_closes_websockets_and_exits_0(gates: Gates) -> None:
    argv = our_server_argv("asgi", "--app", "tests.asgi.apps:probe")
    with ServerProcess(argv, env={**gates.env, "GATEWAYLAB_LIFESPAN_TOKEN": "t1"}) as server:
        assert server.proc is not None
        idle = Wire(server)  # an idle keep-alive connection: closed at once
        busy = Wire(server)
        busy.send(get("/sleep?s=1&token=t1"))
        gates.wait("t1", "entered")
        with open_ws(server) as ws:
            ws.send("before")
            assert ws.recv(timeout=10) == "before"
            server.proc.send_signal(signal.SIGTERM)
            # The WebSocket is told the server is going away (RFC 6455 §7.4.1: 1001).
            with pytest.raises(ConnectionClosed) as caught:
                ws.recv(timeout=10)
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1001
        # The request in flight is answered in full, and told the connection ends.
        reply = busy.reply()
        assert (reply.status, reply.body, reply.complete) == (200, b"slept\n", True)
        assert reply.headers[b"connection"] == b"close" and busy.closed_by_server()
        assert idle.closed_by_server()
        assert server.proc.wait(20) == 0
        idle.close()
        busy.close()
    assert gates.seen("t1", "shutdown")  # lifespan shutdown ran, after all that


def test_work_past_the_graceful_bound_is_cancelled_and_the_exit_is_still_0(gates: Gates) -> None:
    argv = our_server_argv("asgi", "--app", "tests.asgi.apps:probe", "--graceful-timeout", "0.5")
    with ServerProcess(argv, env=gates.env) as server:
        assert server.proc is not None
        with Wire(server) as stuck:
            stuck.send(get("/sleep?s=60&token=t2"))
            gates.wait("t2", "entered")
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(30) == 0
            assert time.monotonic() - started >= 0.5  # it did wait for the bound
            assert stuck.closed_by_server()  # cancelled: closed without an answer
        assert not gates.seen("t2", "answered")


def test_no_new_connection_is_accepted_while_stopping(gates: Gates) -> None:
    argv = our_server_argv("asgi", "--app", "tests.asgi.apps:probe")
    with ServerProcess(argv, env=gates.env) as server:
        assert server.proc is not None
        with Wire(server) as busy:
            busy.send(get("/sleep?s=1.5&token=t3"))
            gates.wait("t3", "entered")
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            refused = threading.Event()
            try:
                socket.create_connection(server.address, timeout=2).close()
            except OSError:
                refused.set()
            assert refused.is_set()
            assert busy.reply().status == 200  # while the old one is still served
        assert server.proc.wait(20) == 0


def test_a_stuck_wsgi_thread_does_not_hold_the_exit() -> None:
    # A thread cannot be cancelled: past the bound, the server leaves without it.
    argv = our_server_argv("asgi", "--app", "apps.wsgi:app", "--graceful-timeout", "0.5")
    with ServerProcess(argv) as server, Wire(server) as stuck:
        assert server.proc is not None
        stuck.send(get("/sleep?ms=60000"))
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
