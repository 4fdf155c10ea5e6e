"""One headless Locust run of a scenario, pinned, and what it measured once the ramp is over.

The scenario's own files are read (`--csv PREFIX`): PREFIX_latency_us_history.csv says when
every connection was open; the 1 s window histograms of PREFIX_latency_us_histograms.json
after that (the ramp's last windows and the final, partial window dropped) are added into the
steady-state figures. The generator's self-check is judged on the same steady windows, with
the new engine's rule (scenarios/selfcheck.py) for every generator alike: bound when its delay
p99 (the larger of send and wake lag, median over the windows; for the old engine, which has no
self-check, corrected minus uncorrected p99) is over max(1 ms, 25 % of the corrected p99),
or when it averaged 90 % of its core. The engine's own run-wide verdict counts the ramp, whose
connects are not what a step measures; it is shown next to ours.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from benchmarks import pinned
from common import schema
from common.schema import PointParams, PointStatus, Summary, utc_now
from scenarios.selfcheck import BOUND_FRACTION, NOISE_FLOOR_US

SATURATED_PCT = 90.0  # scenarios/cpu.py's flag, restated: the old engine's only self-check
REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
STOP_GRACE_S = 30.0
SETTLE_S = 2.0  # windows after the ramp that still carry it (skipped by read())
UPGRADE = "ws upgrade"  # the request name of a WebSocket upgrade in Locust's tables


# The engine's rule, imported from scenarios/selfcheck.py (one rule), applied by this benchmark
# to every generator alike and to the steady windows only: bound when the generator's delay p99
# is over max(NOISE_FLOOR_US, BOUND_FRACTION x the corrected p99 it reports).


def delay_limit_us(latency_p99_us: int) -> float:
    return max(NOISE_FLOOR_US, BOUND_FRACTION * latency_p99_us)


def lag_too_big(delay_p99_us: int, latency_p99_us: int) -> bool:
    return delay_p99_us > delay_limit_us(latency_p99_us)


@dataclass
class Step:
    """What one Locust run measured in its steady state."""

    users: int
    steady_s: float
    latency: dict[str, dict[str, int]]  # name -> count, p50_us, p99_us, p999_us, max_us
    counters: dict[str, int]
    generator: dict[str, Any]  # the engine's own verdict, over the whole run (ramp included)
    steady_cpu_pct: float
    steady_delay_p99_us: int | None  # median over steady windows; None: no self-check
    failures: int
    failure_text: str
    exit_code: int | None
    prefix: Path
    main_name: str = "echo corrected"
    server_cpu_pct: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def count_per_s(self, name: str) -> float:
        return self.latency.get(name, {}).get("count", 0) / self.steady_s if self.steady_s else 0.0

    @property
    def delay_p99_us(self) -> int:
        """The generator's delay p99 in the steady windows: the self-check's send/wake lag;
        before it, corrected minus uncorrected p99 (how late the tail was sent)."""
        if self.steady_delay_p99_us is not None:
            return self.steady_delay_p99_us
        corrected = self.latency.get(self.main_name, {}).get("p99_us", 0)
        uncorrected_name = self.main_name.replace("corrected", "uncorrected")
        uncorrected = self.latency.get(uncorrected_name, {}).get("p99_us", corrected)
        return max(0, corrected - uncorrected)

    @property
    def saturated(self) -> bool:
        """A steady CPU of 90 % of the core or more (the old engine's only self-check)."""
        return self.steady_cpu_pct >= SATURATED_PCT

    @property
    def bound(self) -> bool:
        """The self-check's rule on the steady windows, or saturated."""
        latency_p99_us = self.latency.get(self.main_name, {}).get("p99_us", 0)
        return self.saturated or lag_too_big(self.delay_p99_us, latency_p99_us)

    @property
    def verdict(self) -> str:
        latency_p99_us = self.latency.get(self.main_name, {}).get("p99_us", 0)
        kind = "self-check" if self.steady_delay_p99_us is not None else "old engine: c-u p99"
        text = (f"{'BOUND' if self.bound else 'ok'} (steady: delay p99 {self.delay_p99_us:,} µs "
                f"[{kind}], limit {delay_limit_us(latency_p99_us):,.0f} µs, CPU "
                f"{self.steady_cpu_pct:.0f}%)")
        if "bound" in self.generator:
            text += f"; engine, whole run: {'BOUND' if self.generator['bound'] else 'ok'}"
        return text


def run(
    scenario: str, url: str, users: int, measure_s: float, prefix: Path, cpu: int,
    options: Sequence[str] = (), spawn_rate: float | None = None,
    server: pinned.Server | None = None, during: Callable[[int], None] | None = None,
    ramp_timeout_s: float | None = None, main_name: str = "echo corrected",
) -> Step:  # fmt: skip
    """`locust -f scenarios/<scenario>.py` headless with `users` on `cpu`, steady for `measure_s`.

    The ramp takes what it takes (a loaded box drops SYNs, retried after 1 s, 3 s, 7 s): once
    every upgrade is done (Locust's PREFIX_stats.csv, rewritten each second), the run goes on for
    two settling windows and `measure_s`, then gets SIGTERM, on which Locust writes its files.
    `during(pid)` runs once the ramp is over.
    """
    prefix.parent.mkdir(parents=True, exist_ok=True)
    locustfile = Path(scenario) if scenario.endswith(".py") else SCENARIOS / f"{scenario}.py"
    ramp_timeout_s = ramp_timeout_s or (15.0 + users / 500)
    limit_s = math.ceil(ramp_timeout_s + measure_s + SETTLE_S + 5)
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url,
        "-u", str(users), "-r", str(spawn_rate or users), "-t", f"{limit_s}s",
        "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", *options,
    ]  # fmt: skip
    log = prefix.with_name(prefix.name + "_locust.log")
    server_cpu = pinned.CpuMeter(server.process) if server else None
    started_at = utc_now()
    proc = pinned.spawn(cmd, cpu, log, cwd=prefix.parent)
    ramp_s = 0.0
    try:
        started = time.monotonic()
        wait_for(lambda: proc.poll() is not None or upgrades_done(prefix) >= users,
                 ramp_timeout_s, every_s=0.5)
        ramp_s = time.monotonic() - started
        if server_cpu is not None:
            server_cpu.start()
        if during is not None and proc.poll() is None:
            during(proc.pid)
        wait_for(lambda: proc.poll() is not None,
                 max(0.0, started + ramp_s + SETTLE_S + measure_s + 1.5 - time.monotonic()))
    finally:
        pinned.stop(proc, timeout_s=STOP_GRACE_S)
    try:
        step = read(prefix, users, proc.returncode, main_name)
    except RuntimeError as exc:  # overloaded past its stop: a step that measured nothing
        step = Step(users, 0.0, {}, {}, {}, 0.0, None, 0,
                    f"Locust wrote no results (exit {proc.returncode}): {str(exc)[:200]}",
                    proc.returncode, prefix, main_name)
    step.extra["ramp_s"] = round(ramp_s, 1)
    if server_cpu is not None:
        step.server_cpu_pct = server_cpu.pct()  # after the ramp, to the stop
    params: PointParams = {
        "point_id": prefix.parent.name, "target": server.name if server else url,
        "scenario": locustfile.stem, "users": users, "spawn_rate": float(spawn_rate or users),
        "duration_s": measure_s, "options": list(options),
    }  # fmt: skip
    store_point(prefix.parent, params, step, started_at)
    return step


def store_point(point_dir: Path, params: PointParams, step: Step, started: str) -> None:
    """The step's point.json: its steady-state figures as a summary (so `wsbench report` and
    `compare` read a generator benchmark's steps), failed when it measured no steady state."""
    main = step.latency.get(step.main_name, {})
    summary: Summary = {
        "requests": main.get("count", 0), "requests_per_s": step.count_per_s(step.main_name),
        "measured_s": step.steady_s, "generator_bound": step.bound,
        "generator_verdict": step.verdict, "failures": step.failures,
        "latency_us": {name: dict(row) for name, row in step.latency.items()},
        "target": {"cpu_pct_mean": step.server_cpu_pct},
        "client": {"cpu_pct_mean": step.steady_cpu_pct},
    }  # fmt: skip
    failed = not step.steady_s
    warnings = [f"{step.failures} failures: {step.failure_text}"] if step.failures else []
    schema.write_point(point_dir, {
        "point": params, "status": PointStatus.FAILED if failed else PointStatus.OK,
        "reason": (step.failure_text or "no steady state") if failed else "",
        "summary": summary, "warnings": warnings, "started": started, "ended": utc_now(),
    })  # fmt: skip


def upgrades_done(prefix: Path) -> int:
    """Upgrades answered so far (successes and failures), from Locust's PREFIX_stats.csv."""
    try:
        with Path(f"{prefix}_stats.csv").open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("Name") == UPGRADE:
                    return int(row["Request Count"])  # Locust counts failures in it too
    except (OSError, ValueError, KeyError):
        pass
    return 0


def read(prefix: Path, users: int, exit_code: int | None = None,
         main_name: str = "echo corrected") -> Step:
    """The steady-state figures of a finished run from its files."""
    histograms_path = Path(f"{prefix}_latency_us_histograms.json")
    if not histograms_path.exists():
        log = prefix.with_name(prefix.name + "_locust.log")
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise RuntimeError(f"locust wrote no histograms (exit {exit_code}); log ends:\n{tail}")
    document = json.loads(histograms_path.read_text())
    windows, delays = _steady_windows(Path(f"{prefix}_latency_us_history.csv"), users)
    window_s = float(document.get("window_s", 1.0))
    merged: dict[str, HdrHistogram] = {}
    for window in document.get("windows", []):
        if float(window["start_unix_s"]) not in windows:
            continue
        for name, encoded in window["histograms"].items():
            histogram = HdrHistogram.decode(encoded)
            if name in merged:
                merged[name].add(histogram)
            else:
                merged[name] = histogram
    failures, text = _failures(prefix)
    return Step(
        users=users,
        steady_s=len(windows) * window_s,
        latency={name: summary(h) for name, h in merged.items()},
        counters=dict(document.get("counters", {})),
        generator=dict(document.get("generator", {})),
        steady_cpu_pct=statistics.fmean(windows.values()) if windows else 0.0,
        steady_delay_p99_us=int(statistics.median(delays)) if delays else None,
        failures=failures,
        failure_text=text,
        exit_code=exit_code,
        prefix=prefix,
        main_name=main_name,
    )


def summary(histogram: HdrHistogram) -> dict[str, int]:
    """count, p50_us, p90_us, p99_us, p999_us, max_us of a histogram (zeros when empty); the
    reference client's figures (benchmarks/reference.py) are read with it too."""
    count = histogram.get_total_count()
    row = {"count": count}
    for column, pct in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99), ("p999_us", 99.9)):
        row[column] = histogram.get_value_at_percentile(pct) if count else 0
    row["max_us"] = histogram.get_max_value() if count else 0
    return row


def _steady_windows(history: Path, users: int) -> tuple[dict[float, float], list[int]]:
    """Window start -> generator CPU % for the windows after every connection was open, and
    their generator delay p99s (the larger of send and wake lag; empty before the self-check)."""
    cpu_by_window: dict[float, float] = {}
    open_by_window: dict[float, int] = {}
    delay_by_window: dict[float, int] = {}
    with history.open(newline="") as f:
        for row in csv.DictReader(f):
            start = float(row["window_start_unix_s"])
            cpu_by_window[start] = float(row["generator_cpu_pct"] or 0)
            open_by_window[start] = max(open_by_window.get(start, 0),
                                        int(float(row["open_connections"] or 0)))
            if "generator_wake_lag_p99_us" in row:
                delay_by_window[start] = max(int(float(row["generator_wake_lag_p99_us"] or 0)),
                                             int(float(row["generator_send_lag_p99_us"] or 0)))
    starts = sorted(cpu_by_window)
    full = [s for s in starts if open_by_window[s] >= users]
    if not full:
        return {}, []
    # The first full windows still hold the ramp's end; windows with users gone are the stop's
    # (stopping users stalls the rest), and the last full one may be cut by it.
    steady = [s for s in starts if s > full[0] + SETTLE_S - 1 and open_by_window[s] >= users]
    steady = steady[:-1]
    return {s: cpu_by_window[s] for s in steady}, [delay_by_window[s] for s in steady
                                                    if s in delay_by_window]


def _failures(prefix: Path) -> tuple[int, str]:
    """Locust's failure count at the very end and the commonest error text."""
    final = Path(f"{prefix}_final.json")
    total = 0
    if final.exists():
        total = sum(int(e.get("num_failures", 0)) for e in json.loads(final.read_text()))
    else:
        stats = Path(f"{prefix}_stats.csv")
        if stats.exists():
            with stats.open(newline="") as f:
                total = sum(int(r["Failure Count"]) for r in csv.DictReader(f)
                            if r["Name"] != "Aggregated")
    errors_path = Path(f"{prefix}_final_failures.json")
    text = ""
    if errors_path.exists():
        errors = json.loads(errors_path.read_text())
        if errors:
            top = max(errors, key=lambda e: e.get("occurrences", 0))
            text = f"{top.get('occurrences')}x {top.get('name')}: {str(top.get('error'))[:120]}"
    return total, text


def wait_for(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()
