"""push: subscribe to /push at rate R and size S; one-way latency and sequence gaps.

    locust -f scenarios/push.py --host ws://127.0.0.1:PORT --headless -u 10 -r 10 -t 30s \
        [--push-rate 100] [--push-size 64] [--push-count 0]

Each message starts with PUSH_HEADER (sequence number, server send time in CLOCK_MONOTONIC
ns). "push" records receive time minus send time in µs: one-way latency, meaningful only
with the server on this host (the clocks are compared). "push received" and "push lost"
(sequence gaps) are counted; a gap is also a Locust failure ("sequence gap"). With
--push-count N a connection that has received N messages closes and subscribes again.
Target: the wsbench targets (/push is their protocol).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from locust import events, task

from scenarios.failures import SequenceGap
from scenarios.options import add_once, at_least, non_negative_int, option, positive_float
from scenarios.user import WebSocketUser
from targets.protocol import DEFAULT_PUSH_SIZE, PUSH_HEADER, PUSH_PATH, decode_push

PUSH = "push"
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


class PushUser(WebSocketUser):
    """Subscribes to /push and checks every message's send time and sequence number."""

    def on_start(self) -> None:
        env = self.environment
        self.rate = float(option(env, "push_rate", RATE_PER_S))
        self.count = int(option(env, "push_count", 0))
        query = {"rate": f"{self.rate:g}", "size": int(option(env, "push_size", DEFAULT_PUSH_SIZE))}
        if self.count:
            query["count"] = self.count
        self.path = f"{PUSH_PATH}?{urlencode(query)}"

    @task
    def subscribe(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        # A slow stream is not a failure: allow a few intervals between messages.
        gap_ns = max(ws.timeout_ns, int(3e9 / self.rate))
        ws.deadline_ns = time.perf_counter_ns() + gap_ns
        recv, clock, report = ws.recv, time.monotonic_ns, self.report
        counter = self.measurement.recorder.count
        expected, left = 0, self.count or -1
        try:
            while left:
                message = recv()
                now_ns = clock()
                ws.deadline_ns = now_ns + gap_ns  # monotonic_ns: perf_counter's clock (alarm.py)
                seq, sent_ns = decode_push(message)
                report(PUSH, (now_ns - sent_ns + 500) // 1000, len(message))
                counter("push received")
                if seq != expected:
                    self._irregular(seq, expected)
                expected = seq + 1
                left -= 1
        except Exception as exc:
            self.fail(PUSH, 0, exc)
            return
        self.close()

    def _irregular(self, seq: int, expected: int) -> None:
        if seq > expected:
            self.measurement.recorder.count("push lost", seq - expected)
            self.report_failure(PUSH, 0, SequenceGap())
        else:
            self.measurement.recorder.count("push out of order")
