"""``python -m servers ERA [options]``: start one era's server; ``demo`` and ``list`` too.

The dispatcher only finds the era's module in the table of servers/eras.py and hands it
the rest of the command line. An era that is not built yet says so, with the lesson that
will bring it, instead of failing with an ImportError.
"""

from __future__ import annotations

import importlib
import sys

from rich.console import Console

from .eras import ERAS, era_named

# Programs that belong to an era without being one: the era's other half.
HELPERS = {"fastcgi-app": "servers.fastcgi.app_server"}

USAGE = """usage: python -m servers ERA [--host 127.0.0.1] [--port N] [--app MODULE:ATTR] [--trace]
       python -m servers list     which eras are built
       python -m servers demo     the eras side by side on the shared app (make demo)
       python -m servers fastcgi-app [--bind HOST:PORT|PATH]   a FastCGI application server

ERA is one of: """ + ", ".join(era.name for era in ERAS)


def list_eras(console: Console) -> int:
    for era in ERAS:
        status = "[green]built[/]" if era.built else "[yellow]not built yet[/]"
        console.print(f"  {era.name:<8} {status:<28} lesson {era.lesson}: {era.title}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    console = Console(stderr=True, highlight=False)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "list":
        return list_eras(Console(highlight=False))
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    if command in HELPERS:
        helper: int = importlib.import_module(HELPERS[command]).main(rest)
        return helper
    try:
        era = era_named(command)
    except KeyError as error:
        console.print(f"[red]error:[/] {error.args[0]}")
        print(USAGE, file=sys.stderr)
        return 2
    if not era.built:
        console.print(
            f"The [bold]{era.name}[/] era ({era.title}) is not built yet: it arrives with "
            f"lesson {era.lesson}. Built so far: "
            + (", ".join(e.name for e in ERAS if e.built) or "none")
            + ". See `python -m servers list`."
        )
        return 3
    module = importlib.import_module(era.module)
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
