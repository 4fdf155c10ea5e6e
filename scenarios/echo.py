"""echo: closed-loop round trips on /echo, one message in flight per connection.

    locust -f scenarios/echo.py --host ws://127.0.0.1:PORT --headless -u 10 -r 10 -t 30s \
        [--payload-bytes 32] [--text] [--think-ms 0]

Works against any RFC 6455 echo server. Request name: "echo" (send to reply, µs).
"""

from __future__ import annotations

import time

import gevent
from locust import events, task

from scenarios.failures import ProtocolViolation
from scenarios.options import add_once, non_negative_float, option, positive_int
from scenarios.user import BATCH_NS, WebSocketUser

ECHO = "echo"


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--payload-bytes", type=positive_int, default=32, help="Bytes per message")
    add_once(parser, "--text", action="store_true", default=False,
             help="Send text frames (ASCII payload) instead of binary")
    add_once(parser, "--think-ms", type=non_negative_float, default=0.0,
             help="Pause after each round trip, ms (0: back to back)")


class EchoUser(WebSocketUser):
    """Sends a message, waits for its echo, records the round trip, repeats."""

    path = "/echo"

    def on_start(self) -> None:
        env = self.environment
        self.payload = b"x" * int(option(env, "payload_bytes", 32))
        self.text = bool(option(env, "text", False))
        self.think_s = float(option(env, "think_ms", 0.0)) / 1000.0

    @task
    def round_trips(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        send = ws.send_text if self.text else ws.send_binary
        recv, report, clock = ws.recv, self.report, time.perf_counter_ns
        payload, size, think_s = self.payload, len(self.payload), self.think_s
        timeout_ns = ws.timeout_ns
        batch_end_ns = clock() + BATCH_NS
        t0 = 0
        try:
            while True:
                t0 = clock()
                ws.deadline_ns = t0 + timeout_ns  # the watchdog's: no gevent Timeout per read
                send(payload)
                reply = recv()
                t1 = clock()
                if len(reply) != size:
                    raise ProtocolViolation("echo differs from what was sent")
                report(ECHO, (t1 - t0 + 500) // 1000, size)
                if t1 >= batch_end_ns:
                    break
                if think_s:
                    ws.deadline_ns = 0
                    gevent.sleep(think_s)
        except Exception as exc:
            self.fail(ECHO, t0, exc)
            return
        ws.deadline_ns = 0
