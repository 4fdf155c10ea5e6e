"""Running points: one point from start to stored outcome, and a sweep of them.

A point's failure (the target dies, Locust crashes, nothing listens) is recorded in its
point.json and the sweep goes on. Ctrl-C stops the children, marks the point interrupted (a
resumed sweep runs it again) and keeps every point already written.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.schema import (
    FINAL_STATS_JSON,
    KERNEL_COUNTERS_JSON,
    KERNEL_JSON,
    LATENCY_CSV,
    LOCUST_PREFIX,
    utc_now,
    write_json,
)
from harness import measured, procs, sampling
from harness.plan import (
    SLO,
    PlanError,
    Point,
    Sweep,
    fd_limit,
    load_hosts,
    nofile_of,
    profile_of,
    sized,
)
from harness.store import RunStore
from kernel import counters, netns
from kernel.hostsysctl import HostSysctlError

POLL_S = 0.2
# Locust gets this long beyond its run time (spawning, stopping users, writing CSVs).
LOCUST_GRACE_S = 30.0

Say = Callable[[str], None]


@dataclass
class Outcome:
    point: Point
    status: str  # ok | failed | interrupted | skipped
    reason: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the point was sized, and why

    def as_dict(self) -> dict[str, Any]:
        return {
            "point": self.point.as_dict(),
            "status": self.status,
            "reason": self.reason,
            "summary": self.summary,
            "warnings": self.warnings,
            "notes": self.notes,
        }


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


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
) -> dict[str, Any]:
    """The figures a summary table needs: Locust's final totals (every name, and the main
    measurement's), the µs latency per name and the generator's verdict.

    Throughput is the main measurement's successes over the measured time (the point's run
    time), not requests over the span from the first request to the last.
    """
    counts, document, measurement = _read_measured(point_dir, scenario, host)
    main = measured.main_figures(measurement, counts, measured_s)
    summary: dict[str, Any] = {
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
                    k: _number(v) for k, v in row.items() if k not in NOT_PER_NAME
                }
                saturated = saturated or row.get("generator_saturated") in ("1", "True", "true")
                generator_cpu = _number(row.get("generator_cpu_pct"))
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
    if outcome.status != "ok":
        return
    counts, _, measurement = _read_measured(point_dir, outcome.point.scenario, host)
    reason = measured.verdict(measurement, counts, outcome.point.max_error_rate)
    if reason is not None:
        outcome.status, outcome.reason = "failed", reason


def error_rate(summary: dict[str, Any]) -> float | None:
    """The main measurement's error rate; for points stored without it, over every name."""
    if "main_error_rate" in summary:
        rate = summary["main_error_rate"]
        return None if rate is None else float(rate)
    requests, failures = summary.get("requests"), summary.get("failures")
    if not requests:
        return None if not failures else 1.0
    return failures / requests


def main_latency(summary: dict[str, Any]) -> tuple[str, dict[str, float | None]]:
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
    if outcome.status != "ok":
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
    outcome = Outcome(point, "failed")
    sampler = sampling.Sampler(pdir / "resources.csv")
    bed: netns.Testbed | None = None
    target: procs.Target | None = None
    locusts: list[Any] = []  # Locust (or its master) first, then workers on other client hosts
    cmd: list[str] | None = None
    target_idle_rss: int | None = None
    locust_started: float | None = None  # monotonic s: the measured time is Locust's own
    locust_ended: float | None = None
    sides: dict[str, Path] = {"host": counters.NET_DIR}
    before: dict[str, counters.Snapshot] = {}
    try:
        profile = profile_of(point)
        if profile is not None:
            bed = netns.Testbed(
                profile, point.client_hosts, point.client_addresses, point.host_sysctls, say
            ).open()
            for line in netns.describe(bed):
                say(f"  {line}")
            sides = {side: ns.net_dir for side, ns in bed.namespaces().items()}
            for side, net_dir in sides.items():
                sampler.watch_sockstat(side, net_dir)
            _record_kernel(point, bed, store, pdir)
        before = _snapshots(sides)
        target = procs.start_target(
            point, pdir / "target.log", enter=bed.server.enter() if bed and bed.server else (),
            host=netns.SERVER_ADDRESS if bed else None,
        )  # fmt: skip
        if target.proc is not None:
            sampler.watch("target", target.proc.pid)
            # Before any load: what the server costs with no connections, so memory per
            # connection can be told apart from the process's fixed size.
            target_idle_rss = sampler.rss_bytes("target")
        master = netns.client_address(0, 0) if point.client_hosts > 1 else None
        cmd = procs.locust_command(
            point, target.url, pdir / LOCUST_PREFIX, ca_file=target.ca_file, master_host=master
        )
        locusts = _start_locust(point, bed, cmd, master, pdir)
        locust_started = time.monotonic()
        for proc in locusts:
            sampler.watch("locust", proc.pid)
        sampler.start()
        outcome = _watch(point, target, locusts[0], pdir)
        locust_ended = time.monotonic()
    except (procs.RunError, netns.KernelError, HostSysctlError, PlanError, OSError) as exc:
        outcome = Outcome(point, "failed", str(exc))
    except KeyboardInterrupt:
        outcome = Outcome(point, "interrupted", "interrupted by the user (Ctrl-C)")
        raise
    finally:
        target_status, samples, record = None, [], None
        try:
            for proc in locusts:  # the master first: it tells its workers to stop
                procs.stop(proc)
            target_status = target.stop() if target is not None else None
            samples = sampler.stop()
            record = _store_counters(sides, before, pdir)
        except OSError as exc:
            outcome.warnings.append(f"kernel counters not stored: {exc}")
        finally:
            # Whatever failed above, the namespaces go and host sysctls are restored.
            outcome.warnings += _close_testbed(bed)
        host = target.url if target is not None else point.target
        outcome.summary.update(read_summary(pdir, point.scenario, host,
                                            _measured_s(point, locust_started, locust_ended)))
        judge(outcome, pdir, host)
        outcome.summary["target"] = {
            **sampling.summarise(samples, "target"), "rss_bytes_idle": target_idle_rss,
        }
        outcome.summary["locust"] = sampling.summarise(samples, "locust")
        outcome.summary["target_exit_status"] = target_status
        outcome.summary["kernel"] = {
            "profile": point.kernel_profile,
            "counters": counters.side_deltas(record) if record else None,
            "explain": counters.explain(record) if record else [],
        }
        outcome.notes = notes
        outcome.warnings += _warnings(outcome) + _missing_workers(pdir)
        store.write_point(
            point.point_id,
            {**outcome.as_dict(), "started": started, "ended": utc_now(),
             "command": cmd},  # fmt: skip
        )
    return outcome


def _measured_s(point: Point, started: float | None, ended: float | None) -> float | None:
    """The point's run time, or less when Locust was stopped early (its target died)."""
    if started is None:
        return None
    return min(point.duration_s, (ended or time.monotonic()) - started)


def _close_testbed(bed: netns.Testbed | None) -> list[str]:
    """Remove the point's namespaces (and restore host sysctls); what went wrong, as warnings."""
    if bed is None:
        return []
    try:
        left = bed.close()
    except (HostSysctlError, OSError) as exc:
        return [f"clean-up failed: {exc}"]
    return [f"processes left in the namespaces were killed: {left}"] if left else []


def _start_locust(
    point: Point, bed: netns.Testbed | None, cmd: list[str], master: str | None, pdir: Path
) -> list[Any]:
    """Locust in client host 0; with several client hosts, a worker group on each other one."""
    nofile = nofile_of(point)
    enter = bed.clients[0].enter() if bed else []
    started = [procs.spawn([*enter, *cmd], pdir / "locust.log", nofile=nofile)]
    if bed is None or master is None:
        return started
    hosts = load_hosts(point)
    for host in hosts:
        worker = procs.worker_command(
            point.scenario, master, point.master_port, point.processes // len(hosts),
            point.options,
        )  # fmt: skip
        log = pdir / f"locust-worker{host}.log"
        started.append(procs.spawn([*bed.clients[host].enter(), *worker], log, nofile=nofile))
    return started


def _record_kernel(point: Point, bed: netns.Testbed, store: RunStore, pdir: Path) -> None:
    """The profile and the values in force: in the point's kernel.json and the run's meta.json."""
    info = {
        **bed.profile.as_dict(),
        "in_force": bed.in_force,
        "client_hosts": point.client_hosts,
        "client_addresses": point.client_addresses,
        "nofile": nofile_of(point) or fd_limit(),
    }
    write_json(pdir / KERNEL_JSON, info)
    profiles = (store.read_meta() or {}).get("kernel_profiles") or {}
    profiles[point.kernel_profile] = info
    store.update_meta(kernel_profiles=profiles)


def _snapshots(sides: dict[str, Path]) -> dict[str, counters.Snapshot]:
    found = {}
    for side, net_dir in sides.items():
        try:
            found[side] = counters.read_snapshot(net_dir)
        except counters.CounterError:
            continue  # a point does not fail for want of counters; they are just not stored
    return found


def _store_counters(
    sides: dict[str, Path], before: dict[str, counters.Snapshot], pdir: Path
) -> dict[str, Any] | None:
    after = _snapshots({side: sides[side] for side in before})
    pairs = {side: (before[side], after[side]) for side in before if side in after}
    if not pairs:
        return None
    record = counters.point_record(pairs)
    write_json(pdir / KERNEL_COUNTERS_JSON, record)
    return record


def _watch(point: Point, target: procs.Target, locust: Any, pdir: Path) -> Outcome:
    """Wait for Locust to finish its run; fail the point early if the target dies."""
    waits = procs.WORKERS_WAIT_S if point.expect_workers or point.client_hosts > 1 else 0.0
    deadline = time.monotonic() + point.duration_s + LOCUST_GRACE_S + waits
    while True:
        code = locust.poll()
        if code is not None:
            break
        dead = target.exited()
        if dead is not None:
            why = procs.last_line(target.log_path) if target.log_path else ""
            return Outcome(
                point, "failed",
                f"target exited with status {dead} during the run" + (f": {why}" if why else ""),
            )  # fmt: skip
        if time.monotonic() > deadline:
            return Outcome(point, "failed", "Locust did not finish within its run time + 30 s")
        time.sleep(POLL_S)
    if not final_stats_path(pdir).exists():
        why = procs.last_line(pdir / "locust.log")
        return Outcome(point, "failed", f"Locust exited with status {code}: {why}")
    # Locust exits 1 when any request failed; that is a measured outcome, not a crash.
    return Outcome(point, "ok")


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
    if main.get("failures") and outcome.status == "ok":  # a failed point's reason says it
        found.append(f"{main['failures']:,} of {main['requests']:,} {main['label']} failed "
                     f"({main['error_rate']:.1%})")  # fmt: skip
    others = (summary.get("failures") or 0) - (main.get("failures") or 0)
    if others > 0 and outcome.status == "ok":
        found.append(f"{others:,} failed requests outside the main measurement "
                     "(set-up phases such as connects and upgrades; see locust.log)")
    # Requests in flight at the end (one per closed-loop user) are normal: no warning.
    found += (summary.get("kernel") or {}).get("explain") or []
    return found


def run_sweep(
    sweep: Sweep, store: RunStore, say: Say, points: list[Point] | None = None
) -> list[Outcome]:
    """Every point of the sweep not already final in the store, with the SLO stop per series.

    Points finished by an earlier invocation count for the SLO stop as if run now.
    """
    outcomes: list[Outcome] = []
    stopped: dict[tuple[str, str, str], str] = {}
    todo = points if points is not None else sweep.points()
    for n, point in enumerate(todo, 1):
        key = sweep.series_key(point)
        tag = f"[{n}/{len(todo)}] {point.point_id}"
        previous = store.point_result(point.point_id)
        if store.is_final(point.point_id) and previous is not None:
            say(f"{tag}: already {previous['status']}, skipped")
            if sweep.slo and previous["status"] == "ok":
                done = Outcome(point, "ok", summary=previous.get("summary") or {})
                _note_breach(sweep.slo, done, stopped, key)
            elif previous["status"] == "skipped":
                stopped.setdefault(key, previous.get("reason", ""))
            continue
        if key in stopped:
            outcome = Outcome(point, "skipped", stopped[key])
            store.write_point(point.point_id, {**outcome.as_dict(), "ended": utc_now()})
            say(f"{tag}: skipped ({stopped[key]})")
            outcomes.append(outcome)
            continue
        say(f"{tag}: {point.users} users for {point.duration_s:g} s")
        outcome = run_point(point, store, say)
        outcomes.append(outcome)
        say(f"  -> {describe(outcome)}")
        if sweep.slo:
            _note_breach(sweep.slo, outcome, stopped, key)
    return outcomes


def _note_breach(
    slo: SLO, outcome: Outcome, stopped: dict[tuple[str, str, str], str], key: tuple[str, str, str]
) -> None:
    breach = slo_breach(slo, outcome)
    if breach and key not in stopped:
        stopped[key] = f"SLO stop: {breach} at {outcome.point.users} users"


def describe(outcome: Outcome) -> str:
    """One line: the reason of a point that is not ok, else its main measurement's figures."""
    if outcome.status != "ok":
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
