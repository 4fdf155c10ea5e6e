"""The yardstick of `make bench-generator`: the picows reference client keeps its schedule and
records latency from the intended send time. (picows is the `bench` extra: skipped without it.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("picows")

from benchmarks import pinned  # noqa: E402
from benchmarks.reference import Schedule  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_schedule_sends_each_connection_once_per_interval_in_time_order():
    """One period visits every connection once, in phase order; the next repeats it."""
    clients = [SimpleNamespace(n=n) for n in range(7)]
    schedule = Schedule(clients, interval_ns=1_000_000, start_ns=5_000_000)  # type: ignore[arg-type]
    times, seen = [], []
    for _ in range(3 * len(clients)):
        times.append(schedule.next_ns())
        seen.append(schedule.order[schedule.k % len(clients)].n)
        schedule.k += 1
    assert times == sorted(times)
    assert all(5_000_000 <= t < 8_000_000 for t in times)
    assert seen[:7] == seen[7:14] == seen[14:] and sorted(seen[:7]) == list(range(7))
    assert all(times[k + 7] - times[k] == 1_000_000 for k in range(14))


def test_reference_rate_run_records_every_echo_from_its_intended_time(tmp_path):
    """5 connections x 50 msgs/s for 1 s at the picows sink: 250 sends due, made and answered."""
    with pinned.server("picows", pinned.target_command("picows"), 0, tmp_path / "sink.log") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.reference", "rate", "--url", sink.url,
             "--connections", "5", "--rate", "50", "--warmup-s", "0.3", "--duration-s", "1",
             "--server-pid", str(sink.process.pid)],
            capture_output=True, text=True, timeout=30, cwd=REPO, check=True,
        )  # fmt: skip
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["sends_due"] == result["sends_made"] == 250
    corrected, uncorrected = result["corrected"], result["uncorrected"]
    assert corrected["count"] == uncorrected["count"] == 250
    assert 0 < corrected["p50_us"] <= corrected["p99_us"] < 1_000_000
    # From the intended time, never less than from the actual send.
    assert corrected["p50_us"] >= uncorrected["p50_us"]
    assert result["errors"] == 0 and result["unanswered"] == 0
