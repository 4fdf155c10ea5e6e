"""One connection's sends at a fixed rate on the engine's timer (the open model's schedule).

Shared by echo_rate and broadcast's publishers: each send has an intended time (the first, then
one interval after the previous intended time, however late that one left), the timer calls
the handler's `_due(intended_ns, now_ns)` when it is due, and at the end of the connection the
schedule counts the sends that were due against those made ("NAME sends due", "NAME sends
made": the generator self-check, scenarios/selfcheck.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scenarios.selfcheck import SENDS_DUE, SENDS_MADE

if TYPE_CHECKING:
    from scenarios.engine import Channel
    from scenarios.user import WebSocketUser


class FixedRate:
    """A handler's fixed-rate schedule; the handler (a subclass) makes the sends.

    The subclass's `_due(intended_ns, now_ns)` is the timer's callback: it records the send
    lag, sends, then calls `_sent(intended_ns)` to book the next send. `start_schedule` when
    the connection is attached, `end_schedule` when it ends.
    """

    __slots__ = (
        "channel", "timer", "interval_ns", "entry", "next_ns", "made", "_engine", "_lag",
        "_count_of", "_due_counter", "_made_counter",
    )  # fmt: skip

    def __init__(self, user: WebSocketUser, interval_ns: int, name: str) -> None:
        self.channel: Channel | None = None
        self._engine = user.engine
        self.timer = user.engine.timer
        self.interval_ns = interval_ns
        self.entry: list | None = None
        self.next_ns = 0  # the intended time of the next send
        self.made = 0
        recorder = user.measurement.recorder
        self._lag, self._count_of = recorder.lag, recorder.count
        self._due_counter = f"{name} {SENDS_DUE}"
        self._made_counter = f"{name} {SENDS_MADE}"

    def _due(self, intended_ns: int, now_ns: int) -> None:
        raise NotImplementedError

    def start_schedule(self, first_ns: int) -> None:
        """A new connection: a new schedule whose first send is due at `first_ns`."""
        self.next_ns = first_ns
        self.entry = self.timer.at(first_ns, self._due)

    def _sent(self, intended_ns: int) -> None:
        """The send intended at `intended_ns` is made: book the next, unless that send ended
        the connection."""
        self.made += 1
        self.next_ns = intended_ns + self.interval_ns
        if not self.channel.closed:
            self.entry = self.timer.at(self.next_ns, self._due, self.interval_ns)

    def end_schedule(self) -> None:
        """No more sends; count those due until now (or the run's stop) against those made."""
        self.timer.cancel(self.entry)
        now_ns = self._engine.schedule_now_ns()
        interval = self.interval_ns
        missed = (now_ns - self.next_ns) // interval + 1 if self.next_ns <= now_ns else 0
        self._count_of(self._due_counter, self.made + missed)
        self._count_of(self._made_counter, self.made)
        self.made = 0
