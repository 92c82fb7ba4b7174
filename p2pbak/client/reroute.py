"""A relayed peer's address after its relay failed: the client side of relay failover.

When a relay dies, the peers it carried connect to another relay within a second or two
and announce their new URL. A client whose transfer broke asks the coordinator for the
peer's current URL (GET /v1/reach/{peer_id}) until it changes, then retries there.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

from p2pbak.errors import P2pbakError
from p2pbak.net.api import CoordinatorClient, PeerError
from p2pbak.net.urls import relay_base

WAIT = 15.0  # seconds to wait for a relayed peer to come back through another relay
POLL = 0.5


def worth_rerouting(url: str, exc: BaseException) -> bool:
    """A relayed peer that could not be reached (its relay down or without it)."""
    return bool(relay_base(url)) and isinstance(exc, PeerError) and exc.status in (0, 503)


async def new_url(coord: CoordinatorClient, peer_id: str, old: str,
                  wait: float = WAIT) -> str:
    """The peer's URL once it differs from `old`; '' if it does not change in `wait` s."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            body = await coord.call("GET", f"/v1/reach/{quote(peer_id, safe='')}")
        except P2pbakError:
            body = {}
        url = str(body.get("url", ""))
        if url and url != old:
            return url
        await asyncio.sleep(POLL)
    return ""
