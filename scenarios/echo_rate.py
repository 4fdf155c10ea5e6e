"""echo_rate: open model on /echo; each connection sends at a fixed rate, on schedule.

    locust -f scenarios/echo_rate.py --host ws://127.0.0.1:PORT --headless -u 10 -r 10 -t 30s \
        [--rate 100] [--payload-bytes 32] [--max-in-flight 0]

Every send has an intended time (connection start + random phase + k / rate). A receiver
greenlet reads the echoes while the schedule keeps sending, and records each round trip twice:
    "echo corrected"    from the intended send time (what a client on this schedule sees,
                        including any time the send waited: coordinated omission corrected)
    "echo uncorrected"  from the actual send
Sends wait only for TCP back-pressure, or with --max-in-flight N for an echo once N are
unanswered (a client that pipelines at most N). A server that stalls then delays the sends,
and the corrected figures show it while the uncorrected ones hide it.

After a dropped connection the schedule restarts on the new one; sends due in between are
not made (the failure is reported instead). Works against any RFC 6455 echo server.
"""

from __future__ import annotations

import random
import time
from collections import deque

import gevent
from gevent.lock import Semaphore
from locust import events, task

from scenarios.alarm import sleep_until
from scenarios.connection import WsConnection
from scenarios.failures import ProtocolViolation, WsTimeout
from scenarios.options import add_once, non_negative_int, option, positive_float, positive_int
from scenarios.user import BATCH_NS, WebSocketUser

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


class EchoRateUser(WebSocketUser):
    """Sends on a fixed schedule while a receiver greenlet records corrected/uncorrected RTTs."""

    path = "/echo"

    def on_start(self) -> None:
        env = self.environment
        self.interval_ns = int(1e9 / float(option(env, "rate", 100.0)))
        self.payload = b"x" * int(option(env, "payload_bytes", 32))
        self.max_in_flight = int(option(env, "max_in_flight", 0))
        self.receiver: gevent.Greenlet | None = None
        self.schedule_ws: WsConnection | None = None
        self.slots: Semaphore | None = None
        self.in_flight: deque[tuple[int, int]] = deque()
        self.next_ns = 0

    def _start_schedule(self, ws: WsConnection) -> None:
        """A new connection: a new schedule (random phase) and a receiver reading its echoes."""
        if self.receiver is not None:
            self.receiver.kill(block=False)
        self.schedule_ws = ws
        self.in_flight = deque()
        self.slots = Semaphore(self.max_in_flight) if self.max_in_flight > 0 else None
        self.next_ns = time.monotonic_ns() + int(random.random() * self.interval_ns)
        self.receiver = gevent.spawn(self._receive, ws, self.in_flight, self.slots)

    @task
    def send_on_schedule(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        if self.schedule_ws is not ws:
            self._start_schedule(ws)
        # CLOCK_MONOTONIC, the clock the alarm's timerfd runs on (perf_counter's on Linux).
        send, clock, payload = ws.send_binary, time.monotonic_ns, self.payload
        in_flight, slots, interval_ns = self.in_flight, self.slots, self.interval_ns
        timeout_s = ws.timeout_ns / 1e9
        batch_end_ns = clock() + BATCH_NS
        intended_ns = self.next_ns
        try:
            while True:  # at least one send per call: a slow rate must not spin the task
                sleep_until(intended_ns)
                if slots is not None and not slots.acquire(timeout=timeout_s):
                    raise WsTimeout("timeout: waiting for an echo before the next send")
                if self.ws is not ws:
                    return  # the receiver saw the connection fail and reported it
                sent_ns = clock()
                if not in_flight:
                    ws.deadline_ns = sent_ns + ws.timeout_ns  # the receiver moves it on
                in_flight.append((intended_ns, sent_ns))
                send(payload)
                intended_ns += interval_ns
                self.next_ns = intended_ns
                if sent_ns >= batch_end_ns:
                    return
        except Exception as exc:
            if self.ws is ws:  # else the receiver has already reported the failure
                self.fail(CORRECTED, 0, exc)

    def _receive(self, ws: WsConnection, in_flight: deque, slots: Semaphore | None) -> None:
        recv, clock, report, size = ws.recv, time.monotonic_ns, self.report, len(self.payload)
        timeout_ns = ws.timeout_ns
        try:
            while True:
                reply = recv()
                now = clock()
                if not in_flight or len(reply) != size:
                    raise ProtocolViolation("echo differs from what was sent")
                intended_ns, sent_ns = in_flight.popleft()
                ws.deadline_ns = in_flight[0][1] + timeout_ns if in_flight else 0
                report(CORRECTED, (now - intended_ns + 500) // 1000, size)
                report(UNCORRECTED, (now - sent_ns + 500) // 1000, size)
                if slots is not None:
                    slots.release()
        except Exception as exc:
            if self.ws is ws:  # else the sender has already reported the failure
                self.fail(CORRECTED, in_flight[0][0] if in_flight else 0, exc)
        finally:
            if slots is not None:
                slots.release()  # a sender waiting for a slot wakes and sees the failure

    def on_stop(self) -> None:
        if self.receiver is not None:
            self.receiver.kill(block=False)
        super().on_stop()
