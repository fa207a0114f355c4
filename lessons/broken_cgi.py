"""DELIBERATELY BROKEN: a CGI server with the two classic bugs of lesson 1. Not an era.

``python -m lessons.broken_cgi --port 0 --root lessons/cgi-bin`` serves CGI scripts the way
many early servers did, and the way Python's own ``http.server --cgi`` still does: it
writes a status line, then forks and lets the script print the rest straight onto the
client's socket. It parses requests with the course's HTTP core and finds scripts with the
real server's confinement, so that exactly two things are wrong, each marked ``BUG``:

1. **It never waits for its scripts.** A process that exits stays in the process table,
   as a *zombie* (state Z), until its parent collects its exit status with ``waitpid``.
   This server never does: every request leaves one, until the table is full and fork
   fails for everyone on the machine (``ulimit -u``). servers/cgi.py, rule 2.
2. **Its scripts inherit its listening socket.** In C, and in Python before 3.4
   (PEP 446), a new descriptor survives ``execve`` unless it is marked close-on-exec.
   This server marks its listener inheritable, as those did by default, and does not
   close what it does not pass on: every script holds the port open, and a script that
   leaves a background job behind keeps the port bound after the server is gone (the
   restart fails with "Address already in use"). servers/cgi.py, rule 4.

Run lesson 1 (``make lesson-1``) to see both in ``/proc``, then the fix. Everything else
is as simple as it can be: one request per connection, one connection at a time, no
timeouts. Never expose it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from servers.cgi import SCRIPT_PATH, SERVER_SOFTWARE, HttpError, resolve_script
from servers.cli import ready_line
from servers.gateway import Peer, meta_variables
from servers.http import NEED_DATA, Request, ServerConnection


def read_request(sock: socket.socket) -> Request | None:
    """The request head, or None if the client sent none."""
    conn = ServerConnection()
    while (event := conn.next_event()) is NEED_DATA:
        data = sock.recv(65536)
        if not data:
            return None
        conn.receive_data(data)
    return event if isinstance(event, Request) else None


def serve(sock: socket.socket, root: str) -> None:
    request = read_request(sock)
    if request is None:
        return
    try:
        script, script_name, path_info = resolve_script(root, request.target)
    except HttpError as error:
        sock.sendall(f"HTTP/1.0 {error.status} {error}\r\n\r\n".encode())
        return
    local, remote = sock.getsockname(), sock.getpeername()
    env = {
        b"PATH": SCRIPT_PATH,
        **{
            name.encode(): value
            for name, value in meta_variables(
                request,
                Peer(local[0], local[1], remote[0], remote[1]),
                script_name=script_name,
                path_info=path_info,
                content_length=0,
                server_software=SERVER_SOFTWARE + " (broken)",
                document_root=root,
                script_filename=script,
            ).items()
        },
    }
    # The script's header lines follow this status line on the wire, as http.server does.
    sock.sendall(b"HTTP/1.0 200 Script output follows\r\n")
    if os.fork() == 0:
        try:
            os.dup2(sock.fileno(), 0)
            os.dup2(sock.fileno(), 1)
            # BUG 2: no os.closerange(3, ...): whatever is inheritable goes to the script.
            os.chdir(os.path.dirname(script))
            os.execve(script, [script], env)
        finally:
            os._exit(127)
    # BUG 1: no os.waitpid(): the script will exit, and stay a zombie.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lessons.broken_cgi",
        description="DELIBERATELY BROKEN CGI server for lesson 1: zombies, leaked listener",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--root", type=Path, default=Path("lessons/cgi-bin"))
    args = parser.parse_args(argv)
    # Not one of its bugs: SIGTERM ends it with status 0, like the real servers. Its
    # zombies then pass to init (pid 1), which reaps whatever it inherits.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.create_server((args.host, args.port))
    listener.set_inheritable(True)  # BUG 2: as every descriptor was before PEP 446
    ready_line("broken-cgi", args.host, listener.getsockname()[1])
    root = str(args.root.resolve())
    while True:
        sock, _ = listener.accept()
        with sock:
            try:
                serve(sock, root)
            except OSError as error:
                print(f"broken-cgi: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
