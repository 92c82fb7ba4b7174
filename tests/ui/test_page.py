"""`p2pbak ui`, the settings window of §3.1, against a real coordinator, in a real browser.

The browser tests drive Debian's chromium through Playwright (never `playwright install`);
they skip when no chromium binary is present (.ci/run installs it). The
screenshot goes to $P2PBAK_ARTIFACTS, else the test's tmp_path; its path is printed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pbak.localgrid.grid import HOST, Grid, free_port, spawn, wait_http
from tests.support.grid import GridSpec, summary
from tests.support.settings_page import (
    artifacts,
    browser_fixture,  # noqa: F401  (the `browser` fixture)
    set_slider,
    settings_url,
    settle,
    thick,
    total,
)

GB = 10**9


GRID = GridSpec(peers=0)  # a coordinator alone: these users lend nothing yet


@pytest.fixture(scope="module")
def una(grid: Grid) -> Path:
    return grid.add_user("una")


@pytest.fixture(scope="module")
def page_url(grid: Grid, una: Path) -> Iterator[str]:
    proc = spawn("ui", ["ui", "--no-browser", "--json", "--port", "0", "--config", str(una)],
                 grid.root / "logs" / "ui.log", "")
    try:
        url = settings_url(proc)
        yield url
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _base(url: str) -> str:
    return url.split("?", 1)[0].rstrip("/")


@pytest.mark.slow
def test_the_url_needs_its_token(page_url: str) -> None:
    assert page_url.startswith(f"http://{HOST}:") and "?token=" in page_url
    base, token = _base(page_url), page_url.split("token=", 1)[1]
    for path in ("/", "/api/settings", "/api/balance?space=1", "/static/app.js"):
        assert _get(base + path)[0] == 403
        assert _get(f"{base}{path}{'&' if '?' in path else '?'}token=x{token}")[0] == 403
    status, html = _get(page_url)
    assert status == 200 and html.count('type="range"') == 3 and "<svg" in html
    assert "cdn" not in html.lower() and "https://" not in html  # works offline
    status, body = _get(f"{base}/api/balance?space=lots&token={token}")
    assert status == 400 and "whole number" in json.loads(body)["error"]


@pytest.mark.slow
def test_balance_route_prices_the_paper_example_locally(page_url: str) -> None:
    base, token = _base(page_url), page_url.split("token=", 1)[1]

    def total(space: int, upload: int) -> int:
        status, body = _get(f"{base}/api/balance?space={space}&upload={upload}&download=0"
                            f"&token={token}")
        assert status == 200
        return int(json.loads(body)["total_bytes"])

    assert total(50 * GB, 5000) == total(100 * GB, 5000) > 0  # §3.1's example
    assert total(10 * GB, 5000) < total(20 * GB, 5000)  # inside the thick region


# -- in a real browser -----------------------------------------------------------------

@pytest.mark.slow
def test_page_in_chromium(browser: Any, page_url: str, grid: Grid, una: Path,
                          tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    assert page.goto(_base(page_url) + "/").status == 403
    assert page.goto(page_url).status == 200
    page.wait_for_selector("body[data-busy='0']")
    # three labelled sliders and a pie
    assert page.locator("input[type=range]").count() == 3
    for name in ("space", "upload", "download"):
        assert page.locator(f"label[for={name}]").count() == 1
    assert page.locator("#pie path").count() == 2

    # keyboard: Home, then four steps right is 5 KB/s
    page.focus("#upload")
    page.keyboard.press("Home")
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    settle(page)
    assert page.get_attribute("#upload", "aria-valuetext") == "5 KB/s"

    # §3.1: at 5 KB/s, space from 50 GB to 100 GB leaves backup space unchanged...
    set_slider(page, "space", 50 * GB)
    at50, thick50 = total(page), thick(page, "space")
    assert "adds no backup space" in page.inner_text("#space-hint")
    set_slider(page, "space", 100 * GB)
    assert total(page) == at50 > 0
    assert thick(page, "space") == pytest.approx(thick50)
    # ...while inside the thick region it changes it
    set_slider(page, "space", 10 * GB)
    at10 = total(page)
    set_slider(page, "space", 20 * GB)
    assert at10 < total(page) < at50
    assert page.inner_text("#space-hint").startswith("Counts up to")
    # raising upload widens the space region (the other sliders' thick lines move)
    set_slider(page, "upload", 10_000)
    assert thick(page, "space") > thick50
    set_slider(page, "upload", 5_000)

    # hidden market: no balance or price until "Details" is opened
    page.wait_for_function("!document.getElementById('state-lines').innerText"
                           ".includes('Loading')")
    assert "Balance" not in page.inner_text("main") + page.inner_text("#state-lines")
    page.click("#details summary")
    page.wait_for_function("document.getElementById('details-body').innerText"
                           ".includes('Balance')")
    page.click("#details summary")

    # Apply saves what `supply set` would, and says when it takes effect
    page.click("#apply")
    page.wait_for_function("document.getElementById('apply-msg').innerText"
                           ".startsWith('Saved')")
    assert "next heartbeat" in page.inner_text("#apply-msg")
    shown = summary(grid.cli("supply", "show", "--json", config=una))
    assert shown["caps"] == {"space": 20 * GB, "upload": 5_000, "download": None}
    assert int(shown["total_bytes"]) == total(page)

    shot = artifacts(tmp_path) / "settings.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000

    # readable at 200% zoom: half the CSS width, nothing wider than the window
    page.set_viewport_size({"width": 550, "height": 900})
    page.wait_for_timeout(100)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.close()


@pytest.mark.slow
def test_peer_run_serves_the_page_and_status_shows_it(grid: Grid) -> None:
    cfg = grid.add_user("vic")
    port = free_port()
    proc = spawn("vic", ["peer", "run", "--storage", str(cfg.parent / "storage"), "--listen",
                         f"{HOST}:{port}", "--config", str(cfg), "--json",
                         "--heartbeat-interval", "0.5"],
                 grid.root / "logs" / "vic.log", f"http://{HOST}:{port}")
    try:
        wait_http(f"{proc.url}/v1/health", proc)
        url = settings_url(proc)
        assert _get(url)[0] == 200 and _get(_base(url) + "/")[0] == 403
        shown = summary(grid.cli("status", "--json", config=cfg))
        assert shown["settings_url"] == url
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()
    assert summary(grid.cli("status", "--json", config=cfg))["settings_url"] is None


@pytest.mark.slow
def test_offline_the_sliders_still_work_and_apply_saves_locally(grid: Grid,
                                                                tmp_path: Path) -> None:
    from p2pbak.config import load

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'coordinator = "http://{HOST}:{free_port()}"\nuser = "w"\n'
                   'machine_id = "m"\nsecret = "s"\n')
    proc = spawn("ui-offline", ["ui", "--no-browser", "--json", "--config", str(cfg)],
                 tmp_path / "ui.log", "")
    try:
        url = settings_url(proc)
        base, token = _base(url), url.split("token=", 1)[1]
        status, body = _get(f"{base}/api/settings?token={token}")
        assert status == 200 and "could not be reached" in json.loads(body)["note"]
        status, body = _get(f"{base}/api/balance?space={50 * GB}&upload=5000&token={token}")
        assert status == 200 and int(json.loads(body)["total_bytes"]) > 0
        req = urllib.request.Request(f"{base}/api/apply?token={token}", method="POST",
                                     data=json.dumps({"upload": "5KB/s"}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = json.load(r)
        assert not answer["sent"] and "could not be reached" in answer["message"]
        assert load(cfg).supply.upload == 5000
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()
