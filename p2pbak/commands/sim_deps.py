"""Packages that are extras, not the base install: the simulator's (numpy, scipy,
matplotlib: `sim`) and FUSE's (pyfuse3, built against libfuse3: `mount`). Their commands
say how to get them in one line instead of failing on an import."""

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


def require_fuse() -> None:
    if _missing("pyfuse3"):
        raise P2pbakError("`p2pbak mount` needs pyfuse3 (missing): apt-get install "
                          "libfuse3-dev pkg-config fuse3 && pip install 'p2pbak[mount]'")
