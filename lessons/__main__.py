"""``python -m lessons [N | FILE] [--list] [--no-pause] [--step K] [--record FILE]``.

``make lesson-N`` runs this with N. Exit statuses: 0 done (or quit), 1 a step failed,
2 a usage error or a lesson file that breaks the format, 3 the lesson is not written yet,
130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .catalog import course, lesson_info, not_written_message
from .markup import LessonFormatError, parse_lesson
from .runner import RECORD_FORMATS, Walkthrough

__all__ = ["main"]

NOT_WRITTEN = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lessons",
        description=(
            "Walk through a gatewaylab lesson: its text section by section, its steps run "
            "live (servers, traced requests, process views, a short load). On a terminal it "
            "pauses after each step (Enter: next, r: re-run, q: quit); it runs straight "
            "through when stdin is not a terminal or with --no-pause. Everything it starts "
            "is stopped at the end, on q and on Ctrl-C."
        ),
        epilog="Exit status: 0 done, 1 a step failed, 2 usage, 3 lesson not written yet, "
        "130 interrupted.",
    )
    parser.add_argument(
        "lesson", nargs="?", help="the lesson number (0, 1, ...) or the path of a lesson file"
    )
    parser.add_argument("--list", action="store_true", help="list the lessons and exit")
    parser.add_argument(
        "--no-pause", action="store_true", help="run straight through, without prompts"
    )
    parser.add_argument(
        "--step",
        type=int,
        default=1,
        metavar="K",
        help="start at step K (the servers, python names and kept connections it relies on "
        "are set up quietly first)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="save the session as FILE: .svg or .html (for a course site), or .txt",
    )
    return parser


def list_lessons(console: Console) -> None:
    table = Table(title="gatewaylab lessons", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("lesson")
    table.add_column("status")
    table.add_column("notebook (notebooks/)")
    for info in course():
        if info.written:
            status = Text(f"ready: make lesson-{info.number}", style="green")
        elif info.era is not None and not info.era.built:
            status = Text(f"with the {info.era.name} era (not built yet)", style="yellow")
        elif info.era is not None:
            status = Text(f"{info.era.name} era built; lesson to come", style="yellow")
        elif info.number == 0:
            status = Text("missing", style="red")
        else:
            status = Text("after the four eras", style="yellow")
        notebook = info.notebook.name if info.notebook else "—"
        title = re.sub(r"^Lesson \d+ · ", "", info.title)
        table.add_row(str(info.number), title, status, notebook)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False, record=args.record is not None)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    if args.list or args.lesson is None:
        list_lessons(console)
        return 0
    if args.record is not None and args.record.suffix.lower() not in RECORD_FORMATS:
        errors.print(f"--record: use a file ending in {', '.join(RECORD_FORMATS)}")
        return 2

    if args.lesson.isdigit():
        info = lesson_info(int(args.lesson))
        if info.path is None:
            errors.print(not_written_message(info))
            return NOT_WRITTEN
        path = info.path
        command = f"python -m lessons {info.number}"
    else:
        path = Path(args.lesson)
        if not path.is_file():
            errors.print(f"no lesson file {path}; `python -m lessons --list` shows the lessons")
            return 2
        command = f"python -m lessons {path}"
    try:
        lesson = parse_lesson(path.read_text(encoding="utf-8"), path)
    except LessonFormatError as error:
        errors.print(f"[red]the lesson file breaks the format:[/] {error}")
        return 2
    total = len(lesson.steps)
    if not 1 <= args.step <= max(total, 1):
        errors.print(f"--step {args.step}: this lesson has steps 1 to {total}")
        return 2
    interactive = sys.stdin.isatty() and not args.no_pause
    walk = Walkthrough(
        lesson,
        console,
        interactive=interactive,
        start_step=args.step,
        command=command,
        record=args.record,
    )
    return walk.run()


if __name__ == "__main__":
    sys.exit(main())
