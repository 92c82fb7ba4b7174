"""What every long-running server of p2pbak shares (coordinator, peer agent, settings page):
run until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_event() -> asyncio.Event:
    """An event SIGTERM or SIGINT sets (call inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_for_signal() -> None:
    """Return once SIGTERM or SIGINT arrives; the handlers are removed after."""
    try:
        await stop_event().wait()
    finally:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
