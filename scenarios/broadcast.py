"""broadcast: publishers and subscribers in /broadcast rooms; publish-to-receive latency and loss.

    locust -f scenarios/broadcast.py --host ws://127.0.0.1:PORT --headless -u 20 -r 20 -t 30s \
        [--rooms 1] [--publishers 1] [--publish-rate 10] [--payload-bytes 64]

`--publishers` users publish (Locust fixed_count); every other user subscribes. Each user joins
a random room of `--rooms`. A publisher is also a member of its room and receives its own
messages, as the protocol says. Every message carries publisher id, sequence number and
CLOCK_MONOTONIC send time (BROADCAST_HEADER); every member records "broadcast" (publish to
receive, µs) and counts "broadcast received", "broadcast lost" (sequence gaps) and
"broadcast out of order"; publishers count "broadcast published". A gap is also a Locust
failure ("sequence gap"), so loss shows in the web UI, not only at the end. Publisher and
subscriber share a clock, so this works with a remote server too. Target: the wsbench
targets (the room relay is their protocol), with --processes 1 or one room per process.
"""

from __future__ import annotations

import random
import time

import gevent
from locust import events, task

from scenarios.alarm import sleep_until
from scenarios.failures import SequenceGap
from scenarios.options import add_once, non_negative_int, option, positive_float, positive_int
from scenarios.user import BATCH_NS, WebSocketUser
from targets.protocol import BROADCAST_HEADER, BROADCAST_PATH, decode_broadcast, encode_broadcast

BROADCAST = "broadcast"
PUBLISH = "broadcast publish"


@events.init_command_line_parser.add_listener
def _arguments(parser, **_):
    add_once(parser, "--rooms", type=positive_int, default=1,
             help="Number of rooms users spread over")
    add_once(parser, "--publishers", type=non_negative_int, default=1,
             help="Users that publish (the rest listen)")
    add_once(parser, "--publish-rate", type=positive_float, default=10.0,
             help="Messages per second per publisher")
    add_once(parser, "--payload-bytes", type=positive_int, default=64,
             help=f"Bytes per message (at least the {BROADCAST_HEADER.size}-byte header)")


def _set_publishers(environment, **_) -> None:
    # Read when Locust dispatches users, on the master: set before every start.
    Publisher.fixed_count = max(0, int(option(environment, "publishers", 1)))


events.init.add_listener(_set_publishers)
events.test_start.add_listener(_set_publishers)


class _Member(WebSocketUser):
    """A room member: records latency and loss of every message relayed to it."""

    abstract = True

    def on_start(self) -> None:
        rooms = max(1, int(option(self.environment, "rooms", 1)))
        self.path = f"{BROADCAST_PATH}?room=room-{random.randrange(rooms)}"
        self.last_seq: dict[int, int] = {}

    def receive(self, ws) -> None:
        recv, clock, report = ws.recv, time.monotonic_ns, self.report
        count, last_seq = self.measurement.recorder.count, self.last_seq
        last_seq.clear()  # a new connection: what was sent while away is not loss
        try:
            while True:
                message = recv()
                now_ns = clock()
                publisher, seq, sent_ns = decode_broadcast(message)
                report(BROADCAST, (now_ns - sent_ns + 500) // 1000, len(message))
                count("broadcast received")
                previous = last_seq.get(publisher)
                last_seq[publisher] = seq
                if previous is not None and seq != previous + 1:
                    self._irregular(previous, seq)
        except Exception as exc:
            if self.ws is ws:
                self.fail(BROADCAST, 0, exc)

    def _irregular(self, previous: int, seq: int) -> None:
        if seq > previous + 1:
            self.measurement.recorder.count("broadcast lost", seq - previous - 1)
            self.report_failure(BROADCAST, 0, SequenceGap())
        else:
            self.measurement.recorder.count("broadcast out of order")


class Subscriber(_Member):
    """Listens to its room."""

    @task
    def listen(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        self.receive(ws)  # no deadline: a quiet room is not a failure


class Publisher(_Member):
    """Publishes at a fixed rate while a greenlet receives, as any member does."""

    fixed_count = 1

    def on_start(self) -> None:
        super().on_start()
        env = self.environment
        self.publisher_id = random.getrandbits(32)
        self.interval_ns = int(1e9 / float(option(env, "publish_rate", 10.0)))
        self.size = max(BROADCAST_HEADER.size, int(option(env, "payload_bytes", 64)))
        self.seq = 0
        self.next_ns = 0
        self.receiver: gevent.Greenlet | None = None
        self.receiver_ws = None

    @task
    def publish_on_schedule(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        if self.receiver_ws is not ws:
            self.receiver_ws = ws
            self.receiver = gevent.spawn(self.receive, ws)
            self.next_ns = time.monotonic_ns()
        self.publish(ws)

    def publish(self, ws) -> None:
        batch_end_ns = time.monotonic_ns() + BATCH_NS
        count = self.measurement.recorder.count
        try:
            while True:  # at least one send per call: a slow rate must not spin the task
                sleep_until(self.next_ns)
                if self.ws is not ws:
                    return  # the receiver saw the connection fail and reported it
                message = encode_broadcast(self.publisher_id, self.seq, self.size)
                ws.send_binary(message)
                count("broadcast published")
                self.seq += 1
                self.next_ns += self.interval_ns
                if time.monotonic_ns() >= batch_end_ns:
                    return
        except Exception as exc:
            if self.ws is ws:
                self.fail(PUBLISH, 0, exc)

    def on_stop(self) -> None:
        if self.receiver is not None:
            self.receiver.kill(block=False)
        super().on_stop()
