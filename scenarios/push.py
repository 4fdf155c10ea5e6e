"""push: subscribe to /push at rate R and size S; one-way latency and sequence gaps.

    locust -f scenarios/push.py --host ws://127.0.0.1:PORT --headless -u 10 -r 10 -t 30s \
        [--push-rate 100] [--push-size 64] [--push-count 0]

Each message starts with PUSH_HEADER (sequence number, server send time in CLOCK_MONOTONIC
ns). "push" records receive time minus send time in µs: one-way latency, meaningful only
with the server on this host (the clocks are compared). "push received" and "push lost"
(sequence gaps) are counted; a gap is also a Locust failure ("sequence gap"). With
--push-count N a connection that has received N messages closes and subscribes again. The
engine (scenarios/engine.py) reads every subscription of the process. --host with a path is
the endpoint as given (the query is then yours to put in it).
Target: the wsbench targets (/push is their protocol).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from locust import events, task

from common.units import ns_to_us
from scenarios.connection import endpoint_url
from scenarios.engine import Channel
from scenarios.failures import SequenceGap, WsError
from scenarios.options import add_once, at_least, non_negative_int, option, positive_float
from scenarios.user import WebSocketUser
from targets.protocol import DEFAULT_PUSH_SIZE, PUSH_HEADER, PUSH_PATH, decode_push

PUSH = "push"
RECEIVED = "push received"
LOST = "push lost"
OUT_OF_ORDER = "push out of order"
RATE_PER_S = 100.0


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--push-rate", type=positive_float, default=RATE_PER_S,
             help="Messages per second the server sends on each connection")
    add_once(parser, "--push-size", type=at_least(PUSH_HEADER.size, int),
             default=DEFAULT_PUSH_SIZE,
             help="Bytes per message (at least the 16-byte header)")
    add_once(parser, "--push-count", type=non_negative_int, default=0,
             help="Messages per subscription before it closes and resubscribes (0: no end)")


def push_path(environment) -> str:
    """/push with this run's rate, size and count as its query."""
    query = {
        "rate": f"{float(option(environment, 'push_rate', RATE_PER_S)):g}",
        "size": int(option(environment, "push_size", DEFAULT_PUSH_SIZE)),
    }
    count = int(option(environment, "push_count", 0))
    if count:
        query["count"] = count
    return f"{PUSH_PATH}?{urlencode(query)}"


class PushUser(WebSocketUser):
    """Subscribes to /push and checks every message's send time and sequence number."""

    main_measurement = (PUSH,)
    measurement_label = "messages"
    timed_at_arrival = True  # the server sends on its own clock, to every user at once
    timed_from_intended = False  # from the server's own send time

    @classmethod
    def url_for(cls, host: str, environment) -> str:
        return endpoint_url(host, push_path(environment))

    def on_start(self) -> None:
        env = self.environment
        self.rate = float(option(env, "push_rate", RATE_PER_S))
        self.count = int(option(env, "push_count", 0))
        self.path = push_path(env)

    @task
    def subscribe(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        self.run_on_engine(ws, _Subscription(self))


class _Subscription:
    """One subscription in the engine: every message timed, its sequence number checked."""

    def __init__(self, user: PushUser) -> None:
        self.user = user
        self.channel: Channel | None = None
        recorder = user.measurement.recorder
        self._record, self._count = recorder.record, recorder.count
        self.expected = 0
        self.left = user.count or -1
        self.gap_ns = 0

    def attached(self, channel: Channel) -> None:
        self.channel = channel
        # A slow stream is not a failure: allow a few intervals between messages.
        self.gap_ns = max(channel.conn.timeout_ns, int(3e9 / self.user.rate))
        channel.deadline_ns = time.perf_counter_ns() + self.gap_ns

    def on_message(self, message: bytes, now_ns: int) -> None:
        self.channel.deadline_ns = now_ns + self.gap_ns  # monotonic: perf_counter's clock
        seq, sent_ns = decode_push(message)
        self._record(PUSH, ns_to_us(now_ns - sent_ns), len(message))
        self._count(RECEIVED)
        if seq != self.expected:
            if seq > self.expected:
                self._count(LOST, seq - self.expected)
                self.user.report_failure(PUSH, 0, SequenceGap())
            else:
                self._count(OUT_OF_ORDER)
        self.expected = seq + 1
        self.left -= 1
        if not self.left:
            self.channel.close()  # --push-count reached: subscribe again

    def on_end(self, error: WsError | None) -> None:
        if error is not None:
            self.user.report_failure(PUSH, 0, error)
