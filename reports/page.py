"""What goes on a run's report page: sections of charts and tables, built from a loaded Run.

This module decides content (which charts for which scenario, captions, table columns); html.py
turns the result into one self-contained file. Captions say what to look for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from reports import charts, tables
from reports.load import Run, is_drop_counter

# What the main request name's rate counts, per scenario (the y label of throughput charts).
RATE_LABEL = {
    "echo": "round trips/s",
    "echo_rate": "echoes/s",
    "connect": "upgrades/s (new connections)",
    "hold": "pings/s",
    "broadcast": "messages received/s",
    "push": "messages received/s",
}
MIB = 1024 * 1024
Environment = list[tuple[str, list[tuple[str, str]]]]  # (heading, [(key, value)])


@dataclass
class Chart:
    """One figure on the page and the table(s) it plots (written beside the page as CSV)."""

    slug: str
    caption: str
    figure: Figure
    data: dict[str, pd.DataFrame]  # CSV name suffix ("" for the only one) -> plotted table
    group: str = ""  # charts of one group share a collapsible box (per point charts)

    def csv_names(self) -> dict[str, str]:
        return {key: f"{self.slug}-{key}.csv" if key else f"{self.slug}.csv" for key in self.data}


@dataclass
class Table:
    """A table on the page: header, formatted rows with a CSS class each, and the raw frame."""

    slug: str
    title: str
    caption: str
    header: list[str]
    rows: list[tuple[str, list[str]]]  # (css class, cells)
    frame: pd.DataFrame


@dataclass
class Section:
    anchor: str
    title: str
    intro: str = ""
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def groups(self) -> list[tuple[str, list[Chart]]]:
        """Charts by group, in page order."""
        grouped: dict[str, list[Chart]] = {}
        for chart in self.charts:
            grouped.setdefault(chart.group, []).append(chart)
        return list(grouped.items())


@dataclass
class Page:
    title: str
    subtitle: str
    warnings: list[str]
    summary: Table
    sections: list[Section]
    environment: Environment
    no_warnings: str = "No warnings: every point ran, without failures or a bound generator."

    def charts(self) -> list[Chart]:
        return [c for s in self.sections for c in s.charts]

    def tables(self) -> list[Table]:
        return [self.summary, *(t for s in self.sections for t in s.tables)]


def fmt(value: Any, digits: int = 0, suffix: str = "") -> str:
    """A number for a table cell: thousands separated, '–' for missing."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return "–"
    if isinstance(value, (bool,)):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


def build(run: Run) -> Page:
    points = run.points
    sections = [_scenario_section(run, name) for name in tables.scenarios(points)]
    if len(run.profiles) > 1:
        sections.append(_kernel_section(run))
    elif not run.kernel.empty:
        sections.append(Section("kernel", "Kernel counters", tables=[_kernel_table(run)]))
    failures = tables.failures_by_kind(run)
    if not failures.empty:
        table = _failure_table(failures, tables.failure_kinds_known(run))
        sections.append(Section("failures", "Failures by kind", tables=[table]))
    sections.append(_points_section(run))
    meta = run.meta
    subtitle = (f"{meta.get('kind', 'run')} · {len(points)} points · started "
                f"{meta.get('started', '?')} · status {meta.get('status', '?')}")  # fmt: skip
    return Page(
        title=f"wsbench report: {run.run_id}",
        subtitle=subtitle,
        warnings=tables.warnings(run),
        summary=summary_table(points),
        sections=sections,
        environment=environment(meta, run.profiles),
    )


def _scenario_section(run: Run, scenario: str) -> Section:
    frame = tables.scaling(run.points, scenario)
    rate = RATE_LABEL.get(scenario, "messages/s")
    name = frame["main_name"].iloc[0] if not frame.empty else scenario
    section = Section(f"scenario-{scenario}", f"Scenario: {scenario}",
                      intro=f"Main measurement: “{name}”. Lines are targets; x is the number of "
                      "concurrent connections (Locust users).")  # fmt: skip
    add = section.charts.append
    latency = _plotted(frame, "p50_us", "p99_us", "p999_us")
    add(Chart(f"{scenario}-latency",
              f"Latency percentiles of “{name}” as connections grow. Look for where p99 and "
              "p99.9 bend upward away from p50: that is where queueing starts. A red ring "
              "means the load generator's own delay bounded the figures there (its self-check), "
              "so the server was not the limit.",
              charts.latency_chart(latency, f"{scenario}: “{name}” latency vs connections"),
              {"": latency}))  # fmt: skip
    throughput = _plotted(frame, "msgs_per_s", "bytes_per_s")
    add(Chart(f"{scenario}-throughput",
              f"Successful {rate} as connections grow. A curve that flattens while latency "
              "climbs has hit the server's (or the generator's) capacity.",
              charts.throughput_chart(throughput, f"{scenario}: throughput vs connections", rate),
              {"": throughput}))  # fmt: skip
    if scenario == "connect":
        connect = _plotted(frame, "upgrade_p50_us", "upgrade_p99_us", "connect_p99_us",
                           "failure_rate")  # fmt: skip
        add(Chart("connect-latency-failures",
                  "Connection set-up cost: TCP connect and the HTTP upgrade, and the share of "
                  "requests that failed. Upgrade latency climbing with failures appearing "
                  "points at the accept queue (see the kernel counters, when recorded).",
                  charts.connect_chart(connect, "connect: set-up latency and failures"),
                  {"": connect}))  # fmt: skip
    if scenario == "broadcast":
        spectra = tables.spectra(run, "broadcast")
        delivery = tables.broadcast_delivery(run.points)
        add(Chart("broadcast-delivery",
                  "Left: publish → receive latency over all percentiles, one line per point. "
                  "Right: messages received out of published × room members; below 100 % "
                  "means losses or messages still in flight when the run stopped.",
                  charts.broadcast_chart(spectra, delivery, "broadcast: latency and delivery"),
                  {"spectra": spectra, "delivery": delivery}))  # fmt: skip
    if scenario == "push":
        gaps = tables.push_gaps(run.points)
        add(Chart("push-latency-gaps",
                  "One-way latency (server send → client receive, same host clock) and the "
                  "share of messages lost in sequence gaps. Growing gaps mean slow consumers "
                  "were dropped or the server fell behind.",
                  charts.push_chart(gaps, "push: one-way latency and gaps"),
                  {"": gaps}))  # fmt: skip
    server = _plotted(frame, "server_rss_bytes_max", "server_rss_per_conn_bytes",
                      "server_cpu_pct_mean")  # fmt: skip
    add(Chart(f"{scenario}-server",
              "The target process's peak memory, that memory divided by connections, and "
              "its mean CPU. Memory per connection is the growth over the idle server "
              "(measured before the load started) divided by connections; in runs without an "
              "idle figure it is peak RSS ÷ connections, which includes the process's fixed "
              "size and so falls with more connections.",
              charts.server_chart(server, f"{scenario}: server memory and CPU"),
              {"": server}))  # fmt: skip
    return section


def _plotted(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The columns one chart plots, with what identifies each point."""
    return frame[["series", "users", *columns, "generator_saturated"]]


def _kernel_section(run: Run) -> Section:
    section = Section("kernel", "Kernel profiles side by side",
                      intro=f"Profiles: {', '.join(run.profiles)}. Same workload, one line "
                      "style per profile, one colour per target.")  # fmt: skip
    for scenario in tables.scenarios(run.points):
        frame = tables.scaling(run.points, scenario)
        if frame["kernel_profile"].nunique() < 2:
            continue
        note = ""
        if scenario == "connect" and "connect_p99_us" in frame:
            # The kernel's queues act on the TCP handshake: a dropped SYN shows there (1 s
            # retransmits), while the upgrade after it can look fast.
            frame = frame.assign(p99_us=frame["connect_p99_us"])
            note = " For connect, p99 is the TCP connect's, where the kernel's queues act."
        frame = frame[["target", "kernel_profile", "users", "p99_us", "msgs_per_s",
                       "failure_rate", "generator_saturated"]]  # fmt: skip
        rate = RATE_LABEL.get(scenario, "messages/s")
        section.charts.append(Chart(
            f"kernel-{scenario}",
            "The same workload under each kernel profile. A profile that helps moves p99 "
            "down, throughput up and failures to zero at the higher connection counts." + note,
            charts.kernel_chart(frame, f"{scenario}: kernel profiles compared", rate),
            {"": frame},
        ))  # fmt: skip
    if not run.kernel.empty:
        section.tables.append(_kernel_table(run))
    return section


def _kernel_table(run: Run) -> Table:
    frame = tables.kernel_deltas(run)
    keys = ["kernel_profile", "target", "scenario", "users"]
    # Only counters that moved in some point: most of the ~30 per side stay at zero.
    counters = [c for c in frame.columns if c not in keys and frame[c].fillna(0).ne(0).any()]
    rows = []
    for _, r in frame.iterrows():
        drops = any(r[c] > 0 for c in counters if is_drop_counter(c.split(": ", 1)[-1]))
        cells = [str(r["kernel_profile"]), str(r["target"]), str(r["scenario"]), fmt(r["users"])]
        rows.append(("bad" if drops else "", cells + [fmt(r[c]) for c in counters]))
    return Table("kernel-counters", "Kernel counter deltas",
                 "Growth of kernel network counters over each point, per side (server and client, "
                 "or host when the run used no namespaces); counters that stayed at zero in "
                 "every point are left out (kernel_counters.json has them all). "
                 "Drop counters above zero (highlighted) mean the kernel refused or discarded "
                 "connections or data.", ["profile", "target", "scenario", "connections",
                                           *counters], rows, frame)  # fmt: skip


def _failure_table(frame: pd.DataFrame, known: pd.DataFrame) -> Table:
    rows = [("bad", [str(r["point_id"]), str(r["name"]), str(r["kind"]),
                     "–" if pd.isna(r["close_code"]) else str(int(r["close_code"])),
                     fmt(r["occurrences"])])
            for _, r in frame.iterrows()]  # fmt: skip
    return Table(
        "failures",
        "By point, request and kind",
        "Failed requests by kind, with the WebSocket close code when the server closed the "
        "connection."
        + "".join(
            f" Locust's failures CSV names the kind of {int(k.known)} of {int(k.failures)} "
            f"failures of {k.point_id} (it misses the run's last moments)."
            for k in known.itertuples()
            if k.known < k.failures
        ),
        ["point", "request", "kind", "close code", "occurrences"],
        rows,
        frame,
    )


def _points_section(run: Run) -> Section:
    section = Section("points", "Per point: time series and percentile spectrum",
                      intro="Each point over its run, and its full latency distribution. "
                      "Open a point to see its charts.")  # fmt: skip
    for _, p in run.points[run.points["status"] == tables.OK].iterrows():
        pid = p["point_id"]
        rate = RATE_LABEL.get(p["scenario"], "messages/s")
        series = tables.timeseries(run, pid)
        section.charts.append(Chart(
            f"point-{pid}-timeseries",
            f"{pid} over time: load, {rate} and p99 per window (of “{p['main_name']}”), "
            "CPU and server RSS. Look for p99 spikes and whether they line up with CPU at "
            "the top (red rings: generator-bound by its self-check).",
            charts.timeseries_chart(series, f"{pid}: over time", rate),
            {"": series}, group=pid,
        ))  # fmt: skip
        spectrum = tables.point_spectrum(run, pid)
        section.charts.append(Chart(
            f"point-{pid}-spectrum",
            f"{pid}: latency at every percentile, per request name. A flat line that turns "
            "up sharply at high percentiles is a tail: a few requests waited far longer.",
            charts.spectrum_chart(spectrum, f"{pid}: latency percentile spectrum"),
            {"": spectrum}, group=pid,
        ))  # fmt: skip
    return section


def _generator_cell(p: pd.Series) -> str:
    """The self-check in one cell: its delay p99 and CPU, BOUND when it bounded the figures."""
    delay = p.get("generator_delay_p99_us")
    parts = [] if delay is None or pd.isna(delay) else [f"delay p99 {fmt(delay)} µs"]
    parts.append(f"CPU {fmt(p['generator_cpu_pct'])} %")
    return ", ".join(parts) + (" BOUND" if p["generator_saturated"] else "")


def summary_table(points: pd.DataFrame) -> Table:
    profiles = points["kernel_profile"].nunique() > 1
    header = ["point", *(["profile"] if profiles else []), "connections", "status", "msgs/s",
              "p50 µs", "p99 µs", "p99.9 µs", "failed", "server CPU %", "server RSS MiB",
              "generator"]  # fmt: skip
    rows = []
    for _, p in points.iterrows():
        bad = p["status"] != tables.OK or (p["failures"] or 0) > 0
        css = "bad" if bad else "saturated" if p["generator_saturated"] else ""
        generator = _generator_cell(p)
        rate = p["main_error_rate"]  # the main measurement's, as the point's status is judged
        failed = None if pd.isna(rate) else 100 * rate
        rows.append((css, [
            str(p["point_id"]), *([str(p["kernel_profile"])] if profiles else []),
            fmt(p["users"]), str(p["status"]), fmt(p["msgs_per_s"]), fmt(p["p50_us"]),
            fmt(p["p99_us"]), fmt(p["p999_us"]), fmt(failed, 1, " %"),
            fmt(p["server_cpu_pct_mean"]), fmt(p["server_rss_bytes_max"] / MIB, 1), generator,
        ]))  # fmt: skip
    frame = points.drop(columns=["warnings"])
    return Table("summary", "", "One row per point. msgs/s counts successful "
                 "requests of the scenario's main measurement; latency is that measurement's, "
                 "from the stored HdrHistograms; failed is the share of that measurement's "
                 "requests that failed. Rows in red did not complete or had failures; "
                 "amber rows had a saturated load generator.", header, rows, frame)  # fmt: skip


def _flat(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def environment(meta: dict[str, Any], profiles: list[str]) -> Environment:
    """meta.json's provenance as (heading, key/value rows) for the page."""
    suite = meta.get("suite") or {}
    run_rows = [("command", _flat(meta.get("command", ""))),
                ("started", str(meta.get("started"))), ("ended", str(meta.get("ended"))),
                ("status", str(meta.get("status"))),
                ("kernel profiles", ", ".join(profiles)),
                ("suite commit", f"{suite.get('commit', '?')}"
                 + (" (uncommitted changes)" if suite.get("dirty") else ""))]  # fmt: skip
    groups = [("Run", run_rows)]
    for key, heading in (("machine", "Machine"), ("versions", "Versions"),
                         ("sysctls", "Kernel settings (host snapshot)"),
                         ("rlimits", "Resource limits")):  # fmt: skip
        values = meta.get(key) or {}
        if isinstance(values, dict) and values:
            groups.append((heading, [(str(k), _flat(v)) for k, v in values.items()]))
    # With kernel profiles: the sysctls actually in force in each namespace, per profile.
    for name, info in (meta.get("kernel_profiles") or {}).items():
        in_force = info.get("in_force") if isinstance(info, dict) else None
        if isinstance(in_force, dict):
            rows = [(f"{side}: {key}", _flat(value))
                    for side, values in in_force.items() if isinstance(values, dict)
                    for key, value in values.items()]  # fmt: skip
            rows.append(("open files per process", _flat(info.get("nofile"))))
            groups.append((f"Kernel profile {name} (in force)", rows))
    return groups
