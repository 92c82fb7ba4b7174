"""Every error of p2pbak, each with its documented exit code: one hierarchy under
`P2pbakError`, whose message is the one line a user sees (what went wrong, what to do).

Some also derive from the built-in they replace (ValueError, OSError), so that code
handling the built-in keeps handling them."""

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


# -- the data path -------------------------------------------------------------------------

class UnreadableFile(P2pbakError):
    """A file or folder a backup could not read: the snapshot is saved without it (exit 3)."""

    exit_code = ExitCode.PARTIAL

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CorruptFragment(P2pbakError):
    """A fragment that is damaged, of another pack, or decodes to the wrong pack."""


class NotEnoughFragments(P2pbakError):
    """Fewer than k valid fragments of a pack could be found."""


class DamagedBlob(P2pbakError):
    """An encrypted blob failed authentication: damaged, or sealed with another key."""


class MissingBlob(P2pbakError):
    """A blob the snapshot needs is in no pack of the index."""


# -- placement and the market --------------------------------------------------------------

class NotEnoughPeers(P2pbakError):
    """Fewer supplier peers than any code needs (`have` and `need` when counted)."""

    def __init__(self, message: str, *, have: int | None = None,
                 need: int | None = None) -> None:
        super().__init__(message)
        self.have = have
        self.need = need


class NoSupplier(P2pbakError):
    """No online peer without a fragment of the pack can take a new one."""


class ReceiptRefused(P2pbakError, ValueError):
    """A receipt that pays nothing; the message says why."""


class Unbalanced(P2pbakError, ValueError):
    """Postings that do not sum to exactly 0."""


class NotPlanned(P2pbakError):
    """A store ticket asked for a fragment no plan of the pack puts on that peer."""


class NotGranted(P2pbakError):
    """A committed fragment was never granted to this owner on that peer."""


# -- the wire ------------------------------------------------------------------------------

class TicketError(P2pbakError, ValueError):
    """A ticket that must be refused; the message says why."""


class SealError(P2pbakError, ValueError):
    """Bytes that do not open under the key: tampered, or sealed for another key."""


class TooDeep(P2pbakError, ValueError):
    """JSON nested deeper than allowed."""


class BadProof(P2pbakError, ValueError):
    """A storage proof that does not check out; the message says why."""


class AckRefused(P2pbakError, ValueError):
    """An acknowledgement that proves nothing; the message says why."""


class ApiError(P2pbakError):
    """A refusal the client caused (or a conflict it can resolve): 4xx with one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CoordinatorError(P2pbakError):
    """The coordinator refused a request; `status` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class PeerError(P2pbakError):
    """A peer agent refused a transfer or could not be reached (`status` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message, ExitCode.UNREACHABLE if status == 0 else None)
        self.status = status


# -- persistence and tooling ---------------------------------------------------------------

class StoreError(P2pbakError, OSError):
    """The storage folder cannot be used (not writable, not a folder)."""


class ManError(P2pbakError):
    """The hand-written man page sections do not fit the CLI; the message says where."""


class UnknownUser(P2pbakError):
    """No user of that name on the coordinator."""


class WrongLogin(P2pbakError):
    """The login key does not match the user's: a wrong passphrase."""

    exit_code = ExitCode.WRONG_PASSPHRASE


class Conflict(P2pbakError):
    """The record exists already, with other content (a name taken, an immutable id reused)."""

    exit_code = ExitCode.FAILED


class SuppliersFull(NotEnoughPeers):
    """Enough suppliers are online, but too few have room for a fragment of the pack: other
    users must raise their space caps or more peers join (exit 15)."""

    exit_code = ExitCode.SUPPLIERS_FULL
