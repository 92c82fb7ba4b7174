"""Showing supply caps: a cap is shown in the unit system it was given in (50GB in,
50 GB out; 1.5TiB in, 1.5 TiB out), and the figures beside it in that same system."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from p2pbak.config import format_size

_SI = ("B", "KB", "MB", "GB", "TB", "PB")
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
SYSTEMS = {"si": (1000, _SI), "iec": (1024, _IEC)}


def _power(n: int, base: int, names: tuple[str, ...]) -> int:
    p = 0
    while p < len(names) - 1 and n >= base ** (p + 1):
        p += 1
    return p


def _exact(n: int, system: str) -> tuple[int, str] | None:
    """(decimals, text) of n in its natural unit of this system, if 3 decimals write it."""
    base, names = SYSTEMS[system]
    p = _power(n, base, names)
    if (n * 1000) % base ** p:
        return None
    text = f"{Decimal(n) / base ** p:.3f}".rstrip("0").rstrip(".")
    return len(text.partition(".")[2]), f"{text} {names[p]}"


def _exact_system(n: int) -> str | None:
    """The system that writes n exactly in fewer decimals (ties: SI), None if neither."""
    found = [(f[0], s) for s in SYSTEMS if n and (f := _exact(n, s)) is not None]
    return min(found)[1] if found else None


def format_cap(n: int) -> str:
    """Bytes in the unit system that writes them exactly in fewer decimals (ties: SI)."""
    system = _exact_system(n)
    found = _exact(n, system) if system is not None else None
    return found[1] if found is not None else format_size(n)


def unit_system(caps: Any) -> str:
    """The system the user typed the caps in (space first), else IEC as elsewhere."""
    for n in (caps.space, caps.upload, caps.download):
        system = _exact_system(n) if n else None
        if system is not None:
            return system
    return "iec"


def format_in(n: int, system: str) -> str:
    """Bytes in that system with up to 3 decimals: 46_566_128_730 → '46.566 GB' in SI."""
    base, names = SYSTEMS[system]
    p = _power(n, base, names)
    text = f"{Decimal(n) / base ** p:.3f}".rstrip("0").rstrip(".")
    return f"{text} {names[p]}"


def cap_text(value: int | None, rate: bool, system: str | None = None) -> str:
    """A cap as `supply` commands print it: exact in its own system, or in `system`."""
    if value is None:
        return "unlimited"
    if value == 0:
        return "0 (lends nothing)"
    shown = format_cap(value) if system is None or _exact(value, system) else \
        format_in(value, system)
    return f"{shown}/s" if rate else shown
