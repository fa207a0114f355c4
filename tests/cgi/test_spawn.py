"""Two ways to start a script, one contract: ``--spawn fork`` and ``--spawn posix_spawn``.

The fork path does each step of RFC 3875 §3.4 and §7.2 by hand in the child; posix_spawn
declares them as attributes (servers/cgi.py, ``spawn_posix``). Whatever the way, a script
must find the same world, so every test here runs against a server in each mode and asks
the DUMP script (tests/cgi/support.py) what it got.

The server is started through a small launcher that leaves an *inheritable* descriptor
(fd 7) open, as a careless parent process might: the fork path closes it with closerange,
the posix_spawn path relies on the listening process having marked it close-on-exec.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.launch import ServerProcess
from tests.cgi.support import (
    DUMP,
    SH,
    alive,
    dump,
    eventually,
    exchange,
    get,
    make_root,
    processes,
    split,
)
from tests.conftest import ServerPool

SCRIPTS = {
    "dump": DUMP,
    "sub/dump": DUMP,
    "sigign": SH + "printf 'Content-Type: text/plain\\n\\n'\ngrep '^SigIgn' /proc/$$/status\n",
    "ok": SH + "printf 'Content-Type: text/plain\\n\\nok\\n'\n",
    # Past the 1 s timeout, with a grandchild in its process group.
    "hang": SH + "echo $$ > hang.pids\nsleep 300 &\necho $! >> hang.pids\nsleep 300\n",
    # Executable, but its interpreter does not exist: execve fails with ENOENT.
    "no-interpreter": "#!/nonexistent/interpreter\n",
}
# Leaves fd 7 open and inheritable, then becomes the server (same pid, same group).
LAUNCHER = (
    "import os, sys\n"
    "os.dup2(os.open(os.devnull, os.O_RDONLY), 7)  # dup2 makes it inheritable\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'servers', 'cgi', *sys.argv[1:]])\n"
)
MODES = ["fork", "posix_spawn"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("spawn"), SCRIPTS).resolve()


@pytest.fixture(scope="module", params=MODES)
def server(request: pytest.FixtureRequest, root: Path) -> Iterator[ServerProcess]:
    pool = ServerPool()
    argv = [sys.executable, "-c", LAUNCHER, "--port", "0", "--root", str(root)]
    try:
        yield pool(
            [*argv, "--script-timeout", "1", "--spawn", request.param],
            env={"GATEWAYLAB_CANARY": "from the server's environment"},
            name=f"cgi-{request.param}",
        )
    finally:
        pool.stop_all()


def test_environment_is_built_from_scratch(server: ServerProcess) -> None:
    env = dump(exchange(server, get("/dump", "X-Test: 1")))["env"]
    assert "GATEWAYLAB_CANARY" not in env  # rule 5: never os.environ
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert (env["GATEWAY_INTERFACE"], env["HTTP_X_TEST"]) == ("CGI/1.1", "1")


def test_script_holds_only_its_three_descriptors(server: ServerProcess) -> None:
    # Neither the listening socket, nor the client's, nor fd 7 from the launcher (rule 4).
    fds = dump(exchange(server, get("/dump")))["fds"]
    assert set(fds) == {"0", "1", "2"}
    assert fds["0"].startswith("pipe:") and fds["1"].startswith("pipe:")


def test_argv_is_the_script_alone(server: ServerProcess, root: Path) -> None:
    report = dump(exchange(server, get("/dump?-s")))  # CVE-2012-1823's query
    assert report["argv"] == [str(root / "dump")]


def test_working_directory_is_the_scripts_own(server: ServerProcess, root: Path) -> None:
    # RFC 3875 §7.2: the fork path chdirs in the child; posix_spawn, which has no chdir
    # action in Python 3.11, inherits the directory the connection process moved to.
    assert dump(exchange(server, get("/sub/dump")))["cwd"] == str(root / "sub")
    assert dump(exchange(server, get("/dump")))["cwd"] == str(root)


def test_script_leads_its_own_process_group(server: ServerProcess) -> None:
    report = dump(exchange(server, get("/dump")))
    assert report["pgid"] == report["pid"] != server.pid


def test_script_starts_with_no_signal_ignored(server: ServerProcess) -> None:
    raw = exchange(server, get("/sigign"))
    found = re.search(rb"SigIgn:\s*([0-9a-f]+)", raw)
    assert found is not None, raw
    mask = int(found[1], 16)
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        assert not mask & (1 << (number - 1)), f"{signal.Signals(number).name} is ignored"


def test_timeout_kills_the_whole_process_group(server: ServerProcess, root: Path) -> None:
    (root / "hang.pids").unlink(missing_ok=True)
    assert split(exchange(server, get("/hang")))[0] == 504
    script, grandchild = (int(pid) for pid in (root / "hang.pids").read_text().split())
    assert eventually(lambda: not alive(script) and not alive(grandchild))
    # SIGKILL is delivered asynchronously: a third process of the group may still be dying
    # (state R) for a moment after the two we know of are gone.
    assert eventually(lambda: not [p for p in processes() if p[3] == script and p[1] != "Z"])


def test_a_script_that_cannot_start_is_502_and_logged(server: ServerProcess) -> None:
    status, _, body = split(exchange(server, get("/no-interpreter")))
    # The fork path learns it from a child that printed and exited 127 (no output); the
    # posix_spawn path from posix_spawn itself, in the parent. Both: 502, details logged.
    assert status == 502
    assert body in (b"502 the script produced no output\n", b"502 the script could not be run\n")
    assert eventually(lambda: "cannot execute" in server.output())
    assert split(exchange(server, get("/ok")))[0] == 200  # and it goes on serving
