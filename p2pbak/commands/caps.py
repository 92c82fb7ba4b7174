"""Reading and showing supply caps: `unlimited` spells no cap, and a cap is shown in the unit
system it was given in (50GB in, 50 GB out; 1.5TiB in, 1.5 TiB out)."""

from __future__ import annotations

from collections.abc import Callable

from p2pbak.errors import P2pbakError

NO_CAP = ("unlimited", "none", "no-cap")
_SI = ("B", "KB", "MB", "GB", "TB", "PB")
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def read_cap(text: str, parse: Callable[[str], int], option: str) -> int:
    """A cap in bytes (or bytes/s); 0 stored means no cap, so only `unlimited` gives it.
    A cap of zero is refused: it would read as no cap to every peer and coordinator."""
    if text.strip().lower() in NO_CAP:
        return 0
    value = parse(text)
    if value <= 0:
        raise P2pbakError(f"{option} {text!r} would lend nothing: to stop lending run "
                          f"`p2pbak supply leave`; for no cap write {option} unlimited")
    return value


def _exact(n: int, base: int, names: tuple[str, ...]) -> tuple[int, str] | None:
    """(decimals, text) of n in its natural unit of this system, if 3 decimals write it."""
    from decimal import Decimal

    p = 0
    while p < len(names) - 1 and n >= base ** (p + 1):
        p += 1
    if (n * 1000) % base ** p:
        return None
    text = f"{Decimal(n) / base ** p:.3f}".rstrip("0").rstrip(".")
    return len(text.partition(".")[2]), f"{text} {names[p]}"


def format_cap(n: int) -> str:
    """Bytes in the unit system that writes them exactly in fewer decimals (ties: SI)."""
    from p2pbak.config import format_size

    found = [f for f in (_exact(n, 1000, _SI), _exact(n, 1024, _IEC)) if f is not None]
    return min(found, key=lambda f: f[0])[1] if found else format_size(n)
