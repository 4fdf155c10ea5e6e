"""Fan-out and push logic shared by every target; a target module adds only its library's I/O.

A target gives each connection a `Peer`: something that takes an outgoing message without
waiting (`offer`) and can be closed. `Rooms` relays /broadcast messages to peers, `push_stream`
generates /push messages. Both count what they send in the process's `Stats`. With `--broker`,
the rooms are targets/broker.py's `BrokerRooms`, whose `publish` also relays to the other
processes; a target's `MessageForm` says how its broadcast messages look to the broker.
`serve_route` hands a library target's connection to its echo, broadcast or push coroutine, as
its route asks.

For libraries whose send is a coroutine (aiohttp, websockets), `Outbox` turns `offer` into a
bounded queue drained by a task that exists only while the queue is non-empty, so an idle
connection costs no task. The raw target writes frames straight into its transport instead and
bounds the transport's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from targets.protocol import (
    ECHO_PATH,
    PUSH_PATH,
    PushParams,
    Route,
    Stats,
    encode_push,
    push_filler,
)
from targets.rfc6455.codes import CloseCode, Opcode

SLOW_CONSUMER_REASON = "slow consumer: outgoing queue full"


def payload_size(payload: bytes | str) -> int:
    """Payload bytes on the wire; str.isascii() is O(1), so ASCII text costs no encode."""
    if isinstance(payload, str) and not payload.isascii():
        return len(payload.encode())
    return len(payload)


class Peer(Protocol):
    """One connection as the shared logic sees it."""

    def offer(self, payload: bytes | str) -> None:
        """Take an outgoing message without waiting, in the target's own form: str (text) or
        bytes (binary) for the library targets, a complete frame for raw broadcast, a binary
        payload for push."""

    @property
    def is_open(self) -> bool: ...


@dataclass(frozen=True)
class MessageForm:
    """A target's broadcast messages (what it passes to `Rooms.publish`) to and from the form
    every process understands: an opcode (Opcode.TEXT or Opcode.BINARY) and the payload bytes.

    `split` may return a memoryview of the message rather than copy its payload.
    """

    split: Callable[[Any], tuple[int, bytes | memoryview]]
    join: Callable[[int, bytes], Any]


_TEXT, _BINARY = int(Opcode.TEXT), int(Opcode.BINARY)  # plain ints: faster to compare


def _split_library(message: bytes | str) -> tuple[int, bytes]:
    if isinstance(message, str):
        return _TEXT, message.encode()
    return _BINARY, message


def _join_library(opcode: int, payload: bytes) -> bytes | str:
    return payload.decode() if opcode == _TEXT else payload


# The library targets' form: str for a text message, bytes for a binary one.
LIBRARY_FORM = MessageForm(_split_library, _join_library)


class Rooms:
    """Broadcast rooms of one process: a message to a room goes to every member, sender included."""

    __slots__ = ("_rooms", "_stats")

    def __init__(self, stats: Stats) -> None:
        self._rooms: dict[str, set[Peer]] = {}
        self._stats = stats

    def join(self, room: str, peer: Peer) -> None:
        self._rooms.setdefault(room, set()).add(peer)

    def leave(self, room: str, peer: Peer) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.discard(peer)
            if not members:
                del self._rooms[room]

    def members(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def publish(self, room: str, payload: bytes | str, size_bytes: int) -> None:
        members = self._rooms.get(room)
        if not members:
            return
        # A copy: offer() may close a slow member, which leaves the room while we iterate.
        for peer in tuple(members):
            peer.offer(payload)
        stats = self._stats
        stats.messages_out += len(members)
        stats.bytes_out += size_bytes * len(members)


async def push_stream(params: PushParams, peer: Peer, stats: Stats) -> None:
    """Offer `params.count` push messages to `peer` at `params.rate_per_s`, on schedule.

    Each wake-up sends every message due by now, so a late wake-up (a busy loop) catches up
    instead of silently lowering the rate; the header carries the real send time, so the client
    sees such delays as latency.
    """
    loop = asyncio.get_running_loop()
    rate = params.rate_per_s
    count = params.count
    filler = push_filler(params.size_bytes)
    size = params.size_bytes
    start = loop.time()
    seq = 0
    while (count is None or seq < count) and peer.is_open:
        due = int((loop.time() - start) * rate) + 1
        if count is not None and due > count:
            due = count
        first = seq
        while seq < due and peer.is_open:
            peer.offer(encode_push(seq, filler))
            seq += 1
        sent = seq - first
        stats.messages_out += sent
        stats.bytes_out += sent * size
        await asyncio.sleep(max(0.0, start + seq / rate - loop.time()))


class LibraryApp(Protocol):
    """A library target's coroutines for one connection (`ws` is the library's own object)."""

    async def echo(self, ws: Any) -> None: ...

    async def broadcast(self, ws: Any, room: str) -> None: ...

    async def push(self, ws: Any, params: PushParams) -> None: ...


async def serve_route(app: LibraryApp, ws: Any, found: Route) -> None:
    """Serve an accepted connection as its route asks (protocol.route decoded the request)."""
    if found.path == ECHO_PATH:
        await app.echo(ws)
    elif found.path == PUSH_PATH:
        assert found.push is not None  # route() gives every /push its parameters
        await app.push(ws, found.push)
    else:
        await app.broadcast(ws, found.room)


class Outbox:
    """A bounded outgoing queue for a connection whose library sends with a coroutine.

    `send` sends one message; `close` closes the connection with a code and reason. Past
    `limit_bytes` of queued payload the connection is a slow consumer: the queue is dropped, the
    connection closed with 1008 and counted.
    """

    __slots__ = ("_send", "_close", "_queue", "_queued_bytes", "_task", "_limit", "_stats", "open")

    def __init__(
        self,
        send: Callable[[bytes | str], Awaitable[object]],
        close: Callable[[int, str], Awaitable[object]],
        limit_bytes: int,
        stats: Stats,
    ) -> None:
        self._send = send
        self._close = close
        self._queue: deque[bytes | str] = deque()
        self._queued_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._limit = limit_bytes
        self._stats = stats
        self.open = True

    @property
    def is_open(self) -> bool:
        return self.open

    def offer(self, payload: bytes | str) -> None:
        if not self.open:
            return
        self._queue.append(payload)
        self._queued_bytes += payload_size(payload)
        if self._queued_bytes > self._limit:
            self._drop_slow_consumer()
        elif self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue:
                payload = queue[0]
                await self._send(payload)
                # The send may have failed the connection and cleared the queue meanwhile.
                if queue and queue[0] is payload:
                    queue.popleft()
                    self._queued_bytes -= payload_size(payload)
        except Exception:
            # The connection went away under us; its handler notices and cleans up.
            self.open = False
        finally:
            self._task = None

    def _drop_slow_consumer(self) -> None:
        self.open = False
        self._queue.clear()
        self._queued_bytes = 0
        self._stats.slow_consumers_dropped += 1
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        asyncio.get_running_loop().create_task(
            self._close(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER_REASON)
        )

    async def shutdown(self) -> None:
        """Stop draining: the connection is closing."""
        self.open = False
        self._queue.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
