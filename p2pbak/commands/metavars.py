"""Value placeholders for --help and the man pages: none for flags, plain words for values.

This typer prints every flag as `--json <bool>` and lists as `<list[str]>`, which reads as if
a flag took a value and leaks Python type names; each parameter's label is rewritten here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typer import _click as click  # typer's own click: what typer.main builds

_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH",
          "file": "FILE", "directory": "DIR", "datetime": "TIME", "bool": "BOOLEAN"}


def plain(typed: str | None) -> str | None:
    """typer's `<list[str]>`/`<int>`/`<a|b>` (and a trailing ...) as TEXT, INTEGER, [a|b]."""
    if not typed:
        return typed
    inner = typed.removesuffix("...").strip("<>")
    inner = re.sub(r"^list\[(.*)\]$", r"\1", inner)
    if "|" in inner:
        return f"[{inner}]"
    return _WORDS.get(inner.lower(), re.sub(r"[^A-Za-z0-9_,-]+", "_", inner).upper())


def label(param: click.Parameter, ctx: click.Context) -> str | None:
    """The placeholder shown after an option (or beside an argument); None: nothing."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar is not None:
        return None if param.param_type_name == "argument" else param.metavar
    original = getattr(type(param), "display_type_rich", None)
    return plain(original(param, ctx)) if original is not None else None


def _plain(param: click.Parameter) -> click.Parameter:
    if hasattr(type(param), "display_type_rich"):
        param.display_type_rich = (  # type: ignore[attr-defined]
            lambda ctx, _p=param: label(_p, ctx))
    return param


def tidy(cmd: click.Command) -> click.Command:
    """`cmd` and every sub-command with plain placeholders (the help option's included)."""
    params = cmd.get_params

    def get_params(ctx: click.Context, _orig: Any = params) -> list[click.Parameter]:
        return [_plain(p) for p in _orig(ctx)]

    cmd.get_params = get_params  # type: ignore[method-assign]
    for sub in getattr(cmd, "commands", {}).values():
        tidy(sub)
    return cmd
