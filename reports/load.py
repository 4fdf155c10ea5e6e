"""A run folder -> tidy pandas frames: what the stored files' columns mean for a report.

The files' names and records are common/schema.py's; this module turns them into frames.

    RUN/meta.json                          schema_version, plan, provenance
    RUN/points/POINT/point.json            parameters, status, reason, summary, warnings
    RUN/points/POINT/locust_final.json     Locust's per-name totals at the very end of the run
    RUN/points/POINT/locust_final_failures.json  its failures by name and error, at the end
    RUN/points/POINT/locust_stats.csv      the same from Locust's CSV (a fallback: it misses the
                                           run's last moments)
    RUN/points/POINT/locust_stats_history.csv   Locust's user count over time
    RUN/points/POINT/locust_failures.csv   the same from Locust's CSV (a fallback: misses the end)
    RUN/points/POINT/locust_latency_us.csv         µs summary per request name (a fallback)
    RUN/points/POINT/locust_latency_us_history.csv µs summary per name per window
    RUN/points/POINT/locust_latency_us_histograms.json  encoded HdrHistograms, counters, generator
    RUN/points/POINT/resources.csv         1 Hz samples of the target and Locust process trees
    RUN/points/POINT/kernel_counters.json  optional: {side: {name: delta}, ...} for sides
                                           "server", "client" (or "host"), plus "snapshots"
                                           and "file_nr", the readings (not loaded)
    RUN/points/POINT/faults.json           optional: the faults a failover drill did (what and
                                           when); what each did is point.json's summary "drill"

A failover drill point (--fault kill-target@T ...) has one `drills` row per fault; a point with
--broker has the broker's figures in its row (broker, broker_version, broker_cpu_pct_mean ...).
Points stored before drills and brokers have neither: no drill rows, broker None, faults [].

Every file but meta.json may be missing: a crashed or unfinished point loads as such (status
"incomplete", or "missing" when planned and never started) instead of failing the report. A point
whose file is not whole (a point.json cut short) loads as status "corrupt", its reason naming the
file; a run whose runner was killed reads as status "killed" (common.schema.as_found).
Latency percentiles come from the stored histograms, so any percentile can be asked for.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from common import schema
from common.schema import (
    FAILURES_CSV,
    FAULTS_JSON,
    FINAL_FAILURES_JSON,
    FINAL_STATS_JSON,
    HISTOGRAMS_JSON,
    HISTORY_CSV,
    KERNEL_COUNTERS_JSON,
    LATENCY_CSV,
    POINTS_DIR,
    RESOURCES_CSV,
    STATS_CSV,
    STATS_HISTORY_CSV,
    BadFileError,
    PointStatus,
    RunStatus,
)
from common.schema import read_meta as read_meta
from reports import histograms

KERNEL_NOT_SIDES = ("snapshots", "file_nr")  # kernel_counters.json keys that are not sides
HOST_PROFILE = "host"

TCP_CONNECT = "tcp connect"
WS_UPGRADE = "ws upgrade"
# The request name that is each scenario's main measurement (its rate is the point's msgs/s).
MAIN_NAME = {
    "echo": "echo",
    "echo_rate": "echo corrected",
    "connect": WS_UPGRADE,
    "hold": "hold ping",
    "broadcast": "broadcast",
    "push": "push",
}
# Kernel counters whose growth means the kernel dropped or refused something.
DROP_COUNTERS = (
    "ListenOverflows",
    "ListenDrops",
    "TCPBacklogDrop",
    "TCPTimeWaitOverflow",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
    "TCPAbortOnMemory",
    "TCPMemoryPressures",
    "PruneCalled",
    "RcvPruned",
)
NSTAT_PREFIXES = ("TcpExt", "IpExt", "Tcp", "Ip", "Udp")  # nstat's names: TcpExtListenDrops

DEFAULT_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)
CONNECT_PERCENTILES = (50.0, 99.0)

MISSING = PointStatus.MISSING
INCOMPLETE = PointStatus.INCOMPLETE
CORRUPT = PointStatus.CORRUPT


def is_drop_counter(name: str) -> bool:
    """Whether a kernel counter (plain or nstat-prefixed name) counts drops or refusals."""
    for prefix in NSTAT_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in DROP_COUNTERS:
            return True
    return name in DROP_COUNTERS


@dataclass(frozen=True)
class Run:
    """One run folder as frames; every frame has a point_id column (and run_id on points)."""

    path: Path
    meta: dict[str, Any]
    points: pd.DataFrame  # one row per point
    latency: pd.DataFrame  # point x request name: count and µs percentiles (from histograms)
    failures: pd.DataFrame  # point x request name x error: kind, close_code, occurrences
    windows: pd.DataFrame  # point x window x request name: the latency history, t_s from start
    users: pd.DataFrame  # point x time: Locust's user count
    resources: pd.DataFrame  # point x time x role: CPU, RSS, sockets
    counters: pd.DataFrame  # point x scenario counter (broadcast published, push lost...)
    kernel: pd.DataFrame  # point x side x kernel counter: delta over the point
    encoded: dict[str, dict[str, str]] = field(repr=False)  # point -> name -> run histogram
    # point x fault: what each fault of a failover drill did (none for other points)
    drills: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(DRILL_COLUMNS)))

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.path.name)

    @property
    def profiles(self) -> list[str]:
        return sorted(self.points["kernel_profile"].dropna().unique())

    def spectrum(self, point_id: str, name: str) -> pd.DataFrame:
        """Percentile spectrum of one request name of one point (empty if it has no samples)."""
        encoded = self.encoded.get(point_id, {}).get(name)
        if encoded is None:
            return pd.DataFrame(columns=list(histograms.SPECTRUM_COLUMNS))
        return histograms.spectrum(encoded)


def load_run(run_dir: Path, percentiles: tuple[float, ...] = DEFAULT_PERCENTILES) -> Run:
    """Read a run folder. Raises ReportError subclasses for input that is not a readable run."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    run_id = str(meta.get("run_id") or run_dir.name)
    planned = {p["point_id"]: p for p in meta.get("plan") or [] if "point_id" in p}
    found = [p.name for p in schema.point_dirs(run_dir)]
    order = list(planned) + [p for p in found if p not in planned]
    killed = meta.get("status") == RunStatus.KILLED
    loaded = [_load_or_mark(run_dir / POINTS_DIR / pid, pid, planned.get(pid), percentiles, killed)
              for pid in order]  # fmt: skip
    rows = [p.row for p in loaded]
    points = pd.DataFrame(rows, columns=_point_columns(rows, percentiles))
    # Converted as one frame and joined once: assigning column by column leaves a block per
    # column, and pandas then warns (PerformanceWarning) on every merge of the points.
    numeric = points.columns.difference([*TEXT_COLUMNS, *FLAG_COLUMNS])
    converted = points[numeric].apply(pd.to_numeric, errors="coerce")
    points = pd.concat([points.drop(columns=numeric), converted], axis=1)[points.columns]
    for flag in BOOL_COLUMNS:
        points[flag] = points[flag].fillna(False).astype(bool) if flag in points else False
    points.insert(0, "run_id", run_id)
    return Run(
        path=run_dir,
        meta=meta,
        points=points,
        latency=_concat([p.latency for p in loaded], LATENCY_COLUMNS),
        failures=_concat([p.failures for p in loaded], FAILURE_COLUMNS),
        windows=_concat([p.windows for p in loaded], WINDOW_COLUMNS),
        users=_concat([p.users for p in loaded], USER_COLUMNS),
        resources=_concat([p.resources for p in loaded], RESOURCE_COLUMNS),
        counters=_concat([p.counters for p in loaded], COUNTER_COLUMNS),
        kernel=_concat([p.kernel for p in loaded], KERNEL_COLUMNS),
        encoded={p.point_id: p.encoded for p in loaded},
        drills=_concat([p.drills for p in loaded], DRILL_COLUMNS),
    )


def number(text: Any) -> float | None:
    """A CSV or JSON cell as a float; None for blanks, 'N/A' and junk."""
    if text is None or text == "" or text == "N/A":
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def slug(name: str) -> str:
    """'broadcast published' -> 'broadcast_published' (a column name)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


TEXT_COLUMNS = ("point_id", "target", "scenario", "kernel_profile", "options", "status", "reason",
                "warnings", "main_name", "generator_verdict", "kernel_explain",
                "kernel_stalls", "broker", "broker_version", "faults", "tag", "via",
                "compression", "tls_at", "proxy", "proxy_version", "proxy_idle_drops",
                "gc_pauses")  # fmt: skip
# True or false; "steady" is left as found (None for a point not loaded).
BOOL_COLUMNS = ("generator_saturated", "tls", "gc_pause_made_p99")
FLAG_COLUMNS = (*BOOL_COLUMNS, "steady")
LATENCY_COLUMNS = ("point_id", "name", "count", "source")  # + percentile columns
FAILURE_COLUMNS = ("point_id", "name", "kind", "close_code", "error", "occurrences")
# connections_dropped and connect_failures: counts in the window, on every row of it (0 in
# files from before drills).
WINDOW_COLUMNS = ("point_id", "t_s", "start_unix_s", "window_s", "name", "count", "msgs_per_s",
                  "p50_us", "p99_us", "max_us", "generator_cpu_pct", "open_connections",
                  "connections_dropped", "connect_failures")  # fmt: skip
USER_COLUMNS = ("point_id", "t_s", "users", "requests_total")
RESOURCE_COLUMNS = ("point_id", "t_s", "role", "processes", "cpu_pct", "rss_bytes",
                    "open_files", "sockets")  # fmt: skip
COUNTER_COLUMNS = ("point_id", "counter", "value")
KERNEL_COLUMNS = ("point_id", "side", "counter", "delta")
# point.json summary "drill" records, as stored, plus `fault` (its label, "kill-target at 10 s")
# and faults.json's done_unix_s. failed_reasons is {"name: error": occurrences}.
DRILL_COLUMNS = ("point_id", "fault", "action", "at_s", "at_unix_s", "done_unix_s", "detail",
                 "users", "connections_before", "dropped", "failed_reconnects", "failed_reasons",
                 "reconnect_peak_per_s", "recovered_after_s", "open_at_end", "latency_name",
                 "p99_before_us", "p99_peak_us", "published_during", "lost",
                 "broker_lost_seen")  # fmt: skip
DRILL_TEXT = ("point_id", "fault", "action", "detail", "failed_reasons", "latency_name",
              "broker_lost_seen")  # fmt: skip


@dataclass
class _Point:
    point_id: str
    row: dict[str, Any]
    latency: pd.DataFrame
    failures: pd.DataFrame
    windows: pd.DataFrame
    users: pd.DataFrame
    resources: pd.DataFrame
    counters: pd.DataFrame
    kernel: pd.DataFrame
    encoded: dict[str, str]
    drills: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(DRILL_COLUMNS)))


def _load_point(
    pdir: Path, point_id: str, planned: dict[str, Any] | None, percentiles: tuple[float, ...]
) -> _Point:
    result: dict[str, Any] = dict(schema.read_point(pdir) or {})
    params = {**(planned or {}), **(result.get("point") or {})}
    status = result.get("status") or (INCOMPLETE if pdir.is_dir() else MISSING)
    histograms_path = pdir / HISTOGRAMS_JSON
    document = schema.read_object(histograms_path) if histograms_path.is_file() else {}
    if document and document.get("unit") != "us":
        raise BadFileError(f"{pdir / HISTOGRAMS_JSON}: unit {document.get('unit')!r}, not 'us'")
    encoded = dict(document.get("totals") or {})
    latency = _latency(point_id, encoded, schema.read_csv(pdir / LATENCY_CSV), percentiles)
    stats = request_stats(pdir)
    failures = _failures(point_id, _failure_rows(pdir))
    t0 = _start_unix_s(pdir)
    windows = _windows(point_id, schema.read_csv(pdir / HISTORY_CSV), t0)
    users = _users(point_id, schema.read_csv(pdir / STATS_HISTORY_CSV), t0)
    resources = _resources(point_id, schema.read_csv(pdir / RESOURCES_CSV))
    counters = pd.DataFrame(
        [(point_id, k, v) for k, v in (document.get("counters") or {}).items()],
        columns=list(COUNTER_COLUMNS),
    )
    kernel = _kernel(point_id, pdir / KERNEL_COUNTERS_JSON)
    drills = _drills(point_id, (result.get("summary") or {}).get("drill"), pdir / FAULTS_JSON)
    row = _params_row(point_id, params, status, result.get("reason") or _status_reason(status))
    row["warnings"] = list(result.get("warnings") or [])
    row.update(_traffic(row["scenario"], stats, latency, percentiles))
    steady = schema.steady_per_s(schema.read_csv(pdir / HISTORY_CSV),
                                 [row["main_name"]] if row["main_name"] else [],
                                 number(document.get("steady_from_unix_s")))  # fmt: skip
    if steady is not None:  # --skip-ramp: the rate of the windows its figures come from
        row["msgs_per_s"] = steady
    row["steady"] = steady is not None
    judged = (result.get("summary") or {}).get("main") or {}
    if "error_rate" in judged:  # the harness's figure, over the names the scenario declared
        row["main_error_rate"] = number(judged["error_rate"])
    row.update(_connect_latency(encoded))
    row["open_connections_max"] = _max(windows["open_connections"])
    target = (result.get("summary") or {}).get("target") or {}
    measured = target.get("cpu_pct_mean_over") == schema.CPU_MEAN_MEASURED
    measured_cpu = number(target.get("cpu_pct_mean")) if measured else None
    row.update(_server(resources, row["users"], number(target.get("rss_bytes_idle")),
                       measured_cpu))  # fmt: skip
    row.update(_generator(document, schema.read_csv(pdir / LATENCY_CSV)))
    _fill_from_summary(row, result.get("summary") or {})
    row.update(_broker(row["broker"], result.get("summary") or {}))
    row.update(_gc_pauses(result.get("summary") or {}))
    row.update(_hop(row, result.get("summary") or {}))
    # The harness's rate: the main measurement's successes over the measured time (Locust's
    # own span starts a window late, as its statistics are logged a window at a time).
    row["main_per_s"] = number((result.get("summary") or {}).get("requests_per_s"))
    # What the point sustained, for findings and charts: its steady windows' rate, else the
    # harness's, else Locust's.
    row["achieved_per_s"] = (row["msgs_per_s"] if steady is not None or row["main_per_s"] is None
                             else row["main_per_s"])  # fmt: skip
    kernel_summary = (result.get("summary") or {}).get("kernel") or {}
    row["kernel_explain"] = list(kernel_summary.get("explain") or [])
    row["kernel_stalls"] = list(kernel_summary.get("stalls") or [])
    row.update({slug(c): v for c, v in zip(counters["counter"], counters["value"], strict=True)})
    for side, name, delta in zip(kernel["side"], kernel["counter"], kernel["delta"], strict=True):
        row[f"kernel_{side}_{name}"] = delta
    return _Point(point_id, row, latency, failures, windows, users, resources, counters, kernel,
                  encoded, drills)  # fmt: skip


def _load_or_mark(
    pdir: Path, point_id: str, planned: dict[str, Any] | None, percentiles: tuple[float, ...],
    killed: bool,
) -> _Point:  # fmt: skip
    """The point; when a file of it is not whole, a row saying which (status corrupt), so that
    one bad file does not hide the rest of the run."""
    try:
        point = _load_point(pdir, point_id, planned, percentiles)
    except BadFileError as exc:
        row = _params_row(point_id, planned or {}, CORRUPT, str(exc))
        empty = [pd.DataFrame(columns=list(c)) for c in (
            LATENCY_COLUMNS, FAILURE_COLUMNS, WINDOW_COLUMNS, USER_COLUMNS, RESOURCE_COLUMNS,
            COUNTER_COLUMNS, KERNEL_COLUMNS)]  # fmt: skip
        return _Point(point_id, row, *empty, encoded={})
    if killed and point.row["status"] == INCOMPLETE:
        point.row["reason"] = "started but has no point.json: the run was killed"
    return point


def _params_row(point_id: str, params: dict[str, Any], status: str, reason: str) -> dict[str, Any]:
    return {
        "point_id": point_id,
        "target": params.get("target"),
        "scenario": params.get("scenario"),
        "kernel_profile": params.get("kernel_profile") or HOST_PROFILE,
        "users": params.get("users"),
        "rate": params.get("rate"),  # offered total rate of an open-model point, else None
        "options": " ".join(params.get("options") or []),
        "duration_s": params.get("duration_s"),
        "processes": params.get("processes"),
        "target_processes": params.get("target_processes"),
        "status": status,
        "reason": reason,
        "warnings": [],
        "broker": params.get("broker") or None,  # "redis"; None: no broker (and older points)
        "tag": params.get("tag") or None,  # the word a matrix part names its points apart by
        "faults": list(params.get("faults") or []),  # ["kill-target@10s"]; [] when none
        # What sits between client and target (None each: direct, no compression, plain ws).
        "via": params.get("via") or None,  # "nginx", "haproxy"
        "compression": params.get("compression") or None,  # "deflate"
        "tls": bool(params.get("tls")),
    }


def _status_reason(status: str) -> str:
    if status == MISSING:
        return "planned but never started (interrupted sweep?)"
    if status == INCOMPLETE:
        return "started but has no point.json (crashed, or still running)"
    return ""


def _latency(
    point_id: str,
    encoded: dict[str, str],
    csv_rows: list[dict[str, str]],
    percentiles: tuple[float, ...],
) -> pd.DataFrame:
    """From the histograms when stored; else the CSV's fixed percentile columns."""
    columns = [histograms.column_name(p) for p in percentiles]
    rows = []
    if encoded:
        for name, blob in encoded.items():
            row = {"point_id": point_id, "name": name, "count": histograms.total_count(blob),
                   "source": "histogram", **histograms.percentiles(blob, percentiles)}  # fmt: skip
            rows.append(row)
    else:
        for r in csv_rows:
            row = {"point_id": point_id, "name": r.get("name"), "count": number(r.get("count")),
                   "source": "csv", **{c: number(r.get(c)) for c in columns}}  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows, columns=[*LATENCY_COLUMNS, *columns])


_EXCEPTION = re.compile(r"^(?P<kind>[A-Za-z_]\w*)\((?P<q>['\"])(?P<message>.*)(?P=q)\)$", re.S)
_CLOSE_CODE = re.compile(r"closed by server: (\d{4})")


def parse_error(error: str) -> tuple[str, int | None]:
    """Locust's error cell -> (failure kind, close code or None).

    'ConnectionClosed("closed by server: 1009 (message too big) ...")' -> ('ConnectionClosed',
    1009). A plain string (not an exception repr) is its own kind.
    """
    match = _EXCEPTION.match(error.strip())
    kind = match.group("kind") if match else error.strip()
    code = _CLOSE_CODE.search(error)
    return kind, int(code.group(1)) if code else None


def _failure_rows(pdir: Path) -> list[dict[str, str]]:
    """Failures by name and error: the end-of-run JSON, else Locust's CSV (rows alike)."""
    path = pdir / FINAL_FAILURES_JSON
    if not path.is_file():
        return schema.read_csv(pdir / FAILURES_CSV)
    entries = schema.read_list(path)
    return [{"Name": str(e.get("name")), "Error": str(e.get("error")),
             "Occurrences": str(e.get("occurrences"))} for e in entries]  # fmt: skip


def _failures(point_id: str, rows: list[dict[str, str]]) -> pd.DataFrame:
    out = []
    for r in rows:
        kind, code = parse_error(r.get("Error") or "")
        out.append((point_id, r.get("Name"), kind, code, r.get("Error"),
                    int(number(r.get("Occurrences")) or 0)))  # fmt: skip
    frame = pd.DataFrame(out, columns=list(FAILURE_COLUMNS))
    frame["close_code"] = frame["close_code"].astype("Int64")
    return frame


def _start_unix_s(pdir: Path) -> float | None:
    """Locust's start (its first history row), the time zero of a point's time series."""
    for r in schema.read_csv(pdir / STATS_HISTORY_CSV):
        return number(r.get("Timestamp"))
    for r in schema.read_csv(pdir / HISTORY_CSV):
        return number(r.get("window_start_unix_s"))
    return None


def _windows(point_id: str, rows: list[dict[str, str]], t0: float | None) -> pd.DataFrame:
    out = []
    for r in rows:
        start, window_s, count = (number(r.get(c)) for c in
                                  ("window_start_unix_s", "window_s", "count"))  # fmt: skip
        out.append({
            "point_id": point_id,
            "t_s": start - t0 if start is not None and t0 is not None else None,
            "start_unix_s": start,
            "window_s": window_s,
            "name": r.get("name") or "",
            "count": count,
            "msgs_per_s": count / window_s if count is not None and window_s else None,
            "p50_us": number(r.get("p50_us")),
            "p99_us": number(r.get("p99_us")),
            "max_us": number(r.get("max_us")),
            "generator_cpu_pct": number(r.get("generator_cpu_pct")),
            "open_connections": number(r.get("open_connections")),
            "connections_dropped": number(r.get("connections_dropped")) or 0.0,
            "connect_failures": number(r.get("connect_failures")) or 0.0,
        })  # fmt: skip
    return pd.DataFrame(out, columns=list(WINDOW_COLUMNS))


def fault_label(action: str, at_s: float | None) -> str:
    """'kill-target', 10.0 -> 'kill-target at 10 s' (the chart's marker and the tables')."""
    return f"{action} at {at_s:g} s" if at_s is not None else str(action)


def _drills(point_id: str, records: Any, faults_path: Path) -> pd.DataFrame:
    """One row per fault: the summary's drill records; where the point has none (it stopped
    before its summary), what faults.json says was done, its figures unknown."""
    done = schema.read_object(faults_path).get("faults") if faults_path.is_file() else None
    done = [d for d in done or [] if isinstance(d, dict)]
    records = [r for r in records or [] if isinstance(r, dict)] or done
    rows = []
    for i, record in enumerate(records):
        row: dict[str, Any] = {c: record.get(c) for c in DRILL_COLUMNS}
        for column in set(DRILL_COLUMNS) - set(DRILL_TEXT):
            row[column] = number(row[column])
        if row["done_unix_s"] is None and i < len(done) and done[i].get("action") == row["action"]:
            row["done_unix_s"] = number(done[i].get("done_unix_s"))
        row["failed_reasons"] = dict(record.get("failed_reasons") or {})
        row["point_id"] = point_id
        row["action"] = str(row["action"] or "fault")
        row["fault"] = fault_label(row["action"], row["at_s"])
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(DRILL_COLUMNS))
    numeric = [c for c in DRILL_COLUMNS if c not in DRILL_TEXT]
    frame[numeric] = frame[numeric].astype(float)  # None -> NaN, as in the other frames
    return frame


def _users(point_id: str, rows: list[dict[str, str]], t0: float | None) -> pd.DataFrame:
    out = []
    for r in rows:
        if r.get("Name") not in (None, "Aggregated"):
            continue
        stamp = number(r.get("Timestamp"))
        t_s = stamp - t0 if stamp is not None and t0 is not None else None
        out.append((point_id, t_s, number(r.get("User Count")),
                    number(r.get("Total Request Count"))))  # fmt: skip
    return pd.DataFrame(out, columns=list(USER_COLUMNS))


def _resources(point_id: str, rows: list[dict[str, str]]) -> pd.DataFrame:
    out = [
        (point_id, number(r.get("elapsed_s")), r.get("role"), number(r.get("processes")),
         number(r.get("cpu_pct")), number(r.get("rss_bytes")), number(r.get("open_files")),
         number(r.get("sockets")))
        for r in rows
    ]  # fmt: skip
    return pd.DataFrame(out, columns=list(RESOURCE_COLUMNS))


def _kernel(point_id: str, path: Path) -> pd.DataFrame:
    """Deltas of every side ("server", "client", "host", ...): the keys holding name -> number.

    "snapshots" and "file_nr" (the full readings the deltas came from) are not sides.
    """
    data = schema.read_object(path) if path.is_file() else {}
    out = []
    for side, deltas in data.items():
        if side in KERNEL_NOT_SIDES or not isinstance(deltas, dict):
            continue
        if not all(v is None or _is_number(v) for v in deltas.values()):
            continue
        out += [(point_id, side, name, number(delta)) for name, delta in deltas.items()]
    return pd.DataFrame(out, columns=list(KERNEL_COLUMNS))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


def _max(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.max()) if not values.empty else None


def main_name(scenario: str | None, latency_names: list[str]) -> str | None:
    """The scenario's main request name; for an unknown scenario, its busiest non-connect name."""
    if scenario in MAIN_NAME:
        return MAIN_NAME[scenario]
    others = [n for n in latency_names if n not in (TCP_CONNECT, WS_UPGRADE, "ws close")]
    return others[0] if others else None


TOTAL = ""  # request_stats' key for the totals over every name


def request_stats(pdir: Path) -> dict[str, dict[str, float | None]]:
    """Per request name (and TOTAL): requests, failures, requests_per_s, bytes_per_s.

    From Locust's end-of-run JSON when the run has it; rates are over the run's span (first
    request to last, all names), as the harness computes them. Else from locust_stats.csv.
    """
    path = pdir / FINAL_STATS_JSON
    if not path.is_file():
        return _csv_stats(schema.read_csv(pdir / STATS_CSV))
    entries = schema.read_list(path)
    starts = [number(e.get("start_time")) for e in entries]
    ends = [number(e.get("last_request_timestamp")) for e in entries]
    starts, ends = [s for s in starts if s], [e for e in ends if e]
    span_s = max(ends) - min(starts) if starts and ends else 0.0
    stats: dict[str, dict[str, float | None]] = {}
    for e in entries:
        requests = number(e.get("num_requests")) or 0.0
        size = number(e.get("total_content_length")) or 0.0
        stats[str(e.get("name"))] = {
            "requests": requests,
            "failures": number(e.get("num_failures")) or 0.0,
            "requests_per_s": requests / span_s if span_s > 0 else None,
            "bytes_per_s": size / span_s if span_s > 0 else None,
        }
    stats[TOTAL] = {
        key: sum(s[key] or 0.0 for s in stats.values()) if stats else None
        for key in ("requests", "failures", "requests_per_s", "bytes_per_s")
    }
    return stats


def _csv_stats(rows: list[dict[str, str]]) -> dict[str, dict[str, float | None]]:
    stats: dict[str, dict[str, float | None]] = {}
    for r in rows:
        rate, size = number(r.get("Requests/s")), number(r.get("Average Content Size"))
        name = TOTAL if r.get("Name") == "Aggregated" else str(r.get("Name"))
        stats[name] = {
            "requests": number(r.get("Request Count")),
            "failures": number(r.get("Failure Count")),
            "requests_per_s": rate,
            "bytes_per_s": rate * size if rate is not None and size is not None else None,
        }
    return stats


def _traffic(
    scenario: str | None,
    stats: dict[str, dict[str, float | None]],
    latency: pd.DataFrame,
    percentiles: tuple[float, ...],
) -> dict[str, Any]:
    """Request totals, the main name's rates (successes only) and its µs percentiles."""
    ordered = latency.sort_values("count", ascending=False)["name"].tolist()
    name = main_name(scenario, ordered)
    total = stats.get(TOTAL, {})
    requests, failures = total.get("requests"), total.get("failures")
    row: dict[str, Any] = {
        "main_name": name,
        "requests": requests,
        "failures": failures,
        "failure_rate": (failures or 0) / requests if requests else None,
    }
    own = stats.get(name or "", {})
    count, failed, rate = own.get("requests"), own.get("failures") or 0, own.get("requests_per_s")
    row["msgs_per_s"] = rate * (count - failed) / count if rate is not None and count else None
    row["main_error_rate"] = failed / count if count else None  # not diluted by set-up phases
    row["bytes_per_s"] = own.get("bytes_per_s")
    mine = latency[latency["name"] == name]
    row["count"] = float(mine["count"].iloc[0]) if not mine.empty else None
    for p in percentiles:
        column = histograms.column_name(p)
        row[column] = _cell(mine, column)
    return row


def _cell(frame: pd.DataFrame, column: str) -> float | None:
    if frame.empty or column not in frame or pd.isna(frame[column].iloc[0]):
        return None
    return float(frame[column].iloc[0])


def _connect_latency(encoded: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, prefix in ((TCP_CONNECT, "connect"), (WS_UPGRADE, "upgrade")):
        values = histograms.percentiles(encoded[name], CONNECT_PERCENTILES) if name in encoded \
            else {}  # fmt: skip
        for p in CONNECT_PERCENTILES:
            row[f"{prefix}_{histograms.column_name(p)}"] = values.get(histograms.column_name(p))
    return row


def _server(
    resources: pd.DataFrame, users: int | None, rss_idle: float | None = None,
    measured_cpu: float | None = None,
) -> dict[str, Any]:
    """Peak and mean figures of the target's process tree, over every 1 Hz sample; its CPU
    mean over the measured windows instead, when the harness had it (`measured_cpu`, the
    summary's: what CPU per message divides by the measured rate).

    Memory per connection is the growth over the idle server (measured before load, when the
    run has it), else the peak over the users: then it includes the process's fixed size.
    """  # fmt: skip
    mine = resources[resources["role"] == "target"]
    cpu = pd.to_numeric(mine["cpu_pct"], errors="coerce").dropna()
    rss_max = _max(mine["rss_bytes"])
    grown = rss_max - rss_idle if rss_max is not None and rss_idle is not None else rss_max
    mean = measured_cpu if measured_cpu is not None else (
        float(cpu.mean()) if not cpu.empty else None)
    return {
        "server_cpu_pct_mean": mean,
        "server_cpu_pct_max": float(cpu.max()) if not cpu.empty else None,
        "server_rss_bytes_max": rss_max,
        "server_rss_bytes_idle": rss_idle,
        "server_rss_per_conn_bytes": grown / users if grown is not None and users else None,
        "server_sockets_max": _max(mine["sockets"]),
    }


def _fill_from_summary(row: dict[str, Any], summary: dict[str, Any]) -> None:
    """The figures a point measured without Locust's files (the benchmarks' points: their own
    client, their own samples), taken from its summary where the files gave none."""
    server, client = summary.get("target") or {}, summary.get("client") or {}
    found = {
        "msgs_per_s": number(summary.get("requests_per_s")),
        "requests": number(summary.get("requests")),
        "server_cpu_pct_mean": number(server.get("cpu_pct_mean")),
        "server_rss_bytes_max": number(server.get("rss_bytes_max")),
        "generator_cpu_pct": number(client.get("cpu_pct_mean")),
    }
    for column, value in found.items():
        if row.get(column) is None and value is not None:
            row[column] = value
    if "generator_bound" in summary and not row.get("generator_verdict"):
        row["generator_saturated"] = bool(summary["generator_bound"])
    rss_max, idle, users = row["server_rss_bytes_max"], row["server_rss_bytes_idle"], row["users"]
    if row.get("server_rss_per_conn_bytes") is None and rss_max is not None and users:
        row["server_rss_per_conn_bytes"] = (rss_max - (idle or 0)) / users


def _gc_pauses(summary: dict[str, Any]) -> dict[str, Any]:
    """The target's longest stop for garbage collection in the measured windows, and the
    harness's sentence about its pauses (summary target.gc_pauses; None each without one)."""
    found = (summary.get("target") or {}).get("gc_pauses") or {}
    return {"gc_pause_longest_ms": number(found.get("longest_ms")),
            "gc_pause_made_p99": bool(found.get("made_p99")),
            "gc_pauses": found.get("sentence") or None}  # fmt: skip


def _broker(kind: str | None, summary: dict[str, Any]) -> dict[str, Any]:
    """The broker's figures (summary "broker"): None each for a point without a broker. The
    target's own CPU mean as the harness measured it, and the measured seconds, for CPU per
    message."""
    broker = summary.get("broker") or {}
    return {
        "broker": kind or broker.get("kind") or None,
        "broker_version": broker.get("version") or None,
        "broker_cpu_pct_mean": number(broker.get("cpu_pct_mean")),
        "broker_cpu_pct_max": number(broker.get("cpu_pct_max")),
        "broker_rss_bytes_max": number(broker.get("rss_bytes_max")),
        "target_cpu_pct_mean": number((summary.get("target") or {}).get("cpu_pct_mean")),
        "measured_s": number(summary.get("measured_s")),
    }


def _hop(row: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The proxy's figures (summary "proxy": None each for a direct point) and where TLS was
    terminated (summary "tls" terminated_at, "proxy" or "target"; for a wss point without that
    record, the target). Proxy memory per connection is its growth over its idle size."""
    proxy = summary.get("proxy") or {}
    rss_max, idle = number(proxy.get("rss_bytes_max")), number(proxy.get("rss_bytes_idle"))
    users = row.get("users")
    tls = summary.get("tls") if isinstance(summary.get("tls"), dict) else {}
    at = tls.get("terminated_at") or ("target" if row.get("tls") else None)
    return {
        "proxy": proxy.get("kind") or row.get("via") or None,
        "proxy_version": proxy.get("version") or None,
        "proxy_cpu_pct_mean": number(proxy.get("cpu_pct_mean")),
        "proxy_rss_bytes_max": rss_max,
        "proxy_rss_bytes_idle": idle,
        "proxy_rss_per_conn_bytes": (rss_max - idle) / users if rss_max is not None
        and idle is not None and users else None,
        "tls": bool(row.get("tls") or tls),
        "tls_at": at,
        # The proxy's idle timeout (s), and what it dropped in words when it explains drops.
        "proxy_idle_timeout_s": number(proxy.get("idle_timeout_s")),
        "proxy_idle_drops": proxy.get("idle_drops") or None,
    }


def _generator(document: dict[str, Any], csv_rows: list[dict[str, str]]) -> dict[str, Any]:
    """The generator self-check. `generator_saturated` is the flag every chart rings: the
    self-check's verdict (`bound`) where the run has one, else (older runs) CPU >= 90 %."""
    verdict = document.get("generator") or {}
    if verdict:
        bound = verdict.get("bound", verdict.get("saturated"))
        return {
            "generator_cpu_pct": number(verdict.get("busiest_run_pct")),
            "generator_saturated": bool(bound),
            "generator_delay_p99_us": number(verdict.get("delay_p99_us")),
            "generator_verdict": verdict.get("verdict") or "",
        }
    cpu = max((number(r.get("generator_cpu_pct")) or 0.0 for r in csv_rows), default=None)
    saturated = any(r.get("generator_saturated") in ("1", "True", "true") for r in csv_rows)
    return {"generator_cpu_pct": cpu, "generator_saturated": saturated,
            "generator_delay_p99_us": None, "generator_verdict": ""}  # fmt: skip


def _point_columns(rows: list[dict[str, Any]], percentiles: tuple[float, ...]) -> list[str]:
    """The fixed columns first (so an empty run still has them), then counters and kernel."""
    fixed = [
        "point_id", "target", "scenario", "kernel_profile", "users", "rate", "options",
        "duration_s", "processes", "target_processes", "broker", "faults", "status", "reason",
        "warnings",
        "kernel_explain", "kernel_stalls", "main_name",
        "requests", "failures", "failure_rate", "main_error_rate", "msgs_per_s", "bytes_per_s",
        "count",
        *(histograms.column_name(p) for p in percentiles),
        *(f"{prefix}_{histograms.column_name(p)}" for prefix in ("connect", "upgrade")
          for p in CONNECT_PERCENTILES),
        "open_connections_max", "server_cpu_pct_mean", "server_cpu_pct_max",
        "server_rss_bytes_max", "server_rss_per_conn_bytes", "server_sockets_max",
        "generator_cpu_pct", "generator_saturated", "generator_delay_p99_us", "generator_verdict",
    ]  # fmt: skip
    extra = sorted({k for row in rows for k in row} - set(fixed))
    return fixed + extra
