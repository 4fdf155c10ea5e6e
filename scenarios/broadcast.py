"""broadcast: publishers and subscribers in /broadcast rooms; publish-to-receive latency and loss.

    locust -f scenarios/broadcast.py --host ws://127.0.0.1:PORT --headless -u 20 -r 20 -t 30s \
        [--rooms 1] [--publishers 1] [--publish-rate 10] [--payload-bytes 64]

`--publishers` users publish (Locust fixed_count); every other user subscribes. Each user joins
a random room of `--rooms`. A publisher is also a member of its room and receives its own
messages, as the protocol says. Every message carries publisher id, sequence number and
its intended CLOCK_MONOTONIC send time (BROADCAST_HEADER): publishers send on the engine's
timer, and a late send counts as latency (corrected, as echo_rate's), the lateness also as the
generator's send lag. Every member records "broadcast" (publish to receive, µs) and counts
"broadcast received", "broadcast lost" (sequence gaps) and "broadcast out of order";
publishers count "broadcast published". A gap is also a Locust failure ("sequence gap"), so
loss shows in the web UI, not only at the end. Publisher and
subscriber share a clock, so this works with a remote server too. Target: the wsbench
targets (the room relay is their protocol), with --processes 1 or one room per process.
--host with a path is the endpoint as given (the room query is then yours to put in it).
"""

from __future__ import annotations

import random
import time

from locust import events, task

from common.units import ns_to_us
from scenarios.connection import endpoint_url
from scenarios.engine import Channel
from scenarios.failures import SequenceGap, WsError
from scenarios.frames import FIN, OP_BINARY, client_frame
from scenarios.options import add_once, non_negative_int, option, positive_float, positive_int
from scenarios.schedule import FixedRate
from scenarios.selfcheck import SEND_LAG
from scenarios.user import WebSocketUser
from targets.protocol import BROADCAST_HEADER, BROADCAST_PATH, decode_broadcast, encode_broadcast

BROADCAST = "broadcast"
PUBLISH = "broadcast publish"
RECEIVED = "broadcast received"
LOST = "broadcast lost"
OUT_OF_ORDER = "broadcast out of order"
PUBLISHED = "broadcast published"


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
    main_measurement = (BROADCAST,)
    measurement_label = "deliveries"

    @classmethod
    def url_for(cls, host: str, environment) -> str:
        rooms = max(1, int(option(environment, "rooms", 1)))
        room = "room-0" if rooms == 1 else f"room-0..{rooms - 1}"
        return endpoint_url(host, f"{BROADCAST_PATH}?room={room}")

    def on_start(self) -> None:
        rooms = max(1, int(option(self.environment, "rooms", 1)))
        self.path = f"{BROADCAST_PATH}?room=room-{random.randrange(rooms)}"

    @task
    def take_part(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        self.run_on_engine(ws, self.handler())

    def handler(self) -> _Listening:
        return _Listening(self)


class _Listening:
    """A member's connection in the engine: every relayed message timed and its sequence checked.

    No deadline: a quiet room is not a failure. A new connection starts a new sequence record,
    since what was sent while away is not loss.
    """

    def __init__(self, user: _Member) -> None:
        self.user = user
        self.channel: Channel | None = None
        recorder = user.measurement.recorder
        self._record, self._count = recorder.record, recorder.count
        self.last_seq: dict[int, int] = {}

    def attached(self, channel: Channel) -> None:
        self.channel = channel

    def on_message(self, message: bytes, now_ns: int) -> None:
        publisher, seq, sent_ns = decode_broadcast(message)
        self._record(BROADCAST, ns_to_us(now_ns - sent_ns), len(message))
        self._count(RECEIVED)
        previous = self.last_seq.get(publisher)
        self.last_seq[publisher] = seq
        if previous is not None and seq != previous + 1:
            if seq > previous + 1:
                self._count(LOST, seq - previous - 1)
                self.user.report_failure(BROADCAST, 0, SequenceGap())
            else:
                self._count(OUT_OF_ORDER)

    def on_end(self, error: WsError | None) -> None:
        if error is not None:
            self.user.report_failure(BROADCAST, 0, error)


class Subscriber(_Member):
    """Listens to its room."""


class Publisher(_Member):
    """Publishes at a fixed rate (on the engine's timer) and listens, as any member does."""

    fixed_count = 1

    def on_start(self) -> None:
        super().on_start()
        env = self.environment
        self.publisher_id = random.getrandbits(32)
        self.interval_ns = int(1e9 / float(option(env, "publish_rate", 10.0)))
        self.size = max(BROADCAST_HEADER.size, int(option(env, "payload_bytes", 64)))
        self.seq = 0

    def handler(self) -> _Listening:
        return _Publishing(self)


class _Publishing(_Listening, FixedRate):
    """A publisher's connection: its schedule of sends, and the messages it hears back."""

    def __init__(self, user: Publisher) -> None:
        _Listening.__init__(self, user)
        FixedRate.__init__(self, user, user.interval_ns, "broadcast")
        self.publisher = user

    def attached(self, channel: Channel) -> None:
        super().attached(channel)
        self.start_schedule(time.monotonic_ns())

    def _due(self, intended_ns: int, now_ns: int) -> None:
        self._lag(SEND_LAG, ns_to_us(now_ns - intended_ns))
        user = self.publisher
        # The header's send time is the intended one: a late send shows as latency.
        message = encode_broadcast(user.publisher_id, user.seq, user.size, intended_ns)
        self.channel.send(client_frame(FIN | OP_BINARY, message))
        self._count(PUBLISHED)
        user.seq += 1
        self._sent(intended_ns)

    def on_end(self, error: WsError | None) -> None:
        self.end_schedule()
        if error is not None:
            self.user.report_failure(PUBLISH, 0, error)
