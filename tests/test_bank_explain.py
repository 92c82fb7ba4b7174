"""`p2pbak market explain`: the paper's worked figures come out of the code."""

from __future__ import annotations

from p2pbak.localgrid.grid import run_cli
from tests.grid import summary


def test_explain_prints_the_papers_figures() -> None:
    fields = summary(run_cli(["market", "explain", "--json"]))
    assert fields["replication_copies"] == 17  # §2.2: 17 copies at 12 h/day for 99.999%
    assert 2.5 <= fields["erasure_factor"] <= 3.5  # "a factor of about 3"
    assert fields["effective_space_gb"] == 10.0  # §2.5: 30 GB × 50% × 2/3
    assert abs(fields["consume_supply_price_ratio"] - 3.0) < 0.25  # "about 3×"
    text = " ".join(run_cli(["market", "explain"]).stdout.split())
    assert "17 copies" in text and "= 10 GB" in text
