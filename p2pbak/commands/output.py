"""Output for every command: rich text for people, restic-style JSON lines for scripts.

JSON mode prints one object per line with `message_type` in {status, summary, error, ...};
`status`/`summary` go to stdout, `error` to stderr. Quiet mode prints nothing on success
and one line per problem (for cron).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_current: Reporter | None = None
UNWRAPPED = 1_000_000  # columns when not on a terminal: cron mail and grep get whole lines


def console(stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width, and never when not on a terminal."""
    # a --quiet or --json run prints no rich text, and rich costs ~0.05 s to import:
    # imported here, not at the top: keeps CLI start-up fast
    from rich.console import Console

    tty = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, highlight=False, soft_wrap=not tty,
                   width=None if tty else UNWRAPPED)


class Reporter:
    """Where a command's output goes; its rich consoles are made when first printed to."""

    def __init__(self, json: bool = False, quiet: bool = False, out: Console | None = None,
                 err: Console | None = None) -> None:
        global _current
        self.json, self.quiet = json, quiet
        self._out, self._err = out, err
        _current = self

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = console()
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = console(stderr=True)
        return self._err

    def emit(self, message_type: str, **fields: Any) -> None:
        """A JSON line (JSON mode only)."""
        if self.json:
            line = json.dumps({"message_type": message_type, **fields}, default=str)
            stream = sys.stderr if message_type == "error" else sys.stdout
            print(line, file=stream, flush=True)

    def status(self, **fields: Any) -> None:
        self.emit("status", **fields)

    def summary(self, **fields: Any) -> None:
        self.emit("summary", **fields)

    def say(self, text: str) -> None:
        """Human text on stdout (not in JSON or quiet mode)."""
        if not self.json and not self.quiet:
            self.out.print(text)

    def warn(self, text: str) -> None:
        """A problem worth a line even in quiet mode (stderr)."""
        if self.json:
            self.emit("error", message=text, fatal=False)
        else:
            self.err.print(f"p2pbak: warning: {text}", markup=False, soft_wrap=True)

    def error(self, text: str, code: int) -> None:
        if self.json:
            self.emit("error", message=text, fatal=True, exit_code=code)
        else:
            self.err.print(f"p2pbak: error: {text}", markup=False, soft_wrap=True)


def current() -> Reporter:
    """The reporter the running command made (a plain one before any)."""
    return _current if _current is not None else Reporter()
