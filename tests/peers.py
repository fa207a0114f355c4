"""Peers the tests need from outside Python (nginx, cgi-fcgi, fcgiwrap, wrk).

On a student's machine a missing peer skips its test with a message that says what to
install. In CI, `.ci/run` sets GATEWAYLAB_REQUIRE_PEERS=1 and a missing peer fails the test
instead: a green CI must mean that every interop test really ran.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_PEERS_VAR = "GATEWAYLAB_REQUIRE_PEERS"

# program -> the Debian package that provides it
APT_PACKAGES = {
    "nginx": "nginx-light",
    "cgi-fcgi": "libfcgi-bin",
    "fcgiwrap": "fcgiwrap",
    "wrk": "wrk",
}


def peers_required() -> bool:
    return os.environ.get(REQUIRE_PEERS_VAR, "") not in ("", "0")


def require_program(program: str) -> str:
    """Return the program's path, or skip (fail in CI) saying how to install it."""
    path = shutil.which(program) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{program}", os.X_OK)), None
    )
    if path:
        return path
    package = APT_PACKAGES.get(program, program)
    message = f"{program} is not installed: sudo apt-get install {package}"
    if peers_required():
        pytest.fail(f"{message} ({REQUIRE_PEERS_VAR} is set, so a missing peer is a failure)")
    pytest.skip(message)
