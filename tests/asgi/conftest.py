"""Fixtures of the ASGI tests: one probe server per module, its gates, and a log check.

The probe server runs ``tests.asgi.apps:probe`` (see that module); tests that need an
option of their own (a short timeout, a connection cap) start a server themselves with
:func:`start_asgi`. After each test on the shared server we check that it still runs and
that its log holds no traceback the test did not ask for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from servers.launch import ServerProcess, our_server_argv
from tests.conftest import ServerPool
from tests.wsgi.support import Gates

PROBE = "tests.asgi.apps:probe"


def start_asgi(
    pool: ServerPool, *options: str, app: str = PROBE, gates: Gates | None = None, **env: str
) -> ServerProcess:
    """Our ASGI server on a free port, serving ``app`` (default: the probe apps)."""
    environment = {**(gates.env if gates is not None else {}), **env}
    return pool(our_server_argv("asgi", "--app", app, *options), env=environment, name="asgi")


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Gates:
    return Gates(tmp_path_factory.mktemp("gates"))


@pytest.fixture(scope="module")
def probe_server(gates: Gates) -> Iterator[ServerProcess]:
    """Shared by a module; after its last test it must stop on SIGTERM by itself, with
    status 0, within the harness's grace (not be killed): whatever the tests left open."""
    pool = ServerPool()
    server = None
    try:
        server = start_asgi(pool, gates=gates)
        yield server
    finally:
        pool.stop_all()
    if server.returncode != 0:
        pytest.fail(f"the server's SIGTERM stop ended with {server.returncode}:\n{server.output()}")


@pytest.fixture
def server(probe_server: ServerProcess) -> Iterator[ServerProcess]:
    """The module's probe server, checked after each test: still running, and no traceback
    in its log that is not an application failure the server reported."""
    since = probe_server.output_size()
    yield probe_server
    proc = probe_server.proc
    if proc is not None and proc.poll() is not None:
        pytest.fail(f"the server exited with {proc.returncode}:\n{probe_server.output()}")
    time.sleep(0.05)
    log = probe_server.output_bytes(since).decode("utf-8", "replace")
    if problems := unexpected_output(log):
        pytest.fail(f"unexpected in the server's log: {problems}\n{log[-3000:]}")


def unexpected_output(log: str) -> list[str]:
    """Tracebacks the server did not introduce as an application failure, and asyncio's
    complaints (a task destroyed while pending, an exception never retrieved)."""
    problems = [
        needle
        for needle in ("Task was destroyed", "never retrieved", "Exception in callback")
        if needle in log
    ]
    lines = ["", *log.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)") and not lines[i - 1].startswith(
            "asgi: the "
        ):
            problems.append(f"a traceback after {lines[i - 1]!r}")
    return problems
