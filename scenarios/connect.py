"""connect: connection storm and churn; connect, optionally exchange a message, close, repeat.

    locust -f scenarios/connect.py --host ws://127.0.0.1:PORT --headless -u 50 -r 50 -t 30s \
        [--exchange] [--hold-ms 0] [--no-close-handshake] [--arrival-rate R]

Rows: "tcp connect", "tls handshake" (wss://), "ws upgrade" (connect latency; the upgrade row's
req/s is the achieved connects per second), "connect echo" (with --exchange) and "ws close"
(the close handshake, until the server's close frame and its TCP FIN). Works against any
RFC 6455 echo server; --host with a path is the endpoint as given, without one /echo is used.
What a run measures: upgrades. Each connection lives in its user's greenlet (opening it is
the work here, one exchange at most): the engine is for connections that carry traffic.

With --arrival-rate R each user opens a connection every 1/R s on a fixed schedule (the open
model: users x R connects/s offered, whatever the server does), its phase random so that users
do not arrive together. A connect the user starts late because its previous one was slow (a SYN
retransmit takes 1 s) is the server's delay: "connect corrected" times each connection from
its intended start to its upgrade, so a stall shows as latency rather than as fewer arrivals
(coordinated omission), and "connects due" / "connects made" count the arrivals kept. The
generator's own lateness (a wake-up after its sleep) is its send lag, for the self-check.
"""

from __future__ import annotations

import random
import time

import gevent
from locust import events, task

from common.units import ns_to_us
from scenarios.connection import WS_UPGRADE
from scenarios.engine import engine
from scenarios.failures import ProtocolViolation
from scenarios.options import add_once, non_negative_float, option
from scenarios.selfcheck import SEND_LAG
from scenarios.user import WebSocketUser

ECHO = "connect echo"
CLOSE = "ws close"
CORRECTED = "connect corrected"
DUE, MADE = "connects due", "connects made"  # not "sends ...": a slow server is not the generator
PAYLOAD = b"connect"


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--exchange", action="store_true", default=False,
             help="Send one message on each connection and wait for its echo before closing")
    add_once(parser, "--hold-ms", type=non_negative_float, default=0.0,
             help="Keep each connection open this long before closing it, ms")
    add_once(parser, "--no-close-handshake", action="store_true", default=False,
             help="Send the close frame and drop the socket at once (TIME_WAIT then lands "
             "on this host and ephemeral ports run out at high churn)")
    add_once(parser, "--arrival-rate", type=non_negative_float, default=0.0,
             help="Connects per second per user on a fixed schedule (open model); 0: each "
             "user reconnects as soon as it closed (closed loop)")


class ConnectUser(WebSocketUser):
    """Opens a connection, maybe echoes once, closes it, and starts over."""

    path = "/echo"
    holds_connection = False  # its connections come and go
    main_measurement = (WS_UPGRADE,)
    measurement_label = "upgrades"
    # An upgrade is timed from its request's send to its response's arrival in the kernel
    # (plain TCP): a generator busy with other connects reads it later, and that is its read
    # lag, not the server's. Its lateness to start a connect is in "connect corrected".
    timed_at_arrival = True
    timed_from_intended = False

    def on_start(self) -> None:
        env = self.environment
        self.exchange = bool(option(env, "exchange", False))
        self.hold_s = float(option(env, "hold_ms", 0.0)) / 1000.0
        self.handshake = not bool(option(env, "no_close_handshake", False))
        rate = float(option(env, "arrival_rate", 0.0))
        self.interval_ns = int(1e9 / rate) if rate > 0 else 0
        self.next_ns = time.monotonic_ns() + int(random.random() * self.interval_ns)
        self.due = self.made = 0

    def on_stop(self) -> None:
        if self.interval_ns:
            # Due until the run's stop; the arrival due within the last interval before it
            # is the run's end, not a missed one (users are stopped one by one after it).
            late = engine().schedule_now_ns() - self.next_ns
            missed = max(0, late // self.interval_ns)
            recorder = self.measurement.recorder
            recorder.count(DUE, self.made + missed)
            recorder.count(MADE, self.made)
            self.made = 0
        super().on_stop()

    def _arrive(self) -> int | None:
        """Wait for this user's next intended connect; its intended time (ns), or None when
        the run began stopping meanwhile (no more arrivals: the user ends its task at once)."""
        intended = self.next_ns
        on_time = intended > time.monotonic_ns()
        if not engine().timer.sleep_until(intended):  # gevent.sleep wakes about 0.5 ms late
            return None
        if on_time:  # how late the wake-up was, is the generator's
            self.measurement.recorder.lag(SEND_LAG, ns_to_us(time.monotonic_ns() - intended))
        self.next_ns = intended + self.interval_ns
        self.made += 1
        return intended

    @task
    def churn(self) -> None:
        intended = None
        if self.interval_ns:
            intended = self._arrive()
            if intended is None:
                return
        ws = self.connect()
        if ws is None:
            return
        if intended is not None:
            self.report(CORRECTED, ns_to_us(time.monotonic_ns() - intended))
        t0 = time.perf_counter_ns()
        try:
            if self.exchange:
                ws.deadline_ns = t0 + ws.timeout_ns
                ws.send_binary(PAYLOAD)
                if ws.recv() != PAYLOAD:
                    raise ProtocolViolation("echo differs from what was sent")
                self.report(ECHO, ns_to_us(time.perf_counter_ns() - t0), len(PAYLOAD))
            if self.hold_s:
                gevent.sleep(self.hold_s)
        except Exception as exc:
            self.fail(ECHO, t0, exc)
            return
        self._close()

    def _close(self) -> None:
        ws, self.ws = self.ws, None
        self.measurement.open_connections -= 1
        if ws is None:
            return
        if not self.handshake:
            ws.close()
            return
        t0 = time.perf_counter_ns()
        try:
            ws.close_handshake()
        except Exception as exc:
            self.fail(CLOSE, t0, exc)
            return
        self.report(CLOSE, ns_to_us(time.perf_counter_ns() - t0))
