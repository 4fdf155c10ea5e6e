"""Loaded frames -> the exact tables the charts plot (and the page writes out as CSV).

Pure functions of frames. A chart draws one of these tables and nothing else, so the CSV beside
the page is the chart's data, and a test can compare one with the other.
"""

from __future__ import annotations

import re

import pandas as pd

from reports.load import WS_UPGRADE, Run, is_drop_counter

OK = "ok"
MIB = 1024 * 1024
# Points are ordered by series, then connection count: the x order of every line.
SCALING_COLUMNS = (
    "series", "target", "kernel_profile", "users", "status", "main_name", "msgs_per_s",
    "bytes_per_s", "p50_us", "p99_us", "p999_us", "failure_rate", "connect_p50_us",
    "connect_p99_us", "upgrade_p50_us", "upgrade_p99_us", "server_cpu_pct_mean",
    "server_rss_bytes_max", "server_rss_per_conn_bytes", "generator_cpu_pct",
    "generator_saturated",
)  # fmt: skip


def topology_name(point: pd.Series) -> str:
    """What sits between client and target, in words: "" for a direct, uncompressed, plain ws
    point; else its proxy, its compression and wss with where TLS ended, joined by " · "
    ("nginx", "deflate", "wss@proxy", "haproxy · wss@proxy")."""
    parts = [str(point[c]) for c in ("via", "compression")
             if c in point and isinstance(point[c], str) and point[c]]  # fmt: skip
    tls = point.get("tls")
    if tls is not None and not pd.isna(tls) and bool(tls):
        at = point.get("tls_at")
        parts.append(f"wss@{at}" if isinstance(at, str) and at else "wss")
    return " · ".join(parts)


def topology_names(points: pd.DataFrame) -> pd.Series:
    """topology_name of every point."""
    if points.empty:
        return pd.Series("", index=points.index, dtype=str)
    return points.apply(topology_name, axis=1).astype(str)


def variant_names(points: pd.DataFrame) -> pd.Series:
    """The target and what sits before it: "raw", "raw · nginx", "aiohttp · deflate". Points
    that differ in any of these are never one series."""
    topology = topology_names(points)
    names = points["target"].astype(str)
    return names + topology.map(lambda t: f" · {t}" if t else "")


def series_names(points: pd.DataFrame) -> pd.Series:
    """A line's name: the target and its topology (variant_names), plus the kernel profile
    when a run has more than one, plus the target's processes and broker when they vary
    ("raw · 4 proc + redis", "raw · nginx · tuned")."""
    names = variant_names(points)
    if points["kernel_profile"].nunique() > 1:
        names = names + " · " + points["kernel_profile"]
    processes = _numbers(points, "target_processes").fillna(1).astype(int).astype(str)
    broker = points["broker"].fillna("") if "broker" in points else pd.Series("", points.index)
    if processes.nunique() > 1 or broker.nunique() > 1:
        names = names + " · " + processes + " proc" + broker.map(lambda b: f" + {b}" if b else "")
    return names


def scenarios(points: pd.DataFrame) -> list[str]:
    """Scenarios in the order the run planned them."""
    return list(dict.fromkeys(points["scenario"].dropna()))


def scaling(points: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """One scenario's points with a figure (status ok), by series then connection count."""
    mine = points[(points["scenario"] == scenario) & (points["status"] == OK)].copy()
    mine["series"] = series_names(points).loc[mine.index]
    columns = [c for c in SCALING_COLUMNS if c in mine]
    extra = [c for c in mine if c.startswith(("broadcast_", "push_"))]
    ordered = mine.sort_values(["series", "users"], kind="stable")
    return ordered[columns + extra].reset_index(drop=True)


def option_value(options: str, flag: str, default: float) -> float:
    """A scenario option's value from the point's option string ('--rooms 4' -> 4.0)."""
    match = re.search(rf"(?:^|\s){re.escape(flag)}(?:=|\s+)(\S+)", options or "")
    try:
        return float(match.group(1)) if match else default
    except ValueError:
        return default


def subscribers(users: float, options: str) -> int:
    """A broadcast point's subscribers: its users but the publishers (--publishers, default 1)."""
    return int(users) - int(option_value(options, "--publishers", 1.0))


def broadcast_delivery(points: pd.DataFrame) -> pd.DataFrame:
    """Messages delivered out of those expected per broadcast point, as the members counted them.

    Each member connection counted, per publisher, what was published while it was a member
    (from the first message it got to the publisher's end marker), and of that what it
    received, lost, got twice, out of order, or still awaited when the run stopped (in flight:
    the end marker had not come): scenarios/broadcast.py. delivered_pct = received / expected.
    `without_end_marker`: streams whose end marker never came (no drain: no run time; or a
    marker later than the drain; or a lost connection); what they were sent after their last
    message is in no figure, so for such points expected is a lower bound.

    Runs from before these counts (no "broadcast expected") get the old estimate: expected =
    published x users per room, users spread evenly over --rooms (the scenario joins a random
    room, and members join during the ramp, so it is only an estimate); their duplicated,
    in_flight and without_end_marker are NaN (not counted), out_of_order as counted then.
    """
    subset = points[(points["scenario"] == "broadcast") & (points["status"] == OK)]
    subset = subset.assign(series=series_names(points).loc[subset.index])
    subset = subset.sort_values(["series", "users"], kind="stable")
    published = _column(subset, "broadcast_published")
    received = _column(subset, "broadcast_received")
    counted = _counted(subset, "broadcast_expected")
    members = subset["users"] / [option_value(o, "--rooms", 1.0) for o in subset["options"]]
    expected = _column(subset, "broadcast_expected").where(counted, published * members)
    return pd.DataFrame(
        {
            "series": subset["series"].to_numpy(),
            "users": subset["users"].to_numpy(),
            "published": published.to_numpy(),
            "received": received.to_numpy(),
            "lost": _column(subset, "broadcast_lost").to_numpy(),
            "expected": expected.to_numpy(),
            "delivered_pct": (100.0 * received / expected.where(expected > 0)).to_numpy(),
            "duplicated": _column(subset, "broadcast_duplicated").where(counted).to_numpy(),
            "out_of_order": _column(subset, "broadcast_out_of_order").to_numpy(),
            "in_flight": _column(subset, "broadcast_in_flight").where(counted).to_numpy(),
            "without_end_marker": _column(subset, "broadcast_without_end_marker")
            .where(counted)
            .to_numpy(),
            "expected_counted": counted.to_numpy(),
            "generator_saturated": subset["generator_saturated"].to_numpy(),
            "point_id": subset.get("point_id", pd.Series(None, index=subset.index)).to_numpy(),
        }
    )


def _counted(frame: pd.DataFrame, name: str) -> pd.Series:
    """Rows where counter `name` was recorded (a run from before it has no value there)."""
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce").notna()
    return pd.Series(False, index=frame.index)


def _numbers(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as floats, NaN where missing (all NaN when the frame has no such column)."""
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce").astype(float)
    return pd.Series(float("nan"), index=frame.index)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce").fillna(0.0)
    return pd.Series(0.0, index=frame.index)


def push_gaps(points: pd.DataFrame) -> pd.DataFrame:
    """One-way latency percentiles and messages lost (sequence gaps) per push point."""
    mine = scaling(points, "push")
    received = _column(mine, "push_received")
    lost = _column(mine, "push_lost")
    total = received + lost
    return pd.DataFrame(
        {
            "series": mine["series"],
            "users": mine["users"],
            "p50_us": mine["p50_us"],
            "p99_us": mine["p99_us"],
            "p999_us": mine["p999_us"],
            "received": received,
            "lost": lost,
            "lost_pct": 100.0 * lost / total.where(total > 0),
            "generator_saturated": mine["generator_saturated"],
        }
    )


def spectra(run: Run, scenario: str, name: str | None = None) -> pd.DataFrame:
    """Percentile spectra of a scenario's main request name, one per point (long format)."""
    rows = []
    subset = run.points[(run.points["scenario"] == scenario) & (run.points["status"] == OK)]
    labels = series_names(run.points).loc[subset.index]
    for (_, point), series in zip(subset.iterrows(), labels, strict=True):
        spectrum = run.spectrum(point["point_id"], name or point["main_name"])
        spectrum.insert(0, "line", f"{series} · {point['users']} conn")
        spectrum.insert(1, "generator_saturated", bool(point["generator_saturated"]))
        rows.append(spectrum)
    columns = ["line", "generator_saturated", "percentile", "inverse_tail", "value_us"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def point_spectrum(run: Run, point_id: str) -> pd.DataFrame:
    """Every request name's percentile spectrum of one point (long format)."""
    frames = []
    for name in run.encoded.get(point_id, {}):
        spectrum = run.spectrum(point_id, name)
        if not spectrum.empty:
            spectrum.insert(0, "line", name)
            frames.append(spectrum)
    if not frames:
        return pd.DataFrame(columns=["line", "percentile", "inverse_tail", "value_us"])
    return pd.concat(frames, ignore_index=True)


def timeseries(run: Run, point_id: str) -> pd.DataFrame:
    """One point over time, long format (t_s, metric, value); t_s from Locust's start.

    Latency and rates are of the point's main request name, per latency window (placed at the
    window's middle); the resource
    samples' clock starts with the sampler, about when Locust starts (within a second).
    """
    point = run.points.set_index("point_id").loc[point_id]
    parts = []
    users = run.users[run.users["point_id"] == point_id]
    parts.append(_long(users, "users", "users"))
    windows = run.windows[run.windows["point_id"] == point_id]
    windows = windows.assign(t_s=windows["t_s"] + windows["window_s"] / 2)  # mid-window
    per_window = windows.drop_duplicates("t_s")
    parts.append(_long(per_window, "open_connections", "open_connections"))
    parts.append(_long(per_window, "generator_cpu_pct", "generator_cpu_pct"))
    main = windows[windows["name"] == point["main_name"]]
    parts.append(_long(main, "msgs_per_s", "msgs_per_s"))
    parts.append(_long(main, "p99_us", "p99_us"))
    server = run.resources[(run.resources["point_id"] == point_id)
                           & (run.resources["role"] == "target")]  # fmt: skip
    parts.append(_long(server, "cpu_pct", "server_cpu_pct"))
    parts.append(_long(server.assign(mib=server["rss_bytes"] / MIB), "mib", "server_rss_mib"))
    frame = pd.concat([p for p in parts if not p.empty] or [_long(users, "users", "users")])
    return frame.reset_index(drop=True)


def _long(frame: pd.DataFrame, column: str, metric: str) -> pd.DataFrame:
    return pd.DataFrame({"t_s": frame["t_s"].to_numpy(dtype=float), "metric": metric,
                         "value": frame[column].to_numpy(dtype=float)})  # fmt: skip


def kernel_deltas(run: Run) -> pd.DataFrame:
    """Kernel counter deltas per point, one column per side:counter, profiles side by side."""
    if run.kernel.empty:
        return pd.DataFrame(columns=["kernel_profile", "target", "scenario", "users"])
    wide = run.kernel.assign(column=run.kernel["side"] + ": " + run.kernel["counter"])
    wide = wide.pivot_table(index="point_id", columns="column", values="delta", aggfunc="sum")
    points = run.points.assign(target=variant_names(run.points))  # "raw · nginx" apart
    keys = points.set_index("point_id")[["kernel_profile", "target", "scenario", "users"]]
    table = keys.join(wide, how="inner").reset_index(drop=True)
    return table.sort_values(["scenario", "target", "users", "kernel_profile"], kind="stable")


def failures_by_kind(run: Run) -> pd.DataFrame:
    """Failures per point and kind (close code when the server closed), most frequent first."""
    if run.failures.empty:
        return pd.DataFrame(columns=["point_id", "name", "kind", "close_code", "occurrences"])
    grouped = run.failures.groupby(["point_id", "name", "kind", "close_code"], dropna=False)
    table = grouped["occurrences"].sum().reset_index()
    return table.sort_values("occurrences", ascending=False, kind="stable").reset_index(drop=True)


def failure_kinds_known(run: Run) -> pd.DataFrame:
    """Per point with failures: failures counted in total and those whose kind is known."""
    totals = run.points.loc[run.points["failures"].fillna(0) > 0, ["point_id", "failures"]]
    known = run.failures.groupby("point_id")["occurrences"].sum().rename("known")
    table = totals.merge(known, left_on="point_id", right_index=True, how="left")
    return table.fillna({"known": 0}).reset_index(drop=True)


def warnings(run: Run) -> list[str]:
    """What to read before the charts: points that failed, saturated, dropped or lost."""
    found: list[str] = []
    points = run.points
    for _, p in points[points["status"] != OK].iterrows():
        why = f" ({p['reason']})" if p["reason"] else ""
        found.append(f"{p['point_id']}: {p['status']}{why}")
    saturated = points[points["generator_saturated"]]
    for _, p in saturated.iterrows():
        verdict = p.get("generator_verdict") or ""
        found.append(
            f"{p['point_id']}: {verdict}" if verdict and not pd.isna(verdict) else
            f"{p['point_id']}: load generator saturated (≥ 90 % of a core): its figures "
            "measure the generator, not the server"
        )  # fmt: skip
    if not saturated.empty:
        found.append(f"{len(saturated)} point(s) generator-bound: ringed in the charts")
    failed = points[(points["failures"].fillna(0) > 0) & (points["status"] == OK)]
    for _, p in failed.iterrows():  # a failed point's reason (above) already names its errors
        main = "" if pd.isna(p["main_error_rate"]) else \
            f"; {p['main_error_rate']:.1%} of its main measurement"  # fmt: skip
        found.append(f"{p['point_id']}: {int(p['failures'])} failed requests "
                     f"({p['failure_rate']:.1%} of all requests{main})")  # fmt: skip
    for column in (c for c in points if c.endswith("_lost")):
        for _, p in points[points[column].fillna(0) > 0].iterrows():
            found.append(f"{p['point_id']}: {int(p[column])} messages lost ({column})")
    drops = run.kernel[run.kernel["counter"].map(is_drop_counter) & (run.kernel["delta"] > 0)]
    for _, k in drops.iterrows():
        found.append(f"{k['point_id']}: kernel {k['side']} {k['counter']} +{int(k['delta'])}")
    return found


# -- failover drills and brokers -------------------------------------------------------------

DRILL_TIMELINE_COLUMNS = ("t_s", "window_s", "open_connections", "connects_per_s",
                          "drops_per_s", "connect_failures_per_s", "p99_us")  # fmt: skip


def drill_points(run: Run) -> list[str]:
    """The points with a failover drill, in run order."""
    with_drill = set(run.drills["point_id"])
    return [p for p in run.points["point_id"] if p in with_drill]


def idle_drop_points(run: Run) -> list[str]:
    """The points whose proxy's idle timeout dropped connections (the harness said so), in
    run order."""
    if "proxy_idle_drops" not in run.points:
        return []
    dropped = run.points["proxy_idle_drops"].map(lambda said: isinstance(said, str) and bool(said))
    return list(run.points.loc[dropped, "point_id"])


def idle_timeout_marks(run: Run, point_id: str) -> pd.DataFrame:
    """Where a proxy's idle timeout falls on a point's timeline (drill_timeline's clock), in
    drill_faults' shape: one timeout after the window most connections opened in (before any
    drop), and every timeout after that (the dropped reopen at once and idle again), up to
    the last window."""
    point = run.points.loc[run.points["point_id"] == point_id]
    timeline = drill_timeline(run, point_id)
    timeout = float(point["proxy_idle_timeout_s"].iloc[0]) if not point.empty else float("nan")
    if timeline.empty or not timeout > 0:
        return pd.DataFrame(columns=["fault", "t_s"])
    dropped = timeline.index[timeline["drops_per_s"].fillna(0) > 0]
    ramp = timeline.loc[: dropped[0] - 1] if len(dropped) and dropped[0] > 0 else timeline
    opened = float(ramp.loc[ramp["connects_per_s"].idxmax(), "t_s"])
    kind = str(point["proxy"].iloc[0] or "proxy")
    end = float(timeline["t_s"].max())
    marks = [opened + k * timeout for k in range(1, int((end - opened) // timeout) + 1)]
    return pd.DataFrame({"fault": [f"{kind} idle timeout {timeout:g} s" if k == 0 else
                                   f"{kind} idle timeout ×{k + 1}" for k in range(len(marks))],
                         "t_s": marks})  # fmt: skip


def drill_latency_name(run: Run, point_id: str) -> str | None:
    """The request name whose p99 a drill watched (its record's), else the point's main name."""
    names = run.drills.loc[run.drills["point_id"] == point_id, "latency_name"].dropna()
    if not names.empty:
        return str(names.iloc[0])
    main = run.points.loc[run.points["point_id"] == point_id, "main_name"]
    return None if main.empty or pd.isna(main.iloc[0]) else str(main.iloc[0])


def drill_timeline(run: Run, point_id: str) -> pd.DataFrame:
    """A drill point per latency window: t_s (its middle, seconds since the point's first
    window), open connections at its close, connects/s (successful "ws upgrade"s), drops/s,
    connect failures/s, and the watched request name's p99 (µs)."""
    windows = run.windows[run.windows["point_id"] == point_id]
    if windows.empty:
        return pd.DataFrame(columns=list(DRILL_TIMELINE_COLUMNS))
    key = "start_unix_s" if windows["start_unix_s"].notna().all() else "t_s"
    first = float(windows[key].min())
    per_window = windows.drop_duplicates(key).sort_values(key).set_index(key)
    length = per_window["window_s"].where(per_window["window_s"] > 0)

    def of(name: str | None, column: str) -> pd.Series:
        rows = windows[windows["name"] == name].drop_duplicates(key).set_index(key)[column]
        return rows.reindex(per_window.index)

    return pd.DataFrame({
        "t_s": per_window.index.to_numpy(dtype=float) - first
        + (length.fillna(1.0) / 2).to_numpy(dtype=float),
        "window_s": per_window["window_s"].to_numpy(dtype=float),
        "open_connections": per_window["open_connections"].to_numpy(dtype=float),
        "connects_per_s": (of(WS_UPGRADE, "count").fillna(0.0) / length).to_numpy(dtype=float),
        "drops_per_s": (per_window["connections_dropped"] / length).to_numpy(dtype=float),
        "connect_failures_per_s": (per_window["connect_failures"] / length).to_numpy(
            dtype=float),
        "p99_us": of(drill_latency_name(run, point_id), "p99_us").to_numpy(dtype=float),
    })[list(DRILL_TIMELINE_COLUMNS)]  # fmt: skip


def drill_faults(run: Run, point_id: str) -> pd.DataFrame:
    """Each fault of a drill point on its timeline's clock (seconds since its first window):
    from the fault's wall-clock time, else its at_s (seconds after Locust started)."""
    mine = run.drills[run.drills["point_id"] == point_id]
    windows = run.windows[run.windows["point_id"] == point_id]
    first_unix = windows["start_unix_s"].min() if not windows.empty else float("nan")
    first_t = windows["t_s"].min() if not windows.empty else float("nan")
    rows = []
    for _, d in mine.iterrows():
        if pd.notna(d["at_unix_s"]) and pd.notna(first_unix):
            t_s = float(d["at_unix_s"]) - float(first_unix)
        else:
            t_s = float(d["at_s"]) - (float(first_t) if pd.notna(first_t) else 0.0)
        rows.append({"fault": d["fault"], "action": d["action"], "t_s": t_s})
    return pd.DataFrame(rows, columns=["fault", "action", "t_s"])


def reasons_text(reasons: object) -> str:
    """{"ws upgrade: connection refused": 12} -> 'ws upgrade: connection refused (12)'."""
    if not isinstance(reasons, dict) or not reasons:
        return ""
    return "; ".join(f"{why} ({int(n):,})" for why, n in reasons.items())


def drill_records(run: Run, point_id: str) -> pd.DataFrame:
    """A drill point's faults as stored, the reasons of failed reconnects as text (a CSV)."""
    mine = run.drills[run.drills["point_id"] == point_id]
    return mine.assign(failed_reasons=mine["failed_reasons"].map(reasons_text)).reset_index(
        drop=True)


def broker_label(broker: object, version: object) -> str:
    """'none', 'redis', 'redis 7.0.15'."""
    if broker is None or pd.isna(broker) or not str(broker):
        return "none"
    return f"{broker} {version}" if isinstance(version, str) and version else str(broker)


BROKER_COLUMNS = ("point_id", "target", "target_processes", "broker", "users", "subscribers",
                  "p50_us",
                  "p99_us", "max_us", "expected", "received", "lost", "delivered_pct", "exact",
                  "target_cpu_pct_mean", "measured_s", "cpu_us_per_msg", "broker_cpu_pct_mean",
                  "cpu_with_broker_us_per_msg", "generator_saturated")  # fmt: skip


def broker_comparison(points: pd.DataFrame) -> pd.DataFrame:
    """Broadcast points without faults, side by side: target, processes and broker; latency;
    delivery (exact: every expected message received once, in order, none in flight); and
    the server's CPU per delivered message.

    cpu_us_per_msg = target CPU mean (% of a core, the harness's figure) x measured seconds x
    10,000 / messages received by the members (µs of CPU per delivered message);
    cpu_with_broker_us_per_msg adds the broker's CPU. Empty unless some point has a broker.
    A drill's point is left out: its figures include the fault."""
    mine = points[(points["scenario"] == "broadcast") & (points["status"] == OK)]
    mine = mine[[not f for f in mine["faults"]]] if "faults" in mine else mine
    if "broker" not in mine or not mine["broker"].notna().any():
        return pd.DataFrame(columns=list(BROKER_COLUMNS))
    delivery = broadcast_delivery(points).set_index("point_id")
    cpu = _numbers(mine, "target_cpu_pct_mean").fillna(_numbers(mine, "server_cpu_pct_mean"))
    broker_cpu = _numbers(mine, "broker_cpu_pct_mean")
    seconds = _numbers(mine, "measured_s")
    received = delivery["received"].reindex(mine["point_id"]).to_numpy()
    per_msg = 10_000.0 * seconds / pd.Series(received, index=mine.index).where(received > 0)
    counted = delivery["expected_counted"].reindex(mine["point_id"]).to_numpy(dtype=bool)
    clean = sum(delivery[c].reindex(mine["point_id"]).fillna(1).to_numpy()
                for c in ("lost", "duplicated", "out_of_order", "in_flight")) == 0
    frame = pd.DataFrame({
        "point_id": mine["point_id"], "target": variant_names(mine),  # a hop apart
        "target_processes": mine["target_processes"],
        "broker": [broker_label(b, v) for b, v in zip(mine["broker"], mine["broker_version"],
                                                      strict=True)],
        "users": mine["users"],
        "subscribers": [subscribers(u, o) for u, o in zip(mine["users"], mine["options"],
                                                          strict=True)],
        "p50_us": mine["p50_us"], "p99_us": mine["p99_us"],
        "max_us": mine["max_us"],
        "expected": delivery["expected"].reindex(mine["point_id"]).to_numpy(),
        "received": received,
        "lost": delivery["lost"].reindex(mine["point_id"]).to_numpy(),
        "delivered_pct": delivery["delivered_pct"].reindex(mine["point_id"]).to_numpy(),
        "exact": counted & clean & (delivery["received"] == delivery["expected"]).reindex(
            mine["point_id"]).to_numpy(dtype=bool),
        "target_cpu_pct_mean": cpu, "measured_s": seconds, "cpu_us_per_msg": cpu * per_msg,
        "broker_cpu_pct_mean": broker_cpu,
        "cpu_with_broker_us_per_msg": (cpu + broker_cpu.where(mine["broker"].notna(), 0.0))
        * per_msg,
        "generator_saturated": mine["generator_saturated"].astype(bool),
    })  # fmt: skip
    ordered = frame.sort_values(["subscribers", "target", "target_processes", "broker"],
                                kind="stable")
    return ordered[list(BROKER_COLUMNS)].reset_index(drop=True)


def setup_label(point: pd.Series) -> str:
    """What stood behind the address: 'raw, 4 processes + redis' (a broker only when used), and
    the point's tag when it has one ('raw, 4 processes (nojitter)'); a hop before the target
    as in series names ('raw · nginx, 1 process')."""
    processes = point.get("target_processes")
    count = int(processes) if processes is not None and not pd.isna(processes) else 1
    broker = point.get("broker")
    with_broker = "" if broker is None or pd.isna(broker) else f" + {broker}"
    tag = point.get("tag")
    tagged = "" if tag is None or pd.isna(tag) else f" ({tag})"
    hop = topology_name(point)
    target = f"{point['target']} · {hop}" if hop else point["target"]
    return f"{target}, {count} process{'es' if count != 1 else ''}{with_broker}{tagged}"
