"""A target's stops for garbage collection: timed by targets/pauses.py, read back by the harness
(harness/pauses.py) and named in the findings when they made a point's latency tail."""

from __future__ import annotations

import gc
import io
import json
import os
import time
from pathlib import Path

import pytest

from common.schema import HISTOGRAMS_JSON, TARGET_LOG
from harness import pauses
from targets import pauses as target_pauses
from targets.protocol import GcPause


@pytest.fixture
def reported() -> io.StringIO:
    """What targets.pauses says, from a callback installed for the test only."""
    out = io.StringIO()
    before = list(gc.callbacks)
    target_pauses.install(out)
    yield out
    gc.callbacks[:] = before


def test_a_long_full_collection_is_one_line_the_harness_reads(reported) -> None:
    # A full collection over a million tracked objects takes tens of milliseconds: a pause
    # as a server holding many connections makes.
    held = [[] for _ in range(1_000_000)]
    began_s = time.time()
    gc.collect()
    del held
    pauses_seen = [GcPause.parse(line) for line in reported.getvalue().splitlines()]
    assert pauses_seen and None not in pauses_seen, reported.getvalue()
    full = [p for p in pauses_seen if p.generation == 2]
    assert full, pauses_seen
    pause = full[-1]
    assert pause.wall_ms >= target_pauses.REPORT_MS
    assert 0 < pause.cpu_ms <= pause.wall_ms * 1.05
    assert began_s - 1 <= pause.at_unix_s <= time.time()
    assert pause.pid == os.getpid()
    assert GcPause.parse(pause.line()) == pause


def test_short_collections_say_nothing(reported) -> None:
    gc.collect(0)
    assert reported.getvalue() == ""


def test_other_lines_are_not_pauses() -> None:
    assert GcPause.parse("ready ws://127.0.0.1:8765") is None
    assert GcPause.parse("targets: gc paused soon") is None


def _point_dir(tmp_path: Path, lines: list[str], steady_from: float | None) -> Path:
    (tmp_path / TARGET_LOG).write_text("\n".join(["ready ws://127.0.0.1:1", *lines]) + "\n")
    windows = [{"start_unix_s": 100.0 + i, "histograms": {"echo": "..."} if i < 10 else {}}
               for i in range(12)]  # the last two: while Locust stopped  # fmt: skip
    (tmp_path / HISTOGRAMS_JSON).write_text(json.dumps(
        {"window_s": 1.0, "steady_from_unix_s": steady_from, "windows": windows}))  # fmt: skip
    return tmp_path


def test_the_harness_counts_the_pauses_within_the_measured_windows(tmp_path) -> None:
    lines = [GcPause(30.0, 29.0, 2, 101.5, 7).line(),  # in the ramp: not in the figures
             GcPause(305.6, 300.1, 2, 104.2, 7).line(),
             GcPause(12.0, 11.0, 1, 106.0, 8).line(),
             GcPause(40.0, 39.0, 2, 110.5, 7).line()]  # after the last window  # fmt: skip
    pdir = _point_dir(tmp_path, lines, steady_from=103.0)
    document = json.loads((pdir / HISTOGRAMS_JSON).read_text())
    period = pauses.measured_period(document)
    found = pauses.summarise(pauses.read(pdir), period, p99_us=240_000)
    assert found is not None
    assert (found["count"], found["total_ms"], found["processes"]) == (2, 317.6, 2)
    assert (found["longest_ms"], found["longest_generation"], found["longest_at_s"]) == (
        305.6, 2, 1.2)
    assert found["made_p99"]  # a 240 ms p99 is that 306 ms pause
    assert found["sentence"].startswith(
        "Python's garbage collector stopped the target 2 times in the measured windows (318 ms "
        "in all), the longest for 306 ms (generation 2, 300 ms of it the collector's CPU, 1.2 s")
    # A 900 µs p99 is not: the pause held up fewer than 1 % of the messages.
    assert not pauses.summarise(pauses.read(pdir), period, p99_us=900)["made_p99"]
    # A pause that began before the steady windows and ran into them is in their latency.
    (pdir / TARGET_LOG).write_text(GcPause(434.0, 433.9, 2, 102.87, 7).line() + "\n")
    spilled = pauses.summarise(pauses.read(pdir), period, p99_us=394_000)
    assert (spilled["count"], spilled["longest_at_s"], spilled["made_p99"]) == (1, -0.13, True)
    assert "434 ms of it the collector's CPU, from 0.13 s before they began)" in \
        spilled["sentence"]
    (pdir / TARGET_LOG).write_text(GcPause(120.0, 119.0, 2, 102.87, 7).line() + "\n")
    assert pauses.summarise(pauses.read(pdir), period, p99_us=900) is None  # ended before
    # Without a steady start, from the first window.
    whole = pauses.measured_period({"window_s": 1.0, "windows": [
        {"start_unix_s": 100.0, "histograms": {"echo": "..."}}]})
    assert whole == (100.0, 101.0)
    assert pauses.summarise(pauses.read(pdir), whole, p99_us=900) is None
