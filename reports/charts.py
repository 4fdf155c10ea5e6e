"""Charts: each a pure function from a table (see tables.py) to a matplotlib Figure.

No pyplot and no global state: figures are built with `matplotlib.figure.Figure`, so charts
can be drawn in any thread and never open a window. Every data line carries a gid,
"<metric>:<line name>", so tests (and anyone) can find what was plotted. Points whose load
generator bounded the figures (its self-check's verdict) are ringed in red on every chart that
plots points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator, PercentFormatter

# No red in the series palette: red is the saturated-generator ring.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2",
           "#7f7f7f", "#bcbd22")  # fmt: skip
SATURATED_COLOR = "#d62728"
SATURATED_LABEL = "generator-bound (self-check)"
KNEE_LABEL = "knee: first step over the SLO"
PERCENTILE_STYLES = {"p50_us": (":", "p50"), "p99_us": ("-", "p99"), "p999_us": ("--", "p99.9")}
PROFILE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # line, marker
CONNECTIONS = "connections (Locust users)"
SIZE = (9.0, 4.2)
PANELS_HEIGHT = 4.8  # multi-panel charts: room for the legend below
MIB = 1024 * 1024
# Plain numbers on linear axes: 12,500 rather than 12500, 0.05 rather than 0.
THOUSANDS = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}")


def _figure(panels: int = 1, height: float = SIZE[1]) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(SIZE[0], height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    return fig, list(axes)


def colors(names: list[str]) -> dict[str, str]:
    """A stable colour per line name (sorted, so the same target keeps its colour)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def _drawn(ax: Axes, positive_y: bool = False) -> bool:
    """Some line of the axes has a point (with a positive y): a log scale can be drawn."""
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        if (np.isfinite(x) & ((y > 0) if positive_y else np.isfinite(y))).any():
            return True
    return False


def _connections_axis(ax: Axes, users: pd.Series) -> None:
    ax.set_xlabel(CONNECTIONS)
    values = pd.to_numeric(users, errors="coerce").dropna()
    spans = not values.empty and values.min() > 0 and values.max() / values.min() >= 10
    if spans and _drawn(ax):  # a panel none of whose points has the figure stays linear
        ax.set_xscale("log")
    if not values.empty:
        ax.set_xticks(sorted(values.unique()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())


def _ring_saturated(ax: Axes, x: pd.Series, y: pd.Series, flags: pd.Series, metric: str) -> None:
    """Red rings around points measured with a saturated generator (one legend entry per axes)."""
    mask = flags.fillna(False).astype(bool).to_numpy() & pd.notna(y).to_numpy()
    if not mask.any():
        return
    labelled = any(line.get_label() == SATURATED_LABEL for line in ax.lines)
    ax.plot(
        np.asarray(x)[mask], np.asarray(y)[mask], linestyle="none", marker="o", markersize=13,
        markerfacecolor="none", markeredgecolor=SATURATED_COLOR, markeredgewidth=2,
        label="_nolegend_" if labelled else SATURATED_LABEL, gid=f"saturated:{metric}", zorder=5,
        clip_on=False,
    )  # fmt: skip


def _handles(axes: list[Axes]) -> tuple[list, list[str]]:
    """Legend entries of all axes, each label once, the saturated ring last."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    labels = sorted(entries, key=lambda label: label == SATURATED_LABEL)
    return [entries[label] for label in labels], labels


def _legend(ax: Axes) -> None:
    """A legend to the right of a single-panel chart."""
    handles, labels = _handles([ax])
    ax.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)  # fmt: skip


def _figure_legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend below a multi-panel chart (never over the data)."""
    handles, labels = _handles(axes)
    if handles:
        fig.legend(handles, labels, fontsize="small", loc="outside lower center",
                   ncols=min(4, len(labels)), frameon=False)  # fmt: skip


def _log_y(ax: Axes) -> None:
    """Log scale with plain-number ticks at 1, 2 and 5 of each decade (100, 200, 500...) and
    no minor ticks: unlabelled, they were a quarter of a report's drawing time.

    Called once the axes is drawn: with no positive value on it (a panel none of whose points
    has the figure) it stays linear, as a log axis of nothing cannot be drawn."""
    if not _drawn(ax, positive_y=True):
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _empty(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", transform=ax.transAxes, ha="center", va="center",
            color="#666666")  # fmt: skip


def _percentile_lines(ax: Axes, rows: pd.DataFrame, series: str, color: str) -> None:
    """One series' p50 / p99 / p99.9 lines vs connections, saturated points ringed."""
    for column, (style, label) in PERCENTILE_STYLES.items():
        ax.plot(rows["users"], rows[column], linestyle=style, marker="o", markersize=4,
                color=color, label=f"{series} {label}", gid=f"{column}:{series}")  # fmt: skip
        _ring_saturated(ax, rows["users"], rows[column], rows["generator_saturated"], column)


def latency_chart(frame: pd.DataFrame, title: str) -> Figure:
    """p50 / p99 / p99.9 (µs, log) vs connections, one colour per series."""
    fig, (ax,) = _figure()
    palette = colors(frame["series"].tolist())
    for series, rows in frame.groupby("series", sort=True):
        _percentile_lines(ax, rows, series, palette[series])
    _log_y(ax)
    ax.set_ylabel("latency (µs, log scale)")
    _connections_axis(ax, frame["users"])
    ax.set_title(title)
    if frame[list(PERCENTILE_STYLES)].isna().all().all():
        _empty(ax, "successful samples")
    _legend(ax)
    return fig


def throughput_chart(frame: pd.DataFrame, title: str, rate_label: str) -> Figure:
    """The main request name's successful rate vs connections, one line per series."""
    fig, (ax,) = _figure()
    palette = colors(frame["series"].tolist())
    for series, rows in frame.groupby("series", sort=True):
        ax.plot(rows["users"], rows["msgs_per_s"], marker="o", color=palette[series],
                label=series, gid=f"msgs_per_s:{series}")  # fmt: skip
        _ring_saturated(ax, rows["users"], rows["msgs_per_s"], rows["generator_saturated"],
                        "msgs_per_s")  # fmt: skip
    ax.set_ylabel(rate_label)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(THOUSANDS)
    _connections_axis(ax, frame["users"])
    ax.set_title(title)
    if frame["msgs_per_s"].isna().all():
        _empty(ax, "points")
    _legend(ax)
    return fig


def connect_chart(frame: pd.DataFrame, title: str) -> Figure:
    """Connect scenario: TCP connect and WebSocket upgrade latency; failure rate."""
    fig, (lat, fail) = _figure(2, PANELS_HEIGHT)
    palette = colors(frame["series"].tolist())
    lines = {"upgrade_p50_us": (":", "upgrade p50"), "upgrade_p99_us": ("-", "upgrade p99"),
             "connect_p99_us": ("--", "TCP connect p99")}  # fmt: skip
    for series, rows in frame.groupby("series", sort=True):
        for column, (style, label) in lines.items():
            lat.plot(rows["users"], rows[column], linestyle=style, marker="o", markersize=4,
                     color=palette[series], label=f"{series} {label}",
                     gid=f"{column}:{series}")  # fmt: skip
            _ring_saturated(lat, rows["users"], rows[column], rows["generator_saturated"], column)
        pct = 100.0 * rows["failure_rate"]
        fail.plot(rows["users"], pct, marker="o", color=palette[series], label=series,
                  gid=f"failure_pct:{series}")  # fmt: skip
        _ring_saturated(fail, rows["users"], pct, rows["generator_saturated"], "failure_pct")
    _log_y(lat)
    lat.set_ylabel("latency (µs, log scale)")
    lat.set_title("connect latency")
    fail.set_ylabel("failed requests (% of requests)")
    fail.yaxis.set_major_formatter(PercentFormatter())
    fail.set_ylim(bottom=0, top=max(1.0, float((100 * frame["failure_rate"]).max() or 0) * 1.2))
    fail.set_title("failure rate")
    for ax in (lat, fail):
        _connections_axis(ax, frame["users"])
    _figure_legend(fig, [lat, fail])
    fig.suptitle(title)
    return fig


def server_chart(frame: pd.DataFrame, title: str) -> Figure:
    """The target's peak RSS, RSS per connection and mean CPU vs connections.

    The memory per connection panel is drawn only when the frame has that column: the page
    leaves it out where the figure means nothing (see page.memory_per_connection).
    """
    per_conn = "server_rss_per_conn_bytes" in frame
    panels = (
        ("server_rss_mib", "peak RSS (MiB)", "server memory", frame["server_rss_bytes_max"] / MIB),
        *([("server_rss_per_conn_kib", "RSS growth ÷ connections (KiB)", "memory per connection",
            frame["server_rss_per_conn_bytes"] / 1024)] if per_conn else []),
        ("server_cpu_pct", "CPU (% of one core, mean)", "server CPU",
         frame["server_cpu_pct_mean"]),
    )  # fmt: skip
    fig, axes = _figure(len(panels), PANELS_HEIGHT)
    palette = colors(frame["series"].tolist())
    for ax, (metric, ylabel, subtitle, values) in zip(axes, panels, strict=True):
        for series, rows in frame.groupby("series", sort=True):
            y = values.loc[rows.index]
            ax.plot(rows["users"], y, marker="o", color=palette[series], label=series,
                    gid=f"{metric}:{series}")  # fmt: skip
            _ring_saturated(ax, rows["users"], y, rows["generator_saturated"], metric)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(THOUSANDS)
        ax.set_title(subtitle, fontsize="medium")
        _connections_axis(ax, frame["users"])
    _figure_legend(fig, axes)
    fig.suptitle(title)
    return fig


def _rate_axis(ax: Axes, values: pd.Series, label: str) -> None:
    """An x axis of rates: log when they span a decade or more, plain-number ticks."""
    ax.set_xlabel(label)
    values = pd.to_numeric(values, errors="coerce").dropna()
    if not values.empty and values.min() > 0 and values.max() / values.min() >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    if 0 < values.nunique() <= 8:  # few steps: a tick at each
        ax.set_xticks(sorted(values.unique()))
    ax.xaxis.set_major_formatter(THOUSANDS)


def knee_chart(frame: pd.DataFrame, slo_us: float, title: str) -> Figure:
    """Capacity: p99 (µs, log) and achieved msgs/s vs offered msgs/s, one line per series.

    The frame has one row per rate step (series, offered_msgs_per_s, msgs_per_s, p99_us,
    knee, generator_saturated); the SLO is a horizontal line and each series' knee (its first
    step over the SLO) a large cross on both panels.
    """
    fig, (lat, got) = _figure(2, PANELS_HEIGHT)
    palette = colors(frame["series"].tolist())
    for series, rows in frame.groupby("series", sort=True):
        x = rows["offered_msgs_per_s"]
        for ax, column in ((lat, "p99_us"), (got, "msgs_per_s")):
            ax.plot(x, rows[column], marker="o", color=palette[series], label=series,
                    gid=f"{column}:{series}")  # fmt: skip
            _ring_saturated(ax, x, rows[column], rows["generator_saturated"], column)
            knee = rows[rows["knee"]]
            if not knee.empty:
                ax.plot(knee["offered_msgs_per_s"], knee[column], linestyle="none", marker="X",
                        markersize=12, color=palette[series], markeredgecolor="black",
                        label=KNEE_LABEL, gid=f"knee_{column}:{series}", zorder=6)  # fmt: skip
    lat.axhline(slo_us, color=SATURATED_COLOR, linestyle="--", linewidth=1,
                label=f"SLO: p99 {slo_us / 1000:g} ms", gid="slo_us")  # fmt: skip
    _log_y(lat)
    lat.set_ylabel("p99 latency (µs, log scale)")
    lat.set_title("p99 vs offered load")
    if not frame.empty:  # what a server keeping up achieves: all of the offered load
        top = float(frame["offered_msgs_per_s"].max())
        bottom = float(frame["offered_msgs_per_s"].min())
        got.plot([bottom, top], [bottom, top], color="#7f7f7f", linestyle=":", linewidth=1,
                 label="achieved = offered", gid="offered")  # fmt: skip
    got.set_ylabel("achieved (msgs/s)")
    got.set_ylim(bottom=0)
    got.yaxis.set_major_formatter(THOUSANDS)
    got.set_title("achieved vs offered")
    for ax in (lat, got):
        _rate_axis(ax, frame["offered_msgs_per_s"], "offered load (msgs/s = --rate × connections)")
    if frame["p99_us"].isna().all():
        _empty(lat, "rate steps")
    _figure_legend(fig, [lat, got])
    fig.suptitle(title)
    return fig


def connect_profiles_chart(frame: pd.DataFrame, title: str) -> Figure:
    """Connect storm per kernel profile: upgrades/s and failure share, a bar per target.

    The frame has one row per (kernel_profile, target): upgrades_per_s, failure_pct,
    generator_saturated. Bars are grouped by profile, one colour per target; each bar's gid is
    "<metric>:<target> · <profile>".
    """
    fig, (rate, fail) = _figure(2, PANELS_HEIGHT)
    profiles = sorted(frame["kernel_profile"].unique())
    targets = sorted(frame["target"].unique())
    palette = colors(targets)
    width = 0.8 / max(1, len(targets))
    for ax, column in ((rate, "upgrades_per_s"), (fail, "failure_pct")):
        for i, target in enumerate(targets):
            for j, profile in enumerate(profiles):
                row = frame[(frame["target"] == target) & (frame["kernel_profile"] == profile)]
                if row.empty:
                    continue
                x = j - 0.4 + width * (i + 0.5)
                value = float(row[column].iloc[0])
                ax.bar([x], [0.0 if np.isnan(value) else value], width=width * 0.9,
                       color=palette[target], label=target,
                       gid=f"{column}:{target} · {profile}")  # fmt: skip
                if bool(row["generator_saturated"].iloc[0]):
                    ax.plot([x], [value], linestyle="none", marker="o", markersize=13,
                            markerfacecolor="none", markeredgecolor=SATURATED_COLOR,
                            markeredgewidth=2, label=SATURATED_LABEL, clip_on=False,
                            gid=f"saturated:{column}")  # fmt: skip
        ax.set_xticks(range(len(profiles)), profiles)
        ax.set_xlabel("kernel profile (of the namespaces; host = none)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.grid(False, axis="x")
    rate.set_ylabel("upgrades/s (new connections)")
    rate.set_ylim(bottom=0)
    rate.yaxis.set_major_formatter(THOUSANDS)
    rate.set_title("connect rate sustained")
    fail.set_ylabel("failed upgrades (% of attempts)")
    fail.yaxis.set_major_formatter(PercentFormatter())
    fail.set_ylim(bottom=0, top=max(1.0, float(frame["failure_pct"].max() or 0) * 1.2))
    fail.set_title("failures")
    _figure_legend(fig, [rate, fail])
    fig.suptitle(title)
    return fig


def kernel_chart(frame: pd.DataFrame, title: str, rate_label: str) -> Figure:
    """The same workload under each kernel profile: p99, rate and failures vs connections."""
    fig, axes = _figure(3, PANELS_HEIGHT)
    palette = colors(frame["target"].tolist())
    styles = {p: PROFILE_STYLES[i % len(PROFILE_STYLES)]
              for i, p in enumerate(sorted(frame["kernel_profile"].unique()))}  # fmt: skip
    panels = (("p99_us", "p99 latency (µs, log scale)", "p99 latency"),
              ("msgs_per_s", rate_label, "throughput"),
              ("failure_pct", "failed requests (% of requests)", "failures"))  # fmt: skip
    frame = frame.assign(failure_pct=100.0 * frame["failure_rate"])
    for ax, (metric, ylabel, subtitle) in zip(axes, panels, strict=True):
        for (target, profile), rows in frame.groupby(["target", "kernel_profile"], sort=True):
            line, marker = styles[profile]
            ax.plot(rows["users"], rows[metric], linestyle=line, marker=marker, fillstyle="none"
                    if marker != "o" else "full", color=palette[target],
                    label=f"{target} · {profile}",
                    gid=f"{metric}:{target} · {profile}")  # fmt: skip
            _ring_saturated(ax, rows["users"], rows[metric], rows["generator_saturated"], metric)
        ax.set_ylabel(ylabel)
        ax.set_title(subtitle, fontsize="medium")
        _connections_axis(ax, frame["users"])
    _log_y(axes[0])
    axes[1].set_ylim(bottom=0)
    axes[1].yaxis.set_major_formatter(THOUSANDS)
    axes[2].set_ylim(bottom=0, top=max(1.0, float(frame["failure_pct"].max() or 0) * 1.2))
    axes[2].yaxis.set_major_formatter(PercentFormatter())
    _figure_legend(fig, axes)
    fig.suptitle(title)
    return fig


TOPOLOGY_HATCH = "//"  # a stacked bar's upper part: the proxy's share


def topology_chart(
    frame: pd.DataFrame, panels: list[tuple[str, list[tuple[str, str]]]], title: str
) -> Figure:
    """Per target a group of bars, one per topology variant (a colour each, the same in every
    topology chart); one panel per (y label, [(column, part label), ...]), whose columns are
    stacked: the first plain (the target's share), the next hatched (the proxy's).

    The frame has one row per (target, variant) with the panels' columns and
    generator_saturated; each bar's gid is "<column>:<target> · <variant>".
    """
    fig, axes = _figure(len(panels), PANELS_HEIGHT)
    targets = list(dict.fromkeys(frame["target"]))
    variants = list(dict.fromkeys(frame["variant"]))
    palette = colors(variants)
    width = 0.8 / max(1, len(variants))
    for ax, (ylabel, stack) in zip(axes, panels, strict=True):
        for i, target in enumerate(targets):
            for j, variant in enumerate(variants):
                row = frame[(frame["target"] == target) & (frame["variant"] == variant)]
                if row.empty:
                    continue
                x, bottom = i - 0.4 + width * (j + 0.5), 0.0
                for k, (column, _) in enumerate(stack):
                    value = float(pd.to_numeric(row[column], errors="coerce").iloc[0])
                    if np.isnan(value):
                        continue
                    ax.bar([x], [value], bottom=bottom, width=width * 0.9,
                           color=palette[variant], hatch=TOPOLOGY_HATCH if k else None,
                           edgecolor="white" if k else None, label=variant,
                           gid=f"{column}:{target} · {variant}")  # fmt: skip
                    bottom += value
                if bool(row["generator_saturated"].iloc[0]) and bottom:
                    ax.plot([x], [bottom], linestyle="none", marker="o", markersize=13,
                            markerfacecolor="none", markeredgecolor=SATURATED_COLOR,
                            markeredgewidth=2, label=SATURATED_LABEL, clip_on=False,
                            gid=f"saturated:{stack[0][0]}")  # fmt: skip
        if len(stack) > 1:
            ax.bar([0], [0], color="#bbbbbb", hatch=TOPOLOGY_HATCH, edgecolor="white",
                   label=f"hatched: {stack[1][1]}")  # fmt: skip
        ax.set_xticks(range(len(targets)), targets)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(THOUSANDS)
        ax.grid(True, axis="y", alpha=0.3)
        ax.grid(False, axis="x")
    _figure_legend(fig, list(axes))
    fig.suptitle(title)
    return fig


NINES_TICKS = {2: "50%", 10: "90%", 100: "99%", 1e3: "99.9%", 1e4: "99.99%", 1e5: "99.999%",
               1e6: "99.9999%"}  # fmt: skip


def _spectrum_axes(ax: Axes, frame: pd.DataFrame) -> None:
    palette = colors(frame["line"].tolist())
    for line, rows in frame.groupby("line", sort=True):
        ax.plot(rows["inverse_tail"], rows["value_us"], color=palette[line], label=line,
                gid=f"value_us:{line}", drawstyle="steps-post",
                marker="o" if len(rows) < 3 else None)  # fmt: skip
        if "generator_saturated" in rows and rows["generator_saturated"].any():
            last = rows.iloc[[-1]]
            _ring_saturated(ax, last["inverse_tail"], last["value_us"],
                            last["generator_saturated"], "value_us")  # fmt: skip
    ax.set_xscale("log")
    _log_y(ax)
    top = float(frame["inverse_tail"].max()) if not frame.empty else 100.0
    ticks = [t for t in NINES_TICKS if t <= max(top, 100.0)]
    ax.set_xticks(ticks, [NINES_TICKS[t] for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("percentile (x axis is 1/(1 − q), log scale)")
    ax.set_ylabel("latency (µs, log scale)")
    if frame.empty:
        _empty(ax, "latency samples")


def spectrum_chart(frame: pd.DataFrame, title: str) -> Figure:
    """HdrHistogram-style percentile spectrum: latency vs 1/(1-q), one line per name or point."""
    fig, (ax,) = _figure()
    _spectrum_axes(ax, frame)
    ax.set_title(title)
    _legend(ax)
    return fig


def broadcast_chart(spectra: pd.DataFrame, delivery: pd.DataFrame, title: str) -> Figure:
    """Publish-to-receive latency spectrum per point, and the share of messages delivered."""
    fig = Figure(figsize=(SIZE[0], SIZE[1] + 0.6), layout="constrained")
    spec, bars = fig.subplots(1, 2, width_ratios=(3, 2))
    spec.grid(True, alpha=0.3)
    _spectrum_axes(spec, spectra)
    spec.set_title("publish → receive latency")
    palette = colors(delivery["series"].tolist())
    labels = [f"{s}\n{u} conn" for s, u in zip(delivery["series"], delivery["users"], strict=True)]
    x = np.arange(len(delivery))
    bars.bar(x, delivery["delivered_pct"].fillna(0.0),
             color=[palette[s] for s in delivery["series"]], gid="delivered_pct")  # fmt: skip
    for xi, pct, lost, sat in zip(x, delivery["delivered_pct"], delivery["lost"],
                                  delivery["generator_saturated"], strict=True):  # fmt: skip
        text = "n/a" if pd.isna(pct) else f"{pct:.1f}%" + (f"\n{lost:g} lost" if lost else "")
        bars.text(xi, 2, text, ha="center", va="bottom", fontsize="x-small", color="white"
                  if not pd.isna(pct) and pct > 15 else "black", rotation=90)  # fmt: skip
        if sat:
            bars.plot([xi], [min(pct, 100.0)], linestyle="none", marker="o", markersize=13,
                      markerfacecolor="none", markeredgecolor=SATURATED_COLOR,
                      markeredgewidth=2, label=SATURATED_LABEL)  # fmt: skip
    bars.set_xticks(x, labels, fontsize="x-small")
    bars.set_ylim(0, 105)
    bars.yaxis.set_major_formatter(PercentFormatter())
    bars.set_ylabel("delivered (% of expected, as counted)")
    bars.set_xlabel("point (series, connections)")
    bars.set_title("delivery completeness")
    bars.grid(True, axis="y", alpha=0.3)
    _figure_legend(fig, [spec, bars])
    fig.suptitle(title)
    return fig


def push_chart(frame: pd.DataFrame, title: str) -> Figure:
    """Push: one-way latency percentiles and messages lost (sequence gaps) vs connections."""
    fig, (lat, gaps) = _figure(2, PANELS_HEIGHT)
    palette = colors(frame["series"].tolist())
    for series, rows in frame.groupby("series", sort=True):
        _percentile_lines(lat, rows, series, palette[series])
        gaps.plot(rows["users"], rows["lost_pct"], marker="o", color=palette[series],
                  label=f"{series} lost", gid=f"lost_pct:{series}")  # fmt: skip
        _ring_saturated(gaps, rows["users"], rows["lost_pct"], rows["generator_saturated"],
                        "lost_pct")  # fmt: skip
    _log_y(lat)
    lat.set_ylabel("one-way latency (µs, log scale)")
    lat.set_title("server send → client receive")
    gaps.set_ylabel("messages lost (% of sent)")
    gaps.yaxis.set_major_formatter(PercentFormatter())
    gaps.set_ylim(bottom=0, top=max(1.0, float(frame["lost_pct"].max() or 0) * 1.2))
    gaps.set_title("sequence gaps")
    for ax in (lat, gaps):
        _connections_axis(ax, frame["users"])
    _figure_legend(fig, [lat, gaps])
    fig.suptitle(title)
    return fig


def timeseries_chart(frame: pd.DataFrame, title: str, rate_label: str) -> Figure:
    """One point over time: load, rate, p99 per window, CPU and server memory."""
    fig = Figure(figsize=(SIZE[0], 7.5), layout="constrained")
    load, rate, p99, cpu = fig.subplots(4, 1, sharex=True)
    panels = (
        (load, (("users", "Locust users"), ("open_connections", "open connections")),
         "connections (count)"),
        (rate, (("msgs_per_s", rate_label),), rate_label),
        (p99, (("p99_us", "p99 per window"),), "p99 latency (µs, log)"),
        (cpu, (("server_cpu_pct", "server CPU"), ("generator_cpu_pct", "generator CPU")),
         "CPU (% of a core)"),
    )  # fmt: skip
    for ax, lines, ylabel in panels:
        for metric, label in lines:
            rows = frame[frame["metric"] == metric]
            ax.plot(rows["t_s"], rows["value"], marker="o", markersize=3, label=label,
                    gid=f"{metric}:{label}", drawstyle="default")  # fmt: skip
        ax.set_ylabel(ylabel, fontsize="small")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _log_y(p99)
    gen = frame[frame["metric"] == "generator_cpu_pct"]
    hot = gen[gen["value"] >= 90.0]
    if not hot.empty:
        cpu.plot(hot["t_s"], hot["value"], linestyle="none", marker="o", markersize=11,
                 markerfacecolor="none", markeredgecolor=SATURATED_COLOR, markeredgewidth=2,
                 label=SATURATED_LABEL, gid="saturated:generator_cpu_pct")  # fmt: skip
    cpu.axhline(90.0, color=SATURATED_COLOR, linewidth=0.8, linestyle=":", label="_nolegend_")
    memory = cpu.twinx()
    rss = frame[frame["metric"] == "server_rss_mib"]
    memory.plot(rss["t_s"], rss["value"], color="#7f7f7f", linestyle="--", marker="s",
                markersize=3, label="server RSS", gid="server_rss_mib:server RSS")  # fmt: skip
    memory.set_ylabel("server RSS (MiB)", fontsize="small")
    memory.set_ylim(bottom=0)
    cpu.set_ylim(bottom=0)
    handles = [h for h in cpu.lines + memory.lines if not h.get_label().startswith("_")]
    cpu.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.08, 1.0),
               frameon=False)  # fmt: skip
    rate.yaxis.set_major_formatter(THOUSANDS)
    cpu.set_xlabel("time since Locust started (s)")
    fig.suptitle(title)
    return fig


def change_chart(frame: pd.DataFrame, threshold_pct: float, title: str) -> Figure:
    """Comparison: % change per point and metric, worse to the right, the threshold marked."""
    metrics = list(dict.fromkeys(frame["metric"]))
    height = max(2.5, 0.28 * len(frame["point"].unique()) * max(1, len(metrics)) / 2 + 1.5)
    fig, axes = _figure(max(1, len(metrics)), height=height)
    for ax, metric in zip(axes, metrics or ["(none)"], strict=False):
        rows = frame[frame["metric"] == metric]
        y = np.arange(len(rows))
        worse = rows["worse_pct"].fillna(0.0)
        ax.barh(y, worse, color=[SATURATED_COLOR if r else "#1f77b4" for r in rows["regression"]],
                gid=f"worse_pct:{metric}")  # fmt: skip
        ax.axvline(threshold_pct, color=SATURATED_COLOR, linestyle=":", linewidth=1)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_yticks(y, rows["point"], fontsize="x-small")
        ax.invert_yaxis()
        ax.set_xlabel("change for the worse (%)")
        ax.set_title(metric, fontsize="medium")
        ax.grid(True, axis="x", alpha=0.3)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    handles = [Patch(color=SATURATED_COLOR, label=f"regression (worse by > {threshold_pct:g} %)"),
               Patch(color="#1f77b4", label="within threshold, or better")]  # fmt: skip
    fig.legend(handles=handles, fontsize="small", loc="outside lower center", ncols=2,
               frameon=False)  # fmt: skip
    fig.suptitle(title)
    return fig


FAULT_COLOR = "#000000"
DRILL_RATES = (("connects_per_s", "connects/s", "-"), ("drops_per_s", "drops/s", "--"),
               ("connect_failures_per_s", "connect failures/s", ":"))  # fmt: skip


def drill_chart(frame: pd.DataFrame, faults: pd.DataFrame, title: str, latency_name: str) -> Figure:
    """A failover drill over time: open connections; connects, drops and connect failures per
    second; the watched request's p99 (µs, log). Each fault is a vertical line on every panel,
    labelled once at the top ("kill-target at 10 s").

    `frame` is tables.drill_timeline's (one row per window, t_s at its middle), `faults`
    tables.drill_faults' (fault, t_s).
    """
    fig = Figure(figsize=(SIZE[0], 7.0), layout="constrained")
    conns, rates, p99 = fig.subplots(3, 1, sharex=True)
    conns.plot(frame["t_s"], frame["open_connections"], marker="o", markersize=3,
               color=PALETTE[0], label="open connections",
               gid="open_connections:open connections")  # fmt: skip
    conns.set_ylabel("open connections", fontsize="small")
    for (column, label, style), color in zip(DRILL_RATES, PALETTE[1:], strict=False):
        rates.plot(frame["t_s"], frame[column], linestyle=style, marker="o", markersize=3,
                   color=color, label=label, gid=f"{column}:{label}")  # fmt: skip
    rates.set_ylim(bottom=0)
    rates.set_ylabel("per second", fontsize="small")
    p99.plot(frame["t_s"], frame["p99_us"], marker="o", markersize=3, color=PALETTE[4],
             label=f"{latency_name} p99", gid=f"p99_us:{latency_name}")  # fmt: skip
    _log_y(p99)
    p99.set_ylabel("p99 per window (µs, log)", fontsize="small")
    p99.set_xlabel("seconds since the point's first latency window")
    for ax in (conns, rates):
        ax.yaxis.set_major_formatter(THOUSANDS)
    for ax in (conns, rates, p99):
        ax.grid(True, alpha=0.3)
        for fault, t_s in zip(faults["fault"], faults["t_s"], strict=True):
            ax.axvline(t_s, color=FAULT_COLOR, linestyle="--", linewidth=1, label="_nolegend_",
                       gid=f"fault:{fault}")  # fmt: skip
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)  # fmt: skip
    for fault, t_s in zip(faults["fault"], faults["t_s"], strict=True):
        conns.annotate(fault, xy=(t_s, 0.0), xycoords=("data", "axes fraction"),
                       xytext=(3, 3), textcoords="offset points", ha="left", va="bottom",
                       fontsize="small", gid=f"fault_label:{fault}")  # fmt: skip
    if frame.empty:
        _empty(conns, "latency windows")
    fig.suptitle(title)
    return fig
