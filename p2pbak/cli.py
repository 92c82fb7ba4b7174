"""The one Typer CLI. Commands live in p2pbak/commands/, one module each."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import TYPE_CHECKING

import typer
import typer.main

if TYPE_CHECKING:
    from typer import _click as click  # typer's own click: what typer.main builds

import p2pbak.commands as pkg
from p2pbak import __version__
from p2pbak.commands import groups, output
from p2pbak.commands.metavars import tidy
from p2pbak.errors import ExitCode, P2pbakError

app = typer.Typer(
    name="p2pbak",
    help="Peer-to-peer backup: lend idle disk and bandwidth, get encrypted off-site backup.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"p2pbak {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Peer-to-peer backup: lend idle disk and bandwidth, get encrypted off-site backup."""


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in ("groups", "output") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"p2pbak.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    for name, sub in groups.GROUPS.items():
        if sub.registered_commands or sub.registered_groups:
            app.add_typer(sub, name=name)


_register_all()


def command() -> click.Command:
    """The click command behind `app`, with plain value placeholders (commands.metavars)."""
    return tidy(typer.main.get_command(app))


def main() -> None:
    """Entry point: one line per error, never a traceback (P2PBAK_DEBUG=1 shows it)."""
    try:
        command()(standalone_mode=True, prog_name="p2pbak")
    except SystemExit:
        raise
    except P2pbakError as exc:
        output.current().error(str(exc), int(exc.exit_code))
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        output.current().error("interrupted", int(ExitCode.INTERRUPTED))
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:  # a bug: still one line, with a way to see more
        if os.environ.get("P2PBAK_DEBUG"):
            raise
        output.current().error(
            f"unexpected {type(exc).__name__}: {exc} (set P2PBAK_DEBUG=1 for details)",
            int(ExitCode.FAILED))
        sys.exit(int(ExitCode.FAILED))
