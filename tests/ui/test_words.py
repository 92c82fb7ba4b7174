"""The settings page's words and slider positions (p2pbak.ui.state, p2pbak.ui.sliders)."""

from __future__ import annotations

from pathlib import Path

from p2pbak.config import Config, Supply
from p2pbak.ui import sliders
from p2pbak.ui.state import _alerts, _credits, _lines

GB = 10**9


def test_sliders_hold_the_paper_positions_and_the_current_cap() -> None:
    space, upload = sliders.values("space"), sliders.values("upload")
    assert {50 * GB, 100 * GB} <= set(space) and 5_000 in upload
    assert space[-1] == 0 and upload[-1] == 0  # the last position is "no cap"
    assert space[:-1] == sorted(space[:-1]) and upload[:-1] == sorted(upload[:-1])
    odd = sliders.values("space", current=123_456_789_012)
    assert 123_456_789_012 in odd and odd[:-1] == sorted(odd[:-1])
    assert sliders.values("space", disk_bytes=20_000 * GB)[-2] == 20_000 * GB


def test_alerts_say_what_to_do_and_never_the_balance() -> None:
    assert _alerts({"frozen": False, "low": False, "alert": None}) == []
    low = _alerts({"frozen": False, "low": True, "balance": -123, "alert": None})
    frozen = _alerts({"frozen": True, "low": True, "balance": -999,
                      "alert": {"level": "frozen", "raised": 1}})
    assert "keep its peer agent online" in low[0] and "pause" in low[0]
    assert "restores still work" in frozen[0]
    assert not any("123" in t or "999" in t for t in low + frozen)


def test_state_lines_in_words() -> None:
    cfg = Config(path=Path("/x/config.toml"), coordinator="http://c", user="u",
                 machine_id="m", secret="s", supply=Supply(space=50 * GB))
    status = {"peer_online": True, "peer_url": "http://203.0.113.7:8421",
              "bytes_backed_up": 3 * 2**30, "bytes_stored_for_others": 2**20}
    lines = _lines(cfg, status, [{"created": 1, "size": 5}, {"created": 2, "size": 6}])
    text = " ".join(lines)
    assert "reach this computer at http://203.0.113.7:8421" in text
    assert "Last backup: 1970-01-01 00:00 UTC" in text and "2 snapshots, 3 GiB" in text
    assert "Lending 46.566 GiB" in text and "1 MiB" in text
    offline = " ".join(_lines(cfg, {"peer_online": False}, []))
    assert "No peer agent has run" in offline and "No backup yet" in offline
    assert _credits(-1_500_000) == "-1.5" and _credits(2) == "0.000002"
