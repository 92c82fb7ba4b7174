"""The settings page of a machine that backs up and lends, on a real grid, in chromium:
the state below the sliders in words (reached at, last backup, snapshots, lending) and the
backup-size chart, and a pie whose "in use" is the backup's real size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pbak.localgrid.grid import Grid, spawn
from tests.support.grid import GridSpec, random_files, summary
from tests.support.settings_page import (
    artifacts,
    browser_fixture,  # noqa: F401  (the `browser` fixture)
    settings_url,
    total,
)

grid = GridSpec(5)


@pytest.fixture(scope="module")
def backed_up(grid: Grid, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    cfg = grid.peers[0].config
    tree = random_files(tmp_path_factory.mktemp("src") / "tree", 3, 256, seed=18)
    return cfg, summary(grid.cli("backup", str(tree), "--json", config=cfg))


@pytest.fixture(scope="module")
def page_url(grid: Grid, backed_up: tuple[Path, dict]) -> Iterator[str]:
    cfg, _ = backed_up
    proc = spawn("ui", ["ui", "--no-browser", "--json", "--config", str(cfg)],
                 grid.root / "logs" / "ui-grid.log", "")
    try:
        yield settings_url(proc)
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()


@pytest.mark.slow
def test_state_in_words_after_a_backup(browser: Any, page_url: str, grid: Grid,
                                       backed_up: tuple[Path, dict], tmp_path: Path) -> None:
    cfg, _ = backed_up
    shown = summary(grid.cli("supply", "show", "--json", config=cfg))
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    assert page.goto(page_url).status == 200
    page.wait_for_selector("body[data-busy='0']")
    page.wait_for_function("!document.getElementById('state-lines').innerText"
                           ".includes('Loading')")
    words = page.inner_text("#state-lines")
    peer_url = grid.peers[0].process.url
    assert f"reach this computer at {peer_url}" in words
    assert "Last backup: " in words and "minutes ago" in words
    assert "1 snapshot, " in words
    assert page.locator("#sizes rect").count() == 1  # backup size over time
    assert int(shown["in_use_bytes"]) > 0
    # the pie says what `supply show` says (the free disk an uncapped space counts drifts)
    assert total(page) == pytest.approx(int(shown["total_bytes"]), rel=1e-2)
    assert "Balance" not in page.inner_text("body")
    # no space cap counts as the disk: its hint follows what that disk buys
    hint, region = page.inner_text("#space-hint"), int(shown["regions"]["space"])
    assert hint.startswith("Counts up to") == (int(shown["market"]["disk_bytes"]) <= region)
    shot = artifacts(tmp_path) / "settings-grid.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.close()
