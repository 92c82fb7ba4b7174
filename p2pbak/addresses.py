"""E-mail addresses for low-balance alerts: one check shared by the client (`init --email`,
`p2pbak email`), the coordinator's routes and its mailer (user names that are addresses).

Deliberately plain: the addresses people type (RFC 5321's dot-atoms, a domain of at least
two labels), not every form the RFCs allow (quoted local parts, IP literals)."""

from __future__ import annotations

import re

from p2pbak.errors import P2pbakError

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
MAX_ADDRESS = 254  # RFC 5321's path limit less the angle brackets


def address_problem(text: str) -> str | None:
    """Why `text` is not an address mail can be sent to, or None if it is one."""
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return "it needs the form name@example.org"
    if len(text) > MAX_ADDRESS or len(local) > 64:
        return f"it is longer than {MAX_ADDRESS} characters (or its name part than 64)"
    if not _LOCAL.fullmatch(local):
        return ("the part before @ may hold letters, digits, dots (not first, last or two "
                "in a row) and !#$%&'*+/=?^_`{|}~-")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels) or labels[-1].isdigit():
        return f"{domain!r} is not a mail domain such as example.org"
    return None


def is_address(text: str) -> bool:
    return address_problem(text) is None


def checked(text: str) -> str:
    """`text` if it is an address, else a one-line error saying why not."""
    problem = address_problem(text)
    if problem is not None:
        raise P2pbakError(f"{text!r} is not an e-mail address: {problem}")
    return text
