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
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

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


class Recorder:
    """Per-process latency and counter sink for the current window (no locks: gevent)."""

    __slots__ = ("_window", "_counters")

    def __init__(self) -> None:
        self._window: dict[str, defaultdict[int, int]] = {}
        self._counters: defaultdict[str, int] = defaultdict(int)

    def record(self, name: str, value_us: int) -> None:
        counts = self._window.get(name)
        if counts is None:
            counts = self._window[name] = defaultdict(int)
        counts[value_us] += 1

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter (messages published, lost, sequence gaps...)."""
        self._counters[name] += n

    def take(self) -> tuple[dict[str, HdrHistogram], dict[str, int]]:
        """The window's histograms and counters; the next window starts empty."""
        window, self._window = self._window, {}
        counters, self._counters = dict(self._counters), defaultdict(int)
        histograms = {}
        for name, counts in window.items():
            histogram = new_histogram()
            for value_us, n in counts.items():
                histogram.record_value(min(max(value_us, 0), HIGHEST_US), n)
            histograms[name] = histogram
        return histograms, counters


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
    """Per-window process gauges: the busiest process's CPU, connections open in all."""

    start_s: float
    cpu_max_pct: float
    open_connections: int


@dataclass
class _Window:
    histograms: dict[str, HdrHistogram] = field(default_factory=dict)
    cpu_pct: dict[str, float] = field(default_factory=dict)
    open_connections: dict[str, int] = field(default_factory=dict)


@dataclass
class Merger:
    """Run totals and per-window histograms merged from encoded per-process windows."""

    totals: dict[str, HdrHistogram] = field(default_factory=dict)
    counters: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    counts_by_source: dict[str, defaultdict[str, int]] = field(default_factory=dict)
    window_rows: list[WindowRow] = field(default_factory=list)
    window_gauges: list[WindowGauges] = field(default_factory=list)
    window_encoded: dict[float, dict[str, str]] = field(default_factory=dict)
    _open: dict[float, _Window] = field(default_factory=dict)
    _finished_before_s: float = float("-inf")

    def add(
        self,
        source: str,
        start_s: float,
        encoded: dict[str, str],
        counters: dict[str, int],
        cpu_pct: float,
        open_connections: int,
    ) -> None:
        """Add one process's window (its histograms, counters and gauges)."""
        by_source = self.counts_by_source.setdefault(source, defaultdict(int))
        window = None
        if start_s >= self._finished_before_s:
            window = self._open.setdefault(start_s, _Window())
            window.cpu_pct[source] = max(cpu_pct, window.cpu_pct.get(source, 0.0))
            window.open_connections[source] = open_connections
        for name, blob in encoded.items():
            histogram = HdrHistogram.decode(blob)
            by_source[name] += histogram.get_total_count()
            _add_into(self.totals, name, histogram)
            if window is not None:
                _add_into(window.histograms, name, histogram)
        for name, n in counters.items():
            self.counters[name] += n

    def finish_windows(self, before_s: float | None = None) -> None:
        """Summarise and drop the windows that started before `before_s` (None: all of them).

        A window is finished once no process will send more for it; data that still comes
        later counts in the totals only.
        """
        self._finished_before_s = float("inf") if before_s is None else before_s
        for start_s in sorted(s for s in self._open if s < self._finished_before_s):
            window = self._open.pop(start_s)
            for name in sorted(window.histograms):
                summary = summarise(window.histograms[name])
                self.window_rows.append(WindowRow(start_s, name, summary))
            cpu_max = max(window.cpu_pct.values(), default=0.0)
            connections = sum(window.open_connections.values())
            self.window_gauges.append(WindowGauges(start_s, cpu_max, connections))
            self.window_encoded[start_s] = encode_all(window.histograms)

    def total_rows(self) -> dict[str, dict[str, int]]:
        return {name: summarise(h) for name, h in sorted(self.totals.items())}


def _add_into(histograms: dict[str, HdrHistogram], name: str, histogram: HdrHistogram) -> None:
    target = histograms.get(name)
    if target is None:
        target = histograms[name] = new_histogram()
    target.add(histogram)
