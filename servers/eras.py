"""The four eras, in one table: what each one is, which module serves it, and whether it is built.

Everything that loops over the eras (the command line, `make demo`, the family contract
tests, `make bench`, the lessons) reads this table, so adding an era is adding its module:
an era counts as *built* as soon as ``servers/<module>.py`` (or a package of that name)
exists and defines ``main(args)``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["ERAS", "Era", "built_eras", "era_named"]


@dataclass(frozen=True)
class Era:
    name: str  # the command-line name: python -m servers NAME
    module: str  # the module that implements it
    title: str  # one line for tables and help
    model: str  # the concurrency model the course compares
    lesson: int  # the lesson that teaches it
    app_kind: str  # which flavour of the family app it hosts by default

    @property
    def built(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


ERAS: tuple[Era, ...] = (
    Era(
        "cgi",
        "servers.cgi",
        "forking CGI/1.1 server (RFC 3875)",
        "a process per request",
        1,
        "cgi-bin scripts",
    ),
    Era(
        "fastcgi",
        "servers.fastcgi.gateway",
        "FastCGI gateway + application server",
        "a long-running process fed records",
        2,
        "FastCGI responder",
    ),
    Era(
        "wsgi",
        "servers.wsgi",
        "threaded WSGI server (PEP 3333)",
        "a pool of threads",
        3,
        "apps.wsgi:app",
    ),
    Era(
        "asgi",
        "servers.asgi",
        "asyncio ASGI server (ASGI 3.0)",
        "tasks on one event loop",
        4,
        "apps.asgi:app",
    ),
)


def era_named(name: str) -> Era:
    for era in ERAS:
        if era.name == name:
            return era
    raise KeyError(f"no era named {name!r}; the eras are {', '.join(e.name for e in ERAS)}")


def built_eras() -> list[Era]:
    return [era for era in ERAS if era.built]
