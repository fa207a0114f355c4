"""Confinement (RFC 3875 §9.8): a URL may run a script below the root, and nothing else.

The layout under test::

    base/
      outside/escape          an executable that prints ESCAPED: no request may run it
      root/
        ok, sub/ok            plain scripts
        inside-link -> ok     a symlink that stays inside: allowed
        outside-link -> ../outside/escape, outside-dir -> ../outside: refused
        noexec                mode 0644: refused with 403
        not-found             the --not-found script (Apache's ErrorDocument 404)
        shellshock            a bash script that prints a header's value

Requests go out as raw bytes, because a client library would tidy ``/../`` away first
(curl does too, unless it is told ``--path-as-is``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.launch import ServerProcess
from tests.cgi.support import SH, dechunk, exchange, get, make_root, split, start_cgi
from tests.conftest import ServerPool
from tests.peers import require_program

SHOW = SH + 'printf "Content-Type: text/plain\\n\\nok %s|%s\\n" "$SCRIPT_NAME" "$PATH_INFO"\n'
SCRIPTS = {
    "ok": SHOW,
    "sub/ok": SHOW,
    "not-found": SH
    + 'printf "Status: 404 Not Found\\nContent-Type: text/plain\\n\\n'
    + 'custom 404 for %s (%s) at %s\\n" "$REDIRECT_URL" "$REDIRECT_STATUS" "$REQUEST_URI"\n',
    # A nested bash is where Shellshock fired: at start-up it imported "() {" values from
    # its environment as functions, running whatever followed the definition.
    "shellshock": "#!/bin/bash\nprintf 'Content-Type: text/plain\\n\\n'\n"
    + 'printf \'%s\\n\' "$HTTP_X_PAYLOAD" "$HTTP_USER_AGENT"\n'
    + "bash -c 'echo nested bash ran'\n",
}
ESCAPE = SH + "printf 'Content-Type: text/plain\\n\\nESCAPED\\n'\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("confinement")
    root = make_root(base, SCRIPTS)
    (base / "outside").mkdir()
    (base / "outside" / "escape").write_text(ESCAPE)
    (base / "outside" / "escape").chmod(0o755)
    make_root(base, {"noexec": SHOW}, mode=0o644)
    (root / "inside-link").symlink_to("ok")
    (root / "outside-link").symlink_to("../outside/escape")
    (root / "outside-dir").symlink_to("../outside")
    (root / "loop-link").symlink_to("loop-link")
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    pool = ServerPool()
    try:
        yield start_cgi(pool, root)
    finally:
        pool.stop_all()


def answer(server: ServerProcess, target: str) -> tuple[int, bytes]:
    status, headers, body = split(exchange(server, get(target)))
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status, body


# -- traversal ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/../outside/escape", 403),
        ("/sub/../../outside/escape", 403),
        ("/%2e%2e/outside/escape", 403),  # decoded once: "..", refused
        ("/%2E%2e/outside/escape", 403),
        ("/.%2e/outside/escape", 403),  # Apache 2.4.49, CVE-2021-41773
        ("/sub/%2e%2e/%2e%2e/outside/escape", 403),
        ("/./ok", 403),
        ("/sub/%2e/ok", 403),
        ("/sub%2f..%2f..%2foutside%2fescape", 400),  # an encoded "/" is no segment boundary
        ("/sub%2F..%2F..%2Foutside%2Fescape", 400),
        ("/..%5c..%5coutside%5cescape", 400),
        ("/ok%00.txt", 400),
        ("/%252e%252e/outside/escape", 404),  # decoded once: the file "%2e%2e", not ".."
        ("/%%32%65%%32%65/outside/escape", 404),  # Apache 2.4.50's CVE-2021-42013, likewise
        ("/outside-link", 403),  # a symlink out of the root
        ("/outside-dir/escape", 403),  # a directory symlink out of the root
    ],
)
def test_traversal_is_refused(server: ServerProcess, target: str, status: int) -> None:
    got, body = answer(server, target)
    assert got == status
    assert b"ESCAPED" not in body


def test_raw_dots_from_curl_path_as_is(server: ServerProcess) -> None:
    curl = require_program("curl")
    argv = [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*"]
    url = server.url + "../outside/escape"
    # curl alone removes the dot segments (RFC 3986 §5.2.4), so the server sees /outside/escape
    # and has no such script; with --path-as-is the ".." reaches the server, which refuses it.
    assert subprocess.run([*argv, url], capture_output=True, check=True).stdout == b"404"
    as_is = subprocess.run([*argv, "--path-as-is", url], capture_output=True, check=True)
    assert as_is.stdout == b"403"


def test_symlink_inside_the_root_runs(server: ServerProcess) -> None:
    assert answer(server, "/inside-link/x") == (200, b"ok /inside-link|/x\n")


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/ok", b"ok /ok|\n"),
        ("//ok", b"ok /ok|\n"),  # empty segments are skipped
        ("/sub/ok/a//b", b"ok /sub/ok|/a/b\n"),
        ("/ok?../../x", b"ok /ok|\n"),  # the query takes no part in finding the script
    ],
)
def test_scripts_inside_the_root_run(server: ServerProcess, target: str, body: bytes) -> None:
    assert answer(server, target) == (200, body)


def test_absolute_form_target_is_served_as_its_path(server: ServerProcess) -> None:
    raw = exchange(
        server, b"GET http://test/sub/ok/x?q HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    assert dechunk(split(raw)[2]) == b"ok /sub/ok|/x\n"


# -- 403, 404 -----------------------------------------------------------------------------------
def test_script_that_is_not_executable_is_403(server: ServerProcess) -> None:
    status, body = answer(server, "/noexec")
    assert status == 403
    assert b"not executable" in body


@pytest.mark.parametrize(
    "target", ["/missing", "/sub", "/sub/", "/OK", "/" + "n" * 300, "/loop-link", "/ok.d/x"]
)
def test_missing_script_runs_the_not_found_script(server: ServerProcess, target: str) -> None:
    # Not a file, a directory, the wrong case, a name too long for the file system
    # (ENAMETOOLONG) or a symlink loop (ELOOP): each is simply "no script here".
    status, body = answer(server, target + "?q=1")
    assert status == 404
    assert body == f"custom 404 for {target} (404) at {target}?q=1\n".encode()


def test_without_a_not_found_script_the_server_answers_404(
    root: Path, start_server: ServerPool
) -> None:
    server = start_cgi(start_server, root, "--not-found", "")
    status, headers, body = split(exchange(server, get("/missing")))
    assert status == 404
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == b"404 no script at this path\n"


# -- Shellshock (CVE-2014-6271, CVE-2014-6278) --------------------------------------------------
def test_function_definitions_in_headers_stay_inert_data(server: ServerProcess) -> None:
    payload = "() { :; }; echo INJECTED"
    agent = "() { _; } >_[$($())] { echo INJECTED-TOO; }"
    raw = exchange(server, get("/shellshock", f"X-Payload: {payload}", f"User-Agent: {agent}"))
    status, _, body = split(raw)
    assert status == 200
    # Exactly the values, as text, and the nested bash ran nothing but its own command.
    lines = dechunk(body).decode().splitlines()
    assert lines == [payload, agent, "nested bash ran"]
