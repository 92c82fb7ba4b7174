"""The live market over days (market.live, issue 17): balances return to 0 under the
daily price update, nobody honest is frozen, and the bank is zero-sum every day."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak.market.live import (
    Ledger,
    LiveSetup,
    State,
    days_of_bill,
    fill,
    move_fragments,
    open_market,
    run_live,
)
from p2pbak.market.resources import Resources

SHORT = LiveSetup(users=12, days=60)


@pytest.fixture(scope="module")
def short_run() -> list:
    return run_live(SHORT)


def test_balances_return_to_zero_and_do_not_drift(short_run: list) -> None:
    worst = [max(map(abs, days_of_bill(d))) for d in short_run]
    assert worst[-1] <= 3.0
    # no drift: the last weeks stay below the first ones, and below the peak
    assert max(worst[-20:]) <= max(worst[:20])
    assert worst[-1] < max(worst) / 2
    # caps are unequal (the test means something) and prices moved under the update
    state = open_market(SHORT)
    assert state.caps[:, 0].max() / state.caps[:, 0].min() > 3
    assert short_run[-1].p != short_run[0].p


def test_nobody_is_frozen_and_the_bank_is_zero_sum_every_day(short_run: list) -> None:
    for d in short_run:
        assert sum(d.balances) + d.bank == 0
        assert not any(d.frozen)
        assert all(b > 0 for b in d.bills)


@given(st.floats(0, 100), st.lists(st.floats(0, 10), min_size=2, max_size=8),
       st.randoms())
def test_fill_gives_equal_shares_of_gaps_within_rooms(amount: float, wants: list[float],
                                                      rnd) -> None:
    want = np.array(wants)
    room = np.array([rnd.uniform(0, 10) for _ in wants])
    take = fill(amount, want, room, spread=False)
    assert (take >= -1e-12).all() and (take <= np.minimum(want, room) + 1e-9).all()
    assert take.sum() <= amount + 1e-9
    # all that could be given was given
    assert take.sum() == pytest.approx(min(amount, np.minimum(want, room).sum()), abs=1e-6)
    spread = fill(amount, want, room)
    assert spread.sum() == pytest.approx(amount, abs=1e-6)


def _state(up: float, down: float) -> State:
    """Two users: 0 holds all the data and has earned far too much, 1 is in deficit."""
    e = open_market(LiveSetup(users=2, days=1)).economy
    caps = np.array([[100.0, up, 1.0], [100.0, 1.0, down]])
    ledger = Ledger(np.array([10**9, -(10**9)], dtype=np.int64), bank=0)
    return State(e, caps, np.array([50.0, 0.0]), ledger, Resources(1.0, 1.0, 1.0))


def test_moves_shift_storage_to_the_deficit_within_spare_caps() -> None:
    s = _state(up=0.5, down=2.0)
    work = np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    moved = move_fragments(s, work, [10**6, 10**6], 7.0)
    assert moved == pytest.approx(0.5)  # the donor's spare upload is the budget
    assert s.held.tolist() == pytest.approx([49.5, 0.5])
    assert s.ledger.total() == 0
    s = _state(up=0.0, down=2.0)  # no spare upload at the donor: nothing moves
    assert move_fragments(s, work.copy(), [10**6, 10**6], 7.0) == 0.0


def test_live_cli_json_summary_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "live.png"
    r = subprocess.run([sys.executable, "-m", "p2pbak", "market", "simulate", "--live",
                        "--days", "40", "--users", "12", "--json", "--plot", str(png)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    summary = lines[-1]
    assert summary["message_type"] == "summary" and summary["ok"] is True
    assert summary["users_ever_frozen"] == 0 and summary["ledger_zero_sum_every_day"]
    assert len([x for x in lines if x["message_type"] == "status"]) == 40
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "p2pbak", "market", "simulate", "--live",
                          "--users", "1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_a_liar_declaring_1000x_caps_is_counted_for_its_proof_and_balances_still_settle(
) -> None:
    """Daily audits and the proven-supply rule in the live market: one user declares 1000×
    the caps it would choose and raises them 2% a day; the coordinator's S counts what is
    proven (far below what is declared), and balances still return to 0."""
    liar = run_live(LiveSetup(users=12, days=60, liars=1))
    honest = run_live(SHORT)
    for d, h in zip(liar, honest, strict=True):
        assert sum(d.balances) + d.bank == 0 and not any(d.frozen)
        assert all(s <= c * (1 + 1e-12) for s, c in zip(d.supply, d.declared, strict=True))
        assert d.declared[0] > 100 * d.supply[0]  # the lie is not believed
        assert h.declared[0] < 3 * h.supply[0]  # honest sliders are mostly counted
    worst = [max(map(abs, days_of_bill(d))) for d in liar]
    assert worst[-1] <= 3.0 and worst[-1] < max(worst) / 2
