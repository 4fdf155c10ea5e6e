"""`python -m benchmarks.generator` (make bench-generator): does the generator outrun the server?

Issue 16's targets, each measured in this one run, the server pinned to CPU 0 and every
generator (ours, and the yardsticks) to CPU 1, one after the other or side by side:

    capacity   the highest open-model rate (scenarios/echo_rate.py, one Locust process) one core
               sustains at 1,000 and at 10,000 connections: >= 95 % of the scheduled sends made,
               the generator's self-check clean, no failure. A coarse-to-fine search of short
               steps (ramp discarded) against the fastest sink found (the picows sink or our raw
               target, whichever serves more echoes per server CPU second), next to the same
               search for the reference client (benchmarks/reference.py, picows + uvloop).
               Targets >= 40,000 msgs/s at 1,000 and >= 20,000 at 10,000 connections.
    fidelity   1,000 connections x 10 msgs/s at the raw target: our corrected p50/p99 next to
               the reference client's on the same schedule; broadcast (1,000 subscribers, one
               publisher at 10/s) publish-to-receive p50/p99 next to a reference subscriber set.
               Target: each <= 1.5x the reference.
    closed     closed-loop scenarios/echo.py round trips per CPU second against the naive Locust
               user (benchmarks/naive_echo.py), side by side on one CPU. Target >= 3x. With it,
               what µs recording costs (side by side with --no-histograms, and directly).
    memory     generator KiB per idle connection (scenarios/hold.py): Locust RSS with 10,000
               held minus with a handful, per connection. Target <= 4 KiB.

The machine may be shared: every figure that matters is a ratio of runs made in the same run,
and the load average is printed next to each section. The run is stored like users' runs:
results/<run-id>/ with meta.json (provenance), figures.json and figures.csv, and every
Locust step's files under points/. Child processes run this tree's code (PYTHONPATH), so a
snapshot of any commit can be measured with the same venv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from benchmarks import closed_loop, locust_step, pinned
from common import schema
from common.schema import PointStatus, RunStatus, utc_now
from harness import provenance
from harness.store import RunStore, new_run_id

SECTIONS = ("capacity", "fidelity", "closed", "memory")
T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
SERVER_CPU, GENERATOR_CPU = 0, 1
SENDS_MADE_MIN = 0.95
CAPACITY_CONNECTIONS = (1_000, 10_000)
CAPACITY_START = {1_000: 10_000.0, 10_000: 5_000.0}  # msgs/s, the search's first step
CAPACITY_TARGET = {1_000: 40_000.0, 10_000: 20_000.0}
FIDELITY_RATIO_MAX = 1.5
CLOSED_RATIO_MIN = 3.0
MEMORY_KIB_MAX = 4.0
RECORDING_PCT_MAX = 5.0  # the old benchmark's target for µs recording
MEMORY_CONNECTIONS, MEMORY_FEW = 10_000, 10


@dataclass
class Settings:
    """Durations and step counts; --quick shortens them all for iterating."""

    measure_s: float  # steady seconds of a Locust step (after the ramp)
    reference_s: float  # measured seconds of a reference run (after its warm-up)
    capacity_steps: int  # search steps per connection count
    fidelity_rounds: int
    closed_rounds: int
    closed_s: int
    sink_rounds: int
    retries: int  # capacity: more tries of a failed step

    @classmethod
    def of(cls, quick: bool) -> Settings:
        if quick:
            return cls(4, 3, 4, 1, 1, 5, 1, 0)
        return cls(7, 6, 5, 2, 3, 10, 2, 1)


@dataclass
class Figure:
    """One row of a section's table, and the target it is judged against."""

    section: str
    metric: str
    unit: str
    ours: float | None
    reference: float | None
    reference_name: str
    target: str  # "ours>=40000", "ratio<=1.5", "ratio>=3", "ours<=4", or "" (context only)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.reference:
            return None
        return self.ours / self.reference

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        subject, op, limit = _parse_target(self.target)
        value = self.ours if subject == "ours" else self.ratio
        if value is None:
            return None
        return value >= limit if op == ">=" else value <= limit

    def target_text(self) -> str:
        if not self.target:
            return ""
        subject, op, limit = _parse_target(self.target)
        sign = "≥" if op == ">=" else "≤"
        if subject == "ours":
            return f"{sign} {_number(limit)} {self.unit}"
        return f"{sign} {limit:g}x ref"

    def distance(self) -> str:
        """One line: the target met, or how far off it is."""
        met = self.met
        name = f"{self.section}: {self.metric}"
        if met is None:
            return f"{name}: not measured ({self.note or 'no figure'})"
        subject, op, limit = _parse_target(self.target)
        value = self.ours if subject == "ours" else self.ratio
        assert value is not None
        if value == 0:
            return f"{name}: MISSED (0: no step met it; {self.note})"
        shown = f"{_number(value)} {self.unit}" if subject == "ours" else f"{value:.2f}x ref"
        if met:
            return f"{name}: MET ({shown}, target {self.target_text()})"
        factor = limit / value if op == ">=" else value / limit
        return (f"{name}: MISSED by {factor:.2f}x ({shown}, target {self.target_text()}; "
                f"{'raise' if op == '>=' else 'cut'} it {factor:.2f}x)")


def _parse_target(target: str) -> tuple[str, str, float]:
    for op in (">=", "<="):
        if op in target:
            subject, limit = target.split(op)
            return subject, op, float(limit)
    raise ValueError(target)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


@dataclass
class Bench:
    """The run: where it is stored, what it found so far."""

    store: RunStore
    settings: Settings
    profile: bool
    connections: tuple[int, ...] = CAPACITY_CONNECTIONS
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    steps: int = 0

    def step_prefix(self, name: str) -> Path:
        self.steps += 1
        return self.store.point_dir(f"{self.steps:03d}-{name}") / "locust"

    def log(self, name: str) -> Path:
        return self.store.root / f"{name}.log"

    def say(self, text: str) -> None:
        print(text, flush=True)

    def save(self) -> None:
        rows = [{**asdict(f), "ratio": f.ratio, "met": f.met, "target_text": f.target_text()}
                for f in self.figures]
        document = {"figures": rows, "details": self.details}
        (self.store.root / "figures.json").write_text(json.dumps(document, indent=1) + "\n")
        with (self.store.root / "figures.csv").open("w", newline="") as f:
            columns = ("section", "metric", "unit", "ours", "reference", "reference_name",
                       "ratio", "target", "met", "note")
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


# ---------------------------------------------------------------------------- reference runs


def reference(mode: str, server: pinned.Server, log: Path, *args: str) -> dict[str, Any]:
    """One run of benchmarks/reference.py on the generator CPU; its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.reference", mode, "--url", server.url,
           "--server-pid", str(server.process.pid), *args]
    proc = pinned.spawn(cmd, GENERATOR_CPU, log, stdout_pipe=True)
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        pinned.stop(proc)
    lines = [line for line in (out or "").splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise RuntimeError(f"reference {mode} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def on_live(server: pinned.Server, bench: Bench, what: str, run: Callable[[], T]) -> T:
    """`run()` against `server`; if the server died meanwhile, start it again and run once more.

    (On a shared box another process may kill ours; a step that lost its server measured
    nothing, and says so in details.server_restarts.)
    """
    server.revive()
    try:
        result = run()
    except Exception:
        if server.alive:
            raise
    else:
        if server.alive:
            return result
    bench.say(f"  ({server.name} died during {what}: started again, {what} repeated)")
    bench.details.setdefault("server_restarts", []).append(what)
    server.revive()
    return run()


# ---------------------------------------------------------------------------- capacity


@dataclass
class Trial:
    """One capacity step: a total rate, whether it was kept, whether the self-check was clean."""

    msgs_per_s: float
    achieved_msgs_per_s: float
    made_fraction: float
    passed: bool  # kept: >= 95 % of sends made, CPU under 90 %, no failure (drives the search)
    clean: bool  # kept, and the self-check rule passed on the steady windows
    why: str
    cpu_pct: float
    server_cpu_pct: float

    @property
    def cpu_us_per_msg(self) -> float | None:
        """Generator CPU per message sent and echoed: robust to a shared core, unlike rates."""
        if not self.achieved_msgs_per_s or self.cpu_pct >= locust_step.SATURATED_PCT:
            return None
        return self.cpu_pct / 100 * 1e6 / self.achieved_msgs_per_s


def search(trial: Callable[[float], Trial], start: float, steps: int,
           retries: int = 0) -> tuple[float, list[Trial]]:
    """Coarse to fine: double (or halve) until the verdict flips, then bisect; best passed rate.

    A failed step is tried again up to `retries` times (on a shared core, another process's
    burst can fail a step the generator sustains); a pass in any try is a pass.
    """
    best, worst = 0.0, float("inf")
    rate, trials = start, []
    for _ in range(steps):
        result = trial(rate)
        trials.append(result)
        for _ in range(retries):
            if result.passed:
                break
            result = trial(rate)
            trials.append(result)
        if result.passed:
            best = max(best, rate)
        else:
            worst = min(worst, rate)
        if worst == float("inf"):
            rate = rate * 2
        elif best == 0.0:
            rate = rate / 2
        else:
            if worst / best < 1.1:
                break
            rate = (best + worst) / 2
    return best, trials


def source_ips(step: int, count: int) -> str:
    """Fresh loopback source addresses per step: 10,000 closed connections leave TIME_WAITs."""
    return ",".join(f"127.0.{1 + step % 250}.{n + 1}" for n in range(count))


def our_trial(bench: Bench, sink: pinned.Server, connections: int, msgs_per_s: float,
              profile_to: Path | None = None) -> Trial:
    prefix = bench.step_prefix(f"capacity-ours-{connections}-{msgs_per_s:.0f}")
    options = ["--rate", f"{msgs_per_s / connections:.6g}"]
    if connections > 1_000:
        options += ["--ws-source-ips", source_ips(bench.steps, 2)]
    during = None
    if profile_to is not None:
        def during(pid: int) -> None:
            time.sleep(locust_step.SETTLE_S)
            _profile(pid, profile_to, seconds=bench.settings.measure_s)
    step = locust_step.run(
        "echo_rate", sink.url, connections, bench.settings.measure_s, prefix, GENERATOR_CPU,
        options, spawn_rate=min(connections, 2_000), server=sink, during=during,
    )  # fmt: skip
    due = step.counters.get("echo sends due")
    made = step.counters.get("echo sends made")
    if due and made is not None:
        fraction = made / due
    else:  # the old engine: echoes of the steady windows against the schedule
        scheduled = msgs_per_s * step.steady_s
        echoes = step.latency.get("echo uncorrected", {}).get("count", 0)
        fraction = echoes / scheduled if scheduled else 0.0
    why = []
    if not step.steady_s:
        why.append(f"no steady state: not all {connections:,} connected in time, or no "
                   f"results ({step.failure_text or 'no error'})")
    elif fraction < SENDS_MADE_MIN:
        why.append(f"{fraction:.0%} of sends made")
    if step.saturated:
        why.append(f"CPU {step.steady_cpu_pct:.0f}%")
    if step.failures and step.steady_s:
        why.append(f"{step.failures} failures ({step.failure_text})")
    return Trial(msgs_per_s, step.count_per_s("echo uncorrected"), fraction, not why,
                 not why and not step.bound, "; ".join(why) or step.verdict,
                 step.steady_cpu_pct, step.server_cpu_pct)


def reference_trial(bench: Bench, sink: pinned.Server, connections: int,
                    msgs_per_s: float) -> Trial:
    extra = ["--source-ips", source_ips(bench.steps + 100, 2)] if connections > 1_000 else []
    bench.steps += 1
    result = reference(
        "rate", sink, bench.log("reference"), "--connections", str(connections),
        "--rate", f"{msgs_per_s / connections:.6g}", "--warmup-s", "2",
        "--duration-s", str(bench.settings.reference_s), *extra,
    )  # fmt: skip
    fraction = result["sends_made"] / max(result["sends_due"], 1)
    why = []
    if fraction < SENDS_MADE_MIN:
        why.append(f"{fraction:.0%} of sends made")
    if result["cpu_pct"] >= locust_step.SATURATED_PCT:
        why.append(f"CPU {result['cpu_pct']:.0f}%")
    if result["errors"]:
        why.append(f"{result['errors']} errors")
    lag_us, p99_us = result["send_lag"]["p99_us"], result["corrected"]["p99_us"]
    clean = not why and not locust_step.lag_too_big(lag_us, p99_us)
    achieved = result["corrected"]["count"] / result["duration_s"]
    verdict = (f"{'ok' if clean else 'BOUND'} (send lag p99 {lag_us:,} µs, limit "
               f"{locust_step.delay_limit_us(p99_us):,.0f} µs, CPU {result['cpu_pct']:.0f}%)")
    return Trial(msgs_per_s, achieved, fraction, not why, clean, "; ".join(why) or verdict,
                 result["cpu_pct"], result["server_cpu_pct"])


def pick_sink(bench: Bench) -> str:
    """The sink that costs the least server CPU per echo, of picows and raw (uvloop).

    Measured on the capacity workload itself (the reference client, 1,000 connections at
    10,000 msgs/s, no batching): a blast of pipelined echoes would flatter whichever sink
    coalesces writes, and one client core cannot saturate either sink anyway. Extrapolated
    to a whole core: echoes/s / server CPU share. Rounds alternate A B B A against drift.
    """
    per_core: dict[str, list[float]] = {"picows": [], "raw": []}
    rows = []
    for round_no in range(bench.settings.sink_rounds):
        for name in list(per_core)[:: -1 if round_no % 2 else 1]:
            with pinned.server(name, pinned.target_command(name), SERVER_CPU,
                               bench.log(f"sink-{name}")) as sink:
                result = reference("rate", sink, bench.log("reference"), "--connections",
                                   "1000", "--rate", "10", "--warmup-s", "1", "--duration-s", "3")
            echoes_per_s = result["corrected"]["count"] / result["duration_s"]
            server_pct = result["server_cpu_pct"]
            estimate = echoes_per_s / max(server_pct / 100, 0.01)
            per_core[name].append(estimate)
            rows.append({"sink": name, **result, "echoes_per_server_cpu_s": round(estimate)})
            bench.say(f"  sink {name:<7} {echoes_per_s:>8,.0f} echoes/s at server CPU "
                      f"{server_pct:3.0f}%: {estimate:>9,.0f} echoes per server CPU second "
                      f"(client CPU {result['cpu_pct']:.0f}%, p50 {result['corrected']['p50_us']}"
                      " µs)")
    medians = {name: statistics.median(values) for name, values in per_core.items()}
    best = max(medians, key=medians.__getitem__)
    other = min(medians, key=medians.__getitem__)
    bench.details["sinks"] = {"rounds": rows, "echoes_per_server_cpu_s": medians, "used": best}
    bench.say(f"  fastest sink: {best}, {medians[best] / medians[other]:.2f}x {other}'s echoes "
              "per server CPU second")
    return best


def section_capacity(bench: Bench) -> None:
    bench.say(f"\n== capacity  ({pinned.load_average()})")
    sink_name = pick_sink(bench)
    details: dict[str, Any] = {"sink": sink_name}
    with pinned.server(sink_name, pinned.target_command(sink_name), SERVER_CPU,
                       bench.log(f"sink-{sink_name}")) as sink:
        for connections in bench.connections:
            trials_of: dict[str, list[Trial]] = {}
            ours, trials = capacity_search(bench, sink, "ours", connections,
                                           CAPACITY_START[connections])
            trials_of["ours"] = trials
            details[f"ours_{connections}"] = [asdict(t) for t in trials]
            if bench.profile and connections == 1_000:
                # The busiest rate it still kept up with: where its CPU goes, not its idle time.
                rate = max((t.msgs_per_s for t in trials if t.made_fraction >= SENDS_MADE_MIN),
                           default=CAPACITY_START[connections])
                details["profile"] = profile_step(bench, sink, connections, rate)
            theirs, trials = capacity_search(bench, sink, "reference", connections,
                                             ours or CAPACITY_START[connections])
            trials_of["reference"] = trials
            details[f"reference_{connections}"] = [asdict(t) for t in trials]
            clean = {who: max((t.msgs_per_s for t in trials_of[who] if t.clean), default=0.0)
                     for who in trials_of}
            bench.figures.append(Figure(
                "capacity", f"msgs/s at {connections:,} conns, self-check clean", "msgs/s",
                clean["ours"], clean["reference"], "picows client",
                f"ours>={CAPACITY_TARGET[connections]:.0f}",
                f"sink {sink_name}; highest step with >= {SENDS_MADE_MIN:.0%} of sends made, "
                "no failure, CPU < 90 %, delay p99 <= max(1 ms, 25 % of corrected p99)",
            ))  # fmt: skip
            bench.figures.append(Figure(
                "capacity", f"msgs/s at {connections:,} conns, sends kept", "msgs/s",
                ours or None, theirs or None, "picows client",
                f"ours>={CAPACITY_TARGET[connections]:.0f}",
                f"the search's answer: >= {SENDS_MADE_MIN:.0%} of sends made, no failure, "
                "CPU < 90 %, whatever the delay",
            ))  # fmt: skip
            # Per message at one rate both ran (the reference's search starts at ours' answer):
            # CPU per message falls as the rate rises, so only a common rate compares.
            common = ours or CAPACITY_START[connections]
            per_msg = {who: [t.cpu_us_per_msg for t in trials_of[who]
                             if t.cpu_us_per_msg and t.msgs_per_s == common] for who in trials_of}
            budget_us = 1e6 / CAPACITY_TARGET[connections]
            bench.figures.append(Figure(
                "capacity", f"  CPU µs per msg at {connections:,} x {common:,.0f}/s",
                "µs", statistics.median(per_msg["ours"]) if per_msg["ours"] else None,
                statistics.median(per_msg["reference"]) if per_msg["reference"] else None,
                "picows client", f"ours<={budget_us:.0f}",
                f"generator CPU time per message at {common:,.0f} msgs/s, both generators: "
                "what a whole core would give, whatever else shares it; "
                f"{CAPACITY_TARGET[connections]:,.0f} msgs/s on a core needs <= {budget_us:.0f} µs",
            ))  # fmt: skip
    bench.details["capacity"] = details


def capacity_search(bench: Bench, sink: pinned.Server, who: str, connections: int,
                    start: float) -> tuple[float, list[Trial]]:
    """The search for ours or the reference client at one connection count, step by step."""
    trial = our_trial if who == "ours" else reference_trial

    def run_trial(rate: float) -> Trial:
        result = on_live(sink, bench, f"{who} at {rate:,.0f} msgs/s",
                         lambda: trial(bench, sink, connections, rate))
        bench.say(f"  {who:<9} {connections:>6,} conns {rate:>9,.0f} msgs/s: "
                  f"{'kept' if result.passed else 'lost'}/{'clean' if result.clean else 'BOUND'}"
                  f"  made {result.made_fraction:4.0%}, "
                  f"got {result.achieved_msgs_per_s:,.0f}/s, CPU {result.cpu_pct:3.0f}%"
                  f" ({result.cpu_us_per_msg or 0:.1f} µs/msg), "
                  f"server {result.server_cpu_pct:3.0f}%  {result.why}")
        return result

    return search(run_trial, start, bench.settings.capacity_steps, bench.settings.retries)


def profile_step(bench: Bench, sink: pinned.Server, connections: int, rate: float) -> dict:
    """py-spy of Locust in one more step at a rate it could not sustain: where the time goes."""
    out = bench.store.root / f"profile-ours-{connections}-{rate:.0f}.txt"
    trial = our_trial(bench, sink, connections, rate, profile_to=out)
    top = out.read_text().splitlines()[:25] if out.exists() else ["(py-spy gave nothing)"]
    bench.say(f"  py-spy of Locust at {connections:,} conns x {rate:,.0f} msgs/s (CPU "
              f"{trial.cpu_pct:.0f}%), self time by function:")
    for line in top:
        bench.say(f"    {line}")
    return {"msgs_per_s": rate, "top": top, "file": str(out)}


def _profile(pid: int, out: Path, seconds: float) -> None:
    raw = out.with_suffix(".collapsed")
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(max(int(seconds), 1)),
           "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking", "--gil"]
    py_spy = Path(sys.executable).with_name("py-spy")
    cmd[0] = str(py_spy) if py_spy.exists() else cmd[0]
    try:
        subprocess.run(cmd, capture_output=True, timeout=seconds + 30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        out.write_text(f"py-spy failed: {exc}\n")
        return
    if raw.exists():
        out.write_text("\n".join(top_self_time(raw)) + "\n")


def top_self_time(collapsed: Path, count: int = 25) -> list[str]:
    """Self time per function from py-spy's collapsed stacks, as `pct  function (file:line)`."""
    totals: dict[str, int] = {}
    grand = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        leaf = leaf.split(":", 1)[0] + ":" + leaf.rsplit(":", 1)[-1] if ":" in leaf else leaf
        totals[leaf] = totals.get(leaf, 0) + int(samples)
        grand += int(samples)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
    return [f"{100 * n / max(grand, 1):5.1f}%  {name}" for name, n in ranked]


# ---------------------------------------------------------------------------- fidelity


def section_fidelity(bench: Bench) -> None:
    bench.say(f"\n== fidelity  ({pinned.load_average()})")
    settings = bench.settings
    ours: dict[str, list[dict[str, int]]] = {"echo": [], "broadcast": []}
    refs: dict[str, list[dict[str, int]]] = {"echo": [], "broadcast": []}
    broadcast_options = ["--rooms", "1", "--publishers", "1", "--publish-rate", "10",
                         "--payload-bytes", "64"]
    with pinned.server("raw", pinned.target_command("raw"), SERVER_CPU, bench.log("raw")) as raw:
        for _ in range(settings.fidelity_rounds):
            step = on_live(raw, bench, "echo_rate", lambda: locust_step.run(
                "echo_rate", raw.url, 1_000, settings.measure_s,
                bench.step_prefix("fidelity-echo-ours"), GENERATOR_CPU, ["--rate", "10"],
                server=raw,
            ))  # fmt: skip
            ours["echo"].append(step.latency.get("echo corrected", {}))
            _say_latency(bench, "ours", "echo corrected", step.latency.get("echo corrected"),
                         f"CPU {step.steady_cpu_pct:.0f}%, server {step.server_cpu_pct:.0f}%, "
                         f"{step.verdict}")
            result = on_live(raw, bench, "reference echo", lambda: reference(
                "rate", raw, bench.log("reference"), "--connections", "1000", "--rate", "10",
                "--duration-s", str(settings.reference_s)))
            refs["echo"].append(result["corrected"])
            _say_latency(bench, "reference", "echo corrected", result["corrected"],
                         f"CPU {result['cpu_pct']:.0f}%, server {result['server_cpu_pct']:.0f}%, "
                         f"send lag p99 {result['send_lag']['p99_us']:,} µs")
            step = on_live(raw, bench, "broadcast", lambda: locust_step.run(
                "broadcast", raw.url, 1_001, settings.measure_s,
                bench.step_prefix("fidelity-broadcast-ours"), GENERATOR_CPU, broadcast_options,
                server=raw, main_name="broadcast",
            ))  # fmt: skip
            ours["broadcast"].append(step.latency.get("broadcast", {}))
            _say_latency(bench, "ours", "broadcast", step.latency.get("broadcast"),
                         f"CPU {step.steady_cpu_pct:.0f}%, server {step.server_cpu_pct:.0f}%, "
                         f"{step.verdict}")
            result = on_live(raw, bench, "reference broadcast", lambda: reference(
                "broadcast", raw, bench.log("reference"), "--connections", "1000", "--rate",
                "10", "--payload-bytes", "64", "--duration-s", str(settings.reference_s)))
            refs["broadcast"].append(result["broadcast"])
            _say_latency(bench, "reference", "broadcast", result["broadcast"],
                         f"CPU {result['cpu_pct']:.0f}%, server {result['server_cpu_pct']:.0f}%")
    for kind, label in (("echo", "echo 1,000 x 10/s corrected"),
                        ("broadcast", "broadcast 1,000 subs x 10/s")):
        for column in ("p50_us", "p99_us"):
            mine = [r[column] for r in ours[kind] if r.get("count")]
            theirs = [r[column] for r in refs[kind] if r.get("count")]
            bench.figures.append(Figure(
                "fidelity", f"{label} {column[:3]}", "µs",
                statistics.median(mine) if mine else None,
                statistics.median(theirs) if theirs else None, "picows client",
                f"ratio<={FIDELITY_RATIO_MAX}",
                f"median of {len(mine)} round(s), steady windows, raw target (uvloop)",
            ))  # fmt: skip
    bench.details["fidelity"] = {"ours": ours, "reference": refs}


def _say_latency(bench: Bench, who: str, name: str, row: dict[str, int] | None, note: str) -> None:
    row = row or {}
    bench.say(f"  {who:<9} {name:<16} n={row.get('count', 0):>7,}  p50 {row.get('p50_us', 0):>7,}"
              f" µs  p99 {row.get('p99_us', 0):>8,} µs  p99.9 {row.get('p999_us', 0):>8,} µs  "
              f"{note}")


# ---------------------------------------------------------------------------- closed loop


def section_closed(bench: Bench) -> None:
    bench.say(f"\n== closed loop  ({pinned.load_average()})")
    settings = bench.settings
    args = argparse.Namespace(users=10, duration_s=settings.closed_s, locust_cpu=GENERATOR_CPU)
    tmp = bench.store.point_dir("closed-loop")
    per_cpu, per_s, recording, echo_cpu_us, naive_cpu_us = [], [], [], [], []
    with pinned.server("raw", pinned.target_command("raw"), SERVER_CPU, bench.log("raw")) as raw:
        for round_no in range(settings.closed_rounds):
            naive, echo = on_live(raw, bench, "naive with echo", lambda: closed_loop.run_together(
                ("naive", "echo"), raw.url, raw.process, args, tmp))
            per_cpu.append(naive.cpu_us_per_round_trip / echo.cpu_us_per_round_trip)
            per_s.append(echo.rate / naive.rate)
            echo_cpu_us.append(echo.cpu_us_per_round_trip)
            naive_cpu_us.append(naive.cpu_us_per_round_trip)
            bench.say(f"  round {round_no + 1}: naive {naive.rate:,.0f} rt/s "
                      f"({naive.cpu_us_per_round_trip:.1f} CPU µs/rt) | echo {echo.rate:,.0f} "
                      f"rt/s ({echo.cpu_us_per_round_trip:.1f} CPU µs/rt), side by side; "
                      f"server {naive.server_cpu_pct:.0f}%")
            try:
                with_hdr, without = on_live(raw, bench, "echo with echo, no hdr",
                                            lambda: closed_loop.run_together(
                                                ("echo", "echo, no hdr"), raw.url, raw.process,
                                                args, tmp))
            except SystemExit as exc:  # the new engine may not have --no-histograms
                bench.say(f"  echo without histograms not run: {str(exc).splitlines()[0]}")
                continue
            recording.append(100 * (with_hdr.cpu_us_per_round_trip
                                    / without.cpu_us_per_round_trip - 1))
    bench.figures.append(Figure(
        "closed", "echo round trips per CPU second", "rt/CPU s",
        1e6 / statistics.median(echo_cpu_us), 1e6 / statistics.median(naive_cpu_us),
        "naive Locust user", f"ratio>={CLOSED_RATIO_MIN}",
        f"side by side on CPU {GENERATOR_CPU}, 10 users each, {len(per_cpu)} round(s): "
        f"per-CPU ratio (median of pairs) {statistics.median(per_cpu):.2f}x, round trips/s "
        f"ratio {statistics.median(per_s):.2f}x",
    ))  # fmt: skip
    direct_us = _recording_direct_us()
    direct_pct = 100 * direct_us / statistics.median(echo_cpu_us) if direct_us else None
    bench.figures.append(Figure(
        "closed", "µs recording cost, side by side", "%",
        statistics.median(recording) if recording else None, None, "",
        f"ours<={RECORDING_PCT_MAX}",
        "more CPU per round trip than echo --no-histograms" if recording
        else "--no-histograms not available",
    ))  # fmt: skip
    bench.figures.append(Figure(
        "closed", "µs recording cost per sample, direct", "CPU µs", direct_us, None, "", "",
        f"{direct_pct:.1f}% of echo's CPU per round trip" if direct_pct is not None else
        "scenarios.latency Recorder/Merger not available",
    ))  # fmt: skip
    bench.details["closed"] = {"per_cpu_ratios": per_cpu, "per_s_ratios": per_s,
                               "recording_pct": recording, "recording_direct_us": direct_us}


def _recording_direct_us() -> float | None:
    """CPU µs per latency sample recorded, shipped and merged (the old benchmark's figure)."""
    try:
        return closed_loop.recording_us_per_sample(20_000)
    except Exception:  # the engine under test moved or changed its recorder
        return None


# ---------------------------------------------------------------------------- memory


def held_rss_bytes(bench: Bench, sink: pinned.Server, users: int) -> tuple[int, int]:
    """Locust RSS once `users` connections of scenarios/hold.py are open; (rss, connections)."""
    prefix = bench.step_prefix(f"memory-hold-{users}")
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locust_step.SCENARIOS / "hold.py"),
        "--headless", "--host", sink.url, "-u", str(users), "-r", str(min(users, 2_000)),
        "-t", "60s", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        "--ws-source-ips", source_ips(bench.steps + 200, 2),
    ]  # fmt: skip
    started = utc_now()
    proc = pinned.spawn(cmd, GENERATOR_CPU, prefix.with_name("locust.log"), cwd=prefix.parent)
    try:
        process = psutil.Process(proc.pid)

        def established() -> int:
            conns = process.net_connections("tcp")
            return sum(c.status == psutil.CONN_ESTABLISHED for c in conns)

        locust_step.wait_for(lambda: established() >= users, timeout_s=45, every_s=1.0)
        held = established()
        time.sleep(2.0)  # let the ramp's garbage go
        samples = []
        for _ in range(3):
            samples.append(process.memory_info().rss)
            time.sleep(0.5)
        rss = int(statistics.median(samples))
    finally:
        pinned.stop(proc)
    short = f"only {held:,} of {users:,} connections opened" if held < users else ""
    schema.write_point(prefix.parent, {
        "point": {"point_id": prefix.parent.name, "target": sink.name, "scenario": "hold",
                  "users": users, "duration_s": 1.5, "options": cmd[cmd.index("--ws-source-ips"):]},
        "status": PointStatus.OK, "reason": "", "warnings": [short] if short else [],
        "summary": {"measured_s": 1.5, "connections_opened": held,
                    "client": {"rss_bytes_max": rss}},
        "started": started, "ended": utc_now(),
    })  # fmt: skip
    return rss, held


def section_memory(bench: Bench) -> None:
    bench.say(f"\n== memory  ({pinned.load_average()})")
    with pinned.server("picows", pinned.target_command("picows"), SERVER_CPU,
                       bench.log("sink-picows")) as sink:
        few_rss, few = on_live(sink, bench, "hold few",
                               lambda: held_rss_bytes(bench, sink, MEMORY_FEW))
        many_rss, many = on_live(sink, bench, "hold many",
                                 lambda: held_rss_bytes(bench, sink, MEMORY_CONNECTIONS))
    kib = (many_rss - few_rss) / max(many - few, 1) / 1024
    bench.say(f"  Locust RSS {few_rss / 2**20:.1f} MiB with {few} held, {many_rss / 2**20:.1f} MiB "
              f"with {many:,} held: {kib:.2f} KiB per connection")
    bench.figures.append(Figure(
        "memory", f"KiB per idle connection at {MEMORY_CONNECTIONS:,}", "KiB", kib, None, "",
        f"ours<={MEMORY_KIB_MAX}",
        f"RSS {many_rss / 2**20:.1f} MiB at {many:,} minus {few_rss / 2**20:.1f} MiB at {few}",
    ))  # fmt: skip
    bench.details["memory"] = {"few": [few, few_rss], "many": [many, many_rss], "kib": kib}
    if many < MEMORY_CONNECTIONS:
        bench.figures[-1].note += f"; only {many:,} of {MEMORY_CONNECTIONS:,} were open"


# ---------------------------------------------------------------------------- the printout


def print_tables(bench: Bench, label: str) -> list[str]:
    lines = [f"\ngenerator benchmark ({label}): server CPU {SERVER_CPU}, generators CPU "
             f"{GENERATOR_CPU}; {pinned.load_average()}"]
    for section in SECTIONS:
        rows = [f for f in bench.figures if f.section == section]
        if not rows:
            continue
        lines.append(f"\n{section}")
        header = (f"  {'metric':<44}{'ours':>12}{'reference':>12}{'ratio':>8}  {'target':<20}"
                  f"{'':<5}")
        lines += [header, "  " + "-" * (len(header) - 2)]
        for f in rows:
            ours = "n/a" if f.ours is None else _number(f.ours)
            ref = "" if f.reference is None else _number(f.reference)
            ratio = "" if f.ratio is None else f"{f.ratio:.2f}x"
            verdict = {True: "PASS", False: "MISS", None: ""}[f.met]
            lines.append(f"  {f.metric[:44]:<44}{ours:>12}{ref:>12}{ratio:>8}  "
                         f"{f.target_text():<20}{verdict}")
            if f.note:
                lines.append(f"      {f.note}" + (f" (ref: {f.reference_name})"
                                                  if f.reference_name and f.reference else ""))
    lines.append("")
    lines += [f.distance() for f in bench.figures if f.target]
    for section, error in bench.details.get("errors", {}).items():
        lines.append(f"{section}: FAILED, not measured: {error[:200]}")
    return lines


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="shorter steps, fewer rounds")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the Locust process in a capacity step it cannot sustain")
    parser.add_argument("--connections", default="1000,10000",
                        help="capacity: connection counts to search (default %(default)s)")
    parser.add_argument("--label", default="", help="what is measured, e.g. 'baseline'")
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="where the run folder goes (default %(default)s)")
    return parser.parse_args(argv)


RUNNERS: dict[str, Callable[[Bench], None]] = {
    "capacity": section_capacity,
    "fidelity": section_fidelity,
    "closed": section_closed,
    "memory": section_memory,
}


def _tree_label() -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown tree"
    return done.stdout.strip()[:80] if done.returncode == 0 else f"snapshot at {REPO}"


def _children_run_this_tree() -> None:
    # Locust and the targets import scenarios/ and targets/ from this tree, not the editable
    # install's: a snapshot of another commit is then measured with the same venv.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def sections_of(args: argparse.Namespace) -> Iterator[str]:
    return iter(args.only or SECTIONS)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not {SERVER_CPU, GENERATOR_CPU} <= os.sched_getaffinity(0):
        print(f"bench: needs CPUs {SERVER_CPU} and {GENERATOR_CPU}", file=sys.stderr)
        return 2
    _children_run_this_tree()
    # SIGTERM unwinds like Ctrl-C: servers and Locust stopped, the run stored as interrupted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    label = args.label or _tree_label()
    # Absolute: each Locust step runs in its own folder and gets --csv paths under this one.
    results_dir = args.results_dir.resolve()
    store = RunStore.create(results_dir / new_run_id("bench-generator"), "bench-generator")
    counts = tuple(int(n) for n in args.connections.split(","))
    if not set(counts) <= set(CAPACITY_CONNECTIONS):
        print(f"bench: --connections takes {CAPACITY_CONNECTIONS}", file=sys.stderr)
        return 2
    bench = Bench(store, Settings.of(args.quick), args.profile, counts)
    sections = list(sections_of(args))
    store.write_meta({
        "kind": "bench-generator", "run_id": store.root.name, "label": label,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "sections": sections,
        "quick": args.quick, "started": utc_now(), "ended": None, "status": RunStatus.RUNNING,
        "load_start": os.getloadavg(), **provenance.collect(),
    })  # fmt: skip
    print(f"generator benchmark: {label}; sections {', '.join(sections)}"
          f"{' (quick)' if args.quick else ''}; run -> {store.root}", flush=True)
    status = RunStatus.INTERRUPTED
    try:
        for section in sections:
            try:
                RUNNERS[section](bench)
            except Exception as exc:  # one section's failure must not lose the others
                bench.say(f"  section {section} FAILED: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}")
                bench.details.setdefault("errors", {})[section] = repr(exc)[-2000:]
            bench.save()
        status = RunStatus.FAILED if bench.details.get("errors") else RunStatus.COMPLETE
    finally:
        bench.save()
        lines = print_tables(bench, label)
        (store.root / "summary.txt").write_text("\n".join(lines) + "\n")
        store.update_meta(ended=utc_now(), status=status, load_end=os.getloadavg())
        print("\n".join(lines))
        print(f"\nstored: {store.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
