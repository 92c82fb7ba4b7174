"""`p2pbak peer run` as real processes beside a real `p2pbak serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from p2pbak import config
from p2pbak.localgrid.grid import Grid, Process, free_port, spawn, start_grid, wait_for, wait_http
from p2pbak.net.api import CoordinatorClient, PeerClient, PeerError
from tests.support.grid import GridSpec, coordinator_ticket, one_line_error
from tests.support.peers import fragment, stored_files

pytestmark = pytest.mark.slow

GRID = GridSpec(3, heartbeat=1.0, clean_exit=True)


def start_agent(grid: Grid, name: str, *, supply: config.Supply | None = None,
                extra: tuple[str, ...] = ()) -> tuple[Process, Path, config.Config]:
    cfg_path = grid.add_user(name)
    cfg = config.load(cfg_path)
    if supply is not None:
        cfg.supply = supply
        config.save(cfg)
    storage = cfg_path.parent / "storage"
    return spawn_agent(grid, name, cfg_path, storage, extra), storage, cfg


def spawn_agent(grid: Grid, name: str, cfg_path: Path, storage: Path,
                extra: tuple[str, ...] = ()) -> Process:
    port = free_port()
    log = grid.root / "logs" / f"{name}-{port}.log"
    proc = spawn(name, ["peer", "run", "--storage", str(storage), "--listen",
                        f"127.0.0.1:{port}", "--config", str(cfg_path),
                        "--heartbeat-interval", "0.5", *extra], log, f"http://127.0.0.1:{port}")
    wait_http(f"{proc.url}/v1/health", proc)
    return proc


def coordinator_sees(grid: Grid, cfg: config.Config, online: bool) -> None:
    async def check() -> bool:
        async with CoordinatorClient.from_config(cfg) as c:
            return bool((await c.status()).get("peer_online")) is online

    wait_for(lambda: asyncio.run(check()), 30, f"the coordinator did not see online={online}")


def test_fragments_move_on_coordinator_tickets(grid: Grid) -> None:
    bob = config.load(grid.add_user("bob"))

    async def go() -> None:
        async with CoordinatorClient.from_config(bob) as c, PeerClient() as p:
            plan = await c.plan(20_000)
            frags = [fragment(plan["fragment_size"]) for _ in plan["peers"]]
            pack_id = fragment(64)[0]
            entries = [{"index": i, "fragment_id": fid, "size": len(data),
                        "peer_id": peer["peer_id"]}
                       for i, ((fid, data), peer) in enumerate(zip(frags, plan["peers"],
                                                                  strict=True))]
            wires = await c.tickets(pack_id, entries)
            for (fid, data), peer, wire in zip(frags, plan["peers"], wires, strict=True):
                await p.put_fragment(peer["url"], fid, data, wire)
                with pytest.raises(PeerError) as e:  # the same ticket twice
                    await p.put_fragment(peer["url"], fid, data, wire)
                assert e.value.status == 409
            await c.commit(pack_id, k=plan["k"], n=plan["n"], repair=plan["repair"],
                           success=plan["success"], length=20_000, fragments=entries)
            info = await c.get_pack(pack_id)
            by_id = dict(frags)
            for f in info["fragments"]:
                assert await p.get_fragment(f["url"], f["fragment_id"], f["ticket"]) \
                    == by_id[f["fragment_id"]]

    asyncio.run(go())
    held = {p.name for peer in grid.peers for p in stored_files(peer.storage)}
    assert len(held) == len(grid.peers)


def test_health_names_the_machine_and_heartbeats_reach_the_coordinator(grid: Grid) -> None:
    for peer in grid.peers:
        cfg = config.load(peer.config)
        health = wait_http(f"{peer.process.url}/v1/health")
        assert health["peer_id"] == cfg.machine_id
        assert health["free_bytes"] > 0
        coordinator_sees(grid, cfg, online=True)


def test_sigterm_lets_a_transfer_in_flight_finish(grid: Grid) -> None:
    # a 100 kB/s download cap makes a 150 kB store take over a second
    proc, storage, cfg = start_agent(grid, "dave", supply=config.Supply(download=100_000))
    coordinator_sees(grid, cfg, online=True)
    carol = config.load(grid.add_user("carol"))
    fid, data = fragment(150_000)
    result: dict[str, object] = {}

    async def upload() -> None:
        wire = coordinator_ticket(grid, op="store", fragment=fid, size=len(data),
                                  from_=carol.machine_id, to=cfg.machine_id)
        async with PeerClient() as p:
            try:
                await p.put_fragment(proc.url, fid, data, wire)
                result["ok"] = True
            except PeerError as exc:
                result["error"] = exc

    worker = threading.Thread(target=lambda: asyncio.run(upload()))
    worker.start()
    wait_for(lambda: any(p.name.endswith(".tmp") for p in (storage / "fragments").rglob("*")),
             30, "the upload did not start")
    proc.popen.send_signal(signal.SIGTERM)
    worker.join(30)
    assert proc.popen.wait(30) == 0
    assert result == {"ok": True}
    (held,) = stored_files(storage)
    assert held.name == fid and held.read_bytes() == data
    log = proc.output()
    assert "stopping" in log and "Traceback" not in log
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(proc.url.rsplit(":", 1)[1])), 1).close()


def test_sigkill_mid_store_leaves_nothing_to_serve(grid: Grid) -> None:
    proc, storage, cfg = start_agent(grid, "gina", supply=config.Supply(download=50_000))
    coordinator_sees(grid, cfg, online=True)
    hank = config.load(grid.add_user("hank"))
    fid, data = fragment(150_000)
    errors: list[Exception] = []

    ticket = coordinator_ticket(grid, op="store", fragment=fid, size=len(data),
                                from_=hank.machine_id, to=cfg.machine_id)

    async def upload(url: str, wire: str) -> None:
        async with PeerClient() as p:
            try:
                await p.put_fragment(url, fid, data, wire)
            except PeerError as exc:
                errors.append(exc)

    worker = threading.Thread(target=lambda: asyncio.run(upload(proc.url, ticket)))
    worker.start()
    wait_for(lambda: any(p.name.endswith(".tmp") for p in (storage / "fragments").rglob("*")),
             30, "the upload did not start")
    proc.kill()
    worker.join(30)
    assert len(errors) == 1  # the client saw the failure
    assert [p for p in stored_files(storage) if p.name.endswith(".tmp")]  # left behind

    again = spawn_agent(grid, "gina", cfg.path, storage)
    try:
        assert stored_files(storage) == []  # the half-written file is gone
        assert wait_http(f"{again.url}/v1/health")["stored_bytes"] == 0
        errors.clear()
        asyncio.run(upload(again.url, ticket))  # the spent ticket stays spent
        assert len(errors) == 1 and errors[0].status == 409
    finally:
        again.stop()
    assert again.popen.returncode == 0


def test_coordinator_outage_is_logged_once_and_fragments_still_served(
        tmp_path: Path) -> None:
    g = start_grid(tmp_path, 0)  # a coordinator, no peers yet
    try:
        proc, _, cfg = start_agent(g, "erin", extra=("--json",))
        coordinator_sees(g, cfg, online=True)
        g.coordinator.stop()
        wait_for(lambda: "unavailable" in proc.output(), 30, "no outage line")
        time.sleep(2)  # several failed heartbeats at 0.5 s
        assert wait_http(f"{proc.url}/v1/health")["peer_id"] == cfg.machine_id
        g.restart_coordinator("coordinator2")
        wait_for(lambda: proc.output().count("connected to the coordinator") == 2, 30,
                 "the agent did not reconnect")
        proc.stop()
        assert proc.popen.returncode == 0
    finally:
        g.stop()
    events = [json.loads(ln) for ln in proc.output().splitlines() if ln.startswith("{")]
    texts = [e["message"] for e in events if "message" in e]
    assert sum("unavailable" in t for t in texts) == 1, texts
    assert sum("connected to the coordinator" in t for t in texts) == 2, texts
    assert events[-1]["message_type"] == "summary"


def _run(args: list[str], cfg: Path) -> tuple[int, str]:
    from p2pbak.localgrid.grid import run_cli

    r = run_cli(["peer", "run", *args, "--config", str(cfg)], timeout=60)
    return r.returncode, one_line_error(r)


def test_start_errors_are_one_line(grid: Grid, tmp_path: Path) -> None:
    cfg = grid.peers[0].config
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, err = _run(["--storage", str(a_file)], cfg)
    assert code == 1 and "not a folder" in err
    code, err = _run(["--storage", str(a_file / "sub")], cfg)
    assert code == 1 and "not writable" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _run(["--storage", str(tmp_path / "s"), "--listen", f"127.0.0.1:{port}"],
                         cfg)
    assert code == 1 and "cannot listen" in err
    code, err = _run(["--storage", str(tmp_path / "s"), "--listen", "nonsense"], cfg)
    assert code == 1 and "HOST:PORT" in err
    code, err = _run(["--storage", str(grid.peers[0].storage),
                      "--listen", f"127.0.0.1:{free_port()}"], cfg)
    assert code == 1 and "in use" in err and "pid" in err  # the running agent's folder
    code, err = _run(["--storage", str(tmp_path / "s")], tmp_path / "missing.toml")
    assert code == 10 and "p2pbak init" in err
    assert not os.path.exists(tmp_path / "s" / "fragments") or not stored_files(tmp_path / "s")


def test_agent_runs_workers_and_heartbeat_hooks(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from p2pbak.peer.agent import Agent, AgentContext

    g = start_grid(tmp_path, 0)  # a coordinator, no peers yet
    try:
        cfg = config.load(g.add_user("frank"))
        answers: list[dict] = []
        events: list[str] = []

        async def hook(ctx: AgentContext, answer: dict) -> None:
            answers.append(answer)

        async def failing_hook(ctx: AgentContext, answer: dict) -> None:
            raise ValueError("hook broke")

        async def worker(ctx: AgentContext) -> None:
            events.append(f"started {ctx.state.peer_id} {ctx.url}")
            assert len(ctx.state.served_hooks) == 1
            assert (await ctx.peers.health(ctx.url))["peer_id"] == cfg.machine_id
            try:
                await asyncio.Event().wait()
            finally:
                events.append("cancelled")

        async def flaky(ctx: AgentContext) -> None:
            events.append("flaky")
            raise KeyError("boom")

        async def go() -> None:
            stop = asyncio.Event()
            agent = Agent(cfg.path, tmp_path / "storage", port=free_port(), interval=0.2,
                          workers=[worker, flaky], heartbeat_hooks=[failing_hook, hook],
                          served_hooks=[lambda t, wire: None])
            running = asyncio.create_task(agent.run(stop))
            while len(answers) < 3 and not running.done():
                await asyncio.sleep(0.05)
            stop.set()
            await running

        asyncio.run(go())
    finally:
        g.stop()
    assert len(answers) >= 3 and all(a.get("ok") for a in answers)
    assert events[0].startswith(f"started {cfg.machine_id} http://127.0.0.1:")
    assert sum(e.startswith("started") for e in events) == 1  # it never failed
    assert events[-1] == "cancelled" and "flaky" in events
    broke = [r for r in caplog.records if "hook broke" in r.getMessage()]
    assert len(broke) == 1  # logged once, though it failed on every heartbeat
