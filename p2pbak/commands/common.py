"""Options and plumbing shared by the client commands (init, backup, restore, ...)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from p2pbak.commands.output import Reporter
from p2pbak.config import config_path
from p2pbak.errors import P2pbakError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Config file (default: $P2PBAK_CONFIG, else the platform config folder).",
    dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print restic-style JSON lines.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")]
PasswordFileOpt = Annotated[Path | None, typer.Option(
    "--password-file", help="Read the passphrase from this file (or $P2PBAK_PASSWORD_FILE).",
    dir_okay=False)]
PasswordCommandOpt = Annotated[str | None, typer.Option(
    "--password-command", help="Run this command to get the passphrase "
    "(or $P2PBAK_PASSWORD_COMMAND).")]
RetryLockOpt = Annotated[str, typer.Option(
    "--retry-lock", metavar="DURATION",
    help="Wait this long (30s, 5m, 1h) for a conflicting repository lock (a prune, a "
    "backup, a restore of this user's) instead of failing with exit 11.")]
NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Fetch index and snapshot blobs from the coordinator, not the local "
    "cache ($P2PBAK_CACHE_DIR, else the platform cache folder; see `p2pbak cache`).")]

STATUS_EVERY = 0.5  # seconds between JSON status lines
UPDATE_EVERY = 0.1  # seconds between reads of the progress counters


def reporter(json: bool = False, quiet: bool = False) -> Reporter:
    return Reporter(json=json, quiet=quiet)


def run(coro: Coroutine[Any, Any, T]) -> T:
    # imported here, not at the top: keeps CLI start-up fast
    import asyncio  # here, not at the top: `--help` never needs the event loop

    return asyncio.run(coro)


def as_dict(obj: Any) -> dict[str, Any]:
    """A summary/record object (dataclass, mapping or plain object) as a dict."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def read_lines(files: list[Path]) -> list[str]:
    """Non-empty, non-comment lines of exclude files (restic's --exclude-file)."""
    lines: list[str] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise P2pbakError(f"cannot read exclude file {f}: {exc}") from None
        lines += [ln.strip() for ln in text.splitlines()
                  if ln.strip() and not ln.lstrip().startswith("#")]
    return lines


class ProgressView:
    """Progress for a long transfer: a rich bar on a TTY, JSON status lines with --json.

    `update` takes the data path's progress object (files/bytes done and totals).
    """
    def __init__(self, rep: Reporter, what: str) -> None:
        self.rep = rep
        self.what = what
        self._last = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._start = time.monotonic()
        self._latest: Any = None
        self._tick = 0.0
        self.last: Any = None  # the data path's last progress object (what an interrupt saved)

    def __enter__(self) -> ProgressView:
        if not self.rep.json and not self.rep.quiet and sys.stdout.isatty():
            # imported here, not at the top: keeps CLI start-up fast
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(),
                                 TextColumn("{task.fields[files]} files"),
                                 TimeRemainingColumn(), console=self.rep.out, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=None, files=0)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc_type is None and self.rep.json and self._latest is not None:
            self.emit(counters(self._latest))  # the final counters, like restic's last line

    @property
    def shown(self) -> bool:
        """Whether anyone sees the progress (a bar or JSON status lines), so whether the
        totals are worth counting ahead."""
        return self._bar is not None or self.rep.json

    def update(self, progress: Any) -> None:
        # Called per chunk of a backup: only keep the object, read it a few times a second
        # (reading it costs more than backing up a small file's chunk).
        self._latest = self.last = progress
        now = time.monotonic()
        if now - self._tick < UPDATE_EVERY:
            return
        self._tick = now
        p = counters(progress)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=p["bytes_done"],
                             total=p["total_bytes"] or None, files=p["files_done"])
        now = time.monotonic()
        if self.rep.json and now - self._last >= STATUS_EVERY:
            self._last = now
            self.emit(p)

    def emit(self, p: dict[str, int]) -> None:
        total = p["total_bytes"]
        done = min(1.0, p["bytes_done"] / total) if total else 0.0
        self.rep.status(percent_done=round(done, 4), seconds_elapsed=int(
            time.monotonic() - self._start), **p)


def counters(progress: Any) -> dict[str, int]:
    """The counters every progress line carries, from any progress object."""
    d = as_dict(progress)
    saved = {"packs_saved": int(d["packs_saved"])} if "packs_saved" in d else {}
    return {**saved, "files_done": int(d.get("files_done", 0) or 0),
            "bytes_done": int(d.get("bytes_done", 0) or 0),
            "total_files": int(d.get("files_total") or 0),
            "total_bytes": int(d.get("bytes_total") or 0)}


def fresh_config_path(config: Path | None) -> Path:
    """Where init/recover write the config; refuses to replace an existing one."""
    path = config_path(config)
    if path.exists():
        raise P2pbakError(f"{path} already exists: this machine is set up already; use "
                          "--config FILE (or P2PBAK_CONFIG) for another user or machine")
    return path


def machine_name(name: str | None) -> str:
    return name or socket.gethostname() or "machine"


def save_plot(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG; a path that cannot be written is one clear error."""
    # imported here, not at the top: keeps CLI start-up fast
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise P2pbakError(f"cannot write plot {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
