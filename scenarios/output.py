"""A run's merged latency written out: CSV for people and tables, encoded histograms for reports.

With Locust's `--csv PREFIX`:

    PREFIX_latency_us.csv             one row per request name over the whole run
    PREFIX_latency_us_history.csv     one row per request name per window, with the window's
                                      generator CPU and open connections (name "" and count 0
                                      for a window without latency samples, e.g. idle holds)
    PREFIX_latency_us_histograms.json the encoded HdrHistograms (run totals and every window),
                                      per-process counts, counters, what the scenario measured
                                      ("measurement": main request names, URL, requests left
                                      unanswered at the end) and the generator self-check
                                      ("generator": verdict, send/wake lag, CPU), so any
                                      percentile can be re-derived later
    PREFIX_final.json                 Locust's own per-name totals at the very end of the run,
    PREFIX_final_failures.json        and its failures by error: its CSVs are rewritten once a
                                      second and miss the end, and its --json-file is
                                      overwritten by forked workers

Every latency column is in microseconds and says so.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram
from locust.env import Environment
from locust.stats import RequestStats

from scenarios import delivery
from scenarios.cpu import SATURATED_PCT, Saturation, judge
from scenarios.latency import (
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    SUMMARY_COLUMNS,
    WINDOW_EVENTS,
    Merger,
    WindowGauges,
    WindowRow,
    encode_all,
    histograms_of,
    summarise,
)
from scenarios.selfcheck import (
    READ_LAG,
    SEND_LAG,
    TIMED_AT_ARRIVAL,
    TIMED_AT_READ,
    TIMED_FROM_INTENDED,
    TIMED_FROM_SENT,
    WAKE_LAG,
    SelfCheck,
    headline,
    sends,
)

TOTALS_SUFFIX = "_latency_us.csv"
HISTORY_SUFFIX = "_latency_us_history.csv"
HISTOGRAMS_SUFFIX = "_latency_us_histograms.json"
FINAL_SUFFIX = "_final.json"
FINAL_FAILURES_SUFFIX = "_final_failures.json"
GENERATOR_COLUMNS = (
    "generator_cpu_pct",
    "generator_saturated",
    "generator_send_lag_p99_us",
    "generator_wake_lag_p99_us",
    "generator_bound",
)
TOTALS_COLUMNS = ("name", *SUMMARY_COLUMNS, *GENERATOR_COLUMNS)
HISTORY_COLUMNS = (
    "window_start_unix_s",
    "window_s",
    "name",
    *SUMMARY_COLUMNS,
    "generator_cpu_pct",
    "generator_saturated",
    "generator_send_lag_p99_us",
    "generator_wake_lag_p99_us",
    "open_connections",
    *(name.replace(" ", "_") for name in WINDOW_EVENTS),
)
UNANSWERED_PREFIX = "unanswered at end: "

console = logging.getLogger("locust.stats_logger")  # Locust's plain console, as its own tables


@dataclass
class RunResult:
    """Everything written at the end of a run, computed once."""

    totals: dict[str, dict[str, int]]
    window_rows: list[WindowRow]
    window_gauges: list[WindowGauges]
    encoded_totals: dict[str, str]
    encoded_windows: dict[float, dict[str, str]]
    counts_by_process: dict[str, dict[str, int]]
    counters: dict[str, int]
    run_cpu_pct: dict[str, float]
    saturation: Saturation
    window_s: float
    measurement: dict[str, object]
    selfcheck: SelfCheck
    encoded_lags: dict[str, str]
    steady_from_s: float | None = None  # --skip-ramp: the totals count from this window on

    @classmethod
    def of(
        cls,
        merger: Merger,
        run_cpu_pct: Mapping[str, float],
        window_s: float,
        measurement: Mapping[str, object] | None = None,
    ) -> RunResult:
        measurement = dict(measurement or {})
        histograms = merger.totals  # built once: summarised and encoded below
        totals = {name: summarise(h) for name, h in histograms.items()}
        windows = merger.windows()
        saturation = judge(run_cpu_pct, (g.cpu_max_pct for _, _, g in windows))
        lag_totals = merger.lag_totals
        check = _selfcheck(merger, measurement, totals, saturation, lag_totals)
        return cls(
            totals=totals,
            window_rows=[
                WindowRow(start_s, name, summarise(h))
                for start_s, histograms, _ in windows
                for name, h in histograms.items()
            ],
            window_gauges=[gauges for _, _, gauges in windows],
            encoded_totals=encode_all(histograms),
            encoded_windows={start_s: encode_all(h) for start_s, h, _ in windows},
            counts_by_process={k: dict(v) for k, v in merger.counts_by_source.items()},
            counters=dict(sorted(delivery.folded(merger.counters).items())),
            run_cpu_pct=dict(run_cpu_pct),
            saturation=saturation,
            window_s=window_s,
            measurement=measurement,
            selfcheck=check,
            encoded_lags=encode_all(lag_totals),
            steady_from_s=merger.steady_from_s,
        )


def live_selfcheck(merger: Merger, measurement: Mapping[str, object]) -> SelfCheck:
    """The self-check of a run still going, from what has been merged so far (web UI).

    Cheaper than RunResult: totals only, and CPU from the windows (the run means arrive only
    at the end)."""
    main = list(measurement.get("main") or ())  # type: ignore[call-overload]
    main_counts = {name: c for name, c in merger.counts.items() if name in main}
    totals = {name: summarise(h) for name, h in histograms_of(main_counts).items()}
    peaks = merger.window_cpu_peaks()
    busiest = sum(peaks) / len(peaks) if peaks else 0.0
    return _selfcheck(merger, measurement, totals, judge({"run": busiest}, peaks),
                      merger.lag_totals)  # fmt: skip


def _selfcheck(
    merger: Merger,
    measurement: Mapping[str, object],
    totals: Mapping[str, Mapping[str, int]],
    saturation: Saturation,
    lag_totals: Mapping[str, HdrHistogram],
) -> SelfCheck:
    name, p99_us = headline(list(measurement.get("main") or ()), totals)  # type: ignore[call-overload]
    lags = {n: summarise(h) for n, h in lag_totals.items()}
    due, made = sends(merger.counters)
    return SelfCheck(
        wake_lag=lags.get(WAKE_LAG, {}),
        send_lag=lags.get(SEND_LAG, {}),
        read_lag=lags.get(READ_LAG, {}),
        at_arrival=measurement.get("timed_at") == TIMED_AT_ARRIVAL,
        from_intended=measurement.get("timed_from", TIMED_FROM_INTENDED) == TIMED_FROM_INTENDED,
        latency_name=name,
        latency_p99_us=p99_us,
        sends_due=due,
        sends_made=made,
        saturation=saturation,
    )


def describe_measurement(
    environment: Environment, counters: Mapping[str, int]
) -> dict[str, object]:
    """What the run set out to measure, from its user classes: the main request names, what
    they count, the URL, and the requests still unanswered when the users were stopped."""
    classes = [c for c in environment.user_classes if hasattr(c, "main_measurement")]
    locustfile = getattr(environment.parsed_options, "locustfile", "") or ""
    found: dict[str, object] = {"scenario": Path(str(locustfile)).stem}
    if classes:
        cls = classes[0]
        found["main"] = list(cls.main_measurement)
        found["label"] = cls.measurement_label
        found["url"] = url = cls.url_for(environment.host or "", environment)
        # What a message's latency ends at: its arrival in the kernel (plain TCP only) or
        # the generator's reading it (engine.ArrivalChannel).
        arrival = getattr(cls, "timed_at_arrival", False) and url.startswith("ws://")
        found["timed_at"] = TIMED_AT_ARRIVAL if arrival else TIMED_AT_READ
        intended = not arrival or getattr(cls, "timed_from_intended", True)
        found["timed_from"] = TIMED_FROM_INTENDED if intended else TIMED_FROM_SENT
    skip = len(UNANSWERED_PREFIX)
    found["unanswered_at_end"] = {
        k[skip:]: v for k, v in counters.items() if k.startswith(UNANSWERED_PREFIX)
    }
    return found


def write_files(prefix: str, result: RunResult) -> list[Path]:
    """Write the three files next to Locust's PREFIX_stats.csv; returns their paths."""
    if directory := os.path.dirname(prefix):
        os.makedirs(directory, exist_ok=True)
    paths = [Path(prefix + s) for s in (TOTALS_SUFFIX, HISTORY_SUFFIX, HISTOGRAMS_SUFFIX)]
    _write_totals(paths[0], result)
    _write_history(paths[1], result)
    paths[2].write_text(json.dumps(_histograms_document(result), indent=1) + "\n")
    return paths


def write_locust_final(prefix: str, stats: RequestStats) -> list[Path]:
    """Locust's final statistics, in the format of its --json-file, and its failures by error."""
    paths = [Path(prefix + FINAL_SUFFIX), Path(prefix + FINAL_FAILURES_SUFFIX)]
    # Not stats.serialize_stats(): it resets every entry (it is the worker's report-and-clear),
    # which would empty the table Locust prints and saves after us.
    entries = [e.serialize() for e in stats.entries.values() if e.num_requests or e.num_failures]
    paths[0].write_text(json.dumps(entries, indent=1) + "\n")
    paths[1].write_text(json.dumps(list(stats.serialize_errors().values()), indent=1) + "\n")
    return paths


def _write_totals(path: Path, result: RunResult) -> None:
    saturation, check = result.saturation, result.selfcheck
    generator = {
        "generator_cpu_pct": round(saturation.busiest_run_pct, 1),
        "generator_saturated": int(saturation.saturated),
        "generator_send_lag_p99_us": check.send_lag.get("p99_us", 0),
        "generator_wake_lag_p99_us": check.wake_lag.get("p99_us", 0),
        "generator_bound": int(check.bound),
    }
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, TOTALS_COLUMNS)
        writer.writeheader()
        for name, summary in result.totals.items():
            writer.writerow({"name": name, **summary, **generator})


def _write_history(path: Path, result: RunResult) -> None:
    rows_by_window: dict[float, list[WindowRow]] = {}
    for row in result.window_rows:
        rows_by_window.setdefault(row.start_s, []).append(row)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_COLUMNS)
        writer.writeheader()
        for gauges in result.window_gauges:
            common = {
                "window_start_unix_s": gauges.start_s,
                "window_s": result.window_s,
                "generator_cpu_pct": round(gauges.cpu_max_pct, 1),
                "generator_saturated": int(gauges.cpu_max_pct >= SATURATED_PCT),
                "generator_send_lag_p99_us": gauges.lag_p99_us.get(SEND_LAG, 0),
                "generator_wake_lag_p99_us": gauges.lag_p99_us.get(WAKE_LAG, 0),
                "open_connections": gauges.open_connections,
                **{name.replace(" ", "_"): gauges.events.get(name, 0) for name in WINDOW_EVENTS},
            }
            rows = rows_by_window.get(gauges.start_s)
            if not rows:
                writer.writerow({**common, "name": "", **dict.fromkeys(SUMMARY_COLUMNS, 0)})
            for row in rows or ():
                writer.writerow({**common, "name": row.name, **row.summary})


def _histograms_document(result: RunResult) -> dict[str, object]:
    saturation = result.saturation
    return {
        "unit": "us",
        "lowest_us": LOWEST_US,
        "highest_us": HIGHEST_US,
        "significant_figures": SIGNIFICANT_FIGURES,
        "encoding": "HdrHistogram V2, zlib, base64 (hdrh.histogram.HdrHistogram.decode)",
        "window_s": result.window_s,
        "steady_from_unix_s": result.steady_from_s,  # None: the totals include the ramp
        "totals": result.encoded_totals,
        "windows": [
            {"start_unix_s": start_s, "histograms": encoded}
            for start_s, encoded in sorted(result.encoded_windows.items())
        ],
        "counts_by_process": result.counts_by_process,
        "counters": result.counters,
        "measurement": result.measurement,
        "generator": {
            "run_cpu_pct_by_process": result.run_cpu_pct,
            "busiest_run_pct": saturation.busiest_run_pct,
            "peak_window_pct": saturation.peak_window_pct,
            "saturated_windows": saturation.saturated_windows,
            "windows": saturation.windows,
            "saturated": saturation.saturated,
            **result.selfcheck.as_dict(),
            "lag_histograms": result.encoded_lags,
        },
    }


def summary_lines(result: RunResult) -> list[str]:
    """The µs table printed at the end of a run (after Locust's own, which is in ms)."""
    processes = len(result.counts_by_process)
    lines = [f"WebSocket latency in microseconds (merged from {processes} process(es))"]
    header = f"{'Name':<32}" + "".join(f"{c:>10}" for c in SUMMARY_COLUMNS)
    lines += [header, "-" * len(header)]
    for name, summary in result.totals.items():
        lines.append(f"{name[:32]:<32}" + "".join(f"{summary[c]:>10}" for c in SUMMARY_COLUMNS))
    for name, value in result.counters.items():
        lines.append(f"  {name}: {value}")
    peak_open = max((g.open_connections for g in result.window_gauges), default=0)
    if peak_open:
        lines.append(f"  peak open connections: {peak_open}")
    lines.append(result.saturation.describe())
    lines.append(result.selfcheck.verdict())
    return lines


def print_summary(result: RunResult) -> None:
    for line in summary_lines(result):
        console.info(line)
    console.info("")
