"""`p2pbak supply set/show` against a real coordinator, and the cap ↔ market unit maths."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pbak.commands.caps import format_in, unit_system
from p2pbak.config import Supply, load, parse_size
from p2pbak.coordinator.prices import default_demand
from p2pbak.localgrid.grid import Grid
from p2pbak.market.caps import caps_from_supply, supply_from_caps
from p2pbak.market.prices import Overheads
from p2pbak.market.resources import prices
from p2pbak.market.supply import RatioLimits, backup_balance
from tests.support.grid import GridSpec, one_line_error, summary

GB = 10**9


GRID = GridSpec(peers=0)  # a coordinator alone: these users lend nothing yet


@pytest.fixture(scope="module")
def erin(grid: Grid) -> Path:
    return grid.add_user("erin")


def show(grid: Grid, config: Path, *extra: str) -> dict:
    return summary(grid.cli("supply", "show", "--json", *extra, config=config))


def available_with_space(grid: Grid, config: Path, space: str) -> int:
    summary(grid.cli("supply", "set", "--space", space, "--json", config=config))
    return int(show(grid, config)["available_bytes"])


@pytest.mark.slow
def test_set_then_show_round_trips_the_caps(grid: Grid, erin: Path) -> None:
    r = grid.cli("supply", "set", "--space", "30GB", "--upload", "1KB/s", "--download",
                 "16Kbit/s", "--json", config=erin)
    caps = {"space": 30 * GB, "upload": 1000, "download": 2000}
    assert summary(r)["caps"] == caps
    cfg = load(erin).supply
    assert (cfg.space, cfg.upload, cfg.download) == (30 * GB, 1000, 2000)
    shown = show(grid, erin)
    assert shown["caps"] == caps
    assert shown["in_use_bytes"] == 0 and shown["available_bytes"] > 0
    assert shown["availability"] == 0.5 and not shown["peer_known"]
    assert "prices" not in shown and "account" not in shown  # only when asked
    priced = show(grid, erin, "--prices")
    assert priced["prices"]["p"]["space"] == 1.0 and priced["account"]["balance"] == 0


@pytest.mark.slow
def test_more_space_buys_more_only_inside_its_region(grid: Grid, erin: Path) -> None:
    grid.cli("supply", "set", "--upload", "2KB/s", "--download", "5KB/s", config=erin)
    region = int(show(grid, erin)["regions"]["space"])
    assert 10 * GB < region < 100 * GB  # the upload cap bounds useful space (eq. 4)
    small = available_with_space(grid, erin, "5GB")
    inside = available_with_space(grid, erin, "10GB")
    assert inside > small * 1.9  # effective space, hence backup space, doubles
    beyond = available_with_space(grid, erin, "100GB")
    far_beyond = available_with_space(grid, erin, "200GB")
    assert beyond == far_beyond > inside
    text = " ".join(grid.cli("supply", "show", config=erin).stdout.split())
    assert "additional backup space available" in text and "beyond it" in text
    assert "balance" not in text and "prices" not in text


@pytest.mark.slow
def test_bad_input_is_one_line_and_changes_nothing(grid: Grid, erin: Path) -> None:
    before = load(erin).supply
    for args in (["--space", "lots"], ["--upload", "fast"], []):
        r = grid.cli("supply", "set", *args, config=erin)
        assert r.returncode == 1
        assert "cannot read" in one_line_error(r) or "nothing to set" in r.stderr
    assert load(erin).supply == before


# -- pure: caps ↔ market units --------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**14), st.integers(1, 10**9), st.integers(1, 10**9),
       st.floats(0.01, 1.0))
def test_caps_round_trip_through_market_units(space: int, up: int, down: int,
                                              avail: float) -> None:
    back = caps_from_supply(supply_from_caps(space, up, down, avail), avail)
    for got, want in zip(back, (space, up, down), strict=True):
        assert abs(got - want) <= max(2, want * 1e-9)


@settings(max_examples=200, deadline=None)
@given(st.integers(10**8, 10**13), st.integers(100, 10**7), st.integers(100, 10**7),
       st.floats(0.05, 1.0), st.floats(0.1, 10), st.floats(0.1, 10), st.floats(1.05, 3))
def test_raising_space_helps_exactly_inside_its_region(space: int, up: int, down: int,
                                                       avail: float, pu: float, pd: float,
                                                       factor: float) -> None:
    o, p = Overheads(), prices(pu, pd)
    limits = RatioLimits.from_demand(default_demand())

    def total(s: int) -> float:
        return backup_balance(supply_from_caps(s, up, down, avail), p, o, limits, 0.0).total

    region = caps_from_supply(backup_balance(supply_from_caps(space, up, down, avail), p, o,
                                             limits, 0.0).regions, avail)[0]
    inside = min(space, region) * 0.5
    if inside >= 1:
        assert total(int(inside * factor)) > total(int(inside)) * (1 + 1e-9) or \
            int(inside * factor) > region
    beyond = region * 1.01 + 10
    assert total(int(beyond * factor)) == pytest.approx(total(int(beyond)), rel=1e-9)


@given(st.integers(1, 10**16), st.sampled_from(["si", "iec"]))
def test_a_figure_is_shown_in_the_users_system_within_its_rounding(n: int, system: str) -> None:
    shown = format_in(n, system)
    unit = shown.split()[1]
    assert unit == "B" or ("i" in unit) == (system == "iec"), shown
    back = parse_size(shown.replace(" ", ""))
    assert abs(back - n) <= 0.0005 * (1024 if system == "iec" else 1000) ** max(
        0, ["B", "K", "M", "G", "T", "P"].index(unit[0])) + 1
    assert unit_system(Supply(50 * GB, None, None)) == "si"
    assert unit_system(Supply(0, 3 * 2**20, None)) == "iec"  # a zero space says nothing
