"""`check --read-data-subset` on a real grid: n/m groups together read every pack once; a
byte flipped in one fragment of a pack is found, and its holder reported to the coordinator
(which audits it on its own), by the subset that holds that pack and not by the other; bad
values are one line and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pbak.localgrid.grid import Grid, fragment_files
from tests.e2e.test_repair_audit import flip_bytes
from tests.support.e2e_repair import HEARTBEAT, SERVE_ARGS, query, wait_until
from tests.support.grid import GridSpec, lines, one_line_error, random_files, summary

pytestmark = pytest.mark.slow

# no audits of the coordinator's own schedule: one could find the flipped fragment (and the
# peer drop it) before the check does; the check's report still queues one (asserted below)
GRID = GridSpec(5, heartbeat=HEARTBEAT, serve_args=(*SERVE_ARGS[:-4], "--audit-interval",
                                                     "3600", *SERVE_ARGS[-2:]))


def _check(grid: Grid, cfg: Path, *args: str) -> tuple[int, dict, str]:
    r = grid.cli("check", *args, "--json", config=cfg)
    assert "Traceback" not in r.stderr, r.stderr
    found = [m for m in lines(r.stdout) if m.get("message_type") == "summary"]
    assert len(found) == 1, r.stdout + r.stderr
    return r.returncode, found[0], r.stdout + r.stderr


def test_subsets_cover_every_pack_and_find_a_flipped_byte(grid: Grid, tmp_path: Path) -> None:
    cfg = grid.add_user("alice")
    src = random_files(tmp_path / "src", 8, 1024, seed=3)
    summary(grid.cli("backup", str(src), "--json", config=cfg))
    code, whole, _ = _check(grid, cfg, "--read-data")
    assert code == 0 and whole["packs_read"] == whole["packs"] >= 2
    halves = [_check(grid, cfg, "--read-data-subset", f"{n}/2") for n in (1, 2)]
    assert [h[0] for h in halves] == [0, 0]
    assert sum(h[1]["packs_read"] for h in halves) == whole["packs"]
    assert halves[0][1]["read_data_subset"] == "1/2"
    code, share, _ = _check(grid, cfg, "--read-data-subset", "50%")
    assert code == 0 and share["packs_read"] == -(-whole["packs"] // 2)

    # a data pack (the largest fragments): every check reads the tree packs, whatever subset
    pack, found = max(fragment_files(grid).items(), key=lambda kv: kv[1][0][1].stat().st_size)
    name, path = found[0]
    peer = next(p for p in grid.peers if p.name == name)
    flip = tmp_path / "one" / "fragments"
    flip.mkdir(parents=True)
    (flip / path.name).symlink_to(path)  # flip_bytes damages every file under a storage
    assert flip_bytes(tmp_path / "one") == 1
    group = int(pack[:2], 16) % 2 + 1  # restic's grouping: the pack id's first byte
    # the other group first: once the bad holder is reported, the coordinator acts on it
    code, _, out = _check(grid, cfg, "--read-data-subset", f"{3 - group}/2")
    assert code == 0 and "answered wrong" not in out, out  # that pack is not in it
    code, result, out = _check(grid, cfg, "--read-data-subset", f"{group}/2")
    assert code == 1 and f"peer {peer.peer_id} answered wrong" in out
    assert result["problems"] >= 1
    wait_until(lambda: query(grid, "SELECT count(*) FROM audits WHERE peer_id = ? AND"
                                   " outcome = 'failed'", (peer.peer_id,))[0][0] >= 1,
               60, f"the coordinator's own audit of {name}", grid)


@pytest.mark.parametrize("bad", ["0/3", "150%", "x"])
def test_bad_subsets_are_one_line_and_exit_1(grid: Grid, bad: str) -> None:
    cfg = grid.add_user(f"bob{ord(bad[0])}")
    r = grid.cli("check", "--read-data-subset", bad, config=cfg)
    assert r.returncode == 1
    assert "--read-data-subset" in one_line_error(r)
