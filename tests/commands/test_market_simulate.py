"""`p2pbak market simulate` and `market sweep`, run as real processes."""

import json
import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pbak", "market", *args],
                          capture_output=True, text=True, timeout=120)


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_simulate_json_converges_and_reports(tmp_path: Path) -> None:
    png = tmp_path / "run.png"
    r = run("simulate", "--agents", "15", "--start-factor", "100", "--seed", "3",
            "--json", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stdout)
    summary = lines[-1]
    assert summary["message_type"] == "summary"
    assert summary["converged"] is True and summary["negative_prices"] is False
    statuses = [x for x in lines if x["message_type"] == "status"]
    assert len(statuses) == summary["rounds"] + 1
    assert statuses[-1]["gap"] <= summary["tol"]
    b = summary["buffers"]
    assert max(b) / min(b) < 1.01  # equal buffers at the end (Definition 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_paper_rule_far_start_reports_failure() -> None:
    r = run("simulate", "--agents", "15", "--start-factor", "1000", "--update", "paper",
            "--rounds", "30", "--seed", "1", "--angle", "0.4")
    assert r.returncode == 0, r.stderr
    assert "did not converge" in r.stdout


def test_simulate_bad_input_is_one_line_error() -> None:
    for args in (["--update", "walras"], ["--lag", "0"], ["--start-factor", "0.5"],
                 ["--agents", "1"], ["--noise", "-1"]):
        r = run("simulate", *args)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_sweep_json_rows() -> None:
    r = run("sweep", "--trials", "2", "--factors", "3,30", "--agents", "10", "--rounds",
            "30", "--json")
    assert r.returncode == 0, r.stderr
    rows = _lines(r.stdout)
    assert len(rows) == 4
    keys = {"update", "factor", "trials", "converged", "median_rounds", "max_rounds",
            "negative_prices"}
    assert all(keys <= set(x) for x in rows)
    safe = [x for x in rows if x["update"] == "safe"]
    assert all(x["converged"] == 2 and x["negative_prices"] == 0 for x in safe)


def test_sweep_table_and_bad_factors() -> None:
    r = run("sweep", "--trials", "1", "--factors", "2", "--agents", "8", "--rounds", "20")
    assert r.returncode == 0, r.stderr
    assert "safe" in r.stdout and "paper" in r.stdout
    bad = run("sweep", "--factors", "ten")
    assert bad.returncode != 0 and "--factors" in bad.stderr and "Traceback" not in bad.stderr
