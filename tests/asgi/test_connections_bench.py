"""A smoke run of the C10k benchmark (loadtests/connections.py) at 200 connections: both
servers hold every connection, answer twice on each, and their peak memory is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from servers.launch import REPO_ROOT


def test_the_connection_benchmark_holds_and_reports(tmp_path: Path) -> None:
    report = tmp_path / "connections.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.connections",
            "--connections",
            "200",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["server"]: r for r in json.loads(report.read_text())}
    assert set(results) == {"asgi", "uvicorn"}
    for result in results.values():
        assert (result["answered"], result["held"], result["errors"]) == (200, 200, 0)
        assert result["peak_kib"] >= result["baseline_rss_kib"] > 0
    assert "KiB per connection" in done.stdout
