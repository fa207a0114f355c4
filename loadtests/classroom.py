"""Classroom mode: locust's web UI on one era, and load spread over the students' machines.

Three commands, each behind a make target (``make help`` lists them)::

    python -m loadtests.classroom load   --era asgi --workload hello       # make load
    python -m loadtests.classroom master --era asgi --workload hello       # make load-master
    python -m loadtests.classroom worker --master HOST --workload hello    # make load-worker

* ``load`` starts the era's server on a fixed port (8000 unless ``--port``) and locust's
  web UI with ``--host`` already set to it, and prints the address to open. The instructor
  chooses users and spawn rate in the browser and watches the charts live.
* ``master`` does the same in locust's distributed mode: the master runs no users itself;
  each ``worker`` that connects to it (the students' machines, or a few processes on one
  machine) runs its share, and the master adds their statistics up. A class of laptops
  produces far more load than one machine, which is the point when an era holds up fine
  against one client.

What each process is, and who stops it:

* the era's server runs in a session of its own (``servers.launch.ServerProcess``), and
  is stopped as a whole group when locust ends or Ctrl-C arrives;
* locust runs in a process group of its own, out of reach of the terminal's Ctrl-C (which
  would interrupt its users mid-request and print a traceback for each): on Ctrl-C we send
  its group SIGTERM, on which locust quits its own way (stopping its users, telling the
  workers to stop, writing its last statistics), and SIGKILL only if it has not gone
  after a grace period.

Where things listen: everything on 127.0.0.1, except when the instructor asks otherwise.
The master's port (5557) and the era's server must be reachable by the workers, so they
bind ``--bind`` (``MASTER_BIND``), loopback by default; give the address of the interface
the students reach you on (``MASTER_BIND=192.168.1.20``) to open the class. The web UI
stays on loopback whatever ``--bind`` is: it has no password, and it is the instructor's.

Workload settings (``GATEWAYLAB_SLEEP_MS`` and the others, see loadtests/locustfiles/) are
read where the users run: on each worker in distributed mode, not on the master.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from rich.console import Console

from servers.cli import DEFAULT_PORT
from servers.eras import ERAS, era_named
from servers.launch import ServerProcess, ServerStartError, signals_deferred

from .locust_run import WORKLOADS, child_env, locustfile, raise_nofile_limit

__all__ = ["main", "master_argv", "server_argv", "web_ui_argv", "worker_argv"]

LOOPBACK = "127.0.0.1"
WEB_PORT = 8089  # locust's own default
MASTER_PORT = 5557  # locust's own default
# How long locust may take to quit after Ctrl-C before we stop it ourselves.
QUIT_GRACE = 10.0

console = Console(highlight=False, soft_wrap=True)  # URLs stay on one line, for copying


# -- command lines ----------------------------------------------------------------------------
def server_argv(era: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "servers", era, "--host", host, "--port", str(port)]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def web_ui_argv(
    workload: str,
    target: str,
    *,
    web_host: str = LOOPBACK,
    web_port: int = WEB_PORT,
    users: int | None = None,
    spawn_rate: float | None = None,
) -> list[str]:
    """locust with its web UI, the target filled in (``make load``)."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile(workload)),
        "--host", target, "--web-host", web_host, "--web-port", str(web_port),
    ]  # fmt: skip
    if users is not None:
        argv += ["-u", str(users), "-r", f"{spawn_rate or users:g}"]
    return argv


def master_argv(
    workload: str,
    target: str,
    *,
    bind: str = LOOPBACK,
    port: int = MASTER_PORT,
    web_host: str = LOOPBACK,
    web_port: int = WEB_PORT,
    users: int | None = None,
    spawn_rate: float | None = None,
    headless_seconds: float | None = None,
    expect_workers: int = 1,
    csv_prefix: str | None = None,
) -> list[str]:
    """A locust master: web UI by default; headless when ``headless_seconds`` is given
    (it then waits for ``expect_workers`` workers, runs, and quits)."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile(workload)),
        "--master", "--master-bind-host", bind, "--master-bind-port", str(port),
        "--host", target,
    ]  # fmt: skip
    if users is not None:
        argv += ["-u", str(users), "-r", f"{spawn_rate or users:g}"]
    if headless_seconds is None:
        argv += ["--web-host", web_host, "--web-port", str(web_port)]
    else:
        argv += [
            "--headless", "-t", f"{max(1, round(headless_seconds))}s",
            "--expect-workers", str(expect_workers),
            # A worker that never comes must not leave the master waiting forever.
            "--expect-workers-max-wait", "60",
            "--only-summary", "--stop-timeout", "2",
        ]  # fmt: skip
    if csv_prefix is not None:
        argv += ["--csv", csv_prefix]
    return argv


def worker_argv(
    workload: str, master: str, *, port: int = MASTER_PORT, processes: int | None = None
) -> list[str]:
    """A locust worker: it takes users, spawn rate, run time and target from the master."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile(workload)),
        "--worker", "--master-host", master, "--master-port", str(port),
    ]  # fmt: skip
    if processes:
        argv += ["--processes", str(processes)]  # one worker per CPU of a student's laptop
    return argv


# -- running ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _era_server(era: str, host: str, port: int) -> Iterator[ServerProcess]:
    if not era_named(era).built:
        raise SystemExit(f"the {era} era is not built yet; built: " + ", ".join(
            e.name for e in ERAS if e.built))  # fmt: skip
    console.print(f"starting the {era} era on {_url(host, port)} ...")
    server = ServerProcess(server_argv(era, host, port), host=host, name=era)
    try:
        server.start()
    except ServerStartError as error:
        hint = ""
        if "address already in use" in str(error).lower():
            hint = f"\nport {port} is taken: choose another with --port (make ... ARGS='--port N')"
        raise SystemExit(f"the {era} server did not start:\n{error}{hint}") from None
    try:
        yield server
    finally:
        server.stop()
        console.print(f"stopped the {era} era")


class _Terminated(Exception):
    """SIGTERM arrived: stop like after a Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def supervise(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run locust in a process group of its own until it exits. On Ctrl-C or SIGTERM, ask
    the group to stop with SIGTERM (locust's own graceful stop), allow QUIT_GRACE seconds,
    then SIGKILL what is left of the group."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with signals_deferred():  # a signal inside Popen would orphan the child
            proc = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                process_group=0,  # out of the terminal's Ctrl-C: we stop it ourselves
                preexec_fn=raise_nofile_limit,
            )
        try:
            return proc.wait()
        except (KeyboardInterrupt, _Terminated):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                deadline = time.monotonic() + QUIT_GRACE
                while proc.poll() is None and time.monotonic() < deadline:
                    with contextlib.suppress(KeyboardInterrupt, _Terminated):
                        time.sleep(0.05)  # a second Ctrl-C does not cut the wait short
                if proc.poll() is not None:
                    break
            proc.wait()
            # Workers forked by --processes may outlive their parent: the group goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_workload(workload: str, era: str | None) -> None:
    if workload not in WORKLOADS:
        raise SystemExit(f"no workload {workload!r}; the workloads are {', '.join(WORKLOADS)}")
    if workload == "websocket" and era not in (None, "asgi"):
        console.print(
            f"[yellow]note:[/] only the asgi era serves /ws; the {era} era answers 501, "
            "which the websocket workload counts as failures"
        )


def _is_wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False  # a host name


def cmd_load(args: argparse.Namespace) -> int:
    _check_workload(args.workload, args.era)
    with _era_server(args.era, LOOPBACK, args.port) as server:
        target = _url(server.host, server.port or args.port)
        argv = web_ui_argv(
            args.workload, target, web_host=args.web_host, web_port=args.web_port,
            users=args.users, spawn_rate=args.spawn_rate,
        )  # fmt: skip
        console.print(
            f"[bold]open {_url(args.web_host, args.web_port)}/[/] : locust's web UI, workload "
            f"[bold]{args.workload}[/] against the {args.era} era at {target}/\n"
            "choose users and spawn rate there and press Start; Ctrl-C here stops both"
        )
        return supervise(argv, child_env(None, None))


def cmd_master(args: argparse.Namespace) -> int:
    _check_workload(args.workload, args.era if args.target is None else None)
    prefix = None
    if args.csv_dir is not None:
        args.csv_dir.mkdir(parents=True, exist_ok=True)
        prefix = str(args.csv_dir / "master")
    with contextlib.ExitStack() as stack:
        if args.target is not None:
            target = args.target.rstrip("/")
        else:
            if _is_wildcard(args.bind):
                raise SystemExit(
                    f"--bind {args.bind} listens on every interface, and gives the workers no "
                    "address to send load to: bind the address the students reach you on "
                    "(MASTER_BIND=192.168.1.20), or name the target with --target URL"
                )
            server = stack.enter_context(_era_server(args.era, args.bind, args.port))
            target = _url(server.host, server.port or args.port)
        argv = master_argv(
            args.workload, target, bind=args.bind, port=args.master_port,
            web_host=args.web_host, web_port=args.web_port, users=args.users,
            spawn_rate=args.spawn_rate, headless_seconds=args.headless,
            expect_workers=args.expect_workers, csv_prefix=prefix,
        )  # fmt: skip
        join = f"make load-worker MASTER={args.bind} WORKLOAD={args.workload}"
        if args.master_port != MASTER_PORT:
            join += f" ARGS='--master-port {args.master_port}'"
        if args.headless is None:
            web = _url(args.web_host, args.web_port)
            console.print(f"[bold]open {web}/[/] : the master's web UI")
        console.print(
            f"locust master for workload [bold]{args.workload}[/] against {target}/, "
            f"listening for workers on {args.bind}:{args.master_port}\n"
            f"workers join with: [bold]{join}[/]"
        )
        if args.bind == LOOPBACK:
            console.print(
                "[dim](loopback only: workers on this machine alone; MASTER_BIND=<your address> "
                "opens it to the class)[/]"
            )
        return supervise(argv, child_env(None, prefix))
    raise AssertionError("unreachable")


def cmd_worker(args: argparse.Namespace) -> int:
    _check_workload(args.workload, None)
    if not args.master:
        raise SystemExit("which master? make load-worker MASTER=<the instructor's address>")
    console.print(
        f"locust worker for workload [bold]{args.workload}[/], joining the master at "
        f"{args.master}:{args.master_port} (Ctrl-C leaves)"
    )
    argv = worker_argv(args.workload, args.master, port=args.master_port, processes=args.processes)
    return supervise(argv, child_env(None, None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.classroom",
        description="Classroom load: locust's web UI on one era, and distributed workers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser, era: bool) -> None:
        sub.add_argument("--workload", default="hello", choices=WORKLOADS)
        if era:
            sub.add_argument("--era", default="asgi", choices=[e.name for e in ERAS])
            sub.add_argument(
                "--port",
                type=int,
                default=DEFAULT_PORT,
                help="the era's port (default %(default)s)",
            )
            sub.add_argument("--web-host", default=LOOPBACK, help="web UI address (%(default)s)")
            sub.add_argument("--web-port", type=int, default=WEB_PORT, help="(default %(default)s)")
            sub.add_argument("--users", type=int, help="users to prefill (or run, headless)")
            sub.add_argument("--spawn-rate", type=float, help="users started per second")

    load = commands.add_parser("load", help="an era and locust's web UI on it (make load)")
    common(load, era=True)
    load.set_defaults(run=cmd_load)

    master = commands.add_parser("master", help="a locust master (make load-master)")
    common(master, era=True)
    master.add_argument(
        "--bind", default=LOOPBACK, help="address of the master and the era's server (%(default)s)"
    )
    master.add_argument("--master-port", type=int, default=MASTER_PORT)
    master.add_argument("--target", help="send the load to this URL; start no era")
    master.add_argument(
        "--headless",
        type=float,
        metavar="SECONDS",
        help="no web UI: wait for workers, run this long, quit",
    )
    master.add_argument(
        "--expect-workers",
        type=int,
        default=1,
        help="with --headless: workers to wait for (%(default)s)",
    )
    master.add_argument("--csv-dir", type=Path, help="write master*.csv statistics there")
    master.set_defaults(run=cmd_master)

    worker = commands.add_parser("worker", help="a locust worker (make load-worker)")
    common(worker, era=False)
    worker.add_argument("--master", default="", help="the master's address")
    worker.add_argument("--master-port", type=int, default=MASTER_PORT)
    worker.add_argument("--processes", type=int, help="worker processes (-1: one per CPU)")
    worker.set_defaults(run=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
