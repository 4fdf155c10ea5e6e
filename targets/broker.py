"""Rooms that span processes: /broadcast traffic relayed through a Redis broker (`--broker`).

Every process of a target publishes what its members send to a room on the Redis channel
`wsbench:room:<room>` and delivers what other processes publish there to its own members, so a
room spans every process (and every target) on the broker. The design is Socket.IO's Redis
adapter's: a message is delivered to the local members at once, published tagged with this
process's origin id, and ignored when it comes back from Redis with that id. Local members get
it exactly once and in order; remote ones get it once (the broker relays it once to each
subscriber) and in order (one publishing connection, one pipeline in flight, one subscriber
connection read by one task).

On the wire a relayed message is `origin (8 bytes) | opcode (1 byte: 1 text, 2 binary) |
payload`: a form every target turns into its own (hub.MessageForm), since the raw target's
local form is a complete frame and the library targets' is str or bytes.

The hot path (`BrokerRooms.publish`) never awaits: it delivers locally and appends to a list
that one task drains, sending everything pending in one pipeline per round trip. While the
broker is lost the target keeps serving its local members (one stderr line says so), counts
what it could not publish in `broker_errors`, and reconnects every RECONNECT_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from targets.hub import LIBRARY_FORM, MessageForm, Rooms
from targets.protocol import BROKER_LOST_PREFIX, Stats
from targets.server import TargetError

CHANNEL_PREFIX = b"wsbench:room:"
# One pattern subscription rather than a subscription per room on its first local join: a
# member receives everything published after its process subscribed (before its ready line, or
# when the broker is back), with no window between a join and its SUBSCRIBE in which remote
# messages would be missed, and joins stay synchronous and free. The cost, traffic of rooms
# without a local member (dropped after one dict lookup), is small for what wsbench runs: few
# rooms, each with members on every process.
CHANNEL_PATTERN = CHANNEL_PREFIX + b"*"
ORIGIN_BYTES = 8
CONNECT_TIMEOUT_S = 2.0
PUBLISH_TIMEOUT_S = 5.0  # a broker that stops answering counts as lost
RECONNECT_INTERVAL_S = 0.5
# Payload bytes waiting to be published past which a message is not relayed (counted as a
# broker error): a broker that cannot keep up must not grow the target's memory without bound.
MAX_PENDING_BYTES = 16 << 20

Pending = list[tuple[str, object]]


def check_url(url: str) -> str:
    """`url` if it names a Redis broker (redis://HOST:PORT[/DB]); TargetError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or parts.scheme != "redis" or not parts.hostname or port is None:
        raise TargetError(f"--broker must be a redis://HOST:PORT URL, got {url!r}")
    return url


def _reason(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".") or type(exc).__name__


def _first_failure(exc: BaseException) -> BaseException:
    """What went wrong first: redis-py's pubsub tries to reconnect once before it raises, so the
    error it raises says the reconnect failed, with the lost connection as its context."""
    while isinstance(exc.__context__, RedisError):
        exc = exc.__context__
    return exc


def _client(url: str, socket_timeout_s: float | None) -> Redis:
    # No retries inside redis-py: a lost broker must be noticed (and said) at once, and we
    # reconnect ourselves.
    return Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0), health_check_interval=0,
    )  # fmt: skip


class BrokerRooms(Rooms):
    """Rooms whose messages also go to (and come from) the other processes on the broker."""

    __slots__ = ("_relay",)

    def __init__(self, stats: Stats, relay: Relay) -> None:
        super().__init__(stats)
        self._relay = relay

    def publish(self, room: str, payload: bytes | str, size_bytes: int) -> None:
        Rooms.publish(self, room, payload, size_bytes)
        relay = self._relay
        if relay.connected and relay.pending_bytes < MAX_PENDING_BYTES:
            pending = relay.pending
            if not pending:
                relay.wake.set()
            pending.append((room, payload))
            relay.pending_bytes += size_bytes
        else:
            self._stats.broker_errors += 1

    def deliver(self, room: str, payload: bytes | str, size_bytes: int) -> None:
        """A message from another process: to the local members only."""
        Rooms.publish(self, room, payload, size_bytes)


class Relay:
    """This process's link to the broker: one publishing connection, one subscription."""

    def __init__(self, url: str, stats: Stats, form: MessageForm) -> None:
        self.url = url
        self.stats = stats
        self.form = form
        self.origin = os.urandom(ORIGIN_BYTES)
        self.rooms = BrokerRooms(stats, self)
        self.connected = False
        self.pending: Pending = []
        self.pending_bytes = 0
        self.wake = asyncio.Event()
        self._channels: dict[str, bytes] = {}
        self._publisher: Redis | None = None
        self._subscriber: Redis | None = None
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        stats.broker = url

    async def start(self) -> None:
        """Connect and subscribe, then relay in the background; TargetError if unreachable."""
        try:
            await self._connect()
        except (RedisError, OSError) as exc:
            await self._disconnect()
            raise TargetError(f"cannot reach the broker {self.url}: {_reason(exc)}") from None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()

    # -- connection ---------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._publisher = _client(self.url, PUBLISH_TIMEOUT_S)
        self._subscriber = _client(self.url, None)
        await self._publisher.ping()
        self._pubsub = self._subscriber.pubsub()
        await self._pubsub.psubscribe(CHANNEL_PATTERN)
        # Subscribed once Redis confirms: only then is this process ready to receive.
        while True:
            message = await self._pubsub.get_message(timeout=CONNECT_TIMEOUT_S)
            if message is None:
                raise TimeoutError("no answer to PSUBSCRIBE")
            if message["type"] == "psubscribe":
                break
        self.connected = self.stats.broker_connected = True

    async def _disconnect(self) -> None:
        self.connected = self.stats.broker_connected = False
        pubsub, self._pubsub = self._pubsub, None
        clients = (self._publisher, self._subscriber)
        self._publisher = self._subscriber = None
        with contextlib.suppress(RedisError, OSError):
            if pubsub is not None:
                await pubsub.aclose()
        for client in clients:
            with contextlib.suppress(RedisError, OSError):
                if client is not None:
                    await client.aclose()

    async def _run(self) -> None:
        """Relay until the broker is lost, say so, reconnect, say so, relay again."""
        while True:
            assert self._publisher is not None and self._pubsub is not None
            tasks = {asyncio.create_task(self._write(self._publisher)),
                     asyncio.create_task(self._read(self._pubsub))}  # fmt: skip
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            failed = next(iter(done)).exception()
            self.stats.broker_errors += len(self.pending)
            self.pending, self.pending_bytes = [], 0
            await self._disconnect()
            reason = _reason(_first_failure(failed)) if failed else "connection ended"
            print(f"{BROKER_LOST_PREFIX}{self.url} lost: {reason}; local rooms only until it "
                  "is back", file=sys.stderr, flush=True)  # fmt: skip
            while True:
                await asyncio.sleep(RECONNECT_INTERVAL_S)
                try:
                    await self._connect()
                    break
                except (RedisError, OSError):
                    await self._disconnect()
            print(f"targets: broker {self.url} is back; rooms span processes again",
                  file=sys.stderr, flush=True)  # fmt: skip

    # -- traffic ------------------------------------------------------------------------------

    def _channel(self, room: str) -> bytes:
        channel = self._channels.get(room)
        if channel is None:
            channel = self._channels[room] = CHANNEL_PREFIX + room.encode()
        return channel

    async def _write(self, publisher: Redis) -> None:
        """Send everything pending in one pipeline, wait for its replies, repeat."""
        stats, wake, split = self.stats, self.wake, self.form.split
        heads = {opcode: self.origin + bytes((opcode,)) for opcode in (1, 2)}
        while True:
            await wake.wait()
            wake.clear()
            batch, self.pending, self.pending_bytes = self.pending, [], 0
            if not batch:
                continue
            pipe = publisher.pipeline(transaction=False)
            for room, message in batch:
                opcode, payload = split(message)
                pipe.publish(self._channel(room), heads[opcode] + payload)
            try:
                await pipe.execute()
            except BaseException:
                stats.broker_errors += len(batch)
                raise
            stats.broker_published += len(batch)

    async def _read(self, pubsub: PubSub) -> None:
        """Deliver what other processes publish to this process's members."""
        stats, rooms, join, origin = self.stats, self.rooms, self.form.join, self.origin
        skip = len(CHANNEL_PREFIX)
        body = ORIGIN_BYTES + 1
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None or message["type"] != "pmessage":
                continue
            data: bytes = message["data"]
            if data.startswith(origin):
                continue  # our own, delivered locally when it was published
            try:
                room = message["channel"][skip:].decode()
                payload = data[body:]
                local = join(data[ORIGIN_BYTES], payload)
            except (IndexError, UnicodeDecodeError):
                stats.broker_errors += 1  # not a wsbench message
                continue
            stats.broker_received += 1
            rooms.deliver(room, local, len(payload))


async def start(url: str, stats: Stats, form: MessageForm) -> Relay:
    """A connected relay for this process (its `rooms` replace the per-process ones)."""
    relay = Relay(check_url(url), stats, form)
    await relay.start()
    return relay


async def _probe(url: str) -> None:
    relay = Relay(url, Stats(), LIBRARY_FORM)
    await relay.start()
    await relay.close()


def check_reachable(url: str) -> None:
    """TargetError (one line) unless the broker at `url` answers; for the supervisor, which
    checks once rather than have every worker say the same."""
    asyncio.run(_probe(check_url(url)))
