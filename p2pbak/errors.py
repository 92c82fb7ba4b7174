"""Errors a user can act on, each with its documented exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes (restic's where they overlap)."""

    OK = 0
    FAILED = 1  # the command failed, nothing was saved
    USAGE = 2  # bad command line (typer/click)
    PARTIAL = 3  # snapshot saved, but some files could not be read
    NOT_INITIALISED = 10  # no config: run `p2pbak init` or `p2pbak recover`
    LOCKED = 11  # another backup of this machine holds the lock
    WRONG_PASSPHRASE = 12
    FROZEN = 13  # account below the maximum deficit: no new backups
    UNREACHABLE = 14  # coordinator or peers cannot be reached
    SUPPLIERS_FULL = 15  # enough suppliers online, but too few have room for a new pack
    INTERRUPTED = 130


class P2pbakError(Exception):
    """One-line error for the user: what went wrong and what to do."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class WrongPassphrase(P2pbakError):
    exit_code = ExitCode.WRONG_PASSPHRASE


class NotInitialised(P2pbakError):
    exit_code = ExitCode.NOT_INITIALISED


class Unreachable(P2pbakError):
    exit_code = ExitCode.UNREACHABLE


class Frozen(P2pbakError):
    exit_code = ExitCode.FROZEN


class Locked(P2pbakError):
    exit_code = ExitCode.LOCKED


class SuppliersFull(P2pbakError):
    exit_code = ExitCode.SUPPLIERS_FULL
