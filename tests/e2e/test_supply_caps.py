"""Supply caps as a new user types them, and a backup when every supplier is full."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.commands.caps import format_cap, format_in
from p2pbak.config import load, parse_size
from p2pbak.errors import ExitCode
from p2pbak.localgrid.grid import Grid, wait_for
from tests.support.grid import GridSpec, one_line_error, summary

GRID = GridSpec(3, heartbeat=0.5)
UNITS = ["KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"]


@given(st.integers(1, 999), st.sampled_from(UNITS), st.sampled_from(["", ".5", ".25"]))
def test_a_cap_comes_back_in_the_unit_it_was_given(whole: int, unit: str, frac: str) -> None:
    typed = f"{whole}{frac}{unit}"
    shown = format_cap(parse_size(typed))
    assert parse_size(shown.replace(" ", "")) == parse_size(typed)
    if not unit.startswith("K"):  # 1.25 KiB is also exactly 1.28 KB: there, SI wins ties
        assert shown.endswith(" " + unit), (typed, shown)


@pytest.mark.slow
def test_zero_lends_nothing_unlimited_spelled_and_units_kept(grid: Grid) -> None:
    erin = grid.add_user("erin")
    shown = summary(grid.cli("supply", "set", "--space", "50GB", "--upload", "1MB/s",
                             "--json", config=erin))
    assert shown["caps"]["space"] == 50 * 10**9
    text = grid.cli("supply", "show", config=erin).stdout
    assert "space 50 GB" in text and "upload 1 MB/s" in text
    assert "GiB" not in text and "MiB" not in text, text  # GB in, GB out, every figure
    err = one_line_error(grid.cli("supply", "set", "--upload", "0", config=erin))
    assert "unreachable" in err and "--upload unlimited" in err
    assert load(erin).supply.upload == 10**6  # unchanged
    r = grid.cli("supply", "set", "--space", "0", config=erin)
    assert r.returncode == 0 and "space 0 (lends nothing)" in r.stdout
    assert load(erin).supply.space == 0
    quote = summary(grid.cli("supply", "show", "--json", config=erin))
    assert quote["caps"]["space"] == 0 and quote["market"]["supply"]["space"] == 0
    text = grid.cli("supply", "show", config=erin).stdout
    bought = format_in(quote["available_bytes"], "si")  # the market's figure, in GB still
    assert f"available: {bought}\n  (bought with bandwidth alone" in text, text
    r = grid.cli("supply", "set", "--space", "unlimited", config=erin)
    assert r.returncode == 0 and "space unlimited" in r.stdout
    assert load(erin).supply.space is None
    assert summary(grid.cli("supply", "show", "--json", config=erin))["caps"]["space"] is None
    summary(grid.cli("supply", "set", "--space", "1.5TiB", "--json", config=erin))
    text = grid.cli("supply", "show", config=erin).stdout
    assert "space 1.5 TiB" in text and " GB" not in text, text


@pytest.mark.slow
def test_backup_with_every_supplier_full_says_so_with_its_own_exit_code(
        grid: Grid, tmp_path: Path) -> None:
    alice = grid.add_user("alice")
    for peer in grid.peers:
        summary(grid.cli("supply", "set", "--space", "1MB", "--json", config=peer.config))

    def full() -> bool:
        return summary(grid.cli("status", "--json", config=alice))["code"] is None

    wait_for(full, 30, "the coordinator did not see the peers' new caps")
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    r = grid.cli("backup", str(src), config=alice)
    assert r.returncode == int(ExitCode.SUPPLIERS_FULL) == 15
    err = one_line_error(r)
    assert "suppliers are full: 3 online" in err and "supply set --space" in err
    assert "not enough online peers" not in err
