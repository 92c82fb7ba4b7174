"""A throwaway PostgreSQL server for the tests: `initdb` in a temporary folder, run as an
unprivileged user (PostgreSQL refuses root) on a free loopback port, stopped at the end.

`Backend` hands each test a fresh, empty database of the backend it runs on: an SQLite file
in the test's folder, or a new database on the server.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from p2pbak.localgrid.grid import free_port

__test__ = False

PG_USER = "p2pbak"  # the cluster's superuser role
OS_USER = "p2pbak-pg"  # the unprivileged system user the server runs as, when we are root


def bin_dir() -> Path | None:
    """Debian's PostgreSQL binaries (the newest installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _runner() -> list[str]:
    """The command prefix that runs a server binary as an unprivileged user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        OS_USER], check=True, capture_output=True)
    return ["runuser", "-u", OS_USER, "--"]


@dataclass
class Server:
    bin: Path
    folder: Path
    port: int
    runner: list[str]
    _names = itertools.count(1)

    @property
    def base(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}"

    def psql(self, sql: str) -> str:
        r = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", PG_USER, "-d", "postgres", "-At", "-c", sql],
                           capture_output=True, text=True, check=True)
        return r.stdout

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return f"{self.base}/{name}"

    def stop(self) -> None:
        subprocess.run([*self.runner, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"),
                        "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server(bin: Path) -> Server:
    runner = _runner()
    folder = Path(tempfile.mkdtemp(prefix="p2pbak-pg-"))
    if runner:
        shutil.chown(folder, OS_USER)
    data = folder / "data"
    subprocess.run([*runner, str(bin / "initdb"), "-D", str(data), "-U", PG_USER,
                    "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    port = free_port()
    opts = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run([*runner, str(bin / "pg_ctl"), "-D", str(data), "-o", opts,
                    "-l", str(folder / "log"), "-w", "start"], check=True, capture_output=True)
    server = Server(bin, folder, port, runner)
    for _ in range(100):
        try:
            server.psql("SELECT 1")
            return server
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"PostgreSQL did not answer on port {port}")


@dataclass
class Backend:
    """The database backend one test runs on."""

    name: str  # "sqlite" | "postgresql"
    server: Server | None = None
    _made: dict[tuple[str, str], str] = field(default_factory=dict)

    def database(self, folder: Path, file: str = "c.db") -> Path | str:
        """`folder/file` on SQLite, a new database's URL on PostgreSQL (the same URL when
        asked again for the same folder and file)."""
        if self.server is None:
            return Path(folder) / file
        key = (str(folder), file)  # the same folder and file: the same database (a restart)
        if key not in self._made:
            self._made[key] = self.server.new_database()
        return self._made[key]


CURRENT = Backend("sqlite")  # set by the `db_backend` fixture for the test running


def dump(target: Path | str) -> str:
    """The whole database as SQL text (SQLite's iterdump, or pg_dump)."""
    if not isinstance(target, str):
        with sqlite3.connect(target) as conn:
            return "\n".join(conn.iterdump())
    binaries = bin_dir()
    assert binaries is not None
    return subprocess.run([str(binaries / "pg_dump"), "--inserts", target], check=True,
                          capture_output=True, text=True).stdout
