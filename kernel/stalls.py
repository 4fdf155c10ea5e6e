"""Connect tails at retransmit timeouts, and the kernel counters that moved with them.

A SYN that gets no answer is sent again after a timeout that starts at 1 s and doubles: 1, 3,
7, 15, 31 s after the first. Since Linux 6.5 the first net.ipv4.tcp_syn_linear_timeouts
(default 4) retries do not double, so the SYN goes out again 1, 2, 3, 4, 5, then 7, 11, 19 s
after the first; a listener that gets no ACK for its SYN-ACK resends it at 1, 3, 7, 15 s
whatever the kernel. So a connect latency mode that starts at one of those times is a lost
handshake packet, and the point's counters (counters.point_record) say who dropped it: the
server's accept or SYN queue, conntrack, PAWS, a challenge ACK for a port pair the peer still
held, memory. `stalls` turns the "tcp connect" and "ws upgrade" histograms (µs, encoded
HdrHistograms as the scenarios store them) into one Stall per mode at a timeout and one per
stretch of tail over 1 s between them, each with a cause in words or the plain statement
that no counter names one, and which were checked.

Counters are point-wide: every stall of a point is set against the same deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from kernel import counters

US_PER_S = 1_000_000
INITIAL_RTO_S = 1.0  # TCP_TIMEOUT_INIT, for SYNs and SYN-ACKs alike
HISTOGRAM_MAX_S = 60.0  # the scenarios' histograms clamp there
LINEAR_TIMEOUTS = Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")  # absent before 6.5
# A mode "sits at" a timeout T when it lies in [T, T + TOLERANCE_S): the round trip and a
# busy generator's wake-up lag come on top of the kernel's timer.
TOLERANCE_S = 0.3
# Every connect slower than this gets a stall: explained, or said to be unexplained.
TAIL_S = 1.0
# The request names looked at, what one sample of each is called and the packet it waits for.
PHASES = {"tcp connect": ("TCP connects", "SYN"), "ws upgrade": ("WebSocket upgrades", "SYN-ACK")}

# Counters whose growth names who dropped a handshake packet, in the order they are said.
CAUSES = {
    "ListenOverflows": "the accept queue was full",
    "TCPReqQFullDrop": "the SYN queue was full (syncookies off)",
    "ListenDrops": "SYNs were dropped at the listener beyond its queue overflows",
    "SyncookiesFailed": "handshake ACKs with invalid syncookies were rejected",
    "ConntrackDrop": "conntrack's table was full and it dropped packets",
    "ConntrackInsertFailed": "conntrack could not enter new connections (a clash) and "
    "dropped their first packet",
    "ConntrackEarlyDrop": "conntrack's table was full and it evicted entries",
    "FirewallRateLimitDrop": "the firewall dropped SYNs over its per-source rate limit",
    "FirewallPolicyDrop": "the firewall's policy dropped packets no rule accepted",
    "FirewallInvalidDrop": "the firewall dropped packets conntrack called invalid",
    "PAWSActive": "SYN-ACKs answering an earlier connection on the same port pair were "
    "rejected (PAWS)",
    "PAWSPassive": "SYNs with an old timestamp were dropped (PAWS)",
    "PAWSTimewait": "SYNs reusing a port pair still in TIME-WAIT were refused for an old "
    "timestamp (PAWS)",
    "TCPSYNChallenge": "SYNs met a connection still held on the same port pair and got a "
    "challenge ACK, not a SYN-ACK",
    "TCPChallengeACK": "challenge ACKs were sent (RFC 5961) where a SYN-ACK was expected",
    "TCPACKSkippedSynRecv": "answers on half-open connections were rate-limited away",
    "TCPACKSkippedPAWS": "answers to PAWS-rejected segments were rate-limited away",
    "TCPACKSkippedTimeWait": "answers from TIME-WAIT sockets were rate-limited away",
    "TCPMemoryPressures": "TCP was under memory pressure (net.ipv4.tcp_mem)",
    "TCPAbortOnMemory": "connections were reset for lack of TCP memory or orphan slots",
    "TCPBacklogDrop": "packets were dropped at a busy socket's backlog",
}
# Said next to a PAWS or challenge-ACK cause: how the port pair came to be reused.
CONTEXT = {"TWRecycled": "connects reused port pairs still in TIME-WAIT"}
REUSE_CAUSES = ("PAWSActive", "PAWSPassive", "PAWSTimewait", "TCPSYNChallenge", "TCPChallengeACK")
EVIDENCE = "TCPSynRetrans"
# The sides that do not send a packet's retransmits (side names as counters.point_record's).
SENDS_NOT = {"SYN": "server", "SYN-ACK": "client"}


@dataclass(frozen=True)
class Stall:
    """`connects` samples of `name` (a `share` of them) from `at_s` on, and why.

    at_s is the retransmit timeout the mode sits at, or for a tail between two timeouts its
    fastest sample; upto_s its slowest; counters the ones that moved, "side.Name": delta.
    """

    at_s: float
    connects: int
    share: float
    counters: dict[str, int]
    cause: str
    name: str = "tcp connect"
    upto_s: float = 0.0

    def sentence(self) -> str:
        """e.g. "312 TCP connects (3.1 %) took 1.00-1.03 s: a SYN retransmit (...); ..."."""
        what = PHASES.get(self.name, (self.name, ""))[0]
        took = f"{self.at_s:.2f}-{self.upto_s:.2f}"
        if f"{self.at_s:.2f}" == f"{self.upto_s:.2f}":
            took = f"{self.at_s:.2f}"
        return f"{self.connects:,} {what} ({_percent(self.share)}) took {took} s: {self.cause}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def named_causes(record: Mapping[str, Any] | None) -> str:
    """The counters that name who dropped handshake packets in a point, in words ("" if none
    moved): said for connections that failed to open, which no latency histogram holds.

    e.g. "server ConntrackDrop +2,478: conntrack's table was full and it dropped packets
    (client TCPSynRetrans +2,124)".
    """
    sides = counters.side_deltas(dict(record)) if record else {}
    causes = _moved(sides, CAUSES)
    if not causes:
        return ""
    evidence = _moved(sides, (EVIDENCE,))
    return _causes(causes) + (f" ({_list(evidence)})" if evidence else "")


def syn_schedule(linear_timeouts: int = 0) -> tuple[float, ...]:
    """Seconds after the first SYN at which its 1st, 2nd, ... retransmit goes out (within
    the histograms' 60 s): one initial timeout apart linear_timeouts + 1 times, then doubling.

    0 gives the classic 1, 3, 7, 15, 31 s (and every kernel's SYN-ACK schedule); 4, Linux
    6.5's default, gives 1, 2, 3, 4, 5, 7, 11, 19, 35 s.
    """
    times, at_s, rto_s = [], 0.0, INITIAL_RTO_S
    for k in range(64):
        at_s += rto_s
        if at_s > HISTOGRAM_MAX_S:
            break
        times.append(at_s)
        if k >= linear_timeouts:
            rto_s *= 2
    return tuple(times)


def syn_linear_timeouts(path: Path = LINEAR_TIMEOUTS) -> int:
    """net.ipv4.tcp_syn_linear_timeouts of this process's namespace; 0 where the kernel lacks it.

    Every new namespace starts at the kernel's default (4), as the host does unless changed.
    """
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def stalls(
    encoded_histograms: Mapping[str, str],
    record: Mapping[str, Any] | None,
    linear_timeouts: int | None = None,
) -> list[Stall]:
    """Every tail over TAIL_S of the connect histograms, split at the retransmit times.

    linear_timeouts is the clients' net.ipv4.tcp_syn_linear_timeouts; None reads this
    namespace's (syn_linear_timeouts), right for a point run on this kernel's defaults.
    """
    if linear_timeouts is None:
        linear_timeouts = syn_linear_timeouts()
    schedules = {"SYN": syn_schedule(linear_timeouts), "SYN-ACK": syn_schedule(0)}
    sides = counters.side_deltas(dict(record)) if record else {}
    found = []
    for name in PHASES:
        encoded = encoded_histograms.get(name)
        if not encoded:
            continue
        try:
            histogram = HdrHistogram.decode(encoded)
        except Exception:  # the package raises bare zlib/struct errors; a bad one tells nothing
            continue
        total = histogram.get_total_count()
        schedule = schedules[PHASES[name][1]]
        for at_s, upto_s, n, retransmits in _tails(histogram, schedule):
            found.append(_stall(name, at_s, upto_s, n, n / total, retransmits, schedule, sides))
    return found


def _tails(
    histogram: HdrHistogram, schedule: tuple[float, ...]
) -> list[tuple[float, float, int, int]]:
    """(fastest s, slowest s, count, retransmits) per stretch of tail: a timeout's window
    [T, T + TOLERANCE_S) has the number of its retransmit, a stretch between windows 0."""
    if histogram.get_max_value() < TAIL_S * US_PER_S:  # no tail: skip the slow walk (0.1 s)
        return []
    bins: dict[tuple[int, int], list[float]] = {}  # (order, retransmits) -> [min, max, count]
    for item in histogram.get_recorded_iterator():
        value_s = item.value_iterated_to / US_PER_S  # the bucket's highest equivalent value
        if value_s < TAIL_S:
            continue
        found = bins.setdefault(_bin(value_s, schedule), [value_s, value_s, 0])
        found[0], found[1] = min(found[0], value_s), max(found[1], value_s)
        found[2] += item.count_at_value_iterated_to
    return [(lo, hi, int(n), retransmits)
            for (_, retransmits), (lo, hi, n) in sorted(bins.items())]  # fmt: skip


def _bin(value_s: float, schedule: tuple[float, ...]) -> tuple[int, int]:
    """Where a tail value falls: (2k, k + 1) in the window of timeout k, (2k + 1, 0) after it."""
    order = -1
    for k, at_s in enumerate(schedule):
        if value_s < at_s:
            break
        if value_s < at_s + TOLERANCE_S:
            return 2 * k, k + 1
        order = 2 * k + 1
    return max(order, 0), 0


def _stall(
    name: str, at_s: float, upto_s: float, n: int, share: float, retransmits: int,
    schedule: tuple[float, ...], sides: Mapping[str, Mapping[str, int]],
) -> Stall:  # fmt: skip
    packet = PHASES[name][1]
    # The sender's count: clients retransmit SYNs, the server SYN-ACKs (a host side both).
    sender = {side: v for side, v in sides.items() if side != SENDS_NOT[packet]
              and not side.startswith(SENDS_NOT[packet])}  # fmt: skip
    evidence = _moved(sender, (EVIDENCE,))
    causes = _moved(sides, CAUSES)
    lost = bool(retransmits) and (bool(evidence) or not _recorded(sender, (EVIDENCE,)))
    if retransmits:
        at_s = schedule[retransmits - 1]
        timing = f"{retransmits} {packet} retransmits" if retransmits > 1 else (
            f"a {packet} retransmit")  # fmt: skip
        if evidence:
            head = f"{timing} ({_list(evidence)})"
        elif lost:
            head = f"the time of {timing} (TCPSynRetrans was not recorded)"
        else:
            head = (f"the time of {timing}, yet the {' or '.join(_ordered(sender))} counted "
                    "no TCPSynRetrans: not a retransmit")  # fmt: skip
    else:
        head = (f"between {packet} retransmit times ({', '.join(f'{t:g}' for t in schedule)} s, "
                f"each + {TOLERANCE_S:g} s), so not one lost packet alone")  # fmt: skip
    cause = f"{head}; {_because(sides, causes, lost, bool(retransmits))}"
    moved = {f"{side}.{c}": d for side, c, d in [*evidence, *causes]}
    if any(c in REUSE_CAUSES for _, c, _ in causes):
        context = _moved(sides, CONTEXT)
        moved.update({f"{side}.{c}": d for side, c, d in context})
        if context:
            cause += f"; {_list(context)}: {CONTEXT['TWRecycled']}"
    return Stall(round(at_s, 3), n, share, moved, cause, name, round(upto_s, 3))


def _because(
    sides: Mapping[str, Mapping[str, int]], causes: list[tuple[str, str, int]], lost: bool,
    at_timeout: bool,
) -> str:  # fmt: skip
    if causes:  # between timeouts they moved in the point, not necessarily with this tail
        said = _causes(causes)
        return said if at_timeout else f"moved in this point: {said}"
    if not sides:
        return "kernel counters were not recorded for this point, so no cause can be named"
    checked = [c for c in CAUSES if _recorded(sides, (c,))]
    where = " or ".join(f"the {side}" for side in _ordered(sides))
    why = ("the SYN or its answer was lost elsewhere" if lost
           else "the time went elsewhere (a busy generator or server)")  # fmt: skip
    return f"no drop counter moved on {where} (checked {', '.join(checked)}): {why}"


def _moved(
    sides: Mapping[str, Mapping[str, int]], names: Mapping[str, str] | tuple[str, ...]
) -> list[tuple[str, str, int]]:
    """(side, counter, delta) of every named counter that grew, servers first."""
    out = []
    for name in names:
        for side in _ordered(sides):
            delta = _delta(sides[side], name)
            if delta > 0:
                out.append((side, name, delta))
    return out


def _ordered(sides: Mapping[str, Any]) -> list[str]:
    return sorted(sides, key=lambda side: (side != "server", side))


def _delta(values: Mapping[str, int], name: str) -> int:
    if name == "ListenDrops":  # it counts the overflows and SYN-queue drops too: the rest
        return (values.get(name, 0) - values.get("ListenOverflows", 0)
                - values.get("TCPReqQFullDrop", 0))  # fmt: skip
    return int(values.get(name, 0))


def _recorded(sides: Mapping[str, Mapping[str, int]], names: tuple[str, ...]) -> bool:
    return any(name in values for values in sides.values() for name in names)


def _causes(moved: list[tuple[str, str, int]]) -> str:
    """'server ConntrackDrop +420: conntrack's table was full ...; ...' for CAUSES that moved."""
    return "; ".join(f"{side} {name} +{delta:,}: {CAUSES[name]}" for side, name, delta in moved)


def _list(moved: list[tuple[str, str, int]]) -> str:
    return ", ".join(f"{side} {name} +{delta:,}" for side, name, delta in moved)


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %" if share >= 0.01 else f"{share * 100:.2g} %"
