"""The walkthrough: a lesson rendered section by section, its steps run live, then cleaned up.

Flow of one run::

    parse the lesson file (lessons.markup)
    for each section:            a rule with its title and number
        for each block:
            prose  -> rendered as Markdown
            step   -> its header, then StepRunner.run(step); then, on a terminal, the
                      prompt  "Enter: next · r: re-run · q: quit"
        prose at the end of a section also gets a prompt (no re-run)
    finally: stop every server the lesson started (Lab.close), report what was stopped,
             and save the recording if --record was given

Three ways to end, one cleanup: the lesson's end, ``q`` (or end of input), and Ctrl-C
(or SIGTERM, SIGHUP: the terminal went away). Cleanup runs with those signals ignored, so an
impatient second Ctrl-C cannot leave a server behind halfway through stopping it.

A failed step prints the problem and the fix (a :class:`LabError`). On a terminal the
student may re-run it (after fixing the cause), skip it, or quit. Straight through (no
terminal, or ``--no-pause``: tests, CI, recordings) the lesson stops there with exit
status 1 and says how to resume at that step.

Exit statuses: 0 done or quit, 1 a step failed, 130 interrupted (143 on SIGTERM).
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from .lab import Lab, LabError
from .markup import Lesson, Prose, Step
from .steps import StepRunner

__all__ = ["RECORD_FORMATS", "Interrupted", "Walkthrough"]

RECORD_FORMATS = (".svg", ".html", ".txt")


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: end the lesson as Ctrl-C would, cleanup included."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    # Raising from a handler is how Python itself turns SIGINT into KeyboardInterrupt: the
    # exception surfaces in the main thread between two bytecodes, and finally blocks run.
    raise Interrupted(signum)


class _Quit(Exception):
    """The student asked to quit at a prompt."""


class Walkthrough:
    """Runs one lesson on one console. ``interactive``: prompt between steps."""

    def __init__(
        self,
        lesson: Lesson,
        console: Console,
        *,
        interactive: bool,
        start_step: int = 1,
        command: str = "python -m lessons",
        record: Path | None = None,
    ) -> None:
        self.lesson = lesson
        self.console = console
        self.interactive = interactive
        self.start_step = start_step
        self.command = command  # how to re-run this lesson, for "resume with ..." hints
        self.record = record
        self.lab = Lab()
        self.steps = StepRunner(
            self.lab, console, lesson_name=lesson.path.name if lesson.path else "lesson"
        )

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)
        }
        status = 0
        try:
            status = self._walk()
        except _Quit:
            self.console.print(Text("quit.", style="dim"))
        except KeyboardInterrupt:
            self.console.print(Text("\ninterrupted (Ctrl-C).", style="yellow"))
            status = 130
        except Interrupted as stop:
            self.console.print(Text(f"\ninterrupted ({stop}).", style="yellow"))
            status = 128 + stop.signum
        finally:
            self._cleanup()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._save_recording()
        return status

    def _cleanup(self) -> None:
        # Nothing may interrupt the cleanup: a second Ctrl-C (or a SIGTERM) halfway through
        # stopping a server is exactly how one would be left behind.
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
        try:
            running = self.lab.close()
            if running:
                stopped = ", ".join(
                    f"{name} (pid {self.lab.servers[name].pid})" for name in running
                )
                self.console.print(Text(f"stopped what the lesson started: {stopped}", style="dim"))
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _save_recording(self) -> None:
        if self.record is None:
            return
        title = f"gatewaylab · {self.lesson.title}"
        suffix = self.record.suffix.lower()
        self.record.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".svg":
            self.console.save_svg(str(self.record), title=title)
        elif suffix == ".html":
            self.console.save_html(str(self.record))
        else:
            self.console.save_text(str(self.record))
        # Straight to stderr: the recording is closed, this line is not part of it.
        Console(stderr=True).print(f"recorded the session to {self.record}")

    # -- sections, steps, prompts --------------------------------------------------------------
    def _walk(self) -> int:
        lesson = self.lesson
        total = len(lesson.steps)
        self._banner(total)
        start = self._start_position()
        if self.start_step > 1:
            self._catch_up()
        for index, section in enumerate(lesson.sections):
            blocks = [(i, block) for i, block in enumerate(section.blocks) if (index, i) >= start]
            if not blocks and (index, 0) < start:
                continue  # a section wholly before --step K
            self.console.print()
            self.console.rule(
                Text.assemble(
                    (section.title or lesson.title, "bold"),
                    (f"  {index + 1}/{len(lesson.sections)}", "dim"),
                ),
                align="left",
            )
            pending_prose = False
            for _, block in blocks:
                if isinstance(block, Prose):
                    self.console.print()
                    self.console.print(Markdown(block.text))
                    pending_prose = True
                    continue
                pending_prose = False
                if not self._run_step(block, total):
                    return 1
            if pending_prose:
                self._pause(can_rerun=False)
        self.console.print()
        self.console.rule(Text(f"end of {lesson.title}", style="bold"), align="left")
        return 0

    def _start_position(self) -> tuple[int, int]:
        """(section, block) where the walk starts: step K, with the prose just before it."""
        if self.start_step <= 1:
            return (0, 0)
        target = self.lesson.steps[self.start_step - 1]
        blocks = self.lesson.sections[target.section].blocks
        i = next(i for i, block in enumerate(blocks) if block is target)
        if i > 0 and isinstance(blocks[i - 1], Prose):
            i -= 1
        return (target.section, i)

    def _banner(self, total: int) -> None:
        how = (
            "Enter: next · r: re-run a step · q: quit"
            if self.interactive
            else "running straight through (no pauses)"
        )
        where = (
            f"starting at step {self.start_step} of {total}"
            if self.start_step > 1
            else f"{total} step{'s' if total != 1 else ''}"
        )
        self.console.print(
            Panel(
                Text.assemble(
                    (self.lesson.title, "bold"),
                    "\n",
                    (f"{len(self.lesson.sections)} sections, {where} · {how}", "dim"),
                ),
                expand=False,
            )
        )

    def _catch_up(self) -> None:
        """Before step K, quietly recreate the state it may rely on: the servers started
        (and not stopped) earlier, the python namespace, and the named connections that
        step K or a later step goes on using (a head sent with Expect, say)."""
        skipped = self.lesson.steps[: self.start_step - 1]
        later_conns = {
            s.attrs["conn"]
            for s in self.lesson.steps[self.start_step - 1 :]
            if s.kind == "request" and "conn" in s.attrs
        }
        counts: dict[str, int] = {}
        with self.console.status("catching up …"):
            for step in skipped:
                needed = step.kind in ("server", "stop", "python") or (
                    step.kind == "request" and step.attrs.get("conn") in later_conns
                )
                if not needed:
                    continue
                try:
                    self.steps.run(step, quiet=True)
                except LabError as error:
                    self._report(step, error, catching_up=True)
                    raise _Quit() from None
                counts[step.kind] = counts.get(step.kind, 0) + 1
        if counts:
            done = ", ".join(
                f"{n} {kind} step{'s' if n != 1 else ''}" for kind, n in counts.items()
            )
            self.console.print(
                Text(f"skipped steps 1-{self.start_step - 1}; ran quietly: {done}", style="dim")
            )

    def _run_step(self, step: Step, total: int) -> bool:
        """Run a step, then prompt; False if the lesson must stop (a failure, straight through)."""
        rerun = False
        while True:
            self.console.print()
            again = " (again)" if rerun else ""
            self.console.print(
                Text.assemble(
                    (f"▶ step {step.number}/{total}", "bold magenta"),
                    (f" · {step.describe()}{again}", "magenta"),
                )
            )
            try:
                self.steps.run(step)
            except LabError as error:
                self._report(step, error)
                if not self.interactive:
                    return False
                answer = self._ask("r: re-run · Enter: skip it and go on · q: quit", rerun=True)
            else:
                answer = self._pause(can_rerun=True)
            if answer != "rerun":
                return True
            rerun = True

    def _report(self, step: Step, error: LabError, catching_up: bool = False) -> None:
        lines = Text()
        lines.append(f"✗ step {step.number} failed: ", style="bold red")
        lines.append(error.problem)
        if error.fix:
            lines.append("\n  fix: ", style="bold")
            lines.append(error.fix)
        if not self.interactive or catching_up:
            where = self.lesson.path.name if self.lesson.path else "the lesson"
            lines.append(
                f"\n  then resume at this step: {self.command} --step {step.number}"
                f"  ({where}, line {step.line})",
                style="dim",
            )
        self.console.print(lines)

    def _pause(self, can_rerun: bool) -> str:
        if not self.interactive:
            return "next"
        prompt = "Enter: next · r: re-run · q: quit" if can_rerun else "Enter: next · q: quit"
        return self._ask(prompt, rerun=can_rerun)

    def _ask(self, prompt: str, rerun: bool) -> str:
        """Read one answer: "next", "rerun", or raise _Quit."""
        while True:
            try:
                answer = self.console.input(Text(prompt + " ", style="dim")).strip().lower()
            except EOFError:
                raise _Quit() from None
            if answer in ("", "n", "next"):
                return "next"
            if answer in ("q", "quit", "exit"):
                raise _Quit()
            if rerun and answer in ("r", "re-run", "rerun"):
                return "rerun"
