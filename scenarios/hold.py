"""hold: open connections and keep them idle, to find how many a target holds (and at what memory).

    locust -f scenarios/hold.py --host ws://127.0.0.1:PORT --headless -u 1000 -r 200 -t 60s \
        [--ping-interval-s 0]

Each user opens one connection and hands it to the engine (scenarios/engine.py), which
watches every held connection of the process from the hub, so a held connection costs no
reading greenlet; a connection the server drops is reported (close code or reset, under
"hold") and reopened after a back-off. What a run measures: connections held (ws upgrade
successes, with the drops under "hold" as its failures). With --ping-interval-s S
each connection pings every S seconds (with jitter) and "hold ping" records the pong's
round trip. Currently open connections are in the history CSV (open_connections) and the
summary's peak. Works against any RFC 6455 server.
"""

from __future__ import annotations

import random
import time

from locust import events, task

from common.units import ns_to_us
from scenarios.connection import WS_UPGRADE
from scenarios.engine import Channel
from scenarios.failures import WsError, WsTimeout
from scenarios.frames import FIN, OP_PING, client_frame
from scenarios.options import add_once, non_negative_float, option
from scenarios.user import WebSocketUser

HOLD = "hold"
PING = "hold ping"
PING_PAYLOAD = b"hold"


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--ping-interval-s", type=non_negative_float, default=0.0,
             help="Seconds between client pings on each held connection (0: never ping)")


class HoldUser(WebSocketUser):
    """Holds one idle connection; pings it now and then if asked."""

    path = "/echo"
    main_measurement = (WS_UPGRADE, HOLD)
    measurement_label = "connections held"
    # Upgrades (and pongs) timed when they reached the socket (see connect.py).
    timed_at_arrival = True
    timed_from_intended = False

    def on_start(self) -> None:
        self.ping_interval_s = float(option(self.environment, "ping_interval_s", 0.0))

    @task
    def hold(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        self.run_on_engine(ws, _Holding(self))


class _Holding:
    """A held connection in the engine: no greenlet reads it; pings on the engine's timer."""

    __slots__ = ("user", "channel", "timer", "interval_ns", "entry", "ping_ns")

    def __init__(self, user: HoldUser) -> None:
        self.user = user
        self.channel: Channel | None = None
        self.timer = user.engine.timer
        self.interval_ns = int(user.ping_interval_s * 1e9)
        self.entry: list | None = None
        self.ping_ns = 0  # perf_counter_ns of the ping awaiting its pong; 0: none

    def attached(self, channel: Channel) -> None:
        self.channel = channel
        if self.interval_ns:
            channel.on_pong = self._pong
            self._next(time.monotonic_ns())

    def _next(self, now_ns: int) -> None:
        jitter_ns = int(self.interval_ns * random.uniform(0.5, 1.5))
        self.entry = self.timer.at(now_ns + jitter_ns, self._ping)

    def _ping(self, _due_ns: int, now_ns: int) -> None:
        self.ping_ns = now_ns
        self.channel.deadline_ns = now_ns + self.channel.conn.timeout_ns
        self.channel.send(client_frame(FIN | OP_PING, PING_PAYLOAD))

    def _pong(self, now_ns: int) -> None:
        if not self.ping_ns:
            return  # unsolicited pong: allowed, ignored (RFC 6455 §5.5.3)
        self.user.report(PING, ns_to_us(now_ns - self.ping_ns))
        self.ping_ns = 0
        self.channel.deadline_ns = 0
        self._next(now_ns)

    def on_message(self, payload: bytes, now_ns: int) -> None:
        pass  # nothing is expected; what arrives is not this scenario's business

    def on_end(self, error: WsError | None) -> None:
        self.timer.cancel(self.entry)
        if error is None:
            return
        name = PING if self.ping_ns and isinstance(error, WsTimeout) else HOLD
        self.user.report_failure(name, 0, error)

    def on_stop(self) -> None:
        if self.ping_ns:
            self.user.unanswered(PING)
