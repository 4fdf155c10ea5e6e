"""The generator's self-check: was the load generator quick enough for the figures it reports?

CPU alone does not tell (at 88 % of a core the p99 was already 2.4x a compiled client's), so
the generator's own delay is measured directly, in every Locust process, all run long:

    wake lag   how late a canary timer (every 10 ms) ran: the time the process's hub was busy
               with other work, plus the kernel's wake-up. A reply that arrives meanwhile
               waits as long before it is read and timed.
    send lag   how late each scheduled send of an open-model scenario left against its
               intended time (echo_rate, broadcast publishers). A send held back by the server
               (no free --max-in-flight slot) is the server's delay, not counted here.

    read lag   for a measurement timed at arrival (echo_rate, broadcast, push over plain TCP:
               a message's latency ends when it reached the socket, SO_TIMESTAMPNS): how long
               after that the generator read it. Measured exactly, per read; not in the figure.

Verdict: generator-bound when the delay's p99 is more than BOUND_FRACTION of the p99 of the
latency the point reports (its main measurement), and above NOISE_FLOOR_US (1 ms); or when fewer
than MIN_SENDS_MADE of the scheduled sends were made; or when a process averaged
SATURATED_PCT of a core (scenarios/cpu.py). The delay is the larger of wake and send lag. A
measurement timed at arrival (echo_rate, broadcast and push over plain TCP) has no read delay
in it: its delay is the send lag alone when it starts at an intended send (echo_rate), and
none when it starts at a send time stamped as the message left (broadcast: from the
publisher's handing a message to its socket to a member's copy reaching its socket) or at the
server (push), so that only the sends and the CPU rules apply. Such a point is flagged, not
hidden: its figures are about the generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scenarios.cpu import Saturation

BOUND_FRACTION = 0.25
# Any client pays the wake-up of a sleeping process. Measured on the 2-core VM this suite is
# built on, an idle generator's canary has p50 about 190 µs, p99 300-500 µs and p99.9 about
# 2 ms (the process waiting for its vCPU, not working): a delay under 1 ms is no evidence of a
# busy generator, while a busy one shows milliseconds.
NOISE_FLOOR_US = 1000
MIN_SENDS_MADE = 0.95
WAKE_LAG = "wake lag"
READ_LAG = "read lag"
# What a measurement's latency ends at (the "timed_at" of a run's measurement).
TIMED_AT_ARRIVAL = "arrival"
TIMED_AT_READ = "read"
# Where it starts (its "timed_from"): a send time the generator intended, or one stamped as the
# message left (a broadcast publish over plain TCP) or by the server (push).
TIMED_FROM_INTENDED = "intended"
TIMED_FROM_SENT = "sent"
SEND_LAG = "send lag"
SENDS_DUE = "sends due"
SENDS_MADE = "sends made"


@dataclass(frozen=True)
class SelfCheck:
    """The figures behind the verdict, all from the merged histograms and counters."""

    wake_lag: Mapping[str, int]  # summary (count, p50_us, ..., max_us); empty: not measured
    send_lag: Mapping[str, int]
    latency_name: str  # the main measurement's headline row
    latency_p99_us: int
    sends_due: int
    sends_made: int
    saturation: Saturation
    read_lag: Mapping[str, int] = field(default_factory=dict)  # empty: not timed at arrival
    at_arrival: bool = False  # the main measurement ends at arrival: no read delay in it
    from_intended: bool = True  # it starts at an intended send: the send lag is in it

    @property
    def delay_p99_us(self) -> int:
        return max(self.wake_lag.get("p99_us", 0), self.send_lag.get("p99_us", 0))

    @property
    def delay_in_figure_p99_us(self) -> int | None:
        """The generator's delay that is in the main measurement: the hub's (wake lag, as
        replies wait to be read) and the scheduled sends' (send lag); timed at arrival, the
        send lag alone (measured per send); from a stamped send to arrival, none."""
        if not self.at_arrival:
            return self.delay_p99_us
        return self.send_lag.get("p99_us", 0) if self.from_intended else None

    @property
    def delay_limit_us(self) -> float:
        return max(NOISE_FLOOR_US, BOUND_FRACTION * self.latency_p99_us)

    def reasons(self) -> list[str]:
        """Why the generator is the bottleneck (empty: it is not)."""
        found = []
        delay = self.delay_in_figure_p99_us
        if delay is not None and delay > self.delay_limit_us:
            against = (
                f"{delay / self.latency_p99_us:.0%} of {self.latency_name} p99 "
                f"{self.latency_p99_us:,} µs"
                if self.latency_p99_us
                else f"over {NOISE_FLOOR_US} µs"
            )
            which = "send lag" if self.at_arrival else "delay"
            found.append(f"generator {which} p99 {delay:,} µs is {against}")
        if self.sends_due and self.sends_made < MIN_SENDS_MADE * self.sends_due:
            found.append(
                f"only {self.sends_made / self.sends_due:.0%} of the scheduled sends were made "
                f"({self.sends_made:,} of {self.sends_due:,})"
            )
        if self.saturation.saturated:
            found.append(
                f"a Locust process averaged {self.saturation.busiest_run_pct:.0f}% of a core"
            )
        return found

    @property
    def bound(self) -> bool:
        return bool(self.reasons())

    def verdict(self) -> str:
        """One line: the verdict and its numbers."""
        reasons = self.reasons()
        if reasons:
            return (
                "GENERATOR-BOUND: " + "; ".join(reasons)
                + ": these figures measure the load generator, not the server"
            )  # fmt: skip
        read = self.read_lag.get("p99_us")
        later = f", read p99 {read:,} µs later" if read is not None else ""
        name = self.latency_name or "the figures"
        if self.at_arrival and self.from_intended:
            parts = [f"send lag p99 {self.send_lag.get('p99_us', 0):,} µs",
                     f"against {name} p99 {self.latency_p99_us:,} µs (timed at arrival{later}; "
                     f"wake lag p99 {self.wake_lag.get('p99_us', 0):,} µs, not in it)"]
        elif self.at_arrival:
            parts = [f"delay p99 {self.delay_p99_us:,} µs",
                     f"not in {name}: timed at arrival{later}"]
        else:
            parts = [f"delay p99 {self.delay_p99_us:,} µs"]
            if self.latency_p99_us:
                parts.append(f"against {self.latency_name} p99 {self.latency_p99_us:,} µs")
        if self.sends_due:
            parts.append(f"{self.sends_made / self.sends_due:.1%} of scheduled sends made")
        parts.append(f"busiest process {self.saturation.busiest_run_pct:.0f}% of a core")
        return "generator ok: " + ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "bound": self.bound,
            "verdict": self.verdict(),
            "reasons": self.reasons(),
            "wake_lag_us": dict(self.wake_lag),
            "send_lag_us": dict(self.send_lag),
            "read_lag_us": dict(self.read_lag),
            "timed_at": TIMED_AT_ARRIVAL if self.at_arrival else TIMED_AT_READ,
            "timed_from": TIMED_FROM_INTENDED if self.from_intended else TIMED_FROM_SENT,
            "delay_in_figure_p99_us": self.delay_in_figure_p99_us,
            "delay_p99_us": self.delay_p99_us,
            "delay_limit_us": round(self.delay_limit_us),
            "latency_name": self.latency_name,
            "latency_p99_us": self.latency_p99_us,
            "sends_due": self.sends_due,
            "sends_made": self.sends_made,
        }


def headline(
    main: Sequence[str], totals: Mapping[str, Mapping[str, int]]
) -> tuple[str, int]:
    """(name, p99 µs) of the main measurement's first row with samples, else the fullest row."""
    for name in main:
        row = totals.get(name)
        if row and row.get("count"):
            return name, int(row["p99_us"])
    if not totals:
        return "", 0
    name = max(totals, key=lambda n: totals[n].get("count", 0))
    return name, int(totals[name].get("p99_us", 0))


def sends(counters: Mapping[str, int]) -> tuple[int, int]:
    """(due, made) summed over every scenario's "<name> sends due/made" counters."""
    due = sum(v for k, v in counters.items() if k.endswith(SENDS_DUE))
    made = sum(v for k, v in counters.items() if k.endswith(SENDS_MADE))
    return due, made
