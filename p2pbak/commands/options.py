"""The options every command shares, declared once: `--json` and `--quiet` (output), and for
commands that open the repository `--config`, `--password-file`, `--password-command` and
`--no-cache`.

A command takes them as one `Options` value:

    @app.command("snapshots")
    @with_options(quiet=False)
    def snapshots_cmd(opts: Options, host: HostOpt = None) -> None:
        rep = opts.reporter()
        session = opts.session()

`with_options` adds the shared parameters to the signature Typer reads, so every command's
`--help` and behaviour stay as they were with the options spelled out in each module.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from p2pbak.commands.common import (
    ConfigOpt,
    JsonOpt,
    NoCacheOpt,
    PasswordCommandOpt,
    PasswordFileOpt,
    QuietOpt,
    reporter,
)
from p2pbak.commands.output import Reporter

if TYPE_CHECKING:
    from p2pbak.client.session import Session

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Options:
    json: bool = False
    quiet: bool = False
    config: Path | None = None
    password_file: Path | None = None
    password_command: str | None = None
    no_cache: bool = False

    def reporter(self) -> Reporter:
        return reporter(self.json, self.quiet)

    def session(self, retry_lock: str = "0") -> Session:
        """This machine's config and the passphrase (asked for if no file or command);
        `retry_lock`: the --retry-lock text, how long to wait for a repository lock."""
        # imported here, not at the top: keeps CLI start-up fast
        from p2pbak.client.session import open_session
        from p2pbak.store.machinelock import parse_duration

        wait = parse_duration(retry_lock)
        session = open_session(self.config, self.password_file, self.password_command,
                               self.no_cache)
        session.retry_lock = wait
        return session


_ANNOTATIONS = {"json": JsonOpt, "quiet": QuietOpt, "config": ConfigOpt,
                "password_file": PasswordFileOpt, "password_command": PasswordCommandOpt,
                "no_cache": NoCacheOpt}
_DEFAULTS = {f.name: f.default for f in fields(Options)}


def with_options(*, quiet: bool = True, config: bool = True, password: bool = True,
                 cache: bool = False) -> Callable[[F], F]:
    """A command whose first parameter is `opts: Options`; its CLI gets `--json` and, as
    asked, `--quiet`, `--config`, `--password-file`, `--password-command` and `--no-cache`."""
    names = ["json", *(["quiet"] if quiet else []), *(["config"] if config else []),
             *(["password_file", "password_command"] if password else []),
             *(["no_cache"] if cache else [])]

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)  # Typer reads these, not the strings
        own = [p for name, p in sig.parameters.items() if name != "opts"]
        shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_DEFAULTS[n],
                                    annotation=_ANNOTATIONS[n]) for n in names]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            opts = Options(**{n: kwargs.pop(n) for n in names})
            return fn(opts, **kwargs)

        command.__signature__ = sig.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
        return command  # type: ignore[return-value]

    return decorate
