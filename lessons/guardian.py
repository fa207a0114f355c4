"""A watchdog that stops a notebook's servers if the kernel dies without cleaning up.

A notebook kernel normally stops its servers itself (``atexit`` in lessons.notebook).
But a kernel can also be killed: "Restart kernel" on a kernel that does not answer ends
with SIGKILL, and then no Python code runs at all. Servers live in their own process
groups, so nothing else would stop them, and the next run of the notebook would find
stray servers (and, with a fixed port, a port in use).

So the first server a notebook starts also starts this guardian, a tiny process in its
own session whose stdin is a pipe from the kernel. The kernel writes one line per event::

    +4242      a server's process group to watch
    -4242      that group was stopped normally: forget it

When the kernel ends, however it ends, the kernel side of the pipe closes and the guardian
reads end-of-file: it then stops every group still on its list (SIGTERM, a grace period,
SIGKILL) and exits. Reading a pipe is the whole mechanism: no polling, no pid files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

GRACE = 3.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(groups: set[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def main() -> int:
    # The kernel's Ctrl-C (interrupt) is not meant for us; only end-of-file is.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        word = line.strip()
        if word[:1] == "+" and word[1:].isdigit():
            groups.add(int(word[1:]))
        elif word[:1] == "-" and word[1:].isdigit():
            groups.discard(int(word[1:]))
    if groups:
        stop_groups(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
