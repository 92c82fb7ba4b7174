"""Moving up: a real grid's SQLite coordinator database copied to PostgreSQL with
`admin copy-db`, audited on both, then `serve --db postgresql://…` on the copy serves the
same users and snapshots (a new machine recovers, lists the same ids, restores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid, free_port, run_cli, serve
from tests.support.grid import GridSpec, lines, one_line_error, random_files, summary
from tests.support.postgres import Server

pytestmark = pytest.mark.slow
GRID = GridSpec(4)


def test_copy_to_postgresql_audits_both_and_serves_the_same_snapshots(
        grid: Grid, tmp_path: Path, postgres_server: Server) -> None:
    alice = grid.add_user("alice")
    src = random_files(tmp_path / "src", 3, 256, seed=5)
    first = summary(grid.cli("backup", str(src), "--json", config=alice))
    second = summary(grid.cli("backup", str(src), "--tag", "again", "--json", config=alice))
    url = postgres_server.new_database()

    done = summary(run_cli(["admin", "copy-db", "--from", f"sqlite:{grid.db}", "--to", url,
                            "--json"]))
    assert done["ok"] and done["rows"] > 0
    for side in ("source", "target"):
        assert done[side]["ok"] and done[side]["sum"] == 0
    # every ledger entry copied (the running coordinator may have booked more on the source)
    assert done["target"]["entries"] == done["rows_per_table"]["entries"] > 0
    assert done["source"]["entries"] >= done["target"]["entries"]
    assert done["target"]["users_balance"] == -done["target"]["bank_balance"]
    audit = summary(run_cli(["admin", "audit", "--db", url, "--json"]))
    assert audit["ok"] and audit["entries"] == done["target"]["entries"]

    # a second copy onto the now full target is refused, and --force replaces it
    refused = run_cli(["admin", "copy-db", "--from", str(grid.db), "--to", url])
    assert refused.returncode == 1
    assert "is not empty" in one_line_error(refused) and "--force" in refused.stderr
    again = summary(run_cli(["admin", "copy-db", "--from", str(grid.db), "--to", url,
                             "--force", "--json"]))
    assert again["ok"] and again["rows"] >= done["rows"]  # the grid runs on: heartbeats

    moved = serve(url, free_port(), grid.root / "logs" / "moved.log")
    try:
        laptop = tmp_path / "laptop" / "config.toml"
        summary(run_cli(["recover", "--coordinator", moved.url, "--user", "alice",
                         "--config", str(laptop), "--password-file", str(grid.password_file),
                         "--json"]))
        snaps = lines(grid.cli("snapshots", "--json", config=laptop).stdout)
        assert [s["id"] for s in snaps] == [first["snapshot_id"], second["snapshot_id"]]
        summary(grid.cli("restore", "latest", "--target", str(tmp_path / "r"), "--json",
                         config=laptop))
        assert compare_trees(src, restored_root(tmp_path / "r", src)) == []
        assert "Traceback" not in moved.output()
    finally:
        moved.stop()


def test_bad_databases_are_one_line(grid: Grid, tmp_path: Path) -> None:
    missing = run_cli(["admin", "copy-db", "--from", str(tmp_path / "nope.db"),
                       "--to", str(tmp_path / "new.db")])
    assert "no database at" in one_line_error(missing)
    same = run_cli(["admin", "copy-db", "--from", str(grid.db), "--to", f"sqlite:{grid.db}"])
    assert "same database" in one_line_error(same)
    assert not (tmp_path / "new.db").exists()
