"""`init --email` and `p2pbak email`: where low-balance alerts go, set at init, shown and
changed later from any machine of the user, every bad address a one-line error."""

from __future__ import annotations

from pathlib import Path
from subprocess import CompletedProcess

import pytest

from p2pbak.localgrid.grid import Grid
from tests.support.grid import GridSpec, one_line_error, summary

GRID = GridSpec(0)  # a coordinator alone: nothing here needs a peer
pytestmark = pytest.mark.slow


def _init(grid: Grid, user: str, *extra: str) -> tuple[Path, CompletedProcess[str]]:
    config = grid.root / "users" / user / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    r = grid.cli("init", "--coordinator", grid.url, "--user", user, "--config", str(config),
                 *extra)
    return config, r


def test_init_email_then_show_change_and_clear(grid: Grid) -> None:
    config, r = _init(grid, "carol", "--email", "carol@example.org", "--json")
    assert summary(r)["email"] == "carol@example.org"
    shown = summary(grid.cli("email", "--json", config=config))
    assert (shown["email"], shown["alerts_to"], shown["changed"]) == (
        "carol@example.org", "carol@example.org", False)
    changed = summary(grid.cli("email", "carol+backup@work.example", "--json", config=config))
    assert changed["alerts_to"] == "carol+backup@work.example" and changed["changed"]
    text = grid.cli("email", config=config).stdout
    assert "low-balance alerts go to carol+backup@work.example" in text
    cleared = summary(grid.cli("email", "--clear", "--json", config=config))
    assert cleared["email"] is None and cleared["alerts_to"] is None  # "carol" is no address


def test_a_user_name_that_is_an_address_is_the_default(grid: Grid) -> None:
    config, r = _init(grid, "dan@example.org", "--json")
    assert "email" not in summary(r)
    shown = summary(grid.cli("email", "--json", config=config))
    assert shown["email"] is None and shown["alerts_to"] == "dan@example.org"


@pytest.mark.parametrize(("n", "bad"), list(enumerate(["erin", "erin@localhost",
                                                       "erin@@example.org", "a b@x.org"])))
def test_bad_addresses_are_one_line_errors(grid: Grid, n: int, bad: str) -> None:
    config, r = _init(grid, f"erin{n}", "--email", bad)
    assert r.returncode == 1 and "is not an e-mail address" in one_line_error(r)
    assert not config.exists()  # refused before anything was created: the name is free
    config, r = _init(grid, f"erin{n}")
    assert r.returncode == 0, r.stderr
    r = grid.cli("email", bad, config=config)
    assert r.returncode == 1 and "is not an e-mail address" in one_line_error(r)
