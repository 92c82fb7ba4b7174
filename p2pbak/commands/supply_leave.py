"""`p2pbak supply leave`: graceful exit; this machine's fragments move to other peers first."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from p2pbak.commands import groups
from p2pbak.commands.common import run
from p2pbak.commands.options import Options, with_options
from p2pbak.commands.output import Reporter
from p2pbak.config import format_size, load
from p2pbak.errors import P2pbakError

POLL = 2.0  # seconds between progress questions


async def _ask(cfg: Any, start: bool) -> dict[str, Any]:
    # imported here, not at the top: keeps CLI start-up fast
    from p2pbak.net.api import CoordinatorClient

    async with CoordinatorClient.from_config(cfg) as coord:
        if start:
            return await coord.call("POST", "/v1/supply/leave", {})
        return await coord.call("GET", "/v1/supply/leave")


def _wait(rep: Reporter, cfg: Any, timeout: float) -> dict[str, Any]:
    """Poll until nothing is placed on this peer (or `timeout` seconds pass)."""
    deadline = None if timeout <= 0 else time.monotonic() + timeout
    state = run(_ask(cfg, start=True))
    last = None
    while state["state"] != "left":
        if (state["fragments"], state["bytes"]) != last:
            last = (state["fragments"], state["bytes"])
            rep.status(state=state["state"], fragments_left=state["fragments"],
                       bytes_left=state["bytes"])
            rep.say(f"{state['fragments']} fragments ({format_size(state['bytes'])}) left "
                    "to move to other peers")
        if deadline is not None and time.monotonic() > deadline:
            raise P2pbakError(f"{state['fragments']} fragments still depend on this peer "
                              f"after {timeout:g} s: keep `p2pbak peer run` going and run "
                              "`p2pbak supply leave` again to keep waiting")
        time.sleep(POLL)
        state = run(_ask(cfg, start=False))
    return state


@with_options(password=False)
def supply_leave(opts: Options,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Give up waiting after this many seconds (0: wait as long as it "
        "takes); the move goes on.")] = 0,
) -> None:
    """Stop lending: move this peer's fragments to others, then it can be stopped."""
    rep = opts.reporter()
    cfg = load(opts.config)
    rep.say("leaving: no new fragments come here; keep `p2pbak peer run` going while the "
            "repair machinery moves the ones it holds to other peers")
    final = _wait(rep, cfg, timeout)
    rep.summary(state=final["state"], fragments_left=final["fragments"],
                bytes_left=final["bytes"])
    rep.say("done: nothing depends on this peer any more; stop `p2pbak peer run` and "
            "remove its storage folder")


def register(app: typer.Typer) -> None:
    groups.supply_app.command("leave")(supply_leave)
