"""The report page: every chart inline, data as CSV beside it, nothing external, renders cleanly."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
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


def test_report_holds_every_chart_inline(sweep: Run, sweep_report: Path) -> None:
    """Each chart of the page is an inline <svg> inside its own <figure>, with its caption."""
    text = sweep_report.read_text()
    built = page.build(sweep)
    assert text.count("<svg ") == len(built.charts()) >= 30
    for chart in built.charts():
        pattern = rf'<figure id="chart-{re.escape(chart.slug)}">(.*?)</figure>'
        figure = re.search(pattern, text, re.S)
        assert figure, chart.slug
        assert "<svg " in figure.group(1)
        assert str(escape(chart.caption)) in figure.group(1)


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
