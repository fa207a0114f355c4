"""The course plan: which lessons there are, which are written, and where their files live.

The plan is fixed (README, "The course"): lesson 0 is HTTP on the wire, lessons 1-4 are
the eras in the order of ``servers.eras.ERAS``, lesson 5 puts all four under the same
load. A lesson is *written* when ``lessons/NN-slug.md`` exists; its notebook is
``notebooks/NN-slug.ipynb``. Each era's issue writes the era's lesson, so for a lesson
that is not written the catalog can say why: its era is not built yet, or it is built and
its lesson is on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from servers.eras import ERAS, Era

__all__ = [
    "LESSONS_DIR",
    "NOTEBOOKS_DIR",
    "LessonInfo",
    "course",
    "lesson_info",
    "not_written_message",
]

LESSONS_DIR = Path(__file__).resolve().parent
NOTEBOOKS_DIR = LESSONS_DIR.parent / "notebooks"

# The plan for lessons that have no file yet: number -> (slug, title).
PLAN: dict[int, tuple[str, str]] = {
    0: ("http", "HTTP on the wire"),
    1: ("cgi", "CGI: a process per request"),
    2: ("fastcgi", "FastCGI: a long-running process fed records"),
    3: ("wsgi", "WSGI: a pool of threads"),
    4: ("asgi", "ASGI: tasks on one event loop"),
    5: ("c10k", "C10k: the four eras under the same load"),
}


@dataclass(frozen=True)
class LessonInfo:
    number: int
    slug: str
    title: str
    era: Era | None  # the era it teaches (lessons 1-4)
    path: Path | None  # the Markdown file, when written
    notebook: Path | None  # the notebook, when written

    @property
    def written(self) -> bool:
        return self.path is not None


def _title_of(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def lesson_info(number: int) -> LessonInfo:
    files = sorted(LESSONS_DIR.glob(f"{number:02d}-*.md"))
    era = next((e for e in ERAS if e.lesson == number), None)
    slug, title = PLAN.get(number, ("", f"Lesson {number}"))
    path = files[0] if files else None
    if path is not None:
        slug = path.stem.split("-", 1)[1]
        title = _title_of(path)
    notebooks = sorted(NOTEBOOKS_DIR.glob(f"{number:02d}-*.ipynb"))
    return LessonInfo(number, slug, title, era, path, notebooks[0] if notebooks else None)


def course() -> list[LessonInfo]:
    """Every planned lesson, and any written beyond the plan, in order."""
    numbers = set(PLAN)
    for path in LESSONS_DIR.glob("[0-9][0-9]-*.md"):
        numbers.add(int(path.name[:2]))
    return [lesson_info(n) for n in sorted(numbers)]


def not_written_message(info: LessonInfo) -> str:
    """Why lesson N cannot run yet, in the words of the course plan."""
    written = [str(i.number) for i in course() if i.written]
    so_far = f"Written so far: lesson {', '.join(written)}." if written else ""
    if info.era is not None and not info.era.built:
        why = (
            f"Lesson {info.number} ({info.title}) arrives with the {info.era.name.upper()} "
            f"era (`python -m servers {info.era.name}`), which is not built yet."
        )
    elif info.era is not None:
        why = (
            f"The {info.era.name} era is built, but lesson {info.number} ({info.title}) is not "
            "written yet: it comes with the era's issue."
        )
    elif info.number == 0:
        why = "Lesson 0 (HTTP on the wire) is missing: lessons/00-http.md should be there."
    elif info.number in PLAN:
        built = ", ".join(e.name for e in ERAS if e.built) or "none"
        why = (
            f"Lesson {info.number} ({info.title}) comes after the four eras "
            f"(built so far: {built})."
        )
    else:
        why = f"There is no lesson {info.number} in the course."
    return f"{why} {so_far} `python -m lessons --list` shows the whole course.".replace("  ", " ")
