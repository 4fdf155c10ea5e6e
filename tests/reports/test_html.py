"""The report page: every chart inline, data as CSV beside it, nothing external, renders cleanly."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
from markupsafe import escape

from reports import page, tables
from reports.cli import write_report
from reports.load import Run, load_run

# Anything that would make the browser fetch: src/href/xlink:href/url() to a scheme or //host,
# @import, and @font-face (no font may be needed from outside).
EXTERNAL = re.compile(
    r"""(?:src|href|xlink:href|action|poster)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)(?!#)"""
    r"""|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)|@import|@font-face""",
    re.I,
)
ALLOWED_SCHEMES = ("data:",)


def external_references(text: str) -> list[str]:
    found = []
    for match in EXTERNAL.finditer(text):
        if not any(scheme in match.group(0).lower() for scheme in ALLOWED_SCHEMES):
            found.append(text[max(0, match.start() - 40) : match.end() + 40])
    return found


def test_report_holds_headline_charts_inline_and_the_rest_beside(
    sweep: Run, sweep_report: Path
) -> None:
    """The headline charts are inline <svg>s; scenario and per point charts are lazy <img>s of
    SVG files beside the page; each chart in its own <figure> with its caption."""
    text = sweep_report.read_text()
    built = page.build(sweep)
    assert built.headline is not None
    inline = [c for c in built.charts() if c.inline]
    beside = [c for c in built.charts() if not c.inline]
    assert inline == built.headline.charts and len(inline) == 3
    assert text.count("<svg ") == len(inline)
    points = [c for c in beside if c.slug.startswith("point-")]
    assert len(points) == 2 * (sweep.points["status"] == tables.OK).sum() == 24
    assert {"echo-throughput", "connect-server", "broadcast-latency"} <= {c.slug for c in beside}
    for chart in built.charts():
        pattern = rf'<figure id="chart-{re.escape(chart.slug)}">(.*?)</figure>'
        figure = re.search(pattern, text, re.S)
        assert figure, chart.slug
        assert str(escape(chart.caption)) in figure.group(1)
        if chart.inline:
            assert "<svg " in figure.group(1) and "<img" not in figure.group(1)
        else:
            assert "<svg " not in figure.group(1)
            img = f'<img loading="lazy" src="{chart.slug}.svg"'
            assert img in figure.group(1), chart.slug
            assert (sweep_report.parent / f"{chart.slug}.svg").read_text().count("<svg ") == 1


def test_report_sections_and_warnings_first(sweep: Run, sweep_report: Path) -> None:
    """Warnings come before the summary; each scenario, the per point charts and env follow."""
    text = sweep_report.read_text()
    order = [text.index(f'id="{anchor}"') for anchor in (
        "warnings", "summary", "scenario-echo", "scenario-connect", "scenario-broadcast",
        "points", "environment")]  # fmt: skip
    assert order == sorted(order)
    assert "load generator saturated" in text[order[0] : order[1]]
    assert "net.core.somaxconn" in text and sweep.meta["suite"]["commit"] in text  # provenance
    assert 'id="kernel"' not in text  # one kernel profile: no kernel comparison section


def test_chart_csvs_equal_the_plotted_tables(sweep: Run, sweep_report: Path) -> None:
    """Every chart's data is a CSV beside the page, equal to the table the chart plotted."""
    for chart in page.build(sweep).charts():
        for key, name in chart.csv_names().items():
            stored = pd.read_csv(sweep_report.parent / name)
            expected = chart.data[key].reset_index(drop=True)
            pd.testing.assert_frame_equal(stored, expected, check_dtype=False, check_exact=False)
            assert f'href="{name}"' in sweep_report.read_text()


def test_no_external_references(sweep_report: Path, extras_report: Path) -> None:
    """No http(s)/protocol-relative src or href, no url(), @import or web fonts: works offline."""
    assert external_references('<img src="https://x/y.png">')  # the check itself can fail
    assert external_references("<link href='//cdn/x.css'>")
    for path in (sweep_report, extras_report):
        text = path.read_text()
        assert external_references(text) == []
        assert "<script" not in text and '<link rel="stylesheet"' not in text


def test_kernel_section_only_with_two_profiles(two_profile_copy: Path, tmp_path: Path) -> None:
    """With two profiles (renamed copies) the page compares them and shows counter deltas."""
    path = write_report(two_profile_copy, tmp_path / "out")
    text = path.read_text()
    assert 'id="kernel"' in text and 'id="chart-kernel-echo"' in text
    kernel = text[text.index('id="kernel"') : text.index('id="points"')]
    assert "server: ListenOverflows" in kernel and "client: TCPTimeWaitOverflow" in kernel
    host = load_run(two_profile_copy).points.query("kernel_profile == 'host'")
    assert kernel.count('<tr class="bad">') == len(host) == 4  # host points: ListenOverflows
    assert "kernel server ListenOverflows +12" in text[: text.index('id="summary"')]
    assert load_run(two_profile_copy).profiles == ["host", "tuned"]


def test_kernel_table_shows_a_host_side(
    copy_run: Callable[[Path, str], Path], tmp_path: Path
) -> None:
    """Counters recorded for the whole host (no namespaces) show as host: columns."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "sweep-small", "host-side")
    (run_dir / "points" / "raw-connect-u5-host" / "kernel_counters.json").write_text(
        json.dumps({"host": {"ListenOverflows": 7, "TCP_tw": 40}, "file_nr": {"before": [1]}})
    )
    text = write_report(run_dir, tmp_path / "out").read_text()
    kernel = text[text.index('id="kernel"') : text.index('id="points"')]
    assert "host: ListenOverflows" in kernel and "host: TCP_tw" in kernel
    assert kernel.count('<tr class="bad">') == 1 and "file_nr" not in kernel


def test_failures_table_shows_kind_and_close_code(extras: Run, extras_report: Path) -> None:
    """A run with failures lists them by kind with the close code, and warns first."""
    text = extras_report.read_text()
    failures = text[text.index('id="failures"') :]
    assert "ConnectionClosed" in failures and "<td>1009</td>" in failures
    kinds = tables.failure_kinds_known(extras).iloc[0]
    assert f"{int(kinds['failures'])} failed requests" in text[: text.index('id="summary"')]
    undercount = f"names the kind of {int(kinds['known'])} of {int(kinds['failures'])} failures"
    assert (undercount in failures) == (kinds["known"] < kinds["failures"])


# report.html of sweep-small (12 points, 3 scenarios, 2 targets) measured 201 KB with only the
# three headline charts inline (2.2 MB with all 36 charts inline; 594 KB with the scenarios'
# charts inline too).
SWEEP_REPORT_MAX_BYTES = 260_000


def test_report_is_small_and_point_charts_are_files(sweep: Run, sweep_report: Path) -> None:
    """report.html stays under its byte bound; each ok point's two SVGs are files beside it."""
    assert sweep_report.stat().st_size < SWEEP_REPORT_MAX_BYTES
    for pid in sweep.points.loc[sweep.points["status"] == tables.OK, "point_id"]:
        for kind in ("timeseries", "spectrum"):
            path = sweep_report.parent / f"point-{pid}-{kind}.svg"
            assert path.stat().st_size > 10_000, path
            assert path.read_text().lstrip().startswith("<?xml")  # a standalone SVG document


def test_every_point_has_an_anchor_in_a_closed_box(sweep: Run, sweep_report: Path) -> None:
    """Each point, ok or not, has id="point-<id>" inside a <details> that starts closed."""
    text = sweep_report.read_text()
    points = text[text.index('id="points"') : text.index('id="environment"')]
    assert "<details open" not in points
    for pid in sweep.points["point_id"]:
        box = re.search(rf'<details>\s*<summary>{re.escape(pid)} [^<]*</summary>\s*'
                        rf'<div class="detail" id="point-{re.escape(pid)}">', points)
        assert box, pid


def test_points_that_failed_keep_their_anchor(
    copy_run: Callable[[Path, str], Path], tmp_path: Path
) -> None:
    """A point that is not ok still has its box and anchor (findings may link it), with why."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "sweep-small", "one-failed")
    path = run_dir / "points" / "raw-connect-u5-host" / "point.json"
    result = json.loads(path.read_text())
    result.update(status="failed", reason="upgrade error rate 12 % over 1 %")
    path.write_text(json.dumps(result))
    text = write_report(run_dir, tmp_path / "out").read_text()
    box = text[text.index('id="point-raw-connect-u5-host"') :]
    box = box[: box.index("</details>")]
    assert "Status failed: upgrade error rate 12 % over 1 %" in box and "<img" not in box


def _server_panels(built: page.Page, scenario: str) -> list[str]:
    chart = next(c for c in built.charts() if c.slug == f"{scenario}-server")
    return [ax.get_title() for ax in chart.figure.axes]


def test_no_memory_per_connection_where_it_means_nothing(sweep: Run) -> None:
    """No memory per connection for connect, nor for points with few connections and no idle
    server figure (sweep-small has none): peak RSS ÷ 5 users is not what a connection costs."""
    built = page.build(sweep)
    for scenario in ("echo", "connect", "broadcast"):
        assert "memory per connection" not in _server_panels(built, scenario), scenario
        chart = next(c for c in built.charts() if c.slug == f"{scenario}-server")
        assert "server_rss_per_conn_bytes" not in chart.data[""]
        assert "No memory per connection" in chart.caption


def test_memory_per_connection_with_an_idle_figure(
    copy_run: Callable[[Path, str], Path]
) -> None:
    """With the idle server measured, echo shows memory per connection; connect never does."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "sweep-small", "idle")
    for pdir in (run_dir / "points").iterdir():
        path = pdir / "point.json"
        result = json.loads(path.read_text())
        result["summary"].setdefault("target", {})["rss_bytes_idle"] = 20 * 2**20
        path.write_text(json.dumps(result))
    run = load_run(run_dir)
    built = page.build(run)
    assert "memory per connection" in _server_panels(built, "echo")
    assert "memory per connection" not in _server_panels(built, "connect")
    chart = next(c for c in built.charts() if c.slug == "echo-server")
    echo = run.points[run.points["scenario"] == "echo"]
    assert sorted(chart.data[""]["server_rss_per_conn_bytes"]) == sorted(
        (echo["server_rss_bytes_max"] - 20 * 2**20) / echo["users"])


def test_findings_first_then_warnings_then_one_chart_per_question(
    sweep: Run, sweep_report: Path
) -> None:
    """Findings open the page (and the nav), then warnings, the headline charts, the summary."""
    text = sweep_report.read_text()
    body = text[text.index("</nav>") :]
    order = [body.index(f'<section id="{anchor}">') for anchor in (
        "findings", "warnings", "questions", "summary", "scenario-echo")]  # fmt: skip
    assert order == sorted(order) and order[0] == body.index("<section")
    nav = text[text.index("<nav>") : text.index("</nav>")]
    assert nav.index('href="#findings"') < nav.index('href="#warnings"')
    questions = body[order[2] : order[3]]
    slugs = re.findall(r'<figure id="chart-([^"]+)">', questions)
    assert slugs == ["echo-latency", "connect-profiles", "broadcast-delivery"]
    assert text.count('<figure id="chart-echo-latency">') == 1  # moved, not copied


def _ids_and_files(path: Path) -> tuple[set[str], set[str]]:
    text = path.read_text()
    return set(re.findall(r'\bid="([^"]+)"', text)), {p.name for p in path.parent.iterdir()}


def test_findings_cells_link_to_evidence_on_or_beside_the_page(
    sweep_report: Path, extras_report: Path
) -> None:
    """Every findings link is an anchor of the page or a file beside it; no rows: one line."""
    for path in (sweep_report, extras_report):
        text = path.read_text()
        section = text[text.index('<section id="findings">') : text.index('id="warnings"')]
        ids, files = _ids_and_files(path)
        links = re.findall(r'<a href="([^"]+)"', section)
        for href in links:
            assert (href[1:] in ids) if href.startswith("#") else (href in files), href
        if "<table" not in section:
            assert re.search(r'<p class="intro">[^<]+</p>', section), section


def test_knee_chart_first_with_the_slo_and_offered_load(
    knee_copy: tuple[Path, float], tmp_path: Path
) -> None:
    """Rate steps of echo_rate give the capacity chart, first of the headline charts: x is
    --rate × connections, the SLO is meta.json's, the knee each target's first step over it."""
    run_dir, slo_us = knee_copy
    run = load_run(run_dir)
    assert page.slo_p99_us(run.meta) == slo_us
    frame = page.knee_table(run.points, slo_us)
    assert sorted(frame["offered_msgs_per_s"].unique()) == [50.0, 200.0, 800.0]  # x 5 users
    knees = frame[frame["knee"]]
    assert sorted(knees["series"]) == ["aiohttp", "raw"] and set(knees["rate_per_conn"]) == {160}
    assert (frame.loc[~frame["over_slo"], "p99_us"] <= slo_us).all()
    text = write_report(run_dir, tmp_path / "out").read_text()
    questions = text[text.index('<section id="questions">') : text.index('id="summary"')]
    assert re.findall(r'<figure id="chart-([^"]+)">', questions)[0] == "knee"
    assert f"p99 {slo_us / 1000:g} ms" in questions
    rate_steps = text[text.index('id="scenario-echo_rate"') : text.index('id="points"')]
    assert 'id="chart-echo_rate-' not in rate_steps  # no chart vs connections of rate steps


def test_slo_defaults_to_10_ms(sweep: Run) -> None:
    """A run whose meta.json sets no p99 SLO is judged at 10 ms."""
    assert sweep.meta["slo"]["p99_ms"] is None
    assert page.slo_p99_us(sweep.meta) == 10_000.0
    assert page.slo_p99_us({"slo": {"p99_ms": 25}}) == 25_000.0


def test_connect_profiles_table_per_target_and_profile(
    connect_profiles_copy: Path, tmp_path: Path
) -> None:
    """Connect points by profile and target, at the highest connection count: upgrades/s and
    the upgrades' failure share."""
    run_dir = connect_profiles_copy
    run = load_run(run_dir)
    frame = page.connect_profiles(run.points)
    assert list(zip(frame["kernel_profile"], frame["target"], strict=True)) == [
        ("host", "aiohttp"), ("host", "raw"), ("tuned", "aiohttp"), ("tuned", "raw")]
    points = run.points.set_index("point_id")
    for row in frame.itertuples():
        assert row.users == 5
        point = points.loc[row.point_id]
        harness = point.get("main_per_s")  # the harness's rate where stored, else Locust's
        assert row.upgrades_per_s == (point["msgs_per_s"] if pd.isna(harness) else harness)
        assert row.failure_pct == 100 * points.loc[row.point_id, "main_error_rate"]
    text = write_report(run_dir, tmp_path / "out").read_text()
    assert 'id="chart-connect-profiles"' in text[: text.index('id="summary"')]


def test_latency_vs_connections_of_echo_rate_at_one_total_rate(
    latency_copy: Path, tmp_path: Path
) -> None:
    """echo_rate points at one total rate and several connection counts answer the latency
    question: their chart, not closed-loop echo's, is the headline's; the rate steps at other
    totals are left out of it."""
    run = load_run(latency_copy)
    built = page.build(run)
    assert built.headline is not None
    slugs = [c.slug for c in built.headline.charts]
    assert slugs == ["knee", "echo_rate-latency", "connect-profiles", "broadcast-delivery"]
    frame = built.headline.charts[1].data[""]
    assert sorted(zip(frame["series"], frame["users"], strict=True)) == [
        ("aiohttp", 2), ("aiohttp", 5), ("raw", 2), ("raw", 5)]
    points = run.points.set_index("point_id")
    assert frame.loc[frame["users"] == 5, "p99_us"].tolist() == [
        points.loc[f"{t}-echo_rate-u5-r160-host", "p99_us"] for t in ("aiohttp", "raw")]
    echo_rate = next(s for s in built.sections if s.anchor == "scenario-echo_rate")
    assert "800 msgs/s" in echo_rate.intro
    assert any(c.slug == "echo-latency" for c in built.charts())  # echo keeps its own


def test_findings_say_so_when_no_point_answers(two_profile_copy: Path, tmp_path: Path) -> None:
    """A run of closed-loop echo only answers none of the questions: one line says so."""
    text = write_report(two_profile_copy, tmp_path / "out").read_text()
    section = text[text.index('<section id="findings">') : text.index('<section id="warnings">')]
    assert "<table" not in section and str(escape(page.NO_FINDINGS)) in section


def test_charts_drawn_by_forked_workers_are_the_ones_drawn_in_process(
    sweep: Run, tmp_path: Path, monkeypatch
) -> None:
    """Charts drawn in a pool of forked workers are the same inline SVGs and SVG files, byte
    for byte, as drawn one by one here, and no worker outlives the drawing."""
    from reports import html

    def charts() -> list[page.Chart]:  # anew each time: a figure drawn once is laid out
        every = page.build(sweep).charts()
        return [*[c for c in every if c.inline][:2], *[c for c in every if not c.inline][:4]]

    monkeypatch.setattr(html, "CHARTS_PER_WORKER", 10**6)
    (tmp_path / "here").mkdir()
    here = html.draw_charts(tmp_path / "here", charts())
    monkeypatch.setattr(html, "CHARTS_PER_WORKER", 1)
    monkeypatch.setattr(html.os, "sched_getaffinity", lambda _: {0, 1})  # two even on one CPU
    pools = []

    class Pool(html.ProcessPoolExecutor):
        def __init__(self, workers: int, *args, **kwargs) -> None:
            pools.append(workers)
            super().__init__(workers, *args, **kwargs)

    monkeypatch.setattr(html, "ProcessPoolExecutor", Pool)
    (tmp_path / "forked").mkdir()
    forked = html.draw_charts(tmp_path / "forked", charts())
    assert pools == [2]
    assert psutil.Process().children() == []
    assert here == forked and len(here) == 6
    inline = [drawn for drawn in here.values() if isinstance(drawn, str)]
    assert len(inline) == 2 and all(drawn.startswith("<svg ") for drawn in inline)
    files = sorted(p.name for p in (tmp_path / "here").iterdir())
    assert len(files) == 4 and files == sorted(p.name for p in (tmp_path / "forked").iterdir())
    for name in files:
        assert (tmp_path / "here" / name).read_bytes() == \
            (tmp_path / "forked" / name).read_bytes(), name
