"""Fixtures of the WSGI tests: one probe server per module, and its gate directory."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from servers.launch import ServerProcess
from tests.conftest import ServerPool

from .support import Gates, start_wsgi


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Gates:
    return Gates(tmp_path_factory.mktemp("gates"))


@pytest.fixture(scope="module")
def probe_server(gates: Gates) -> Iterator[ServerProcess]:
    """``python -m servers wsgi --app tests.wsgi.apps:probe``, shared by a module's tests
    (every test uses its own gate tokens, so they cannot see each other's marks)."""
    pool = ServerPool()
    try:
        yield start_wsgi(pool, gates=gates)
    finally:
        pool.stop_all()


@pytest.fixture
def server(probe_server: ServerProcess) -> Iterator[ServerProcess]:
    """The module's probe server, checked after each test: still running, and nothing in
    its log but what the apps asked for (see :func:`unexpected_output`)."""
    since = probe_server.output_size()
    yield probe_server
    proc = probe_server.proc
    if proc is not None and proc.poll() is not None:
        pytest.fail(f"the server exited with {proc.returncode}:\n{probe_server.output()}")
    time.sleep(0.05)  # a close() or a log line may trail the last reply by a moment
    log = probe_server.output_bytes(since).decode("utf-8", "replace")
    if problems := unexpected_output(log):
        pytest.fail(f"unexpected in the server's log: {problems}\n{log[-3000:]}")


def unexpected_output(log: str) -> list[str]:
    """What a test's stretch of server log must not hold: a crash of a thread of ours, an
    iterable collected without close() (the validator says so from __del__, as "Exception
    ignored"), a validator warning, or a traceback that is not an app failure the server
    reported (each of those starts with "wsgi: the application failed")."""
    problems = [
        needle
        for needle in ("Exception in thread", "Exception ignored", "WSGIWarning")
        if needle in log
    ]
    lines = ["", "", *log.splitlines()]
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        reported = lines[i - 1].startswith("wsgi: the application failed")
        chained = lines[i - 1] == "" and lines[i - 2].startswith(
            ("During handling of the above exception", "The above exception was")
        )
        if not (reported or chained):
            problems.append(f"a traceback nobody reported: {lines[i + 1 : i + 4]}")
    return problems
