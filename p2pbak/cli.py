"""The one Typer CLI. Commands live in p2pbak/commands/, one module each.

A run loads only the modules of the command it names (`backup` -> commands/backup.py,
`market` -> commands/market_*.py): importing all of them costs a re-run ~0.2 s. Anything
else (no command, `--help`, a typo) loads them all, so the listing and click's errors are
those of the whole CLI."""

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


_loaded: set[str] = set()  # command modules registered so far
_mounted: set[str] = set()  # groups added to `app`


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                  if m.name not in ("groups", "output") and not m.name.startswith("_"))


def modules_for(name: str) -> list[str]:
    """The command modules that may define top-level command `name`: the one of that name
    (dashes as underscores) and, for a group, those starting with it and `_`."""
    stem = name.replace("-", "_")
    return [m for m in _command_modules() if m == stem or m.startswith(f"{stem}_")]


def _load(modules: list[str]) -> None:
    for name in modules:
        if name in _loaded:
            continue
        _loaded.add(name)
        register = getattr(importlib.import_module(f"p2pbak.commands.{name}"), "register",
                           None)
        if register is not None:
            register(app)
    for name, sub in groups.GROUPS.items():
        if name not in _mounted and (sub.registered_commands or sub.registered_groups):
            _mounted.add(name)
            app.add_typer(sub, name=name)


def _registered() -> set[str | None]:
    return ({c.name for c in app.registered_commands}
            | {g.name for g in app.registered_groups})


def command(argv: list[str] | None = None) -> click.Command:
    """The click command behind `app`, with plain value placeholders (commands.metavars):
    every command, or with `argv` only what the command it names needs."""
    word = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    if word is not None:
        _load(modules_for(word))
    if word is None or word not in _registered():
        _load(_command_modules())
    return tidy(typer.main.get_command(app))


def main() -> None:
    """Entry point: one line per error, never a traceback (P2PBAK_DEBUG=1 shows it)."""
    try:
        command(sys.argv[1:])(standalone_mode=True, prog_name="p2pbak")
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
