"""Latency histograms: per-process windows merge into exactly what one process would record."""

from __future__ import annotations

import random

from scenarios.cpu import judge
from scenarios.latency import (
    HIGHEST_US,
    MERGE_SLICE,
    SETTLE_WINDOWS,
    Merger,
    Recorder,
    encode_all,
    summarise,
)


def _ship(recorder: Recorder, merger: Merger, source: str, start_s: float) -> None:
    histograms, counters = recorder.take()
    merger.add(source, start_s, encode_all(histograms), counters, 10.0, 1)


def test_windows_from_two_processes_merge_like_one_process():
    """Merging encoded windows gives the same count and percentiles as recording in one place."""
    rng = random.Random(7)
    values = [int(rng.lognormvariate(5, 1.2)) + 1 for _ in range(20_000)]
    alone, workers, merger = Recorder(), [Recorder(), Recorder()], Merger()
    for i, value in enumerate(values):
        alone.record("echo", value)
        workers[i % 2].record("echo", value)
        if i % 5000 == 4999:  # four windows, each shipped by both workers
            for n, worker in enumerate(workers):
                _ship(worker, merger, f"worker-{n}", float(i // 5000))
    merger.finish_windows()
    expected = summarise(alone.take()[0]["echo"])
    assert merger.total_rows()["echo"] == expected
    assert expected["min_us"] == min(values)  # min from the counts, not hdrh's add() bookkeeping
    assert sum(row.summary["count"] for row in merger.window_rows) == len(values)
    assert {k: dict(v) for k, v in merger.counts_by_source.items()} == {
        "worker-0": {"echo": 10_000},
        "worker-1": {"echo": 10_000},
    }


def test_values_past_the_range_are_clamped_not_dropped():
    """A 2-minute 'latency' counts as 60 s rather than vanishing from the histogram."""
    recorder = Recorder()
    recorder.record("slow", 120_000_000)
    recorder.record("slow", 5)
    summary = summarise(recorder.take()[0]["slow"])
    assert summary["count"] == 2
    assert summary["max_us"] >= HIGHEST_US * 0.999


def test_counters_add_up_across_processes():
    """Counters (published, lost...) are summed over processes and windows."""
    merger = Merger()
    for source in ("a", "b"):
        recorder = Recorder()
        recorder.count("push received", 10)
        recorder.count("push lost", 1)
        _ship(recorder, merger, source, 0.0)
    assert dict(merger.counters) == {"push received": 20, "push lost": 2}


def test_a_process_at_ninety_percent_flags_the_run():
    """A generator process averaging >= 90 % of a core marks the run saturated."""
    assert judge({"w1": 95.0, "w2": 40.0}, [99.0, 91.0]).saturated
    calm = judge({"w1": 60.0}, [95.0, 50.0, 40.0])
    assert not calm.saturated and calm.saturated_windows == 1
    assert "SATURATED" in judge({"w1": 90.0}, [90.0]).describe()


def test_skip_ramp_counts_the_totals_from_a_settled_window_after_every_connection_was_open():
    """Windows of the ramp, and SETTLE_WINDOWS after it for its backlog to clear, stay in the
    history but not in the totals, nor in the lag totals; for scenarios whose connections come
    and go, the ramp ends with the spawning."""
    assert SETTLE_WINDOWS == 1
    merger = Merger()
    ramp = {"echo": {5_000: 10}}
    steady = {"echo": {100: 50}}
    for start_s, counts, open_now in ((10.0, ramp, 400), (11.0, ramp, 1000), (12.0, ramp, 1000),
                                      (13.0, steady, 1000), (14.0, steady, 1000)):  # fmt: skip
        merger.add_counts("w1", start_s, counts, {}, 10.0, open_now,
                          lags={"wake lag": {9_000 if counts is ramp else 200: 5}})  # fmt: skip
    merger.finish_windows()
    assert merger.totals["echo"].get_total_count() == 130  # before: everything
    merger.mark_steady(after_s=10.0, connections=1000, window_s=1.0)
    assert merger.steady_from_s == 13.0
    assert merger.totals["echo"].get_total_count() == 100
    assert merger.totals["echo"].get_max_value() < 1_000
    assert merger.lag_totals["wake lag"].get_max_value() < 1_000
    assert len(merger.windows()) == 5  # the history keeps the ramp
    churn = Merger()
    churn.add_counts("w1", 20.0, ramp, {}, 10.0, 3)
    churn.finish_windows()
    churn.mark_steady(after_s=20.0, connections=None, window_s=1.0)
    assert churn.steady_from_s == 22.0
    never = Merger()
    never.add_counts("w1", 30.0, steady, {}, 10.0, 999)
    never.finish_windows()
    never.mark_steady(after_s=30.0, connections=1000, window_s=1.0)
    assert never.steady_from_s is None and never.totals["echo"].get_total_count() == 50


def test_a_window_merged_in_slices_with_pauses_merges_the_same():
    """A generator merges its window a slice at a time, letting the hub run between slices:
    the totals and windows come out as one merge in one go would make them."""
    rng = random.Random(11)
    values = [int(rng.lognormvariate(6, 1.0)) + 1 for _ in range(30_000)]
    merged: dict[str, Merger] = {"at once": Merger(), "in slices": Merger()}
    pauses: list[int] = []
    for start_s in (0.0, 1.0):  # the second window adds to totals that hold values already
        recorder = Recorder()
        for value in values:
            recorder.record("echo", value + int(start_s))
            recorder.lag("send lag", value // 10)
        raw = recorder.take_raw()
        distinct = len(raw.counts["echo"])
        assert distinct > 4 * MERGE_SLICE  # more than one slice, or the test shows nothing
        for how, merger in merged.items():
            pause = (lambda: pauses.append(1)) if how == "in slices" else None
            merger.add_counts("local", start_s, raw.counts, raw.counters, 10.0, 1,
                              lags=raw.lags, pause=pause)  # fmt: skip
    # A pause between slices wherever values are added to what is there (the totals, from
    # the second window on; a new window is a copy).
    assert len(pauses) >= distinct // MERGE_SLICE
    at_once, in_slices = merged["at once"], merged["in slices"]
    at_once.finish_windows()
    in_slices.finish_windows()
    assert in_slices.total_rows() == at_once.total_rows()
    assert in_slices.total_rows()["echo"]["count"] == 2 * len(values)
    assert in_slices.lag_counts == at_once.lag_counts
    assert [r.summary for r in in_slices.window_rows] == [r.summary for r in at_once.window_rows]
