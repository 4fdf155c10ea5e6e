"""What goes on a run's report page: sections of charts and tables, built from a loaded Run.

This module decides content (which charts for which scenario, captions, table columns, which
charts are inline); html.py turns the result into one HTML file with the other charts' SVGs and
every table's CSV beside it. Captions say what to look for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from reports import charts, tables, topology
from reports.findings import Findings
from reports.findings import build as build_findings
from reports.findings import ms as findings_ms
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
SLO_P99_MS = 10.0  # the knee's SLO when meta.json names none
ECHO_RATE_DEFAULT = 100.0  # echo_rate's --rate (msgs/s per connection) when not given
# Memory per connection is (peak RSS - idle RSS) / connections, or peak RSS / connections when
# the run measured no idle server. It says something only when all those connections are open at
# the peak and the quotient is not mostly the process's own size. Never for these scenarios:
# connect's users open and close connections, so the peak holds a handful of them and the
# quotient is the process size over the user count (2,500 KiB "per connection" at 10 users).
NO_MEMORY_PER_CONNECTION = frozenset({"connect"})
# Without an idle figure, only from this many connections up: a 30 MiB process then adds at
# most ~3 KiB to each connection's figure, small against what a connection costs.
MEMORY_MIN_CONNECTIONS = 10_000
# The latency-vs-connections question, per scenario in this order of preference: echo_rate's
# points at one total rate, else closed-loop echo.
LATENCY_SCENARIOS = ("echo_rate", "echo")
Environment = list[tuple[str, list[tuple[str, str]]]]  # (heading, [(key, value)])


@dataclass
class Chart:
    """One figure on the page and the table(s) it plots (written beside the page as CSV)."""

    slug: str
    caption: str
    figure: Figure
    data: dict[str, pd.DataFrame]  # CSV name suffix ("" for the only one) -> plotted table
    group: str = ""  # charts of one group share a collapsible box (per point charts)
    inline: bool = True  # else written beside the page as <slug>.svg and shown with <img>

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
    text_columns: tuple[int, ...] = ()  # prose cells: left-aligned, may wrap (numbers never do)
    group: str = ""  # shown in its group's box, after the group's charts (else at the end)
    # Per row, per cell: the cell's evidence ("#point-<id>"), or None; [] for no links at all.
    links: list[list[str | None]] = field(default_factory=list)
    titles: list[list[str]] = field(default_factory=list)  # per cell: its tooltip, or ""

    def link(self, row: int, column: int) -> str | None:
        return self.links[row][column] if row < len(self.links) else None

    def title_of(self, row: int, column: int) -> str:
        return self.titles[row][column] if row < len(self.titles) else ""


@dataclass
class Detail:
    """A collapsed box of one group's charts: its anchor, its one-line summary, a note."""

    anchor: str
    summary: str
    note: str = ""
    open: bool = False  # shown open (the drills' boxes), else collapsed


@dataclass
class Section:
    anchor: str
    title: str
    intro: str = ""
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    details: dict[str, Detail] = field(default_factory=dict)  # group -> its box
    tables_first: bool = False  # its ungrouped tables before its charts (else after)

    def groups(self) -> list[tuple[str, list[Chart]]]:
        """Charts by group, in page order; a group with a Detail shows even without charts."""
        grouped: dict[str, list[Chart]] = {group: [] for group in self.details}
        for chart in self.charts:
            grouped.setdefault(chart.group, []).append(chart)
        for table in self.tables:
            if table.group:
                grouped.setdefault(table.group, [])
        return list(grouped.items())

    def group_tables(self, group: str) -> list[Table]:
        """The tables shown in a group's box ("" : those after every box)."""
        return [t for t in self.tables if t.group == group]


NO_FINDINGS = ("This run has no points that answer the questions (capacity knee, latency at 1k "
               "and 10k connections, connect rate per kernel profile, memory per idle "
               "connection, broadcast p99).")  # fmt: skip


@dataclass
class Page:
    title: str
    subtitle: str
    warnings: list[str]
    summary: Table
    sections: list[Section]
    environment: Environment
    no_warnings: str = "No warnings: every point ran, without failures or a bound generator."
    findings: Findings | None = None  # run pages only: first on the page
    no_findings: str = NO_FINDINGS  # what the findings section says when it has no rows
    headline: Section | None = None  # one chart per question, after the warnings

    def all_sections(self) -> list[Section]:
        return [*([self.headline] if self.headline else []), *self.sections]

    def charts(self) -> list[Chart]:
        return [c for s in self.all_sections() for c in s.charts]

    def tables(self) -> list[Table]:
        return [self.summary, *(t for s in self.all_sections() for t in s.tables)]


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
    headline = _headline(run, sections)
    extra = (topology_section(run), _idle_section(run), _drills_section(run),
             _broker_section(run))
    sections += [s for s in extra if s is not None]
    if len(run.profiles) > 1:
        sections.append(_kernel_section(run))
    elif not run.kernel.empty:
        sections.append(Section("kernel", "Kernel counters", tables=[_kernel_table(run)]))
    failures = tables.failures_by_kind(run)
    if not failures.empty:
        table = _failure_table(failures, tables.failure_kinds_known(run))
        sections.append(Section("failures", "Failures by kind", tables=[table]))
    sections.append(_points_section(run))
    # Only the headline charts are inline: at ~50 KB of SVG each, every scenario's four charts
    # inline would put a default run's page near 1 MB. The rest are files beside the page,
    # loaded as lazy <img>s (which file:// allows), and look the same.
    for section in sections:
        for chart in section.charts:
            chart.inline = False
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
        findings=build_findings(run),
        headline=headline,
    )


def slo_p99_us(meta: dict[str, Any], point_ids: list[str] | None = None) -> float:
    """The p99 SLO in µs of the given points (any, when None): meta.json's slo.p99_ms, from the
    first matrix part naming one that applies to them, else SLO_P99_MS."""
    slo = meta.get("slo")
    parts = slo if isinstance(slo, list) else [slo] if isinstance(slo, dict) else []
    for part in parts:
        if point_ids is not None and "points" in part and not set(point_ids) & set(part["points"]):
            continue
        value = part.get("p99_ms")
        if isinstance(value, (int, float)) and value > 0:
            return 1000.0 * float(value)
    return 1000.0 * SLO_P99_MS


def _headline(run: Run, sections: list[Section]) -> Section:
    """One chart per question, taken out of the scenario sections (or made) in question order:
    capacity knee, latency vs connections, connect rate per kernel profile, broadcast."""
    headline = Section("questions", "One chart per question",
                       intro="Capacity, latency as connections grow, connection set-up per "
                       "kernel profile and broadcast fan-out; each scenario's other charts "
                       "follow the summary.")  # fmt: skip
    stepped = run.points.loc[run.points["scenario"] == "echo_rate", "point_id"].tolist()
    slo_us = slo_p99_us(run.meta, stepped)
    knee = knee_table(run.points, slo_us)
    if not knee.empty:
        headline.charts.append(_knee_chart(knee, slo_us))
    wanted = [f"{s}-latency" for s in LATENCY_SCENARIOS]
    latency = next((slug for slug in wanted if any(c.slug == slug for s in sections
                                                   for c in s.charts)), None)  # fmt: skip
    _move(sections, headline, latency)
    connect = connect_profiles(run.points)
    if not connect.empty:
        headline.charts.append(Chart(
            "connect-profiles",
            "Connection set-up per kernel profile: new WebSocket connections per second each "
            "target sustained (left) and the share of upgrade attempts that failed (right), at "
            "the highest connection count measured per target and profile. A profile that "
            "fixes the accept path raises the rate and brings failures to zero; the kernel "
            "counters say which queue overflowed. Red rings: generator-bound (self-check).",
            charts.connect_profiles_chart(connect, "connect: rate and failures per kernel "
                                          "profile"),
            {"": connect}))  # fmt: skip
    _move(sections, headline, "broadcast-delivery")
    return headline


def _move(sections: list[Section], to: Section, slug: str | None) -> None:
    """Move the chart `slug` (if any section has it) to the end of `to`."""
    for section in sections:
        for chart in section.charts:
            if chart.slug == slug:
                section.charts.remove(chart)
                to.charts.append(chart)
                return


def _offered(points: pd.DataFrame) -> pd.Series:
    """echo_rate's offered load in msgs/s: the point's total rate where the plan stored one
    (a sweep's rates), else its --rate option (per connection) times its connections."""
    rates = [tables.option_value(o, "--rate", ECHO_RATE_DEFAULT) for o in points["options"]]
    from_option = pd.Series(rates, index=points.index, dtype=float) * points["users"].astype(float)
    if "rate" not in points:
        return from_option
    return pd.to_numeric(points["rate"], errors="coerce").fillna(from_option)


def knee_table(points: pd.DataFrame, slo_us: float) -> pd.DataFrame:
    """The capacity steps: echo_rate points at one connection count with the rate stepped up.

    One row per step, by line then offered load. A line is a series (target, and profile when
    several) at one connection count, named with the count when a series has steps at several.
    Failed steps count (errors are how a knee can show); `knee` marks each line's first step
    past the SLO: p99 over it, or failed, or with failed echoes (as findings judges a step;
    a generator-bound step is ringed instead: it says nothing about the server).
    """
    columns = ["series", "users", "rate_per_conn", "offered_msgs_per_s", "msgs_per_s",
               "p99_us", "main_error_rate", "status", "over_slo", "knee",
               "generator_saturated"]  # fmt: skip
    mine = points[(points["scenario"] == "echo_rate")
                  & points["status"].isin([tables.OK, "failed"]) & points["p99_us"].notna()]
    if mine.empty:
        return pd.DataFrame(columns=columns)
    mine = mine.assign(series=tables.series_names(points).loc[mine.index],
                       offered_msgs_per_s=_offered(mine))  # fmt: skip
    # A step series has two rates or more at one connection count; others answer other questions.
    steps = mine.groupby(["series", "users"])["offered_msgs_per_s"].transform("nunique") >= 2
    mine = mine[steps]
    if mine.empty:
        return pd.DataFrame(columns=columns)
    counts = mine.groupby("series")["users"].transform("nunique")
    line = [s if n == 1 else f"{s} · {u:,} conn" for s, n, u in
            zip(mine["series"], counts, mine["users"], strict=True)]  # fmt: skip
    frame = pd.DataFrame({
        "series": line, "users": mine["users"].to_numpy(),
        "rate_per_conn": (mine["offered_msgs_per_s"] / mine["users"]).to_numpy(),
        "offered_msgs_per_s": mine["offered_msgs_per_s"].to_numpy(),
        "msgs_per_s": mine["msgs_per_s"].to_numpy(), "p99_us": mine["p99_us"].to_numpy(),
        "main_error_rate": pd.to_numeric(mine["main_error_rate"], errors="coerce").to_numpy(),
        "status": mine["status"].to_numpy(),
        "generator_saturated": mine["generator_saturated"].astype(bool).to_numpy(),
    })  # fmt: skip
    frame = frame.sort_values(["series", "offered_msgs_per_s"], kind="stable")
    frame["over_slo"] = ((frame["p99_us"] > slo_us) | (frame["status"] != tables.OK)
                         | (frame["main_error_rate"].fillna(0) > 0))  # fmt: skip
    first = frame["over_slo"].astype(int).groupby(frame["series"]).cumsum() == 1
    frame["knee"] = frame["over_slo"] & first
    return frame[columns].reset_index(drop=True)


def _knee_chart(frame: pd.DataFrame, slo_us: float) -> Chart:
    return Chart(
        "knee",
        "Capacity: each target at a fixed connection count with the per-connection rate "
        "stepped up (x: offered msgs/s = --rate × connections). Left: p99 against the SLO "
        f"(dashed, p99 {slo_us / 1000:g} ms); right: echoes achieved against those offered "
        "(dotted: all of them). The cross is each target's knee, its first step over the SLO "
        "(or with failed echoes); its capacity is the step before. Red rings: generator-bound "
        "(such a step bounds the generator, not the server).",
        charts.knee_chart(frame, slo_us, "capacity: p99 and throughput vs offered load"),
        {"": frame},
    )


def connect_profiles(points: pd.DataFrame) -> pd.DataFrame:
    """Connect points by kernel profile and target, at each pair's highest connection count.

    Failed points count: under a constraining profile failing is the result. A target
    reached through a proxy (or with compression, or wss) is its own bar ("raw · nginx").
    """
    points = points.assign(target=tables.variant_names(points))
    columns = ["kernel_profile", "target", "users", "point_id", "status", "upgrades_per_s",
               "failure_pct", "generator_saturated"]  # fmt: skip
    # What each point sustained (reports.load's choice, as findings reports), else Locust's.
    achieved = points.get("achieved_per_s", pd.Series(float("nan"), index=points.index))
    rates = pd.to_numeric(achieved, errors="coerce").fillna(points["msgs_per_s"])
    mine = points[(points["scenario"] == "connect")
                  & points["status"].isin([tables.OK, "failed"]) & rates.notna()]
    if mine.empty:
        return pd.DataFrame(columns=columns)
    top = mine.sort_values("users", kind="stable").groupby(["kernel_profile", "target"]).tail(1)
    top = top.sort_values(["kernel_profile", "target"], kind="stable")
    failed = top["main_error_rate"].fillna(top["failure_rate"])  # the upgrade's, when judged
    rate = rates.loc[top.index]
    return pd.DataFrame({
        "kernel_profile": top["kernel_profile"].to_numpy(), "target": top["target"].to_numpy(),
        "users": top["users"].to_numpy(), "point_id": top["point_id"].to_numpy(),
        "status": top["status"].to_numpy(), "upgrades_per_s": rate.to_numpy(),
        "failure_pct": (100.0 * failed).to_numpy(),
        "generator_saturated": top["generator_saturated"].astype(bool).to_numpy(),
    })[columns]  # fmt: skip


def _scaling(points: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """tables.scaling's frame with each row's point_id, options and idle server RSS."""
    frame = tables.scaling(points, scenario)
    mine = points[(points["scenario"] == scenario) & (points["status"] == tables.OK)]
    mine = mine.assign(series=tables.series_names(points).loc[mine.index])
    mine = mine.sort_values(["series", "users"], kind="stable")  # tables.scaling's order
    idle = pd.to_numeric(mine.get("server_rss_bytes_idle", pd.Series(float("nan"),
                                                                    index=mine.index)))
    rate = mine["rate"] if "rate" in mine else pd.Series(None, index=mine.index, dtype=float)
    return frame.assign(point_id=mine["point_id"].to_numpy(), options=mine["options"].to_numpy(),
                        rate=pd.to_numeric(rate, errors="coerce").to_numpy(dtype=float),
                        server_rss_bytes_idle=idle.to_numpy(dtype=float))


def _fixed_total_rate(frame: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """echo_rate points at one offered total rate measured at several connection counts.

    The capacity steps share a connection count; latency vs connections compares points at one
    total rate, so those are the only echo_rate points plotted against connections. Of several
    such rates the highest, as findings reports. None (empty) when no total rate was measured
    at two connection counts or more.
    """
    offered = _offered(frame).round(3)
    counts = frame.groupby(offered)["users"].nunique()
    common = counts[counts >= 2]
    if common.empty:
        return frame.iloc[0:0], None
    total = float(common.index.max())
    chosen = frame[offered == total].drop_duplicates(["series", "users"])
    return chosen.reset_index(drop=True), total


def memory_per_connection(frame: pd.DataFrame, scenario: str) -> pd.Series | None:
    """Each point's server memory per connection where it means something, NaN elsewhere;
    None when it means nothing for any point (the chart then has no such panel).

    See NO_MEMORY_PER_CONNECTION and MEMORY_MIN_CONNECTIONS for why.
    """
    if scenario in NO_MEMORY_PER_CONNECTION or frame.empty:
        return None
    idle = pd.to_numeric(frame["server_rss_bytes_idle"], errors="coerce")
    meaningful = idle.notna() | (frame["users"] >= MEMORY_MIN_CONNECTIONS)
    if not meaningful.any():
        return None
    return frame["server_rss_per_conn_bytes"].where(meaningful)


def _scenario_section(run: Run, scenario: str) -> Section:
    frame = _scaling(run.points, scenario)
    rate = RATE_LABEL.get(scenario, "messages/s")
    name = frame["main_name"].iloc[0] if not frame.empty else scenario
    section = Section(f"scenario-{scenario}", f"Scenario: {scenario}",
                      intro=f"Main measurement: “{name}”. Lines are targets; x is the number of "
                      "concurrent connections (Locust users).")  # fmt: skip
    if scenario == "echo_rate":
        frame, total = _fixed_total_rate(frame)
        section.intro += (" No two echo_rate points share a total rate at different connection "
                          "counts, so nothing here is plotted against connections; the rate "
                          "steps are in the capacity chart." if total is None else
                          f" Points at one offered total rate, {total:,.0f} msgs/s (--rate × "
                          "connections); the rate steps are in the capacity chart.")  # fmt: skip
        if total is None:
            return section
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
    section.charts += _scenario_charts(run, scenario, frame)
    section.charts.append(_server_chart(frame, scenario))
    # A chart none of whose points has a figure says nothing (and a log axis of no values
    # cannot be drawn): e.g. a benchmark's hold points, which measured only the client.
    section.charts = [c for c in section.charts if _plots_something(c)]
    return section


def _plots_something(chart: Chart) -> bool:
    not_figures = {"users", "generator_saturated"}
    return any(frame[column].notna().any() for frame in chart.data.values()
               for column in frame.select_dtypes("number").columns
               if column not in not_figures)  # fmt: skip


def _scenario_charts(run: Run, scenario: str, frame: pd.DataFrame) -> list[Chart]:
    """The charts only some scenarios have: connect set-up, broadcast delivery, push gaps."""
    found: list[Chart] = []
    add = found.append
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
                  "Right: messages received out of those expected, as each member counted "
                  "them: from the first message it got from each publisher to that "
                  "publisher's end marker, sent a drain period before the run ends. Below "
                  "100 % means messages lost (counted), or still in flight when the run "
                  "stopped because their end marker had not arrived (counted apart, never "
                  "guessed). Runs made before these counts show the old estimate, published × "
                  "room members.",
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
    return found


def _server_chart(frame: pd.DataFrame, scenario: str) -> Chart:
    """Peak memory and mean CPU, with memory per connection where it means something."""
    per_conn = memory_per_connection(frame, scenario)
    server = _plotted(frame, "server_rss_bytes_max", "server_cpu_pct_mean")
    if per_conn is None:
        why = ("connections come and go in this scenario, so the peak holds only some of them"
               if scenario in NO_MEMORY_PER_CONNECTION else
               "no point has an idle-server figure to subtract or "
               f"{MEMORY_MIN_CONNECTIONS:,} connections or more, so peak RSS ÷ connections "
               "would mostly be the process's own size")  # fmt: skip
        caption = (f"The target process's peak memory and its mean CPU. No memory per "
                   f"connection: {why}.")  # fmt: skip
    else:
        server = _plotted(frame.assign(server_rss_per_conn_bytes=per_conn),
                          "server_rss_bytes_max", "server_rss_per_conn_bytes",
                          "server_cpu_pct_mean")  # fmt: skip
        caption = ("The target process's peak memory, that memory divided by connections, and "
                   "its mean CPU. Memory per connection is the growth over the idle server "
                   "(measured before the load started) divided by connections; it is shown "
                   "only for points with that idle figure or with "
                   f"{MEMORY_MIN_CONNECTIONS:,} connections or more (where the process's own "
                   "size is a small share of peak RSS ÷ connections).")  # fmt: skip
    return Chart(f"{scenario}-server", caption,
                 charts.server_chart(server, f"{scenario}: server memory and CPU"),
                 {"": server})  # fmt: skip


def _drills_section(run: Run) -> Section | None:
    """Per drill point (one with faults done on purpose): its timeline and what each fault
    did. Shown whatever the point's status: a drill that failed (users not back) is a result."""
    drilled = tables.drill_points(run)
    if not drilled:
        return None
    section = Section("drills", "Failover drills",
                      intro="Points with a fault done on purpose (--fault): each point's "
                      "connections, reconnects and latency per 1 s window around the fault, and "
                      "what each fault did as the harness measured it.")  # fmt: skip
    points = run.points.set_index("point_id", drop=False)
    for pid in drilled:
        p = points.loc[pid]
        faults = tables.drill_faults(run, pid)
        what = ", ".join(faults["fault"])
        reason = f": {p['reason']}" if p["status"] != tables.OK and p["reason"] else ""
        _timeline(section, run, p, "drill", ("faults", faults), what,
                  f"Status {p['status']}{reason}." if reason else "",
                  f"{pid} around {what} (dashed line): open connections as each window closed; "
                  "successful upgrades (connects/s), connections dropped and failed connects "
                  "per second; “{name}” p99 per window. A good failover drops only the killed "
                  "part's connections, reconnects them at once and brings p99 back to where it "
                  "was.")  # fmt: skip
        section.tables.append(_drill_table(run, pid))
    return section


def _timeline(section: Section, run: Run, p: pd.Series, kind: str, marks: tuple[str, pd.DataFrame],
              what: str, said: str, caption: str) -> None:  # fmt: skip
    """A point's detail box and its timeline chart (charts.drill_chart: connections, rates,
    p99 per window, the (CSV name, frame) `marks` as dashed lines) in `section`, under ids
    `kind`-POINT; `what` is in the titles, "{name}" in `caption` is the request drawn."""
    pid = p["point_id"]
    timeline = tables.drill_timeline(run, pid)
    name = tables.drill_latency_name(run, pid) or "main measurement"
    section.details[pid] = Detail(
        f"{kind}-{pid}", f"{pid} · {tables.setup_label(p)} · {fmt(float(p['users']))} users "
        f"· {what} · {p['status']}", said, open=True)  # fmt: skip
    chart = charts.drill_chart(timeline, marks[1], f"{pid}: {what}", name)
    section.charts.append(Chart(f"{kind}-{pid}", caption.replace("{name}", name), chart,
                                {"": timeline, marks[0]: marks[1]}, group=pid))  # fmt: skip


def _idle_section(run: Run) -> Section | None:
    """Per point whose proxy dropped idle connections: the drops on its timeline, with the
    proxy's idle timeout marked, and the harness's sentence naming the timeout and the fix."""
    dropped = tables.idle_drop_points(run)
    if not dropped:
        return None
    section = Section("idle-timeouts", "Proxy idle timeouts",
                      intro="Points whose reverse proxy closed connections that carried "
                      "nothing for its idle timeout (nginx proxy_read_timeout, HAProxy timeout "
                      "tunnel): open connections, drops and reconnects per 1 s window, the "
                      "timeout marked where idle connections reach it.")  # fmt: skip
    points = run.points.set_index("point_id", drop=False)
    for pid in dropped:
        p = points.loc[pid]
        _timeline(section, run, p, "idle", ("marks", tables.idle_timeout_marks(run, pid)),
                  "idle timeout",
                  f"{p['proxy_idle_drops']}.",
                  f"{pid}: open connections as each window closed; upgrades (connects/s), "
                  "connections dropped and failed connects per second; the proxy's idle "
                  "timeout (dashed) after the first connections opened, and once more for each "
                  "reopened one. Drops at the marks are the timeout's; client pings more often "
                  "than it (--ping-interval-s) keep every connection.")  # fmt: skip
    return section


TOPOLOGY_CHARTS = (
    ("knee", "echo knee: the highest offered rate within the SLO",
     [("msgs/s within the SLO", [("knee_msgs_per_s", "knee")])],
     "The echo knee of each variant (the findings' knee: the highest rate step within the "
     "p99 SLO; a series that never passed it shows its last step, a lower bound).",
     "knee_generator_saturated"),
    ("latency", "echo latency at one offered rate",
     [("p50 (µs)", [("p50_us", "p50")]), ("p99 (µs)", [("p99_us", "p99")])],
     "Echo p50 and p99 of each variant at the offered rate and connection count they all "
     "measured (the table's row says which).", "generator_saturated"),
    ("cpu", "server CPU per echoed message",
     [("CPU µs per message", [("target_cpu_us_per_msg", "target"),
                              ("proxy_cpu_us_per_msg", "proxy")])],
     "The target's mean CPU (% of a core) × 10,000 ÷ echoes per second at that rate, and the "
     "proxy's stacked on it (hatched).", "generator_saturated"),
    ("connect", "connects per second in a storm, and their CPU",
     [("connects/s", [("connects_per_s", "connects/s")]),
      ("CPU µs per connect", [("target_cpu_us_per_connect", "target"),
                              ("proxy_cpu_us_per_connect", "proxy")])],
     "New WebSocket connections per second each variant sustained in its connect storm (the "
     "largest), and the server's CPU per connection made (TCP and, with wss, TLS handshakes "
     "and the upgrade), the proxy's stacked on the target's (hatched).",
     "connect_generator_saturated"),
    ("memory", "memory per held connection",
     [("KiB per held connection", [("target_kib_per_conn", "target"),
                                   ("proxy_kib_per_conn", "proxy")])],
     "Growth of the target's RSS over its idle size per held connection (hold, the largest), "
     "and the proxy's stacked on it (hatched).", "hold_generator_saturated"),
)  # fmt: skip


def topology_section(run: Run) -> Section | None:
    """Per target with several topology variants: a table of them side by side, and the same
    figures on one chart per question (one bar per variant)."""
    frame = topology.comparison(run)
    if frame.empty:
        return None
    section = Section("topology", "Topology", tables_first=True,
                      intro="What each hop or feature costs: per target, its variants (direct "
                      "or through a proxy, ws or wss, permessage-deflate off or on, and kernel "
                      "profiles when a firewall profile is among them) side by side, each cell "
                      "linked to its point. The sentences in the findings name each variant's "
                      "cost against its target's baseline (the first column).")  # fmt: skip
    for target, rows in frame.groupby("target", sort=False):
        section.tables.append(_topology_table(run, str(target), rows.reset_index(drop=True)))
    plotted = frame.assign(target_kib_per_conn=frame["target_rss_per_conn_bytes"] / 1024,
                           proxy_kib_per_conn=frame["proxy_rss_per_conn_bytes"] / 1024)
    for slug, title, panels, caption, bound in TOPOLOGY_CHARTS:
        columns = [c for _, stack in panels for c, _ in stack]
        data = plotted[["target", "variant", *columns]].assign(
            generator_saturated=plotted[bound].astype(bool))
        chart = Chart(f"topology-{slug}", caption + " Red rings: the point was generator-bound "
                      "(its self-check).", charts.topology_chart(data, panels,
                                                                 f"topology: {title}"),
                      {"": data})  # fmt: skip
        if _plots_something(chart):
            section.charts.append(chart)
    return section


def _kib(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value) / 1024:.1f} KiB"


def _topology_table(run: Run, target: str, rows: pd.DataFrame) -> Table:
    """One target's variants as columns, a figure per row, each cell linked to its point."""
    link = {c: rows[c].map(lambda p: f"#point-{p}" if isinstance(p, str) and p else None)
            for c in ("knee_point_id", "echo_point_id", "connect_point_id", "hold_point_id")}
    base = rows.iloc[0]
    step = (f" at {fmt(base['echo_msgs_per_s'])} msgs/s, {fmt(base['echo_users'])} conns"
            if pd.notna(base["echo_msgs_per_s"]) else "")  # fmt: skip
    lines: list[tuple[str, list[str], str]] = [  # label, cells, whose link
        ("echo knee (msgs/s within SLO)", [k or "–" for k in rows["knee"]], "knee_point_id"),
        (f"echo p50 / p99{step}", [
            "–" if pd.isna(r["p50_us"]) else
            f"{findings_ms(r['p50_us'])} / {findings_ms(r['p99_us'])}"
            for _, r in rows.iterrows()], "echo_point_id"),
        ("server CPU µs / msg: target", [fmt(v, 1) for v in rows["target_cpu_us_per_msg"]],
         "echo_point_id"),
        ("server CPU µs / msg: proxy", [fmt(v, 1) for v in rows["proxy_cpu_us_per_msg"]],
         "echo_point_id"),
        ("connects/s in a storm", [fmt(v) for v in rows["connects_per_s"]], "connect_point_id"),
        ("server CPU µs / connect: target", [fmt(v, 1) for v in
                                             rows["target_cpu_us_per_connect"]],
         "connect_point_id"),
        ("server CPU µs / connect: proxy", [fmt(v, 1) for v in
                                            rows["proxy_cpu_us_per_connect"]],
         "connect_point_id"),
        ("memory per held conn: target", [_kib(v) for v in rows["target_rss_per_conn_bytes"]],
         "hold_point_id"),
        ("memory per held conn: proxy", [_kib(v) for v in rows["proxy_rss_per_conn_bytes"]],
         "hold_point_id"),
    ]  # fmt: skip
    flags = {"knee_point_id": "knee_generator_saturated", "echo_point_id": "generator_saturated",
             "connect_point_id": "connect_generator_saturated",
             "hold_point_id": "hold_generator_saturated"}  # fmt: skip
    body, links, titles = [], [], []
    statuses = {"knee_point_id": None, "echo_point_id": "echo_status",
                "connect_point_id": "connect_status", "hold_point_id": "hold_status"}
    for label, cells, whose in lines:
        if statuses[whose]:  # a point with no figure says why: its status, linked to it
            cells = [c if c != "–" or not isinstance(s, str) or s == tables.OK else s
                     for c, s in zip(cells, rows[statuses[whose]], strict=True)]  # fmt: skip
        if all(c == "–" for c in cells):
            continue
        body.append(("", [label, *cells]))
        links.append([None, *(h if c != "–" else None for c, h in zip(cells, link[whose],
                                                                        strict=True))])
        titles.append(["", *("the load generator was the limit at this point (its self-check)"
                             if b else "" for b in rows[flags[whose]])])  # fmt: skip
    for name in sorted({name for found in rows["counters"] for name in found}):
        found = [r.get(name) for r in rows["counters"]]
        body.append(("bad" if name.endswith("Drop") else "", [f"kernel (server): {name}", *(
            "–" if f is None else f"{f[0]:+,.0f}" for f in found)]))
        links.append([None, *(None if f is None else f"#point-{f[1]}" for f in found)])
    frame = rows.assign(counters=rows["counters"].map(
        lambda found: "; ".join(f"{n} {d:+,.0f} ({p})" for n, (d, p) in found.items())))
    return Table(f"topology-{topology.slug(target)}", f"{target}: topologies side by side",
                 "Columns are the target's variants, its baseline (direct, plain ws, "
                 "uncompressed, the first profile without a firewall) first. The knee is "
                 "the findings' (the highest rate step within the SLO); latency and CPU per "
                 "message are at the one offered rate and connection count the variants "
                 "share; CPU per message = mean CPU (% of a core) × 10,000 ÷ echoes per "
                 "second (per connect: over the storm's connects per second); memory per "
                 "held connection is the growth over the idle process "
                 "per connection of the largest hold point, target and proxy apart; counters "
                 "are the conntrack and firewall ones that moved in the server namespace "
                 "(the largest change of the variant's points; drops in red). Each cell links "
                 "to its point.", ["", *rows["variant"]], body, frame,
                 links=links, titles=titles)  # fmt: skip


def _seconds(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{round(float(value), 1):g} s"


def _recovered(d: pd.Series) -> str:
    if not d["dropped"]:
        return "none dropped"
    if pd.isna(d["recovered_after_s"]):
        return f"not all back: {fmt(d['open_at_end'])} of {fmt(d['users'])} open at the end"
    return _seconds(d["recovered_after_s"])


def _drill_table(run: Run, point_id: str) -> Table:
    frame = tables.drill_records(run, point_id)
    broadcast = frame["published_during"].notna().any() or frame["lost"].notna().any()
    broker = frame["broker_lost_seen"].notna().any()
    header = ["fault", "what was done", "connections before", "dropped", "failed reconnects",
              "why they failed", "peak reconnects/s", "all back after", "p99 before → peak",
              *(["published during", "lost"] if broadcast else []),
              *(["targets saw the broker go"] if broker else [])]  # fmt: skip
    rows = []
    for _, d in frame.iterrows():
        p99 = (f"{fmt(d['p99_before_us'])} → {fmt(d['p99_peak_us'])} µs"
               f" ({d['latency_name']})" if pd.notna(d["p99_peak_us"]) else "–")  # fmt: skip
        seen = d["broker_lost_seen"]
        bad = (d["dropped"] and pd.isna(d["recovered_after_s"])) or seen is False
        rows.append(("bad" if bad else "", [
            str(d["fault"]), str(d["detail"] or "–"), fmt(d["connections_before"]),
            fmt(d["dropped"]), fmt(d["failed_reconnects"]), d["failed_reasons"] or "–",
            fmt(d["reconnect_peak_per_s"]), _recovered(d), p99,
            *([fmt(d["published_during"]), fmt(d["lost"])] if broadcast else []),
            *([fmt(seen) if seen is not None and not pd.isna(seen) else "–"] if broker else []),
        ]))  # fmt: skip
    return Table(f"drill-{point_id}-records", "", "What each fault did, as the harness read it "
                 "from the point's windows: connections dropped from the fault's window on, "
                 "reconnects that failed and Locust's reasons, the busiest second of "
                 "reconnects, when every user was connected again (the end of the first window "
                 "that closed with all of them: an upper bound, to a window), the watched p99 "
                 "before (median of the windows before) and at its peak; for broadcast, what "
                 "was published during the outage and what the subscribers lost.", header, rows,
                 frame, text_columns=(1, 5), group=point_id)  # fmt: skip


def _delivered(r: pd.Series) -> str:
    if r["exact"]:
        return f"exact ({fmt(r['received'])})"
    if pd.isna(r["delivered_pct"]):
        return "–"
    lost = f", {fmt(r['lost'])} lost" if r["lost"] else ""
    return f"{r['delivered_pct']:.2f} %{lost}"


def _broker_section(run: Run) -> Section | None:
    """Broadcast points side by side by processes and broker, when some point had a broker."""
    frame = tables.broker_comparison(run.points)
    if frame.empty:
        return None
    # The point id names the target: no column of its own, so the table fits a 1280 px page.
    header = ["point", "processes", "broker", "subscribers", "p50 / p99 / max µs",
              "delivered", "server CPU µs / msg", "with broker", "broker CPU %"]  # fmt: skip
    rows = [("saturated" if r["generator_saturated"] else "", [
        str(r["point_id"]), fmt(r["target_processes"]), str(r["broker"]), fmt(r["subscribers"]),
        f"{fmt(r['p50_us'])} / {fmt(r['p99_us'])} / {fmt(r['max_us'])}", _delivered(r),
        fmt(r["cpu_us_per_msg"], 1), fmt(r["cpu_with_broker_us_per_msg"], 1),
        fmt(r["broker_cpu_pct_mean"], 1),
    ]) for _, r in frame.iterrows()]  # fmt: skip
    table = Table("broker", "Broadcast by processes and broker",
                  "Broadcast points without faults: one process alone, or several sharing rooms "
                  "through a broker. Latency is publish → receive. Delivered is exact when every "
                  "expected message arrived once, in order, none in flight at the end. Server "
                  "CPU per message = the target's mean CPU (% of a core) × measured seconds × "
                  "10,000 ÷ messages received; “with broker” adds the broker's CPU. Amber rows "
                  "had a saturated load generator.", header, rows, frame)  # fmt: skip
    return Section("broker", "Broker", intro="Does a broker let more processes fan out "
                   "messages, and at what cost in latency and CPU per message?", tables=[table])


def _plotted(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The columns one chart plots, with what identifies each point."""
    return frame[["series", "users", *columns, "generator_saturated"]]


def _kernel_section(run: Run) -> Section:
    section = Section("kernel", "Kernel profiles side by side",
                      intro=f"Profiles: {', '.join(run.profiles)}. Same workload, one line "
                      "style per profile, one colour per target.")  # fmt: skip
    variants = tables.variant_names(run.points).set_axis(run.points["point_id"])
    for scenario in tables.scenarios(run.points):
        frame = _scaling(run.points, scenario)
        frame = frame.assign(target=frame["point_id"].map(variants))  # a hop is its own line
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
                      "Open a point to see its charts; they are SVG files beside this page, "
                      "loaded when opened.")  # fmt: skip
    for _, p in run.points.iterrows():
        pid = p["point_id"]
        ok = p["status"] == tables.OK
        reason = f": {p['reason']}" if p["reason"] and not pd.isna(p["reason"]) else ""
        section.details[pid] = Detail(
            f"point-{pid}", f"{pid} · {fmt(p['users'])} connections · {p['status']}",
            "" if ok else f"Status {p['status']}{reason}. Only points that are ok have charts.")
        if not ok:
            continue
        rate = RATE_LABEL.get(p["scenario"], "messages/s")
        series = tables.timeseries(run, pid)
        section.charts.append(Chart(
            f"point-{pid}-timeseries",
            f"{pid} over time: load, {rate} and p99 per window (of “{p['main_name']}”), "
            "CPU and server RSS. Look for p99 spikes and whether they line up with CPU at "
            "the top (red rings: generator-bound by its self-check).",
            charts.timeseries_chart(series, f"{pid}: over time", rate),
            {"": series}, group=pid, inline=False,
        ))  # fmt: skip
        spectrum = tables.point_spectrum(run, pid)
        section.charts.append(Chart(
            f"point-{pid}-spectrum",
            f"{pid}: latency at every percentile, per request name. A flat line that turns "
            "up sharply at high percentiles is a tail: a few requests waited far longer.",
            charts.spectrum_chart(spectrum, f"{pid}: latency percentile spectrum"),
            {"": spectrum}, group=pid, inline=False,
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
                 "amber rows had a saturated load generator.", header, rows, frame,
                 text_columns=(len(header) - 1,))  # fmt: skip


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
