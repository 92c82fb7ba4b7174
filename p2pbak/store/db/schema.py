"""Versioned schema of the coordinator database.

`MIGRATIONS[i]` brings the schema from version i to i+1: either a tuple of SQL statements or
an async function of the writer connection. Each runs in its own transaction together with
its row in `schema_version`, so a crash leaves the database at a whole version. Adding a
feature (bank, repair tasks, audits, price history) is appending one entry; never edit or
reorder an entry that has shipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import aiosqlite

from p2pbak.store.db import refs, totals

Migration = Sequence[str] | Callable[[aiosqlite.Connection], Awaitable[None]]

# Version 1: identity, peers, packs and placements, snapshot/index blobs, heartbeats.
# Sizes are integer bytes; times are unix seconds; ids are lowercase hex text.
_V1: tuple[str, ...] = (
    """CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL)""",
    """CREATE TABLE users (
        name TEXT PRIMARY KEY,
        salt BLOB NOT NULL,            -- the client's scrypt salt for the login key
        login_hash BLOB NOT NULL,      -- keyed BLAKE3 of the login key
        login_hash_key BLOB NOT NULL,  -- per-user key of that hash
        keyfile BLOB NOT NULL,         -- wrapped master key, opaque
        created INTEGER NOT NULL)""",
    """CREATE TABLE machines (
        id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        secret_hash BLOB NOT NULL,
        created INTEGER NOT NULL)""",
    "CREATE INDEX machines_user ON machines(user_name)",
    """CREATE TABLE peers (
        id TEXT PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        subnet TEXT NOT NULL,
        space INTEGER NOT NULL,
        upload INTEGER NOT NULL,
        download INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL DEFAULT 0,
        free_bytes INTEGER NOT NULL DEFAULT 0,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER,             -- last heartbeat, NULL before the first
        availability REAL NOT NULL DEFAULT 0.5,
        reputation REAL NOT NULL DEFAULT 1.0,
        state TEXT NOT NULL DEFAULT 'active')""",
    "CREATE INDEX peers_live ON peers(state, last_seen)",
    """CREATE TABLE heartbeats (
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL,
        free_bytes INTEGER NOT NULL)""",
    "CREATE INDEX heartbeats_peer_at ON heartbeats(peer_id, at)",
    """CREATE TABLE grants (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        pack_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        expires INTEGER NOT NULL,
        PRIMARY KEY (user_name, pack_id, fragment_id, peer_id))""",
    "CREATE INDEX grants_expires ON grants(expires)",
    """CREATE TABLE packs (
        pk INTEGER PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        id TEXT NOT NULL,
        machine_id TEXT REFERENCES machines(id) ON DELETE SET NULL,
        k INTEGER NOT NULL,
        n INTEGER NOT NULL,
        repair INTEGER NOT NULL,
        success INTEGER NOT NULL,
        length INTEGER NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (user_name, id))""",
    """CREATE TABLE fragments (
        pack_pk INTEGER NOT NULL REFERENCES packs(pk) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        peer_id TEXT NOT NULL REFERENCES peers(id),
        stored INTEGER NOT NULL,
        PRIMARY KEY (pack_pk, idx),
        UNIQUE (pack_pk, peer_id))""",
    "CREATE INDEX fragments_peer ON fragments(peer_id)",
    """CREATE TABLE blobs (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        kind TEXT NOT NULL,            -- 'snapshot' | 'index'
        id TEXT NOT NULL,
        blob BLOB NOT NULL,            -- encrypted, opaque
        size INTEGER NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (user_name, kind, id))""",
)

_BANK: tuple[str, ...] = (
    """CREATE TABLE accounts (
        name TEXT PRIMARY KEY,         -- 'bank' or 'user:<user name>'
        balance INTEGER NOT NULL DEFAULT 0,  -- µc, always the sum of its entries
        created INTEGER NOT NULL)""",
    """CREATE TABLE transactions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,            -- backup | storage | retrieval | store | fetch | upkeep
        ref TEXT UNIQUE,               -- what is paid for, once: 'ticket:<id>', 'pack:...'
        user_name TEXT,                -- the consumer served, if any
        quantity INTEGER NOT NULL DEFAULT 0,  -- bytes moved, or byte-seconds stored
        at INTEGER NOT NULL)""",
    "CREATE INDEX transactions_at ON transactions(at)",
    """CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        txn INTEGER NOT NULL REFERENCES transactions(id),
        movement INTEGER NOT NULL,     -- the two entries of one movement share it
        account TEXT NOT NULL REFERENCES accounts(name),
        amount INTEGER NOT NULL)""",
    "CREATE INDEX entries_account ON entries(account)",
    "CREATE INDEX entries_txn ON entries(txn, movement)",
    """CREATE TABLE price_history (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        rule TEXT NOT NULL,
        p_upload REAL NOT NULL,        -- prices in effect from `at` (p_S = 1)
        p_download REAL NOT NULL,
        prices TEXT NOT NULL,          -- PriceTable in µc, JSON
        g_upload REAL,                 -- g(p) measured at the previous prices (null: no market)
        g_download REAL,
        supply TEXT,                   -- aggregate maximum supply S, JSON (per day)
        demand TEXT,                   -- aggregate demand d, JSON (per day)
        state TEXT NOT NULL,           -- the update rule's state, JSON
        note TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE alerts (
        user_name TEXT PRIMARY KEY,
        level TEXT NOT NULL,           -- 'low' | 'frozen'
        raised INTEGER NOT NULL,
        emailed INTEGER NOT NULL DEFAULT 0)""",
)


_REPAIR: tuple[str, ...] = (
    """CREATE TABLE availability_samples (
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        seconds INTEGER NOT NULL,      -- how much time this observation stands for
        online INTEGER NOT NULL,       -- 1 seen online (heartbeat or passed test), 0 not
        source TEXT NOT NULL)          -- 'heartbeat' | 'test'""",
    "CREATE INDEX availability_samples_peer_at ON availability_samples(peer_id, at)",
    """CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,            -- repair | audit | test-store | test-fetch
        pack_pk INTEGER REFERENCES packs(pk) ON DELETE CASCADE,
        target TEXT REFERENCES peers(id) ON DELETE CASCADE,  -- peer audited or tested
        fragment_id TEXT,              -- audit / test: the fragment fetched
        size INTEGER,
        seed BLOB,                     -- test: the test fragment's bytes derive from it
        priority INTEGER NOT NULL DEFAULT 0,  -- lower runs first
        state TEXT NOT NULL DEFAULT 'queued',
        worker TEXT,
        lease_expires INTEGER,
        not_before INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        finished INTEGER,
        result TEXT)""",
    "CREATE INDEX tasks_queue ON tasks(state, priority, id)",
    "CREATE UNIQUE INDEX tasks_open_repair ON tasks(pack_pk)"
    " WHERE kind = 'repair' AND state IN ('queued', 'leased')",
    "CREATE UNIQUE INDEX tasks_open_check ON tasks(target, kind)"
    " WHERE kind != 'repair' AND state IN ('queued', 'leased')",
    """CREATE TABLE task_grants (
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        PRIMARY KEY (task_id, idx, peer_id))""",
    """CREATE TABLE audits (
        id INTEGER PRIMARY KEY,
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        auditor TEXT NOT NULL,
        fragment_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        outcome TEXT NOT NULL)         -- ok | failed | offline""",
    "CREATE INDEX audits_peer ON audits(peer_id, id)",
)


_GARBAGE: tuple[str, ...] = (
    """CREATE TABLE deletions (
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        queued INTEGER NOT NULL,
        PRIMARY KEY (peer_id, fragment_id))""",
)


_LOCKS: tuple[str, ...] = (
    """CREATE TABLE repo_locks (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        machine_id TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
        exclusive INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (user_name, machine_id))""",
)

MIGRATIONS: list[Migration] = [
    _V1,
    _BANK,  # the bank: accounts, ledger, price history, alerts
    _REPAIR,  # repair, audits, testing: tasks, audits, availability samples
    _GARBAGE,  # delete lists: fragments suppliers should drop
    _LOCKS,  # repository locks across a user's machines (backup, prune)
]

# work allocation moves fragments toward low balances (a flagged fragment is rebuilt on a
# new supplier like a leaving peer's); each price row keeps the overheads its q came from
MIGRATIONS.append((
    "ALTER TABLE fragments ADD COLUMN moving INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE price_history ADD COLUMN overheads TEXT",
))

# proof before pay: plans, claims, acknowledgements, evidence
_CLAIMS: tuple[str, ...] = (
    """CREATE TABLE plans (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        pack_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        fragment_size INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (user_name, pack_id, peer_id, fragment_size))""",
    "CREATE INDEX plans_expires ON plans(expires)",
    """CREATE TABLE claims (
        ticket_id TEXT PRIMARY KEY,
        peer_id TEXT NOT NULL,
        fragment_id TEXT NOT NULL,
        wire TEXT NOT NULL,
        expires INTEGER NOT NULL)""",
    "CREATE INDEX claims_fragment ON claims(fragment_id)",
    """CREATE TABLE acks (
        ticket_id TEXT PRIMARY KEY,
        machine_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        fragment_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        at INTEGER NOT NULL)""",
    "CREATE INDEX acks_fragment ON acks(fragment_id, peer_id)",
    # the Merkle root (net.proofs) the consumer sent at commit, checked by audits
    "ALTER TABLE fragments ADD COLUMN merkle_root TEXT",
    """CREATE TABLE evidence (
        ref TEXT PRIMARY KEY,          -- the ledger transaction's ref
        ticket_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        fragment_id TEXT NOT NULL,
        kind TEXT NOT NULL,            -- 'placement' | 'ack'
        at INTEGER NOT NULL)""",
)

MIGRATIONS.append(_CLAIMS)

# background job runs, counted across every coordinator sharing the database (each run
# happens under the job's lock, on one coordinator)
MIGRATIONS.append((
    """CREATE TABLE job_runs (
        name TEXT PRIMARY KEY,
        runs INTEGER NOT NULL DEFAULT 0,
        last_run_ms INTEGER NOT NULL,  -- unix milliseconds: periods can be under 1 s
        last_by TEXT NOT NULL)""",
))

# supply counts what is proven (store/db/supply.py): every cap a peer announced or set,
# so caps that swing faster than the price hold count at their lowest (NULL: no cap)
MIGRATIONS.append((
    """CREATE TABLE cap_history (
        id INTEGER PRIMARY KEY,
        peer_id TEXT NOT NULL REFERENCES peers(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        space INTEGER,
        upload INTEGER,
        download INTEGER)""",
    "CREATE INDEX cap_history_peer_at ON cap_history(peer_id, at)",
))

# a supply cap may be zero (space: lend nothing), so no cap is NULL, not 0 (peer caps)
MIGRATIONS.append(tuple(
    stmt.format(c=c) for c in ("space", "upload", "download") for stmt in (
        "ALTER TABLE peers ADD COLUMN {c}_cap INTEGER",
        "UPDATE peers SET {c}_cap = NULLIF({c}, 0)",
        "ALTER TABLE peers DROP COLUMN {c}",
        "ALTER TABLE peers RENAME COLUMN {c}_cap TO {c}")))

# repository locks per holder (one run of a command), not per machine: two restores of
# one machine share, and a prune there waits for them (their command names the holder)
MIGRATIONS.append((
    """CREATE TABLE repo_holds (
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        machine_id TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
        holder TEXT NOT NULL,
        command TEXT NOT NULL DEFAULT '',
        exclusive INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (user_name, holder))""",
    "INSERT INTO repo_holds(user_name, machine_id, holder, exclusive, expires)"
    " SELECT user_name, machine_id, machine_id, exclusive, expires FROM repo_locks",
    "DROP TABLE repo_locks",
    "ALTER TABLE repo_holds RENAME TO repo_locks",
))

# where low-balance alerts go (`init --email`, `p2pbak email`); NULL: the user name if it is
# an address (coordinator/accounts.py), else nowhere
MIGRATIONS.append(("ALTER TABLE users ADD COLUMN email TEXT",))

# how each peer is reached, in the database so that every coordinator on it sees the same
# (store/db/reach.py): the URLs it was dialled back at, which of them a router maps, the
# relay it offers, the relay that carries it (transfer tickets to it name that relay), and
# the direct links it has hole-punched
MIGRATIONS.append((
    """CREATE TABLE reach (
        peer_id TEXT PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
        public TEXT NOT NULL DEFAULT '',     -- URLs dialled back, one per line
        mapped TEXT NOT NULL DEFAULT '',     -- those of them a router maps, one per line
        mapped_by TEXT NOT NULL DEFAULT '',  -- UPnP | NAT-PMP
        offer TEXT,                          -- where it relays for others, if it offers to
        relay_id TEXT,                       -- who carries it: a peer id or 'coordinator'
        punched INTEGER NOT NULL DEFAULT 0,  -- links hole-punched since the peer started
        punched_at INTEGER)""",              # when it last said so
    "CREATE INDEX reach_relay ON reach(relay_id)",
))

# per-user stored and per-peer held bytes, kept by triggers (store/db/totals.py): the storage
# and price jobs read them instead of every fragment; backfilled from the rows held
MIGRATIONS.append(totals.migrate)

# PostgreSQL checks the ledger entries' references once per statement, not per row
# (store/db/refs.py): the storage job writes millions of entries an hour at 1M peers
MIGRATIONS.append(refs.migrate)

# the packs with a fragment flagged to move (work allocation, store/db/tasks.py
# placements_on): a partial index holds only the few flagged rows, where the check
# "no fragment of this pack is moving" would otherwise scan every fragment
MIGRATIONS.append((
    "CREATE INDEX IF NOT EXISTS fragments_moving ON fragments(pack_pk) WHERE moving != 0",
))
