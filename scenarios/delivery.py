"""Exact broadcast delivery: what one member connection was sent, got, lost and still awaits.

No I/O and no Locust (so it is tested directly): scenarios/broadcast.py feeds it every message
its connection reads and says when the connection ends; it counts through the `count` callback
it is given (the Recorder's), under the names below.

Per publisher, a member connection keeps one stream record: the first sequence number it got
(its membership began just before that one was relayed, see scenarios/broadcast.py), the highest
+ 1, the numbers missing below it, and the publisher's end marker once it came. Counts:

    broadcast expected       published by the publisher while this connection was a member:
                             first .. end marker (or .. the highest seen, see below)
    broadcast received       distinct messages got (a duplicate is not received twice)
    broadcast duplicated     a message got again
    broadcast out of order   a message older than one already got
    broadcast lost           expected, never got: known at the end marker (everything before it
                             was relayed before it), or when the connection was lost
    broadcast in flight      expected, not got when the run stopped this connection, its
                             publisher's end marker not yet here: not called lost (no guess)
    broadcast without end marker   streams that ended without their end marker (no drain, a
                             marker later than the drain, a lost connection): what their
                             publisher sent after the last message got is not known here and
                             is counted nowhere, so for them expected is a lower bound

Once every stream has ended, expected = received + lost + in flight, except for a message that
arrives after its publisher's end marker (impossible with an in-order relay): it counts as out
of order only, having been counted lost at the marker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

EXPECTED = "broadcast expected"
RECEIVED = "broadcast received"
DUPLICATED = "broadcast duplicated"
OUT_OF_ORDER = "broadcast out of order"
LOST = "broadcast lost"
IN_FLIGHT = "broadcast in flight"
WITHOUT_END_MARKER = "broadcast without end marker"
COUNTERS = (EXPECTED, RECEIVED, DUPLICATED, OUT_OF_ORDER, LOST, IN_FLIGHT, WITHOUT_END_MARKER)
# Per publisher P, for what no member can count alone: a stream whose end marker never came
# (the broker that carried it died) does not know how much P published after its last message.
# P counts its total at its marker; each such stream, one past the highest number it got; so
# the tail none of them got is streams x total - the sum of those (see `unmarked_tail`).
PUBLISHED_BY = "broadcast published by "
UNMARKED_STREAMS = "broadcast unmarked streams of "
UNMARKED_NEXT = "broadcast unmarked next of "
NEVER_ARRIVED = "broadcast never arrived (no end marker)"
# A user whose connection dropped and who joined again: what its publishers sent between its
# last message on the old connection and its first on the new one (a failover's loss).
MISSED_RECONNECTING = "broadcast missed while reconnecting"


class _Stream:
    """One publisher's messages as one member connection got them."""

    __slots__ = ("first", "next", "received", "missing", "ended")

    def __init__(self, seq: int) -> None:
        self.first = seq  # the first sequence number of this membership
        self.next = seq  # one past the highest got
        self.received = 0
        self.missing: set[int] = set()  # below `next`, not got
        self.ended = False  # the end marker came and the stream is counted


class Membership:
    """The delivery accounting of one member connection, over every publisher it hears."""

    __slots__ = ("_count", "_streams", "_closed", "_before")

    def __init__(
        self, count: Callable[[str, int], None], before: dict[int, int] | None = None
    ) -> None:
        """`before`: the user's earlier memberships, publisher -> one past the highest number
        they got; updated when this one closes (so the user's next membership counts what
        was sent while it was away)."""
        self._count = count
        self._streams: dict[int, _Stream] = {}
        self._closed = False
        self._before = before

    def _joined(self, publisher: int, seq: int) -> _Stream:
        """The stream of `publisher` beginning at `seq`, counting what the user missed since
        its previous membership heard that publisher."""
        stream = self._streams[publisher] = _Stream(seq)
        if self._before is not None and publisher in self._before:
            missed = seq - self._before[publisher]
            if missed > 0:
                self._count(MISSED_RECONNECTING, missed)
        return stream

    def message(self, publisher: int, seq: int) -> int:
        """A data message arrived, counted; returns how many numbers it skipped (0: no gap)."""
        count = self._count
        stream = self._streams.get(publisher)
        if stream is None:
            stream = self._joined(publisher, seq)
        elif stream.ended:
            count(OUT_OF_ORDER, 1)
            return 0
        if seq >= stream.next:
            gap = seq - stream.next
            if gap:
                stream.missing.update(range(stream.next, seq))
            stream.next = seq + 1
        elif seq in stream.missing:
            stream.missing.remove(seq)
            count(OUT_OF_ORDER, 1)
            gap = 0
        elif seq >= stream.first:
            count(DUPLICATED, 1)
            return 0
        else:  # older than the first one got: the membership began earlier than it seemed
            stream.missing.update(range(seq + 1, stream.first))
            stream.first = seq
            count(OUT_OF_ORDER, 1)
            gap = 0
        stream.received += 1
        count(RECEIVED, 1)
        return gap

    def end_marker(self, publisher: int, end_seq: int) -> int:
        """The publisher's end marker (`end_seq` = messages it published): the stream is counted
        exactly now; returns how many of its last messages were missing (0: no gap)."""
        stream = self._streams.get(publisher)
        if stream is None:  # joined after its last message: nothing was sent while a member
            stream = self._joined(publisher, end_seq)
        elif stream.ended:
            self._count(DUPLICATED, 1)
            return 0
        tail = max(0, end_seq - stream.next)
        expected = max(stream.next, end_seq) - stream.first
        self._count(EXPECTED, expected)
        self._count(LOST, expected - stream.received)
        stream.ended = True
        stream.missing = set()
        return tail

    def close(self, run_stopped: bool) -> None:
        """The connection ended: count the streams whose end marker never came.

        `run_stopped`: the run stopped it, so what is missing may still be on its way (in
        flight); otherwise the connection was lost and what is missing never comes (lost).
        Counted once, however often it is called.
        """
        if self._closed:
            return
        self._closed = True
        count = self._count
        if self._before is not None:
            for publisher, stream in self._streams.items():
                self._before[publisher] = max(stream.next, self._before.get(publisher, 0))
        open_streams = [s for s in self._streams.values() if not s.ended]
        for publisher, stream in self._streams.items():
            if stream.ended:
                continue
            expected = stream.next - stream.first
            count(EXPECTED, expected)
            count(IN_FLIGHT if run_stopped else LOST, expected - stream.received)
            if run_stopped:  # a member to the end: all P published after `next` was due
                count(f"{UNMARKED_STREAMS}{publisher}", 1)
                count(f"{UNMARKED_NEXT}{publisher}", stream.next)
        count(WITHOUT_END_MARKER, len(open_streams))
        for name in (*COUNTERS, MISSED_RECONNECTING):  # in every run's counters, zero or not
            count(name, 0)
        self._streams.clear()


def folded(counters: Mapping[str, int]) -> dict[str, int]:
    """Merged counters with the per-publisher ones folded into NEVER_ARRIVED: the messages
    published after the last one each marker-less stream got, summed over those streams (only
    for publishers that sent their marker, whose total is known)."""
    per_publisher = (PUBLISHED_BY, UNMARKED_STREAMS, UNMARKED_NEXT)
    kept = {k: v for k, v in counters.items() if not k.startswith(per_publisher)}
    if not any(k.startswith(UNMARKED_STREAMS) for k in counters):
        return kept
    tail = 0
    for name, streams in counters.items():
        if not name.startswith(UNMARKED_STREAMS):
            continue
        publisher = name[len(UNMARKED_STREAMS):]
        published = counters.get(f"{PUBLISHED_BY}{publisher}")
        if published is not None:
            tail += max(0, streams * published - counters.get(f"{UNMARKED_NEXT}{publisher}", 0))
    kept[NEVER_ARRIVED] = tail
    return kept
