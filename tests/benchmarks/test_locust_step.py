"""One step of the generator benchmark, run for real (Locust against the raw target), stored as
a point that `wsbench report` reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import locust_step, pinned
from common import schema
from reports.load import load_run

USERS, RATE_PER_USER = 20, 10.0


@pytest.fixture(scope="module")
def step_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with one echo_rate step: 20 connections x 10 msgs/s, 2 s steady."""
    run_dir = tmp_path_factory.mktemp("bench-generator")
    schema.write_meta(run_dir, {"kind": "bench-generator", "run_id": run_dir.name,
                                "status": schema.RunStatus.COMPLETE})  # fmt: skip
    point_dir = run_dir / schema.POINTS_DIR / "001-echo"
    cpus = sorted(os.sched_getaffinity(0))
    with pinned.server("raw", pinned.target_command("raw"), cpus[0],
                       run_dir / "raw.log") as sink:  # fmt: skip
        step = locust_step.run("echo_rate", sink.url, USERS, 2.0,
                               point_dir / schema.LOCUST_PREFIX, cpus[-1],
                               ["--rate", str(RATE_PER_USER)], server=sink)  # fmt: skip
    assert step.steady_s >= 2.0, step.failure_text
    return run_dir


def test_a_step_stores_its_point_with_steady_state_figures(step_dir: Path) -> None:
    """point.json: ok, the step's parameters, and its steady rate near the offered 200 msgs/s."""
    result = schema.read_point(step_dir / schema.POINTS_DIR / "001-echo")
    assert result is not None and result["status"] == schema.PointStatus.OK
    params = result["point"]
    assert (params["target"], params["scenario"], params["users"]) == ("raw", "echo_rate", USERS)
    summary = result["summary"]
    assert summary["requests_per_s"] == pytest.approx(USERS * RATE_PER_USER, rel=0.2)
    assert summary["latency_us"]["echo corrected"]["p50_us"] > 0
    assert 0 < summary["client"]["cpu_pct_mean"] < 100


def test_the_report_reads_the_step(step_dir: Path) -> None:
    """reports.load finds the step's rate and latency, as for any point."""
    row = load_run(step_dir).points.iloc[0]
    assert row["status"] == "ok" and row["msgs_per_s"] > 0
    assert row["p50_us"] > 0


def test_the_report_of_a_generator_run_is_made(step_dir: Path, tmp_path: Path) -> None:
    """A generator benchmark's memory holds measured only the client: the page is made, and
    no chart is drawn for a figure none of the points has."""
    from reports.cli import write_report

    hold = step_dir / schema.POINTS_DIR / "002-memory-hold-10"
    hold.mkdir()
    schema.write_point(hold, {
        "point": {"point_id": hold.name, "target": "raw", "scenario": "hold", "users": 10,
                  "duration_s": 1.5, "options": []},
        "status": schema.PointStatus.OK, "reason": "", "warnings": [],
        "summary": {"measured_s": 1.5, "connections_opened": 10,
                    "client": {"rss_bytes_max": 50_000_000}},
    })  # fmt: skip
    page = write_report(step_dir, tmp_path / "report")
    text = page.read_text()
    assert "chart-hold-throughput" not in text and "chart-hold-server" not in text
