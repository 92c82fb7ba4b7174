"""The running coordinator: its database, ticket signing key, settings and jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from p2pbak.coordinator.groupcommit import GroupCommit
from p2pbak.coordinator.jobs import JobRunner, builtin_jobs
from p2pbak.coordinator.model import MarketSettings, RepairSettings
from p2pbak.net import tickets
from p2pbak.store.db import peers as coordinator_peers
from p2pbak.store.db import reach as reach_store
from p2pbak.store.db import users as coordinator_users
from p2pbak.store.db.database import Database
from p2pbak.store.db.peers import Beat
from p2pbak.store.db.users import Machine

DEFAULT_ONLINE_WINDOW = 180  # seconds since the last heartbeat for a peer to count online
TICKET_KEY_SETTING = "ticket_signing_key"


@dataclass
class Coordinator:
    db: Database
    signing_key: Ed25519PrivateKey
    online_window: int = DEFAULT_ONLINE_WINDOW
    jobs: JobRunner = field(default_factory=lambda: JobRunner([]))
    market: MarketSettings = field(default_factory=MarketSettings)
    repair: RepairSettings = field(default_factory=RepairSettings)
    heartbeats: GroupCommit[Beat, bool] = field(init=False)
    machines: GroupCommit[str, Machine | None] = field(init=False)  # callers' credentials

    def __post_init__(self) -> None:
        self.heartbeats = GroupCommit(lambda beats: coordinator_peers.heartbeats(self.db, beats))
        self.machines = GroupCommit(lambda ids: coordinator_users.machines(self.db, ids))

    @cached_property
    def ticket_key(self) -> str:
        """The public key peers verify tickets with (hex; every heartbeat answers it)."""
        return tickets.public_key_hex(self.signing_key)

    def ticket(self, *, op: str, fragment: str, size: int, from_: str, to: str,
               via: str = "") -> str:
        """A signed ticket. `via` is the relay carrying `to` (from `relays_of`), named in
        the tickets of the ops that move bytes: that relay is paid when the transfer is
        (billing.py)."""
        return tickets.issue(self.signing_key, op=op, fragment=fragment, size=size,
                             from_=from_, to=to, via=via if op in tickets.PAID_OPS else "")

    async def relays_of(self, peer_ids: Sequence[str]) -> dict[str, str]:
        """The relay carrying each relayed peer of `peer_ids`, as POST /v1/reach assigned
        it (in the database: every coordinator on it names the same relay)."""
        return await reach_store.relays_of(self.db, peer_ids)

    @classmethod
    async def start(cls, db_path: Path, online_window: int = DEFAULT_ONLINE_WINDOW,
                    run_jobs: bool = True,
                    market: MarketSettings | None = None,
                    repair: RepairSettings | None = None) -> Coordinator:
        """Open (and migrate) the database, load or create the signing key, start jobs."""
        db = await Database.open(db_path)
        try:
            key = await signing_key(db)
        except BaseException:
            await db.close()
            raise
        market = market or MarketSettings()
        repair = repair or RepairSettings()
        coord = cls(db, key, online_window,
                    JobRunner(builtin_jobs(online_window, market, repair)), market, repair)
        if run_jobs:
            coord.jobs.start(coord)
        return coord

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.db.close()


async def signing_key(db: Database) -> Ed25519PrivateKey:
    """The ticket signing key, created on first start and kept in the (0600) database."""

    fresh = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw = await coordinator_users.setting_or_create(db, TICKET_KEY_SETTING, fresh)
    return Ed25519PrivateKey.from_private_bytes(raw)
