"""Latency in microseconds: recorded per process, merged across processes, summarised.

`Recorder` is what the message path touches: per request name, a count of each exact µs value
seen in the current window (one dict increment, about 20x cheaper than HdrHistogram's pure
Python record_value). At each window boundary `take()` turns those counts into HdrHistograms
(1 µs to 60 s, 3 significant figures); values past 60 s are clamped to it, not dropped.

`Merger` adds encoded histograms from any number of processes into run totals and per-window
histograms: histograms are added, percentiles are never averaged. Percentiles come from the
hdrhistogram package; nothing here computes one by hand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from hdrh.histogram import HdrHistogram

K = TypeVar("K")
V = TypeVar("V")

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
# Column name -> percentile; "min" and "max" are the 0th and 100th.
PERCENTILE_COLUMNS = {
    "min_us": 0.0,
    "p50_us": 50.0,
    "p90_us": 90.0,
    "p99_us": 99.0,
    "p999_us": 99.9,
    "p9999_us": 99.99,
    "max_us": 100.0,
}
SUMMARY_COLUMNS = ("count", *PERCENTILE_COLUMNS)
# A generator's window is merged in slices of this many distinct values, the hub free in
# between: in one go, a window of 10,000 msgs/s over a slow server held it 6-13 ms (measured),
# and every send due meanwhile left that late.
MERGE_SLICE = 256


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def summarise(histogram: HdrHistogram) -> dict[str, int]:
    """count and the µs percentiles of SUMMARY_COLUMNS (all zero for an empty histogram)."""
    count = histogram.get_total_count()
    if not count:
        return dict.fromkeys(SUMMARY_COLUMNS, 0)
    # One pass over the counts for all percentiles. Min and max are read from the counts too:
    # the package's own min after add() is wrong when the target histogram was empty.
    values = histogram.get_percentile_to_value_dict(list(PERCENTILE_COLUMNS.values()))
    row = {"count": count}
    row.update({column: int(values[p]) for column, p in PERCENTILE_COLUMNS.items()})
    return row


@dataclass
class RawWindow:
    """What a Recorder collected in one window, before any histogram is built."""

    counts: dict[str, dict[int, int]]  # request name -> {µs value: times seen}
    length_bytes: dict[str, int]  # request name -> bytes of the messages counted
    counters: dict[str, int]
    lags: dict[str, dict[int, int]]  # generator self-check series -> {µs value: times seen}


class Recorder:
    """Per-process latency and counter sink for the current window (no locks: gevent).

    Besides the request latencies (which go to Locust's tables too), it keeps the generator's
    own delays (`lag`: send lag, event-loop wake-up lag), which are not requests.
    """

    __slots__ = ("_window", "_bytes", "_counters", "_lags", "recording")

    def __init__(self) -> None:
        # False once the run is stopping: replies that users being torn down still read are
        # about the stop, not the run (the stop window's p99 was 100+ ms at 1,000 users).
        self.recording = True
        self._window: dict[str, defaultdict[int, int]] = {}
        self._bytes: defaultdict[str, int] = defaultdict(int)
        self._counters: defaultdict[str, int] = defaultdict(int)
        self._lags: dict[str, defaultdict[int, int]] = {}

    def record(self, name: str, value_us: int, length: int = 0) -> None:
        if not self.recording:
            return
        counts = self._window.get(name)
        if counts is None:
            counts = self._window[name] = defaultdict(int)
        counts[value_us] += 1
        if length:
            self._bytes[name] += length

    def lag(self, name: str, value_us: int) -> None:
        """A generator delay sample (µs): how late a send left, how late the loop woke."""
        if not self.recording:
            return
        counts = self._lags.get(name)
        if counts is None:
            counts = self._lags[name] = defaultdict(int)
        counts[value_us] += 1

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter (messages published, lost, sequence gaps...)."""
        self._counters[name] += n

    def take_raw(self) -> RawWindow:
        """The window as collected; the next window starts empty."""
        window, self._window = self._window, {}
        lengths, self._bytes = dict(self._bytes), defaultdict(int)
        counters, self._counters = dict(self._counters), defaultdict(int)
        lags, self._lags = self._lags, {}
        return RawWindow(window, lengths, counters, lags)  # type: ignore[arg-type]

    def take(self) -> tuple[dict[str, HdrHistogram], dict[str, int]]:
        """The window's histograms and counters; the next window starts empty."""
        raw = self.take_raw()
        return histograms_of(raw.counts), raw.counters


def histograms_of(counts_by_name: dict[str, dict[int, int]]) -> dict[str, HdrHistogram]:
    """One HdrHistogram per name from exact µs counts (values past 60 s clamped to it)."""
    histograms = {}
    for name, counts in counts_by_name.items():
        histogram = new_histogram()
        for value_us, n in counts.items():
            histogram.record_value(min(max(value_us, 0), HIGHEST_US), n)
        histograms[name] = histogram
    return histograms


def encode_all(histograms: dict[str, HdrHistogram]) -> dict[str, str]:
    return {name: h.encode().decode("ascii") for name, h in histograms.items()}


@dataclass
class WindowRow:
    """One request name's latency over one window, summed over every process."""

    start_s: float
    name: str
    summary: dict[str, int]


@dataclass
class WindowGauges:
    """Per-window process gauges: the busiest process's CPU, connections open in all, and the
    generator's delays over every process (p99 of the merged lag histograms, µs)."""

    start_s: float
    cpu_max_pct: float
    open_connections: int
    lag_p99_us: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)  # WINDOW_EVENTS counted in the window


Counts = dict[str, dict[int, int]]  # request name -> {µs value: times seen}
# Counters kept per window as well as in the totals (the history's columns of the same names).
# A failover drill reads the drops and the failed reconnects second by second from them.
DROPPED = "connections dropped"
CONNECT_FAILED = "connect failures"
PUBLISHED = "broadcast published"  # and what was published meanwhile
WINDOW_EVENTS = (DROPPED, CONNECT_FAILED, PUBLISHED)
# --skip-ramp: windows left out after the one in which the last connection opened, for the
# ramp's backlog to clear. Measured (aiohttp, 10,000 connections at 2,500 msgs/s): the first
# window after the ramp still carried the server's last 190 ms garbage collection of the ramp
# and the generator's catching up, send lag p99 4.1 ms against 0.4-1.2 ms in the windows after.
SETTLE_WINDOWS = 1
# --ws-compression deflate: upgrades that agreed to permessage-deflate, each agreement's
# parameters (a counter named by them), and upgrades the server answered without it.
DEFLATE_NEGOTIATED = "deflate negotiated"
DEFLATE_AGREED_PREFIX = "deflate agreed: "
DEFLATE_DECLINED = "deflate declined"


@dataclass
class _Window:
    counts: Counts = field(default_factory=dict)
    lags: Counts = field(default_factory=dict)
    cpu_pct: dict[str, float] = field(default_factory=dict)
    open_connections: dict[str, int] = field(default_factory=dict)
    events: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class Merger:
    """Run totals and per-window latencies merged from the windows of any number of processes.

    Processes ship exact µs counts (`add_counts`; encoded HdrHistograms through `add` work
    too): adding them is a few dict updates, cheap enough for the hub of a process that also
    generates load. Histograms are built from the merged counts only when asked for, at the
    end: percentiles of the sum, never averaged.
    """

    counts: Counts = field(default_factory=dict)
    lag_counts: Counts = field(default_factory=dict)
    counters: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    counts_by_source: dict[str, defaultdict[str, int]] = field(default_factory=dict)
    _open: dict[float, _Window] = field(default_factory=dict)
    _closed: dict[float, _Window] = field(default_factory=dict)
    _finished_before_s: float = float("-inf")
    # Set (mark_steady): the totals count the windows from this start on, not the ramp before.
    steady_from_s: float | None = None

    def add_counts(
        self,
        source: str,
        start_s: float,
        counts: Counts,
        counters: dict[str, int],
        cpu_pct: float,
        open_connections: int,
        lags: Counts | None = None,
        pause: Callable[[], None] | None = None,
    ) -> None:
        """Add one process's window: exact counts, lag counts, counters and gauges.

        `pause`, if given, is called between slices of MERGE_SLICE values (a generator's own
        window: the hub runs its sends and reads meanwhile, see Measurement._flush)."""
        by_source = self.counts_by_source.setdefault(source, defaultdict(int))
        window = None
        if start_s >= self._finished_before_s:
            window = self._open.setdefault(start_s, _Window())
            window.cpu_pct[source] = max(cpu_pct, window.cpu_pct.get(source, 0.0))
            window.open_connections[source] = open_connections
        for name, values in counts.items():
            by_source[name] += sum(values.values())
            _add_counts(self.counts, name, values, pause)
            if window is not None:
                _add_counts(window.counts, name, values, pause)
        for name, values in (lags or {}).items():
            _add_counts(self.lag_counts, name, values, pause)
            if window is not None:
                _add_counts(window.lags, name, values, pause)
        for name, n in counters.items():
            self.counters[name] += n
            if window is not None and name in WINDOW_EVENTS:
                window.events[name] += n

    def add(
        self,
        source: str,
        start_s: float,
        encoded: dict[str, str],
        counters: dict[str, int],
        cpu_pct: float,
        open_connections: int,
        lags: dict[str, str] | None = None,
    ) -> None:
        """Add one process's window given as encoded HdrHistograms."""
        self.add_counts(
            source, start_s, _decode_counts(encoded), counters, cpu_pct, open_connections,
            _decode_counts(lags or {}),
        )  # fmt: skip

    def finish_windows(self, before_s: float | None = None) -> None:
        """Close the windows that started before `before_s` (None: all of them).

        A window is closed once no process will send more for it; data that still comes
        later counts in the totals only.
        """
        self._finished_before_s = float("inf") if before_s is None else before_s
        for start_s in sorted(s for s in self._open if s < self._finished_before_s):
            self._closed[start_s] = self._open.pop(start_s)

    def window_cpu_peaks(self) -> list[float]:
        """The busiest process's CPU % in each window so far (open or closed)."""
        windows = [*self._closed.values(), *self._open.values()]
        return [max(w.cpu_pct.values()) for w in windows if w.cpu_pct]

    def mark_steady(self, after_s: float, connections: int | None, window_s: float) -> None:
        """Once a closed window starting at or after `after_s` had `connections` open (None:
        any), count the totals from SETTLE_WINDOWS after the window after it."""
        if self.steady_from_s is not None:
            return
        for start_s, window in sorted(self._closed.items()):
            if start_s < after_s:
                continue
            if connections is None or sum(window.open_connections.values()) >= connections:
                self.steady_from_s = start_s + (1 + SETTLE_WINDOWS) * window_s
                return

    def _steady(self, lags: bool) -> Counts:
        merged: Counts = {}
        for start_s, window in (*self._closed.items(), *self._open.items()):
            if start_s >= (self.steady_from_s or 0.0):
                for name, values in (window.lags if lags else window.counts).items():
                    _add_counts(merged, name, values)
        return merged

    @property
    def totals(self) -> dict[str, HdrHistogram]:
        counts = self.counts if self.steady_from_s is None else self._steady(lags=False)
        return histograms_of(dict(sorted(counts.items())))

    @property
    def lag_totals(self) -> dict[str, HdrHistogram]:
        return histograms_of(self.lag_counts if self.steady_from_s is None else
                             self._steady(lags=True))  # fmt: skip

    def total_rows(self) -> dict[str, dict[str, int]]:
        return {name: summarise(h) for name, h in self.totals.items()}

    def windows(self) -> list[tuple[float, dict[str, HdrHistogram], WindowGauges]]:
        """Every closed window in time order: its histograms by name, and its gauges."""
        found = []
        for start_s, window in sorted(self._closed.items()):
            histograms = histograms_of(dict(sorted(window.counts.items())))
            lag_p99 = {
                name: int(h.get_value_at_percentile(99.0))
                for name, h in histograms_of(window.lags).items()
            }
            gauges = WindowGauges(
                start_s,
                max(window.cpu_pct.values(), default=0.0),
                sum(window.open_connections.values()),
                lag_p99,
                dict(window.events),
            )
            found.append((start_s, histograms, gauges))
        return found

    @property
    def window_rows(self) -> list[WindowRow]:
        return [
            WindowRow(start_s, name, summarise(h))
            for start_s, histograms, _ in self.windows()
            for name, h in histograms.items()
        ]

    @property
    def window_gauges(self) -> list[WindowGauges]:
        return [gauges for _, _, gauges in self.windows()]


def _add_counts(
    into: Counts, name: str, values: dict[int, int], pause: Callable[[], None] | None = None
) -> None:
    target = into.get(name)
    if target is None:
        into[name] = dict(values)
        return
    get = target.get
    for value, n in in_slices(values, pause):
        target[value] = get(value, 0) + n


def in_slices(mapping: Mapping[K, V], pause: Callable[[], None] | None) -> Iterator[tuple[K, V]]:
    """`mapping`'s items, with `pause()` after every MERGE_SLICE of them (none: all at once)."""
    if pause is None or len(mapping) <= MERGE_SLICE:
        yield from mapping.items()
        return
    for i, item in enumerate(mapping.items(), 1):
        yield item
        if i % MERGE_SLICE == 0:
            pause()


def _decode_counts(encoded: dict[str, str]) -> Counts:
    counts: Counts = {}
    for name, blob in encoded.items():
        histogram = HdrHistogram.decode(blob)
        values: dict[int, int] = {}
        for item in histogram.get_recorded_iterator():
            values[int(item.value_iterated_to)] = item.count_added_in_this_iter_step
        counts[name] = values
    return counts
