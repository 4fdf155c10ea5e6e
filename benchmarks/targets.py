"""`python -m benchmarks.targets`: echo throughput and idle-connection memory of the targets.

A benchmark, not a test. Every target gets the same treatment:

- echo: a fresh target pinned to one CPU, and a lean uvloop client pinned to another CPU in its
  own process (benchmarks/targets_client.py). The client keeps `--window` masked binary frames
  in flight on each of `--connections` connections, re-sending one frame per echo it receives.
  After a warm-up that is discarded it counts the echoes over `--duration` seconds. The CPU use
  of both processes over that window is recorded so a CPU-bound client is visible.
- idle: a fresh target; its RSS is read before and after the client opens `--idle` WebSocket
  connections that send nothing; /stats must then report exactly that many connections.

Children are started by benchmarks/pinned.py: pinned to their CPU, dying with this process,
stopped with SIGTERM then SIGKILL whatever happens here, their stderr kept in the point's folder.
The run is stored like users' runs (common/schema.py), in results/<run-id>-bench-targets-*/:

    meta.json                      kind, command, settings, placement, provenance, status
    points/TARGET-echo-cN-host/    point.json: msgs/s, CPU of the target and of the client
    points/TARGET-hold-cN-host/    point.json: the target's RSS idle and with N connections held

The table is printed from those files, so `--show RUN_DIR` prints a stored run's table again
without running anything; `wsbench report` and `wsbench compare` read the same folder.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import resource
import select
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from benchmarks import pinned
from benchmarks.targets_client import CLOSE_SIGNAL, WARMUP_S
from common import schema
from common.errors import WsbenchError
from common.procs import LineReader, last_line
from common.schema import PointParams, PointResult, PointStatus, RunStatus, Summary, utc_now
from harness import provenance
from harness.store import RunStore, new_run_id
from kernel.profile import HOST_PROFILE
from targets import TARGETS
from targets.protocol import DEFAULT_MAX_MESSAGE_BYTES, STATS_PATH

KIND = "bench-targets"
BASELINE = "aiohttp"
RAW = "raw"
RAW_MIN_ECHO_RATIO = 1.0  # raw echo throughput relative to aiohttp's
RAW_MAX_IDLE_KIB = 16.0  # raw server memory per idle connection
ECHO, HOLD = "echo", "hold"  # the points' scenarios, named as the suite's scenarios are
LIBRARIES = ("aiohttp", "websockets", "uvloop", "psutil")  # the versions the header shows

SETTLE_S = 0.5  # a fresh target's idle time before its baseline RSS is read
IDLE_HOLD_S = 1.0  # idle connections open before the second RSS reading
EVENT_TIMEOUT_S = 60.0
CLIENT_BUSY_PCT = 90.0  # a client this busy measures itself, not the server
NOT_AVAILABLE = "not available"
CLIENT_LOG = "client.log"
KIB = 1024


class BenchError(WsbenchError):
    """A target or client that failed to start or answer; reported per target, not raised out."""


# -- child processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    server_cpu: int
    client_cpu: int

    def describe(self) -> str:
        if self.server_cpu == self.client_cpu:
            return (f"server and client share CPU {self.server_cpu} (only one CPU available): "
                    "figures include the client's own cost")  # fmt: skip
        return (f"server pinned to CPU {self.server_cpu}, client to CPU {self.client_cpu} "
                "(sched_setaffinity)")  # fmt: skip


def choose_placement() -> Placement:
    cpus = sorted(os.sched_getaffinity(0))
    return Placement(cpus[0], cpus[1] if len(cpus) > 1 else cpus[0])


def client_command(mode: str, url: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "benchmarks.targets_client", mode, "--url", url,
        "--connections", str(args.connections), "--window", str(args.window),
        "--size", str(args.size), "--duration", str(args.duration), "--idle", str(args.idle),
    ]  # fmt: skip


class Events:
    """The client's stdout: one JSON event a line, each waited for with a bound.

    Read from the file descriptor, not the pipe's text buffer: a line already in a buffer
    would not wake select()."""

    def __init__(self, proc: subprocess.Popen[str], log_path: Path) -> None:
        assert proc.stdout is not None
        self.proc, self.log_path = proc, log_path
        self.reader = LineReader(proc.stdout)
        self.lines: deque[str] = deque()

    def next(self, event: str, timeout_s: float) -> dict[str, object]:
        """The next event, which must be `event`; BenchError if it is not, or never comes."""
        line = self._line(f"bench client waiting for {event!r}", timeout_s)
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("event") != event:
            raise BenchError(f"bench client sent {line!r}, expected {event!r}")
        return data

    def _line(self, what: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.lines:
            if self.reader.closed:
                why = last_line(self.log_path)
                raise BenchError(f"{what}: exited with status {self.proc.wait()}"
                                 + (f" ({why})" if why else ""))  # fmt: skip
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.reader.fd], [], [], left)[0]:
                raise BenchError(f"{what}: nothing after {timeout_s:g} s")
            self.lines.extend(self.reader.read())
        return self.lines.popleft()


@contextlib.contextmanager
def client(
    mode: str, url: str, args: argparse.Namespace, cpu: int, log_path: Path
) -> Iterator[Events]:
    """The client process on `cpu`, its events; stopped when the block exits."""
    proc = pinned.spawn(client_command(mode, url, args), cpu, log_path, stdout_pipe=True)
    try:
        yield Events(proc, log_path)
    finally:
        pinned.stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def target(name: str, cpu: int, point_dir: Path) -> contextlib.AbstractContextManager:
    """A fresh target on `cpu`, once it printed its ready line (pinned.server)."""
    return pinned.server(name, pinned.target_command(name), cpu, point_dir / schema.TARGET_LOG)


# -- readings ----------------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children."""
    return sum(sum(p.cpu_times()[:2]) for p in _tree(pid))


def core_times_s(cpu: int) -> tuple[float, float]:
    """(busy, total) seconds of one CPU since boot; busy includes softirq time, which loopback
    TCP spends outside any process's own CPU time."""
    times = psutil.cpu_times(percpu=True)[cpu]
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


def busy_pct(before: tuple[float, float], after: tuple[float, float]) -> float:
    total = after[1] - before[1]
    return 100 * (after[0] - before[0]) / total if total > 0 else 0.0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (workers with --processes > 1)."""
    return sum(p.memory_info().rss for p in _tree(pid))


def fetch_stats(url: str) -> dict[str, object]:
    """The target's /stats (plain HTTP on the WebSocket port, never through a proxy)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("GET", STATS_PATH)
        response = conn.getresponse()
        if response.status != 200:
            raise BenchError(f"GET {STATS_PATH}: HTTP {response.status}")
        return json.loads(response.read())
    finally:
        conn.close()


@dataclass(frozen=True)
class _CpuSample:
    at_s: float
    process_s: tuple[float, ...]
    core_s: tuple[tuple[float, float], ...]

    @classmethod
    def take(cls, pids: Sequence[int], cores: Sequence[int]) -> _CpuSample:
        return cls(time.monotonic(), tuple(map(cpu_s, pids)), tuple(map(core_times_s, cores)))

    def process_pct(self, later: _CpuSample) -> list[float]:
        wall_s = later.at_s - self.at_s
        pairs = zip(self.process_s, later.process_s, strict=True)
        return [100 * (after - before) / wall_s for before, after in pairs]

    def core_pct(self, later: _CpuSample) -> list[float]:
        return [busy_pct(a, b) for a, b in zip(self.core_s, later.core_s, strict=True)]


# -- measurements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoResult:
    msgs_per_s: float
    server_cpu_pct: float  # the process, % of one core
    client_cpu_pct: float
    server_core_busy_pct: float  # the CPU it is pinned to, whoever used it
    client_core_busy_pct: float
    lost_connections: int
    cores_shared: bool = False
    messages: int = 0  # echoes counted over measured_s
    measured_s: float = 0.0
    rss_bytes: int | None = None  # the target's, at the end of the measurement

    @property
    def client_bound(self) -> bool:
        """The client's core was saturated, so the figure measures the client. On a core of its
        own, softirq time counts too: it is loopback work the client's sends cause."""
        if self.cores_shared:
            return self.client_cpu_pct >= CLIENT_BUSY_PCT
        return max(self.client_cpu_pct, self.client_core_busy_pct) >= CLIENT_BUSY_PCT


@dataclass(frozen=True)
class IdleResult:
    rss_before_kib: float
    rss_after_kib: float
    opened: int
    server_connections: int

    @property
    def kib_per_conn(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / max(1, self.opened)


@dataclass
class TargetResult:
    name: str
    echo: EchoResult | None = None
    idle: IdleResult | None = None
    error: str | None = None


def measure_echo(
    name: str, args: argparse.Namespace, placement: Placement, point_dir: Path
) -> EchoResult:
    cores = (placement.server_cpu, placement.client_cpu)
    log = point_dir / CLIENT_LOG
    with target(name, placement.server_cpu, point_dir) as server, \
            client("echo", server.url, args, placement.client_cpu, log) as events:  # fmt: skip
        pids = (server.proc.pid, events.proc.pid)
        events.next("measuring", EVENT_TIMEOUT_S)
        first = _CpuSample.take(pids, cores)
        result = events.next("result", args.duration + EVENT_TIMEOUT_S)
        last = _CpuSample.take(pids, cores)
        rss = rss_bytes(server.proc.pid)
    server_pct, client_pct = first.process_pct(last)
    server_core, client_core = first.core_pct(last)
    return EchoResult(
        msgs_per_s=float(result["messages"]) / float(result["wall_s"]),  # type: ignore[arg-type]
        server_cpu_pct=server_pct,
        client_cpu_pct=client_pct,
        server_core_busy_pct=server_core,
        client_core_busy_pct=client_core,
        lost_connections=int(result["lost"]),  # type: ignore[call-overload]
        cores_shared=placement.server_cpu == placement.client_cpu,
        messages=int(result["messages"]),  # type: ignore[call-overload]
        measured_s=float(result["wall_s"]),  # type: ignore[arg-type]
        rss_bytes=rss,
    )


def measure_idle(
    name: str, args: argparse.Namespace, placement: Placement, point_dir: Path
) -> IdleResult:
    with target(name, placement.server_cpu, point_dir) as server:
        time.sleep(SETTLE_S)
        before = rss_bytes(server.proc.pid)
        log = point_dir / CLIENT_LOG
        with client("idle", server.url, args, placement.client_cpu, log) as events:
            opened = events.next("opened", EVENT_TIMEOUT_S)
            time.sleep(IDLE_HOLD_S)
            after = rss_bytes(server.proc.pid)
            server_connections = fetch_stats(server.url)["connections"]
            os.kill(events.proc.pid, CLOSE_SIGNAL)
            events.next("closed", EVENT_TIMEOUT_S)
    return IdleResult(
        rss_before_kib=before / KIB,
        rss_after_kib=after / KIB,
        opened=int(opened["connections"]),  # type: ignore[call-overload]
        server_connections=int(server_connections),  # type: ignore[call-overload]
    )


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def measure(
    name: str, args: argparse.Namespace, placement: Placement, store: RunStore
) -> TargetResult:
    """Both measurements of one target, each stored as a point as soon as it is made."""
    result = TargetResult(name)
    echo, hold = echo_params(name, args), hold_params(name, args)
    if importlib.util.find_spec(TARGETS[name]) is None:
        result.error = NOT_AVAILABLE
        for params in (echo, hold):
            store_point(store, params, utc_now(), reason=NOT_AVAILABLE)
        return result
    params, started = echo, utc_now()
    try:
        _say(f"{name}: echo, {args.duration:g} s ...")
        result.echo = measure_echo(name, args, placement, store.point_dir(echo["point_id"]))
        store_point(store, echo, started, echo_summary(result.echo),
                    warnings=echo_warnings(name, result.echo))  # fmt: skip
        params, started = hold, utc_now()
        _say(f"{name}: {args.idle} idle connections ...")
        result.idle = measure_idle(name, args, placement, store.point_dir(hold["point_id"]))
        store_point(store, hold, started, idle_summary(result.idle),
                    warnings=idle_warnings(name, result.idle, args.idle))  # fmt: skip
    # RuntimeError: a target that did not start (pinned.Server.start).
    except (BenchError, OSError, psutil.Error, RuntimeError) as exc:
        result.error = f"failed: {exc}"
        store_point(store, params, started, reason=_one_line(exc))
    return result


# -- the stored run ----------------------------------------------------------------------------


class EchoSummary(Summary, total=False):
    """An echo point's summary: the suite's keys, and what only this benchmark measures."""

    client: dict[str, float]  # the client process: cpu_pct_mean, core_busy_pct
    lost_connections: int
    cores_shared: bool


class HoldSummary(Summary, total=False):
    connections_opened: int  # by the client; summary["target"]["connections"] is /stats'


def echo_params(name: str, args: argparse.Namespace) -> PointParams:
    return {
        "point_id": f"{name}-{ECHO}-c{args.connections}-{HOST_PROFILE}", "target": name,
        "scenario": ECHO, "users": args.connections, "duration_s": args.duration,
        "options": ["--window", str(args.window), "--size", str(args.size)],
        "processes": 1, "target_processes": 1, "kernel_profile": HOST_PROFILE,
    }  # fmt: skip


def hold_params(name: str, args: argparse.Namespace) -> PointParams:
    return {
        "point_id": f"{name}-{HOLD}-c{args.idle}-{HOST_PROFILE}", "target": name,
        "scenario": HOLD, "users": args.idle, "duration_s": IDLE_HOLD_S, "options": [],
        "processes": 1, "target_processes": 1, "kernel_profile": HOST_PROFILE,
    }  # fmt: skip


def run_meta(store: RunStore, args: argparse.Namespace, placement: Placement) -> dict[str, Any]:
    settings = {
        "targets": args.targets, "duration_s": args.duration, "connections": args.connections,
        "window": args.window, "size_bytes": args.size, "idle": args.idle,
        "warmup_s": WARMUP_S, "settle_s": SETTLE_S, "idle_hold_s": IDLE_HOLD_S,
    }  # fmt: skip
    return {
        "kind": KIND, "run_id": store.root.name,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "started": utc_now(), "ended": None, "status": RunStatus.RUNNING,
        "settings": settings, "placement": asdict(placement),
        "plan": [p(name, args) for name in args.targets for p in (echo_params, hold_params)],
        **schema.runner_fields(), **provenance.collect(),
    }  # fmt: skip


def store_point(store: RunStore, params: PointParams, started: str, summary: Summary | None = None,
                reason: str = "", warnings: Sequence[str] = ()) -> None:  # fmt: skip
    """point.json: ok with its summary, or failed with the one-line reason."""
    result: PointResult = {
        "point": params, "status": PointStatus.FAILED if reason else PointStatus.OK,
        "reason": reason, "summary": summary or {}, "warnings": list(warnings),
        "started": started, "ended": utc_now(),
    }  # fmt: skip
    store.write_point(params["point_id"], result)


def echo_summary(echo: EchoResult) -> EchoSummary:
    return {
        "requests": echo.messages, "requests_per_s": echo.msgs_per_s,
        "measured_s": echo.measured_s, "generator_bound": echo.client_bound,
        "target": {"cpu_pct_mean": echo.server_cpu_pct, "core_busy_pct": echo.server_core_busy_pct,
                   "rss_bytes_max": echo.rss_bytes},
        "client": {"cpu_pct_mean": echo.client_cpu_pct, "core_busy_pct": echo.client_core_busy_pct},
        "lost_connections": echo.lost_connections, "cores_shared": echo.cores_shared,
    }  # fmt: skip


def echo_from(summary: dict[str, Any]) -> EchoResult:
    server, own = summary["target"], summary["client"]
    return EchoResult(
        summary["requests_per_s"], server["cpu_pct_mean"], own["cpu_pct_mean"],
        server["core_busy_pct"], own["core_busy_pct"], summary["lost_connections"],
        summary["cores_shared"], summary["requests"], summary["measured_s"],
        server.get("rss_bytes_max"),
    )  # fmt: skip


def idle_summary(idle: IdleResult) -> HoldSummary:
    # "max": the only reading with every connection open; "idle": before the first one.
    server = {"rss_bytes_idle": round(idle.rss_before_kib * KIB),
              "rss_bytes_max": round(idle.rss_after_kib * KIB),
              "connections": idle.server_connections}  # fmt: skip
    return {"measured_s": IDLE_HOLD_S, "target": server, "connections_opened": idle.opened}


def idle_from(summary: dict[str, Any]) -> IdleResult:
    server = summary["target"]
    return IdleResult(server["rss_bytes_idle"] / KIB, server["rss_bytes_max"] / KIB,
                      summary["connections_opened"], server["connections"])  # fmt: skip


def target_result(name: str, found: dict[str, PointResult]) -> TargetResult:
    """One target's figures from its stored points (scenario -> point.json)."""
    result = TargetResult(name)
    for scenario, point in found.items():
        if point.get("status") != PointStatus.OK:
            reason = point.get("reason") or str(point.get("status"))
            result.error = result.error or (reason if reason == NOT_AVAILABLE else
                                            f"failed: {reason}")  # fmt: skip
            continue
        try:
            if scenario == ECHO:
                result.echo = echo_from(dict(point.get("summary") or {}))
            elif scenario == HOLD:
                result.idle = idle_from(dict(point.get("summary") or {}))
        except (KeyError, TypeError) as exc:
            result.error = f"failed: its {scenario} point.json lacks {exc}"
    if not found:
        result.error = "not measured"
    return result


def load(run_dir: Path) -> tuple[dict[str, Any], list[TargetResult]]:
    """A stored run's meta.json and each target's figures; schema.ResultsError if it is not a
    readable run of this benchmark."""
    meta = schema.read_meta(run_dir)
    if meta.get("kind") != KIND:
        raise schema.NotARunError(f"{run_dir} is not a {KIND} run (kind {meta.get('kind')!r})")
    found: dict[str, dict[str, PointResult]] = {}
    for params in meta.get("plan") or []:
        point = schema.point_as_found(run_dir / schema.POINTS_DIR / params["point_id"])
        if point is not None:
            found.setdefault(params["target"], {})[params["scenario"]] = point
    targets = meta["settings"]["targets"]
    return meta, [target_result(name, found.get(name, {})) for name in targets]


# -- report ------------------------------------------------------------------------------------


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def result_rows(results: Sequence[TargetResult]) -> list[list[str]]:
    by_name = {r.name: r for r in results}
    base = by_name.get(BASELINE)
    base_msgs = base.echo.msgs_per_s if base and base.echo else None
    base_kib = base.idle.kib_per_conn if base and base.idle else None
    rows = []
    for r in results:
        if r.error and not (r.echo or r.idle):
            rows.append([r.name, r.error, "", "", ""])
            continue
        msgs = r.echo.msgs_per_s if r.echo else None
        kib = r.idle.kib_per_conn if r.idle else None
        rows.append([
            r.name,
            _fmt(msgs, ",.0f"),
            _fmt(ratio(msgs, base_msgs), ".2f", "x"),
            _fmt(kib, ".1f"),
            _fmt(ratio(kib, base_kib), ".2f", "x"),
        ])  # fmt: skip
    return rows


def echo_warnings(name: str, echo: EchoResult) -> list[str]:
    out = []
    if echo.client_bound:
        out.append(f"{name}: WARNING the client was CPU-bound: the echo figure "
                   "measures the client, not the server")  # fmt: skip
    if echo.lost_connections:
        out.append(f"{name}: WARNING {echo.lost_connections} connection(s) closed "
                   "during the measurement")  # fmt: skip
    return out


def idle_warnings(name: str, rec: IdleResult, idle: int) -> list[str]:
    if rec.opened == rec.server_connections == idle:
        return []
    return [f"{name}: WARNING idle: client opened {rec.opened} of {idle}, "
            f"/stats reports {rec.server_connections} connections"]  # fmt: skip


def notes(result: TargetResult, idle: int) -> list[str]:
    """Lines that qualify a target's figures: CPU use, lost connections, connection counts."""
    out = []
    if result.error and (result.echo or result.idle):
        out.append(f"{result.name}: {result.error}")
    if echo := result.echo:
        out.append(f"{result.name}: echo CPU: server process {echo.server_cpu_pct:.0f}%, "
                   f"client process {echo.client_cpu_pct:.0f}% of one core; their cores busy "
                   f"{echo.server_core_busy_pct:.0f}% and {echo.client_core_busy_pct:.0f}% "
                   "(incl. kernel softirq)")  # fmt: skip
        out += echo_warnings(result.name, echo)
    if rec := result.idle:
        out += idle_warnings(result.name, rec, idle)
    return out


@dataclass(frozen=True)
class Check:
    status: str  # PASS, FAIL or SKIP (could not be measured)
    text: str

    def __str__(self) -> str:
        return f"{self.status} {self.text}"


def checks(results: Sequence[TargetResult]) -> list[Check]:
    """The project's targets for `raw`, judged on the measured figures."""
    by_name = {r.name: r for r in results}
    raw, base = by_name.get(RAW), by_name.get(BASELINE)
    echo_text = f"raw echo throughput >= {RAW_MIN_ECHO_RATIO:.1f}x aiohttp's"
    idle_text = f"raw server memory per idle connection <= {RAW_MAX_IDLE_KIB:g} KiB"
    found = []
    if raw and raw.echo and base and base.echo:
        r = raw.echo.msgs_per_s / base.echo.msgs_per_s
        status = "PASS" if r >= RAW_MIN_ECHO_RATIO else "FAIL"
        found.append(Check(status, f"{echo_text} (measured {r:.2f}x)"))
    else:
        found.append(Check("SKIP", f"{echo_text} (raw and aiohttp echo figures needed)"))
    if raw and raw.idle:
        kib = raw.idle.kib_per_conn
        found.append(Check("PASS" if kib <= RAW_MAX_IDLE_KIB else "FAIL",
                           f"{idle_text} (measured {kib:.1f} KiB)"))  # fmt: skip
    else:
        found.append(Check("SKIP", f"{idle_text} (raw idle figure needed)"))
    return found


def header_lines(meta: dict[str, Any]) -> list[str]:
    """Machine, software, placement and settings of a stored run."""
    machine, versions, s = meta.get("machine") or {}, meta.get("versions") or {}, meta["settings"]
    libs = ", ".join(f"{p} {versions.get(p) or 'not installed'}" for p in LIBRARIES)
    return [
        f"machine: {machine.get('cpu_model')}, {machine.get('cores')} CPUs "
        f"({machine.get('usable_cores')} usable); Linux {machine.get('kernel_release')}",
        f"software: Python {versions.get('python')}; {libs}",
        f"placement: {Placement(**meta['placement']).describe()}",
        f"echo: {s['connections']} connections x {s['window']} in flight, {s['size_bytes']}-byte "
        f"binary messages, {s['warmup_s']:g} s warm-up discarded, {s['duration_s']:g} s measured",
        f"idle: {s['idle']} connections; server RSS read {s['settle_s']:g} s after start and "
        f"{s['idle_hold_s']:g} s after the last handshake; 1 server process",
    ]


def report(meta: dict[str, Any], results: list[TargetResult]) -> str:
    headers = ["target", "echo msgs/s", "ratio to aiohttp",
               "server RSS per idle conn (KiB)", "ratio to aiohttp"]  # fmt: skip
    lines = [*header_lines(meta), "", format_table(headers, result_rows(results)), ""]
    for r in results:
        lines += notes(r, meta["settings"]["idle"])
    return "\n".join(lines)


def show(run_dir: Path, check: bool) -> int:
    """Print a stored run's table and checks; with `check`, 1 unless every check passes."""
    try:
        meta, results = load(run_dir)
        text = report(meta, results)
    except schema.ResultsError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as exc:  # a meta.json this benchmark did not write whole
        print(f"bench: {run_dir / schema.META} lacks {exc}", file=sys.stderr)
        return 2
    print(text)
    found = checks(results)
    print("\n".join(str(c) for c in found))
    return 1 if check and any(c.status != "PASS" for c in found) else 0


# -- command line ------------------------------------------------------------------------------


def _positive(kind: type) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _target_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TARGETS)}; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.targets",
        description="Echo throughput and server memory per idle connection of the reference "
        "targets, each against the same pinned client. Stores a run, prints its figures; "
        "not a test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--targets", type=_target_list, default=",".join(TARGETS), help="comma-separated")
    add("--duration", type=_positive(float), default=10.0, help="echo seconds measured")
    add("--connections", type=_positive(int), default=50, help="echo connections")
    add("--window", type=_positive(int), default=8, help="echo frames in flight per connection")
    add("--size", type=_positive(int), default=64,
        help=f"echo message bytes, at most {DEFAULT_MAX_MESSAGE_BYTES}")  # fmt: skip
    add("--idle", type=_positive(int), default=5000, help="idle connections for the memory figure")
    add("--check", action="store_true",
        help="exit 1 unless every check of the raw target passes (SKIP is not a pass)")  # fmt: skip
    add("--results-dir", type=Path, default=Path("results"), help="where the run folder goes")
    add("--show", type=Path, metavar="RUN_DIR",
        help="print the table of a stored run instead of running (with --check: its verdict)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show is not None:
        return show(args.show, args.check)
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.idle + 100 > nofile:
        parser.error(f"--idle {args.idle} needs more than the open-file limit {nofile}")
    if args.size > DEFAULT_MAX_MESSAGE_BYTES:
        parser.error(f"--size is over the targets' limit of {DEFAULT_MAX_MESSAGE_BYTES}")
    placement = choose_placement()
    try:
        store = RunStore.create(args.results_dir / new_run_id(KIND), KIND)
    except WsbenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_status
    store.write_meta(run_meta(store, args, placement))
    status = RunStatus.INTERRUPTED
    try:
        results = [measure(name, args, placement, store) for name in args.targets]
        status = RunStatus.FAILED if any(r.error for r in results) else RunStatus.COMPLETE
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        store.update_meta(ended=utc_now(), status=status)
    code = show(store.root, args.check)
    _say(f"stored: {store.root} (python -m benchmarks.targets --show DIR prints it again)")
    return code


if __name__ == "__main__":
    sys.exit(main())
