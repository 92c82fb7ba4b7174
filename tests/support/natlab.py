"""A NAT lab in Linux network namespaces: an "internet" and home routers that MASQUERADE.

    inet (198.18.0.1/24 on bridge br0): the coordinator and the public peers
      ├─ router r1 wan 198.18.0.11 ── lan 198.19.1.1/24 ── hosts 198.19.1.2, 198.19.1.3
      ├─ router r2 wan 198.18.0.12 ── lan 198.19.2.1/24 ── hosts ...
      ├─ router r3 wan 198.18.0.13 ── lan 198.19.3.1/24 ── hosts ... (symmetric NAT:
      │                                                     MASQUERADE --random-fully)
      └─ router r4 wan 198.18.0.14 ── lan 198.19.4.1/24 ── hosts ... (runs miniupnpd: UPnP
                                                            IGD and NAT-PMP port mapping)

miniupnpd refuses to map ports on a reserved wan address (198.18.0.0/15 is one) unless a
STUN server tells it the router is the edge (a full-cone 1:1 "NAT"), so the internet also
runs Debian's stund on 198.18.0.1 and .2 (STUN needs two addresses), and r4 keeps its rules
in iptables-legacy, the tables miniupnpd's libiptc writes to.

No router forwards a port: a new connection from the internet to a home, or to a router's
own address, is dropped unanswered (RFC 5382 REQ-4), and the internet has no route to
198.19.0.0/16 at all. Only addresses of 198.18.0.0/15 (RFC 2544,
for benchmarking networks) are used, and no namespace has a route out of the lab.
Processes run as `ip netns exec NS python -m p2pbak ...`. Needs root; `lab_or_skip` skips
with the reason when namespaces cannot be made. Everything is torn down in `close`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from p2pbak.localgrid.grid import Process, child_env

INET_IP = "198.18.0.1"
STUN_ALT_IP = "198.18.0.2"  # stund's second address
MINIUPNPD_READY = 30.0  # seconds for miniupnpd's STUN check and start
STEP_TIMEOUT = 20.0  # any one `ip`/`iptables` call
T = TypeVar("T")


def _sh(*args: str) -> None:
    r = subprocess.run(args, capture_output=True, text=True, timeout=STEP_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip() or r.returncode}")


@dataclass
class Home:
    router: str  # namespace of the router
    wan_ip: str
    lan: str  # "198.19.X"
    symmetric: bool
    upnp: bool = False  # runs miniupnpd
    hosts: list[str] = field(default_factory=list)  # namespaces behind it

    def host_ip(self, i: int) -> str:
        return f"{self.lan}.{i + 2}"


@dataclass
class Lab:
    tag: str
    inet: str
    homes: list[Home] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    _threads: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- building ---------------------------------------------------------------------

    def _ns(self, name: str) -> str:
        ns = f"{self.tag}-{name}"
        _sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        self.ip(ns, "link", "set", "lo", "up")
        return ns

    def ip(self, ns: str, *args: str) -> None:
        _sh("ip", "-n", ns, *args)

    def exec(self, ns: str, *args: str) -> None:
        _sh("ip", "netns", "exec", ns, *args)

    def build(self, root: Path, homes: int = 4, hosts: int = 2) -> Lab:
        """Homes 1, 2: plain NAT; 3: symmetric NAT; 4: UPnP (miniupnpd)."""
        self.inet = self._ns("inet")
        self.ip(self.inet, "link", "add", "br0", "type", "bridge")
        self.ip(self.inet, "addr", "add", f"{INET_IP}/24", "dev", "br0")
        self.ip(self.inet, "addr", "add", f"{STUN_ALT_IP}/24", "dev", "br0")
        self.ip(self.inet, "link", "set", "br0", "up")
        for h in range(1, homes + 1):
            self.homes.append(self._home(h, hosts, symmetric=h == 3, upnp=h == 4))
        if any(home.upnp for home in self.homes):
            self._upnp(root)
        return self

    def _home(self, h: int, hosts: int, *, symmetric: bool, upnp: bool) -> Home:
        home = Home(self._ns(f"r{h}"), f"198.18.0.{10 + h}", f"198.19.{h}", symmetric, upnp)
        r = home.router
        # wan: a veth from the router into the internet's bridge
        self.ip(r, "link", "add", "wan", "type", "veth", "peer", "name", f"w{h}",
                "netns", self.inet)
        self.ip(self.inet, "link", "set", f"w{h}", "master", "br0", "up")
        self.ip(r, "addr", "add", f"{home.wan_ip}/24", "dev", "wan")
        self.ip(r, "link", "set", "wan", "up")
        self.ip(r, "link", "add", "lan", "type", "bridge")
        self.ip(r, "addr", "add", f"{home.lan}.1/24", "dev", "lan")
        self.ip(r, "link", "set", "lan", "up")
        self.exec(r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        iptables = "iptables-legacy" if upnp else "iptables"
        masq = [iptables, "-t", "nat", "-A", "POSTROUTING", "-s", f"{home.lan}.0/24",
                "-o", "wan", "-j", "MASQUERADE"]
        self.exec(r, *masq, *(["--random-fully"] if symmetric else []))
        # no port forwarding: from the internet, only answers to connections from inside
        self.exec(r, iptables, "-A", "FORWARD", "-i", "wan", "-m", "conntrack",
                  "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        if upnp:  # what miniupnpd maps goes in its own chains, before the drop
            self._miniupnpd_chains(r)
        self.exec(r, iptables, "-A", "FORWARD", "-i", "wan", "-j", "DROP")
        # and a connection to the router itself is dropped unanswered, as RFC 5382 REQ-4
        # asks of a NAT (no RST for 6 s at least): an RST would kill the other side's
        # half of a TCP simultaneous open before its own SYN is out (net/punch.py)
        self.exec(r, iptables, "-A", "INPUT", "-i", "wan", "-p", "tcp", "-m", "conntrack",
                  "--ctstate", "NEW", "-j", "DROP")
        for i in range(hosts):
            ns = self._ns(f"h{h}{i}")
            self.ip(r, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0",
                    "netns", ns)
            self.ip(r, "link", "set", f"p{i}", "master", "lan", "up")
            self.ip(ns, "addr", "add", f"{home.host_ip(i)}/24", "dev", "eth0")
            self.ip(ns, "link", "set", "eth0", "up")
            self.ip(ns, "route", "add", "default", "via", f"{home.lan}.1")
            home.hosts.append(ns)
        return home

    def _miniupnpd_chains(self, r: str) -> None:
        """The chains Debian's iptables_init.sh would make (it needs a file it lacks)."""
        ipt = ("iptables-legacy",)
        for table, hook, where in (("nat", "PREROUTING", ("-i", "wan")),
                                   ("mangle", "PREROUTING", ("-i", "wan")),
                                   ("filter", "FORWARD", ("-i", "wan", "!", "-o", "wan"))):
            self.exec(r, *ipt, "-t", table, "-N", "MINIUPNPD")
            self.exec(r, *ipt, "-t", table, "-A", hook, *where, "-j", "MINIUPNPD")
        self.exec(r, *ipt, "-t", "nat", "-N", "MINIUPNPD-POSTROUTING")
        self.exec(r, *ipt, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j",
                  "MINIUPNPD-POSTROUTING")

    def _upnp(self, root: Path) -> None:
        """stund on the internet, then miniupnpd on every UPnP router, ready."""
        root.mkdir(parents=True, exist_ok=True)
        self._daemon(self.inet, "stund", ["stund", "-h", INET_IP, "-a", STUN_ALT_IP],
                     root / "stund.log")
        for home in (h for h in self.homes if h.upnp):
            conf = root / f"miniupnpd-{home.lan}.conf"
            conf.write_text("\n".join([
                "ext_ifname=wan", "listening_ip=lan", "port=0", "enable_upnp=yes",
                "enable_natpmp=yes", "ext_perform_stun=yes", f"ext_stun_host={INET_IP}",
                "ext_stun_port=3478", "secure_mode=yes", "system_uptime=no",
                f"lease_file={root / f'miniupnpd-{home.lan}.leases'}",
                "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b",
                f"allow 1024-65535 {home.lan}.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535",
            ]) + "\n")
            log = root / f"miniupnpd-{home.lan}.log"
            self._daemon(home.router, "miniupnpd", ["miniupnpd", "-f", str(conf), "-d", "-P",
                                                     str(conf.with_suffix(".pid"))], log)
            wait_until(lambda log=log: "Port forwarding is now enabled" in log.read_text()
                       and "HTTP listening" in log.read_text(), MINIUPNPD_READY,
                       f"miniupnpd on {home.router} did not enable port forwarding "
                       f"({log.read_text()[-500:] if log.exists() else 'no log'})")

    def _daemon(self, ns: str, name: str, argv: list[str], log: Path) -> None:
        with log.open("wb") as fh:
            popen = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=fh,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.processes.append(Process(name=name, popen=popen, log=log, url=""))

    def forward(self, home: Home, host: int, port: int) -> None:
        """Forward TCP `port` of the router's public address to host `host` (by hand, as a
        user would on the router's web page)."""
        to = home.host_ip(host)
        self.exec(home.router, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p",
                  "tcp", "--dport", str(port), "-j", "DNAT", "--to-destination", f"{to}:{port}")
        self.exec(home.router, "iptables", "-I", "FORWARD", "-i", "wan", "-p", "tcp", "-d", to,
                  "--dport", str(port), "-j", "ACCEPT")

    # -- running ----------------------------------------------------------------------

    def spawn(self, ns: str, name: str, args: list[str], log: Path, url: str = "",
              env: dict[str, str] | None = None) -> Process:
        """`ip netns exec NS python -m p2pbak ARGS`, output to `log`; stopped in close()."""
        fh = log.open("wb")
        popen = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "p2pbak",
                                  *args], stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=child_env(env),
                                 start_new_session=True)
        fh.close()
        proc = Process(name=name, popen=popen, log=log, url=url)
        self.processes.append(proc)
        return proc

    def cli(self, ns: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """One p2pbak command to completion inside namespace `ns`."""
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "p2pbak",
                               *args], capture_output=True, text=True, timeout=timeout,
                              env=child_env(env), stdin=subprocess.DEVNULL)

    def inside(self, ns: str, fn: Callable[[], T], timeout: float = 30) -> T:
        """Run `fn` in a thread that has entered namespace `ns` (network only)."""
        with self._lock:
            pool = self._threads.get(ns)
            if pool is None:
                pool = ThreadPoolExecutor(1, initializer=_enter, initargs=(ns,))
                self._threads[ns] = pool
        return pool.submit(fn).result(timeout)

    def get_json(self, ns: str, url: str, headers: dict[str, str] | None = None,
                 timeout: float = 5) -> Any:
        def fetch() -> Any:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.load(r)
        return self.inside(ns, fetch, timeout + 5)

    def close(self) -> None:
        """Stop every process, then delete every namespace (and so every link in it)."""
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        for pool in self._threads.values():
            pool.shutdown(wait=False, cancel_futures=True)
        for ns in reversed(self.namespaces):
            with contextlib.suppress(Exception):
                _sh("ip", "netns", "del", ns)
        self.namespaces.clear()


def _enter(ns: str) -> None:
    """setns(2) for this thread only (os.setns is Python >= 3.12)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns into {ns}")
    finally:
        os.close(fd)


def why_no_lab() -> str:
    """'' when this machine can build the lab, else why not (for pytest.skip)."""
    if sys.platform != "linux":
        return "the NAT lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the NAT lab needs root (ip netns add, iptables)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"),
                          ("iptables-legacy", "iptables"), ("miniupnpd", "miniupnpd-iptables"),
                          ("stund", "stun-server")):
        if shutil.which(tool) is None:
            return f"the NAT lab needs `{tool}` (apt-get install {package})"
    probe = f"p2nprobe{os.getpid()}"
    try:
        _sh("ip", "netns", "add", probe)
        _sh("ip", "netns", "exec", probe, "iptables", "-t", "nat", "-S")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces with NAT here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return ""


@contextlib.contextmanager
def lab_or_skip(root: Path, homes: int = 4, hosts: int = 2) -> Iterator[Lab]:
    """A built lab (its daemons' files under `root`), closed afterwards whatever happens;
    skips the test if none can be made."""
    why = why_no_lab()
    if why:
        pytest.skip(why)
    lab = Lab(tag=f"p2n{os.getpid() % 100000}", inet="")
    try:
        lab.build(root, homes, hosts)
        yield lab
    finally:
        lab.close()


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               every: float = 0.3) -> Any:
    """Poll `check` until it returns something true; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as exc:  # a poll: keep the last reason for the failure message
            last = exc
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout:.0f} s (last error: {last})")


# -- a p2pbak grid in the lab ------------------------------------------------------------

COORD_URL = f"http://{INET_IP}:8420"
PEER_PORT = 8601
PASSPHRASE = "correct horse battery"


@dataclass
class LabPeer:
    name: str
    ns: str
    config: Path
    storage: Path
    process: Process | None = None
    home: Home | None = None  # None: on the internet

    def auth(self) -> dict[str, str]:
        from p2pbak.config import load

        cfg = load(self.config)
        return {"Authorization": f"Bearer {cfg.machine_id}.{cfg.secret}"}


@dataclass
class LabGrid:
    lab: Lab
    root: Path
    coordinator: Process
    password_file: Path
    peers: list[LabPeer] = field(default_factory=list)

    def env(self, peer: LabPeer | Path) -> dict[str, str]:
        config = peer.config if isinstance(peer, LabPeer) else peer
        return {"P2PBAK_CONFIG": str(config), "P2PBAK_PASSWORD_FILE": str(self.password_file)}

    def cli(self, ns: str, *args: str, config: LabPeer | Path,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.lab.cli(ns, *args, env=self.env(config), timeout=timeout)

    def status(self, peer: LabPeer) -> dict[str, Any]:
        """The coordinator's /v1/status as `peer`'s machine, asked from the internet."""
        return dict(self.lab.get_json(self.lab.inet, f"{COORD_URL}/v1/status", peer.auth()))

    def reached(self) -> dict[str, dict[str, Any]]:
        return {p.name: self.status(p)["reached"] for p in self.peers
                if p.process is not None and p.process.alive()}

    def wait_settled(self, timeout: float = 45) -> dict[str, dict[str, Any]]:
        """Until every live peer is online and reached as its place says (public or relayed)."""
        def settled() -> dict[str, dict[str, Any]] | None:
            got = self.reached()
            for p in self.peers:
                if p.name in got and got[p.name]["how"] != expected_reach(p):
                    return None
            live = sum(1 for p in self.peers if p.process and p.process.alive())
            return got if self.status(self.peers[0])["peers_online"] >= live else None
        return dict(wait_until(settled, timeout, "the lab's peers did not all come online, "
                               "public, port-mapped or relayed"))

    def start_peer(self, peer: LabPeer, *extra: str) -> None:
        peer.process = self.lab.spawn(
            peer.ns, peer.name, ["peer", "run", "--storage", str(peer.storage), "--listen",
                                 f"0.0.0.0:{_port(peer)}", "--config", str(peer.config),
                                 "--heartbeat-interval", "1", *extra],
            self.root / "logs" / f"{peer.name}.log")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.output()[-3000:]}" for p in
                         [self.coordinator, *(q.process for q in self.peers if q.process)])


def expected_reach(peer: LabPeer) -> str:
    """How the coordinator should find `peer` reached: by where it runs."""
    if peer.home is None:
        return "public"
    return "port-mapped" if peer.home.upnp else "relayed"


def _port(peer: LabPeer) -> int:
    return PEER_PORT + (int(peer.name[-1]) if peer.home is None else 0)


def start_lab_grid(lab: Lab, root: Path, public: int = 3, relays: int = 2,
                   relay_rate: str = "4MB/s") -> LabGrid:
    """A coordinator (`serve --relay`) and `public` peers (the first `relays` with --relay
    under `relay_rate`) on the internet, and a peer on every home host, all on 0.0.0.0 with
    no --advertise."""
    (root / "logs").mkdir(parents=True, exist_ok=True)
    password_file = root / "passphrase"
    password_file.write_text(PASSPHRASE + "\n")
    coord = lab.spawn(lab.inet, "coordinator", ["serve", "--db", str(root / "coord.db"),
                                                "--listen", f"{INET_IP}:8420", "--relay",
                                                "--online-window", "20"],
                      root / "logs" / "coordinator.log", COORD_URL)
    wait_until(lambda: lab.get_json(lab.inet, f"{COORD_URL}/v1/health", timeout=1), 30,
               "the coordinator did not answer")
    grid = LabGrid(lab, root, coord, password_file)
    for i in range(1, public + 1):
        grid.peers.append(_lab_peer(root, f"pub{i}", lab.inet, None))
    for home in lab.homes:
        for j, ns in enumerate(home.hosts):
            grid.peers.append(_lab_peer(root, f"home{home.lan[-1]}{j}", ns, home))

    def init(peer: LabPeer) -> None:
        r = lab.cli(lab.inet, "init", "--coordinator", COORD_URL, "--user", peer.name,
                    "--config", str(peer.config), "--password-file", str(password_file),
                    "--json")
        if r.returncode != 0:
            raise RuntimeError(f"init {peer.name}: {r.stderr.strip()}")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(init, grid.peers))
    for n, peer in enumerate(grid.peers):
        relay = ["--relay", "--relay-rate", relay_rate] if peer.home is None and n < relays else []
        grid.start_peer(peer, *relay)
    return grid


def _lab_peer(root: Path, name: str, ns: str, home: Home | None) -> LabPeer:
    storage = root / name / "storage"
    storage.mkdir(parents=True)
    return LabPeer(name, ns, root / name / "config.toml", storage, home=home)


def fragments_held(peer: LabPeer) -> int:
    return sum(1 for f in (peer.storage / "fragments").rglob("*")
               if f.is_file() and len(f.name) == 64)


class Capture:
    """Every TCP payload to or from `ports` seen on `iface` in namespace `ns` (AF_PACKET),
    in its own thread: what crossed the wire there, for tests of what a relay sees."""

    def __init__(self, ns: str, iface: str, ports: set[int]) -> None:
        self.ns, self.iface, self.ports = ns, iface, ports
        # TCP connection → its exchanges: one per request on a kept-alive connection (a
        # client reuses its connection to a relay for direct transfers to that same peer)
        self.flows: dict[tuple[object, object], list[bytearray]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Capture:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("capture did not start")
        if self.error is not None:
            raise RuntimeError(f"capture failed: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import socket
        import struct

        try:
            _enter(self.ns)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
            # room for a burst of fragments while this thread is busy (a dropped frame
            # could hide a leak); FORCE: beyond rmem_max, as root
            sock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE
            sock.bind((self.iface, 0))
            sock.settimeout(0.2)
        except OSError as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        with sock:
            while not self._stop.is_set():
                try:
                    frame = sock.recv(1 << 18)
                except TimeoutError:
                    continue
                if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                    continue  # IPv4 TCP only
                ihl = (frame[14] & 0x0F) * 4
                tcp = 14 + ihl
                sport, dport = struct.unpack_from("!HH", frame, tcp)
                if sport in self.ports or dport in self.ports:
                    ends = sorted([(frame[26:30], sport), (frame[30:34], dport)])
                    payload = frame[tcp + (frame[tcp + 12] >> 4) * 4:]
                    if payload:
                        self._add((ends[0], ends[1]), dport in self.ports, payload)

    def _add(self, conn: tuple[object, object], to_server: bool, payload: bytes) -> None:
        exchanges = self.flows.setdefault(conn, [])
        if not exchanges or (to_server and payload.startswith(_METHODS)):
            exchanges.append(bytearray())
        exchanges[-1].extend(payload)

    def on(self, ports: set[int]) -> bytes:
        """Every byte of every connection to or from one of `ports`, both ways."""
        return b"".join(bytes(x) for conn, exchanges in self.flows.items()
                        if any(end[1] in ports for end in conn)  # type: ignore[index]
                        for x in exchanges)

    def relayed(self) -> bytes:
        """The bytes of connections that went through a relay, both ways: requests naming a
        /v1/relay/ path, and links to the relay (WebSocket frames from their first byte
        when the link was up before the capture)."""
        return b"".join(bytes(x) for exchanges in self.flows.values() for x in exchanges
                        if b" /v1/relay/" in x[:64] or x[0] in (0x81, 0x82, 0x88, 0x89, 0x8A))


_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")
