"""Helpers of the settings page tests: the URL `p2pbak ui` prints, chromium, the sliders."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pbak.localgrid.grid import Process

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser")
                 if Path(p).exists()), shutil.which("chromium"))


def settings_url(proc: Process, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.output().splitlines():
            if line.startswith("{") and '"settings_url"' in line:
                return str(json.loads(line)["settings_url"])
        if not proc.alive():
            raise AssertionError(f"p2pbak ui exited: {proc.output()}")
        time.sleep(0.1)
    raise AssertionError(f"p2pbak ui printed no settings_url: {proc.output()}")


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Any]:
    """Headless Debian chromium (skip, saying why, where there is none)."""
    if CHROMIUM is None:
        pytest.skip("no chromium binary (apt-get install chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def set_slider(page: Any, name: str, value: int) -> None:
    """Move slider `name` to `value` as a drag would (input events), wait for the redraw."""
    page.evaluate("""([name, value]) => {
        const el = document.getElementById(name);
        const i = state.tables[name].indexOf(value);
        if (i < 0) throw new Error(`${value} is not a position of ${name}`);
        el.value = String(i);
        el.dispatchEvent(new Event('input', {bubbles: true}));
    }""", [name, value])
    settle(page)


def settle(page: Any) -> None:
    page.wait_for_function("""() => {
        if (document.body.dataset.busy !== '0') return false;
        const want = ['space', 'upload', 'download']
            .map((n) => state.tables[n][Number(document.getElementById(n).value)]).join(',');
        return document.body.dataset.caps === want;
    }""")


def total(page: Any) -> int:
    return int(page.get_attribute("#backup-total", "data-bytes"))


def thick(page: Any, name: str) -> float:
    return float(page.eval_on_selector(f"#{name}-thick", "el => el.getBoundingClientRect().width"))


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("P2PBAK_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
