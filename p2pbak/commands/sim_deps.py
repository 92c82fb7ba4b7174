"""The simulator's packages (numpy, scipy, matplotlib) are the `sim` extra, not the base
install: its commands say how to get them in one line instead of failing on an import."""

from __future__ import annotations

import importlib

from p2pbak.errors import P2pbakError

SIM_PACKAGES = ("numpy", "scipy", "matplotlib")


def _missing(name: str) -> bool:
    try:
        importlib.import_module(name)  # the command imports them next anyway
    except ImportError:
        return True
    return False


def require_sim(command: str, packages: tuple[str, ...] = SIM_PACKAGES) -> None:
    missing = [p for p in packages if _missing(p)]
    if missing:
        raise P2pbakError(f"`p2pbak {command}` needs the simulator's packages "
                          f"({', '.join(missing)} missing): pip install 'p2pbak[sim]'")
