"""The open model corrects for coordinated omission, and keeps its schedule precisely."""

from __future__ import annotations

import contextlib
import re
import statistics
import sys
import time

import gevent
import pytest
from websockets.exceptions import ConnectionClosed

from scenarios.engine import Engine, engine

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


def _schedule_then_stop(work_s: float, hold_s: float) -> int:
    """A 1 ms schedule whose sends take `work_s` each, run 50 ms; then the hub held `hold_s`
    (as Locust's stop holds it) before the engine stops sending: the sends owed at the stop
    as a schedule counts them (schedule.FixedRate.end_schedule)."""
    eng, interval_ns = Engine(), 1_000_000
    booked = {"next_ns": time.monotonic_ns()}

    def send(due_ns: int, now_ns: int) -> None:
        time.sleep(work_s)
        booked["next_ns"] = due_ns + interval_ns
        eng.timer.at(booked["next_ns"], send)

    def run() -> int:
        eng.timer.at(booked["next_ns"], send)
        gevent.sleep(0.05)
        time.sleep(hold_s)  # no switch: the hub is held
        eng.stop_sending()
        owed = max(0, (eng.schedule_now_ns() - booked["next_ns"]) // interval_ns + 1)
        return owed

    return gevent.spawn(run).get(timeout=10)


def test_sends_due_while_the_stop_holds_the_hub_are_not_counted_missed():
    """A generator on time whose hub the stop holds 100 ms owes at most one send at the stop;
    one running behind its schedule still owes its backlog."""
    assert _schedule_then_stop(work_s=0.0, hold_s=0.1) <= 1
    behind = _schedule_then_stop(work_s=0.002, hold_s=0.1)  # each 1 ms send takes 2 ms
    assert behind >= 15  # about half of 50 ms of sends, made as late as that


def test_a_run_lasts_the_run_time_asked(echo_url, run_locust):
    """A 2 s run makes 2 s of its schedule's sends (Locust's --run-time timer, armed from a
    hub clock last read when gevent was imported, ended runs 0.3-0.5 s early)."""
    run = run_locust("echo_rate", echo_url, "--rate", "50", users=4, duration="2s")
    assert run.returncode == 0, run.output
    made = int(re.search(r"echo sends made: (\d+)", run.output).group(1))
    assert 0.93 * 4 * 50 * 2 <= made <= 4 * 50 * 2 + 4, run.output


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
