"""Charts: each figure plots exactly its table's values, marks saturated points, is labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from reports import charts, compare, page, tables
from reports.load import Run, load_run


def plotted(fig: Figure) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every data line of a figure by gid: (x, y) as float arrays."""
    found = {}
    for ax in fig.axes:
        for line in ax.lines:
            if line.get_gid():
                found[line.get_gid()] = (np.asarray(line.get_xdata(), dtype=float),
                                         np.asarray(line.get_ydata(), dtype=float))  # fmt: skip
    return found


def same(actual: np.ndarray, expected: pd.Series | np.ndarray) -> bool:
    return np.allclose(actual, np.asarray(expected, dtype=float), equal_nan=True)


def check_lines(fig: Figure, frame: pd.DataFrame, key: str, columns: dict[str, pd.Series]) -> None:
    """For each line name in frame[key] and each metric, the line equals the frame's rows."""
    lines = plotted(fig)
    for name, rows in frame.groupby(key):
        for metric, values in columns.items():
            x, y = lines[f"{metric}:{name}"]
            assert same(x, rows["users"]), (metric, name)
            assert same(y, values.loc[rows.index]), (metric, name)


def check_rings(fig: Figure, frame: pd.DataFrame, metric: str, values: pd.Series) -> None:
    """The red rings of `metric` sit exactly on the frame's saturated points."""
    saturated = frame["generator_saturated"] & values.notna()
    ring = plotted(fig).get(f"saturated:{metric}")
    if not saturated.any():
        assert ring is None
        return
    assert ring is not None, f"no rings for {metric}"
    expected = sorted(zip(frame.loc[saturated, "users"], values[saturated], strict=True))
    assert sorted(zip(*ring, strict=True)) == [tuple(map(float, e)) for e in expected]


@pytest.fixture(scope="module")
def echo(sweep: Run) -> pd.DataFrame:
    return tables.scaling(sweep.points, "echo")


def test_latency_chart_plots_the_frames_percentiles(sweep: Run) -> None:
    """One line per target and percentile with the frame's p50/p99/p99.9; rings on saturated."""
    for scenario in ("echo", "connect", "broadcast"):
        frame = tables.scaling(sweep.points, scenario)
        fig = charts.latency_chart(frame, "t")
        columns = {c: frame[c] for c in ("p50_us", "p99_us", "p999_us")}
        check_lines(fig, frame, "series", columns)
        for column, values in columns.items():
            check_rings(fig, frame, column, values)
        assert fig.axes[0].get_yscale() == "log"
    assert sweep.points["generator_saturated"].any()  # so the rings were checked somewhere


def test_throughput_chart_plots_msgs_per_s(sweep: Run) -> None:
    """Each scenario's throughput lines are its points' msgs/s."""
    for scenario in ("echo", "connect", "broadcast"):
        frame = tables.scaling(sweep.points, scenario)
        fig = charts.throughput_chart(frame, "t", "msgs/s")
        check_lines(fig, frame, "series", {"msgs_per_s": frame["msgs_per_s"]})
        check_rings(fig, frame, "msgs_per_s", frame["msgs_per_s"])


def test_connect_chart_plots_setup_latency_and_failures(sweep: Run) -> None:
    """Upgrade p50/p99, TCP connect p99 and failure % per target, as in the frame."""
    frame = tables.scaling(sweep.points, "connect")
    fig = charts.connect_chart(frame, "t")
    columns = {c: frame[c] for c in ("upgrade_p50_us", "upgrade_p99_us", "connect_p99_us")}
    columns["failure_pct"] = 100 * frame["failure_rate"]
    check_lines(fig, frame, "series", columns)
    check_rings(fig, frame, "upgrade_p99_us", frame["upgrade_p99_us"])


def test_server_chart_plots_memory_and_cpu(echo: pd.DataFrame) -> None:
    """Peak RSS in MiB, RSS per connection in KiB and mean CPU equal the frame's."""
    fig = charts.server_chart(echo, "t")
    check_lines(fig, echo, "series", {
        "server_rss_mib": echo["server_rss_bytes_max"] / 2**20,
        "server_rss_per_conn_kib": echo["server_rss_per_conn_bytes"] / 1024,
        "server_cpu_pct": echo["server_cpu_pct_mean"],
    })  # fmt: skip


def test_kernel_chart_lines_per_target_and_profile(two_profile_copy: Path) -> None:
    """Kernel comparison: a line per (target, profile) of p99, msgs/s and failure %."""
    run = load_run(two_profile_copy)
    frame = tables.scaling(run.points, "echo")
    fig = charts.kernel_chart(frame, "t", "msgs/s")
    keyed = frame.assign(line=frame["target"] + " · " + frame["kernel_profile"])
    check_lines(fig, keyed, "line", {"p99_us": frame["p99_us"], "msgs_per_s": frame["msgs_per_s"],
                                     "failure_pct": 100 * frame["failure_rate"]})  # fmt: skip
    assert len(plotted(fig)) >= 3 * 4  # 3 panels x 2 targets x 2 profiles


def test_spectrum_chart_plots_the_histogram_spectrum(sweep: Run) -> None:
    """Each request name's line is its percentile spectrum: x = 1/(1-q), y = µs."""
    frame = tables.point_spectrum(sweep, "raw-echo-u5-host")
    fig = charts.spectrum_chart(frame, "t")
    lines = plotted(fig)
    assert set(frame["line"]) == {"echo", "tcp connect", "ws upgrade"}
    for name, rows in frame.groupby("line"):
        x, y = lines[f"value_us:{name}"]
        assert same(x, rows["inverse_tail"]) and same(y, rows["value_us"])
    echo = frame[frame["line"] == "echo"].set_index("percentile")["value_us"]
    assert echo.loc[50.0] == sweep.points.set_index("point_id").loc["raw-echo-u5-host", "p50_us"]
    assert fig.axes[0].get_xscale() == "log"


def test_broadcast_chart_plots_spectra_and_delivery(sweep: Run) -> None:
    """Broadcast: spectra per point and bars of delivered % (received / published x members)."""
    spectra = tables.spectra(sweep, "broadcast")
    delivery = tables.broadcast_delivery(sweep.points)
    fig = charts.broadcast_chart(spectra, delivery, "t")
    lines = plotted(fig)
    for name, rows in spectra.groupby("line"):
        assert same(lines[f"value_us:{name}"][1], rows["value_us"])
    bars = [p for p in fig.axes[1].patches if p.get_gid() == "delivered_pct"]
    assert same(np.array([b.get_height() for b in bars]), delivery["delivered_pct"])
    expected = 100 * delivery["received"] / (delivery["published"] * delivery["users"])
    assert same(delivery["delivered_pct"].to_numpy(), expected)


def test_push_chart_plots_latency_and_gaps(extras: Run) -> None:
    """Push: one-way p50/p99/p99.9 and lost % per target, as in the push table."""
    frame = tables.push_gaps(extras.points)
    fig = charts.push_chart(frame, "t")
    columns = {c: frame[c] for c in ("p50_us", "p99_us", "p999_us", "lost_pct")}
    check_lines(fig, frame, "series", columns)
    assert frame["lost_pct"].tolist() == [0.0]


def test_timeseries_chart_plots_every_metric(sweep: Run) -> None:
    """The time series figure has one line per metric with the table's (t, value) pairs."""
    saturated = sweep.points.loc[sweep.points["generator_saturated"], "point_id"].iloc[0]
    frame = tables.timeseries(sweep, saturated)
    fig = charts.timeseries_chart(frame, "t", "round trips/s")
    lines = {gid.split(":")[0]: xy for gid, xy in plotted(fig).items()
             if not gid.startswith("saturated")}  # fmt: skip
    assert set(lines) == set(frame["metric"])
    for metric, rows in frame.groupby("metric"):
        assert same(lines[metric][0], rows["t_s"]) and same(lines[metric][1], rows["value"])
    hot = frame[(frame["metric"] == "generator_cpu_pct") & (frame["value"] >= 90)]
    assert not hot.empty  # a saturated point has windows at 90 % or more
    assert same(plotted(fig)["saturated:generator_cpu_pct"][1], hot["value"])


def test_change_chart_bars_are_worse_pct(sweep: Run, slower_copy: Path) -> None:
    """The comparison chart's bars are each metric's change for the worse, in %."""
    result = compare.compare(sweep, load_run(slower_copy), 10.0)
    fig = charts.change_chart(result.changes, 10.0, "t")
    for ax in fig.axes:
        metric = ax.get_title()
        rows = result.changes[result.changes["metric"] == metric]
        widths = [p.get_width() for p in ax.patches if p.get_gid() == f"worse_pct:{metric}"]
        assert same(np.array(widths), rows["worse_pct"].fillna(0.0))


def _all_charts(sweep: Run, extras: Run, two_profiles: Run, knee: Run) -> list[page.Chart]:
    return [
        *page.build(sweep).charts(),
        *page.build(extras).charts(),
        *(c for c in page.build(two_profiles).charts() if c.slug.startswith("kernel-")),
        *(c for c in page.build(knee).charts() if c.slug == "knee"),
    ]


def test_every_chart_has_title_units_and_legend(
    sweep: Run, extras: Run, two_profile_copy: Path, knee_copy: tuple[Path, float]
) -> None:
    """Every chart of the pages has a title, axis labels with units and a legend."""
    built = _all_charts(sweep, extras, load_run(two_profile_copy), load_run(knee_copy[0]))
    assert any(c.slug.startswith("kernel-") for c in built)
    assert {"knee", "connect-profiles"} <= {c.slug for c in built}
    for chart in built:
        fig = chart.figure
        assert fig.get_suptitle() or fig.axes[0].get_title(), chart.slug
        assert fig.legends or any(ax.get_legend() for ax in fig.axes), chart.slug
        for ax in fig.axes:
            siblings = ax.get_shared_x_axes().get_siblings(ax)  # stacked panels share one label
            xlabel = next((o.get_xlabel() for o in siblings if o.get_xlabel()), "")
            for label in (xlabel, ax.get_ylabel()):
                if ax.lines or ax.patches:
                    assert "(" in label or "/s" in label, (chart.slug, label)
        assert chart.caption, chart.slug


def test_charts_do_not_change_their_tables(echo: pd.DataFrame) -> None:
    """Drawing is pure: the table is the same before and after every chart of it."""
    before = echo.copy()
    charts.latency_chart(echo, "t")
    charts.throughput_chart(echo, "t", "msgs/s")
    charts.server_chart(echo, "t")
    pd.testing.assert_frame_equal(echo, before)


def test_knee_chart_plots_p99_and_achieved_vs_offered(knee_copy: tuple[Path, float]) -> None:
    """Per target: p99 and achieved msgs/s against offered msgs/s, the SLO line at the run's
    SLO, and a cross on each target's knee step only."""
    run_dir, slo_us = knee_copy
    frame = page.knee_table(load_run(run_dir).points, slo_us)
    fig = charts.knee_chart(frame, slo_us, "t")
    lines = plotted(fig)
    for series, rows in frame.groupby("series"):
        for column in ("p99_us", "msgs_per_s"):
            x, y = lines[f"{column}:{series}"]
            assert same(x, rows["offered_msgs_per_s"]) and same(y, rows[column])
            kx, ky = lines[f"knee_{column}:{series}"]
            knee = rows[rows["knee"]]
            assert len(knee) == 1 and same(kx, knee["offered_msgs_per_s"])
            assert same(ky, knee[column])
    assert same(lines["slo_us"][1], [slo_us, slo_us])
    assert fig.axes[0].get_yscale() == "log"


def test_connect_profiles_chart_bars_per_target_and_profile(connect_profiles_copy: Path) -> None:
    """One bar per target and profile: its upgrades/s, and its failed share in %."""
    frame = page.connect_profiles(load_run(connect_profiles_copy).points)
    fig = charts.connect_profiles_chart(frame, "t")
    bars = {p.get_gid(): p.get_height() for ax in fig.axes for p in ax.patches if p.get_gid()}
    assert len(bars) == 2 * len(frame) == 8
    for row in frame.itertuples():
        assert bars[f"upgrades_per_s:{row.target} · {row.kernel_profile}"] == row.upgrades_per_s
        assert bars[f"failure_pct:{row.target} · {row.kernel_profile}"] == row.failure_pct
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["host", "tuned"]


def test_server_chart_without_memory_per_connection(echo: pd.DataFrame) -> None:
    """Without the per connection column the chart has two panels: peak RSS and CPU."""
    fig = charts.server_chart(echo.drop(columns=["server_rss_per_conn_bytes"]), "t")
    assert [ax.get_title() for ax in fig.axes] == ["server memory", "server CPU"]
    assert not any(gid.startswith("server_rss_per_conn") for gid in plotted(fig))


def test_a_panel_no_point_has_a_figure_for_is_drawn_linear_not_refused() -> None:
    """A generator benchmark's points have CPU but no server RSS: the RSS panel is empty,
    and the chart still renders (a log axis of no values cannot be drawn)."""
    import io

    frame = pd.DataFrame({"series": ["picows", "picows"], "users": [1000.0, 10000.0],
                          "server_rss_bytes_max": [float("nan")] * 2,
                          "server_cpu_pct_mean": [43.8, 46.0],
                          "generator_saturated": [False, False]})  # fmt: skip
    fig = charts.server_chart(frame, "t")
    fig.savefig(io.BytesIO(), format="svg")
    rss, cpu = fig.axes[0], fig.axes[-1]
    assert rss.get_yscale() == "linear" and rss.get_xscale() == "linear"
    assert cpu.get_xscale() == "log"  # the panel with figures keeps its log connections axis
