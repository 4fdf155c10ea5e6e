"""The open model corrects for coordinated omission, and keeps its schedule precisely."""

from __future__ import annotations

import contextlib
import statistics
import sys
import time

import gevent
import pytest
from websockets.exceptions import ConnectionClosed

from scenarios.engine import engine

STALL_S = 0.25
STALL_EVERY = 150  # messages; at 200 msg/s about one stall per connection per second


def _echo_with_stalls(connection) -> None:
    with contextlib.suppress(ConnectionClosed):  # Locust leaves mid-stall at the end
        for count, message in enumerate(connection, start=1):
            if count % STALL_EVERY == 0:
                time.sleep(STALL_S)  # the server stops answering this connection for a while
            connection.send(message)


def test_stalling_server_shows_in_corrected_p99_not_uncorrected(ws_server, run_locust):
    """A server that stalls 250 ms: sends wait, corrected p99 shows it, uncorrected hides it."""
    with ws_server(_echo_with_stalls) as url:
        run = run_locust("echo_rate", url, "--rate", "200", "--max-in-flight", "1", users=2)
    assert run.returncode == 0, run.describe()
    corrected, uncorrected = run.latency["echo corrected"], run.latency["echo uncorrected"]
    assert corrected["count"] == uncorrected["count"] > 500
    assert corrected["max_us"] >= 0.8 * STALL_S * 1e6  # the stall itself is seen
    assert corrected["p99_us"] >= 0.5 * STALL_S * 1e6  # and the sends it held up
    assert uncorrected["p99_us"] < corrected["p99_us"] / 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux only")
def test_schedule_timer_is_never_early_and_far_finer_than_gevent_sleep():
    """The engine's timer never fires early and typically wakes well under gevent's 1 ms tick."""
    timer = engine().timer

    def lateness_us() -> list[float]:
        late = []
        for i in range(60):
            at_ns = time.monotonic_ns() + 2_000_000 + (i * 37_000) % 1_000_000
            timer.sleep_until(at_ns)
            late.append((time.monotonic_ns() - at_ns) / 1000)
        return late

    late = gevent.spawn(lateness_us).get(timeout=30)
    assert min(late) >= 0
    assert engine() is engine()  # one engine (and timerfd) per process and hub
    assert statistics.median(late) < 400, sorted(late)  # gevent.sleep: about 500-600 µs


def test_skip_ramp_leaves_the_ramp_out_of_the_totals(echo_url, run_locust):
    """--skip-ramp: the totals start once every connection was open and a window settled, and the
    file says from when; without it they hold every window."""
    run = run_locust("echo_rate", echo_url, "--rate", "50", "--skip-ramp", users=20,
                     duration="4s")  # fmt: skip
    assert run.returncode == 0, run.describe()
    document = run.histograms
    steady = document["steady_from_unix_s"]
    starts = [w["start_unix_s"] for w in document["windows"]]
    assert steady is not None and min(starts) < steady <= max(starts)
    windowed = sum(
        row_count(w, "echo corrected") for w in document["windows"] if w["start_unix_s"] >= steady
    )
    assert run.latency["echo corrected"]["count"] == windowed
    everything = sum(row_count(w, "echo corrected") for w in document["windows"])
    assert windowed < everything


def row_count(window: dict, name: str) -> int:
    from hdrh.histogram import HdrHistogram

    encoded = window["histograms"].get(name)
    return HdrHistogram.decode(encoded).get_total_count() if encoded else 0
