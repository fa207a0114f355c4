"""What each kind of step does, shown on a rich console.

One method per kind (:data:`lessons.markup.KINDS` lists them): ``python``, ``shell``,
``server``, ``request``, ``procs``, ``load``, ``stop``. Each one does its work through the
:class:`lessons.lab.Lab`, prints what a student should see, and raises
:class:`lessons.lab.LabError` for anything that went wrong, with the fix in words; the
runner turns that into a message and a prompt, never a traceback.

Substitutions, so that a lesson never hard-codes a port:

* ``{port}`` in a server's command: a free port chosen now (for peers that cannot
  report the port they bound, like ``waitress --listen=127.0.0.1:{port}``);
* ``{NAME.url}``, ``{NAME.port}``, ``{NAME.pid}`` in any command or request text:
  the running server NAME's base URL (with a trailing slash), port, and pid.

After every step the runner shows what each running server printed meanwhile (its
``--trace``), so that a ``shell`` step running curl shows the server's side too. A request
step shows it live, as it arrives; a load step only counts it (a traced server under load
prints thousands of lines).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

from servers.launch import REPO_ROOT, free_port, signals_deferred

from . import procview
from .client import Responses, encode_request
from .lab import (
    INSTALL_HINTS,
    Exchange,
    Lab,
    LabError,
    command_argv,
    is_trace_line,
    style_output_line,
)
from .load import LoadError, run_load
from .markup import Step

__all__ = ["StepRunner"]

_REFERENCE = re.compile(r"\{([A-Za-z_][\w-]*)\.(url|port|pid)\}")


class StepRunner:
    """Runs the steps of one lesson against one lab, printing to one console."""

    def __init__(self, lab: Lab, console: Console, lesson_name: str = "lesson") -> None:
        self.lab = lab
        self.console = console
        self.lesson_name = lesson_name
        # Python steps share one namespace, like cells of a notebook. server("NAME") gives
        # them a running server (its .url, .port, .pid), as {NAME.url} does in commands.
        self.namespace: dict[str, Any] = {"__name__": "__lesson__", "server": lab.server}

    # -- helpers ---------------------------------------------------------------------------------
    def substitute(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name, field = match.groups()
            if name not in self.lab.servers:
                return match.group(0)  # not a server of ours: leave the braces alone
            server = self.lab.server(name)
            return str({"url": server.url, "port": server.port, "pid": server.pid}[field])

        return _REFERENCE.sub(replace, text)

    def show_server_output(self) -> None:
        """Print what each running server printed since the last look."""
        for name, server in self.lab.servers.items():
            if not server.running:
                continue
            server.settle(quiet=0.08, limit=0.5)
            lines = server.new_lines()
            if lines:
                self.console.print(Text(f"{name} printed:", style="bold yellow"))
                for line in lines:
                    self.console.print(Text("  ").append_text(style_output_line(line)))

    def show_background(self) -> None:
        for item in self.lab.take_finished_background():
            if isinstance(item, LabError):
                self.console.print(Text(f"✗ {item.problem}", style="red"))
            else:
                self.console.print(
                    Text(
                        f"background request to {item.server} finished after "
                        f"{item.seconds:.2f} s: {item.received.summary()}",
                        style="dim",
                    )
                )

    # -- the kinds ---------------------------------------------------------------------------
    def run(self, step: Step, quiet: bool = False) -> None:
        """Run one step. ``quiet``: only its effect (used to catch up before --step K)."""
        if quiet:
            if step.kind == "python":
                with (
                    contextlib.redirect_stdout(io.StringIO()),
                    contextlib.redirect_stderr(io.StringIO()),
                ):
                    self._python(step, show=False)
            elif step.kind == "server":
                self._server(step, show=False)
            elif step.kind == "stop":
                self.lab.stop(step.attrs["server"])
            elif step.kind == "request":
                self._request_quietly(step)
            return
        self.show_background()
        kinds: dict[str, Callable[[Step], None]] = {
            "python": self._python,
            "shell": self._shell,
            "server": self._server,
            "request": self._request,
            "procs": self._procs,
            "load": self._load,
            "stop": self._stop,
        }
        kinds[step.kind](step)
        # Requests show the trace live, loads count it, server and stop show their own.
        if step.kind in ("python", "shell", "procs"):
            self.show_server_output()

    def _python(self, step: Step, show: bool = True) -> None:
        if show:
            self.console.print(
                Syntax(step.body.rstrip("\n"), "python", theme="ansi_dark", word_wrap=True)
            )
        filename = f"<{self.lesson_name}, step {step.number}>"
        try:
            code = compile(step.body, filename, "exec")
        except SyntaxError as error:
            raise LabError(
                f"the snippet does not compile: line {error.lineno}: {error.msg}",
                f"fix the code block at line {step.line} of the lesson file",
            ) from None
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                exec(code, self.namespace)
        except Exception as error:
            self._print_output(out.getvalue())
            frames = [
                f for f in traceback.extract_tb(error.__traceback__) if f.filename == filename
            ]
            where = f" (line {frames[-1].lineno} of the snippet)" if frames else ""
            fix = "fix the snippet"
            if isinstance(error, NameError):
                fix = (
                    "it uses a name from an earlier python step: run the lesson from that "
                    "step, or define the name here"
                )
            raise LabError(f"{type(error).__name__}: {error}{where}", fix) from None
        if show:
            self._print_output(out.getvalue())

    def _print_output(self, text: str) -> None:
        if text:
            self.console.print(Text(text.rstrip("\n")), highlight=False)

    def _shell(self, step: Step) -> None:
        timeout = float(step.get("timeout", "30"))
        expected = step.get("status", "0")
        for line in step.body.splitlines():
            if not line.startswith("$ "):
                continue  # sample output, for readers on GitHub
            argv = command_argv(line, self.substitute)
            self.console.print(Text("$ " + " ".join(_short(a) for a in argv), style="bold"))
            program = argv[0]
            if shutil.which(program) is None and not os.path.exists(program):
                hint = INSTALL_HINTS.get(os.path.basename(program), f"install {program}")
                if "optional" in step.flags:
                    self.console.print(
                        Text(
                            f"(skipped: {program} is not installed; {hint} to see this)",
                            style="yellow",
                        )
                    )
                    continue
                raise LabError(f"program {program!r} is not installed", hint)
            status, output = _run_command(argv, timeout)
            self._print_output(output)
            if status is None:
                raise LabError(
                    f"{_short(program)} did not finish in {timeout:g} s (stopped)",
                    "is a server it talks to stuck? raise timeout=... in the step if it is slow",
                )
            if expected != "any" and status != int(expected):
                raise LabError(
                    f"{_short(program)} exited with status {status} (expected {expected})",
                    "read its output above",
                )

    def _server(self, step: Step, show: bool = True) -> None:
        name = step.attrs["name"]
        line = next(ln for ln in step.body.splitlines() if ln.startswith("$ "))
        port = None
        if "{port}" in line:
            port = free_port()
            line = line.replace("{port}", str(port))
        argv = command_argv(line, self.substitute)
        if show:
            self.console.print(Text("$ " + " ".join(_short(a) for a in argv), style="bold"))
        probe_attr = step.get("probe", "/")
        probe = None if probe_attr == "none" else probe_attr
        if name in self.lab.servers and self.lab.servers[name].running:
            self.lab.stop(name)  # re-running a server step restarts it
        status = self.console.status(f"starting {name} …") if show else contextlib.nullcontext()
        with status:
            server = self.lab.start(
                name, argv, port=port, probe=probe, startup_timeout=float(step.get("timeout", "20"))
            )
        if not show:
            server.settle()
            server.skip_output()
            return
        self.console.print(
            Text(
                f"started {name}: pid {server.pid} (process group {server.pid}) on {server.url}",
                style="bold green",
            )
        )
        server.settle()
        probe_lines = 0
        for out_line in server.new_lines():
            if is_trace_line(out_line):
                # The launcher's readiness probe (a GET of the probe path) is traced like
                # any request; it is not part of the lesson.
                probe_lines += 1
                continue
            self.console.print(Text("  ").append_text(style_output_line(out_line)))
        if probe_lines:
            self.console.print(
                Text(
                    f"  (the launcher's readiness probe, a GET {probe or '/'}, traced "
                    f"{probe_lines} lines: hidden)",
                    style="dim",
                )
            )

    def _request_bytes(self, step: Step) -> bytes:
        if step.lang == "python":
            try:
                value = eval(step.body, self.namespace)
            except Exception as error:
                raise LabError(
                    f"the request expression failed: {type(error).__name__}: {error}",
                    "a python request block is one expression that gives bytes",
                ) from None
            if not isinstance(value, bytes):
                raise LabError(
                    f"the request expression gave {type(value).__name__}, not bytes",
                    'write it as bytes: b"GET / HTTP/1.1\\r\\n..."',
                )
            return value
        return encode_request(self.substitute(step.body), step.get("eol", "crlf"))

    def _request(self, step: Step) -> None:
        data = self._request_bytes(step)
        name = step.attrs["server"]
        self.lab.server(name)  # fails early, with the fix, if it is not running
        self.show_server_output()  # anything earlier, so that what follows is this request's
        timeout = float(step.get("timeout", "5"))
        if "background" in step.flags:
            self.lab.exchange_in_background(name, data, timeout=max(timeout, 30))
            self.console.print(
                Text(
                    f"client → {name}: {len(data)} bytes, sent in the background", style="bold cyan"
                )
            )
            time.sleep(0.2)  # let the server take it before the next step looks
            return
        conn = step.get("conn") or None
        reused = conn is not None and conn in self.lab.connections
        preview = Exchange(name, conn or "", reused, data, Responses())
        for text in preview.sent_view():
            self.console.print(text)
        printed_header = False

        def on_trace(lines: list[str]) -> None:
            nonlocal printed_header
            if not printed_header:
                self.console.print(Text(f"{name} traced:", style="bold yellow"))
                printed_header = True
            for line in lines:
                self.console.print(Text("  ").append_text(style_output_line(line)))

        responses = step.get("responses")
        exchange = self.lab.exchange(
            name,
            data,
            conn=conn,
            responses=int(responses) if responses else None,
            timeout=timeout,
            on_trace=on_trace,
        )
        for text in exchange.received_view():
            self.console.print(text)

    def _request_quietly(self, step: Step) -> None:
        name = step.attrs["server"]
        responses = step.get("responses")
        self.lab.exchange(
            name,
            self._request_bytes(step),
            conn=step.get("conn") or None,
            responses=int(responses) if responses else None,
            timeout=float(step.get("timeout", "5")),
        )
        self.lab.server(name).skip_output()

    def _procs(self, step: Step) -> None:
        server = self.lab.server(step.attrs["server"])
        title = f"{server.name}: process group {server.pid}, read from /proc"
        self.console.print(procview.render(server.procs(), title))

    def _load(self, step: Step) -> None:
        name = step.attrs["server"]
        server = self.lab.server(name)
        self.show_server_output()
        users = int(step.get("users", "4"))
        seconds = float(step.get("seconds", "3"))
        paths = [p for p in step.get("paths", "/").split(",") if p]
        rate = float(step.get("rate")) if step.get("rate") else None
        self.console.print(
            Text(
                f"locust: {users} users, {seconds:g} s, GET {' '.join(paths)} on {server.url}",
                style="bold",
            )
        )
        try:
            with self.console.status(f"running locust for {seconds:g} s …"):
                result = run_load(
                    server.url, users=users, seconds=seconds, paths=paths, spawn_rate=rate
                )
        except LoadError as error:
            raise LabError(str(error), "is locust installed? `make venv` installs it") from None
        self.console.print(result)
        skipped = server.skip_output()
        if skipped:
            self.console.print(
                Text(f"({name} printed {skipped} lines during the load; not shown)", style="dim")
            )

    def _stop(self, step: Step) -> None:
        name = step.attrs["server"]
        if name not in self.lab.servers:
            self.lab.server(name)  # raises the "no server named" error
        status, lines = self.lab.stop(name)
        for line in lines:
            self.console.print(Text("  ").append_text(style_output_line(line)))
        self.console.print(Text(f"stopped {name}: exit status {status}", style="bold green"))


def _short(word: str) -> str:
    return "python" if word == sys.executable else word


def _run_command(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """Run argv in its own process group, output captured; None if it timed out."""
    proc: subprocess.Popen[bytes] | None = None
    try:
        with signals_deferred():  # a Ctrl-C inside Popen would orphan the child
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        assert proc is not None
        _kill_group(proc)
        out, _ = proc.communicate()
        return None, out.decode("utf-8", "replace")
    except BaseException:
        if proc is not None:
            _kill_group(proc)
            proc.wait()
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
