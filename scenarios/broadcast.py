"""broadcast: publishers and subscribers in /broadcast rooms; publish-to-receive latency, delivery.

    locust -f scenarios/broadcast.py --host ws://127.0.0.1:PORT --headless -u 20 -r 20 -t 30s \
        [--rooms 1] [--publishers 1] [--publish-rate 10] [--payload-bytes 64] [--drain-s 1]

`--publishers` users publish (Locust fixed_count); every other user subscribes. Each user joins
a random room of `--rooms`. A publisher is also a member of its room and receives its own
messages, as the protocol says. Every message carries publisher id, sequence number and
a CLOCK_MONOTONIC send time (BROADCAST_HEADER); publishers send on the engine's timer.
Every member records "broadcast" (publish to receive, µs); publishers count "broadcast
published". Over plain TCP both ends are the kernel's: the send time is when the publisher
hands the frame to its socket, the receive time when a member's copy reached its socket
(SO_TIMESTAMPNS, engine.ArrivalChannel), so that neither the publisher's lateness nor the
generator's pace through a fan-out's thousand copies is in the figure (both are measured:
send lag, read lag). Over TLS the send time is the intended one, a late send counting as
latency (corrected, as echo_rate's), and a copy is timed when read. Publisher and subscriber
share a clock, so this works with a remote server too. Target: the wsbench targets (the room
relay is their protocol), with --processes 1 or one room per process. --host with a path is
the endpoint as given (the room query is then yours to put in it).

Exact delivery. The protocol's server relays every frame unchanged, in order, over one TCP
stream per member, and never reads the payload; P's frames reach it in P's order, over P's one
stream. So the first message a member gets from publisher P is the first P message the server
relayed after the member joined: every earlier P message was relayed before that one, so
before the member joined (had it been relayed after, it would have come first), and every later
one was relayed while it was a member. That first sequence number is where the member's
expectation of P begins, known to the member alone, without asking the server anything. (A
message a publisher sent into a connection that then died was published but never relayed:
its members count it lost, as they should.) Where it ends:
publishers stop publishing `--drain-s` (default 1 s) before the run ends and send one end
marker (BROADCAST_END_NS, carrying the number of messages they published); everything a member
should get from P was relayed before P's marker. Each member connection then counts, per
publisher (scenarios/delivery.py): expected, received (distinct), duplicated, out of order,
lost (known at the marker, or when the connection was lost) and in flight (missing when the
run stopped it before the marker came, not called lost), and streams "without end marker".
Across one user's connections (a failover drill drops them): "missed while reconnecting", what
each publisher sent between its last message on the old connection and its first on the new.
A stream stopped by the run whose marker never came (the broker carrying it died) counts what
its publisher sent after its last message as "never arrived (no end marker)".
A sequence gap is also a Locust failure ("sequence gap") as soon as it shows, so loss is seen
in the web UI, not only at the end. Every count is made before the run's last latency window
is shipped (at the marker, or when Locust stops the user, before its test_stop), so all are in
the "counters" of PREFIX_latency_us_histograms.json.

When the run ends: the run time (`-t`, or the web UI's run-time field), from the start of the
test on the master (or the single process), which passes the moment publishing stops to its
workers with the spawn message. Without a run time there is no drain: no end marker is sent,
every stream ends "without end marker" and what it still missed counts as in flight. (Locust's
web UI keeps the last run time it was given: a later run started with the field empty still
drains at that time after its start.)
"""

from __future__ import annotations

import logging
import random
import time

from locust import events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from common.units import ns_to_us
from scenarios.connection import endpoint_url
from scenarios.delivery import PUBLISHED_BY, Membership
from scenarios.engine import ArrivalChannel, Channel
from scenarios.failures import SequenceGap, WsError
from scenarios.frames import FIN, OP_BINARY
from scenarios.latency import PUBLISHED
from scenarios.options import (
    add_once,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
)
from scenarios.schedule import FixedRate
from scenarios.selfcheck import SEND_LAG
from scenarios.user import WebSocketUser
from targets.protocol import (
    BROADCAST_END_NS,
    BROADCAST_HEADER,
    BROADCAST_PATH,
    decode_broadcast,
    encode_broadcast,
    encode_broadcast_end,
)

BROADCAST = "broadcast"
PUBLISH = "broadcast publish"
DEFAULT_DRAIN_S = 1.0
# Set on parsed_options at the test's start by the master (or single process): the unix time
# publishing stops, None without a run time. Not a declared option, so Locust's spawn message
# hands it to every worker as it does the scenario's own options.
PUBLISH_UNTIL = "broadcast_publish_until_unix_s"

logger = logging.getLogger(__name__)


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
    add_once(parser, "--drain-s", type=non_negative_float, default=DEFAULT_DRAIN_S,
             help="Publishers stop this long before the run time ends and send their end "
                  "marker, so delivery is counted exactly (no drain without a run time)")


def _set_publishers(environment, **_) -> None:
    # Read when Locust dispatches users, on the master: set before every start.
    Publisher.fixed_count = max(0, int(option(environment, "publishers", 1)))


def _plan_drain(environment: Environment, **_: object) -> None:
    """At the test's start on the master (or single process): when publishing stops."""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return  # a worker has the master's value, from the spawn message
    run_time_s = getattr(options, "run_time", None)
    drain_s = float(option(environment, "drain_s", DEFAULT_DRAIN_S))
    if not run_time_s:
        setattr(options, PUBLISH_UNTIL, None)
        logger.warning("broadcast: no run time (-t), so no drain and no end markers: "
                       "delivery is counted without end markers (missing = in flight)")
        return
    if drain_s >= run_time_s:
        logger.warning("broadcast: --drain-s %g is not shorter than the run time (%g s): "
                       "publishers send their end marker at once", drain_s, run_time_s)
    setattr(options, PUBLISH_UNTIL, time.time() + run_time_s - drain_s)


events.init.add_listener(_set_publishers)
events.test_start.add_listener(_set_publishers)
events.test_start.add_listener(_plan_drain)


class _Member(WebSocketUser):
    """A room member: records latency and loss of every message relayed to it."""

    abstract = True
    main_measurement = (BROADCAST,)
    measurement_label = "deliveries"
    # A thousand members' copies of one message come at once: read one by one, the last ones
    # would be timed by the generator's pace through them.
    timed_at_arrival = True
    timed_from_intended = False  # over plain TCP a publish is stamped when handed to the socket

    @classmethod
    def url_for(cls, host: str, environment) -> str:
        rooms = max(1, int(option(environment, "rooms", 1)))
        room = "room-0" if rooms == 1 else f"room-0..{rooms - 1}"
        return endpoint_url(host, f"{BROADCAST_PATH}?room={room}")

    def on_start(self) -> None:
        rooms = max(1, int(option(self.environment, "rooms", 1)))
        self.path = f"{BROADCAST_PATH}?room=room-{random.randrange(rooms)}"
        # Over this user's connections: publisher -> one past the highest number heard.
        self.heard: dict[int, int] = {}

    @task
    def take_part(self) -> None:
        ws = self.connect()
        if ws is None:
            return
        self.run_on_engine(ws, self.handler())

    def handler(self) -> _Listening:
        return _Listening(self)


class _Listening:
    """A member's connection in the engine: every relayed message timed and accounted for.

    No deadline: a quiet room is not a failure. A new connection is a new membership with its
    own accounting, since what was sent while away was not sent to it.
    """

    def __init__(self, user: _Member) -> None:
        self.user = user
        self.channel: Channel | None = None
        recorder = user.measurement.recorder
        self._record, self._count = recorder.record, recorder.count
        self.membership = Membership(recorder.count, user.heard)

    def attached(self, channel: Channel) -> None:
        self.channel = channel

    def on_message(self, message: bytes, now_ns: int) -> None:
        publisher, seq, sent_ns = decode_broadcast(message)
        if sent_ns == BROADCAST_END_NS:
            gap = self.membership.end_marker(publisher, seq)
        else:
            self._record(BROADCAST, ns_to_us(now_ns - sent_ns), len(message))
            gap = self.membership.message(publisher, seq)
        if gap:
            self.user.report_failure(BROADCAST, 0, SequenceGap())

    def on_stop(self) -> None:
        """The run stops this user: what its connection still misses may be in flight."""
        self.membership.close(run_stopped=True)

    def on_end(self, error: WsError | None) -> None:
        self.membership.close(run_stopped=error is None)
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
        until_s = option(env, PUBLISH_UNTIL, None)
        self.publish_until_s: float | None = None if until_s is None else float(until_s)
        self.ended = False  # its end marker is sent: it publishes no more, on any connection

    def handler(self) -> _Listening:
        return _Publishing(self)


class _Publishing(_Listening, FixedRate):
    """A publisher's connection: its schedule of sends until the drain, its end marker, and the
    messages it hears back."""

    def __init__(self, user: Publisher) -> None:
        _Listening.__init__(self, user)
        FixedRate.__init__(self, user, user.interval_ns, "broadcast")
        self.publisher = user
        self.scheduled = False
        self.end_entry: list | None = None
        self.at_arrival = False

    def attached(self, channel: Channel) -> None:
        super().attached(channel)
        self.at_arrival = isinstance(channel, ArrivalChannel)
        user = self.publisher
        if user.ended:
            return  # a reconnection after the marker: a member only
        now_ns = time.monotonic_ns()
        if user.publish_until_s is None:
            end_ns = None
        else:
            end_ns = now_ns + int((user.publish_until_s - time.time()) * 1e9)
            if end_ns <= now_ns:
                self._send_end_marker()
                return
        self.scheduled = True
        self.start_schedule(now_ns)
        if end_ns is not None:
            self.end_entry = self.timer.at(end_ns, self._end_due)

    def _end_due(self, _intended_ns: int, _now_ns: int) -> None:
        self.scheduled = False
        self.end_schedule()  # sends due until now against those made: the self-check
        self._send_end_marker()

    def _send_end_marker(self) -> None:
        user = self.publisher
        marker = encode_broadcast_end(user.publisher_id, user.seq)
        self.channel.send(self.channel.message_frame(FIN | OP_BINARY, marker))
        self._count(f"{PUBLISHED_BY}{user.publisher_id}", user.seq)
        user.ended = True

    def _due(self, intended_ns: int, now_ns: int) -> None:
        self._lag(SEND_LAG, ns_to_us(now_ns - intended_ns))
        user = self.publisher
        # The header's send time: timed at arrival (ArrivalChannel), the time it is handed to
        # the socket, so that a latency runs from the kernel's having the message to the
        # member's kernel having its copy, and the generator's lateness is in neither end.
        # Otherwise the intended time: a late send shows as latency (and in the self-check).
        sent_ns = time.monotonic_ns() if self.at_arrival else intended_ns
        message = encode_broadcast(user.publisher_id, user.seq, user.size, sent_ns)
        # Compressed with permessage-deflate (one publisher per room: not the hot path,
        # which is the members' reads).
        self.channel.send(self.channel.message_frame(FIN | OP_BINARY, message))
        self._count(PUBLISHED)
        user.seq += 1
        self._sent(intended_ns)

    def on_end(self, error: WsError | None) -> None:
        self.timer.cancel(self.end_entry)
        if self.scheduled:
            self.scheduled = False
            self.end_schedule()
        self.membership.close(run_stopped=error is None)
        if error is not None:
            self.user.report_failure(PUBLISH, 0, error)
