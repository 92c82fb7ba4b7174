"""The values each slider steps through: "nice" numbers, finer where caps are small.

A range input moves by index over these lists (keyboard arrows step one value), so 5 KB/s,
50 GB and 100 GB are exact positions. The last position is "no cap" (0 in the config).
"""

from __future__ import annotations

GB = 1_000_000_000
KB = 1_000
# (start, stop, step) in the unit: 1..10 by 1, 15..100 by 5, 125..1000 by 25, ...
STEPS = ((1, 10, 1), (15, 100, 5), (125, 1000, 25), (1100, 10_000, 100))
RATE_STEPS = (*STEPS, (11_000, 125_000, 1000))  # KB/s up to 1 Gbit/s


def _values(steps: tuple[tuple[int, int, int], ...], unit: int) -> list[int]:
    return [v * unit for start, stop, step in steps for v in range(start, stop + 1, step)]


def values(kind: str, disk_bytes: int = 0, current: int = 0) -> list[int]:
    """The caps (bytes or bytes/s) a slider offers, ascending, then 0 for "no cap"; the
    current cap is kept as a position of its own so opening the page changes nothing."""
    if kind == "space":
        out = _values(STEPS, GB)
        if disk_bytes > out[-1]:
            out.append(disk_bytes)
    else:
        out = _values(RATE_STEPS, KB)
    if current and current not in out:
        out = sorted({*out, current})
    return [*out, 0]


def tables(disk_bytes: int, caps: dict[str, int]) -> dict[str, list[int]]:
    return {name: values(name, disk_bytes, caps.get(name, 0))
            for name in ("space", "upload", "download")}
