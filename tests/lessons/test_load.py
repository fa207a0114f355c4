"""The locust runner: a tiny real run against the wire server, read back from CSV.

locust is never imported here: run_load starts it as a process, which is the point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

from lessons.load import LoadError, read_csv, run_load
from tests.conftest import ServerPool


def test_tiny_load_against_the_wire_server(start_server: ServerPool) -> None:
    server = start_server([sys.executable, "-m", "servers.wire", "--port", "0"])
    result = run_load(server.url, users=2, seconds=2, paths=["/hello", "/echo?x=1"])
    assert result.exit_code == 0, result.output
    assert result.requests > 0 and result.failures == 0
    names = [row["Name"] for row in result.rows]
    assert names[-1] == "Aggregated" and {"/hello", "/echo?x=1"} <= set(names)
    # The final CSV is written after the last request: the totals add up.
    per_route = sum(int(row["Request Count"]) for row in result.rows[:-1])
    assert per_route == result.requests
    assert set(result.percentiles()) >= {"50%", "99%", "100%"}
    assert "--headless" in result.argv and "--csv" in result.argv
    console = Console(width=120, record=True, color_system=None)
    console.print(result)
    assert "Aggregated" in console.export_text()
    assert "locust" not in sys.modules  # never imported into this process


def test_a_broken_locustfile_is_a_load_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise SystemExit('this locustfile is broken on purpose')\n")
    with pytest.raises(LoadError, match="no statistics"):
        run_load("http://127.0.0.1:9/", users=1, seconds=1, locustfile=broken)


def test_read_csv_converts_numbers(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Type,Name,Request Count,50%\nGET,/a,12,3\n,Aggregated,12,N/A\n")
    rows = read_csv(path)
    assert rows == [
        {"Type": "GET", "Name": "/a", "Request Count": 12.0, "50%": 3.0},
        {"Type": "", "Name": "Aggregated", "Request Count": 12.0, "50%": "N/A"},
    ]
    assert read_csv(tmp_path / "missing.csv") == []
