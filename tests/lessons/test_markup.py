"""The lesson file format: steps found where the author marked them, mistakes named with
their line, and every written lesson parses."""

from __future__ import annotations

import re

import pytest

from lessons.catalog import LessonInfo, course
from lessons.markup import KINDS, LessonFormatError, Prose, Step, parse_lesson

LESSON = """# Lesson 9 · Parsing

Intro with a plain block:

```python
print("not a step")
```

## Start a server

```console step=server name=wire probe=none
$ python -m servers.wire --port 0 --trace
```

```http step=request server=wire conn=k eol=lf
GET / HTTP/1.1
Host: x

```

```text output
HTTP/1.1 200 OK
```

## Look

Some prose.

```console step=procs server=wire
$ ps -L
```

~~~markdown
```http step=request server=nowhere
a step inside another block is only an example
```
~~~

```step=request server=wire background
GET /slow HTTP/1.1
```
"""


def test_sections_prose_and_steps() -> None:
    lesson = parse_lesson(LESSON)
    assert lesson.title == "Lesson 9 · Parsing"
    assert [s.title for s in lesson.sections] == ["", "Start a server", "Look"]
    intro = lesson.sections[0].blocks
    assert len(intro) == 1 and isinstance(intro[0], Prose)
    assert 'print("not a step")' in intro[0].text  # a plain code block stays prose
    steps = lesson.steps
    assert [s.kind for s in steps] == ["server", "request", "procs", "request"]
    assert [s.number for s in steps] == [1, 2, 3, 4]
    assert [s.section for s in steps] == [1, 1, 2, 2]


def test_attributes_flags_language_and_body() -> None:
    server, request, _, background = parse_lesson(LESSON).steps
    assert server.attrs == {"name": "wire", "probe": "none"}
    assert server.lang == "console"
    assert server.body == "$ python -m servers.wire --port 0 --trace\n"
    assert server.line == 11
    assert request.attrs == {"server": "wire", "conn": "k", "eol": "lf"}
    assert request.body == "GET / HTTP/1.1\nHost: x\n\n"
    assert background.lang == "" and background.flags == {"background"}


def test_output_block_belongs_to_the_step_before_it() -> None:
    lesson = parse_lesson(LESSON)
    request = lesson.steps[1]
    assert request.sample_output == "HTTP/1.1 200 OK\n"
    # ... and is not shown as prose by the walkthrough.
    prose = " ".join(b.text for s in lesson.sections for b in s.blocks if isinstance(b, Prose))
    assert "HTTP/1.1 200 OK" not in prose


def test_a_fence_inside_another_fence_is_not_a_step() -> None:
    lesson = parse_lesson(LESSON)
    assert all(s.get("server") != "nowhere" for s in lesson.steps)
    look = lesson.sections[2].blocks
    assert any(isinstance(b, Prose) and "server=nowhere" in b.text for b in look)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("```console step=sever name=x\n$ true\n```", "unknown step kind 'sever'"),
        ("```http step=request sever=wire\nGET /\n```", "has no attribute 'sever'"),
        ("```http step=request server=wire slowly\nGET /\n```", "has no flag 'slowly'"),
        ("```http step=request\nGET /\n```", "step=request needs server=..."),
        ("```console step=server name=x\npython -m x\n```", "needs a '$ command' line"),
        ("```console step=server name=x\n$ a\n$ b\n```", "exactly one '$ command'"),
        ("```console step=shell\n$ true\n", "never closed"),
        ('```console step=shell "unbalanced\n$ true\n```', "cannot split the info string"),
    ],
)
def test_format_errors_name_the_line(block: str, message: str) -> None:
    with pytest.raises(LessonFormatError, match=re.escape(message)) as error:
        parse_lesson("# T\n\n## S\n\n" + block + "\n")
    assert "<lesson>:5" in str(error.value) or "never closed" in message


def test_a_lesson_needs_a_title() -> None:
    with pytest.raises(LessonFormatError, match="starts with a '# Title'"):
        parse_lesson("## no title\n")


def test_every_kind_is_described() -> None:
    for name, kind in KINDS.items():
        assert kind.name == name and kind.summary
    step = parse_lesson("# T\n```console step=stop server=wire\n```\n").steps[0]
    assert isinstance(step, Step) and step.describe() == "stop server wire"


@pytest.mark.parametrize("info", [i for i in course() if i.written], ids=lambda i: i.slug)
def test_every_written_lesson_parses(info: LessonInfo) -> None:
    path = info.path
    assert path is not None
    lesson = parse_lesson(path.read_text(encoding="utf-8"), path)
    assert lesson.title.startswith(f"Lesson {info.number} ")
    assert lesson.steps, "a lesson without steps is a page, not a walkthrough"
    assert all(section.title for section in lesson.sections[1:])
