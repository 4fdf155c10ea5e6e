"""Linux network counters of one network namespace, and what changed over a benchmark point.

Sources (all text files under /proc):

    NET/netstat, NET/snmp   monotonic counters, as pairs of lines "TcpExt: Name1 Name2 ..." and
                            "TcpExt: 1 2 ..."; kept under nstat's names: section + name, e.g.
                            "TcpExtListenOverflows", "TcpActiveOpens" (unique, as `nstat` prints)
    NET/sockstat            gauges, "TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1" -> "TCP_inuse",
                            "TCP_orphan", "TCP_tw", "TCP_alloc", "TCP_mem" (pages), "sockets_used";
                            inuse, tw and sockets_used are the namespace's, orphan, alloc and mem
                            the whole machine's
    NET/stat/nf_conntrack   conntrack statistics, a header line and one row of hex numbers per
                            CPU; summed over CPUs as "Conntrack" + the column in CamelCase, e.g.
                            "ConntrackDrop", "ConntrackInsertFailed" (the "entries" column is the
                            gauge "conntrack_entries"); per namespace, and absent (nothing read,
                            nothing said) when the nf_conntrack module is not loaded
    /proc/sys/fs/file-nr    file handles allocated, unused, max; global, not per namespace
    nft counters            with a kernel profile's [firewall], its named counters in the
                            server namespace (netns.firewall_counters, via `nft -j`), as
                            "FirewallInvalidDrop", "FirewallRateLimitDrop", "FirewallPolicyDrop"

NET is /proc/self/net for this process's namespace; /proc/PID/net reads the namespace of
process PID from outside it. Reports use plain names: KEY_COUNTERS lists the counters they show
(e.g. "ListenOverflows"), each found in one nstat section (`Snapshot.counter` resolves both).

Errors: read_snapshot raises CounterError (an OSError) when NET's files are missing, unreadable
or malformed. Counters are diagnostics: a caller catches CounterError and records the point
without them rather than failing it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NET_DIR = Path("/proc/self/net")
FILE_NR = Path("/proc/sys/fs/file-nr")
CONNTRACK_STAT = Path("stat") / "nf_conntrack"  # under NET

# (nstat section, name) of every counter a report shows; the plain names are unique. A
# counter this kernel lacks (PAWSPassive went in 4.x; conntrack without its module) is omitted.
_KEYS = (
    ("TcpExt", "ListenOverflows"),
    ("TcpExt", "ListenDrops"),
    ("TcpExt", "TCPReqQFullDrop"),
    ("TcpExt", "TCPReqQFullDoCookies"),
    ("TcpExt", "SyncookiesSent"),
    ("TcpExt", "SyncookiesRecv"),
    ("TcpExt", "SyncookiesFailed"),
    ("TcpExt", "TCPTimeWaitOverflow"),
    ("TcpExt", "TCPSynRetrans"),
    ("TcpExt", "PAWSActive"),
    ("TcpExt", "PAWSPassive"),
    ("TcpExt", "PAWSEstab"),
    ("TcpExt", "PAWSTimewait"),
    ("TcpExt", "TCPChallengeACK"),
    ("TcpExt", "TCPSYNChallenge"),
    ("TcpExt", "TWRecycled"),
    ("TcpExt", "TWKilled"),
    ("TcpExt", "TCPACKSkippedSynRecv"),
    ("TcpExt", "TCPACKSkippedPAWS"),
    ("TcpExt", "TCPACKSkippedTimeWait"),
    ("TcpExt", "TCPAbortOnMemory"),
    ("TcpExt", "TCPAbortOnData"),
    ("TcpExt", "TCPAbortOnClose"),
    ("TcpExt", "TCPBacklogDrop"),
    ("TcpExt", "TCPRcvQDrop"),
    ("TcpExt", "PruneCalled"),
    ("TcpExt", "RcvPruned"),
    ("TcpExt", "EmbryonicRsts"),
    ("TcpExt", "TCPMemoryPressures"),
    ("Tcp", "ActiveOpens"),
    ("Tcp", "PassiveOpens"),
    ("Tcp", "AttemptFails"),
    ("Tcp", "EstabResets"),
    ("Tcp", "RetransSegs"),
    ("Tcp", "InErrs"),
    ("Tcp", "OutRsts"),
    ("", "ConntrackDrop"),
    ("", "ConntrackEarlyDrop"),
    ("", "ConntrackInsertFailed"),
    ("", "FirewallInvalidDrop"),
    ("", "FirewallRateLimitDrop"),
    ("", "FirewallPolicyDrop"),
)
KEY_COUNTERS = tuple(name for _, name in _KEYS)
_NSTAT_NAME = {name: section + name for section, name in _KEYS}
KEY_GAUGES = ("sockets_used", "TCP_inuse", "TCP_orphan", "TCP_tw", "TCP_alloc", "TCP_mem",
              "conntrack_entries")
# Keys of a point record that are not sides.
SNAPSHOTS = "snapshots"
FILE_NR_KEY = "file_nr"

# What a grown counter means; only counters whose growth says the kernel refused, dropped or
# had to retransmit (a handshake got no answer).
MEANING = {
    "ListenOverflows": "the accept queue (listen backlog, capped by net.core.somaxconn) was "
    "full; SYNs or handshake ACKs were dropped and clients retransmitted (first SYN retry "
    "after 1 s)",
    "TCPReqQFullDrop": "the SYN queue was full with syncookies off; SYNs were dropped",
    "TCPReqQFullDoCookies": "the SYN queue was full; the kernel answered with syncookies "
    "instead of queueing (connections still open, TCP options may be reduced)",
    "SyncookiesFailed": "handshake ACKs carried invalid or expired syncookies and were rejected",
    "TCPTimeWaitOverflow": "net.ipv4.tcp_max_tw_buckets was reached; closed connections "
    "skipped TIME-WAIT",
    "TCPSynRetrans": "SYNs (or, on the listening side, SYN-ACKs) were retransmitted: a "
    "handshake got no answer in time; the first retry waits 1 s, later ones 1 s more "
    "(SYNs on Linux 6.5+, net.ipv4.tcp_syn_linear_timeouts) or twice as long each time",
    "PAWSActive": "SYN-ACKs echoed a timestamp this side never sent (an answer meant for an "
    "earlier connection on the same port pair) and were rejected; the connect was reset",
    "PAWSPassive": "SYNs carried a timestamp older than the last one seen from that peer "
    "(PAWS) and were dropped",
    "PAWSEstab": "segments carried a timestamp older than the connection's last (PAWS) and "
    "were dropped, e.g. on a port pair reused while the peer still held the old connection",
    "PAWSTimewait": "segments reaching TIME-WAIT sockets carried an older timestamp (PAWS) "
    "and were dropped: a SYN reusing such a port pair is refused and retried after 1 s",
    "TCPChallengeACK": "challenge ACKs (RFC 5961) answered unexpected SYNs or RSTs; a SYN "
    "for a port pair the peer still holds gets one instead of a SYN-ACK and is retried later",
    "TCPSYNChallenge": "SYNs arrived for connections this side still held open (a reused "
    "port pair); they were answered with a challenge ACK, not a SYN-ACK",
    "TCPACKSkippedSynRecv": "answers to out-of-window segments on half-open connections were "
    "not sent (net.ipv4.tcp_invalid_ratelimit)",
    "TCPACKSkippedPAWS": "answers to segments rejected by PAWS were not sent "
    "(net.ipv4.tcp_invalid_ratelimit)",
    "TCPACKSkippedTimeWait": "answers to segments reaching TIME-WAIT sockets were not sent "
    "(net.ipv4.tcp_invalid_ratelimit)",
    "ConntrackDrop": "packets were dropped by conntrack: its table was full "
    "(net.netfilter.nf_conntrack_max) and no entry could be evicted",
    "ConntrackEarlyDrop": "conntrack evicted entries to make room: its table was full "
    "(net.netfilter.nf_conntrack_max)",
    "ConntrackInsertFailed": "new connections could not be entered in the conntrack table "
    "(a clash on the same addresses and ports); their first packet was dropped",
    "FirewallInvalidDrop": "the firewall dropped packets conntrack called invalid (they "
    "belong to no connection it tracks, e.g. one whose entry expired or was never made)",
    "FirewallRateLimitDrop": "the firewall dropped SYNs over its per-source rate limit "
    "(firewall.new_per_source_per_s); clients retried them after 1 s",
    "FirewallPolicyDrop": "the firewall's policy dropped packets no rule accepted (not part "
    "of a tracked connection, not a new TCP connection to the server address)",
    "TCPAbortOnMemory": "connections were reset because orphaned sockets "
    "(net.ipv4.tcp_max_orphans) or TCP memory (net.ipv4.tcp_mem) ran out",
    "TCPBacklogDrop": "packets were dropped because a socket's backlog was full while the "
    "application held it (receiver overloaded)",
    "TCPRcvQDrop": "packets were dropped because a socket's receive buffer was full",
    "PruneCalled": "receive queues were pruned under memory pressure (rmem / net.ipv4.tcp_mem)",
    "RcvPruned": "received packets were dropped after pruning could not make room",
    "TCPMemoryPressures": "TCP entered memory pressure (net.ipv4.tcp_mem); buffers were shrunk",
    "AttemptFails": "connection attempts failed during the handshake (reset, timed out or "
    "abandoned)",
    "InErrs": "TCP segments were received in error (e.g. bad checksum) and dropped",
}
# What the other counters and gauges count: their growth is ordinary traffic, said so that a
# live view (the web UI's kernel tab) can name every counter that moved.
ACTIVITY = {
    "ListenDrops": "SYNs or handshake ACKs dropped at a listening socket (all causes; "
    "ListenOverflows is the full-queue share)",
    "SyncookiesSent": "SYN-ACKs answered with a syncookie (SYN queue full)",
    "SyncookiesRecv": "handshake ACKs that carried a valid syncookie",
    "TWRecycled": "TIME-WAIT sockets whose port pair a new outgoing connection reused",
    "TWKilled": "TIME-WAIT sockets ended early (tcp_max_tw_buckets, or reused)",
    "TCPAbortOnData": "connections reset because data arrived after the application closed",
    "TCPAbortOnClose": "connections reset because unread data was left at close",
    "EmbryonicRsts": "resets sent for half-open (SYN-RECV) connections",
    "ActiveOpens": "connections opened from this side (connects)",
    "PassiveOpens": "connections accepted on this side",
    "EstabResets": "established connections ended by a reset",
    "RetransSegs": "TCP segments retransmitted (any cause: loss, a full queue, a timeout)",
    "OutRsts": "resets sent",
    "sockets_used": "sockets in use now, change since the start",
    "TCP_inuse": "TCP sockets in use, change since the start",
    "TCP_orphan": "TCP sockets no process holds any more (closing), change since the start",
    "TCP_tw": "TCP sockets in TIME-WAIT, change since the start",
    "TCP_alloc": "TCP sockets allocated, change since the start",
    "TCP_mem": "pages of TCP buffer memory, change since the start",
    "conntrack_entries": "connections in conntrack's table (a firewall tracks them: open "
    "ones, and closed ones until their timeout), change since the start",
}


def meaning(name: str) -> str:
    """What a counter's growth means: a drop or refusal (MEANING), else what it counts."""
    return MEANING.get(name) or ACTIVITY.get(name, "")


# TIME-WAIT growth below this is the normal residue of a point's closed connections.
TW_NOTABLE = 1000


class CounterError(OSError):
    """The counters of a namespace could not be read or parsed."""


@dataclass(frozen=True)
class Snapshot:
    """One reading of a namespace's counters at `unix_s`."""

    counters: dict[str, int]
    gauges: dict[str, int]
    file_nr: tuple[int, int, int] | None = None
    unix_s: float = field(default_factory=time.time)

    def counter(self, name: str) -> int | None:
        """A counter by nstat name ("TcpExtListenDrops") or key name ("ListenDrops")."""
        return self.counters.get(name, self.counters.get(_NSTAT_NAME.get(name, "")))

    def as_json(self) -> dict[str, Any]:
        """Everything read, JSON-serialisable."""
        return {
            "unix_s": self.unix_s,
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
            FILE_NR_KEY: list(self.file_nr) if self.file_nr else None,
        }


def read_snapshot(net_dir: Path = NET_DIR, file_nr: Path = FILE_NR) -> Snapshot:
    """Read netstat, snmp and sockstat of net_dir's namespace, and file-nr if readable.

    Raises CounterError when a file of net_dir is missing, unreadable or malformed.
    """
    unix_s = time.time()
    counters = {
        **parse_counters(_read(net_dir / "netstat")),
        **parse_counters(_read(net_dir / "snmp")),
    }
    gauges = parse_sockstat(_read(net_dir / "sockstat"))
    conntrack = _conntrack(net_dir / CONNTRACK_STAT)
    if conntrack is not None:
        entries, totals = conntrack
        counters.update(totals)
        gauges["conntrack_entries"] = entries
    try:
        handles = parse_file_nr(file_nr.read_text())
    except (OSError, CounterError):
        handles = None  # global and optional: the namespace's counters still stand
    return Snapshot(counters, gauges, handles, unix_s)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CounterError(f"cannot read {path}: {exc}") from None


def parse_counters(text: str) -> dict[str, int]:
    """netstat/snmp text -> {section + name: value}, e.g. {"TcpExtListenOverflows": 3}."""
    out: dict[str, int] = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise CounterError(f"odd number of lines in counters starting {lines[0][0]!r}")
    for header, values in zip(lines[::2], lines[1::2], strict=True):
        section = header[0].removesuffix(":")
        if values[0] != header[0] or len(values) != len(header):
            raise CounterError(f"{section}: header and values do not match")
        for name, value in zip(header[1:], values[1:], strict=True):
            out[section + name] = _int(value, section + name)
    return out


def _conntrack(path: Path) -> tuple[int, dict[str, int]] | None:
    # Optional: without the nf_conntrack module the file is absent, and an odd one must not
    # cost the point its TCP counters.
    try:
        return parse_conntrack(path.read_text())
    except (OSError, UnicodeDecodeError, CounterError):
        return None


def parse_conntrack(text: str) -> tuple[int, dict[str, int]]:
    """stat/nf_conntrack text -> (entries, {"ConntrackDrop": n, ...}) summed over the CPU rows.

    Every column is hex; "entries" is the namespace's table size, repeated on every row.
    """
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0][0] != "entries":
        raise CounterError("nf_conntrack statistics do not start with an 'entries' header")
    header = lines[0]
    sums = [0] * len(header)
    for row in lines[1:]:
        if len(row) != len(header):
            raise CounterError("nf_conntrack: header and values do not match")
        for k, word in enumerate(row):
            try:
                sums[k] += int(word, 16)
            except ValueError:
                raise CounterError(f"nf_conntrack {header[k]}: {word!r} is not hex") from None
    entries = int(lines[1][0], 16)
    totals = {"Conntrack" + _camel(name): total
              for name, total in zip(header[1:], sums[1:], strict=True)}  # fmt: skip
    return entries, totals


def _camel(name: str) -> str:
    """insert_failed -> InsertFailed."""
    return "".join(word.capitalize() for word in name.split("_"))


def parse_sockstat(text: str) -> dict[str, int]:
    """sockstat text -> {"TCP_inuse": 5, "TCP_tw": 2, "sockets_used": 11, ...}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        section, _, rest = line.partition(":")
        words = rest.split()
        if len(words) % 2:
            raise CounterError(f"sockstat line {line!r} is not name-value pairs")
        for name, value in zip(words[::2], words[1::2], strict=True):
            out[f"{section.strip()}_{name}"] = _int(value, f"{section}_{name}")
    return out


def parse_file_nr(text: str) -> tuple[int, int, int]:
    """file-nr text -> (allocated, unused, max) file handles."""
    words = text.split()
    if len(words) != 3:
        raise CounterError(f"file-nr {text!r} is not three numbers")
    allocated, unused, maximum = (_int(w, "file-nr") for w in words)
    return allocated, unused, maximum


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CounterError(f"{name}: {text!r} is not an integer") from None


def deltas(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """after − before of KEY_COUNTERS and KEY_GAUGES, by plain name.

    Counters this kernel lacks are omitted. So is a counter that went backwards: monotonic
    counters only do that when the namespace was replaced (its process restarted).
    """
    out: dict[str, int] = {}
    for name in KEY_COUNTERS:
        old, new = before.counter(name), after.counter(name)
        if old is not None and new is not None and new >= old:
            out[name] = new - old
    for name in KEY_GAUGES:
        if name in before.gauges and name in after.gauges:
            out[name] = after.gauges[name] - before.gauges[name]
    return out


def point_record(sides: dict[str, tuple[Snapshot, Snapshot]]) -> dict[str, Any]:
    """The JSON object of points/POINT/kernel_counters.json for (before, after) per side.

    {side: {name: delta}, ..., "snapshots": {side: {"before": snap, "after": snap}},
     "file_nr": {"before": [allocated, unused, max], "after": [...]}}; file_nr only when read.
    """
    record: dict[str, Any] = {side: deltas(b, a) for side, (b, a) in sides.items()}
    record[SNAPSHOTS] = {
        side: {"before": b.as_json(), "after": a.as_json()} for side, (b, a) in sides.items()
    }
    for before, after in sides.values():
        if before.file_nr and after.file_nr:
            record[FILE_NR_KEY] = {"before": list(before.file_nr), "after": list(after.file_nr)}
            break
    return record


def side_deltas(record: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The sides of a point record: every key but snapshots/file_nr holding name -> number."""
    return {
        side: value
        for side, value in record.items()
        if side not in (SNAPSHOTS, FILE_NR_KEY)
        and isinstance(value, dict)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values())
    }


def explain(record: dict[str, Any]) -> list[str]:
    """One line per side and grown drop counter saying what the kernel did; [] if nothing."""
    lines = []
    for side, values in side_deltas(record).items():
        for name, meaning in MEANING.items():
            if values.get(name, 0) > 0:
                lines.append(f"{side}: {values[name]:,} {name} — {meaning}")
        # ListenDrops counts the overflows and the SYN-queue drops too: say only what is left.
        other = (values.get("ListenDrops", 0) - values.get("ListenOverflows", 0)
                 - values.get("TCPReqQFullDrop", 0))  # fmt: skip
        if other > 0:
            lines.append(f"{side}: {other:,} ListenDrops beyond ListenOverflows — SYNs were "
                         "dropped at a listening socket for other reasons")  # fmt: skip
        tw = values.get("TCP_tw", 0)
        if tw >= TW_NOTABLE:
            lines.append(f"{side}: TCP_tw grew by {tw:,} — sockets left in TIME-WAIT by "
                         "connections this side closed first; each holds its address and port "
                         "for 60 s")  # fmt: skip
    return lines
