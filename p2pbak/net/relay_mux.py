"""Streams multiplexed over one WebSocket: how a relay carries HTTP to a peer behind NAT.

The relayed peer keeps one outbound WebSocket to its relay. Each HTTP request another
machine sends to the relay for that peer becomes one stream: the relay opens it with the
request head, sends the body, the peer answers with the response head and body.

Frame = one binary WebSocket message: stream id (u32), kind (u8), payload.
Backpressure is per stream and per direction, by credit as in HTTP/2: a sender may have at
most WINDOW bytes unacknowledged; the receiver gives credit back as its consumer takes the
bytes. So a slow consumer stalls only its own stream, and the WebSocket's own send (which
waits for the socket to drain) holds back the whole link when the network is the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

OPEN, DATA, END, HEAD, CREDIT, RESET = range(1, 7)
WINDOW = 512 * 1024
CHUNK = 64 * 1024
_HDR = struct.Struct("!IB")
Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class StreamReset(ConnectionError):
    """The other end gave up on the stream, or the link under it went away."""


class Stream:
    """One request/response exchange on a Mux."""

    def __init__(self, mux: Mux, sid: int) -> None:
        self.mux, self.sid = mux, sid
        self.head: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inbox: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._credit = WINDOW
        self._credit_changed = asyncio.Event()
        self._ended = False

    async def send_head(self, kind: int, head: dict[str, Any]) -> None:
        await self.mux.send(self.sid, kind, json.dumps(head).encode())

    async def write(self, data: bytes) -> None:
        """Send body bytes, waiting for credit (the other end's consumer) as needed."""
        view = memoryview(data)
        while view:
            while self._credit <= 0:
                self._credit_changed.clear()
                await self._credit_changed.wait()
                self._check()
            piece = bytes(view[:min(CHUNK, self._credit)])
            view = view[len(piece):]
            self._credit -= len(piece)
            await self.mux.send(self.sid, DATA, piece)

    async def end(self) -> None:
        await self.mux.send(self.sid, END, b"")

    async def read(self) -> bytes | None:
        """The next body piece, None at the end; credit goes back as pieces are taken."""
        item = await self._inbox.get()
        if isinstance(item, BaseException):
            self._inbox.put_nowait(item)  # every later read fails the same way
            raise item
        if item:
            await self.mux.send(self.sid, CREDIT, struct.pack("!I", len(item)))
        return item

    async def body(self) -> AsyncIterator[bytes]:
        while (piece := await self.read()) is not None:
            yield piece

    async def reset(self, why: str = "") -> None:
        if self.sid in self.mux.streams:
            self.mux.streams.pop(self.sid, None)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.mux.send(self.sid, RESET, why.encode())

    def close(self) -> None:
        self.mux.streams.pop(self.sid, None)

    def _check(self) -> None:
        if self._ended:
            raise StreamReset(f"stream {self.sid} was reset")

    def _deliver(self, kind: int, payload: bytes) -> None:
        if kind in (OPEN, HEAD) and not self.head.done():
            self.head.set_result(json.loads(payload))
        elif kind == DATA:
            self._inbox.put_nowait(payload)
        elif kind == END:
            self._inbox.put_nowait(None)
        elif kind == CREDIT:
            self._credit += struct.unpack("!I", payload)[0]
            self._credit_changed.set()
        elif kind == RESET:
            self._fail(StreamReset(payload.decode(errors="replace") or "stream reset"))

    def _fail(self, exc: BaseException) -> None:
        self._ended = True
        if not self.head.done():
            self.head.set_exception(exc)
        self._inbox.put_nowait(exc)
        self._credit_changed.set()


class Mux:
    """Both ends of the link. `on_open` is called (as a task) for streams the other side
    opens; the relay opens streams, the relayed peer answers them."""

    def __init__(self, ws: Socket, on_open: Callable[[Stream], Awaitable[None]] | None = None,
                 *, first_id: int = 1) -> None:
        self.ws = ws
        self.streams: dict[int, Stream] = {}
        self.on_open = on_open
        self.bytes_carried = 0  # payload bytes both ways, for the relay's figures
        self._next = first_id
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    def open(self) -> Stream:
        sid, self._next = self._next, self._next + 2
        stream = Stream(self, sid)
        self.streams[sid] = stream
        return stream

    async def send(self, sid: int, kind: int, payload: bytes) -> None:
        if self.closed.is_set():
            raise StreamReset("the relay link is closed")
        self.bytes_carried += len(payload)
        async with self._lock:  # one frame at a time; send_bytes waits for the socket
            try:
                await self.ws.send_bytes(_HDR.pack(sid, kind) + payload)
            except (ConnectionError, RuntimeError) as exc:  # the link is going away
                raise StreamReset(f"the relay link broke: {exc}") from None

    async def run(self) -> None:
        """Read frames until the WebSocket closes; then every open stream fails."""
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.BINARY or len(msg.data) < _HDR.size:
                    continue
                sid, kind = _HDR.unpack_from(msg.data)
                payload = msg.data[_HDR.size:]
                self.bytes_carried += len(payload)
                stream = self.streams.get(sid)
                if stream is None and kind == OPEN and self.on_open is not None:
                    stream = self.streams[sid] = Stream(self, sid)
                    task = asyncio.create_task(self.on_open(stream))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if stream is not None:
                    stream._deliver(kind, payload)
        finally:
            self.closed.set()
            for stream in list(self.streams.values()):
                stream._fail(StreamReset("the relay link closed"))
            self.streams.clear()
            for task in list(self._tasks):
                task.cancel()
