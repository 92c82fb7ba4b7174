"""`key passwd` and `machines list/revoke` on a real grid: the old passphrase is refused, the
new one recovers on a fresh machine, and a revoked machine is refused at once while another
machine still restores."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from p2pbak.config import load
from p2pbak.errors import ExitCode
from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid
from tests.support.grid import GridSpec, lines, one_line_error, random_files, summary

pytestmark = pytest.mark.slow
GRID = GridSpec(4)


def _status_code(grid: Grid, config: Path) -> int:
    cfg = load(config)
    req = urllib.request.Request(f"{grid.url}/v1/status", headers={
        "Authorization": f"Bearer {cfg.machine_id}.{cfg.secret}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_passwd_then_recover_then_revoke(grid: Grid, tmp_path: Path) -> None:
    laptop = grid.add_user("alice", machine="laptop")
    src = random_files(tmp_path / "src", 3, 256, seed=5)
    summary(grid.cli("backup", str(src), "--json", config=laptop))
    new = tmp_path / "new-passphrase"
    new.write_text("a much better passphrase\n")
    new_env = {"P2PBAK_PASSWORD_FILE": str(new)}
    done = summary(grid.cli("key", "passwd", "--new-password-file", str(new), "--json",
                            config=laptop))
    assert done["changed"] is True
    old = grid.cli("snapshots", config=laptop)  # the grid's (old) passphrase
    assert old.returncode == int(ExitCode.WRONG_PASSPHRASE), old.stderr
    one_line_error(old)
    assert grid.cli("snapshots", "--json", config=laptop, env=new_env).returncode == 0
    same = grid.cli("key", "passwd", "--new-password-file", str(new), config=laptop,
                    env=new_env)
    assert "nothing changed" in one_line_error(same)

    desktop = tmp_path / "desktop" / "config.toml"
    recover = ["recover", "--coordinator", grid.url, "--user", "alice", "--machine",
               "desktop", "--config", str(desktop), "--json"]
    refused = grid.cli(*recover)  # old passphrase, fresh machine
    assert refused.returncode == int(ExitCode.WRONG_PASSPHRASE)
    assert not desktop.exists()
    summary(grid.cli(*recover, env=new_env))

    listed = lines(grid.cli("machines", "list", "--json", config=desktop).stdout)
    machines = {m["name"]: m for m in listed if m["message_type"] == "machine"}
    assert set(machines) == {"laptop", "desktop"} and machines["desktop"]["this"]
    assert not machines["laptop"]["revoked"]
    laptop_id = machines["laptop"]["id"]
    assert _status_code(grid, laptop) == 200
    summary(grid.cli("machines", "revoke", laptop_id, "--json", config=desktop))
    assert _status_code(grid, laptop) == 401
    r = grid.cli("snapshots", config=laptop, env=new_env)
    assert r.returncode != 0 and "refused this machine's credentials" in one_line_error(r)
    after = lines(grid.cli("machines", "list", "--json", config=desktop).stdout)
    assert [m["revoked"] for m in after if m.get("id") == laptop_id] == [True]
    summary(grid.cli("restore", "latest", "--target", str(tmp_path / "r"), "--json",
                     config=desktop, env=new_env))
    assert compare_trees(src, restored_root(tmp_path / "r", src)) == []
    self_revoke = grid.cli("machines", "revoke", machines["desktop"]["id"], config=desktop)
    assert "cannot revoke itself" in one_line_error(self_revoke)
    assert "no machine" in one_line_error(grid.cli("machines", "revoke", "f" * 32,
                                                   config=desktop))


def test_revoking_a_peer_machine_disqualifies_its_peer(grid: Grid, tmp_path: Path) -> None:
    peer = grid.peers[0]
    other = tmp_path / "other" / "config.toml"
    summary(grid.cli("recover", "--coordinator", grid.url, "--user", peer.name, "--machine",
                     "spare", "--config", str(other), "--json"))
    summary(grid.cli("machines", "revoke", load(peer.config).machine_id, "--json",
                     config=other))
    listed = lines(grid.cli("machines", "list", "--json", config=other).stdout)
    gone = [m for m in listed if m.get("id") == load(peer.config).machine_id]
    assert gone[0]["revoked"] and gone[0]["peer_state"] == "disqualified"
