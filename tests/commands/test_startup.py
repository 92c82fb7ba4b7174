"""Start-up stays light: `--help` imports none of the simulator's packages, a command loads
only its own module, and the simulator's commands say in one line how to install them when
they are missing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from p2pbak.cli import command, modules_for
from p2pbak.localgrid.grid import child_env

HEAVY = ("numpy", "scipy", "matplotlib", "aiohttp", "cryptography", "zfec", "asyncio")


def imported(*args: str) -> set[str]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "p2pbak", *args],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("args", [("--help",), ("backup", "--help"), ("market", "--help")])
def test_help_imports_no_heavy_package(args: tuple[str, ...]) -> None:
    names = imported(*args)
    assert "typer" in names  # the parse saw the imports
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_simulator_without_its_packages_says_how_to_get_them(command: str) -> None:
    code = ("import sys; sys.modules['numpy'] = None; sys.argv = ['p2pbak', 'market', "
            f"'{command}']; from p2pbak.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=child_env(), timeout=60)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr  # scipy and matplotlib need numpy: all three missing
    assert lines[0].startswith(f"p2pbak: error: `p2pbak market {command}` needs the "
                               "simulator's packages (numpy")
    assert lines[0].endswith("missing): pip install 'p2pbak[sim]'")


def test_a_command_loads_only_its_own_modules() -> None:
    """`backup` imports commands/backup.py, not the other commands (cli.modules_for)."""
    code = ("import atexit, sys; atexit.register(lambda: print(' '.join(m for m in sys.modules "
            "if m.startswith('p2pbak.commands.')), file=sys.stderr)); "
            "sys.argv = ['p2pbak', 'backup', '--help']; from p2pbak.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=child_env(), timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    commands = {n.rsplit(".", 1)[1] for n in r.stderr.split()}
    assert "backup" in commands
    assert not commands & {"serve", "prune", "restore", "market_simulate", "peer_run"}, commands


def test_every_command_is_found_in_the_modules_its_name_picks() -> None:
    """The lazy loading's rule covers the whole CLI: each top-level command (each command
    of a group) is defined in one of the modules `modules_for` picks for its name."""
    def modules(cmd: Any) -> set[str]:
        subs = getattr(cmd, "commands", {})
        if not subs:
            return {cmd.callback.__module__.rsplit(".", 1)[1]}
        return set().union(*(modules(s) for s in subs.values()))

    top = command().commands  # type: ignore[attr-defined]
    assert {"backup", "market", "key", "admin"} <= set(top)
    for name, cmd in top.items():
        assert modules(cmd) <= set(modules_for(name)), name
