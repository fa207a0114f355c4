"""``make bench``'s FastCGI pairs, end to end with the smallest settings (``--smoke``).

``fastcgi-nginx-vs-flup`` runs two processes per side: nginx (generated configuration,
servers/fastcgi/nginx.py) in front of our application server, and the same nginx in front
of flup. This checks what the harness must get right for such a pair: both sides start,
wrk measures both through nginx, and every process of both sides is gone afterwards. It
never checks how fast anything is; ``make bench`` is for that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servers.launch import pids_in_groups
from tests.peers import require_program

REPO = Path(__file__).resolve().parents[2]


def test_the_fastcgi_pairs_are_listed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--list", "--pairs", "fastcgi-*"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "fastcgi-nginx-vs-flup" in done.stdout
    assert "fastcgi-gateway-vs-nginx-flup" in done.stdout


@pytest.mark.peer
@pytest.mark.slow
def test_smoke_run_of_nginx_in_front_of_ours_and_of_flup(tmp_path: Path) -> None:
    require_program("nginx")
    require_program("wrk")
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--smoke", "--pairs", "fastcgi-nginx-vs-flup",
         "--json", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (pair,) = json.loads(out.read_text())["pairs"]
    assert pair["name"] == "fastcgi-nginx-vs-flup"
    assert pair["status"] in ("ok", "flagged")
    groups = set()
    for side, backend in (("ours", "fastcgi-app"), ("peer", "loadtests.flup_server")):
        assert pair[side]["summary"]["median_rps"] > 0
        assert pair[side]["runs"][0]["wrk"]["requests_per_sec"] > 0
        processes = pair[side]["processes"]
        assert len(processes) == 2  # the backend first, nginx in front
        assert backend in processes[0]["argv"] and "nginx" in processes[1]["argv"]
        groups |= {process["process_group"] for process in processes}
    assert len(groups) == 4
    assert pids_in_groups(*groups) == []  # nginx's workers and both backends too
