"""The coordinator's background jobs at scale, on SQLite and on PostgreSQL.

Builds a synthetic coordinator state with set-based SQL (no Python loop per row): N peers,
each the machine of its own user, one 64 MB pack per user in 8 fragments of 16 MB on the
8 next peers, one old backup booked per user (ledger history the jobs must not scan; it
leaves one user in 20 far over 0 and one far under, so there are moves to plan). Then
times each job on it through the real code: hourly storage billing (`accrue_storage`), the
daily price job (`price_job`: overheads, demand, supply), move planning (`moves.plan`) and
the repair checker's scan (`pack_health`). Prints seconds per job, µs per peer, and the
ratio of the largest size's time to the smallest's over the ratio of their sizes (1.0:
linear; above: worse than linear). The issue's targets at 1M peers: price job < 10 s,
storage billing < 60 s, move planning < 30 s. `--jobs` times some of them only (move
planning runs after an untimed storage billing, whose flows it reads); before the jobs
after billing, every peer is marked seen (a 1M build outlasts the online window) and the
database analyzed. `--profile PREFIX` writes each timed job's cProfile statistics.

    python bench/coordinator.py [--peers 10000,100000] [--postgres URL] [--no-sqlite]
        [--jobs moves] [--profile PREFIX]

With --http it drives the HTTP API instead (bench/coordinator_http.py): heartbeats,
placement + commit and receipts against 1 coordinator on SQLite and 1, 2, 3 on one
PostgreSQL, printing requests/s, p50/p99 latency and the ledger's sum after:

    python bench/coordinator.py --http [--seconds 10] [--http-peers 200] [--workers 32]

Without --postgres a throwaway PostgreSQL server is started (Debian's binaries).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from p2pbak.coordinator import billing, moves, prices  # noqa: E402
from p2pbak.coordinator.service import Coordinator  # noqa: E402
from p2pbak.store.db import tasks as store  # noqa: E402
from p2pbak.store.db.database import Database  # noqa: E402
from p2pbak.units import DAY  # noqa: E402

FRAGMENTS = 8
FRAGMENT = 16_000_000
NUMBERS = ("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?)")


def build_sql(n: int, t: int) -> list[tuple[str, tuple]]:
    """The statements that fill an empty, migrated coordinator database with n peers."""
    peer = "'m' || i"
    return [
        (f"{NUMBERS} INSERT INTO users(name, salt, login_hash, login_hash_key, keyfile,"
         " created) SELECT 'u' || i, ?, ?, ?, ?, ? FROM s", (n, b"s", b"h", b"k", b"f", t)),
        (f"{NUMBERS} INSERT INTO machines(id, user_name, name, secret_hash, created)"
         f" SELECT {peer}, 'u' || i, 'm', ?, ? FROM s", (n, b"x", t)),
        (f"{NUMBERS} INSERT INTO peers(id, url, subnet, space, upload, download,"
         " stored_bytes, free_bytes, first_seen, last_seen, availability)"
         f" SELECT {peer}, 'http://h/' || i, '10.' || (i % 250) || '.0.0/16', ?, 0, 0, ?, ?,"
         " ?, ?, 0.5 + (i % 50) / 100.0 FROM s",
         (n, 10**12, FRAGMENTS * FRAGMENT, 10**12, t - DAY, t)),
        (f"{NUMBERS} INSERT INTO packs(pk, user_name, id, machine_id, k, n, repair, success,"
         f" length, created) SELECT i + 1, 'u' || i, 'p' || i, {peer}, 4, {FRAGMENTS}, 6, 7,"
         " ?, ? FROM s", (n, 4 * FRAGMENT, t - 2 * DAY)),
        (f"{NUMBERS}, j(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM j WHERE k + 1 < ?)"
         " INSERT INTO fragments(pack_pk, idx, fragment_id, size, peer_id, stored)"
         " SELECT i + 1, k, 'f' || i || '_' || k, ?, 'm' || ((i + 1 + k) % ?), ? FROM s, j",
         (n, FRAGMENTS, FRAGMENT, n, t - 2 * DAY)),
        # ledger history: one backup per user, long before any window a job reads
        (f"{NUMBERS} INSERT INTO transactions(id, kind, ref, user_name, quantity, at)"
         " SELECT i + 1, 'backup', 'pack:u' || i, 'u' || i, ?, ? FROM s",
         (n, 4 * FRAGMENT, t - 30 * DAY)),
        (f"{NUMBERS} INSERT INTO accounts(name, balance, created) SELECT 'user:u' || i,"
         f" {CHARGE}, ? FROM s", (n, t - 30 * DAY)),
        ("INSERT INTO accounts(name, balance, created) SELECT 'bank', -sum(balance), ?"
         " FROM accounts WHERE name LIKE 'user:%'", (t - 30 * DAY,)),
        (f"{NUMBERS} INSERT INTO entries(txn, movement, account, amount) SELECT i + 1, 0,"
         f" 'user:u' || i, {CHARGE} FROM s", (n,)),
        (f"{NUMBERS} INSERT INTO entries(txn, movement, account, amount) SELECT i + 1, 0,"
         f" 'bank', -({CHARGE}) FROM s", (n,)),
    ]


# what each user's old booking left on its account (µc): most a little under 0; one in
# IMBALANCED (21) far over (it earned more than it spent: its fragments move away) and one far
# under (it needs work: the moves go there), so move planning has work to plan
IMBALANCED, FAR = 21, 1_000_000  # 21: prime to the 250 subnets, so in every one
CHARGE = (f"CASE i % {IMBALANCED} WHEN 0 THEN {FAR} WHEN {IMBALANCED // 2} THEN -{FAR}"
          " ELSE -1000 END")


async def build(db: Database, n: int) -> float:
    t0, t = time.perf_counter(), int(time.time())
    async with db.transaction() as conn:
        for sql, params in build_sql(n, t):
            await conn.execute(sql, params)
    if db.dialect == "postgresql":  # explicit ids: move the sequence past them; fresh stats
        async with db.transaction() as conn:
            await conn.execute("SELECT setval(pg_get_serial_sequence('transactions', 'id'),"
                               " (SELECT max(id) FROM transactions))")
        for table in ("peers", "packs", "fragments", "transactions", "entries", "accounts"):
            await db.scalar(f"SELECT count(*) FROM {table}")  # warm the cache
        async with db.transaction() as conn:
            await conn.execute("ANALYZE")
    else:
        async with db.transaction() as conn:
            await conn.execute("ANALYZE")
    return time.perf_counter() - t0


async def timed(fn: Callable[[], Awaitable[object]], profile: str = "") -> float:
    """Seconds `fn` takes; with `profile`, its cProfile statistics are written there."""
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    await fn()
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    return time.perf_counter() - t0


JOBS = ("billing", "prices", "moves", "checker")


async def one_size(target: Path | str, n: int, jobs: tuple[str, ...] = JOBS,
                   profile: str = "") -> dict[str, float]:
    db = await Database.open(target)
    built = await build(db, n)
    await db.close()
    coord = await Coordinator.start(target, run_jobs=False)
    out = {"build": built}

    async def job(name: str, label: str, fn: Callable[[], Awaitable[object]]) -> None:
        if name in jobs:
            out[label] = await timed(fn, f"{profile}.{name}.{n}" if profile else "")

    try:
        # moves read the window's flows: storage billing runs before them (timed or not)
        if {"billing", "moves"} & set(jobs):
            await billing.accrue_storage(coord)  # the first run sets the mark
            async with coord.db.transaction() as conn:  # the last run: an hour ago
                await conn.execute("UPDATE settings SET value = ? WHERE name = ?",
                                   (str(int(time.time()) - 3600), billing.STORAGE_MARK))
            await job("billing", "storage billing", lambda: billing.accrue_storage(coord))
            if "billing" not in jobs:
                await billing.accrue_storage(coord)
            async with coord.db.transaction() as conn:  # the peers heartbeat meanwhile
                await conn.execute("UPDATE peers SET last_seen = ?", (int(time.time()),))
            async with coord.db.transaction() as conn:  # fresh statistics, as a database
                await conn.execute("ANALYZE")  # whose window filled over a day would have
        if "prices" in jobs:
            await prices.price_job(coord)  # the initial row, then one a day old to update
            async with coord.db.transaction() as conn:
                await conn.execute("UPDATE price_history SET at = at - ?", (DAY,))
        await job("prices", "price job", lambda: prices.price_job(coord))
        planned: list[object] = []
        await job("moves", "move planning",
                  lambda: _extend(planned, moves.plan(coord, DAY)))
        if "moves" in jobs:
            print(f"  {n:,} peers: {len(planned):,} moves planned", flush=True)
        await job("checker", "checker scan", lambda: store.pack_health(coord.db, 0))
        return out
    finally:
        await coord.stop()


async def _extend(out: list[object], items: Awaitable[list]) -> None:
    out.extend(await items)


def report(backend: str, results: dict[int, dict[str, float]]) -> None:
    sizes = sorted(results)
    print(f"\n{backend}")
    jobs = list(results[sizes[0]])
    print(f"  {'job':<16}" + "".join(f"{f'{n:,} peers':>16}" for n in sizes) +
          "      µs/peer  growth vs linear")
    for job in jobs:
        row = "".join(f"{results[n][job]:>15.2f}s" for n in sizes)
        per = results[sizes[-1]][job] / sizes[-1] * 1e6
        growth = ""
        if len(sizes) > 1 and results[sizes[0]][job] > 0:
            ratio = results[sizes[-1]][job] / results[sizes[0]][job]
            growth = f"{ratio / (sizes[-1] / sizes[0]):.2f}"
        print(f"  {job:<16}{row}  {per:>11.1f}  {growth:>8}")


async def run_backend(backend: str, sizes: list[int], new_target: Callable[[int], object],
                      args: argparse.Namespace) -> dict[int, dict[str, float]]:
    results = {}
    jobs = tuple(args.jobs.split(","))
    profile = f"{args.profile}.{backend}" if args.profile else ""
    for n in sizes:
        results[n] = await one_size(new_target(n), n, jobs,  # type: ignore[arg-type]
                                    profile)
        print(f"  {backend} {n:,} peers: " + ", ".join(
            f"{k} {v:.2f}s" for k, v in results[n].items()), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", default="10000,100000", help="comma-separated sizes")
    ap.add_argument("--postgres", default="", help="a server URL postgresql://USER@HOST:PORT"
                    " (databases bench_<n> are created on it); default: a throwaway server")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated jobs to time,"
                    f" of {', '.join(JOBS)} (moves run after an untimed storage billing)")
    ap.add_argument("--profile", default="", help="write each timed job's cProfile"
                    " statistics to PREFIX.BACKEND.JOB.N")
    ap.add_argument("--http", action="store_true", help="drive the HTTP API, not the jobs")
    ap.add_argument("--seconds", type=float, default=10, help="--http: seconds of mixed load")
    ap.add_argument("--http-peers", type=int, default=200, help="--http: peers registered")
    ap.add_argument("--workers", type=int, default=32, help="--http: concurrent requests")
    args = ap.parse_args()
    sizes = [int(x) for x in args.peers.split(",")]
    if unknown := set(args.jobs.split(",")) - set(JOBS):
        ap.error(f"unknown job(s): {', '.join(sorted(unknown))}; choose from {', '.join(JOBS)}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.http:
            http_runs(args, Path(tmp))
            return
        if not args.no_sqlite:
            report("SQLite", asyncio.run(run_backend(
                "sqlite", sizes, lambda n: Path(tmp) / f"bench_{n}.db", args)))
        if not args.no_postgres:
            with postgres(args.postgres) as new_db:
                report("PostgreSQL", asyncio.run(run_backend("postgresql", sizes, new_db,
                                                                 args)))


def http_runs(args: argparse.Namespace, tmp: Path) -> None:
    from bench import coordinator_http as load  # only for --http

    def one(name: str, db: Path | str, coordinators: int) -> None:
        load.report(name, load.one_setup(name.replace(" ", "-"), db, coordinators, tmp,
                                         args.http_peers, args.workers, args.seconds))

    if not args.no_sqlite:
        one("SQLite, 1 coordinator", tmp / "http.db", 1)
    if not args.no_postgres:
        with postgres(args.postgres) as new_db:
            for k in (1, 2, 3):
                one(f"PostgreSQL, {k} coordinator{'s' if k > 1 else ''}", new_db(k), k)


@contextlib.contextmanager
def postgres(base: str) -> Iterator[Callable[[int], str]]:
    """A function handing out fresh databases on `base`, else on a throwaway server."""
    from tests.support.postgres import bin_dir, start_server  # only for this backend

    server = None
    if not base:
        binaries = bin_dir()
        if binaries is None:
            sys.exit("no PostgreSQL binaries: give --postgres URL or --no-postgres")
        server = start_server(binaries)
        base = server.base
    try:
        yield lambda n: _new_pg(base, server, n)
    finally:
        if server is not None:
            server.stop()


def _new_pg(base: str, server: object, n: int) -> str:
    if server is not None:
        return server.new_database()  # type: ignore[attr-defined]
    for sql in (f"DROP DATABASE IF EXISTS bench_{n}", f"CREATE DATABASE bench_{n}"):
        subprocess.run(["psql", f"{base}/postgres", "-qc", sql], check=True)
    return f"{base}/bench_{n}"


if __name__ == "__main__":
    main()
