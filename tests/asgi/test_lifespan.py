"""Lifespan ("Lifespan Protocol" 2.0): startup before the first connection is accepted, a
failed startup stops the server with a non-zero status, shutdown runs after the last
connection closed, and apps without lifespan are served anyway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from servers.launch import REPO_ROOT, ServerProcess, free_port, our_server_argv
from tests.conftest import ServerPool
from tests.wsgi.support import Gates, Wire, get

from .conftest import start_asgi


def run_to_exit(*options: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """A server that is expected to stop by itself: its exit status and output."""
    return subprocess.run(
        our_server_argv("asgi", *options),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_no_connection_is_accepted_before_startup_completes(gates: Gates) -> None:
    # slow_startup takes a second. Until it has marked "startup" (just before it answers
    # lifespan.startup.complete), a connection to the port must be refused; once the
    # server listens, one is accepted. The mark is read *after* each attempt, so an
    # accepted connection with no mark yet can only mean "accepted before startup".
    port = free_port()
    argv = our_server_argv("asgi", "--app", "tests.asgi.apps:slow_startup")
    argv[argv.index("--port") + 1] = str(port)
    env = {**os.environ, **gates.env, "GATEWAYLAB_LIFESPAN_TOKEN": "s1"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    try:
        refused = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                accepted = True
            except OSError:
                accepted = False
            started = gates.seen("s1", "startup")
            if accepted:
                assert started, "a connection was accepted before lifespan startup completed"
                break
            refused += 1
            time.sleep(0.05)
        assert refused > 0 and accepted
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_a_failed_startup_is_logged_and_exits_non_zero() -> None:
    done = run_to_exit("--app", "tests.asgi.apps:startup_fails")
    assert done.returncode != 0
    assert "lifespan.startup.failed: the database is on fire" in done.stderr
    assert "ready on" not in done.stdout  # it never listened


def test_an_app_without_lifespan_is_served(start_server: ServerPool) -> None:
    server = start_asgi(start_server, app="tests.asgi.apps:no_lifespan")
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        scope = client.get("/scope").json()
    assert scope["state"] == []  # nothing was put in it
    assert "no lifespan (the app raised ValueError" in server.output()


def test_lifespan_on_refuses_an_app_without_it() -> None:
    done = run_to_exit("--app", "tests.asgi.apps:no_lifespan", "--lifespan", "on")
    assert done.returncode != 0 and "ValueError" in done.stderr


def test_lifespan_off_never_calls_the_app_with_it(start_server: ServerPool) -> None:
    server = start_asgi(start_server, "--lifespan", "off", app="tests.asgi.apps:startup_fails")
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        assert client.get("/whoami").status_code == 200


def test_shutdown_runs_after_the_last_connection_closed(gates: Gates) -> None:
    with ServerProcess(
        our_server_argv("asgi", "--app", "tests.asgi.apps:slow_startup"),
        env={**gates.env, "GATEWAYLAB_LIFESPAN_TOKEN": "s2"},
    ) as server:
        with Wire(server) as wire:
            wire.send(get("/sleep?s=1"))
            time.sleep(0.3)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            reply = wire.reply()
            assert (reply.status, reply.body) == (200, b"slept\n")
        assert server.proc.wait(20) == 0
    # When shutdown ran, the server held no TCP connection any more.
    assert (gates.directory / "s2.shutdown").read_text() == "0"
    log = server.output()
    assert log.index("lifespan shutdown ran") > log.index("ready on")


def test_a_refused_connection_after_sigterm(start_server: ServerPool) -> None:
    server = start_asgi(start_server)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    with pytest.raises(OSError):
        socket.create_connection(server.address, timeout=2).close()
