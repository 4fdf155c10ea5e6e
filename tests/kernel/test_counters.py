"""Kernel network counters: parsing /proc text, deltas over a point, the record and its wording."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

import pytest

from kernel.counters import (
    KEY_COUNTERS,
    KEY_GAUGES,
    MEANING,
    CounterError,
    Snapshot,
    deltas,
    explain,
    parse_conntrack,
    point_record,
    read_snapshot,
)

PROC_NET = Path("/proc/self/net")
linux_only = pytest.mark.skipif(
    not (PROC_NET / "netstat").is_file(), reason="needs Linux /proc/net"
)

NETSTAT = """\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts ListenOverflows ListenDrops
TcpExt: {cookies} 0 0 1 {overflows} {drops}
IpExt: InNoRoutes InOctets
IpExt: 0 123456
"""
SNMP = """\
Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 1000
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails InErrs
Tcp: 1 200 120000 -1 {opens} 40 0 0
Udp: InDatagrams NoPorts InErrors
Udp: 5 0 0
"""
SOCKSTAT = """\
sockets: used {used}
TCP: inuse 5 orphan 0 tw {tw} alloc 7 mem 3
UDP: inuse 0 mem 0
FRAG: inuse 0 memory 0
"""


def _fake_net(tmp_path: Path, name: str, **values: int) -> Path:
    """A /proc/PID/net lookalike of a kernel without TCPReqQFullDrop and friends."""
    values = {"cookies": 0, "overflows": 0, "drops": 0, "opens": 10, "used": 11, "tw": 2,
              **values}  # fmt: skip
    net = tmp_path / name
    net.mkdir()
    (net / "netstat").write_text(NETSTAT.format(**values))
    (net / "snmp").write_text(SNMP.format(**values))
    (net / "sockstat").write_text(SOCKSTAT.format(**values))
    return net


@linux_only
def test_reads_this_machines_counters() -> None:
    """/proc/self/net yields integer counters under nstat names, sockstat gauges and file-nr."""
    snap = read_snapshot()
    for name in ("TcpExtListenOverflows", "TcpExtListenDrops", "TcpActiveOpens", "TcpInErrs"):
        assert isinstance(snap.counters[name], int)
    assert snap.counter("ListenOverflows") == snap.counters["TcpExtListenOverflows"]
    assert snap.counters["TcpMaxConn"] == -1  # a signed field parses too
    assert set(KEY_GAUGES) <= set(snap.gauges) and snap.gauges["sockets_used"] > 0
    assert snap.file_nr is not None and snap.file_nr[2] > 0
    assert abs(snap.unix_s - time.time()) < 60
    assert set(read_snapshot(Path(f"/proc/{os.getpid()}/net")).counters) == set(snap.counters)


def test_parses_text_samples(tmp_path: Path) -> None:
    """Counters from netstat and snmp, gauges from sockstat, file-nr as three numbers."""
    file_nr = tmp_path / "file-nr"
    file_nr.write_text("378\t0\t2466177\n")
    snap = read_snapshot(_fake_net(tmp_path, "net", overflows=7, drops=9), file_nr)
    assert snap.counters["TcpExtListenOverflows"] == 7 and snap.counter("ListenDrops") == 9
    assert snap.counters["TcpPassiveOpens"] == 40 and snap.counters["IpExtInOctets"] == 123456
    assert snap.counters["UdpInDatagrams"] == 5
    assert snap.gauges == {"sockets_used": 11, "TCP_inuse": 5, "TCP_orphan": 0, "TCP_tw": 2,
                           "TCP_alloc": 7, "TCP_mem": 3, "UDP_inuse": 0, "UDP_mem": 0,
                           "FRAG_inuse": 0, "FRAG_memory": 0}  # fmt: skip
    assert snap.file_nr == (378, 0, 2466177)
    assert snap.counter("TCPReqQFullDrop") is None  # this kernel lacks it


def test_missing_or_malformed_files_raise_counter_error(tmp_path: Path) -> None:
    """No namespace, a missing file or junk raise CounterError; a missing file-nr is just None."""
    with pytest.raises(CounterError, match="netstat"):
        read_snapshot(tmp_path / "gone", tmp_path / "file-nr")
    net = _fake_net(tmp_path, "net")
    assert read_snapshot(net, tmp_path / "no-file-nr").file_nr is None
    (net / "sockstat").unlink()
    with pytest.raises(CounterError, match="sockstat"):
        read_snapshot(net)
    net = _fake_net(tmp_path, "junk")
    (net / "snmp").write_text("Tcp: ActiveOpens PassiveOpens\nTcp: 1\n")
    with pytest.raises(CounterError, match="do not match"):
        read_snapshot(net)
    (net / "snmp").write_text("Tcp: ActiveOpens\nTcp: many\n")
    with pytest.raises(CounterError, match="not an integer"):
        read_snapshot(net)
    assert issubclass(CounterError, OSError)


def test_deltas_of_key_counters_and_gauges(tmp_path: Path) -> None:
    """after − before by plain name; counters the kernel lacks are omitted, not zero."""
    before = read_snapshot(_fake_net(tmp_path, "a", overflows=3, drops=3, opens=10, tw=2))
    after = read_snapshot(_fake_net(tmp_path, "b", overflows=15, drops=16, opens=110, tw=302,
                                    used=20))  # fmt: skip
    got = deltas(before, after)
    assert got["ListenOverflows"] == 12 and got["ListenDrops"] == 13
    assert got["ActiveOpens"] == 100 and got["PassiveOpens"] == 0 and got["SyncookiesSent"] == 0
    assert got["TCP_tw"] == 300 and got["sockets_used"] == 9 and got["TCP_mem"] == 0
    assert "TCPReqQFullDrop" not in got and "TCPTimeWaitOverflow" not in got
    assert "RetransSegs" not in got and "UDP_inuse" not in got  # only the key names
    assert set(got) <= set(KEY_COUNTERS) | set(KEY_GAUGES)
    shrunk = deltas(after, before)  # a replaced namespace: counters reset, gauges still differ
    assert "ListenOverflows" not in shrunk and shrunk["TCP_tw"] == -300


def test_point_record_keeps_deltas_and_full_snapshots(tmp_path: Path) -> None:
    """Each side maps to its deltas; snapshots and file-nr are kept whole, as JSON."""
    file_nr = tmp_path / "file-nr"
    file_nr.write_text("100 0 1000\n")
    server = (read_snapshot(_fake_net(tmp_path, "s0"), file_nr),
              read_snapshot(_fake_net(tmp_path, "s1", overflows=4), file_nr))  # fmt: skip
    client = (Snapshot({"TcpActiveOpens": 1}, {}), Snapshot({"TcpActiveOpens": 6}, {}))
    record = json.loads(json.dumps(point_record({"server": server, "client": client})))
    assert record["server"]["ListenOverflows"] == 4
    assert record["client"] == {"ActiveOpens": 5}
    assert record["snapshots"]["server"]["after"]["counters"]["IpExtInOctets"] == 123456
    assert record["snapshots"]["server"]["before"]["gauges"]["TCP_tw"] == 2
    assert record["snapshots"]["client"]["before"]["file_nr"] is None
    assert record["file_nr"] == {"before": [100, 0, 1000], "after": [100, 0, 1000]}
    assert "file_nr" not in point_record({"host": client})


def test_explain_names_what_grew() -> None:
    """One line per grown drop counter or large TIME-WAIT growth, side first; none if quiet.

    ListenDrops counts overflows and SYN-queue drops as well: only the rest gets a line.
    """
    record = {
        "server": {"ListenOverflows": 1234, "ListenDrops": 1290, "TCPReqQFullDrop": 50,
                   "ActiveOpens": 10, "TCP_tw": 5},
        "client": {"TCPTimeWaitOverflow": 0, "TCP_tw": 3000, "RetransSegs": 99},
        "snapshots": {"server": {"before": {}, "after": {}}},
        "file_nr": {"before": [1, 0, 9], "after": [2, 0, 9]},
    }  # fmt: skip
    lines = explain(record)
    assert lines[0].startswith("server: 1,234 ListenOverflows — the accept queue")
    assert "somaxconn" in lines[0]
    assert lines[1].startswith("server: 50 TCPReqQFullDrop — the SYN queue was full")
    assert lines[2].startswith("server: 6 ListenDrops beyond ListenOverflows")
    assert lines[3].startswith("client: TCP_tw grew by 3,000 — ")
    assert len(lines) == 4
    assert explain({"host": {"ListenOverflows": 0, "TCP_tw": 10}}) == []


@linux_only
def test_loopback_listen_queue_overflow_is_counted() -> None:
    """SYNs to a listener whose accept queue is full raise ListenOverflows/ListenDrops."""
    before = read_snapshot()
    listener = socket.socket()
    clients: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: the queue fills after one or two connections
        address = listener.getsockname()
        got: dict[str, int] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(clients) < 100:  # more SYNs if the first ones were not enough
                clients += [_connect(address) for _ in range(20)]
            time.sleep(0.2)
            got = deltas(before, read_snapshot())
            if got.get("ListenOverflows", 0) > 0 or got.get("ListenDrops", 0) > 0:
                break
        assert got.get("ListenOverflows", 0) > 0 or got.get("ListenDrops", 0) > 0, got
    finally:
        for s in [*clients, listener]:
            s.close()


def _connect(address: tuple[str, int]) -> socket.socket:
    client = socket.socket()
    client.setblocking(False)
    code = client.connect_ex(address)
    assert code in (0, errno.EINPROGRESS, errno.EAGAIN), os.strerror(code)
    return client


# /proc/net/stat/nf_conntrack of a 2-CPU machine (6.x kernel), hex per CPU.
CONNTRACK = """\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000001c  00000000 00000000 00000000 0000000a 00000000 00000000 00000000 00000000 00000002 0000000f 00000001 00000000  00000000 00000000 00000000 00000003
0000001c  00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000010 00000000 00000000  00000000 00000000 00000000 00000000
"""  # noqa: E501


def test_conntrack_statistics_are_summed_over_cpus(tmp_path: Path) -> None:
    """stat/nf_conntrack: hex columns summed per CPU, entries as a gauge; drops as key counters."""
    net = _fake_net(tmp_path, "net")
    (net / "stat").mkdir()
    (net / "stat" / "nf_conntrack").write_text(CONNTRACK)
    before = read_snapshot(net)
    assert before.counter("ConntrackDrop") == 0x1F and before.counter("ConntrackEarlyDrop") == 1
    assert before.counter("ConntrackInsertFailed") == 3
    assert before.counters["ConntrackSearchRestart"] == 3
    assert before.counters["ConntrackInvalid"] == 10 and before.gauges["conntrack_entries"] == 28
    (net / "stat" / "nf_conntrack").write_text(CONNTRACK.replace("0000000f", "00000100"))
    got = deltas(before, read_snapshot(net))
    assert got["ConntrackDrop"] == 0x100 - 0x0F and got["ConntrackInsertFailed"] == 0
    assert explain({"server": got}) == [f"server: 241 ConntrackDrop — {MEANING['ConntrackDrop']}"]


def test_no_or_odd_conntrack_file_costs_nothing(tmp_path: Path) -> None:
    """Without nf_conntrack (or with an odd file) the TCP counters stand and conntrack is absent."""
    net = _fake_net(tmp_path, "net")
    snap = read_snapshot(net)
    assert snap.counter("ConntrackDrop") is None and "conntrack_entries" not in snap.gauges
    assert "ConntrackDrop" not in deltas(snap, snap) and snap.counter("ListenOverflows") == 0
    (net / "stat").mkdir()
    (net / "stat" / "nf_conntrack").write_text("entries drop\n00000001 zz\n")
    assert read_snapshot(net).counter("ConntrackDrop") is None
    with pytest.raises(CounterError, match="not hex"):
        parse_conntrack("entries drop\n00000001 zz\n")
    with pytest.raises(CounterError, match="entries"):
        parse_conntrack("")


@linux_only
def test_reads_the_stall_counters_this_kernel_has() -> None:
    """This machine's kernel has the SYN-retransmit, PAWS, challenge-ACK and TIME-WAIT counters;
    each key counter it has gives a delta, PAWSPassive (gone since 4.x) none when absent."""
    snap = read_snapshot()
    for name in ("TCPSynRetrans", "PAWSActive", "PAWSEstab", "PAWSTimewait", "TCPChallengeACK",
                 "TCPSYNChallenge", "TCPACKSkippedTimeWait",
                 "TWRecycled", "TWKilled", "TCPTimeWaitOverflow", "SyncookiesRecv",
                 "TCPMemoryPressures", "TCPACKSkippedSynRecv", "TCPACKSkippedPAWS"):  # fmt: skip
        assert isinstance(snap.counter(name), int), name
    got = deltas(snap, read_snapshot())
    assert {name for name in KEY_COUNTERS if snap.counter(name) is not None} == (
        set(got) & set(KEY_COUNTERS))
    assert ("PAWSPassive" in got) == (snap.counter("PAWSPassive") is not None)
    if (PROC_NET / "stat" / "nf_conntrack").exists():  # the module is loaded here
        assert isinstance(snap.counter("ConntrackDrop"), int)
        assert parse_conntrack((PROC_NET / "stat" / "nf_conntrack").read_text())[1] == {
            k: v for k, v in snap.counters.items() if k.startswith("Conntrack")}
