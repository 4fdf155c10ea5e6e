"""Loaded frames -> the exact tables the charts plot (and the page writes out as CSV).

Pure functions of frames. A chart draws one of these tables and nothing else, so the CSV beside
the page is the chart's data, and a test can compare one with the other.
"""

from __future__ import annotations

import re

import pandas as pd

from reports.load import Run, is_drop_counter

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


def series_names(points: pd.DataFrame) -> pd.Series:
    """A line's name: the target, plus the kernel profile when a run has more than one."""
    if points["kernel_profile"].nunique() > 1:
        return points["target"] + " · " + points["kernel_profile"]
    return points["target"].astype(str)


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
        }
    )


def _counted(frame: pd.DataFrame, name: str) -> pd.Series:
    """Rows where counter `name` was recorded (a run from before it has no value there)."""
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce").notna()
    return pd.Series(False, index=frame.index)


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
    keys = run.points.set_index("point_id")[["kernel_profile", "target", "scenario", "users"]]
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
