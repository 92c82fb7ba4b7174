"""A local grid: one coordinator and N peer agents as real processes on 127.0.0.1.

Used by `p2pbak demo` and by the end-to-end tests, so both exercise the same setup: every
peer is its own user with its own config written by `p2pbak init`, and every process is a
real `python -m p2pbak ...` started from this interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import p2pbak
from p2pbak.client.identity import initialise
from p2pbak.config import load
from p2pbak.datapath.erasure import CorruptFragment, parse_fragment
from p2pbak.errors import P2pbakError
from p2pbak.net.serving import DETACH, ENV_LIFELINE

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """A long-running p2pbak process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str
    lifeline: int = -1  # the write end of its lifeline (net.serving), -1 once let go

    def alive(self) -> bool:
        return self.popen.poll() is None

    def detach(self) -> None:
        """Let it outlive this process (`demo --keep`): it stops watching its lifeline."""
        if self.lifeline >= 0:
            with contextlib.suppress(OSError):
                os.write(self.lifeline, DETACH)
        self.release()

    def release(self) -> None:
        if self.lifeline >= 0:
            with contextlib.suppress(OSError):
                os.close(self.lifeline)
            self.lifeline = -1

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go. The lifeline is let go only after: its
        end would start the same shutdown, and a SIGTERM arriving once the server has put
        its handlers away would kill it instead (exit -15)."""
        try:
            if self.alive():
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(10)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            self.release()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Peer:
    name: str
    config: Path
    storage: Path
    process: Process
    peer_id: str = ""


@dataclass
class Grid:
    root: Path
    coordinator: Process
    db: Path | str  # a SQLite file, or a postgresql:// URL that several coordinators share
    password_file: Path
    peers: list[Peer] = field(default_factory=list)
    serve_args: tuple[str, ...] = ()  # extra `p2pbak serve` options, kept for a restart
    heartbeat: float = 2.0  # the peers' heartbeat interval, seconds
    more: list[Process] = field(default_factory=list)  # further coordinators on `db`

    @property
    def urls(self) -> list[str]:
        """Every coordinator's URL, the first one's first: what users and peers are given."""
        return [self.coordinator.url, *(c.url for c in self.more)]

    @property
    def url(self) -> str:
        """The first coordinator still running."""
        live = [c.url for c in (self.coordinator, *self.more) if c.alive()]
        return live[0] if live else self.coordinator.url

    def cli(self, *args: str, config: Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run one p2pbak command to completion, as a user would."""
        extra = {"P2PBAK_PASSWORD_FILE": str(self.password_file),
                 "P2PBAK_CACHE_DIR": str(self.root / "cache")}  # the grid's, not ~/.cache
        if config is not None:
            extra["P2PBAK_CONFIG"] = str(config)
        return run_cli(list(args), env={**extra, **(env or {})}, timeout=timeout)

    def add_user(self, name: str, *, machine: str | None = None, cli: bool = True) -> Path:
        """`p2pbak init` a new user (and machine) with its own config; returns the config.

        cli=False runs the same init code in this process (no interpreter start: peers).
        """
        config = self.root / "users" / name / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        if not cli:
            passphrase = self.password_file.read_text().rstrip("\n")
            asyncio.run(initialise(self.urls, name, machine or name, passphrase, config))
            return config
        args = ["init", "--coordinator", ",".join(self.urls), "--user", name,
                "--config", str(config), "--password-file", str(self.password_file), "--json"]
        if machine:
            args += ["--machine", machine]
        r = run_cli(args, timeout=120)
        if r.returncode != 0:
            raise P2pbakError(f"init of {name} failed: {_last_line(r.stderr)}")
        return config

    def start_peer(self, name: str) -> Peer:
        config = self.add_user(name, cli=False)
        storage = self.root / "users" / name / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        peer = Peer(name=name, config=config, storage=storage,
                    process=self._run_peer(name, config, storage, name))
        self.peers.append(peer)
        return peer

    def add_supplier(self, name: str) -> Path:
        """A new user who starts a peer before backing up, as the README's quick start
        does (an account has no deficit allowance until it has a peer online): its config."""
        peer = self.start_peer(name)
        self.wait_peers([peer])
        return peer.config

    def restart_peer(self, peer: Peer) -> None:
        """`peer run` again on a stopped peer's config and storage (a new port and log),
        back once the coordinator counts every live peer online."""
        self.rerun_peer(peer)
        self._wait_online(READY_TIMEOUT)

    def rerun_peer(self, peer: Peer, advertise: str = "", port: int = 0) -> None:
        """Stop `peer` and run it again on `port` (or a free one), giving others `advertise`
        as its address if set; back once it answers its health check."""
        peer.process.stop()
        peer.process = self._run_peer(peer.name, peer.config, peer.storage,
                                      f"{peer.name}-restarted", advertise, port)
        health = self._wait_peer(peer, READY_TIMEOUT, advertise, tries=1 if port else 3)
        peer.peer_id = str(health.get("peer_id", ""))

    def _run_peer(self, name: str, config: Path, storage: Path, log: str,
                  advertise: str = "", port: int = 0) -> Process:
        port = port or free_port()
        more = ["--advertise", advertise] if advertise else []
        return spawn(name, ["peer", "run", "--storage", str(storage), "--listen",
                            f"{HOST}:{port}", "--config", str(config),
                            "--heartbeat-interval", str(self.heartbeat), *more],
                     self.root / "logs" / f"{log}.log", f"http://{HOST}:{port}")

    def add_peers(self, count: int) -> list[Peer]:
        """Start `count` more peer agents (numbered on) and wait until all are online."""
        first = len(self.peers) + 1
        names = [f"peer{i:02d}" for i in range(first, first + count)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            started = list(pool.map(self.start_peer, names))
        self.peers.sort(key=lambda p: p.name)
        self.wait_peers(started)
        return started

    def restart_coordinator(self, log_name: str = "coordinator-restarted") -> None:
        """SIGKILL the coordinator (if it still runs); start it again on its port and db."""
        self.coordinator.kill()
        port = int(self.url.rsplit(":", 1)[1])
        self.coordinator = serve(self.db, port, self.root / "logs" / f"{log_name}.log",
                                 self.serve_args)

    def wait_peers(self, peers: Sequence[Peer], timeout: float = READY_TIMEOUT) -> None:
        """Wait until every peer answers its health check and has told the coordinator."""
        for peer in peers:
            health = self._wait_peer(peer, timeout)
            peer.peer_id = str(health.get("peer_id", ""))
        self._wait_online(timeout)

    def _wait_online(self, timeout: float) -> None:
        wait_for(lambda: self.online_peers() >= len(self.live_peers()), timeout,
                 "the coordinator did not see every peer online")

    def _wait_peer(self, peer: Peer, timeout: float, advertise: str = "",
                   tries: int = 3) -> dict:
        """Its health answer; a peer whose free port was taken meanwhile (by any client's
        outgoing connection: they share the ephemeral range) starts again on another."""
        for attempt in range(1, tries):
            try:
                return wait_http(f"{peer.process.url}/v1/health", peer.process, timeout)
            except P2pbakError as exc:
                if "address already in use" not in str(exc):
                    raise
            peer.process = self._run_peer(peer.name, peer.config, peer.storage,
                                          f"{peer.name}-port{attempt}", advertise)
        return wait_http(f"{peer.process.url}/v1/health", peer.process, timeout)

    def live_peers(self) -> list[Peer]:
        return [p for p in self.peers if p.process.alive()]

    def online_peers(self) -> int:
        """How many peers the coordinator counts as online (asked as the first peer)."""
        cfg = load(self.peers[0].config)
        req = urllib.request.Request(f"{self.url}/v1/status", headers={
            "Authorization": f"Bearer {cfg.machine_id}.{cfg.secret}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            status = json.load(r)
        return int(status["peers_online"])  # the asking peer included

    def peer_by_id(self, peer_id: str) -> Peer:
        for peer in self.peers:
            if peer.peer_id == peer_id:
                return peer
        raise KeyError(peer_id)

    def processes(self) -> list[Process]:
        return [self.coordinator, *self.more, *(p.process for p in self.peers)]

    def stop(self) -> None:
        for proc in reversed(self.processes()):
            proc.stop()

    def detach(self) -> None:
        """Leave every process running after this one exits (`demo --keep`)."""
        for proc in self.processes():
            proc.detach()

    def stop_script(self) -> str:
        """A shell line that stops every process of this grid (for `demo --keep`)."""
        pids = " ".join(str(p.popen.pid) for p in self.processes() if p.alive())
        return f"kill {pids}"


def start_grid(root: Path, peers: int = 10, *, passphrase: str = "correct horse battery",
               heartbeat: float = 2.0, serve_args: Sequence[str] = (),
               db: str | None = None, coordinators: int = 1) -> Grid:
    """Start `coordinators` coordinators (`serve` given `serve_args` too) on one database
    (`db`, a postgresql:// URL, for more than one; else a SQLite file under `root`) and
    `peers` peer agents under `root` that know every coordinator; stop them all on failure."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    password_file = root / "passphrase"
    password_file.write_text(passphrase + "\n")
    password_file.chmod(0o600)
    store: Path | str = db or root / "coordinator" / "coordinator.db"
    (root / "coordinator").mkdir(parents=True, exist_ok=True)
    coord = serve(store, free_port(), root / "logs" / "coordinator.log", serve_args)
    grid = Grid(root=root, coordinator=coord, db=store, password_file=password_file,
                serve_args=tuple(serve_args), heartbeat=heartbeat)
    try:
        for i in range(2, coordinators + 1):
            grid.more.append(serve(store, free_port(), root / "logs" / f"coordinator{i}.log",
                                   serve_args))
        if peers:
            grid.add_peers(peers)
    except BaseException:
        grid.stop()
        raise
    return grid


def serve(db: Path | str, port: int, log: Path, serve_args: Sequence[str] = ()) -> Process:
    """`p2pbak serve` on 127.0.0.1:`port`, returned once it answers (stopped if it does not)."""
    url = f"http://{HOST}:{port}"
    proc = spawn("coordinator", ["serve", "--db", str(db), "--listen", f"{HOST}:{port}",
                                 *serve_args], log, url)
    try:
        wait_http(f"{url}/v1/health", proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, plus the path to this very p2pbak (installed or not)."""
    here = str(Path(p2pbak.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{path}" if path else here,
            **(extra or {})}


def run_cli(args: list[str], *, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pbak", *args], capture_output=True,
                          text=True, timeout=timeout, env=child_env(env),
                          stdin=subprocess.DEVNULL)


def spawn(name: str, args: list[str], log: Path, url: str) -> Process:
    """Start a server that stops when this process dies, however it dies (its lifeline)."""
    fh = log.open("wb")
    read, write = os.pipe()
    try:
        popen = subprocess.Popen([sys.executable, "-m", "p2pbak", *args], stdout=fh,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=child_env({ENV_LIFELINE: str(read)}),
                                 start_new_session=True, pass_fds=(read,))
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
        fh.close()
    return Process(name=name, popen=popen, log=log, url=url, lifeline=write)


def wait_http(url: str, proc: Process | None = None, timeout: float = READY_TIMEOUT) -> dict:
    """Poll `url` until it answers 200 with JSON; fail with the log if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise P2pbakError(f"{proc.name} exited at start: {_last_line(proc.output())}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return dict(json.load(r))
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise P2pbakError(f"{url} did not answer within {timeout:.0f} s")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            if check():
                return
        time.sleep(0.2)
    raise P2pbakError(f"{what} within {timeout:.0f} s")


def _last_line(text: str) -> str:
    """The last error a process printed (unfolded), else its last line."""
    where = text.rfind("p2pbak: error:")
    if where >= 0:
        return " ".join(text[where:].split())
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def fragment_files(grid: Grid) -> dict[str, list[tuple[str, Path]]]:
    """pack id → [(peer name, fragment file)] read from the peers' disks (ground truth).

    Files that are not intact fragments (test bytes, damaged ones) are left out.
    """
    out: dict[str, list[tuple[str, Path]]] = {}
    for peer in grid.peers:
        for f in sorted((peer.storage / "fragments").rglob("*")):
            if f.is_file() and len(f.name) == 64:
                try:
                    header = parse_fragment(f.read_bytes())
                except CorruptFragment:
                    continue
                out.setdefault(header.pack_id, []).append((peer.name, f))
    return out


def pack_code(path: Path) -> tuple[int, int]:
    """k and n of a fragment's pack, from its header."""
    header = parse_fragment(path.read_bytes())
    return int(header.k), int(header.n)


def shell_env(config: Path, password_file: Path) -> str:
    return (f"P2PBAK_CONFIG={shlex.quote(str(config))} "
            f"P2PBAK_PASSWORD_FILE={shlex.quote(str(password_file))}")
