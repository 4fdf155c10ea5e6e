"""Connect tails at SYN retransmit timeouts, counted from histograms and explained by counters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from test_namespaces import namespaces

from kernel import netns, profile
from kernel.counters import MEANING, explain, point_record, read_snapshot
from kernel.netns import SERVER_ADDRESS, missing_privileges
from kernel.stalls import CAUSES, Stall, stalls, syn_linear_timeouts, syn_schedule

US = 1_000_000

# A storm point's deltas as a namespace run stores them (kernel_counters.json sides).
STORM = {
    "server": {"ListenOverflows": 298, "ListenDrops": 298, "TCPReqQFullDrop": 0,
               "TCPSynRetrans": 5, "PAWSActive": 0, "TCPChallengeACK": 0, "ConntrackDrop": 0},
    "client": {"ListenOverflows": 0, "ListenDrops": 0, "TCPSynRetrans": 340, "PAWSActive": 0,
               "TCPChallengeACK": 0, "TWRecycled": 12},
    "snapshots": {"server": {"before": {}, "after": {}}},
}  # fmt: skip
# A host point stored before the stall counters were read: no TCPSynRetrans, no PAWS.
OLD_HOST = {"host": {"ListenOverflows": 0, "ListenDrops": 0, "TCPReqQFullDrop": 0,
                     "RetransSegs": 9335, "TCP_tw": 8557}}  # fmt: skip


def classic(histograms: dict[str, str], record: dict | None) -> list[Stall]:
    """stalls() for a kernel whose SYN timeouts double from the start (1, 3, 7, 15, 31 s)."""
    return stalls(histograms, record, linear_timeouts=0)


def encoded(samples_us: dict[int, int]) -> str:
    """An encoded µs histogram as the scenarios store it, `count` samples at each value."""
    histogram = HdrHistogram(1, 60 * US, 3)
    for value, count in samples_us.items():
        histogram.record_value(value, count)
    return histogram.encode().decode()


# 9,688 fast connects, 200 at the first SYN retry (1 s), 100 at the second (3 s), 12 at 1.8 s.
MODES = encoded({350: 9_000, 2_000: 688, 1_004_000: 150, 1_090_000: 50, 3_010_000: 100,
                 1_800_000: 12})  # fmt: skip


def test_modes_at_retransmit_timeouts_are_counted_with_their_cause() -> None:
    """1 s and 3 s modes: their counts and shares, the SYN retransmits and the full queue."""
    found = classic({"tcp connect": MODES}, STORM)
    at = {s.at_s: s for s in found}
    assert sorted(at) == [1.0, 1.8, 3.0]
    one, three = at[1.0], at[3.0]
    assert (one.connects, three.connects) == (200, 100)
    assert one.share == pytest.approx(200 / 10_000) and three.share == pytest.approx(0.01)
    assert one.name == "tcp connect" and one.upto_s == pytest.approx(1.09, abs=0.002)
    assert one.cause.startswith("a SYN retransmit (client TCPSynRetrans +340); ")  # the sender's
    assert "server ListenOverflows +298: the accept queue was full" in one.cause
    assert three.cause.startswith("2 SYN retransmits (")
    assert one.counters == {"client.TCPSynRetrans": 340, "server.ListenOverflows": 298}
    # ListenDrops is the overflows again: no second cause from it, nor from quiet counters
    assert "ListenDrops" not in one.cause and "PAWS" not in one.cause
    assert one.sentence() == (
        "200 TCP connects (2.0 %) took 1.00-1.09 s: a SYN retransmit (client TCPSynRetrans +340); "
        "server ListenOverflows +298: the accept queue was full")


def test_a_tail_between_timeouts_is_not_called_a_retransmit() -> None:
    """12 connects at 1.8 s: counted, said to lie between the timeouts, counters still named."""
    (mid,) = [s for s in classic({"tcp connect": MODES}, STORM) if s.at_s == 1.8]
    assert mid.connects == 12 and mid.share == pytest.approx(0.0012)
    assert mid.cause.startswith("between SYN retransmit times (1, 3, 7, 15, 31 s, each + 0.3 s)")
    assert mid.cause.endswith("so not one lost packet alone; moved in this point: server "
                              "ListenOverflows +298: the accept queue was full")  # fmt: skip
    assert "TCPSynRetrans" not in mid.counters
    assert "(0.12 %) took 1.80 s" in mid.sentence()


def test_every_tail_over_one_second_is_in_some_stall() -> None:
    """The stalls' connects add up to every sample at or over 1 s, whatever its value."""
    samples = {900_000: 5, 1_000_000: 1, 1_299_000: 2, 1_301_000: 3, 2_990_000: 4,
               7_100_000: 6, 15_000_000: 7, 40_000_000: 8, 59_000_000: 9}  # fmt: skip
    found = classic({"tcp connect": encoded(samples), "ws upgrade": encoded(samples)}, STORM)
    for name in ("tcp connect", "ws upgrade"):
        mine = [s for s in found if s.name == name]
        assert sum(s.connects for s in mine) == sum(samples.values()) - 5
        assert all(s.cause for s in mine)
    at = [(s.at_s, s.connects) for s in found if s.name == "tcp connect"]
    assert at[0] == (1.0, 3) and at[2] == (7.0, 6) and at[3] == (15.0, 7)  # in [T, T + 0.3 s)
    assert at[1][0] == pytest.approx(1.301, abs=0.002) and at[1][1] == 7  # 1.301 s to 2.99 s
    assert at[4][0] == pytest.approx(40, abs=0.1) and at[4][1] == 17 and len(at) == 5
    upgrade = [s for s in found if s.name == "ws upgrade" and s.at_s == 1.0][0]
    assert upgrade.cause.startswith("a SYN-ACK retransmit (server TCPSynRetrans +5); ")
    assert upgrade.sentence().startswith("3 WebSocket upgrades (")


def test_linear_syn_timeouts_put_the_retransmits_one_second_apart(tmp_path: Path) -> None:
    """Linux 6.5+ (tcp_syn_linear_timeouts 4): SYNs go again at 1, 2, 3, 4, 5, 7, 11 s, so a
    2 s mode is the second SYN retransmit, 3 s the third; SYN-ACKs still double (1, 3, 7 s)."""
    assert syn_schedule(0) == (1, 3, 7, 15, 31)
    assert syn_schedule(4) == (1, 2, 3, 4, 5, 7, 11, 19, 35)
    assert syn_schedule(2) == (1, 2, 3, 5, 9, 17, 33)  # the kernel's example: 1, 1, 1, 2, 4 s
    modes = encoded({350: 9_000, 1_010_000: 600, 2_060_000: 300, 3_020_000: 100})
    found = stalls({"tcp connect": modes, "ws upgrade": modes}, STORM, linear_timeouts=4)
    connects = [(s.at_s, s.connects, s.cause.split(" (")[0]) for s in found
                if s.name == "tcp connect"]  # fmt: skip
    assert connects == [(1.0, 600, "a SYN retransmit"), (2.0, 300, "2 SYN retransmits"),
                        (3.0, 100, "3 SYN retransmits")]  # fmt: skip
    upgrades = [(s.at_s, s.cause.split(" (")[0]) for s in found if s.name == "ws upgrade"]
    assert upgrades == [(1.0, "a SYN-ACK retransmit"), (pytest.approx(2.06, abs=0.01),
                        "between SYN-ACK retransmit times"), (3.0, "2 SYN-ACK retransmits")]
    sysctl = tmp_path / "tcp_syn_linear_timeouts"
    assert syn_linear_timeouts(sysctl) == 0  # a kernel before 6.5 has no such file
    sysctl.write_text("2\n")
    assert syn_linear_timeouts(sysctl) == 2
    if Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts").exists():
        assert syn_linear_timeouts() == int(
            Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts").read_text())


def test_no_tail_no_stall() -> None:
    """Connects all under 1 s (or no connect histogram at all, or an empty one): no stall."""
    fast = encoded({300: 1000, 999_000: 3})
    assert classic({"tcp connect": fast, "ws upgrade": fast}, STORM) == []
    assert classic({"echo": MODES}, STORM) == []
    assert classic({"tcp connect": encoded({})}, STORM) == []
    assert classic({"tcp connect": "not a histogram"}, STORM) == []


def test_nothing_moved_is_said_plainly_with_what_was_checked() -> None:
    """Retransmits counted but no drop counter: the sentence says so and lists the checks."""
    quiet = {side: {k: 0 for k in (*CAUSES, "TCPSynRetrans")} for side in ("server", "client")}
    quiet["client"]["TCPSynRetrans"] = 210
    (one, _, three) = classic({"tcp connect": MODES}, quiet)
    assert one.cause == (
        "a SYN retransmit (client TCPSynRetrans +210); no drop counter moved on the server or the "
        f"client (checked {', '.join(CAUSES)}): the SYN or its answer was lost elsewhere")
    assert one.counters == {"client.TCPSynRetrans": 210}
    quiet["client"]["TCPSynRetrans"] = 0
    one = classic({"tcp connect": MODES}, quiet)[0]
    assert "yet the client counted no TCPSynRetrans: not a retransmit" in one.cause
    assert one.cause.endswith("the time went elsewhere (a busy generator or server)")


def test_old_record_and_no_record_still_give_a_sentence() -> None:
    """A record without the new counters, or none at all: each stall still ends in a cause."""
    old = classic({"tcp connect": MODES}, OLD_HOST)
    assert [s.at_s for s in old] == [1.0, 1.8, 3.0]
    assert old[0].cause == (
        "the time of a SYN retransmit (TCPSynRetrans was not recorded); no drop counter moved on "
        "the host (checked ListenOverflows, TCPReqQFullDrop, ListenDrops): the SYN or its "
        "answer was lost elsewhere")
    none = classic({"tcp connect": MODES}, None)
    assert [s.connects for s in none] == [200, 12, 100]
    assert all(s.cause.endswith("kernel counters were not recorded for this point, so no cause "
                                "can be named") for s in none)  # fmt: skip


def test_reused_port_pairs_are_named_with_the_challenge_acks() -> None:
    """A challenge ACK cause brings the TIME-WAIT reuse that set it up; conntrack drops too."""
    record = {
        "server": {"TCPSYNChallenge": 40, "TCPChallengeACK": 40, "ConntrackInsertFailed": 3},
        "client": {"TCPSynRetrans": 43, "TWRecycled": 900, "PAWSActive": 2},
    }
    one = classic({"tcp connect": MODES}, record)[0]
    assert "server ConntrackInsertFailed +3: conntrack could not enter new connections" in one.cause
    assert "client PAWSActive +2: SYN-ACKs answering an earlier connection" in one.cause
    assert "server TCPSYNChallenge +40: SYNs met a connection still held" in one.cause
    assert one.cause.endswith("client TWRecycled +900: connects reused port pairs still in "
                              "TIME-WAIT")  # fmt: skip
    assert one.counters["client.TWRecycled"] == 900
    # without a reuse cause, TWRecycled alone explains nothing and is not said
    assert "TWRecycled" not in classic({"tcp connect": MODES}, STORM)[0].cause


def test_stalls_are_json_as_stored_in_point_json() -> None:
    """as_json has the record's keys and survives a JSON round trip unchanged."""
    stall = classic({"tcp connect": MODES}, STORM)[0]
    stored = json.loads(json.dumps(stall.as_json()))
    assert {"at_s", "connects", "share", "counters", "cause"} <= set(stored)
    assert Stall(**stored) == stall


def test_explain_names_the_new_counters() -> None:
    """TCPSynRetrans, PAWS, challenge ACKs and conntrack drops get a line when they grow."""
    lines = explain({"client": {"TCPSynRetrans": 340, "PAWSActive": 2, "ConntrackDrop": 7,
                                "TWRecycled": 900, "TCPChallengeACK": 0}})  # fmt: skip
    assert lines == [f"client: 340 TCPSynRetrans — {MEANING['TCPSynRetrans']}",
                     f"client: 2 PAWSActive — {MEANING['PAWSActive']}",
                     f"client: 7 ConntrackDrop — {MEANING['ConntrackDrop']}"]  # fmt: skip
    assert "1 s" in MEANING["TCPSynRetrans"]


# What the client runs in its namespace: N connects at once, each timed to writable.
CONNECTOR = """
import json, selectors, socket, sys, time
from hdrh.histogram import HdrHistogram
host, port, n, wait_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
histogram, selector, failed = HdrHistogram(1, 60_000_000, 3), selectors.DefaultSelector(), 0
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    started = time.perf_counter_ns()
    s.connect_ex((host, port))
    selector.register(s, selectors.EVENT_WRITE, started)
deadline = time.monotonic() + wait_s
while selector.get_map() and time.monotonic() < deadline:
    for key, _ in selector.select(0.05):
        if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            failed += 1
        else:
            histogram.record_value(max(1, (time.perf_counter_ns() - key.data) // 1000))
        selector.unregister(key.fileobj)
print(json.dumps({"tcp connect": histogram.encode().decode(), "failed": failed,
                  "pending": len(selector.get_map())}), flush=True)
"""
# The server: a listen queue of 1 that nobody accepts from for HOLD_S, then a wide one drained.
LISTENER = """
import socket, sys, time
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
time.sleep(float(sys.argv[2]))
s.listen(1024)
held = []
while True:
    held.append(s.accept()[0])
"""
HOLD_S = 0.4
CONNECTS = 40


@pytest.mark.skipif(bool(missing_privileges()), reason=f"needs root: {missing_privileges()}")
def test_syns_dropped_in_a_namespace_show_as_a_one_second_stall() -> None:
    """A full accept queue in a real server namespace: the dropped SYNs come back after 1 s,
    the client counts TCPSynRetrans, the server ListenOverflows, and the stall names both."""
    bed = netns.Testbed(profile.load("default"), say=lambda _: None).open()
    made = {ns.inode for ns in bed.namespaces().values()}
    listener = None
    try:
        sides = {side: ns.net_dir for side, ns in bed.namespaces().items()}
        before = {side: read_snapshot(net) for side, net in sides.items()}
        listener = subprocess.Popen(
            [*bed.server.enter(), sys.executable, "-c", LISTENER, SERVER_ADDRESS, str(HOLD_S)],
            stdout=subprocess.PIPE, text=True)  # fmt: skip
        port = listener.stdout.readline().strip()
        done = subprocess.run(
            [*bed.clients[0].enter(), sys.executable, "-c", CONNECTOR, SERVER_ADDRESS, port,
             str(CONNECTS), "5"], capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        record = point_record({side: (before[side], read_snapshot(net))
                               for side, net in sides.items()})  # fmt: skip
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(5)
        bed.close()
    result = json.loads(done.stdout)
    assert result["failed"] == result["pending"] == 0, result
    assert record["server"]["ListenOverflows"] > 0, record["server"]
    assert record["client"]["TCPSynRetrans"] > 0, record["client"]
    found = stalls({"tcp connect": result["tcp connect"]}, record)
    assert found, "no connect took over 1 s"
    first = found[0]
    assert first.at_s == 1.0 and first.name == "tcp connect"
    assert first.connects >= CONNECTS // 2 and 0.5 <= first.share < 1  # the first two got in
    assert first.cause.startswith("a SYN retransmit (")
    assert f"client TCPSynRetrans +{record['client']['TCPSynRetrans']}" in first.cause
    assert "server ListenOverflows +" in first.cause and "the accept queue was full" in first.cause
    if Path("/proc/self/net/stat/nf_conntrack").exists():  # read per namespace, and quiet
        assert record["server"]["ConntrackDrop"] == 0
    deadline = time.monotonic() + 10
    while made & namespaces() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not made & namespaces(), "the test's namespaces were left behind"


def test_a_point_summary_stores_its_stalls_and_says_them(tmp_path: Path) -> None:
    """The harness's summary.kernel: stalls as dicts, their sentences after the counters' lines
    in explain, and so in the point's warnings; a point without the histograms has none."""
    from common.schema import HISTOGRAMS_JSON, PointStatus
    from harness import execute, plan, topology

    point = plan.make_point("raw", "connect", 10, duration_s=1)
    (tmp_path / HISTOGRAMS_JSON).write_text(json.dumps({"totals": {"tcp connect": MODES}}))
    run = topology.PointRun(point, tmp_path, lambda _: None)
    run.counter_record = STORM
    outcome = execute.Outcome(point, PointStatus.OK)
    execute.conclude(outcome, run, [])
    kernel = json.loads(json.dumps(outcome.summary["kernel"]))  # as point.json keeps it
    assert [s["at_s"] for s in kernel["stalls"]] == [1.0, 1.8, 3.0]
    assert kernel["stalls"][0]["connects"] == 200 and kernel["stalls"][0]["share"] == 0.02
    assert kernel["explain"][0].startswith("server: 298 ListenOverflows — ")
    sentences = [Stall(**s).sentence() for s in kernel["stalls"]]
    assert kernel["explain"][-3:] == sentences and sentences[0].startswith("200 TCP connects")
    assert set(sentences) <= set(outcome.warnings)

    (tmp_path / HISTOGRAMS_JSON).unlink()
    outcome = execute.Outcome(point, PointStatus.OK)
    execute.conclude(outcome, run, [])
    assert outcome.summary["kernel"]["stalls"] == []
