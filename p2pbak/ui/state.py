"""What the page shows below the sliders, in words: reachability, backups, lending, alerts.

No balance and no price here (§3.1, hidden market): those are in `account_details`, which
the page asks for only when the user opens "Details".
"""

from __future__ import annotations

import time
from typing import Any

from p2pbak.config import format_size
from p2pbak.errors import P2pbakError
from p2pbak.net.api import CoordinatorClient


def _when(t: float, now: float) -> str:
    ago = max(0, int(now - t))
    span = f"{ago // 86400} days" if ago >= 2 * 86400 else f"{ago // 3600} hours" \
        if ago >= 2 * 3600 else f"{ago // 60} minutes"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) + f" ({span} ago)"


def _lines(cfg: Any, status: dict[str, Any], snaps: list[dict[str, Any]]) -> list[str]:
    out = []
    url = status.get("peer_url") or cfg.peer_url
    if status.get("peer_online"):
        out.append(f"Other users reach this computer at {url or 'its peer agent'}.")
    elif url:
        out.append(f"This computer's peer agent ({url}) is offline: start "
                   "`p2pbak peer run` so it lends its caps and earns its backup space.")
    else:
        out.append("No peer agent has run on this computer yet: start `p2pbak peer run`.")
    if snaps:
        last = max(float(s.get("created", 0)) for s in snaps)
        out.append(f"Last backup: {_when(last, time.time())}.")
    else:
        out.append("No backup yet: run `p2pbak backup FOLDER`.")
    plural = "" if len(snaps) == 1 else "s"
    backed = format_size(int(status.get("bytes_backed_up", 0)))
    out.append(f"{len(snaps)} snapshot{plural}, {backed} backed up.")
    lent = cfg.supply.space
    what = "this disk (no cap)" if lent is None else format_size(lent) if lent else "no space"
    out.append(f"Lending {what}; other users' "
               f"data here: {format_size(int(status.get('bytes_stored_for_others', 0)))}.")
    return out


def _alerts(account: Any) -> list[str]:
    if not isinstance(account, dict):
        return []
    alert = account.get("alert")
    if account.get("frozen"):
        return ["New backups are paused: this computer has used more than it lent. Keep its "
                "peer agent online (or raise a slider) to earn them back; restores still work."]
    if isinstance(alert, dict) or account.get("low"):
        return ["This computer uses more than it lends: keep its peer agent online longer or "
                "raise a slider, or new backups will pause."]
    return []


async def machine_state(cfg: Any) -> dict[str, Any]:
    """{"reachable", "lines", "alerts", "sizes": [[created, size], ...]}."""
    try:
        async with CoordinatorClient.from_config(cfg) as coord:
            status = await coord.status()
            snaps = await coord.list_snapshots()
    except P2pbakError as exc:
        return {"reachable": False, "alerts": [],
                "lines": [f"The coordinator {cfg.coordinator} cannot be reached ({exc}); "
                          "the sliders still work and Apply saves on this computer."],
                "sizes": []}
    sizes = sorted([float(s.get("created", 0)), int(s.get("size", 0))] for s in snaps)
    return {"reachable": True, "lines": _lines(cfg, status, snaps),
            "alerts": _alerts(status.get("account")), "sizes": sizes[-30:]}


def _credits(micro: int) -> str:
    """µc (§2.4: integer micro-credits) as credits, trailing zeros dropped."""
    whole, frac = divmod(abs(micro), 1_000_000)
    return ("-" if micro < 0 else "") + f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


async def account_details(cfg: Any) -> dict[str, Any]:
    """Balance, health and today's prices: for the "Details" disclosure only."""
    try:
        async with CoordinatorClient.from_config(cfg) as coord:
            account = await coord.account()
    except P2pbakError as exc:
        return {"lines": [f"The coordinator cannot be reached ({exc}): try again later."]}
    p = account.get("prices", {}).get("p", {})
    return {"lines": [f"Balance: {_credits(int(account.get('balance', 0)))} credits "
                      f"({account.get('health', '')}).",
                      f"Prices today (space = 1): upload {float(p.get('upload', 0)):.4g}, "
                      f"download {float(p.get('download', 0)):.4g}."]}
