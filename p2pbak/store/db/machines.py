"""A user's machines: list them, revoke one (SQL only).

A revoked machine keeps its row (its peer's placements still name it until repaired), but
its secret hash becomes a value no token hashes to, so its next request gets 401; its peer
is disqualified, so the checker repairs its fragments onto other suppliers.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pbak.store.db.database import Database
from p2pbak.store.db.peers import DISQUALIFIED, LEFT

REVOKED = b"revoked"  # never equal to a 32-byte secret hash


@dataclass(frozen=True)
class MachineRow:
    id: str
    name: str
    created: int
    revoked: bool
    peer_state: str | None  # None: it never ran a peer agent
    last_seen: int | None


async def list_machines(db: Database, user: str) -> list[MachineRow]:
    rows = await db.all(
        "SELECT m.id, m.name, m.created, m.secret_hash, p.state, p.last_seen FROM machines m"
        " LEFT JOIN peers p ON p.id = m.id WHERE m.user_name = ? ORDER BY m.created, m.id",
        (user,))
    return [MachineRow(r[0], r[1], int(r[2]), bytes(r[3]) == REVOKED, r[4],
                       None if r[5] is None else int(r[5])) for r in rows]


async def revoke(db: Database, user: str, machine_id: str) -> bool:
    """Revoke one of `user`'s machines; False if it has no such machine."""
    async with db.transaction() as conn:
        cur = await conn.execute("UPDATE machines SET secret_hash = ? WHERE id = ? AND"
                                 " user_name = ?", (REVOKED, machine_id, user))
        if cur.rowcount != 1:
            return False
        await conn.execute("UPDATE peers SET state = ? WHERE id = ? AND state NOT IN (?, ?)",
                           (DISQUALIFIED, machine_id, DISQUALIFIED, LEFT))
    return True
