"""What every long-running server of p2pbak shares (coordinator, peer agent, settings page):
run until SIGTERM or SIGINT asks it to stop, or until the parent holding its lifeline dies.

The lifeline: a process started by a local grid (`p2pbak demo`, the tests) inherits the
read end of a pipe whose write end only its parent holds, fd number in $P2PBAK_LIFELINE.
When the parent dies, even by SIGKILL, the kernel closes the write end and the read
returns end of file: the server stops as on SIGTERM. A parent that means to leave it
running (`demo --keep`) writes DETACH first. (PR_SET_PDEATHSIG alone could not keep.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
ENV_LIFELINE = "P2PBAK_LIFELINE"
DETACH = b"k"


def stop_event() -> asyncio.Event:
    """An event SIGTERM or SIGINT (or the lifeline's end) sets (call inside the loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    _watch_lifeline(loop, stop)
    return stop


def _watch_lifeline(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    # popped: the processes this one starts must not hold (or watch) its parent's pipe
    text = os.environ.pop(ENV_LIFELINE, "")
    if not text.isdigit():
        return
    fd = int(text)

    def readable() -> None:
        try:
            data = os.read(fd, 1)
        except OSError:
            data = b""
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        if data != DETACH:
            stop.set()

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError):
        return  # not an open pipe: nothing to watch


async def wait_for_signal() -> None:
    """Return once SIGTERM or SIGINT arrives; the handlers are removed after."""
    try:
        await stop_event().wait()
    finally:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
