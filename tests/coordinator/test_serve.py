"""`p2pbak serve` as a process: schema migrations, WAL, clean shutdown, restart, bad options."""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from p2pbak.errors import P2pbakError
from p2pbak.localgrid.grid import free_port, run_cli, serve, spawn, wait_http
from p2pbak.store.db.database import Database, apply_migrations, schema_version
from p2pbak.store.db.dialect import TABLE_EXISTS
from p2pbak.store.db.schema import MIGRATIONS
from tests.support.coordinator import b64, coordinator, grid
from tests.support.postgres import Backend


def versions(db: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT version, applied FROM schema_version ORDER BY version")\
            .fetchall()


def test_migrations_from_empty_file_then_reopen_is_noop(tmp_path: Path) -> None:
    path = tmp_path / "c.db"

    async def open_close() -> int:
        db = await Database.open(path)
        try:
            return await schema_version(db)
        finally:
            await db.close()

    assert asyncio.run(open_close()) == len(MIGRATIONS)
    first = versions(path)
    assert [v for v, _ in first] == list(range(1, len(MIGRATIONS) + 1))
    assert asyncio.run(open_close()) == len(MIGRATIONS)
    assert versions(path) == first
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "machines", "peers", "packs", "fragments", "blobs", "heartbeats"} <= tables
    assert path.stat().st_mode & 0o077 == 0


def test_appended_migration_applies_once_and_a_failing_one_rolls_back(
        tmp_path: Path, db_backend: Backend) -> None:
    async def scenario() -> None:
        db = await Database.open(db_backend.database(tmp_path))
        try:
            extra = [*MIGRATIONS, ("CREATE TABLE extra (a INTEGER)",
                                   "INSERT INTO extra VALUES (1)")]
            assert await apply_migrations(db, extra) == len(MIGRATIONS) + 1
            assert await apply_migrations(db, extra) == len(MIGRATIONS) + 1
            assert await db.scalar("SELECT count(*) FROM extra") == 1

            async def broken(conn: object) -> None:
                await conn.execute("CREATE TABLE half (a INTEGER)")  # type: ignore[attr-defined]
                raise RuntimeError("migration bug")

            with pytest.raises(RuntimeError):
                await apply_migrations(db, [*extra, broken])
            assert await schema_version(db) == len(MIGRATIONS) + 1
            assert await db.scalar(TABLE_EXISTS[db.dialect], ("half",)) == 0
            with pytest.raises(P2pbakError, match="newer"):
                await apply_migrations(db, MIGRATIONS)
        finally:
            await db.close()

    asyncio.run(scenario())


def test_foreign_keys_are_enforced(tmp_path: Path, db_backend: Backend) -> None:
    async def scenario() -> None:
        db = await Database.open(db_backend.database(tmp_path))
        try:
            with pytest.raises(sqlite3.IntegrityError):
                async with db.transaction() as conn:
                    await conn.execute("INSERT INTO machines VALUES ('m', 'ghost', 'n', ?, 0)",
                                       (b"\0",))
            assert await db.scalar("SELECT count(*) FROM machines") == 0
        finally:
            await db.close()

    asyncio.run(scenario())


def test_sigterm_exits_zero_and_restart_keeps_every_committed_row(
        tmp_path: Path, db_backend: Backend) -> None:
    db = db_backend.database(tmp_path)
    with coordinator(tmp_path, db=db) as server:
        peers = grid(server.api, "p", 3)
        owner = peers[0]
        owner.ok("PUT", "/v1/snapshots/" + "a" * 64, {"blob": b64(b"snap")})
        plan = owner.ok("POST", "/v1/packs/plan", {"size": 5000})
        frags = [{"index": i, "fragment_id": f"{i:064x}", "size": plan["fragment_size"],
                  "peer_id": p["peer_id"]} for i, p in enumerate(plan["peers"])]
        owner.ok("POST", f"/v1/packs/{'b' * 64}/tickets", {"fragments": frags})
        owner.ok("POST", f"/v1/packs/{'b' * 64}/commit", {
            **{k: plan[k] for k in ("k", "n", "repair", "success")}, "length": 5000,
            "fragments": frags})
        key = server.api.ok("GET", "/v1/health")["ticket_key"]
        server.proc.popen.send_signal(signal.SIGTERM)
        assert server.proc.popen.wait(30) == 0
        log = server.proc.output()
        assert "listening on" in log and "stopped" in log and "Traceback" not in log
    with coordinator(tmp_path, db=db) as again:
        assert again.api.ok("GET", "/v1/health")["ticket_key"] == key
        same = again.api.as_(owner.token)
        assert same.ok("GET", "/v1/snapshots/" + "a" * 64)["blob"] == b64(b"snap")
        got = same.ok("GET", f"/v1/packs/{'b' * 64}")
        assert sorted(f["fragment_id"] for f in got["fragments"]) == \
            sorted(f["fragment_id"] for f in frags)
        assert same.ok("GET", "/v1/status")["packs"] == 1


def test_sigint_also_shuts_down_cleanly(tmp_path: Path) -> None:
    with coordinator(tmp_path) as server:
        server.proc.popen.send_signal(signal.SIGINT)
        assert server.proc.popen.wait(30) == 0


def test_sweep_marks_silent_peers_offline(tmp_path: Path) -> None:
    def state() -> str:
        with sqlite3.connect(server.db) as conn:
            return str(conn.execute("SELECT state FROM peers").fetchone()[0])

    with coordinator(tmp_path, "--online-window", "3") as server:
        member = grid(server.api, "m", 1)[0]
        assert state() == "active"
        deadline = time.monotonic() + 60
        while state() != "offline":
            assert time.monotonic() < deadline, "peer never went offline"
            time.sleep(0.2)
        assert member.ok("GET", "/v1/status")["peer_online"] is False
        member.heartbeat("http://127.0.0.2:9000")
        assert state() == "active"


def _one_line_failure(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(["serve", "--db", str(tmp_path / "c.db"), "--listen", f"127.0.0.1:{port}"],
                    timeout=60)
    _one_line_failure(r, "cannot listen")


def test_bad_options_are_one_line_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    port = str(free_port())
    r = run_cli(["serve", "--db", str(blocker / "sub" / "c.db"), "--listen", f"127.0.0.1:{port}"])
    _one_line_failure(r, "cannot create the folder")
    r = run_cli(["serve", "--db", str(tmp_path / "c.db"), "--listen", f"127.0.0.1:{port}",
                 "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "k.pem")])
    _one_line_failure(r, "TLS")
    r = run_cli(["serve", "--db", str(tmp_path / "c.db"), "--listen", "nonsense"])
    _one_line_failure(r, "--listen")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_with_cert_and_key(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = spawn("coordinator", ["serve", "--db", str(tmp_path / "c.db"), "--listen",
                                 f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key",
                                 str(key)], tmp_path / "log", f"https://127.0.0.1:{port}")
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/v1/health",
                                            context=ctx, timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.alive() and time.monotonic() < deadline, proc.output()
                time.sleep(0.1)
        with pytest.raises(P2pbakError):  # plain HTTP is not served
            wait_http(f"http://127.0.0.1:{port}/v1/health", timeout=1)
    finally:
        proc.stop()
    assert "https://127.0.0.1" in proc.output()


def test_json_start_and_stop_lines(tmp_path: Path) -> None:
    port = free_port()
    proc = serve(tmp_path / "c.db", port, tmp_path / "log", ["--json"])
    proc.stop()
    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert [(x["message_type"], x["action"]) for x in lines] == [("status", "start"),
                                                                ("status", "stop")]
    assert lines[0]["url"] == lines[1]["url"] == f"http://127.0.0.1:{port}"
    assert lines[0]["db"] == str(tmp_path / "c.db")


def test_not_a_database_is_one_line_exit_1(tmp_path: Path) -> None:
    bogus = tmp_path / "c.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    r = run_cli(["serve", "--db", str(bogus), "--listen", f"127.0.0.1:{free_port()}"])
    _one_line_failure(r, "cannot use database")
    assert bogus.read_bytes() == b"this is not sqlite" * 100


def test_sigterm_lets_an_in_flight_upload_finish(tmp_path: Path) -> None:
    with coordinator(tmp_path) as server:
        member = server.api.register("inflight")
        blob = b64(b"z" * 300_000).encode()
        body = b'{"blob": "' + blob + b'"}'
        sid = "c" * 64
        head = (f"PUT /v1/snapshots/{sid} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {member.token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        port = int(server.api.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + body[:1000])
            time.sleep(1.0)  # let the server start handling the request
            server.proc.popen.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(body[1000:])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert server.proc.popen.wait(30) == 0
    with sqlite3.connect(server.db) as conn:
        assert conn.execute("SELECT size FROM blobs WHERE id = ?", (sid,)).fetchone() == (
            300_000,)
