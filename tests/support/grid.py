"""What end-to-end tests share: the grid a module asks for, reading a run's JSON lines and
errors, and source trees to back up. The `grid` fixture itself is in tests/conftest.py."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pbak.localgrid.grid import Grid

GRID_PEERS = 8


@dataclass(frozen=True)
class GridSpec:
    """The grid a test module gets as its `grid` fixture (tests/conftest.py): set the
    module's `GRID = GridSpec(...)`; without one it is 8 peers with default settings."""

    peers: int = GRID_PEERS
    heartbeat: float = 2.0
    serve_args: Sequence[str] = ()
    clean_exit: bool = False  # every process must also have exited 0 when stopped
    postgres: bool = False  # the coordinators on a fresh database of the test PostgreSQL
    coordinators: int = 1  # `serve` processes on the one database (more need postgres)
    # Users a test adds with grid.add_user run no peer, and a new account has no deficit
    # allowance before its peer is online (coordinator/accounts.py): test grids give them
    # an operator's `serve --max-deficit` (the paper's minimum, 10 credits) unless their
    # serve_args name one; None runs the coordinator's own rule (tests of that rule).
    max_deficit: str | None = "10"

    def serve_options(self) -> tuple[str, ...]:
        args = tuple(self.serve_args)
        if self.max_deficit is None or "--max-deficit" in args:
            return args
        return (*args, "--max-deficit", self.max_deficit)


def lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a --json run's output, one per line."""
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def summary(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The summary line of a successful --json run (fails the test with stderr if none)."""
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    found = [m for m in lines(r.stdout) if m.get("message_type") == "summary"]
    assert len(found) == 1, r.stdout
    return found[0]


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """A failed run printed exactly one line on stderr, the error, and no traceback."""
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("p2pbak: error: "), r.stderr
    return lines[0]


def stdlib_tree(dest: Path, parts: tuple[str, ...] = ("json", "email", "asyncio"),
                binary_kib: int = 512) -> Path:
    """A copy of some of Python's standard library plus binary and awkward files."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    for part in parts:
        shutil.copytree(lib / part, dest / "Lib" / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    bins = dest / "bin"
    bins.mkdir()
    (bins / "random.bin").write_bytes(_pseudo_random(binary_kib * 1024))
    (bins / "zeros.bin").write_bytes(bytes(100_000))
    tool = bins / "tool.sh"
    tool.write_text("#!/bin/sh\necho ok\n")
    tool.chmod(0o750)
    (dest / "empty dir").mkdir()
    (dest / "empty file").write_bytes(b"")
    (dest / "p2pbak_private_plans_ünïcödé.txt").write_text("quarterly numbers\n")
    (dest / "link").symlink_to("Lib/json/__init__.py")
    return dest


def _pseudo_random(size: int) -> bytes:
    import random

    return random.Random(size).randbytes(size)


def random_files(root: Path, count: int, kib: int, seed: int) -> Path:
    """`root` (created) holding `count` incompressible files f<i>.bin of `kib` KiB."""
    root.mkdir(parents=True)
    rng = random.Random(seed)
    for i in range(count):
        (root / f"f{i}.bin").write_bytes(rng.randbytes(kib * 1024))
    return root


def coordinator_ticket(grid: Grid, *, op: str, fragment: str, size: int, from_: str,
                       to: str, now: float | None = None) -> str:
    """A ticket signed with the running coordinator's own key (read from its database): for
    tests of a peer agent that need a transfer to one chosen peer, which no plan names, or a
    ticket issued in the past."""
    import sqlite3

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from p2pbak.net import tickets

    with sqlite3.connect(grid.db) as conn:
        raw = conn.execute("SELECT value FROM settings WHERE name = 'ticket_signing_key'"
                           ).fetchone()[0]
    key = Ed25519PrivateKey.from_private_bytes(raw)
    return tickets.issue(key, op=op, fragment=fragment, size=size, from_=from_, to=to, now=now)
