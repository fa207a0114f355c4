"""``python -m loadtests.cgi_costs``: every row measured, in a probe of the server's size,
and a breakdown that adds up. Two runs per row: this checks the shape, not the speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from loadtests.cgi_costs import ROWS, Costs, measure
from servers.launch import REPO_ROOT


@pytest.fixture(scope="module")
def costs() -> Costs:
    return measure(runs=2)


def test_every_row_is_measured_in_order(costs: Costs) -> None:
    measured = [row.key for row in costs.rows]
    expected = [key for key, _, _ in ROWS if key not in costs.skipped]
    assert measured == expected
    for row in costs.rows:
        assert row.runs == 2
        assert 0 < row.best_us <= row.median_us <= row.mean_us * 2
        # CPU is measured for the probe's rows, not for the requests through the server.
        assert (row.cpu_us is None) == row.key.startswith("request")


def test_the_probe_has_the_size_of_a_connection_process(costs: Costs) -> None:
    # It imports the server and little else: not this test process, not a notebook kernel.
    assert 5 < costs.rss_mb < 60
    fork = costs.cost("fork")
    assert fork is not None and f"{costs.rss_mb:.0f} MB" in fork.what


def test_breakdown_has_both_modes_and_adds_up(costs: Costs) -> None:
    parts = costs.breakdown()
    assert list(parts) == ["--spawn fork", "--spawn posix_spawn"]
    assert parts["--spawn posix_spawn"]["fork: copy the process"] == 0.0
    for mode, key in (
        ("--spawn fork", "request fork"),
        ("--spawn posix_spawn", "request posix_spawn"),
    ):
        row = costs.cost(key)
        assert row is not None
        assert all(value >= 0 for value in parts[mode].values())
        # The request split by subtraction: its parts add up to it, unless the measured
        # parts already exceed it (noise), and then nothing is left for the server.
        own = parts[mode]["the server's own work"]
        assert sum(parts[mode].values()) == pytest.approx(row.median_us) or own == 0


def test_it_renders_and_serialises(costs: Costs) -> None:
    console = Console(width=160, record=True, color_system=None)
    console.print(costs)
    text = console.export_text()
    assert "what a CGI request's time is made of" in text
    assert "GET /hello, --spawn posix_spawn" in text
    # The floor of the model (the sh row) and how far our fastest request is above it.
    assert "the floor: no CGI host serves /hello in less than sh's" in text
    document = json.loads(json.dumps(costs.to_json()))
    assert [row["key"] for row in document["rows"]] == [row.key for row in costs.rows]
    assert set(document["breakdown"]) == {"--spawn fork", "--spawn posix_spawn"}


def test_command_line_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "costs.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.cgi_costs", "--runs", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "what a CGI request's time is made of" in done.stdout
    assert len(json.loads(out.read_text())["rows"]) >= 7
