"""The results folder's schema: file names, version, typed records, one writer and one reader.

    results/<run-id>/
        meta.json                   schema version, command, provenance, plan, start/end, status
        points/<point-id>/
            point.json              parameters, status, reason, summary, warnings (written last)
            locust_stats.csv ...    Locust's CSVs (--csv prefix `locust`)
            locust_latency_us.csv   µs percentiles, and the encoded histograms beside it
            locust_final.json       Locust's per-name totals at the very end (and its failures)
            resources.csv           1 Hz samples of the target and Locust processes
            sockstat.csv            the namespaces' TCP socket counts (with a kernel profile)
            kernel.json             the kernel profile and the values in force
            kernel_counters.json    kernel counters before/after on each side, and their deltas
            target.log, locust.log  their stderr

The harness and the benchmarks write it, `reports` reads it; nobody else names these files.
Every file is written to a temporary name and renamed, so a file that exists is whole; a
point is complete when its point.json exists. A point.json that is not whole all the same (a copy
cut short, a disk that filled) reads as status "corrupt". meta.json names the runner writing
it: a "running" run whose runner is gone was killed and reads as "killed" (`as_found`).

Records are TypedDicts: they are the JSON as stored (old files with fewer keys stay readable),
typed for the code that reads them.
"""

from __future__ import annotations

import csv
import json
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict, cast

import psutil

from common.errors import BadInput

SCHEMA_VERSION = 1
READABLE_VERSIONS = (1,)

META = "meta.json"
POINTS_DIR = "points"
POINT = "point.json"
LOCUST_PREFIX = "locust"  # Locust's --csv prefix: the files below are PREFIX + suffix
STATS_CSV = f"{LOCUST_PREFIX}_stats.csv"
STATS_HISTORY_CSV = f"{LOCUST_PREFIX}_stats_history.csv"
FAILURES_CSV = f"{LOCUST_PREFIX}_failures.csv"
FINAL_STATS_JSON = f"{LOCUST_PREFIX}_final.json"
FINAL_FAILURES_JSON = f"{LOCUST_PREFIX}_final_failures.json"
LATENCY_CSV = f"{LOCUST_PREFIX}_latency_us.csv"
HISTORY_CSV = f"{LOCUST_PREFIX}_latency_us_history.csv"
HISTOGRAMS_JSON = f"{LOCUST_PREFIX}_latency_us_histograms.json"
RESOURCES_CSV = "resources.csv"
SOCKSTAT_CSV = "sockstat.csv"
KERNEL_JSON = "kernel.json"
KERNEL_COUNTERS_JSON = "kernel_counters.json"
TARGET_LOG = "target.log"
FAULTS_JSON = "faults.json"  # the failover drills as they were done (harness/faults.py)
# What a part's CPU mean in a point's summary is over (its "cpu_pct_mean_over").
CPU_MEAN_MEASURED = "measured windows"
CPU_MEAN_WHOLE_RUN = "whole run"
BROKER_CONF = "broker.conf"
BROKER_LOG = "broker.log"
LOCUST_LOG = "locust.log"
CA_PEM = "ca.pem"
REPORT_DIR = "report"

# psutil derives a start time from boot time and clock ticks: equal within this, same process.
SAME_START_S = 0.05


class PointStatus(StrEnum):
    """A point's outcome as stored, and the states a reader can find a point in."""

    OK = "ok"  # it measured what it set out to
    FAILED = "failed"  # it did not; the reason says why in one line
    INTERRUPTED = "interrupted"  # Ctrl-C (a resumed sweep runs it again)
    SKIPPED = "skipped"  # an SLO stop: an earlier point of its series broke the SLO
    # Found by a reader, never written:
    CORRUPT = "corrupt"  # a file of the point is not whole or not in its format
    INCOMPLETE = "incomplete"  # started, no point.json (crashed, or still running)
    MISSING = "missing"  # planned, never started

    @property
    def final(self) -> bool:
        """A resumed sweep does not run this point again (a failed point is retried)."""
        return self in (PointStatus.OK, PointStatus.SKIPPED)


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    FAILED = "failed"  # a benchmark whose sections reported errors
    KILLED = "killed"  # found "running" with its runner gone


class PointParams(TypedDict, total=False):
    """A point's parameters as stored in point.json's "point" and meta.json's "plan"."""

    point_id: str
    target: str
    scenario: str
    users: int
    spawn_rate: float
    duration_s: float
    options: list[str]
    max_error_rate: float
    processes: int
    target_processes: int
    kernel_profile: str
    client_hosts: int
    client_addresses: int
    host_sysctls: bool
    target_port: int
    tls: bool
    expect_workers: int
    master_bind_host: str
    master_port: int


class MainFigures(TypedDict, total=False):
    """The scenario's main measurement: the request names it counts and their figures."""

    label: str
    names: list[str]
    requests: int
    successes: int
    failures: int
    error_rate: float | None
    successes_per_s: float | None


class Summary(TypedDict, total=False):
    """point.json's "summary": the figures the console, the SLO stop and the report use."""

    requests: int | None
    failures: int | None
    requests_per_s: float | None
    measured_s: float | None
    main: MainFigures
    main_error_rate: float | None
    latency_us: dict[str, dict[str, float | None]]  # request name -> count, pNN_us, ...
    generator_cpu_pct: float | None
    generator_saturated: bool
    generator_bound: bool
    generator_verdict: str | None
    target: dict[str, Any]  # resource figures; rss_bytes_idle before any load
    locust: dict[str, Any]
    client: dict[str, Any]  # the load generator process's figures, where a benchmark took them
    target_exit_status: int | None
    kernel: dict[str, Any]  # profile, counters (per side deltas), explain (lines)


class PointResult(TypedDict, total=False):
    """point.json."""

    schema_version: int
    point: PointParams
    status: str  # a PointStatus value
    reason: str
    summary: Summary
    warnings: list[str]
    notes: list[str]
    started: str
    ended: str
    command: list[str] | None


class ResultsError(BadInput):
    """A stored file cannot be used as it is; the message is one line."""


class NotARunError(ResultsError):
    """The path is not a wsbench run folder."""


class SchemaVersionError(ResultsError):
    """A stored file's schema version is one this code does not read."""


class BadFileError(ResultsError):
    """A stored file is unreadable or not in the format it should be."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- writing -----------------------------------------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def write_point(point_dir: Path, result: PointResult) -> Path:
    """point.json, with the schema version first; the point is complete once this returns."""
    path = point_dir / POINT
    write_json(path, {"schema_version": SCHEMA_VERSION, **result})
    return path


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    write_json(run_dir / META, {"schema_version": SCHEMA_VERSION, **meta})


def runner_fields() -> dict[str, Any]:
    """What identifies the writing process later, even after its pid is reused."""
    return {
        "runner_pid": os.getpid(),
        "runner_started_unix_s": psutil.Process().create_time(),
        "runner_host": socket.gethostname(),
    }


# --- reading -----------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """The JSON in `path`; BadFileError (one line) when it is not readable JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadFileError(f"{path} is not readable JSON: {exc}") from None


def read_object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise BadFileError(f"{path} does not hold a JSON object")
    return data


def read_list(path: Path) -> list[Any]:
    data = read_json(path)
    if not isinstance(data, list):
        raise BadFileError(f"{path} does not hold a JSON list")
    return data


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file; [] when it does not exist."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def steady_per_s(
    rows: list[dict[str, str]], names: Sequence[str], steady_from_s: float | None
) -> float | None:
    """Successes per second of `names` (summed) over the history's whole windows from
    `steady_from_s` on, a --skip-ramp point's rate; None without a steady start.

    The last window of the names, cut short by the stop, is left out; rows after it (the
    self-check's, written while Locust stops) count nothing of them.
    """
    if steady_from_s is None or not names:
        return None
    windows: dict[float, list[float]] = {}  # start: [count, seconds]
    for r in rows:
        start, seconds, count = (number(r.get(k)) for k in
                                 ("window_start_unix_s", "window_s", "count"))  # fmt: skip
        if r.get("name") not in names or start is None or start < steady_from_s:
            continue
        window = windows.setdefault(start, [0.0, seconds or 0.0])
        window[0] += count or 0.0
    whole = [windows[start] for start in sorted(windows)[:-1]]
    seconds = sum(s for _, s in whole)
    return sum(c for c, _ in whole) / seconds if seconds else None


def number(text: str | None) -> float | None:
    """A CSV cell as a float; None for blanks, 'N/A' and junk."""
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


def check_schema(document: dict[str, Any], path: Path) -> None:
    version = document.get("schema_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise SchemaVersionError(
            f"{path} has result schema version {version!r}; this wsbench reads {readable}"
        )


def read_meta(run_dir: Path) -> dict[str, Any]:
    """meta.json as found (see `as_found`); NotARunError, BadFileError, SchemaVersionError."""
    if not run_dir.is_dir():
        raise NotARunError(f"{run_dir} is not a folder")
    path = run_dir / META
    if not path.is_file():
        raise NotARunError(f"{run_dir} is not a wsbench run folder (no {META})")
    meta = read_object(path)
    check_schema(meta, path)
    return as_found(meta)


def read_point(point_dir: Path) -> PointResult | None:
    """point.json, None when there is none; BadFileError, SchemaVersionError."""
    path = point_dir / POINT
    if not path.is_file():
        return None
    result = read_object(path)
    check_schema(result, path)
    return cast(PointResult, result)


def point_as_found(point_dir: Path) -> PointResult | None:
    """point.json, None when there is none, status "corrupt" (with why) when it is not whole."""
    try:
        return read_point(point_dir)
    except ResultsError as exc:
        return {"status": PointStatus.CORRUPT, "reason": str(exc)}


def point_dirs(run_dir: Path) -> list[Path]:
    """The run's point folders, by name."""
    return sorted(p for p in (run_dir / POINTS_DIR).glob("*") if p.is_dir())


def runner_alive(meta: dict[str, Any]) -> bool | None:
    """Whether the runner meta.json names still runs; None when that cannot be told (no pid
    recorded, or another machine's run)."""
    pid, started = meta.get("runner_pid"), meta.get("runner_started_unix_s")
    if not isinstance(pid, int) or not isinstance(started, int | float):
        return None
    if meta.get("runner_host") != socket.gethostname():
        return None
    try:
        return abs(psutil.Process(pid).create_time() - started) < SAME_START_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # it exists, but is not ours to look at: assume it is the runner
        return True


def as_found(meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` as it stands: a "running" run whose runner is gone (or whose pid now belongs to
    another process) is "killed", every other field as recorded."""
    if meta.get("status") != RunStatus.RUNNING or runner_alive(meta) is not False:
        return meta
    return {**meta, "status": RunStatus.KILLED, "killed_noticed": utc_now()}
