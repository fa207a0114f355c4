"""nginx in front of a FastCGI application server: the configuration our gateway mirrors.

Our gateway (``python -m servers fastcgi``) is a small nginx; this module writes the
configuration of the real one, for the places where the course puts nginx in front of an
application server: lesson 2 and its notebook, and the ``make bench`` pairs that compare
application servers behind the same front end. It only writes text and finds the
program; starting nginx is the caller's business (a lesson helper, a bench recipe), each
with its own way of stopping what it started.

Each directive, and what our gateway does for the same purpose::

    fastcgi_pass app;             upstream.py: Upstreams, round-robin over the servers
    upstream { keepalive 64; }    upstream.py: Upstream, a pool of idle kept connections
    fastcgi_keep_conn on;         BEGIN_REQUEST with FCGI_KEEP_CONN (§3.5): the
                                  application keeps the connection open after END_REQUEST
    fastcgi_param NAME VALUE;     gateway.py: fastcgi_params(), the same names and values
    fastcgi_buffering on|off;     exchange.py streams each STDOUT record at once ("off")

Why these values:

* **The params**: nginx's stock ``fastcgi_params`` file, written out (its place and its
  contents vary between distributions), with two changes for an application that owns
  the whole URL space: ``SCRIPT_NAME ""`` and ``PATH_INFO $uri``. The stock file sends
  ``SCRIPT_NAME`` = the whole path and no ``PATH_INFO``: right for PHP, which looks for a
  file, wrong for WSGI routing, which reads ``PATH_INFO`` (flup would route every request
  to "/"). These are the values our gateway sends.
* **Kept connections**: without ``fastcgi_keep_conn on`` nginx opens a new connection to
  the application for every request and closes it after END_REQUEST: a connect per
  request, the very cost FastCGI set out to remove. Both sides of a benchmark pair get
  the same pool, so that only the application server differs.
* **One worker** (``worker_processes 1``): the bench gives the whole server side one CPU
  (nginx and the application server share it), and a lesson has one of everything.
* **Private paths**: the pid file and every temporary directory live in ``directory``;
  ``error_log stderr`` (and ``-e stderr`` on the command line, see :func:`nginx_argv`)
  keep nginx away from /var/log, which a student cannot write to.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = ["TEMP_DIRS", "find_nginx", "nginx_argv", "nginx_config", "prepare_directory"]

# The temporary directories nginx wants, one per module that may spool to disk: the
# directive, and the directory's name under ``directory``.
TEMP_DIRS = {
    "client_body_temp_path": "body",
    "fastcgi_temp_path": "fastcgi",
    "proxy_temp_path": "proxy",
    "uwsgi_temp_path": "uwsgi",
    "scgi_temp_path": "scgi",
}

_PARAMS = (
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("SCRIPT_NAME", '""'),  # the application owns the whole URL space (see above)
    ("PATH_INFO", "$uri"),  # the decoded path, as our gateway sends it
    ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/$nginx_version"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    ("REDIRECT_STATUS", "200"),  # php-cgi's cgi.force_redirect wants it
)


def find_nginx() -> str | None:
    """nginx's path, or None. It lives in /usr/sbin, which a user's PATH may not hold."""
    found = shutil.which("nginx")
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin"):
        candidate = os.path.join(directory, "nginx")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _address(upstream: tuple[str, int] | str) -> str:
    if isinstance(upstream, str):
        return f"unix:{upstream}"  # nginx's spelling of a Unix socket
    host, port = upstream
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def nginx_config(
    directory: str | os.PathLike[str],
    port: int,
    upstreams: Sequence[tuple[str, int] | str],
    *,
    host: str = "127.0.0.1",
    keepalive: int = 64,
    buffering: bool = True,
    worker_connections: int = 1024,
) -> str:
    """nginx.conf: listen on ``host:port``, pass every request to ``upstreams`` by FastCGI.

    ``keepalive`` is the number of idle connections kept per worker; a benchmark at N
    connections wants it at least N, or nginx closes the surplus after every request.
    ``buffering`` off passes each STDOUT record on as it comes (``/stream``)."""
    path = Path(directory)
    servers = "\n".join(f"        server {_address(upstream)};" for upstream in upstreams)
    params = "\n".join(f"            fastcgi_param {name} {value};" for name, value in _PARAMS)
    temp = "\n".join(f"    {directive} {path / name};" for directive, name in TEMP_DIRS.items())
    return f"""\
# Generated by servers/fastcgi/nginx.py; see its docstring for each choice.
worker_processes 1;
daemon off;
pid {path / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
{temp}
    client_max_body_size 16m;
    upstream app {{
{servers}
        keepalive {keepalive};
    }}
    server {{
        listen {_address((host, port))};
        location / {{
            fastcgi_pass app;
            fastcgi_keep_conn on;
            fastcgi_buffering {"on" if buffering else "off"};
{params}
        }}
    }}
}}
"""


def prepare_directory(directory: str | os.PathLike[str]) -> None:
    """Create the temporary directories, open enough for nginx's workers: started as root,
    nginx runs them as "nobody", which must be able to reach them."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    for name in TEMP_DIRS.values():
        (path / name).mkdir(exist_ok=True)
        (path / name).chmod(0o777)


def nginx_argv(nginx: str, directory: str | os.PathLike[str]) -> list[str]:
    """The command that runs ``directory/nginx.conf`` in the foreground (``daemon off``).

    ``-e stderr``: nginx opens its compiled-in error log before it reads the
    configuration, and /var/log/nginx is not writable for a student."""
    path = Path(directory)
    return [nginx, "-e", "stderr", "-p", str(path), "-c", str(path / "nginx.conf")]
