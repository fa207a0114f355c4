"""Every notebook executes top to bottom in the project's kernel, leaves nothing running,
and is committed without outputs; the notebook helper cleans up after a kernel however it
ends; the output check of ``make lint`` fails and strips as it says."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lessons.catalog import NOTEBOOKS_DIR
from lessons.check_notebooks import dirty_cells

from .conftest import REPO, assert_groups_gone, child_env

CELL_TIMEOUT = 60  # seconds per cell
NOTEBOOK_BUDGET = 120  # seconds per notebook, kernel start included
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
PID = re.compile(r"pid (\d+)")


def execute(nb: nbformat.NotebookNode, cwd: Path) -> None:
    """Run every cell in a fresh ``python3`` kernel. jupyter_client starts that kernel
    spec with the interpreter running this test (it replaces the spec's ``python`` with
    sys.executable), so the kernel is the project's venv; the last cell proves it."""
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()


def outputs_text(nb: nbformat.NotebookNode) -> str:
    # A print() may reach the notebook as several stream outputs: the kernel flushes on a
    # timer, and on a loaded machine the timer fires between the pieces of one line. Stream
    # text carries its own newlines, so it is joined as it came; other outputs get one.
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            else:
                parts.append(str(output.get("data", {}).get("text/plain", "")) + "\n")
    return "".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_without_error(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert not dirty_cells(nb), f"{path.name} is committed with outputs"
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel:', sys.executable)"))
    started = time.monotonic()
    execute(nb, path.parent)  # raises CellExecutionError, with the cell, on any error
    elapsed = time.monotonic() - started
    assert elapsed < NOTEBOOK_BUDGET, f"{path.name} took {elapsed:.0f} s"
    text = outputs_text(nb)
    assert f"kernel: {sys.executable}" in text
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    # Every server the notebook started (its repr says "pid N") is gone.
    assert_groups_gone([int(pid) for pid in PID.findall(text)])


def test_notebook_0_plots_and_loads() -> None:
    path = NOTEBOOKS_DIR / "00-http.ipynb"
    source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    for name in ("start(", "send(", "procs(", "load(", "plt.subplots", "stop_all()"):
        assert name in source


def test_notebook_3_plots_the_pool_under_load() -> None:
    path = NOTEBOOKS_DIR / "03-wsgi.ipynb"
    source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    for name in ("start(", "send(", "procs(", "load(", "plt.subplots", "stop_all()"):
        assert name in source
    # The 1,000-user run is the instructor's switch, off by default to keep the suite quick.
    assert "TRY_1000 = False" in source


def test_notebook_1_measures_and_plots() -> None:
    path = NOTEBOOKS_DIR / "01-cgi.ipynb"
    source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    for name in ("start(", "send(", "procs(", "load(", "measure(", "plt.subplots", "stop_all()"):
        assert name in source
    assert "lessons.broken_cgi" in source  # the deliberately broken server, and its fix


def test_servers_stop_when_the_kernel_ends(tmp_path: Path) -> None:
    """No stop_all() in the notebook: the kernel's atexit (or the guardian) must do it."""
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from lessons.notebook import start\n"
                "wire = start('servers.wire')\n"
                "print('server pid', wire.pid)"
            )
        ]
    )
    execute(nb, tmp_path)
    pids = [int(p) for p in PID.findall(outputs_text(nb))]
    assert len(pids) == 1
    assert_groups_gone(pids)


def test_guardian_stops_servers_of_a_killed_kernel() -> None:
    """A kernel killed with SIGKILL runs no Python at all; the guardian must notice."""
    mark = f"guardian-test-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import os, signal\n"
        "from lessons.notebook import start\n"
        "wire = start('servers.wire', trace=False)\n"
        "print(wire.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        # A mark in the environment, which the guardian inherits from the kernel: other
        # tests running at the same time have guardians of their own, and only this
        # kernel's guardian must be gone.
        env={**child_env(), "GATEWAYLAB_TEST_MARK": mark},
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL
    pid = int(result.stdout.split()[0])
    assert_groups_gone([pid], grace=10)
    # The guardian itself is gone too: it exits once the groups are stopped.
    deadline = time.monotonic() + 10
    while _guardians(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _guardians(mark)


def _guardians(mark: str) -> list[int]:
    """Live guardian processes whose environment carries ``mark``."""
    needle = f"GATEWAYLAB_TEST_MARK={mark}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
                stat = Path(entry.path, "stat").read_text()
                environ = Path(entry.path, "environ").read_bytes()
            except OSError:
                continue
            zombie = stat[stat.rindex(")") + 2] == "Z"
            mine = needle in environ.split(b"\0")
            if b"lessons.guardian" in cmdline and mine and not zombie:
                found.append(int(entry.name))
    return found


# -- make check-notebooks ----------------------------------------------------------------------
def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lessons.check_notebooks", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_check_fails_on_outputs_and_strip_fixes_it(tmp_path: Path) -> None:
    dirty = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# a notebook"),
            nbformat.v4.new_code_cell(
                "print(1)",
                execution_count=1,
                outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")],
            ),
            nbformat.v4.new_code_cell("x = 2", execution_count=2),
        ]
    )
    path = tmp_path / "dirty.ipynb"
    nbformat.write(dirty, path)
    result = check(str(path))
    assert result.returncode == 1
    assert "cells 1, 2 have outputs" in result.stderr and "--strip" in result.stderr
    assert check("--strip", str(path)).returncode == 0
    assert check(str(path)).returncode == 0
    stripped = json.loads(path.read_text())
    assert [c.get("outputs") for c in stripped["cells"][1:]] == [[], []]
    assert nbformat.validate(nbformat.read(path, as_version=4)) is None


def test_check_passes_on_the_committed_notebooks() -> None:
    result = check()
    assert result.returncode == 0, result.stderr
    assert f"{len(NOTEBOOKS)} checked" in result.stdout


def test_check_refuses_a_file_that_is_not_a_notebook(tmp_path: Path) -> None:
    path = tmp_path / "not.ipynb"
    path.write_text("[1, 2, 3]")
    assert check(str(path)).returncode == 2
