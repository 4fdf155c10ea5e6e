"""Failover drills: a fault done on time during a point, and what it did, read from the files.

`Injector` waits for each fault's time (seconds after Locust started) and calls the action the
topology gave it (harness/topology.py knows the processes). It stays alive until the point
ends: a target it restarts dies with the thread that started it (PR_SET_PDEATHSIG follows the
thread), so that thread must outlive the point.

`drill` then reads the point's latency history (1 s windows: open connections, connects, drops,
failed connects, publishes, per-name latency) and Locust's failures into one record per fault:
connections dropped, reconnects per second at the peak, how long until every user was
connected again, failed reconnects and why, the latency spike, and for broadcast what was
published during the outage and how much of it the subscribers lost.
"""

from __future__ import annotations

import csv
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.schema import FAILURES_CSV, HISTORY_CSV
from harness.plan import Fault

UPGRADE = "ws upgrade"
# The history's per-window columns (scenarios.latency.WINDOW_EVENTS, spaces as underscores).
DROPPED, CONNECT_FAILED = "connections_dropped", "connect_failures"
PUBLISHED = "broadcast_published"
# What subscribers missed: lost (known at an end marker, or with a dropped connection), in flight
# at the stop, and never arrived (after a stream's last message, its marker lost with the broker).
# Also what members whose connection dropped missed until they were back.
LOST = ("broadcast lost", "broadcast in flight", "broadcast never arrived (no end marker)",
        "broadcast missed while reconnecting")
# Windows after the one the fault fell in over which a latency spike still counts as its own.
SPIKE_WINDOWS_AFTER_RECOVERY = 2


@dataclass
class Done:
    """One fault as it was done."""

    action: str
    at_s: float
    at_unix_s: float
    done_unix_s: float
    detail: str
    pids: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Action = Callable[[Fault], tuple[str, list[int]]]  # -> (what was done, in words; pids)


class Injector:
    """Does `faults` at their times after `started` (monotonic s); `done` and `errors` after."""

    def __init__(self, faults: Sequence[Fault], started: float, act: Action) -> None:
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self.started = started
        self.act = act
        self.done: list[Done] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wsbench-faults", daemon=True)

    def start(self) -> Injector:
        self._thread.start()
        return self

    def _run(self) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, self.started + fault.at_s - time.monotonic())):
                return
            at_unix_s = time.time()
            try:
                detail, pids = self.act(fault)
            except Exception as exc:  # noqa: BLE001 - said on the point, the run goes on
                self.errors.append(f"fault {fault} could not be done: {exc}")
                continue
            self.done.append(Done(fault.action, fault.at_s, round(at_unix_s, 3),
                                  round(time.time(), 3), detail, pids))  # fmt: skip
        self._stop.wait()  # see the module's docstring: what it started must outlive the point

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Window:
    start_s: float
    length_s: float
    open_connections: int = 0
    events: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    p99_us: dict[str, int] = field(default_factory=dict)


def read_windows(point_dir: Path) -> list[Window]:
    """The latency history's windows in time order (none if there is no history)."""
    windows: dict[float, Window] = {}
    try:
        with (point_dir / HISTORY_CSV).open(newline="") as f:
            for row in csv.DictReader(f):
                start = float(row["window_start_unix_s"])
                window = windows.get(start)
                if window is None:
                    window = windows[start] = Window(start, float(row["window_s"] or 1.0),
                                                     int(row["open_connections"] or 0))  # fmt: skip
                    for name in (DROPPED, CONNECT_FAILED, PUBLISHED):
                        window.events[name] = int(row.get(name) or 0)
                if row["name"]:
                    window.counts[row["name"]] = int(row["count"] or 0)
                    window.p99_us[row["name"]] = int(float(row["p99_us"] or 0))
    except (OSError, KeyError, ValueError):
        return []
    return [windows[s] for s in sorted(windows)]


def failure_reasons(point_dir: Path, top: int = 4) -> dict[str, int]:
    """Locust's failures as 'name: error' -> occurrences, the most frequent first."""
    found: dict[str, int] = {}
    try:
        with (point_dir / FAILURES_CSV).open(newline="") as f:
            for row in csv.DictReader(f):
                key = f"{row['Name']}: {row['Error']}"
                found[key] = found.get(key, 0) + int(row["Occurrences"] or 0)
    except (OSError, KeyError, ValueError):
        return {}
    return dict(sorted(found.items(), key=lambda kv: -kv[1])[:top])


def drill(
    done: Done, windows: Sequence[Window], users: int, latency_name: str,
    counters: Mapping[str, int], reasons: Mapping[str, int], broker_lost_seen: bool | None,
) -> dict[str, Any]:  # fmt: skip
    """What one fault did, from the windows of the point's history (see the module docstring).

    `recovered_after_s` is the end of the first window, from the fault's on, that closed with
    every user connected (a window's open count is taken as it closes): an upper bound, to a
    window; None when they were not all back by the end. Drops and failed connects are counted
    from the fault's window on (a drill's steady state before it has neither)."""
    at = done.at_unix_s
    before = [w for w in windows if w.start_s + w.length_s <= at]
    after = [w for w in windows if w.start_s + w.length_s > at]
    latency_name = _latency_name(latency_name, before, after)
    dropped = sum(w.events.get(DROPPED, 0) for w in after)
    recovered_after_s = _recovered_after(after, at, users, dropped)
    spike = after
    if recovered_after_s is not None:
        until = at + recovered_after_s + SPIKE_WINDOWS_AFTER_RECOVERY * (after[0].length_s
                                                                          if after else 1.0)
        spike = [w for w in after if w.start_s < until]
    p99_before = [w.p99_us[latency_name] for w in before if latency_name in w.p99_us]
    p99_after = [w.p99_us[latency_name] for w in spike if latency_name in w.p99_us]
    # The outage: until every user was back; a killed broker stays dead to the end.
    outage = [w for w in after if recovered_after_s is None or done.action == "kill-broker"
              or w.start_s < at + recovered_after_s]  # fmt: skip
    broadcast = latency_name == "broadcast"  # the broadcast scenario's main latency
    return {
        **done.as_json(),
        "users": users,
        "connections_before": before[-1].open_connections if before else None,
        "dropped": dropped,
        "failed_reconnects": sum(w.events.get(CONNECT_FAILED, 0) for w in after),
        "failed_reasons": dict(reasons),
        "reconnect_peak_per_s": max((w.counts.get(UPGRADE, 0) / w.length_s for w in after),
                                    default=0.0),  # fmt: skip
        "recovered_after_s": recovered_after_s,
        # The last window is the partial one of the stop, with the users already gone.
        "open_at_end": windows[-2 if len(windows) > 1 else -1].open_connections if windows
        else None,
        "latency_name": latency_name or None,
        "p99_before_us": int(statistics.median(p99_before)) if p99_before else None,
        "p99_peak_us": max(p99_after) if p99_after else None,
        "published_during": sum(w.events.get(PUBLISHED, 0) for w in outage) if broadcast else None,
        "lost": sum(counters.get(name, 0) for name in LOST) if broadcast else None,
        "broker_lost_seen": broker_lost_seen,
    }


CONNECT_PHASES = ("tcp connect", "tls handshake", UPGRADE)


def _latency_name(main: str, before: Sequence[Window], after: Sequence[Window]) -> str:
    """The latency whose spike tells: the main one, unless that is a connect phase (whose
    samples before the fault are the ramp's) and the users also measure something else
    across the fault (hold's pings)."""
    if main not in CONNECT_PHASES:
        return main
    seen_before = {n for w in before for n in w.p99_us}
    seen_after = {n for w in after for n in w.p99_us}
    others = sorted((seen_before & seen_after) - set(CONNECT_PHASES))
    return others[0] if others else main


def _recovered_after(after: Sequence[Window], at: float, users: int, dropped: int) -> float | None:
    if not dropped:
        return 0.0
    for window in after:
        if window.open_connections >= users:
            return round(window.start_s + window.length_s - at, 3)
    return None


def verdict(record: Mapping[str, Any], fault: Fault) -> str | None:
    """Why a drill point is failed (None: it measured what it set out to)."""
    if fault.action == "kill-broker":
        if not record.get("broker_lost_seen"):
            return f"fault {fault}: the targets never said they lost the broker"
        return None
    if record.get("recovered_after_s") is None:
        users, back = record.get("users") or 0, record.get("open_at_end") or 0
        return (f"fault {fault}: {users - back:,} of {users:,} users were not connected again "
                "by the end of the run")  # fmt: skip
    if not record.get("dropped"):
        return f"fault {fault}: no connection was dropped, so it measured no failover"
    return None


def sentence(record: Mapping[str, Any]) -> str:
    """The drill in one line, for the point's warnings and the console."""
    parts = [f"{record['action']} at {record['at_s']:g} s ({record['detail']}): "
             f"{record['dropped']:,} connections dropped"]  # fmt: skip
    if record.get("dropped"):
        parts.append(f"reconnects peaked at {record['reconnect_peak_per_s']:,.0f}/s")
        back = record.get("recovered_after_s")
        parts.append("not all back by the end" if back is None
                     else f"all {record['users']:,} back within {back:g} s")  # fmt: skip
    if record.get("failed_reconnects"):
        parts.append(f"{record['failed_reconnects']:,} reconnects failed")
    if record.get("p99_peak_us") is not None and record.get("p99_before_us") is not None:
        parts.append(f"{record['latency_name']} p99 {record['p99_before_us']:,} µs before, "
                     f"{record['p99_peak_us']:,} µs at the peak")  # fmt: skip
    if record.get("lost") is not None:
        parts.append(f"{record['published_during']:,} published during the outage, "
                     f"{record['lost']:,} lost by subscribers")  # fmt: skip
    if record.get("broker_lost_seen") is not None:
        parts.append("the targets noticed the broker was gone" if record["broker_lost_seen"]
                     else "the targets never noticed the broker was gone")  # fmt: skip
    return "; ".join(parts)
