"""Interop: the family contract across real FastCGI peers, one pairing at a time.

* our gateway -> our fastcgi-app (the family responder): the contract suite, which runs
  against every built era, this one as ``fastcgi``;
* nginx (``fastcgi_pass``) -> our fastcgi-app: the contract suite, below;
* our gateway -> flup's WSGIServer serving apps.wsgi: the contract suite, below;
* cgi-fcgi (libfcgi's CGI-to-FastCGI bridge) -> our fastcgi-app: the contract's bytes,
  route by route, below.

The contract suite is reused as it is: its test functions are imported here, and this
module's own ``family_server`` fixture gives them the two pairings instead of the eras
(pytest collects imported test functions in the importing module and resolves their
fixtures there). A pairing is two processes; tests/fastcgi/pairing.py starts both in one
process group, so /whoami's pid is still found among the host's processes.
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
from servers.launch import ServerProcess
from tests import test_family_contract as contract
from tests.conftest import FamilyHost, ServerPool
from tests.peers import require_program

# -- the contract suite, against two more hosts --------------------------------------------
# Every contract test but the harness's own, which has nothing to do with a host.
for _name in dir(contract):
    if _name.startswith("test_") and _name != "test_harness_stops_the_whole_process_group":
        globals()[_name] = getattr(contract, _name)
client = contract.client

PAIRINGS = {"nginx": "fastcgi", "flup": "wsgi"}  # pairing -> what /whoami reports as "era"


@pytest.fixture(scope="module", params=list(PAIRINGS))
def _pairing(request: pytest.FixtureRequest) -> Iterator[FamilyHost]:
    if request.param == "nginx":
        require_program("nginx")
    pool = ServerPool()
    try:
        argv = [sys.executable, str(Path(__file__).with_name("pairing.py")), request.param]
        env = {"NGINX": require_program("nginx")} if request.param == "nginx" else {}
        server = pool(argv, env=env, name=f"pairing-{request.param}")
        yield FamilyHost(f"{request.param}-pairing", PAIRINGS[request.param], False, server)
    finally:
        pool.stop_all()


@pytest.fixture
def family_server(_pairing: FamilyHost) -> Iterator[FamilyHost]:
    yield _pairing
    proc = _pairing.server.proc
    if proc is not None and proc.poll() is not None:
        pytest.fail(f"{_pairing.name} exited: {_pairing.server.output()}", pytrace=False)


GETS = contract.DETERMINISTIC_GETS


# -- cgi-fcgi: libfcgi's CGI-to-FastCGI bridge, one process per request ---------------------
@pytest.fixture(scope="module")
def app_server() -> Iterator[ServerProcess]:
    pool = ServerPool()
    argv = [sys.executable, "-m", "servers", "fastcgi-app", "--bind", "127.0.0.1:0"]
    try:
        yield pool(argv, http_probe=None, name="fastcgi-app")
    finally:
        pool.stop_all()


def cgi_fcgi(
    server: ServerProcess, method: str, path: str, query: str = "", body: bytes = b"", **env: str
) -> tuple[int, dict[str, str], bytes]:
    """Run ``cgi-fcgi -bind -connect`` as a CGI server would run it: the request in its
    environment and stdin, the CGI response on its stdout."""
    program = require_program("cgi-fcgi")
    environ = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": path,  # as a CGI server that maps the path to a script sends it
        "PATH_INFO": "",
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        **({"CONTENT_LENGTH": str(len(body))} if body else {}),
        **env,
    }
    connect = f"127.0.0.1:{server.port}"
    done = subprocess.run(
        [program, "-bind", "-connect", connect], input=body, env=environ, capture_output=True,
        timeout=30, check=False,
    )  # fmt: skip
    head, _, content = done.stdout.partition(b"\r\n\r\n")
    fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
    status = int(fields.pop("Status").split()[0])
    return status, fields, content


@pytest.mark.parametrize(
    ("path", "query", "status", "body"),
    [
        ("/hello", "", 200, contract.HELLO),
        *[(t.partition("?")[0], t.partition("?")[2], 200, b) for t, b in GETS.items()],
        ("/nope", "", 404, contract.NOT_FOUND),
        ("/sleep", "ms=abc", 400, contract.BAD_PARAMETER["ms"]),
        ("/cpu", "n=10000001", 400, contract.BAD_PARAMETER["n"]),
        ("/ws", "", 501, contract.WS_UNSUPPORTED),
        ("/page", "", 200, family.render_page()),
    ],
)  # fmt: skip
def test_cgi_fcgi_gets_the_contracts_bytes(
    app_server: ServerProcess, path: str, query: str, status: int, body: bytes
) -> None:
    got_status, fields, content = cgi_fcgi(app_server, "GET", path, query)
    assert (got_status, content) == (status, body)
    if path != "/stream":
        assert fields["Content-Length"] == str(len(body))


def test_cgi_fcgi_405_and_head(app_server: ServerProcess) -> None:
    status, fields, content = cgi_fcgi(app_server, "DELETE", "/hello")
    assert (status, fields["Allow"], content) == (405, "GET, HEAD", contract.NOT_ALLOWED["/hello"])
    status, fields, content = cgi_fcgi(app_server, "HEAD", "/hello")
    assert (status, fields["Content-Length"], content) == (200, "14", b"")


def test_cgi_fcgi_posts_a_body(app_server: ServerProcess) -> None:
    body = bytes(range(256)) * 300
    status, fields, content = cgi_fcgi(
        app_server, "POST", "/echo", body=body, CONTENT_TYPE="image/x-test"
    )
    assert (status, fields["Content-Type"], content) == (200, "image/x-test", body)
    status, _, content = cgi_fcgi(app_server, "POST", "/upload", body=body)
    assert content == family.upload_json(len(body), hashlib.sha256(body).hexdigest())


def test_cgi_fcgi_whoami_is_the_long_running_process(app_server: ServerProcess) -> None:
    answers = [cgi_fcgi(app_server, "GET", "/whoami")[2] for _ in range(2)]
    pids = {httpx.Response(200, content=answer).json()["pid"] for answer in answers}
    assert pids == {app_server.pid}  # unlike CGI: the same process answers every time


# -- Flask, unmodified, through the WSGI side ------------------------------------------------
def test_flask_through_the_wsgi_side(start_server: ServerPool) -> None:
    argv = [sys.executable, "-m", "servers", "fastcgi", "--port", "0"]
    server = start_server([*argv, "--wsgi", "tests.fastcgi.sample_apps:flask_app"])
    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
        reply = http.get("/greet/ana", params={"q": "x y"})
        assert reply.json() == {"hello": "ana", "query": "x y", "script_root": ""}
        reply = http.post("/form", data={"a": "2", "b": "3"})
        assert (reply.status_code, reply.text) == (200, "2+3=5\n")
        with http.stream("GET", "/lines") as streamed:
            assert streamed.headers["transfer-encoding"] == "chunked"
            assert b"".join(streamed.iter_bytes()) == b"line 0\nline 1\nline 2\n"
        assert http.get("/nope").status_code == 404  # Flask's own 404
        assert http.post("/greet/ana").status_code == 405
