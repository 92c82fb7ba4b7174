"""Showing supply caps: a cap is shown in the unit system it was given in (50GB in,
50 GB out; 1.5TiB in, 1.5 TiB out)."""

from __future__ import annotations

from decimal import Decimal

from p2pbak.config import format_size

_SI = ("B", "KB", "MB", "GB", "TB", "PB")
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _exact(n: int, base: int, names: tuple[str, ...]) -> tuple[int, str] | None:
    """(decimals, text) of n in its natural unit of this system, if 3 decimals write it."""
    p = 0
    while p < len(names) - 1 and n >= base ** (p + 1):
        p += 1
    if (n * 1000) % base ** p:
        return None
    text = f"{Decimal(n) / base ** p:.3f}".rstrip("0").rstrip(".")
    return len(text.partition(".")[2]), f"{text} {names[p]}"


def format_cap(n: int) -> str:
    """Bytes in the unit system that writes them exactly in fewer decimals (ties: SI)."""

    found = [f for f in (_exact(n, 1000, _SI), _exact(n, 1024, _IEC)) if f is not None]
    return min(found, key=lambda f: f[0])[1] if found else format_size(n)
