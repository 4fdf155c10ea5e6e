"""echo: closed-loop round trips on /echo, one message in flight per connection.

    locust -f scenarios/echo.py --host ws://127.0.0.1:PORT --headless -u 10 -r 10 -t 30s \
        [--payload-bytes 32] [--text] [--think-ms 0] [--payload-content x|text|random]

--host with a path (ws://HOST:PORT/ws) is the endpoint as given; without one, /echo is used.
Works against any RFC 6455 echo server. Request name: "echo" (send to reply, µs). The engine
(scenarios/engine.py) sends the next message from the callback that read the reply, or after
--think-ms on its timer: no greenlet wakes per round trip. A reply still awaited when the
run ends is counted as unanswered (or a failure, past --ws-timeout-s).

With --ws-compression deflate a connection that negotiated it runs `_DeflatedRoundTrips`:
each message compressed as it is sent (a new one from --payload-content's pool each time), and
each echo compared byte for byte with it once inflated. Without compression nothing of this
is on the path: the frames are the pool's, the echo checked by its length.
"""

from __future__ import annotations

import time

from locust import events, task

from common.units import ns_to_us
from scenarios.engine import Channel
from scenarios.failures import ProtocolViolation, WsError
from scenarios.frames import FIN, OP_BINARY, OP_TEXT, client_frame, frame_pool
from scenarios.options import add_once, non_negative_float, option, positive_int
from scenarios.payloads import CONTENTS, DEFAULT_CONTENT, Messages, help_text
from scenarios.user import WebSocketUser

ECHO = "echo"


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--payload-bytes", type=positive_int, default=32, help="Bytes per message")
    add_once(parser, "--text", action="store_true", default=False,
             help="Send text frames (ASCII payload) instead of binary")
    add_once(parser, "--think-ms", type=non_negative_float, default=0.0,
             help="Pause after each round trip, ms (0: back to back)")
    add_once(parser, "--payload-content", choices=CONTENTS, default=DEFAULT_CONTENT,
             help=help_text())


class EchoUser(WebSocketUser):
    """Sends a message, waits for its echo, records the round trip, repeats."""

    path = "/echo"
    main_measurement = (ECHO,)
    measurement_label = "echo round trips"

    def on_start(self) -> None:
        env = self.environment
        self.text = bool(option(env, "text", False))
        self.content = str(option(env, "payload_content", DEFAULT_CONTENT))
        self.messages = Messages(self.content, int(option(env, "payload_bytes", 32)), self.text)
        self.payload = self.messages.payloads[0]
        self.think_ns = int(float(option(env, "think_ms", 0.0)) * 1e6)

    @task
    def round_trips(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        handler = _RoundTrips if ws.deflate is None else _DeflatedRoundTrips
        self.run_on_engine(ws, handler(self))


class _RoundTrips:
    """One connection's closed loop in the engine: send, await the echo, record, repeat."""

    __slots__ = ("user", "channel", "first", "payload", "size", "think_ns", "timer",
                 "sent_ns", "entry", "_record", "_frame")  # fmt: skip

    def __init__(self, user: EchoUser) -> None:
        self.user = user
        self.channel: Channel | None = None
        self.first = FIN | (OP_TEXT if user.text else OP_BINARY)
        self.payload = user.payload
        self.size = len(user.payload)
        self.think_ns = user.think_ns
        self.timer = user.engine.timer
        self.sent_ns = 0  # perf_counter_ns of the send awaiting its echo; 0: none
        self.entry: list | None = None
        self._record = user.measurement.recorder.record
        pool = frame_pool(self.first, self.payload)
        self._frame = pool.next if pool is not None else self._masked

    def _masked(self) -> bytes:
        return client_frame(self.first, self.payload)

    def attached(self, channel: Channel) -> None:
        self.channel = channel
        self._send()

    def _send(self, _due_ns: int = 0, _now_ns: int = 0) -> None:
        channel = self.channel
        self.sent_ns = sent_ns = time.perf_counter_ns()
        channel.deadline_ns = sent_ns + channel.conn.timeout_ns  # the watchdog's
        channel.send(self._frame())

    def on_message(self, payload: bytes, now_ns: int) -> None:
        if not self.sent_ns or len(payload) != self.size:
            raise ProtocolViolation("echo differs from what was sent")
        self._record(ECHO, ns_to_us(now_ns - self.sent_ns), self.size)
        self.sent_ns = 0
        self.channel.deadline_ns = 0
        if self.user.engine.stopped_ns:
            return  # the run is stopping: no next round trip
        if self.think_ns:
            self.entry = self.timer.at(now_ns + self.think_ns, self._send, self.think_ns)
        else:
            self._send()

    def on_end(self, error: WsError | None) -> None:
        self.timer.cancel(self.entry)
        if error is not None:
            elapsed_us = ns_to_us(time.perf_counter_ns() - self.sent_ns) if self.sent_ns else 0
            self.user.report_failure(ECHO, elapsed_us, error)

    def on_stop(self) -> None:
        if self.sent_ns:
            self.user.unanswered(ECHO)


class _DeflatedRoundTrips(_RoundTrips):
    """The closed loop on a permessage-deflate connection: a message compressed per send, its
    echo inflated (by the channel) and compared with what was sent."""

    __slots__ = ("sent",)

    def __init__(self, user: EchoUser) -> None:
        super().__init__(user)
        self.sent = b""
        self._frame = self._deflated

    def _deflated(self) -> bytes:
        self.sent = payload = self.user.messages.next()
        return self.channel.message_frame(self.first, payload)

    def on_message(self, payload: bytes, now_ns: int) -> None:
        if self.sent_ns and payload != self.sent:
            raise ProtocolViolation("echo differs from what was sent")
        super().on_message(payload, now_ns)
