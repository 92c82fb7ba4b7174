"""A client session: this machine's config and passphrase, and the unlocked repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from p2pbak.config import Config, load, read_passphrase
from p2pbak.store.cache import MetadataCache, default_base, repository_id

if TYPE_CHECKING:
    from p2pbak.client.netrepo import NetworkRepository


@dataclass
class Session:
    """A loaded config plus the passphrase: what every data command needs."""

    config: Config
    passphrase: str
    no_cache: bool = False  # --no-cache: fetch index and snapshot blobs, ignore the cache
    retry_lock: float = 0.0  # --retry-lock: seconds to wait for a repository lock


def open_session(config: Path | None, password_file: Path | None = None,
                 password_command: str | None = None, no_cache: bool = False) -> Session:

    cfg = load(config)
    return Session(cfg, read_passphrase(password_file=password_file,
                                        password_command=password_command), no_cache)


@asynccontextmanager
async def unlocked(session: Session, lock: Literal["shared", "exclusive"] | None = None,
                   command: str = "") -> AsyncIterator[tuple[NetworkRepository, bytes]]:
    """This machine's network repository and the master key (the wrapped key file from the
    coordinator, unwrapped here), its HTTP sessions closed on exit. `lock` holds the
    coordinator's repository lock throughout, for `command`: backups, restores and checks
    share it, prune takes it alone (waiting up to session.retry_lock for it)."""
    # imported here, not at the top: keeps CLI start-up fast (asyncio, aiohttp, cryptography)
    import asyncio

    from p2pbak.client.netrepo import NetworkRepository
    from p2pbak.client.repolock import Hold, repo_lock
    from p2pbak.datapath.crypto import unwrap_master_key
    from p2pbak.net.api import CoordinatorClient, PeerClient

    async with (CoordinatorClient.from_config(session.config) as coord, PeerClient() as peers,
                AsyncExitStack() as held):
        if lock is not None:
            # backup and prune run under this machine's local lock (commands/backup, prune)
            hold = Hold(exclusive=lock == "exclusive", command=command,
                        machine_locked=command in ("backup", "prune"))
            await held.enter_async_context(repo_lock(coord, hold, session.retry_lock))
        repo = NetworkRepository(coord, peers)
        keyfile = await repo.get_keyfile()
        repo.cache = open_cache(session, keyfile)
        yield repo, await asyncio.to_thread(unwrap_master_key, keyfile, session.passphrase)


def open_cache(session: Session, keyfile: bytes) -> MetadataCache | None:
    """This repository's metadata cache (store.cache), or None with --no-cache or when the
    cache folder cannot be made (a run then fetches everything, as with --no-cache)."""
    if session.no_cache:
        return None
    cfg = session.config
    try:
        return MetadataCache.open(default_base(), repository_id(cfg.coordinator, cfg.user,
                                                                keyfile),
                                  {"coordinator": cfg.coordinator, "user": cfg.user})
    except OSError:
        return None
