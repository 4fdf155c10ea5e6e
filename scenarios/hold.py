"""hold: open connections and keep them idle, to find how many a target holds (and at what memory).

    locust -f scenarios/hold.py --host ws://127.0.0.1:PORT --headless -u 1000 -r 200 -t 60s \
        [--ping-interval-s 0]

Each user opens one connection and waits on it; a connection the server drops is reported
(close code or reset, under "hold") and reopened after a back-off. With --ping-interval-s S
each connection pings every S seconds (with jitter) and "hold ping" records the pong's
round trip. Currently open connections are in the history CSV (open_connections) and the
summary's peak. Works against any RFC 6455 server.
"""

from __future__ import annotations

import random
import time

import gevent
from locust import events, task

from scenarios.options import add_once, non_negative_float, option
from scenarios.user import WebSocketUser

HOLD = "hold"
PING = "hold ping"


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--ping-interval-s", type=non_negative_float, default=0.0,
             help="Seconds between client pings on each held connection (0: never ping)")


class HoldUser(WebSocketUser):
    """Holds one idle connection; pings it now and then if asked."""

    path = "/echo"

    def on_start(self) -> None:
        self.ping_interval_s = float(option(self.environment, "ping_interval_s", 0.0))

    @task
    def hold(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        t0 = time.perf_counter_ns()
        try:
            if self.ping_interval_s <= 0:
                while True:  # idle for as long as the test lasts: no deadline
                    ws.recv()  # nothing is expected; this notices a close or a reset
            gevent.sleep(self.ping_interval_s * random.uniform(0.5, 1.5))
            t0 = time.perf_counter_ns()
            ws.ping(b"hold")
            ws.recv_pong()
            self.report(PING, (time.perf_counter_ns() - t0 + 500) // 1000)
        except Exception as exc:
            self.fail(HOLD if self.ping_interval_s <= 0 else PING, t0, exc)
