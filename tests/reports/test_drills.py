"""Failover drills and brokers in the report: loaded, charted, tabled and put into words.

fixtures/drills is written by fixtures/make_drills.py to the files the harness writes for
--fault and --broker; its raw-broadcast-u1000-p1 point is stored as before them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from matplotlib.figure import Figure

from reports import findings, page, tables
from reports.cli import write_report
from reports.load import Run, load_run

DRILLS = Path(__file__).resolve().parent / "fixtures" / "drills"
HOLD = "raw-hold-u2000-p4-kill-target"
KILL_BROKER = "raw-broadcast-u1000-p4-redis-kill-broker"
ONE = "raw-broadcast-u1000-p1"
REDIS = "raw-broadcast-u1000-p4-redis"
HOLD_SENTENCE = ("raw, 4 processes, kill-target at 10 s: 498 of 2,000 connections dropped, "
                 "reconnects peaked at 460/s, all back within 2 s; 12 reconnects failed (ws "
                 "upgrade: connection refused); hold ping p99 850 µs → 41.0 ms.")  # fmt: skip
BROKER_SENTENCE = ("raw, 4 processes + redis, kill-broker at 10 s: no connection of 1,000 "
                   "dropped; broadcast p99 1.8 ms → 250.0 ms; 120 published during the outage, "
                   "37 lost by subscribers; the targets noticed the broker was gone.")  # fmt: skip
# 180 % and 60 % of a core for 20 s over 400,000 messages: 90 and 30 µs each.
COMPARISON_SENTENCE = ("raw broadcast to 999 subscribers, 4 processes + redis 7.0.15 against 1 "
                       "process without a broker: p99 2.0 ms vs 850 µs (2.4×), server CPU per "
                       "delivered message 90.0 µs vs 30.0 µs (3.0×).")  # fmt: skip


def plotted(fig: Figure) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every data line of a figure by gid: (x, y) as float arrays."""
    return {line.get_gid(): (np.asarray(line.get_xdata(), dtype=float),
                             np.asarray(line.get_ydata(), dtype=float))
            for ax in fig.axes for line in ax.lines if line.get_gid()}  # fmt: skip


@pytest.fixture(scope="module")
def drills() -> Run:
    return load_run(DRILLS)


@pytest.fixture(scope="module")
def drills_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(DRILLS, tmp_path_factory.mktemp("drills-report"))


def _stored(point_id: str) -> dict:
    return json.loads((DRILLS / "points" / point_id / "point.json").read_text())


def _history(point_id: str) -> list[dict[str, str]]:
    with (DRILLS / "points" / point_id / "locust_latency_us_history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _edit_point(run_dir: Path, point_id: str, change: Callable[[dict], None]) -> None:
    path = run_dir / "points" / point_id / "point.json"
    result = json.loads(path.read_text())
    change(result)
    path.write_text(json.dumps(result))


def test_drill_records_load_as_stored(drills: Run) -> None:
    """One drills row per fault with point.json's figures, its label and faults.json's time."""
    assert sorted(drills.drills["point_id"]) == sorted([HOLD, KILL_BROKER])
    for point_id in (HOLD, KILL_BROKER):
        (stored,) = _stored(point_id)["summary"]["drill"]
        row = drills.drills.set_index("point_id").loc[point_id]
        for key, value in stored.items():
            assert row[key] == value or (value is None and pd.isna(row[key])), key
        (done,) = json.loads((DRILLS / "points" / point_id / "faults.json").read_text())["faults"]
        assert row["done_unix_s"] == done["done_unix_s"]
        assert row["fault"] == f"{stored['action']} at {stored['at_s']:g} s"


def test_broker_and_fault_parameters_load_and_older_points_have_none(drills: Run) -> None:
    """--broker's kind, version and CPU come from point.json; a point from before is None/[]."""
    points = drills.points.set_index("point_id")
    broker = _stored(REDIS)["summary"]["broker"]
    assert points.loc[REDIS, "broker"] == "redis"
    assert points.loc[REDIS, "broker_version"] == broker["version"]
    assert points.loc[REDIS, "broker_cpu_pct_mean"] == broker["cpu_pct_mean"]
    assert points.loc[HOLD, "faults"] == ["kill-target@10s"]
    assert "broker" not in _stored(ONE)["point"]  # the fixture's older point
    assert pd.isna(points.loc[ONE, "broker"]) and points.loc[ONE, "faults"] == []
    assert np.isnan(points.loc[ONE, "broker_cpu_pct_mean"])


def test_window_drops_and_failures_load_and_are_zero_in_older_files(drills: Run) -> None:
    """connections_dropped / connect_failures per window as stored; 0 where the file has none."""
    windows = drills.windows
    hold = windows[windows["point_id"] == HOLD].drop_duplicates("start_unix_s")
    per_window = {float(r["window_start_unix_s"]): r for r in _history(HOLD)}
    assert hold["connections_dropped"].sum() == 498 and hold["connect_failures"].sum() == 12
    for start, dropped in zip(hold["start_unix_s"], hold["connections_dropped"], strict=True):
        assert dropped == float(per_window[start]["connections_dropped"])
    assert "connections_dropped" not in _history(ONE)[0]
    old = windows[windows["point_id"] == ONE]
    assert not old.empty and (old["connections_dropped"] == 0).all()
    assert (old["connect_failures"] == 0).all()


def test_timeline_is_the_history_per_window(drills: Run) -> None:
    """Connects/s are the window's ws upgrades, drops/s its drops; the fault sits at its time."""
    timeline = tables.drill_timeline(drills, HOLD)
    rows = _history(HOLD)
    starts = sorted({float(r["window_start_unix_s"]) for r in rows})
    assert len(timeline) == len(starts)
    assert np.allclose(timeline["t_s"], np.array(starts) - starts[0] + 0.5)
    upgrades = {float(r["window_start_unix_s"]): float(r["count"]) for r in rows
                if r["name"] == "ws upgrade"}  # fmt: skip
    assert np.allclose(timeline["connects_per_s"], [upgrades.get(s, 0.0) for s in starts])
    pings = {float(r["window_start_unix_s"]): float(r["p99_us"]) for r in rows
             if r["name"] == "hold ping"}  # fmt: skip
    assert np.allclose(timeline["p99_us"], [pings[s] for s in starts])
    assert timeline["drops_per_s"].max() == 498 and timeline["connect_failures_per_s"].max() == 12
    faults = tables.drill_faults(drills, HOLD)
    at = _stored(HOLD)["summary"]["drill"][0]["at_unix_s"]
    assert faults["t_s"].tolist() == [at - starts[0]]


def test_drill_chart_plots_the_timeline_and_marks_the_fault(drills: Run) -> None:
    """Every line is the timeline's column; the fault's line is at its time on every panel."""
    timeline, faults = tables.drill_timeline(drills, HOLD), tables.drill_faults(drills, HOLD)
    fig = page._drills_section(drills).charts[0].figure
    lines = plotted(fig)
    for gid, column in (("open_connections:open connections", "open_connections"),
                        ("connects_per_s:connects/s", "connects_per_s"),
                        ("drops_per_s:drops/s", "drops_per_s"),
                        ("connect_failures_per_s:connect failures/s", "connect_failures_per_s"),
                        ("p99_us:hold ping", "p99_us")):  # fmt: skip
        x, y = lines[gid]
        assert np.allclose(x, timeline["t_s"]) and np.allclose(y, timeline[column]), gid
    marks = [line for ax in fig.axes for line in ax.lines
             if line.get_gid() == "fault:kill-target at 10 s"]  # fmt: skip
    assert len(marks) == 3 and all(m.get_xdata()[0] == faults["t_s"].iloc[0] for m in marks)


def test_drill_chart_is_an_svg_beside_the_page_with_the_fault_label(drills_report: Path) -> None:
    """Each drill point's chart is a lazy SVG file, non-empty, naming its fault."""
    text = drills_report.read_text()
    for point_id, label in ((HOLD, "kill-target at 10 s"), (KILL_BROKER, "kill-broker at 10 s")):
        svg = drills_report.parent / f"drill-{point_id}.svg"
        content = svg.read_text()
        assert content.count("<svg ") == 1 and len(content) > 10_000
        assert f"<!-- {label} -->" in content  # the label, drawn as glyphs, under its comment
        assert f'<img loading="lazy" src="drill-{point_id}.svg"' in text
    assert not (drills_report.parent / f"drill-{REDIS}.svg").exists()  # no fault: no drill chart


def _section(text: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', text, re.S)
    assert match, anchor
    return match.group(1)


def test_drills_section_tables_what_each_fault_did(drills_report: Path) -> None:
    """Per drill: dropped, failed reconnects and why, peak reconnects/s, back after, p99."""
    section = _section(drills_report.read_text(), "drills")
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>",
                                                                         section)]  # fmt: skip
    hold = next(c for c in cells if c and c[0] == "kill-target at 10 s")
    assert hold[2:] == ["2,000", "498", "12", "ws upgrade: connection refused (12)", "460", "2 s",
                        "850 → 41,000 µs (hold ping)"]  # fmt: skip
    broker = next(c for c in cells if c and c[0] == "kill-broker at 10 s")
    assert broker[2:] == ["1,000", "0", "0", "–", "0", "none dropped",
                          "1,800 → 250,000 µs (broadcast)", "120", "37", "yes"]  # fmt: skip
    assert f'id="drill-{HOLD}"' in section and f'id="drill-{KILL_BROKER}"' in section


def test_broker_section_compares_broadcast_points(drills_report: Path) -> None:
    """No broker vs redis side by side: latency, exact delivery, CPU per delivered message."""
    section = _section(drills_report.read_text(), "broker")
    rows = {r[0]: r for r in (re.findall(r"<td[^>]*>(.*?)</td>", row)
                              for row in re.findall(r"<tr>(.*?)</tr>", section)) if r}
    assert KILL_BROKER not in rows  # a drill's figures include its fault
    assert rows[ONE][1:] == ["1", "none", "999", "400 / 850 / 2,101", "exact (400,000)",
                             "30.0", "30.0", "–"]  # fmt: skip
    assert rows[REDIS][1:] == ["4", "redis 7.0.15", "999", "700 / 2,000 / 9,007",
                               "exact (400,000)", "90.0", "91.5", "3.1"]  # fmt: skip


def test_findings_say_what_each_drill_and_broker_did(drills: Run, drills_report: Path) -> None:
    """One sentence per drill and per broker comparison, linked, on the page and the console."""
    found = findings.build(drills)
    assert found.links == {HOLD_SENTENCE: f"#drill-{HOLD}", BROKER_SENTENCE:
                           f"#drill-{KILL_BROKER}", COMPARISON_SENTENCE: f"#point-{REDIS}"}
    console = findings.as_text(found)
    for sentence in found.links:
        assert f"- {sentence}" in console
    text = _section(drills_report.read_text(), "findings")
    for sentence, href in found.links.items():
        assert f'<a href="{href}">{escape(sentence)}</a>' in text
    for href in found.links.values():  # every link lands on something
        assert f'id="{href[1:]}"' in drills_report.read_text()


def test_findings_of_other_questions_skip_drill_points(drills: Run) -> None:
    """Memory per idle connection is not read from a point whose workers were killed: no
    target has the figure, so the column is left out of the table."""
    built = findings.build(drills)
    cells = {c: cell for c, cell in zip(built.columns, built.rows[0], strict=True)}
    assert "memory per idle conn" not in cells
    assert KILL_BROKER not in ((cells.get("broadcast p99 · delivered") or findings.EMPTY).href
                               or "")  # fmt: skip


def test_a_drill_not_recovered_is_said_and_marked(copy_run: Callable[[Path, str], Path]) -> None:
    """Users not all back by the end: the sentence says how many were, the row is red."""
    run_dir = copy_run(DRILLS, "not-back")

    def not_back(result: dict) -> None:
        result["summary"]["drill"][0].update(recovered_after_s=None, open_at_end=1990)

    _edit_point(run_dir, HOLD, not_back)
    run = load_run(run_dir)
    sentence = next(s for s in findings.build(run).sentences if "kill-target" in s)
    assert "not all back by the end (1,990 of 2,000 connected)" in sentence
    table = page._drills_section(run).tables[0]
    assert table.rows[0][0] == "bad"
    assert "not all back: 1,990 of 2,000 open at the end" in table.rows[0][1]


def test_a_drill_without_its_summary_shows_what_faults_json_says(
    copy_run: Callable[[Path, str], Path], tmp_path: Path
) -> None:
    """A point stopped before its summary: the fault from faults.json, figures unknown."""
    run_dir = copy_run(DRILLS, "no-summary")
    _edit_point(run_dir, HOLD, lambda result: result["summary"].pop("drill"))
    run = load_run(run_dir)
    row = run.drills.set_index("point_id").loc[HOLD]
    assert row["fault"] == "kill-target at 10 s" and np.isnan(row["dropped"])
    out = write_report(run_dir, tmp_path / "report")
    assert "<!-- kill-target at 10 s -->" in (out.parent / f"drill-{HOLD}.svg").read_text()


def test_runs_from_before_drills_have_neither_section(sweep: Run, sweep_report: Path) -> None:
    """No fault and no broker anywhere: no drill rows, no drills or broker section."""
    assert sweep.drills.empty and (sweep.windows["connections_dropped"] == 0).all()
    assert sweep.points["broker"].isna().all()
    text = sweep_report.read_text()
    assert 'id="drills"' not in text and 'id="broker"' not in text
    assert not [s for s in findings.build(sweep).sentences if "kill-" in s]
