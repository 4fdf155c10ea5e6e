"""broadcast counts delivery exactly: real Locust runs against the raw target and lossy relays.

Every figure is checked against the server's own count of what it relayed: the raw target's
/stats, or the test relay's record of each member's frames (sent, dropped).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from targets.protocol import BROADCAST_HEADER

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "broadcast.py"
USERS = 6  # 1 publisher, 5 subscribers
RATE = ("--publish-rate", "50")
RAMP = ("-r", "3")  # subscribers join over 2 s while the publisher publishes


def counters_of(run) -> dict[str, int]:
    return run.histograms["counters"]


def test_raw_target_every_message_counted_from_each_join(start_target, run_locust):
    """Members joining during the ramp expect exactly what the server relayed to them."""
    with start_target("raw") as url:
        run = run_locust("broadcast", url, *RATE, *RAMP, "--drain-s", "1", users=USERS,
                         duration="4s")  # fmt: skip
        with urllib.request.urlopen(f"http{url[2:]}/stats", timeout=5) as response:
            stats = json.load(response)
    assert run.returncode == 0, run.describe()
    c = counters_of(run)
    assert c["broadcast expected"] == c["broadcast received"] > 0, c
    for name in ("lost", "in flight", "duplicated", "out of order", "without end marker"):
        assert c[f"broadcast {name}"] == 0, (name, c)
    published = c["broadcast published"]
    assert stats["messages_in"] == published + 1  # the data, then one end marker
    # The server relayed each frame to the members it had then: all data the members were
    # sent after they joined, plus the marker to each of the USERS members.
    assert c["broadcast expected"] == stats["messages_out"] - USERS, (c, stats)
    assert c["broadcast expected"] < published * USERS  # the ramp: later members expect less
    assert c["broadcast sends due"] == c["broadcast sends made"] == published
    # Over ws:// every copy is timed at its arrival, and how late the generator read it is
    # measured beside it (one read lag per read).
    assert run.histograms["measurement"]["timed_at"] == "arrival"
    assert run.histograms["measurement"]["timed_from"] == "sent"
    generator = run.histograms["generator"]
    assert generator["timed_at"] == "arrival"
    assert 0 < generator["read_lag_us"]["count"] <= c["broadcast received"] + published + USERS


@dataclass
class _Member:
    connection: object
    due: int = 0  # frames relayed to it since it joined
    delivered: int = 0  # data frames sent
    dropped: int = 0  # data frames dropped
    dropped_then_delivered: int = 0  # dropped ones a later delivered data frame followed
    _pending_drops: int = 0


@dataclass
class LossyRelay:
    """An in-order /broadcast relay (one room) that drops every k-th data frame per member.

    Frames of the header's size only (the end markers) are never dropped, or, with
    `relay_markers` False, always dropped (the relay is then a drain that never ends).
    """

    drop_every: int
    relay_markers: bool = True
    members: list[_Member] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, connection) -> None:
        me = _Member(connection)
        with self.lock:
            self.members.append(me)
        with contextlib.suppress(ConnectionClosed):
            for message in connection:
                with self.lock:
                    for member in self.members:
                        self._relay(member, message)

    def _relay(self, member: _Member, message: bytes) -> None:
        member.due += 1
        if len(message) <= BROADCAST_HEADER.size:  # an end marker
            if self.relay_markers:
                self._send(member, message)
            return
        if member.due % self.drop_every == 0:  # never a member's first frame (k >= 2)
            member.dropped += 1
            member._pending_drops += 1
            return
        member.delivered += 1
        member.dropped_then_delivered += member._pending_drops
        member._pending_drops = 0
        self._send(member, message)

    @staticmethod
    def _send(member: _Member, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            member.connection.send(message)

    def total(self, name: str) -> int:
        return sum(getattr(m, name) for m in self.members)


def test_dropped_frames_are_counted_lost_exactly(ws_server, run_locust):
    """A relay dropping every 7th data frame per member: lost is exactly what it dropped."""
    relay = LossyRelay(drop_every=7)
    with ws_server(relay.handle) as url:
        run = run_locust("broadcast", url, *RATE, *RAMP, users=USERS, duration="4s")
    c = counters_of(run)
    assert len(relay.members) == USERS, run.describe()
    assert relay.total("dropped") > 0
    assert c["broadcast lost"] == relay.total("dropped"), (c, run.describe())
    assert c["broadcast received"] == relay.total("delivered")
    assert c["broadcast expected"] == relay.total("delivered") + relay.total("dropped")
    assert c["broadcast in flight"] == c["broadcast without end marker"] == 0, c
    assert c["broadcast duplicated"] == c["broadcast out of order"] == 0, c
    assert run.returncode == 1  # the gaps are Locust failures too
    broadcast = run.locust_stats["broadcast"]
    assert broadcast["num_failures"] > 0, run.describe()
    assert "sequence gap" in json.dumps(run.failures)


def test_end_markers_that_never_come_leave_the_missing_in_flight(ws_server, run_locust):
    """No marker relayed: nothing is called lost; what is known missing is in flight."""
    relay = LossyRelay(drop_every=5, relay_markers=False)
    with ws_server(relay.handle) as url:
        run = run_locust("broadcast", url, *RATE, *RAMP, users=USERS, duration="4s")
    c = counters_of(run)
    assert len(relay.members) == USERS, run.describe()
    assert c["broadcast without end marker"] == USERS  # one publisher stream per member
    assert c["broadcast lost"] == 0, c
    # Known missing: those dropped before a later message came; the dropped tail is unknown.
    assert c["broadcast in flight"] == relay.total("dropped_then_delivered") > 0, c
    assert c["broadcast received"] == relay.total("delivered")
    assert c["broadcast expected"] == c["broadcast received"] + c["broadcast in flight"]


def test_without_run_time_there_is_no_drain_and_the_counts_say_so(start_target, tmp_path):
    """No -t (stopped by SIGTERM, as the web UI's stop would): no end marker, no loss claimed."""
    prefix = tmp_path / "broadcast"
    with start_target("raw") as url:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(SCENARIO), "--host", url, "--headless",
             "-u", str(USERS), "-r", str(USERS), "--csv", str(prefix), "--only-summary",
             "--loglevel", "WARNING", *RATE],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            time.sleep(3.0)
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert "no run time (-t), so no drain" in output, output[-4000:]
    c = json.loads(Path(f"{prefix}_latency_us_histograms.json").read_text())["counters"]
    assert c["broadcast without end marker"] == USERS, c
    assert c["broadcast lost"] == 0, c
    assert c["broadcast received"] > 0
    assert c["broadcast expected"] == c["broadcast received"] + c["broadcast in flight"], c
