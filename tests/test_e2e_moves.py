"""Work allocation's moves on a real grid (§2.4): a flagged fragment is copied elsewhere.

One user backs up a small tree onto eight peers; two more join, holding nothing. One
placement of one pack is then flagged to move in the coordinator's database (standing
for the move job's decision), and the pack's other fragments are hidden from their
holders meanwhile, so only a copy can succeed. The checker queues the pack, a peer agent
copies that one fragment (no decode) onto a peer that held none of the pack, the placement
moves (same fragment id, n placements, flag gone), the old
holder deletes its copy, and the bank pays the worker for one upload and one download of
the fragment, not for the k downloads a rebuild costs. The backup still restores.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import Grid
from p2pbak.market.bank import BANK
from p2pbak.market.supply import GB
from p2pbak.store.db.bank import user_account
from tests.e2e_repair_support import HEARTBEAT, SERVE_ARGS, codes, placed_on, query, wait_until
from tests.grid import make_grid_fixture, random_files, summary

pytestmark = pytest.mark.slow

# no audits: they would fail on the fragments hidden below, which is not what is tested
grid_fixture = make_grid_fixture(8, heartbeat=HEARTBEAT, serve_args=(
    *SERVE_ARGS[:SERVE_ARGS.index("--audit-interval")], "--audit-interval", "3600",
    *SERVE_ARGS[SERVE_ARGS.index("--audit-interval") + 2:]))


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = random_files(tmp_path_factory.mktemp("moves") / "src", 2, 300, seed=15)
    (root / "note.txt").write_text("moved, not rebuilt\n")
    return root


def flag_moving(grid: Grid, pack_pk: int, index: int) -> None:
    """What the move job decides: this placement is to move (store.repair.mark_moving)."""
    conn = sqlite3.connect(grid.db, timeout=10)
    try:
        with conn:
            cur = conn.execute("UPDATE fragments SET moving = 1 WHERE pack_pk = ? AND idx = ?",
                               (pack_pk, index))
        assert cur.rowcount == 1
    finally:
        conn.close()


def placement(grid: Grid, pack_pk: int, index: int) -> tuple[str, str, int, int]:
    """(peer id, fragment id, size, moving) of one placement."""
    rows = query(grid, "SELECT peer_id, fragment_id, size, moving FROM fragments"
                       " WHERE pack_pk = ? AND idx = ?", (pack_pk, index))
    assert len(rows) == 1
    return rows[0]


def has_file(storage: Path, fragment_id: str) -> bool:
    return any(f.is_file() for f in (storage / "fragments").rglob(fragment_id))


@contextlib.contextmanager
def only_the_flagged_copy_served(grid: Grid, pack_pk: int, index: int) -> Iterator[None]:
    """Hide every other fragment of the pack from its holder's agent meanwhile: a worker
    that rebuilt (fetching k) would find too few, one that copies needs none of them."""
    hidden = []
    for peer_id, fragment_id in query(grid, "SELECT peer_id, fragment_id FROM fragments"
                                            " WHERE pack_pk = ? AND idx != ?", (pack_pk, index)):
        (path,) = (grid.peer_by_id(peer_id).storage / "fragments").rglob(fragment_id)
        hidden.append((path, path.rename(path.with_name(path.name + ".hidden"))))
    try:
        yield
    finally:
        for path, moved in hidden:
            moved.rename(path)


def test_flagged_fragment_is_copied_to_a_new_peer_and_paid_as_a_copy(
        grid: Grid, src: Path, tmp_path: Path) -> None:
    alice = grid.add_user("alice", machine="laptop")
    summary(grid.cli("backup", str(src), "--json", config=alice))
    grid.add_peers(2)  # non-holders to move onto, whatever n placement chose
    # the pack with the largest fragments: a copy and a rebuild pay visibly different sums
    pack_id, pack_pk = query(grid, "SELECT p.id, p.pk FROM packs p JOIN fragments f"
                                   " ON f.pack_pk = p.pk ORDER BY f.size DESC, p.pk LIMIT 1")[0]
    k, n = codes(grid)[pack_id]
    holders_before = placed_on(grid)[pack_id]
    assert len(holders_before) == n
    assert not query(grid, "SELECT 1 FROM tasks WHERE kind = 'repair' AND pack_pk = ?",
                     (pack_pk,))
    index = 0
    old_peer, fragment_id, size, _ = placement(grid, pack_pk, index)
    old = grid.peer_by_id(old_peer)
    assert has_file(old.storage, fragment_id)

    with only_the_flagged_copy_served(grid, pack_pk, index):
        flag_moving(grid, pack_pk, index)
        wait_until(lambda: placement(grid, pack_pk, index)[0] != old_peer, 60,
                   "the flagged placement moved", grid)

    new_peer, new_fid, new_size, moving = placement(grid, pack_pk, index)
    new = grid.peer_by_id(new_peer)
    assert new.process.alive() and new.name not in holders_before
    assert (new_fid, new_size, moving) == (fragment_id, size, 0)
    assert has_file(new.storage, fragment_id)
    holders_after = placed_on(grid)[pack_id]
    assert len(holders_after) == n and holders_after == holders_before - {old.name} | {new.name}
    assert query(grid, "SELECT count(*) FROM fragments WHERE moving")[0][0] == 0

    # the old copy was on its holder's delete list; its agent removed it
    wait_until(lambda: not has_file(old.storage, fragment_id), 60,
               "the old holder deleted its copy", grid)

    # the worker was paid for one copy: size × (p_U + p_D), not size × (p_U + k·p_D)
    tasks = query(grid, "SELECT id, worker, state, result FROM tasks"
                        " WHERE kind = 'repair' AND pack_pk = ?", (pack_pk,))
    assert len(tasks) == 1
    task_id, worker, state, result = tasks[0]
    assert state == "done" and json.loads(result) == {"moved": 1}
    assert worker not in {p.peer_id for p in grid.peers if p.name in holders_before}
    (owner,) = query(grid, "SELECT user_name FROM machines WHERE id = ?", (worker,))[0]
    prices = json.loads(query(grid, "SELECT prices FROM price_history"
                                    " ORDER BY id DESC LIMIT 1")[0][0])
    paid = (prices["upload"] * size + prices["download"] * size) // GB
    assert 0 < paid < (prices["upload"] * size + prices["download"] * size * k) // GB
    ledger = query(grid, "SELECT t.kind, t.quantity, e.account, e.amount FROM transactions t"
                         " JOIN entries e ON e.txn = t.id WHERE t.ref = ?", (f"task:{task_id}",))
    assert {(kind, qty) for kind, qty, _, _ in ledger} == {("upkeep", 2 * size)}
    credits = {account: amount for _, _, account, amount in ledger if amount > 0}
    assert credits == {user_account(owner): paid}
    assert sum(amount for _, _, account, amount in ledger if account == BANK) == -paid

    r = grid.cli("restore", "latest", "--target", str(tmp_path), "--json", config=alice)
    summary(r)
    assert compare_trees(src, restored_root(tmp_path, src)) == []
