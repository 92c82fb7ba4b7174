"""A client session: this machine's config and passphrase, and the unlocked repository."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from p2pbak.config import Config, load, read_passphrase
from p2pbak.store.cache import MetadataCache, cached_keyfile, default_base, repository_id

if TYPE_CHECKING:
    from p2pbak.client.netrepo import NetworkRepository


@dataclass
class Session:
    """A loaded config plus the passphrase: what every data command needs."""

    config: Config
    passphrase: str
    no_cache: bool = False  # --no-cache: fetch index and snapshot blobs, ignore the cache
    retry_lock: float = 0.0  # --retry-lock: seconds to wait for a repository lock
    early: EarlyUnwrap | None = None  # the cached key file, being unwrapped meanwhile


class EarlyUnwrap:
    """The master key unwrapped from the cached copy of the key file, in a thread started
    with the session: scrypt (~0.1 s, it releases the GIL) then overlaps the imports and the
    first coordinator calls. The key stays in this process's memory, for this run only; it
    is used only if the coordinator's key file is the same bytes."""

    def __init__(self, keyfile: bytes, passphrase: str) -> None:
        self.keyfile = keyfile
        self._done = threading.Event()
        self._key: bytes | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._unwrap, args=(passphrase,), name="unwrap",
                         daemon=True).start()  # daemon: a command that fails first exits

    def _unwrap(self, passphrase: str) -> None:
        try:
            # imported here, not at the top: keeps CLI start-up fast (cryptography)
            from p2pbak.datapath.crypto import unwrap_master_key

            self._key = unwrap_master_key(self.keyfile, passphrase)
        except BaseException as exc:  # raised where the key is taken (a wrong passphrase)
            self._error = exc
        finally:
            self._done.set()

    def key(self) -> bytes:
        """The master key (waits for the thread); its error if it failed."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._key is not None
        return self._key


def open_session(config: Path | None, password_file: Path | None = None,
                 password_command: str | None = None, no_cache: bool = False) -> Session:

    cfg = load(config)
    session = Session(cfg, read_passphrase(password_file=password_file,
                                           password_command=password_command), no_cache)
    if not no_cache:
        keyfile = cached_keyfile(default_base(), cfg.coordinator, cfg.user)
        if keyfile is not None:
            session.early = EarlyUnwrap(keyfile, session.passphrase)
    return session


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
    from p2pbak.net.punch import Links

    async with (CoordinatorClient.from_config(session.config) as coord,
                PeerClient(links=Links(coord.observed)) as peers, AsyncExitStack() as held):
        repo = NetworkRepository(coord, peers)
        # the key file needs no lock: fetched while the lock is taken (one round trip less)
        fetch = asyncio.ensure_future(repo.get_keyfile())
        try:
            if lock is not None:
                # backup and prune run under this machine's local lock (commands/backup, prune)
                hold = Hold(exclusive=lock == "exclusive", command=command,
                            machine_locked=command in ("backup", "prune"))
                await held.enter_async_context(repo_lock(coord, hold, session.retry_lock))
            keyfile = await fetch
        finally:
            if not fetch.done():  # the lock failed first
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
        repo.cache = open_cache(session, keyfile)
        early = session.early
        if early is not None and early.keyfile == keyfile:
            master = await asyncio.to_thread(early.key)
        else:  # no cached copy, or the key file changed (key passwd on another machine)
            master = await asyncio.to_thread(unwrap_master_key, keyfile, session.passphrase)
        if repo.cache is not None:
            repo.cache.put_keyfile(keyfile)  # after the unwrap: only a key file that opens
        try:
            yield repo, master
        finally:  # before the command's summary, which reads the stats afterwards
            repo.stats.links_punched = peers.links.punched if peers.links else 0


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
