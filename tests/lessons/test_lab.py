"""The lab bench in-process: named servers, kept-alive connections, background requests,
the errors a student meets, and nothing left after close()."""

from __future__ import annotations

import socket
import sys

import pytest

from lessons.lab import Lab, LabError
from servers.eras import ERAS, Era

from .conftest import assert_groups_gone

WIRE = [sys.executable, "-m", "servers.wire", "--port", "0", "--trace"]


def test_named_server_connections_and_cleanup() -> None:
    with Lab() as lab:
        wire = lab.start("wire", WIRE)
        wire.settle()  # the readiness probe's trace ends with a close, a moment later
        wire.skip_output()
        first = lab.exchange("wire", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", conn="k")
        second = lab.exchange("wire", b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", conn="k")
        assert first.statuses == second.statuses == [200]
        assert not first.reused and second.reused and second.kept_open
        # One connection id in the trace for both requests, and no close between them.
        ids = {line.split()[1] for line in first.trace + second.trace}
        assert len(ids) == 1
        assert not any(line.endswith("* close") for line in second.trace)
        # Two threads while k is open: the accept loop and k's.
        assert len(wire.procs()[0].threads) == 2
        lab.exchange_in_background("wire", b"GET /bg HTTP/1.1\r\nHost: x\r\n\r\n")
        running = lab.close()
        assert running == ["wire"]
    assert_groups_gone([wire.pid])


def test_stop_reports_status_and_last_words() -> None:
    with Lab() as lab:
        wire = lab.start("wire", WIRE)
        status, _ = lab.stop("wire")
        assert status == 0 and not wire.running
        with pytest.raises(LabError, match="is not running"):
            lab.server("wire")
        assert lab.close() == []


def test_unknown_server_and_duplicate_name() -> None:
    with Lab() as lab:
        with pytest.raises(LabError, match="no server named 'nope'") as error:
            lab.exchange("nope", b"GET / HTTP/1.1\r\n\r\n")
        assert "start it with a server step" in error.value.fix
        lab.start("wire", WIRE)
        with pytest.raises(LabError, match="already running"):
            lab.start("wire", WIRE)


def test_port_in_use_names_the_holder_and_the_fix() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken, Lab() as lab:
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "servers.wire", "--port", str(port)]
        with pytest.raises(LabError) as error:
            lab.start("wire", argv)
    assert f"port {port} on 127.0.0.1 is already in use by pid" in error.value.problem
    assert "--port 0" in error.value.fix
    assert lab.servers == {}


@pytest.mark.parametrize(
    "era", [e for e in ERAS if not e.built] or [None], ids=lambda e: getattr(e, "name", "none")
)
def test_an_era_not_built_says_when_it_comes(era: Era | None) -> None:
    if era is None:
        pytest.skip("every era is built")
    with Lab() as lab, pytest.raises(LabError, match="not built yet") as error:
        lab.start("x", [sys.executable, "-m", "servers", era.name, "--port", "0"])
    assert f"lesson {era.lesson}" in error.value.fix


def test_a_server_that_dies_at_start() -> None:
    argv = [sys.executable, "-c", "import sys; print('no luck today'); sys.exit(4)"]
    with Lab() as lab, pytest.raises(LabError, match="did not start") as error:
        lab.start("doomed", argv, startup_timeout=5)
    assert "no luck today" in error.value.problem
