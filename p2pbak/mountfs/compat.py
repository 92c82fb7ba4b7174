"""pyfuse3's asyncio mode, made safe to stop.

Its `wait_readable` resolves the future from a reader callback and its `notify_closing`
(called by `pyfuse3.terminate`) fails the same future; when /dev/fuse turns readable in the
same loop turn as a stop signal, the second of the two raises InvalidStateError ("Exception
in callback Future.set_result"), printed as a traceback at every such Ctrl-C. These two
replacements do the same but touch a future only while it is pending; pyfuse3 looks both up
on its asyncio module at each call, so setting them there is enough.
"""

from __future__ import annotations

import asyncio

import pyfuse3.asyncio as fuse_asyncio


def _settle(future: asyncio.Future[None], error: BaseException | None = None) -> None:
    if not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


async def wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    waiting = fuse_asyncio._read_futures[fd]
    waiting.add(future)
    loop.add_reader(fd, _settle, future)
    try:
        await future
    finally:
        loop.remove_reader(fd)
        waiting.discard(future)
        if not waiting:
            fuse_asyncio._read_futures.pop(fd, None)


def notify_closing(fd: int) -> None:
    for future in list(fuse_asyncio._read_futures.get(fd, ())):
        _settle(future, fuse_asyncio.ClosedResourceError())


def enable() -> None:
    """pyfuse3 on asyncio, with the two race-free functions."""
    fuse_asyncio.enable()
    fuse_asyncio.wait_readable = wait_readable  # type: ignore[assignment]
    fuse_asyncio.notify_closing = notify_closing  # type: ignore[assignment]
