"""The wsbench application protocol: the one definition targets and scenarios share.

Paths (this module is their definition; README.md "Reference targets" describes them):

    /echo                          every data frame is sent back unchanged (text stays text)
    /broadcast?room=R              every data frame is relayed to every member of room R,
                                   sender included; the payload is never parsed by the server
    /push?rate=R&size=S&count=N    N binary messages (unbounded without N) of S bytes at R msgs/s,
                                   each starting with PUSH_HEADER (sequence, send time)
    /stats                         plain HTTP GET -> JSON counters of the serving process
    /metrics                       plain HTTP GET -> the same counters in Prometheus's text
                                   format, every worker's with its pid (targets/metrics.py)

Every opening handshake's response names the process that served it: `X-Wsbench-Worker: <pid>`.

Uniform policies: no compression unless asked (--compression deflate), no server pings,
messages over `max_message_bytes` are closed with 1009, a connection whose outgoing backlog
passes `max_queue_bytes` is closed with 1008 and counted as a slow consumer, a handshake not
finished within `handshake_timeout_s` is dropped, SIGTERM/SIGINT close every client with 1001.

Clocks: send times are CLOCK_MONOTONIC nanoseconds (`time.monotonic_ns()` on Linux), comparable
between processes on one host.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass

ECHO_PATH = "/echo"
BROADCAST_PATH = "/broadcast"
PUSH_PATH = "/push"
STATS_PATH = "/stats"
METRICS_PATH = "/metrics"
# Plain HTTP paths: a request for one is not an opening handshake (see `handshake_failures`).
HTTP_PATHS = frozenset({STATS_PATH, METRICS_PATH})

DEFAULT_ROOM = "default"

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
DEFAULT_MAX_QUEUE_BYTES = 4 << 20
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
DEFAULT_CLOSE_TIMEOUT_S = 5.0

DEFAULT_PUSH_RATE = 10.0
DEFAULT_PUSH_SIZE = 64
MAX_PUSH_RATE = 1_000_000.0

# /push message header: sequence number (from 0) and server send time, CLOCK_MONOTONIC ns.
PUSH_HEADER = struct.Struct("!QQ")
# /broadcast message header, a client convention (the server never reads it): publisher id,
# the publisher's sequence number and its send time, CLOCK_MONOTONIC ns.
BROADCAST_HEADER = struct.Struct("!IQQ")
# A send time of BROADCAST_END_NS (no real CLOCK_MONOTONIC send time is 0) marks the publisher's
# end marker: its last message, header only, whose sequence number is one past its last data
# message's (the number of messages it published), and after which it publishes nothing.
BROADCAST_END_NS = 0


class BadRequest(ValueError):
    """A request the targets answer with HTTP 400; the message is the reason shown to the client."""


@dataclass(frozen=True)
class Limits:
    """The policies every target applies identically."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S


@dataclass(frozen=True)
class PushParams:
    rate_per_s: float = DEFAULT_PUSH_RATE
    size_bytes: int = DEFAULT_PUSH_SIZE
    count: int | None = None  # None: until the client leaves


def _number(query: Mapping[str, str], name: str, kind: type, default: float | int | None):
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not a {kind.__name__}") from None


def parse_push_params(query: Mapping[str, str]) -> PushParams:
    """The /push query (`rate`, `size`, `count`) validated; BadRequest says what is wrong."""
    rate = _number(query, "rate", float, DEFAULT_PUSH_RATE)
    size = _number(query, "size", int, DEFAULT_PUSH_SIZE)
    count = _number(query, "count", int, None)
    if not 0 < rate <= MAX_PUSH_RATE:
        raise BadRequest(f"rate must be in (0, {MAX_PUSH_RATE:g}] msgs/s, got {rate:g}")
    if size < PUSH_HEADER.size:
        raise BadRequest(f"size must be at least {PUSH_HEADER.size} bytes (the header), got {size}")
    if size > DEFAULT_MAX_MESSAGE_BYTES:
        raise BadRequest(f"size must be at most {DEFAULT_MAX_MESSAGE_BYTES} bytes, got {size}")
    if count is not None and count < 0:
        raise BadRequest(f"count must be >= 0, got {count}")
    return PushParams(rate, size, count)


def room_of(query: Mapping[str, str]) -> str:
    return query.get("room") or DEFAULT_ROOM


WEBSOCKET_PATHS = frozenset({ECHO_PATH, BROADCAST_PATH, PUSH_PATH})


@dataclass(frozen=True)
class Route:
    """A WebSocket request of the protocol: its path and what its query asks for."""

    path: str  # ECHO_PATH, BROADCAST_PATH or PUSH_PATH
    room: str = DEFAULT_ROOM  # the room of a /broadcast connection
    push: PushParams | None = None  # the stream a /push connection asks for


def route(path: str, query: Mapping[str, str]) -> Route | None:
    """What a request for `path` with `query` asks of a target, the same in every target.

    None: `path` is not a WebSocket path of the protocol (HTTP 404); BadRequest: the query
    cannot be served (HTTP 400, the message says why).
    """
    if path == PUSH_PATH:
        return Route(path, push=parse_push_params(query))
    if path == BROADCAST_PATH:
        return Route(path, room=room_of(query))
    return Route(path) if path == ECHO_PATH else None


def push_filler(size_bytes: int) -> bytes:
    """The constant body after the header of every push message of this size."""
    return b"\x00" * (size_bytes - PUSH_HEADER.size)


def encode_push(seq: int, filler: bytes, sent_ns: int | None = None) -> bytes:
    """One /push message: header then `filler` (see push_filler)."""
    if sent_ns is None:
        sent_ns = time.monotonic_ns()
    return PUSH_HEADER.pack(seq, sent_ns) + filler


def decode_push(message: bytes) -> tuple[int, int]:
    """(sequence number, server send time in CLOCK_MONOTONIC ns) of a /push message."""
    return PUSH_HEADER.unpack_from(message)


def encode_broadcast(
    publisher_id: int, seq: int, size_bytes: int, sent_ns: int | None = None
) -> bytes:
    """A /broadcast message of `size_bytes` (at least the header) carrying the publisher's data."""
    if sent_ns is None:
        sent_ns = time.monotonic_ns()
    header = BROADCAST_HEADER.pack(publisher_id, seq, sent_ns)
    return header + b"\x00" * max(0, size_bytes - len(header))


def decode_broadcast(message: bytes) -> tuple[int, int, int]:
    """(publisher id, sequence number, send time in CLOCK_MONOTONIC ns) of a /broadcast message."""
    return BROADCAST_HEADER.unpack_from(message)


def encode_broadcast_end(publisher_id: int, end_seq: int) -> bytes:
    """A publisher's end marker: `end_seq` is the number of messages it published (seqs from 0)."""
    return BROADCAST_HEADER.pack(publisher_id, end_seq, BROADCAST_END_NS)


STATS_FIELDS = (
    "connections",  # open WebSocket connections now
    "connections_total",  # WebSocket connections accepted since start
    "messages_in",
    "messages_out",
    "bytes_in",  # payload bytes, not frame overhead
    "bytes_out",
    "slow_consumers_dropped",  # closed with 1008 because the outgoing backlog passed the bound
    "oversize_closed",  # closed with 1009
    # Opening handshakes that failed, counted alike by every target: a request (any but for
    # HTTP_PATHS) answered with anything but 101 (404, 400 for a bad query or upgrade, 405...),
    # and a connection dropped because no request arrived within the handshake timeout. Bytes
    # the HTTP parser cannot read as a request, and a client that leaves before its request is
    # complete, are not counted (the libraries answer or drop those before the target sees them).
    "handshake_failures",
)
# With --broker (targets/broker.py): the broker's URL (null without one), whether this process is
# connected to it now, the messages it published to it and received from other processes through
# it, and the messages it failed to publish (the broker down or too far behind) or to receive.
BROKER_STATS_FIELDS = (
    "broker",
    "broker_connected",
    "broker_published",
    "broker_received",
    "broker_errors",
)

# The response header of every opening handshake naming the process that served it (its pid).
WORKER_HEADER = "X-Wsbench-Worker"


@dataclass
class Stats:
    """Counters of one target process, served as JSON on /stats."""

    connections: int = 0
    connections_total: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    slow_consumers_dropped: int = 0
    oversize_closed: int = 0
    handshake_failures: int = 0
    broker: str | None = None
    broker_connected: bool = False
    broker_published: int = 0
    broker_received: int = 0
    broker_errors: int = 0

    def opened(self) -> None:
        self.connections += 1
        self.connections_total += 1

    def closed(self) -> None:
        self.connections -= 1

    def as_dict(self, **extra: object) -> dict[str, object]:
        data: dict[str, object] = {
            name: getattr(self, name) for name in STATS_FIELDS + BROKER_STATS_FIELDS
        }
        data.update(extra)
        return data


# How a target's stderr line about its broker begins ("... URL lost: why" when it loses it):
# what the harness looks for to tell a kill-broker drill the targets noticed.
BROKER_LOST_PREFIX = "targets: broker "


# How a target's stderr line about a stop of its own for garbage collection begins
# (targets/pauses.py), and the rest of it: what the harness reads to put a latency tail down
# to the server's own pause.
GC_PAUSE_PREFIX = "targets: gc paused "
_GC_PAUSE = re.compile(
    r"(?P<wall_ms>[\d.]+) ms \(cpu (?P<cpu_ms>[\d.]+) ms\), generation (?P<generation>\d), "
    r"at (?P<at_unix_s>[\d.]+), pid (?P<pid>\d+)$"
)


@dataclass(frozen=True)
class GcPause:
    """One garbage collection that kept a target process from serving."""

    wall_ms: float  # how long the process was stopped (what every client saw)
    cpu_ms: float  # of which the collector's own work (less: the process was also preempted)
    generation: int
    at_unix_s: float  # when it began
    pid: int

    def line(self) -> str:
        return (f"{GC_PAUSE_PREFIX}{self.wall_ms:.1f} ms (cpu {self.cpu_ms:.1f} ms), generation "
                f"{self.generation}, at {self.at_unix_s:.3f}, pid {self.pid}")  # fmt: skip

    @classmethod
    def parse(cls, line: str) -> GcPause | None:
        """The pause a target's stderr line reports; None for any other line."""
        if not line.startswith(GC_PAUSE_PREFIX):
            return None
        found = _GC_PAUSE.match(line[len(GC_PAUSE_PREFIX):].rstrip())
        if found is None:
            return None
        return cls(float(found["wall_ms"]), float(found["cpu_ms"]), int(found["generation"]),
                   float(found["at_unix_s"]), int(found["pid"]))  # fmt: skip
