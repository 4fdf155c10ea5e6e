"""Running points: one point from start to stored outcome, and a sweep of them.

A point's failure (the target dies, Locust crashes, nothing listens) is recorded in its
point.json and the sweep goes on. Ctrl-C stops the children, marks the point interrupted (a
resumed sweep runs it again) and keeps every point already written.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import WsbenchError
from common.procs import last_line
from common.schema import (
    FAULTS_JSON,
    FINAL_STATS_JSON,
    HISTORY_CSV,
    KERNEL_JSON,
    LATENCY_CSV,
    LOCUST_LOG,
    TARGET_LOG,
    PointResult,
    PointStatus,
    Summary,
    number,
    read_csv,
    steady_per_s,
    utc_now,
    write_json,
)
from harness import compression, faults, idle, measured, pauses, procs, proxy, sampling, topology
from harness.plan import SLO, Point, Sweep, fd_limit, nofile_of, parse_fault, sized
from harness.store import RunStore
from kernel import counters, netns, stalls
from targets.protocol import BROKER_LOST_PREFIX

POLL_S = 0.2
# Locust gets this long beyond its run time (spawning, stopping users, writing CSVs).
LOCUST_GRACE_S = 30.0

Say = Callable[[str], None]


@dataclass
class Outcome:
    point: Point
    status: PointStatus
    reason: str = ""
    summary: Summary = field(default_factory=lambda: Summary())
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the point was sized, and why

    def as_dict(self) -> PointResult:
        return {
            "point": self.point.as_dict(),
            "status": self.status,
            "reason": self.reason,
            "summary": self.summary,
            "warnings": self.warnings,
            "notes": self.notes,
        }


# Run-wide columns repeated on every row of the latency CSV: kept once, not per name.
NOT_PER_NAME = (
    "name", "generator_cpu_pct", "generator_saturated", "generator_send_lag_p99_us",
    "generator_wake_lag_p99_us", "generator_bound",
)  # fmt: skip


def final_stats_path(point_dir: Path) -> Path:
    """Locust's per-name totals, written by the scenarios once, at the end of the run."""
    return point_dir / FINAL_STATS_JSON


def read_summary(
    point_dir: Path, scenario: str, host: str, measured_s: float | None
) -> Summary:
    """The figures a summary table needs: Locust's final totals (every name, and the main
    measurement's), the µs latency per name and the generator's verdict.

    Throughput is the main measurement's successes over the measured time (the point's run
    time), not requests over the span from the first request to the last; for a --skip-ramp
    point, over its steady windows (the ones its totals count).
    """
    counts, document, measurement = _read_measured(point_dir, scenario, host)
    main = measured.main_figures(measurement, counts, measured_s)
    # --skip-ramp: the totals count from the steady start, so their rate is the steady windows'
    steady = steady_per_s(read_csv(point_dir / HISTORY_CSV), measurement.main,
                          document.get("steady_from_unix_s"))  # fmt: skip
    if steady is not None:
        main["successes_per_s"] = steady
    summary: Summary = {
        "requests": counts.requests() if counts else None,
        "failures": counts.failed() if counts else None,
        "requests_per_s": main["successes_per_s"] if counts else None,
        "measured_s": measured_s,
        "main": main,
        "main_error_rate": main["error_rate"],
    }
    latency_csv = point_dir / LATENCY_CSV
    names: dict[str, dict[str, float | None]] = {}
    saturated = False
    generator_cpu = None
    if latency_csv.exists():
        with latency_csv.open(newline="") as f:
            for row in csv.DictReader(f):
                names[row["name"]] = {
                    k: number(v) for k, v in row.items() if k not in NOT_PER_NAME
                }
                saturated = saturated or row.get("generator_saturated") in ("1", "True", "true")
                generator_cpu = number(row.get("generator_cpu_pct"))
    summary["latency_us"] = names
    summary["generator_cpu_pct"] = generator_cpu
    summary["generator_saturated"] = saturated
    summary.update(measured.generator_figures(document, saturated))
    return summary


def _read_measured(
    point_dir: Path, scenario: str, host: str
) -> tuple[measured.Counts | None, dict[str, Any], measured.Measurement]:
    document = measured.histograms_document(point_dir)
    return (measured.read_counts(point_dir), document,
            measured.read_measurement(document, scenario, host))  # fmt: skip


def judge(outcome: Outcome, point_dir: Path, host: str) -> None:
    """Fail an ok point whose main measurement has no success or too many errors."""
    if outcome.status != PointStatus.OK:
        return
    counts, document, measurement = _read_measured(point_dir, outcome.point.workload.scenario,
                                                   host)  # fmt: skip
    reason = measured.verdict(measurement, counts, outcome.point.workload.max_error_rate)
    if reason is None:
        reason = measured.arrivals_verdict(document, measurement)
    if reason is not None:
        outcome.status, outcome.reason = PointStatus.FAILED, reason


def error_rate(summary: Summary) -> float | None:
    """The main measurement's error rate; for points stored without it, over every name."""
    if "main_error_rate" in summary:
        rate = summary["main_error_rate"]
        return None if rate is None else float(rate)
    requests, failures = summary.get("requests"), summary.get("failures")
    if not requests:
        return None if not failures else 1.0
    return failures / requests


def main_latency(summary: Summary) -> tuple[str, dict[str, float | None]]:
    """The main measurement's headline name and its µs figures ("", {} if it has none).

    Points stored before the scenarios declared it: the request name with the most samples.
    """
    rows = summary.get("latency_us") or {}
    names = (summary.get("main") or {}).get("names")
    if names:
        return (names[0], rows[names[0]]) if names[0] in rows else (names[0], {})
    if not rows:
        return "", {}
    name = max(rows, key=lambda n: rows[n].get("count") or 0)
    return name, rows[name]


def slo_breach(slo: SLO, outcome: Outcome) -> str | None:
    """Why this point breaks the SLO, or None."""
    if outcome.status != PointStatus.OK:
        return f"point {outcome.status}"
    if slo.error_rate is not None:
        rate = error_rate(outcome.summary)  # the main measurement's, as the point's status
        if rate is not None and rate > slo.error_rate:
            return f"error rate {rate:.3f} > {slo.error_rate:g}"
    if slo.p99_ms is not None:
        name, row = main_latency(outcome.summary)
        p99_us = row.get("p99_us")
        if p99_us is not None and p99_us > slo.p99_ms * 1000:
            return f"{name} p99 {p99_us / 1000:.2f} ms > {slo.p99_ms:g} ms"
    return None


def run_point(point: Point, store: RunStore, say: Say) -> Outcome:
    """Run one point and write its point.json, whatever happens (Ctrl-C re-raised after).

    With a kernel profile the point gets fresh namespaces (target in one, Locust in the
    others), removed before this returns. Kernel counters are read before and after, in each
    namespace (or on the host), and their changes stored in kernel_counters.json.
    """
    point, notes = sized(point)  # the runner checked it can be
    for note in notes:
        say(f"  {note}")
    pdir = store.point_dir(point.point_id)
    # A re-run (resume, or the same --out) must not show an earlier attempt's figures.
    shutil.rmtree(pdir)
    pdir.mkdir(parents=True)
    started = utc_now()
    run = topology.PointRun(point, pdir, say)
    outcome = Outcome(point, PointStatus.FAILED)
    try:
        outcome = _run(run, store)
    except (WsbenchError, OSError) as exc:
        outcome = Outcome(point, PointStatus.FAILED, str(exc))
    except KeyboardInterrupt:
        outcome = Outcome(point, PointStatus.INTERRUPTED, "interrupted by the user (Ctrl-C)")
        raise
    finally:
        conclude(outcome, run, notes)
        store.write_point(point.point_id, {**outcome.as_dict(), "started": started,
                                           "ended": utc_now(), "command": run.command})  # fmt: skip
    return outcome


def _run(run: topology.PointRun, store: RunStore) -> Outcome:
    """The topology's parts started in order, the load watched, the parts stopped in reverse."""
    with contextlib.ExitStack() as parts:
        # Pinned (a quiet-machine run): idle CPUs poll rather than halt while the point runs.
        run.idle = parts.enter_context(idle.polling(run.point.topology.cpu_split()[0] is not None))
        bed = parts.enter_context(topology.testbed(run))
        if bed is not None:
            _record_kernel(run.point, bed, store, run.pdir)
        parts.enter_context(topology.kernel_counters(run))
        sampler = parts.enter_context(topology.resource_sampling(run))
        parts.enter_context(topology.broker(run, sampler))
        target = parts.enter_context(topology.target(run, sampler))
        front = parts.enter_context(topology.proxy(run, target, sampler))
        locusts = parts.enter_context(topology.locust(run, front, sampler))
        parts.enter_context(topology.faults(run, target, sampler))
        outcome = _watch(run.point, target, locusts[0], run.pdir)
        run.locust_ended = time.monotonic()
        return outcome


def conclude(outcome: Outcome, run: topology.PointRun, notes: list[str]) -> None:
    """The point's summary from its stored files and what its parts found; its final status."""
    point = run.point
    outcome.summary.update(read_summary(run.pdir, point.workload.scenario, run.host,
                                        run.measured_s()))  # fmt: skip
    # The parts' CPU means over the measured windows, as the rates they are divided by.
    document = measured.histograms_document(run.pdir)
    period = pauses.measured_period(document)
    if point.topology.faults:
        _conclude_drill(outcome, run)
    else:
        judge(outcome, run.pdir, run.host)
    if run.broker is not None:
        outcome.summary["broker"] = {
            **run.broker.describe(), **sampling.summarise(run.samples, "broker", period)}
    if run.proxy is not None:
        outcome.summary["proxy"] = {**run.proxy.describe(), "exit_status": run.proxy_status,
                                    **sampling.summarise(run.samples, "proxy", period),
                                    "rss_bytes_idle": run.proxy_idle_rss}  # fmt: skip
        _name_idle_drops(outcome, run)
    if point.topology.compression:
        _record_compression(outcome, run)
    if point.topology.tls:  # who did the handshakes: their CPU is that part's
        outcome.summary["tls"] = {
            "terminated_at": point.topology.tls_at,
            "by": point.topology.via if point.topology.tls_at == "proxy" else point.topology.target,
        }  # fmt: skip
    record = run.counter_record
    outcome.summary["target"] = {**sampling.summarise(run.samples, "target", period),
                                 "rss_bytes_idle": run.target_idle_rss,
                                 "scheduling": run.scheduling.get("target")}  # fmt: skip
    _name_gc_pauses(outcome, run, document, period)
    outcome.summary["locust"] = {**sampling.summarise(run.samples, "locust", period),
                                 "scheduling": run.scheduling.get("locust")}  # fmt: skip
    outcome.summary["target_exit_status"] = run.target_status
    outcome.summary["idle"] = run.idle  # the wake-up latency request held, or None
    totals = document.get("totals") or {}
    found = stalls.stalls(totals, record)  # every connect over 1 s, explained or said not to be
    outcome.summary["kernel"] = {
        "profile": point.topology.kernel_profile,
        "counters": counters.side_deltas(record) if record else None,
        "explain": (counters.explain(record) if record else []) + [s.sentence() for s in found],
        "stalls": [s.as_json() for s in found],
    }
    _name_kernel_cause(outcome, run.pdir, record)
    outcome.notes = notes
    outcome.warnings += run.warnings + _warnings(outcome) + _missing_workers(run.pdir)


def _name_kernel_cause(outcome: Outcome, pdir: Path, record: dict[str, Any] | None) -> None:
    """A point failed by connections that did not open (failed, or still opening at the end):
    what the kernel dropped, in the reason."""
    if outcome.status != PointStatus.FAILED or not outcome.reason:
        return
    counts = measured.read_counts(pdir)
    document = measured.histograms_document(pdir)
    opening = (document.get("measurement") or {}).get("unanswered_at_end") or {}
    failed = counts.failed(list(measured.SETUP_PHASES)) if counts else 0
    if not failed and not any(opening.get(n) for n in measured.SETUP_PHASES):
        return
    cause = stalls.named_causes(record)
    if cause:
        outcome.reason += f"; the kernel: {cause}"


def _record_compression(outcome: Outcome, run: topology.PointRun) -> None:
    """What the upgrades agreed to (harness/compression.py); a warning for those declined."""
    found = measured.histograms_document(run.pdir).get("counters") or {}
    entry = compression.record(found, run.point.topology.compression)
    outcome.summary["compression"] = entry
    why = compression.declined_warning(entry)
    if why is not None and outcome.status == PointStatus.OK:
        run.warnings.append(why)


def _name_idle_drops(outcome: Outcome, run: topology.PointRun) -> None:
    """Connections the proxy's idle timeout dropped, said in the reason (or a warning)."""
    main = outcome.summary.get("main") or {}
    why = proxy.idle_drops(run.proxy, run.point.workload.options, main.get("failures") or 0,
                           run.measured_s() or 0.0)  # fmt: skip
    if why is None:
        return
    outcome.summary["proxy"]["idle_drops"] = why
    if outcome.status == PointStatus.FAILED and outcome.reason:
        outcome.reason += f": {why}"
    else:
        run.warnings.append(why)


def _conclude_drill(outcome: Outcome, run: topology.PointRun) -> None:
    """A drill point's record per fault (in faults.json and the summary) and its status: ok
    when every fault happened and did what a failover needs measured (users dropped and all
    back by the end; a lost broker noticed), failed with the one reason otherwise."""
    point = run.point
    windows = faults.read_windows(run.pdir)
    name, _ = main_latency(outcome.summary)
    counters = (measured.histograms_document(run.pdir).get("counters") or {})
    reasons = faults.failure_reasons(run.pdir)
    records = []
    for done in run.faults_done:
        lost_seen = _broker_lost_seen(run) if done.action == "kill-broker" else None
        records.append(faults.drill(done, windows, point.workload.users, name, counters,
                                    reasons, lost_seen))  # fmt: skip
    write_json(run.pdir / FAULTS_JSON, {"faults": [d.as_json() for d in run.faults_done]})
    outcome.summary["drill"] = records
    if outcome.status != PointStatus.OK:
        return
    planned = [parse_fault(text) for text in point.topology.faults]
    if len(records) < len(planned):
        missed = ", ".join(str(f) for f in planned[len(records):])
        outcome.status, outcome.reason = PointStatus.FAILED, f"fault {missed} did not happen"
        return
    for record, fault in zip(records, planned, strict=True):
        reason = faults.verdict(record, fault)
        if reason is not None:
            outcome.status, outcome.reason = PointStatus.FAILED, reason
            return


def _name_gc_pauses(
    outcome: Outcome, run: topology.PointRun, document: dict[str, Any],
    period: tuple[float, float] | None,
) -> None:  # fmt: skip
    """The target's stops for garbage collection in the measured windows (`period`, of the
    histograms `document`): in its summary, and a warning when the longest made the point's
    p99 (the self-check's headline p99)."""
    found = pauses.summarise(pauses.read(run.pdir), period,
                             (document.get("generator") or {}).get("latency_p99_us"))  # fmt: skip
    if found is None:
        return
    outcome.summary["target"]["gc_pauses"] = found
    if found["made_p99"]:
        run.warnings.append(found["sentence"])


def _broker_lost_seen(run: topology.PointRun) -> bool:
    """The target said it lost its broker (the line its processes print when they do)."""
    try:
        text = (run.pdir / TARGET_LOG).read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith(BROKER_LOST_PREFIX) and " lost: " in line
               for line in text.splitlines())


def _record_kernel(point: Point, bed: netns.Testbed, store: RunStore, pdir: Path) -> None:
    """The profile and the values in force: in the point's kernel.json and the run's meta.json."""
    info = {
        **bed.profile.as_dict(),
        "in_force": bed.in_force,
        "client_hosts": point.topology.client_hosts,
        "client_addresses": point.topology.client_addresses,
        "nofile": nofile_of(point.topology) or fd_limit(),
    }
    write_json(pdir / KERNEL_JSON, info)
    profiles = (store.read_meta() or {}).get("kernel_profiles") or {}
    profiles[point.topology.kernel_profile] = info
    store.update_meta(kernel_profiles=profiles)


def _watch(point: Point, target: procs.Target, locust: Any, pdir: Path) -> Outcome:
    """Wait for Locust to finish its run; fail the point early if the target dies."""
    waits = procs.WORKERS_WAIT_S if point.topology.has_master else 0.0
    deadline = time.monotonic() + point.workload.duration_s + LOCUST_GRACE_S + waits
    while True:
        code = locust.poll()
        if code is not None:
            break
        dead = target.exited()
        if dead is not None:
            why = last_line(target.log_path) if target.log_path else ""
            return Outcome(
                point, PointStatus.FAILED,
                f"target exited with status {dead} during the run" + (f": {why}" if why else ""),
            )  # fmt: skip
        if time.monotonic() > deadline:
            why = f"Locust did not finish within its run time + {LOCUST_GRACE_S:g} s"
            return Outcome(point, PointStatus.FAILED, why)
        time.sleep(POLL_S)
    if not final_stats_path(pdir).exists():
        why = last_line(pdir / LOCUST_LOG)
        return Outcome(point, PointStatus.FAILED, f"Locust exited with status {code}: {why}")
    # Locust exits 1 when any request failed; that is a measured outcome, not a crash.
    return Outcome(point, PointStatus.OK)


def _missing_workers(pdir: Path) -> list[str]:
    """A warning when the Locust master called workers missing (and handed their users over)."""
    try:
        text = (pdir / "locust.log").read_text(errors="replace")
    except OSError:
        return []
    missed = text.count("failed to send heartbeat")
    if not missed:
        return []
    return [f"the Locust master lost {missed} worker heartbeat(s) (a CPU-starved worker) and "
            "handed their users to other workers: users and connections may have exceeded "
            "the plan (see locust.log)"]  # fmt: skip


def _warnings(outcome: Outcome) -> list[str]:
    summary = outcome.summary
    found = []
    if summary.get("generator_bound"):
        # A bound generator flags the point rather than failing it: the figures exist, but
        # they measure the generator's delay as much as the server's.
        found.append(summary.get("generator_verdict") or (
            f"load generator saturated (a Locust process at {summary.get('generator_cpu_pct')}% "
            "of a core): these figures measure the generator, not the server"))  # fmt: skip
    main = summary.get("main") or {}
    drill = bool(outcome.point.topology.faults)  # its drops are what it measures: the drill says
    if main.get("failures") and outcome.status == PointStatus.OK and not drill:
        found.append(f"{main['failures']:,} of {main['requests']:,} {main['label']} failed "
                     f"({main['error_rate']:.1%})")  # fmt: skip
    others = (summary.get("failures") or 0) - (main.get("failures") or 0)
    if others > 0 and outcome.status == PointStatus.OK and not drill:
        found.append(f"{others:,} failed requests outside the main measurement "
                     "(set-up phases such as connects and upgrades; see locust.log)")
    # Requests in flight at the end (one per closed-loop user) are normal: no warning.
    found += (summary.get("kernel") or {}).get("explain") or []
    return found


def run_sweep(planned: Sequence[tuple[Sweep, Point]], store: RunStore, say: Say) -> list[Outcome]:
    """Every point not already final in the store, in order, with the SLO stop per series of
    the sweep (the matrix part) each point belongs to.

    Points finished by an earlier invocation count for the SLO stop as if run now.
    """
    outcomes: list[Outcome] = []
    stopped: dict[tuple[str, ...], str] = {}
    for n, (sweep, point) in enumerate(planned, 1):
        key = (sweep.name, *sweep.series_key(point))
        tag = f"[{n}/{len(planned)}] {point.point_id}"
        previous = store.point_result(point.point_id)
        if store.is_final(point.point_id) and previous is not None:
            say(f"{tag}: already {previous['status']}, skipped")
            if sweep.slo and previous["status"] == PointStatus.OK:
                done = Outcome(point, PointStatus.OK, summary=previous.get("summary") or {})
                _note_breach(sweep, done, stopped, key)
            elif previous["status"] == PointStatus.SKIPPED:
                stopped.setdefault(key, previous.get("reason", ""))
            continue
        if key in stopped:
            outcome = Outcome(point, PointStatus.SKIPPED, stopped[key])
            store.write_point(point.point_id, {**outcome.as_dict(), "ended": utc_now()})
            say(f"{tag}: skipped ({stopped[key]})")
            outcomes.append(outcome)
            continue
        rate = point.workload.rate
        offered = f", {rate:,g}/s offered" if rate is not None else ""
        say(f"{tag}: {point.workload.users} users for {point.workload.duration_s:g} s{offered}")
        outcome = run_point(point, store, say)
        outcomes.append(outcome)
        say(f"  -> {describe(outcome)}")
        for record in outcome.summary.get("drill") or []:
            say(f"  drill: {faults.sentence(record)}")
        for warning in outcome.warnings:
            say(f"  warning: {warning}")
        if sweep.slo:
            _note_breach(sweep, outcome, stopped, key)
    return outcomes


def _note_breach(
    sweep: Sweep, outcome: Outcome, stopped: dict[tuple[str, ...], str], key: tuple[str, ...]
) -> None:
    breach = slo_breach(sweep.slo, outcome)
    if not breach and sweep.rates and outcome.summary.get("generator_bound"):
        # A higher rate would measure the generator again, not the server.
        breach = "the load generator was the limit (its self-check)"
    if breach and key not in stopped:
        workload = outcome.point.workload
        at = f"{workload.rate:,g}/s" if workload.rate is not None else f"{workload.users} users"
        stopped[key] = f"SLO stop: {breach} at {at}"


def describe(outcome: Outcome) -> str:
    """One line: the reason of a point that is not ok, else its main measurement's figures."""
    if outcome.status != PointStatus.OK:
        return f"{outcome.status}: {outcome.reason}"
    s = outcome.summary
    main = s.get("main") or {}
    name, row = main_latency(s)
    label = main.get("label") or "requests"
    rate = error_rate(s)
    parts = [f"{main.get('successes', s.get('requests')) or 0:,} {label}",
             f"{main.get('failures', s.get('failures')) or 0:,} failed"
             + (f" ({rate:.2%})" if rate is not None else "")]  # fmt: skip
    if s.get("requests_per_s") is not None:
        parts.append(f"{s['requests_per_s']:.0f}/s")
    if row.get("p50_us") is not None and row.get("p99_us") is not None:
        parts.append(f"{name} p50 {row['p50_us']:.0f} µs p99 {row['p99_us']:.0f} µs")
    if s.get("generator_bound", s.get("generator_saturated")):
        parts.append("GENERATOR BOUND")
    return "ok: " + ", ".join(parts)
