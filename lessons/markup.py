"""The lesson file format: Markdown that reads well on GitHub, with steps the runner can run.

A lesson is one Markdown file. Its ``# `` heading is the title, each ``## `` heading opens
a section, and a **step** is a fenced code block whose info string holds ``step=KIND``::

    ```http step=request server=wire
    GET /hello HTTP/1.1
    Host: localhost

    ```

GitHub (like every CommonMark renderer) uses the first word of the info string, the
language, to colour the block and ignores the rest, so on GitHub a step is just a
well-highlighted example; the runner reads the rest. The info string is split like a
shell line (``shlex``): ``key=value`` words are attributes, bare words are flags, quoting
works. A block whose info string holds the flag ``output``, right after a step, is that
step's sample output for readers on GitHub; the runner hides it and shows the live one.

Parsing is strict on purpose: an unknown kind, an unknown attribute (``sever=wire``) or a
missing required one is an error naming the file and line, found by the tests for every
lesson, rather than a step that silently does nothing in front of a class.
lessons/README.md is the author's guide; :data:`KINDS` below is the reference.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "KINDS",
    "Lesson",
    "LessonFormatError",
    "Prose",
    "Section",
    "Step",
    "StepKind",
    "parse_lesson",
]


@dataclass(frozen=True)
class StepKind:
    """What a kind of step accepts: required and optional attributes, and flags."""

    name: str
    summary: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


KINDS: dict[str, StepKind] = {
    kind.name: kind
    for kind in (
        StepKind(
            "python",
            "run the block's code in the runner's own process (one namespace per lesson) "
            "and show what it prints",
        ),
        StepKind(
            "shell",
            "run each `$ command` line of the block (argv, no shell) and show its output",
            optional=("timeout", "status"),
            flags=("optional",),
        ),
        StepKind(
            "server",
            "start the block's `$ command` in the background as a named server",
            required=("name",),
            optional=("probe", "timeout"),
        ),
        StepKind(
            "request",
            "send the block (HTTP text, or a Python bytes expression) to a server; show "
            "the bytes both ways and the server's trace",
            required=("server",),
            optional=("conn", "eol", "responses", "timeout"),
            flags=("background",),
        ),
        StepKind(
            "procs",
            "show a server's processes and threads, read from /proc",
            required=("server",),
        ),
        StepKind(
            "load",
            "run a short locust load against a server and show the results table",
            required=("server",),
            optional=("users", "seconds", "paths", "rate"),
        ),
        StepKind("stop", "stop a server (its whole process group)", required=("server",)),
    )
}


class LessonFormatError(ValueError):
    """A lesson file that does not follow the format: the message names file and line."""


@dataclass(frozen=True)
class Prose:
    """Markdown between steps, rendered as it is."""

    text: str
    line: int


@dataclass(frozen=True)
class Step:
    kind: str
    attrs: dict[str, str]
    flags: frozenset[str]
    body: str  # the block's content, with its final newline
    lang: str  # the info string's first word, "" when there is none
    line: int  # where the block starts in the file (1-based)
    number: int  # 1-based across the lesson, as --step counts them
    section: int  # index into Lesson.sections
    sample_output: str = ""  # a following ```... output``` block, for GitHub readers

    def get(self, key: str, default: str = "") -> str:
        return self.attrs.get(key, default)

    def describe(self) -> str:
        """One line for headers and errors: "request → wire (conn k)"."""
        match self.kind:
            case "server":
                return f"start server {self.attrs['name']}"
            case "request":
                conn = f" on connection {self.attrs['conn']}" if "conn" in self.attrs else ""
                return f"request → {self.attrs['server']}{conn}"
            case "procs":
                return f"processes and threads of {self.attrs['server']}"
            case "load":
                return f"load on {self.attrs['server']}"
            case "stop":
                return f"stop server {self.attrs['server']}"
            case "python":
                return "python, in the runner's process"
            case _:
                return "shell"


@dataclass
class Section:
    title: str
    blocks: list[Prose | Step] = field(default_factory=list)

    @property
    def steps(self) -> list[Step]:
        return [b for b in self.blocks if isinstance(b, Step)]


@dataclass
class Lesson:
    title: str
    sections: list[Section]
    path: Path | None = None

    @property
    def steps(self) -> list[Step]:
        return [s for section in self.sections for s in section.steps]


# CommonMark fences: up to 3 spaces, then at least 3 backticks or tildes.
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")


def _info_words(info: str, where: str) -> list[str]:
    try:
        return shlex.split(info)
    except ValueError as error:
        raise LessonFormatError(
            f"{where}: cannot split the info string {info!r}: {error}"
        ) from None


def parse_lesson(text: str, path: Path | None = None) -> Lesson:
    """Parse a lesson; :class:`LessonFormatError` if it breaks the format."""
    name = str(path) if path else "<lesson>"
    lines = text.splitlines(keepends=True)
    title = ""
    sections = [Section("")]  # the part before the first "## ": the introduction
    prose: list[str] = []
    prose_start = 1
    steps = 0
    i = 0
    last_block_was_step = False

    def flush_prose(next_line: int) -> None:
        nonlocal prose, prose_start
        chunk = "".join(prose)
        if chunk.strip():
            sections[-1].blocks.append(Prose(chunk.strip("\n"), prose_start))
        prose, prose_start = [], next_line

    while i < len(lines):
        line = lines[i]
        number = i + 1
        fence = _FENCE.match(line.rstrip("\n"))
        if fence:
            indent, marker, info = fence.groups()
            # Find the closing fence: same character, at least as long, nothing after it.
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j].rstrip("\n")):
                j += 1
            if j == len(lines):
                raise LessonFormatError(f"{name}:{number}: code block never closed")
            body_lines = [
                ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]
            ]
            body = "".join(body_lines)
            where = f"{name}:{number}"
            words = _info_words(info.strip(), where)
            attrs = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if "=" in w}
            bare = [w for w in words if "=" not in w]
            if "step" in attrs:
                flush_prose(j + 2)
                steps += 1
                sections[-1].blocks.append(
                    _make_step(attrs, bare, body, where, number, steps, len(sections) - 1)
                )
                last_block_was_step = True
            elif "output" in bare[1:] or (bare[:1] == ["output"]):
                if last_block_was_step and not "".join(prose).strip():
                    step = sections[-1].blocks[-1]
                    assert isinstance(step, Step)
                    sections[-1].blocks[-1] = _with_output(step, body)
                    prose, prose_start = [], j + 2
                else:
                    prose.extend(lines[i : j + 1])
            else:
                prose.extend(lines[i : j + 1])
                last_block_was_step = False
            i = j + 1
            continue
        if line.startswith("# ") and not title:
            title = line[2:].strip()
            prose_start = number + 1
        elif line.startswith("## "):
            flush_prose(number + 1)
            sections.append(Section(line[3:].strip()))
            last_block_was_step = False
        else:
            prose.append(line)
            if line.strip():
                last_block_was_step = False
        i += 1
    flush_prose(len(lines) + 1)
    if not title:
        raise LessonFormatError(f"{name}: a lesson starts with a '# Title' line")
    if not sections[0].blocks:
        sections.pop(0)
    # Each step knows its section's index in the final list (--step K starts there).
    for index, section in enumerate(sections):
        section.blocks = [
            replace(b, section=index) if isinstance(b, Step) else b for b in section.blocks
        ]
    return Lesson(title, sections, path)


def _with_output(step: Step, output: str) -> Step:
    return replace(step, sample_output=output)


def _make_step(
    attrs: dict[str, str],
    bare: list[str],
    body: str,
    where: str,
    line: int,
    number: int,
    section: int,
) -> Step:
    kind_name = attrs.pop("step")
    kind = KINDS.get(kind_name)
    if kind is None:
        raise LessonFormatError(
            f"{where}: unknown step kind {kind_name!r}; the kinds are {', '.join(KINDS)}"
        )
    lang, flags = (bare[0], bare[1:]) if bare else ("", [])
    if lang in kind.flags:  # a block with no language: ```step=request background
        lang, flags = "", bare
    for key in attrs:
        if key not in kind.required and key not in kind.optional:
            allowed = ", ".join((*kind.required, *kind.optional)) or "none"
            raise LessonFormatError(
                f"{where}: step={kind_name} has no attribute {key!r} (its attributes: {allowed})"
            )
    for flag in flags:
        if flag not in kind.flags:
            allowed = ", ".join(kind.flags) or "none"
            raise LessonFormatError(
                f"{where}: step={kind_name} has no flag {flag!r} (its flags: {allowed})"
            )
    for key in kind.required:
        if not attrs.get(key):
            raise LessonFormatError(f"{where}: step={kind_name} needs {key}=...")
    if kind_name in ("shell", "server") and not any(
        ln.startswith("$ ") for ln in body.splitlines()
    ):
        raise LessonFormatError(f"{where}: step={kind_name} needs a '$ command' line")
    if kind_name == "server" and sum(ln.startswith("$ ") for ln in body.splitlines()) != 1:
        raise LessonFormatError(f"{where}: step=server starts exactly one '$ command'")
    return Step(kind_name, attrs, frozenset(flags), body, lang, line, number, section)
