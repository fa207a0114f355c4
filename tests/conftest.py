"""The test harness: real servers as real processes, and proof that none is left behind.

Two fixtures start servers; both go through :class:`servers.launch.ServerProcess`, which
puts each server in its own process group and stops the whole group:

* ``start_server(argv, port=None, **kw)`` starts any server for one test. ``port=None`` is for
  our own servers, which print their port; a peer gets ``port=free_port()`` in its argv.
* ``family_server`` is one *host* of the family app per parameter: every built era of
  ``servers.eras`` and, so that the contract is proven before any era exists, two reference
  hosts: waitress serving ``apps.wsgi:app`` and uvicorn serving ``apps.asgi:app``. A host is
  started once per test module (starting uvicorn costs more than most tests) and checked
  after every test to be still running.

"Nothing left behind" is asserted, not hoped for: after a server is stopped, its process
group must be empty (:meth:`ServerProcess.group_pids`), or the teardown fails with the
pids that remain. Nothing here uses a fixed port, so pytest-xdist workers never collide.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from servers.eras import built_eras
from servers.launch import ServerProcess, ServerStartError, free_port, our_server_argv

# How long a stopped group may take to vanish: SIGKILL is asynchronous, and a killed
# process is listed in /proc until the kernel has torn it down.
GROUP_EXIT_GRACE = 3.0
# A peer told to use a port that someone took meanwhile (free_port's small race) is
# retried on a new port this many times.
PORT_ATTEMPTS = 3


def _leftover_pids(server: ServerProcess) -> list[int]:
    """The group's processes still alive after stop(), waiting out the kernel briefly."""
    deadline = time.monotonic() + GROUP_EXIT_GRACE
    while (pids := server.group_pids()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids


class ServerPool:
    """Starts servers for one fixture's lifetime; ``stop_all`` stops them and checks the
    process groups are empty."""

    def __init__(self) -> None:
        self._servers: list[ServerProcess] = []

    def __call__(self, argv: Sequence[str], port: int | None = None, **kw: Any) -> ServerProcess:
        server = ServerProcess(argv, port=port, **kw)
        server.start()  # on failure it stops what it started and raises ServerStartError
        self._servers.append(server)
        return server

    def start_peer(self, argv_for_port: Callable[[int], Sequence[str]], **kw: Any) -> ServerProcess:
        """Start a server that cannot report its port: give it a free one, and try another
        if someone else bound that port first."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            try:
                return self(argv_for_port(port), port=port, **kw)
            except ServerStartError as error:
                if attempt == PORT_ATTEMPTS or "address already in use" not in str(error).lower():
                    raise
        raise AssertionError("unreachable")

    def stop_all(self) -> None:
        leftovers: dict[str, list[int]] = {}
        for server in reversed(self._servers):
            server.__exit__(None, None, None)  # stop the group, close the captured output
            if pids := _leftover_pids(server):
                leftovers[f"{server.name} (pgid {server.pid})"] = pids
        self._servers.clear()
        if leftovers:
            pytest.fail(f"processes left behind after stop: {leftovers}", pytrace=False)


@pytest.fixture
def start_server() -> Iterator[ServerPool]:
    """``start_server(argv, port=None, **kw) -> ServerProcess``; all stopped at teardown."""
    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.stop_all()


# -- the family's hosts ---------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyHost:
    """One server hosting the family app, and what the contract expects of it."""

    name: str  # the test id: an era name, or the peer's name
    era: str  # what /whoami reports as "era"
    asgi: bool  # hosts apps.asgi (so /ws is a WebSocket) rather than a WSGI-like flavour
    server: ServerProcess

    @property
    def websockets(self) -> bool:
        return self.asgi

    @property
    def url(self) -> str:
        """Base URL with a trailing slash: ``host.url + "hello"``."""
        return self.server.url

    @property
    def ws_url(self) -> str:
        return f"ws://{self.server.host}:{self.server.port}/"


def _peer_argv(name: str, port: int) -> list[str]:
    python = sys.executable
    if name == "waitress":
        return [python, "-m", "waitress", f"--listen=127.0.0.1:{port}", "apps.wsgi:app"]
    # --lifespan on: a broken lifespan in apps.asgi fails the start instead of being skipped.
    return [
        python,
        "-m",
        "uvicorn",
        "apps.asgi:app",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "on",
    ]


PEER_HOSTS = {"waitress": ("wsgi", False), "uvicorn": ("asgi", True)}
FAMILY_HOSTS = [era.name for era in built_eras()] + list(PEER_HOSTS)


def _answers_for_itself(server: ServerProcess) -> bool:
    """True if /whoami is answered by a process of this server's group, not by a stranger
    that happened to own the port (free_port's race, seen from the other side)."""
    try:
        reply = httpx.get(server.url + "whoami", timeout=5, trust_env=False)
        return reply.status_code == 200 and reply.json()["pid"] in server.group_pids()
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def _start_host(pool: ServerPool, name: str) -> FamilyHost:
    if name in PEER_HOSTS:
        era, asgi = PEER_HOSTS[name]
        for _ in range(PORT_ATTEMPTS):
            server = pool.start_peer(lambda port: _peer_argv(name, port), name=name)
            if _answers_for_itself(server):
                return FamilyHost(name, era, asgi, server)
        pytest.fail(f"{name}: its port kept answering for another process", pytrace=False)
    server = pool(our_server_argv(name), name=name)
    return FamilyHost(name, name, name == "asgi", server)


@pytest.fixture(scope="module", params=FAMILY_HOSTS)
def _family_host(request: pytest.FixtureRequest) -> Iterator[FamilyHost]:
    pool = ServerPool()
    try:
        yield _start_host(pool, request.param)
    finally:
        pool.stop_all()


@pytest.fixture
def family_server(_family_host: FamilyHost) -> Iterator[FamilyHost]:
    """A host of the family app (see FAMILY_HOSTS), shared by the tests of one module."""
    yield _family_host
    proc = _family_host.server.proc
    if proc is not None and proc.poll() is not None:
        pytest.fail(
            f"{_family_host.name} exited with {proc.returncode} during this test:\n"
            f"{_family_host.server.output()}",
            pytrace=False,
        )
