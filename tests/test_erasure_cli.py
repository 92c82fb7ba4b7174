"""`p2pbak market erasure` as a user runs it."""

from __future__ import annotations

import json
import subprocess

from p2pbak.localgrid.grid import run_cli


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["market", "erasure", *args], timeout=60)


def test_paper_figures_as_json() -> None:
    done = cli("--availability", "0.5", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["replication_copies"] == 17
    assert 2.8 <= doc["factor"] <= 3.4
    assert abs(doc["n"] / doc["k"] - doc["factor"]) < 1e-3
    assert doc["availability_probability"] >= 0.99999 and doc["meets_target"] is True


def test_human_output_and_small_grid() -> None:
    done = cli("-a", "0.5")
    assert done.returncode == 0
    assert "17 copies" in done.stdout and "k=64 of n=185" in done.stdout
    small = cli("-a", "0.5", "--peers", "10", "--json")
    assert small.returncode == 0
    doc = json.loads(small.stdout)
    assert doc["n"] <= 10 and doc["meets_target"] is False and 3 * doc["k"] <= 2 * doc["n"]
    assert "out of reach" in small.stderr


def test_bad_input_is_one_line() -> None:
    for args in (["-a", "1.5"], ["-a", "0"], ["-a", "0.5", "--target", "1"],
                 ["-a", "0.5", "-t", "-2"]):
        done = cli(*args)
        assert done.returncode in (1, 2), args
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "between 0 and 1" in done.stderr
    assert cli().returncode == 2  # --availability is required
