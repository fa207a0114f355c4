"""The family's CGI flavour (apps/cgi-bin), beyond the contract suite that runs it too.

The contract (tests/test_family_contract.py) already holds the cgi era to every route's
bytes. Here: what only the CGI flavour has (/hello in three languages, the WSGI app run
through wsgiref's CGIHandler at /wsgi/...), the rule that a path below a script is an
unknown path, and the scripts' own hygiene (executable in git, ruff-clean).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps import family
from servers.launch import REPO_ROOT, ServerProcess, our_server_argv
from tests.conftest import ServerPool

CGI_BIN = REPO_ROOT / "apps" / "cgi-bin"
HELLOS = ["/hello", "/hello.py", "/hello.pl"]  # POSIX sh, Python, Perl
PYTHON_SCRIPTS = sorted(
    path.name
    for path in CGI_BIN.iterdir()
    if path.suffix == "" and path.read_bytes().startswith(b"#!/usr/bin/env python3")
)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    pool = ServerPool()
    try:
        yield pool(our_server_argv("cgi"), name="cgi")  # the default root: apps/cgi-bin
    finally:
        pool.stop_all()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        yield http


def essentials(reply: httpx.Response) -> tuple[int, str, str | None, str | None, bytes]:
    headers = reply.headers
    return (
        reply.status_code,
        headers["content-type"],
        headers.get("content-length"),
        headers.get("allow"),
        reply.content,
    )


def expected(response: family.Response) -> tuple[int, str, str | None, str | None, bytes]:
    headers = dict(response.headers)
    return (
        response.status,
        headers["Content-Type"],
        headers.get("Content-Length"),
        headers.get("Allow"),
        response.body,
    )


HELLO_ROUTE = family.ROUTES[0]


# -- /hello in three languages ----------------------------------------------------------------
@pytest.mark.parametrize("path", HELLOS)
def test_hello_in_every_language_is_the_same_bytes(client: httpx.Client, path: str) -> None:
    assert essentials(client.get(path)) == expected(family.hello())
    head = client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == "14"


@pytest.mark.parametrize("path", HELLOS)
def test_hello_in_every_language_keeps_the_family_rules(client: httpx.Client, path: str) -> None:
    assert essentials(client.delete(path)) == expected(family.method_not_allowed(HELLO_ROUTE))
    assert essentials(client.get(path + "/")) == expected(family.not_found())
    assert essentials(client.post(path + "/x")) == expected(family.not_found())  # 404 wins


# -- every script: a path below it is an unknown path ---------------------------------------
@pytest.mark.parametrize("route", [r.path for r in family.ROUTES])
def test_path_info_below_a_route_is_404(client: httpx.Client, route: str) -> None:
    # The script runs (its name matched), sees PATH_INFO and answers the family's 404.
    assert essentials(client.get(route + "/x")) == expected(family.not_found())


def test_unknown_path_is_answered_by_the_not_found_script(client: httpx.Client) -> None:
    for method in ("GET", "POST", "DELETE"):
        reply = client.request(method, "/no/such/script")
        assert essentials(reply) == expected(family.not_found())
    head = client.head("/nope")
    assert (head.status_code, head.content) == (404, b"")


def test_env_shows_the_environment_the_server_passed(client: httpx.Client) -> None:
    env = client.get("/env", headers={"X-Probe": "1"}).json()
    assert (env["SCRIPT_NAME"], env["HTTP_X_PROBE"]) == ("/env", "1")
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    # Read from /proc/self/environ: Python's own LC_CTYPE (PEP 538) is not what was sent.
    assert "LC_CTYPE" not in env
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


# -- the WSGI family through wsgiref.handlers.CGIHandler ------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/hello",
        "/echo?say=hi&x=%20+1",
        "/sleep?ms=0",
        "/cpu?n=3",
        "/page",
        "/ws",
        "/nope",
        "/sleep?ms=abc",
    ],
)
def test_wsgi_bridge_answers_the_familys_bytes(
    client: httpx.Client, target: str, server: ServerProcess
) -> None:
    direct = client.get(target)
    bridged = client.get("/wsgi" + target)
    assert essentials(bridged) == essentials(direct)


def test_wsgi_bridge_streams_and_reads_bodies(client: httpx.Client) -> None:
    with client.stream("GET", "/wsgi/stream?chunks=3&delay_ms=100") as reply:
        assert reply.headers["transfer-encoding"] == "chunked"
        pieces = list(reply.iter_raw())
    assert len(pieces) > 1  # wsgiref flushes each piece the generator yields
    assert b"".join(pieces) == b"".join(family.stream(b"chunks=3").chunks)

    data = hashlib.sha256(b"bridge").digest() * 8192

    def chunks() -> Iterator[bytes]:  # chunked on the wire, CONTENT_LENGTH for the script
        yield data[:100_000]
        yield data[100_000:]

    reply = client.post("/wsgi/upload", content=chunks())
    assert reply.content == family.upload_json(len(data), hashlib.sha256(data).hexdigest())
    reply = client.post("/wsgi/echo", content=b"back", headers={"Content-Type": "x/y"})
    assert essentials(reply) == expected(family.echo_body(b"back", "x/y"))


def test_wsgi_bridge_splits_the_url_where_the_script_ends(
    client: httpx.Client, server: ServerProcess
) -> None:
    environ = client.get("/wsgi/env").json()
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/wsgi", "/env")
    assert environ["wsgi.run_once"] is True  # wsgiref knows a CGI process serves one request
    # The bare script name: PATH_INFO is empty, which the WSGI family does not route.
    assert essentials(client.get("/wsgi")) == expected(family.not_found())
    report = client.get("/wsgi/whoami").json()
    assert report["era"] == "wsgi" and report["pid"] not in server.group_pids()


# -- the scripts themselves ----------------------------------------------------------------
def test_every_script_is_executable_in_the_tree_and_in_git() -> None:
    scripts = [path for path in CGI_BIN.iterdir() if path.is_file()]
    assert {"hello", "hello.py", "hello.pl", "not-found", "wsgi"} <= {p.name for p in scripts}
    for path in scripts:
        assert path.stat().st_mode & 0o111 == 0o111, f"{path.name} is not executable"
    listed = subprocess.run(
        ["git", "ls-files", "--stage", "--", str(CGI_BIN)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    ).stdout
    for line in listed.splitlines():  # what is already in the index keeps its x bit
        assert line.startswith("100755 "), line


def test_python_scripts_without_suffix_are_ruff_clean() -> None:
    # `ruff check .` only looks at *.py files; these scripts are Python all the same.
    paths = [str(CGI_BIN / name) for name in PYTHON_SCRIPTS]
    assert len(paths) >= 10
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--quiet", *paths], check=True, cwd=REPO_ROOT)
    subprocess.run([*ruff, "format", "--check", "--quiet", *paths], check=True, cwd=REPO_ROOT)
