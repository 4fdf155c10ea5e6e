"""harness.sampling: the 1 Hz samples of a point's processes and namespaces."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import schema
from harness.sampling import Sample, Sampler, descendants, summarise


def test_a_process_gone_before_it_is_watched_leaves_no_empty_role(tmp_path: Path) -> None:
    done = subprocess.Popen(["true"])
    done.wait()
    sampler = Sampler(tmp_path / schema.RESOURCES_CSV)
    sampler.watch("target", done.pid)
    assert "target" not in sampler.trees
    assert sampler.rss_bytes("target") is None


def test_a_watched_tree_and_a_namespace_are_sampled_to_their_csv_files(tmp_path: Path) -> None:
    """A live child's samples reach resources.csv under its role; the namespace's TCP counts
    (this process's own, here) reach sockstat.csv beside it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = Sampler(tmp_path / schema.RESOURCES_CSV, interval_s=0.2)
        sampler.watch("target", child.pid)
        sampler.watch_sockstat("server", Path(f"/proc/{os.getpid()}/net"))
        sampler.start()
        time.sleep(0.7)
        samples = sampler.stop()
    finally:
        child.kill()
        child.wait()
    assert samples and {s.role for s in samples} == {"target"}
    with (tmp_path / schema.RESOURCES_CSV).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["role"] == "target" and int(r["rss_bytes"]) > 1_000_000 for r in rows)
    with (tmp_path / schema.SOCKSTAT_CSV).open(newline="") as f:
        socks = list(csv.DictReader(f))
    assert socks and socks[0]["side"] == "server" and int(socks[0]["TCP_inuse"]) >= 0


def _samples(cpu_by_second: list[float], start_s: float = 1000.0) -> list[Sample]:
    return [Sample(start_s + i + 1, i + 1.0, "target", 1, cpu, 1 << 20, 10, 5)
            for i, cpu in enumerate(cpu_by_second)]  # fmt: skip


def test_the_cpu_mean_is_over_the_measured_windows_when_they_hold_samples() -> None:
    # A point's seconds: a busy ramp, four measured seconds at 40 %, an idle stop.
    samples = _samples([95.0, 90.0, 40.0, 40.0, 40.0, 40.0, 2.0, 1.0])
    measured = summarise(samples, "target", (1002.0, 1006.0))
    assert measured["cpu_pct_mean"] == 40.0
    assert measured["cpu_pct_mean_over"] == schema.CPU_MEAN_MEASURED
    assert measured["cpu_pct_max"] == 95.0  # peaks stay the whole run's
    whole = summarise(samples, "target")
    assert whole["cpu_pct_mean"] == round(sum(s.cpu_pct for s in samples) / len(samples), 1)
    assert whole["cpu_pct_mean_over"] == schema.CPU_MEAN_WHOLE_RUN
    # A period no sample falls in (shorter than the sampling interval) keeps the whole run's.
    assert summarise(samples, "target", (1003.1, 1003.2)) == whole


def test_descendants_are_the_whole_tree_and_nothing_else(tmp_path: Path) -> None:
    """A child and its grandchild, from the /proc children lists (what psutil's children()
    finds by reading every process on the machine)."""
    code = ("import subprocess, sys, time; "
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "print(g.pid, flush=True); time.sleep(30)")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())  # type: ignore[union-attr]
        assert sorted(descendants(child.pid)) == [grandchild]
        assert child.pid in descendants(os.getpid())
        assert sorted(p.pid for p in psutil.Process(child.pid).children(recursive=True)) == [
            grandchild]
    finally:
        for proc in psutil.Process(child.pid).children(recursive=True):
            proc.kill()
        child.kill()
        child.wait()
