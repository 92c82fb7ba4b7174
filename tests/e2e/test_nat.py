"""End to end in the NAT lab: peers behind MASQUERADE routers, with no port forwarded and
no --advertise, are full members of the grid through relays (tests/natlab.py).

Tests run in file order on one lab: how peers are reached, a backup from behind one NAT and
its restore from behind another, then a relay killed in the middle of a backup.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pbak.coordinator import availability
from p2pbak.localgrid.demo import compare_trees, restored_root
from p2pbak.localgrid.grid import child_env
from p2pbak.net import peertls, seal
from p2pbak.store.db.bank import user_account
from tests.support.grid import lines, random_files, summary
from tests.support.natlab import (
    COORD_URL,
    PEER_PORT,
    Capture,
    LabGrid,
    LabPeer,
    lab_or_skip,
    start_lab_grid,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabGrid]:
    with lab_or_skip(tmp_path_factory.mktemp("lab")) as nat:
        grid = start_lab_grid(nat, tmp_path_factory.mktemp("natlab"))
        try:
            grid.wait_settled()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{grid.logs()}") from None
        yield grid
        for proc in [grid.coordinator, *(p.process for p in grid.peers if p.process)]:
            assert "Traceback" not in proc.output(), f"{proc.name}:\n{proc.output()}"


def _peer(lab: LabGrid, name: str) -> LabPeer:
    return next(p for p in lab.peers if p.name == name)


def test_each_peer_finds_how_it_is_reached(lab: LabGrid) -> None:
    relays = {_mid(_peer(lab, "pub1")), _mid(_peer(lab, "pub2"))}
    # a peer that came up before any peer relay did starts on the coordinator's (the last
    # resort) and moves to a peer relay within a few heartbeats
    reached = wait_until(lambda: (r := lab.reached()) and all(
        r[p.name].get("via") in relays for p in lab.peers if p.home and not p.home.upnp)
        and r, 40,
        "home peers did not all move to peer relays")
    for p in lab.peers:
        how = reached[p.name]
        if p.home is None:  # dialled back at its interface address, over pinned TLS
            port = PEER_PORT + int(p.name[-1])
            assert how == {"how": "public", "url": f"https://{_pin(p)}@198.18.0.1:{port}"}
        elif p.home.upnp:  # its router forwards a port to it: dialled back there
            assert how["how"] == "port-mapped" and how["via"] == "UPnP", how
            assert how["url"].startswith(f"https://{_pin(p)}@{p.home.wan_ip}:")
        else:  # nothing dials a home: relayed
            assert how["how"] == "relayed" and f"/v1/relay/{_mid(p)}~" in how["url"]
            assert seal.url_key(how["url"])  # its link key, pinned: links through relays are sealed
    # the two UPnP peers share one router: each has its own external port
    assert len({reached[p.name]["url"] for p in lab.peers if p.home and p.home.upnp}) == 2
    vias = {reached[p.name]["via"] for p in lab.peers if p.home and not p.home.upnp}
    assert vias == relays  # the load spread over both
    home = _peer(lab, "home30")  # behind the symmetric NAT
    r = lab.cli(home.ns, "status", "--json", config=home)
    assert summary(r)["reached"]["how"] == "relayed"
    text = lab.cli(home.ns, "status", config=home).stdout
    assert "reached by others: relayed via" in text
    mapped = _peer(lab, "home40")
    text = lab.cli(mapped.ns, "status", config=mapped).stdout
    assert f"reached by others: port-mapped (UPnP) at https://{_pin(mapped)}@198.18.0.14:" in text


def test_a_forwarded_port_is_found_at_the_routers_address(lab: LabGrid) -> None:
    """The coordinator dials back the address it sees the peer come from: with a port
    forwarded by hand, the peer is public there, with no --advertise."""
    peer = _peer(lab, "home21")
    home = peer.home
    assert home is not None and peer.process is not None
    lab.lab.forward(home, 1, PEER_PORT)
    peer.process.stop()
    lab.start_peer(peer)
    want = {"how": "public", "url": f"https://{_pin(peer)}@{home.wan_ip}:{PEER_PORT}"}
    wait_until(lambda: lab.status(peer)["reached"] == want, 30,
               "the forwarded peer was not found public at its router's address")


def _pin(peer: LabPeer) -> str:
    """The peer's TLS certificate pin (beyond loopback peers speak TLS only)."""
    return peertls.fingerprint((peer.storage / peertls.CERT_FILE).read_bytes())


def _mid(peer: LabPeer) -> str:
    from p2pbak.config import load

    return load(peer.config).machine_id


def test_backup_behind_one_nat_lands_behind_every_nat(lab: LabGrid, tmp_path: Path) -> None:
    owner = _peer(lab, "home10")
    before = _held(lab.peers)
    # placement prefers direct holders at equal balance: a relayed one may be passed over
    # by one small backup (more of them are direct once home 2 forwards a port), not by all
    for seed in (13, 14, 15):
        src = random_files(tmp_path / f"src{seed}", 6, 256, seed=seed)
        summary(lab.cli(owner.ns, "backup", str(src), "--json", config=owner))
        # the backup's fragments, not those the availability tests place meanwhile
        gained = {p.name for p in lab.peers if _backup_fragments(p, before[p.name])}
        where = {p.home.lan if p.home else "" for p in lab.peers if p.name in gained}
        if len(where) == len(lab.lab.homes) + 1:
            break
    # every NAT, the symmetric one too, and the internet
    assert where == {"", *(home.lan for home in lab.lab.homes)}, gained
    # recover on a new machine behind another NAT, restore: byte-identical
    other = _peer(lab, "home21")
    config = tmp_path / "laptop" / "config.toml"
    r = lab.lab.cli(other.ns, "recover", "--coordinator", COORD_URL, "--user", owner.name,
                    "--machine", "laptop", "--config", str(config), "--password-file",
                    str(lab.password_file), "--json")
    assert summary(r)["user"] == owner.name
    target = tmp_path / "restored"
    r = lab.cli(other.ns, "restore", "latest", "--target", str(target), "--json",
                config=config)
    summary(r)
    assert compare_trees(src, restored_root(target, src)) == []


def test_the_relays_that_carried_the_backup_are_paid(lab: LabGrid) -> None:
    """After the backup from home 1 (above): a transfer through a peer relay (a store to the
    symmetric NAT at least, which nothing can punch) paid that relay too once its holder
    handed in the receipt, under the holder's own proof (`relay:` + the holder's ref), and
    the ledger still sums to 0."""
    relayed = wait_until(lambda: _relay_pay(lab)[0], 30, "no relay was paid")
    refs, total = _relay_pay(lab)[1:]
    relays = {user_account("pub1"), user_account("pub2")}
    assert {account for _, account, _ in relayed} <= relays, relayed
    # each beside the holder's own payment for the same proof: a store's placement, or a
    # fetch's acknowledged ticket (the restore's, the availability tests')
    assert all(ref.removeprefix("relay:") in refs for ref, _, _ in relayed), relayed
    assert any(ref.startswith("relay:placed:") for ref, _, _ in relayed), relayed
    assert total == 0


def _relay_pay(lab: LabGrid) -> tuple[list[tuple[str, str, int]], set[str], int]:
    """The relays' pay (ref, account, µc), every booked ref, and the ledger's sum."""
    db = sqlite3.connect(f"file:{lab.root / 'coord.db'}?mode=ro", uri=True)
    try:
        paid = db.execute(
            "SELECT t.ref, e.account, e.amount FROM transactions t JOIN entries e"
            " ON e.txn = t.id WHERE t.kind = 'relay' AND e.amount > 0").fetchall()
        refs = {r for (r,) in db.execute("SELECT ref FROM transactions WHERE ref IS NOT NULL")}
        total = db.execute("SELECT coalesce(sum(amount), 0) FROM entries").fetchone()[0]
    finally:
        db.close()
    return paid, refs, int(total)


def test_what_crosses_a_relay_is_ciphertext(lab: LabGrid, tmp_path: Path) -> None:
    """Capture the relays' traffic on the internet's bridge during a backup: no ticket,
    fragment id, fragment byte or file name in the clear."""
    src = random_files(tmp_path / "src", 4, 256, seed=7)
    (src / "p2pbak_private_plans.txt").write_text("quarterly numbers\n")
    owner = _peer(lab, "home20")
    # relayed peers behind the symmetric NAT (the plain NATs' are hole-punched, one in the
    # owner's home is reached on its LAN, the UPnP home's at their router's mapped ports)
    homes = [p for p in lab.peers if p.home is not None and p.home.symmetric]
    before = {p.name: set(_fragment_files(p)) for p in homes}
    peer_relays = {PEER_PORT + 1, PEER_PORT + 2}  # pub1, pub2 (the coordinator's: 8420)
    with Capture(lab.lab.inet, "br0", peer_relays | {8420}) as cap:
        done = summary(lab.cli(owner.ns, "backup", str(src), "--json", config=owner))
    # all that crossed the peer relays (TLS, direct transfers to them included), and what
    # went through the coordinator's relay (its API speaks plain HTTP in the lab)
    wire = cap.on(peer_relays) + cap.relayed()
    new = [f for p in homes for f in _fragment_files(p) if f not in before[p.name]]
    assert new and done["fragments_uploaded"] >= len(new)
    assert len(wire) > sum(f.stat().st_size for f in new)  # they crossed the relays
    for f in new:
        data = f.read_bytes()
        assert f.name.encode() not in wire  # the fragment id
        for at in (0, len(data) // 2, len(data) - 64):
            assert data[at:at + 64] not in wire
    for needle in (b"p2pbak_private_plans", b"/v1/fragments/"):
        at = wire.find(needle)
        assert at < 0, wire[max(0, at - 300):at + 100]
    # the only tickets in the clear are the relay tickets of links (re)connecting
    assert wire.count(b"X-P2PBAK-Ticket") == wire.count(b"/connect HTTP/1.1")


def test_peers_behind_two_plain_nats_punch_a_direct_link(lab: LabGrid,
                                                         tmp_path: Path) -> None:
    """A backup from home 2 reaches home 1's relayed peers by hole punching: their
    fragments cross from router to router, not through the relays; the symmetric NAT's
    peers cannot be punched and stay relayed."""
    owner = _peer(lab, "home20")
    r1, r2, r3 = (h.wan_ip for h in lab.lab.homes[:3])
    plain = [p for p in lab.peers if p.home is lab.lab.homes[0]]
    symmetric = [p for p in lab.peers if p.home is lab.lab.homes[2]]
    before = _held(plain + symmetric)

    def new_bytes(peers: list[LabPeer], since: dict[str, set[Path]] = before) -> int:
        """Of the backups' fragments (the coordinator's availability tests place theirs,
        through the relays, meanwhile)."""
        return sum(f.stat().st_size for p in peers for f in _backup_fragments(p, since[p.name]))
    relays = {PEER_PORT + 1, PEER_PORT + 2, 8420}  # pub1, pub2 and the coordinator's
    with (Capture(lab.lab.inet, "br0", relays) as relayed,
          Capture(lab.lab.inet, "w2", set(range(1, 65536))) as routers):  # home 2's link
        # twice at least (each backup punches its own links: the peers' second punch
        # within a minute too), until both NATs hold some (placement spreads by balance)
        for seed in (17, 18, 19):
            src = random_files(tmp_path / f"src{seed}", 8, 256, seed=seed)
            seen = _held(plain)
            done = summary(lab.cli(owner.ns, "backup", str(src), "--json", config=owner))
            # one link per home-1 peer used; none to the symmetric NAT's
            used = [p for p in plain if new_bytes([p], seen)]
            assert done["links_punched"] == len(used), done
            if seed > 17 and new_bytes(plain) and new_bytes(symmetric):
                break
    assert new_bytes(plain) and new_bytes(symmetric), "3 backups placed nothing behind a NAT"
    # router to router: only punched links (the second peer behind a router may be
    # given another port than the one it listens on)
    direct = _bytes_between(routers, r1, r2)
    assert direct > new_bytes(plain), (direct, new_bytes(plain))
    # home 1's relay links carried little (the punch requests, not the fragments); home
    # 3's carried all of its fragments
    peer_relays = {PEER_PORT + 1, PEER_PORT + 2}
    assert _bytes_of(relayed, r1, peer_relays) < new_bytes(plain) // 4
    assert _bytes_of(relayed, r3, relays) > new_bytes(symmetric)
    for p in plain:
        if new_bytes([p]):
            assert p.process is not None and "hole punched" in p.process.output()
            # `status` says so: hole-punched, the relay kept as rendezvous and fallback
            how = wait_until(lambda p=p: (r := lab.status(p)["reached"])["how"] ==
                             "hole-punched" and r, 10, f"{p.name} not reported hole-punched")
            assert how["links"] >= 1 and how["via"] in {_mid(_peer(lab, "pub1")),
                                                        _mid(_peer(lab, "pub2"))}
            text = lab.cli(p.ns, "status", config=p).stdout
            assert "reached by others: hole-punched (" in text
    assert all(lab.status(p)["reached"]["how"] == "relayed" for p in symmetric)
    # the holders are paid for those stores, the relays they bypassed are not (their
    # receipts say direct: coordinator/billing.py)
    placed = {f"placed:{_mid(p)}:{f.name}:" for p in plain
              for f in _backup_fragments(p, before[p.name])}
    refs = wait_until(lambda: (got := _ledger_refs(lab)) and all(
        any(r.startswith(x) for r in got) for x in placed) and got, 30,
        "the home-1 holders were not paid for the fragments the punched links brought")
    assert not [r for r in refs for x in placed if r.startswith("relay:" + x)]


def _ledger_refs(lab: LabGrid) -> set[str]:
    return _relay_pay(lab)[1]


def _backup_fragments(peer: LabPeer, before: set[Path]) -> list[Path]:
    """`peer`'s fragments not in `before`, but for the availability tests' (their size)."""
    return [f for f in _fragment_files(peer)
            if f not in before and f.stat().st_size != availability.TEST_SIZE]


def _held(peers: list[LabPeer]) -> dict[str, set[Path]]:
    return {p.name: set(_fragment_files(p)) for p in peers}


def _bytes_between(cap: Capture, a: str, b: str) -> int:
    want = {socket.inet_aton(a), socket.inet_aton(b)}
    return sum(len(x) for conn, exchanges in cap.flows.items()
               if {end[0] for end in conn} == want for x in exchanges)  # type: ignore[index]


def _bytes_of(cap: Capture, ip: str, ports: set[int]) -> int:
    """What crossed between `ip` and the servers on `ports`, both ways."""
    at = socket.inet_aton(ip)
    return sum(len(x) for conn, exchanges in cap.flows.items()
               if any(end[0] == at for end in conn)  # type: ignore[index]
               and any(end[1] in ports for end in conn) for x in exchanges)  # type: ignore[index]


def _fragment_files(peer: LabPeer) -> list[Path]:
    return [f for f in (peer.storage / "fragments").rglob("*")
            if f.is_file() and len(f.name) == 64]


def _receiving(peer: LabPeer) -> bool:
    """A fragment is arriving at `peer` right now (its temp file exists)."""
    return any(f.name.endswith(".tmp") for f in (peer.storage / "fragments").rglob("*"))


def test_killing_a_relay_mid_backup_leaves_it_complete(lab: LabGrid, tmp_path: Path) -> None:
    relay = _peer(lab, "pub1")  # relays under a 4 MB/s cap: transfers through it are slow
    carried = wait_until(lambda: [p for p in lab.peers if p.name != "home11" and lab.status(p)
                                  ["reached"].get("via") == _mid(relay)] or None,
                         40, "pub1 relays none of the peers the backup will use")
    src = random_files(tmp_path / "src", 48, 1024, seed=31)
    owner = _peer(lab, "home11")
    backup = subprocess.Popen(
        ["ip", "netns", "exec", owner.ns, sys.executable, "-m", "p2pbak", "backup", str(src),
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_env(lab.env(owner)), stdin=subprocess.DEVNULL)
    try:
        # mid-transfer: a fragment is on its way through pub1 to a peer behind a NAT
        wait_until(lambda: any(_receiving(p) for p in carried) or backup.poll() is not None,
                   60, "no fragment went through pub1", every=0.02)
        assert backup.poll() is None, "the backup ended before the relay could be killed"
        assert relay.process is not None
        relay.process.kill()
        out, err = backup.communicate(timeout=180)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait(10)
    assert backup.returncode == 0, err
    done = [m for m in lines(out) if m.get("message_type") == "summary"]
    assert len(done) == 1 and done[0]["packs_added"] >= 1
    # the broken transfers were sent again: to spare peers, else through the new relays
    assert done[0]["fragments_moved"] + done[0]["fragments_rerouted"] >= 1, done[0]

    def moved() -> bool:
        return all(lab.status(p)["reached"].get("via") not in ("", _mid(relay))
                   for p in carried)
    wait_until(moved, 30, "pub1's peers did not move to another relay")
    target = tmp_path / "restored"
    r = lab.cli(owner.ns, "restore", "latest", "--target", str(target), "--json",
                config=owner, timeout=300)
    summary(r)
    assert compare_trees(src, restored_root(target, src)) == []
