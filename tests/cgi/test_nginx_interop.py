"""The same scripts, unchanged, under a real CGI host: nginx + fcgiwrap.

nginx does not run CGI scripts itself; it speaks FastCGI, and fcgiwrap is a small FastCGI
server that runs a CGI script per request (the very model of lesson 1, behind the
protocol of lesson 2). If apps/cgi-bin is honest CGI, both hosts answer every
deterministic route with the same status, Content-Type and body bytes.

Two differences are configuration, and show what each host needs told:

* fcgiwrap hands scripts its own environment plus nginx's params, so it is started with an
  empty one (``env -i``), and PATH comes from a ``fastcgi_param``, as our server sets it;
* nginx has no notion of "the script ends here, PATH_INFO starts": /wsgi/... gets a
  ``fastcgi_split_path_info`` of its own. So paths *below* a script (and unknown paths,
  which fcgiwrap answers with its own 403) are not compared.

One difference is fcgiwrap's own: when a script answers without reading its body (/echo's
413 for a body over 1 MiB), fcgiwrap answers 502 "An error occurred while reading the
request"; our server stops feeding stdin and sends the script's 413. Not compared either.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers.launch import REPO_ROOT, ServerProcess, our_server_argv
from tests.conftest import ServerPool
from tests.peers import require_program

pytestmark = pytest.mark.peer

CGI_BIN = REPO_ROOT / "apps" / "cgi-bin"
SCRIPT_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
FASTCGI = """
            include /etc/nginx/fastcgi_params;
            fastcgi_param PATH {path};
            fastcgi_pass 127.0.0.1:{fcgi_port};"""
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    fastcgi_temp_path {tmp}/fastcgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 16m;
    server {{
        listen 127.0.0.1:{port};
        location / {{{fastcgi}
            fastcgi_param SCRIPT_FILENAME {cgi_bin}$fastcgi_script_name;
        }}
        location /wsgi/ {{
            fastcgi_split_path_info ^(/wsgi)(/.*)$;{fastcgi}
            fastcgi_param SCRIPT_FILENAME {cgi_bin}/wsgi;
            fastcgi_param PATH_INFO $fastcgi_path_info;
        }}
    }}
}}
"""

UPLOAD = hashlib.sha256(b"interop").digest() * 8192  # 256 KiB


def _chunked() -> Iterator[bytes]:
    yield UPLOAD[:100_000]
    yield UPLOAD[100_000:]


# (method, target, body or None, request Content-Type or None)
CASES: list[tuple[str, str, bytes | None, str | None]] = [
    ("GET", "/hello", None, None),
    ("GET", "/hello.py", None, None),
    ("GET", "/hello.pl", None, None),
    ("HEAD", "/hello", None, None),
    ("GET", "/echo?say=hi&x=%20+1", None, None),
    ("GET", "/echo", None, None),
    ("POST", "/echo", bytes(range(256)), "image/x-test; q=1"),
    ("GET", "/sleep?ms=0", None, None),
    ("GET", "/sleep?ms=abc", None, None),  # 400
    ("GET", "/cpu?n=3", None, None),
    ("GET", "/cpu?n=1000", None, None),
    ("GET", "/stream?chunks=3&delay_ms=0", None, None),
    ("POST", "/upload", UPLOAD, None),
    ("POST", "/upload", b"", None),
    ("GET", "/upload", None, None),  # 405
    ("GET", "/page", None, None),
    ("HEAD", "/page", None, None),
    ("POST", "/page", b"", None),  # 405
    ("DELETE", "/hello", None, None),  # 405
    ("GET", "/ws", None, None),  # 501
    ("GET", "/wsgi/hello", None, None),
    ("GET", "/wsgi/cpu?n=3", None, None),
    ("GET", "/wsgi/stream?chunks=2&delay_ms=0", None, None),
    ("GET", "/wsgi/page", None, None),
    ("GET", "/wsgi/nope", None, None),  # the WSGI app's 404
    ("POST", "/wsgi/upload", UPLOAD, None),
]


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(our cgi era, nginx in front of fcgiwrap), both serving apps/cgi-bin."""
    nginx = require_program("nginx")
    fcgiwrap = require_program("fcgiwrap")
    pool = ServerPool()
    # Not pytest's tmp_path: nginx's worker runs as an unprivileged user when the tests run
    # as root, and must be able to reach its temporary files; pytest's base dir is 0700.
    with tempfile.TemporaryDirectory(prefix="gatewaylab-nginx-") as tmp:
        Path(tmp).chmod(0o755)
        try:
            ours = pool(our_server_argv("cgi"), name="cgi")
            wrapper = pool.start_peer(
                lambda port: ["env", "-i", fcgiwrap, "-c", "2", "-s", f"tcp:127.0.0.1:{port}"],
                http_probe=None,
                name="fcgiwrap",
            )
            fastcgi = FASTCGI.format(path=SCRIPT_PATH, fcgi_port=wrapper.port)

            def nginx_argv(port: int) -> list[str]:
                conf = Path(tmp, "nginx.conf")
                conf.write_text(
                    NGINX_CONF.format(tmp=tmp, port=port, fastcgi=fastcgi, cgi_bin=CGI_BIN)
                )
                return [nginx, "-e", f"{tmp}/error.log", "-p", tmp, "-c", str(conf)]

            yield ours, pool.start_peer(nginx_argv, name="nginx")
        finally:
            pool.stop_all()


def _ask(host: ServerProcess, case: tuple[str, str, bytes | None, str | None]) -> httpx.Response:
    method, target, body, content_type = case
    headers = {"Content-Type": content_type} if content_type else {}
    with httpx.Client(base_url=host.url, timeout=30, trust_env=False) as client:
        return client.request(method, target, content=body, headers=headers)


def _seen(reply: httpx.Response) -> tuple[int, str | None, str | None, bytes]:
    return (
        reply.status_code,
        reply.headers.get("content-type"),
        reply.headers.get("allow"),
        reply.content,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case[0]} {case[1]}")
def test_same_answer_under_nginx_and_fcgiwrap(
    hosts: tuple[ServerProcess, ServerProcess], case: tuple[str, str, bytes | None, str | None]
) -> None:
    ours, theirs = hosts
    mine, nginx = _ask(ours, case), _ask(theirs, case)
    assert _seen(nginx) == _seen(mine)
    assert nginx.headers["server"].startswith("nginx/")  # it really was the other host
    if "content-length" in mine.headers:
        assert nginx.headers.get("content-length") == mine.headers["content-length"]


def test_chunked_upload_is_dechunked_by_both(hosts: tuple[ServerProcess, ServerProcess]) -> None:
    answers = []
    for host in hosts:
        with httpx.Client(base_url=host.url, timeout=30, trust_env=False) as client:
            answers.append(client.post("/upload", content=_chunked()).content)
    expected = b'{"bytes":262144,"sha256":"' + hashlib.sha256(UPLOAD).hexdigest().encode() + b'"}\n'
    assert answers == [expected, expected]
