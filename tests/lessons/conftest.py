"""Helpers for the lesson tests: run the walkthrough as a real process, on a pipe or on a
pseudo-terminal, and check that nothing it started is left.

The walkthrough is always a subprocess here, never called in-process: what is tested is
what an instructor runs (``python -m lessons``), including its signal handling and its
exit status, and a process is the only honest way to prove that a server it started is
gone after it exits.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servers.launch import pids_in_groups

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
STARTED = re.compile(r"started (\S+): pid (\d+)")


def lessons_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "lessons", *args]


def child_env(**extra: str) -> dict[str, str]:
    # Unbuffered, so that a test reading the output as it comes sees each line at once.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", **extra}
    env.pop("NO_COLOR", None)
    return env


def run_lessons(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``python -m lessons ARGS`` with stdin not a terminal; output captured."""
    return subprocess.run(
        lessons_argv(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(),
        timeout=timeout,
    )


def group_alive(pgid: int) -> bool:
    """True if any process (zombies aside) is still in process group ``pgid``."""
    return bool(pids_in_groups(pgid))


def assert_groups_gone(pgids: list[int], grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while (alive := [g for g in pgids if group_alive(g)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"process groups left behind: {alive}"


def started_pids(output: str) -> list[int]:
    return [int(pid) for _, pid in STARTED.findall(output)]


def write_lesson(directory: Path, body: str, name: str = "99-test.md") -> Path:
    path = directory / name
    path.write_text("# Lesson 99 · A test lesson\n\n" + body, encoding="utf-8")
    return path


class Terminal:
    """The walkthrough on a pseudo-terminal, as on an instructor's screen.

    The child gets the pty as stdin, stdout and stderr, and as its controlling terminal
    (a new session, then TIOCSCTTY), so that typing Ctrl-C sends SIGINT exactly as a real
    terminal does. A thread drains the output so that the child never blocks on a full pty.
    """

    def __init__(self, argv: list[str]) -> None:
        master, slave = os.openpty()
        self.master = master

        def make_controlling_terminal() -> None:  # in the child, after setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            env=child_env(TERM="xterm"),
            start_new_session=True,
            preexec_fn=make_controlling_terminal,
        )
        os.close(slave)
        self._raw = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not data:
                return
            with self._lock:
                self._raw += data

    @property
    def text(self) -> str:
        with self._lock:
            return ANSI.sub("", self._raw.decode("utf-8", "replace"))

    def wait_for(self, needle: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.text.count(needle) < count:
            if self.proc.poll() is not None and self.text.count(needle) < count:
                raise AssertionError(f"exited before {needle!r} x{count}:\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} x{count} in time:\n{self.text}")
            time.sleep(0.02)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def finish(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout=5)
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def terminal() -> Iterator[Callable[[list[str]], Terminal]]:
    """``terminal(argv)`` starts it on a pty; any left running are killed at teardown."""
    started: list[Terminal] = []

    def start(argv: list[str]) -> Terminal:
        term = Terminal(argv)
        started.append(term)
        return term

    yield start
    for term in started:
        term.kill()
