"""``make check-notebooks``: notebooks are committed without outputs. ``--strip`` removes them.

Why: outputs hold a particular run (timestamps, pids, ports, a machine's numbers), so a
notebook committed with them changes in every diff, and a student who opens it sees
stale results that their own run will contradict. The course ships notebooks clean, CI
executes them (tests/lessons/test_notebooks.py), and ``make notebooks-html`` renders them
with fresh outputs for a course site.

A notebook is clean when no code cell has outputs or an execution count. The check reads
the JSON directly (nbformat 4), so it needs nothing beyond the standard library::

    python -m lessons.check_notebooks                    # check notebooks/*.ipynb
    python -m lessons.check_notebooks --strip FILE ...   # clean them in place

Exit status: 0 clean (or stripped), 1 some notebook has outputs, 2 a file that is not a
notebook.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .catalog import NOTEBOOKS_DIR

__all__ = ["dirty_cells", "main", "strip"]


def dirty_cells(notebook: dict[str, Any]) -> list[int]:
    """Indexes of the code cells that carry outputs or an execution count."""
    return [
        i
        for i, cell in enumerate(notebook.get("cells", []))
        if cell.get("cell_type") == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def strip(notebook: dict[str, Any]) -> dict[str, Any]:
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return notebook


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "cells" not in data:
        raise ValueError("no 'cells': not a notebook")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lessons.check_notebooks",
        description="Fail if a notebook has outputs (--strip: remove them instead).",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default notebooks/*.ipynb)")
    parser.add_argument("--strip", action="store_true", help="remove outputs in place")
    args = parser.parse_args(argv)
    paths: list[Path] = args.paths or sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    dirty: list[str] = []
    for path in paths:
        try:
            notebook = _load(path)
        except (OSError, ValueError) as error:
            print(f"{path}: cannot read it as a notebook: {error}", file=sys.stderr)
            return 2
        cells = dirty_cells(notebook)
        if not cells:
            continue
        if args.strip:
            text = json.dumps(strip(notebook), indent=1, ensure_ascii=False) + "\n"
            path.write_text(text, encoding="utf-8")
            print(f"{path}: stripped the outputs of {len(cells)} cells")
        else:
            dirty.append(f"{path}: cells {', '.join(str(c) for c in cells)} have outputs")
    if dirty:
        print("\n".join(dirty), file=sys.stderr)
        print(
            "Notebooks are committed without outputs. Strip them with:\n"
            f"  .venv/bin/python -m lessons.check_notebooks --strip {' '.join(map(str, paths))}",
            file=sys.stderr,
        )
        return 1
    print(f"notebooks clean: {len(paths)} checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
