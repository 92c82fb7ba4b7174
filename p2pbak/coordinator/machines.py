"""A user's machines, for the routes: list them, revoke one (the SQL is store.db.machines).

Revoking refuses the machine's token from its next request on and disqualifies its peer, so
the checker repairs its fragments onto other suppliers like those of any departed peer.
"""

from __future__ import annotations

from p2pbak.store.db.database import Database
from p2pbak.store.db.machines import MachineRow, list_machines, revoke

__all__ = ["MachineRow", "list_machines", "revoke", "revoke_other"]


async def revoke_other(db: Database, user: str, caller_id: str, machine_id: str) -> str | None:
    """Revoke `machine_id` for `user`; why not (a one-line reason), or None when done."""
    if machine_id == caller_id:
        return "self"
    if len(machine_id) > 64 or not await revoke(db, user, machine_id):
        return "unknown"
    return None
