"""echo_rate: open model on /echo; each connection sends at a fixed rate, on schedule.

    locust -f scenarios/echo_rate.py --host ws://127.0.0.1:PORT --headless -u 10 -r 10 -t 30s \
        [--rate 100] [--payload-bytes 32] [--max-in-flight 0] [--payload-content x]

--host with a path (ws://HOST:PORT/ws) is the endpoint as given; without one, /echo is used.
Every send has an intended time (connection start + random phase + k / rate). The engine
(scenarios/engine.py) makes every send of the process that is due in one pass of its timer
and reads the echoes as they come, recording each round trip twice, each timed when the echo
reached the socket over plain TCP (engine.ArrivalChannel; over TLS when read):
    "echo corrected"    from the intended send time (what a client on this schedule sees,
                        including any time the send waited: coordinated omission corrected)
    "echo uncorrected"  from the actual send
Sends wait only for TCP back-pressure, or with --max-in-flight N for an echo once N are
unanswered (a client that pipelines at most N). A server that stalls then delays the sends,
and the corrected figures show it while the uncorrected ones hide it. How late each send left
against its intended time is the generator's "send lag" (its self-check); "echo sends due"
and "echo sends made" count the schedule against what was done.

After a dropped connection the schedule restarts on the new one; sends due in between are
not made (the failure is reported instead). At the end, echoes still awaited past the timeout
are failures, the others are counted as unanswered. Works against any RFC 6455 echo server.

With --ws-compression deflate a connection that negotiated it runs `_DeflatedSchedule`: each
message compressed at its send (a new one from --payload-content's pool each time) and each
echo compared with what was sent; without it none of that is on the path.
"""

from __future__ import annotations

import random
import time
from collections import deque

from locust import events, task

from common.units import ns_to_us
from scenarios.engine import Channel
from scenarios.failures import ProtocolViolation, WsError, WsTimeout
from scenarios.frames import FIN, OP_BINARY, client_frame, frame_pool
from scenarios.options import add_once, non_negative_int, option, positive_float, positive_int
from scenarios.output import UNANSWERED_PREFIX
from scenarios.payloads import CONTENTS, DEFAULT_CONTENT, Messages, help_text
from scenarios.schedule import FixedRate
from scenarios.selfcheck import SEND_LAG
from scenarios.user import WebSocketUser

CORRECTED = "echo corrected"
UNCORRECTED = "echo uncorrected"


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--rate", type=positive_float, default=100.0,
             help="Messages per second per connection")
    add_once(parser, "--payload-bytes", type=positive_int, default=32, help="Bytes per message")
    add_once(parser, "--max-in-flight", type=non_negative_int, default=0,
             help="Unanswered messages a connection may have before its next send waits "
             "(0: no limit, the sends wait only for TCP back-pressure)")
    add_once(parser, "--payload-content", choices=CONTENTS, default=DEFAULT_CONTENT,
             help=help_text())


class EchoRateUser(WebSocketUser):
    """Sends on a fixed schedule; the engine records corrected and uncorrected round trips."""

    path = "/echo"
    main_measurement = (CORRECTED,)
    measurement_label = "echo round trips"
    # An echo is timed when it reached the socket: the generator's pace through a read
    # burst is its read lag, not the server's; its lateness to send stays in "corrected".
    timed_at_arrival = True

    def on_start(self) -> None:
        env = self.environment
        self.interval_ns = int(1e9 / float(option(env, "rate", 100.0)))
        content = str(option(env, "payload_content", DEFAULT_CONTENT))
        self.messages = Messages(content, int(option(env, "payload_bytes", 32)), False)
        self.payload = self.messages.payloads[0]
        self.max_in_flight = int(option(env, "max_in_flight", 0))

    @task
    def send_on_schedule(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        handler = _Schedule if ws.deflate is None else _DeflatedSchedule
        self.run_on_engine(ws, handler(self))


class _Schedule(FixedRate):
    """One connection's schedule in the engine: sends from the timer, echoes from the channel."""

    __slots__ = (
        "user", "payload", "size", "max_in_flight", "in_flight", "held", "timeout_ns",
        "_record", "_frame",
    )  # fmt: skip

    def __init__(self, user: EchoRateUser) -> None:
        super().__init__(user, user.interval_ns, "echo")
        self.user = user
        self.payload = user.payload
        self.size = len(user.payload)
        self.max_in_flight = user.max_in_flight
        self.in_flight: deque[tuple[int, int]] = deque()  # (intended, sent) monotonic ns
        self.held = False  # the next send waits for a free --max-in-flight slot
        self._record = user.measurement.recorder.record
        self.timeout_ns = 0
        pool = frame_pool(FIN | OP_BINARY, self.payload)
        self._frame = pool.next if pool is not None else self._masked

    def _masked(self) -> bytes:
        return client_frame(FIN | OP_BINARY, self.payload)

    def attached(self, channel: Channel) -> None:
        """A new connection: a new schedule, from a random phase."""
        self.channel = channel
        self.timeout_ns = channel.conn.timeout_ns
        self.start_schedule(time.monotonic_ns() + int(random.random() * self.interval_ns))

    def _due(self, intended_ns: int, now_ns: int) -> None:
        if self.max_in_flight and len(self.in_flight) >= self.max_in_flight:
            self.held = True  # the server holds us back: the next echo sends it (no send lag)
            return
        self._lag(SEND_LAG, ns_to_us(now_ns - intended_ns))
        self._send(intended_ns, now_ns)

    def _send(self, intended_ns: int, now_ns: int) -> None:
        channel = self.channel
        if not self.in_flight:
            channel.deadline_ns = now_ns + self.timeout_ns
        self.in_flight.append((intended_ns, now_ns))
        channel.send(self._frame())
        self._sent(intended_ns)

    def on_message(self, payload: bytes, now_ns: int) -> None:
        in_flight = self.in_flight
        if not in_flight or len(payload) != self.size:
            raise ProtocolViolation("echo differs from what was sent")
        intended_ns, sent_ns = in_flight.popleft()
        self.channel.deadline_ns = in_flight[0][1] + self.timeout_ns if in_flight else 0
        self._record(CORRECTED, ns_to_us(now_ns - intended_ns), self.size)
        self._record(UNCORRECTED, ns_to_us(now_ns - sent_ns), self.size)
        if self.held and not self.user.engine.stopped_ns:
            self.held = False
            self._send(self.next_ns, time.monotonic_ns())

    def on_end(self, error: WsError | None) -> None:
        self.end_schedule()
        if error is not None:
            oldest = self.in_flight[0][0] if self.in_flight else 0
            elapsed_us = ns_to_us(time.monotonic_ns() - oldest) if oldest else 0
            self.user.report_failure(CORRECTED, elapsed_us, error)

    def on_stop(self) -> None:
        """The run ends: echoes awaited past the timeout failed; the others were unanswered."""
        now_ns = time.monotonic_ns()
        late = [sent for _, sent in self.in_flight if now_ns - sent > self.timeout_ns]
        for sent_ns in late:
            error = WsTimeout(f"timeout: no reply within {self.timeout_ns / 1e9:g} s")
            self.user.report_failure(CORRECTED, ns_to_us(now_ns - sent_ns), error)
        unanswered = len(self.in_flight) - len(late)
        if unanswered:
            self.user.measurement.recorder.count(f"{UNANSWERED_PREFIX}{CORRECTED}", unanswered)
        self.in_flight.clear()


class _DeflatedSchedule(_Schedule):
    """The schedule on a permessage-deflate connection: a message compressed per send, each
    echo (inflated by the channel) compared with what was sent, in order."""

    __slots__ = ("sent",)

    def __init__(self, user: EchoRateUser) -> None:
        super().__init__(user)
        self.sent: deque[bytes] = deque()
        self._frame = self._deflated

    def _deflated(self) -> bytes:
        payload = self.user.messages.next()
        self.sent.append(payload)
        return self.channel.message_frame(FIN | OP_BINARY, payload)

    def on_message(self, payload: bytes, now_ns: int) -> None:
        if not self.sent or payload != self.sent.popleft():
            raise ProtocolViolation("echo differs from what was sent")
        super().on_message(payload, now_ns)

    def on_end(self, error: WsError | None) -> None:
        self.sent.clear()
        super().on_end(error)
