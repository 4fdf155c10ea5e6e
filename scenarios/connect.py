"""connect: connection storm and churn; connect, optionally exchange a message, close, repeat.

    locust -f scenarios/connect.py --host ws://127.0.0.1:PORT --headless -u 50 -r 50 -t 30s \
        [--exchange] [--hold-ms 0] [--no-close-handshake]

Rows: "tcp connect", "tls handshake" (wss://), "ws upgrade" (connect latency; the upgrade row's
req/s is the achieved connects per second), "connect echo" (with --exchange) and "ws close"
(the close handshake, until the server's close frame and its TCP FIN). Works against any
RFC 6455 echo server; --host with a path is the endpoint as given, without one /echo is used.
What a run measures: upgrades. Each connection lives in its user's greenlet (opening it is
the work here, one exchange at most): the engine is for connections that carry traffic.
"""

from __future__ import annotations

import time

import gevent
from locust import events, task

from common.units import ns_to_us
from scenarios.connection import WS_UPGRADE
from scenarios.failures import ProtocolViolation
from scenarios.options import add_once, non_negative_float, option
from scenarios.user import WebSocketUser

ECHO = "connect echo"
CLOSE = "ws close"
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


class ConnectUser(WebSocketUser):
    """Opens a connection, maybe echoes once, closes it, and starts over."""

    path = "/echo"
    main_measurement = (WS_UPGRADE,)
    measurement_label = "upgrades"

    def on_start(self) -> None:
        env = self.environment
        self.exchange = bool(option(env, "exchange", False))
        self.hold_s = float(option(env, "hold_ms", 0.0)) / 1000.0
        self.handshake = not bool(option(env, "no_close_handshake", False))

    @task
    def churn(self) -> None:
        ws = self.connect()
        if ws is None:
            return
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
