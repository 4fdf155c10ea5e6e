"""Loading a stored run: frame values equal what the run wrote (point.json, CSVs, histograms)."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from reports.cli import write_report
from reports.errors import (
    BadFileError,
    NotARunError,
    ReportError,
    SchemaVersionError,
)
from reports.load import Run, is_drop_counter, load_run, parse_error


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _point_json(run_dir: Path, point_id: str) -> dict:
    return json.loads((run_dir / "points" / point_id / "point.json").read_text())


def test_one_row_per_planned_point(sweep: Run, sweep_dir: Path) -> None:
    """Every point of meta.json's plan is a row with its target, scenario, users and profile."""
    plan = json.loads((sweep_dir / "meta.json").read_text())["plan"]
    assert sweep.points["point_id"].tolist() == [p["point_id"] for p in plan]
    for planned, (_, row) in zip(plan, sweep.points.iterrows(), strict=True):
        assert (row["target"], row["scenario"], row["users"], row["kernel_profile"]) == (
            planned["target"], planned["scenario"], planned["users"], planned["kernel_profile"]
        )  # fmt: skip
        assert row["status"] == "ok"


def test_percentiles_from_histograms_equal_the_runs_csv(sweep: Run, sweep_dir: Path) -> None:
    """p50..max decoded from the stored histograms equal locust_latency_us.csv, per name."""
    checked = 0
    for point_id in sweep.points["point_id"]:
        for row in _csv(sweep_dir / "points" / point_id / "locust_latency_us.csv"):
            mine = sweep.latency[(sweep.latency["point_id"] == point_id)
                                 & (sweep.latency["name"] == row["name"])].iloc[0]  # fmt: skip
            assert mine["source"] == "histogram"
            for column in ("count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
                assert mine[column] == float(row[column]), (point_id, row["name"], column)
            checked += 1
    assert checked >= 36  # 12 points x at least 3 request names


def test_any_percentile_can_be_asked_for(sweep_dir: Path) -> None:
    """A percentile the points frame lacks by default (99.99) comes from the histograms."""
    run = load_run(sweep_dir, percentiles=(99.99,))
    for _, point in run.points.iterrows():
        rows = _csv(sweep_dir / "points" / point["point_id"] / "locust_latency_us.csv")
        main = next(r for r in rows if r["name"] == point["main_name"])
        assert point["p9999_us"] == float(main["p9999_us"])


def test_point_figures_equal_point_json(sweep: Run, sweep_dir: Path) -> None:
    """Requests, failures, generator verdict, peak RSS and sockets match point.json's summary."""
    for _, row in sweep.points.iterrows():
        stored = _point_json(sweep_dir, row["point_id"])["summary"]
        assert row["requests"] == stored["requests"] > 0
        assert row["failures"] == stored["failures"]
        assert row["generator_saturated"] == stored["generator_saturated"]
        assert row["generator_cpu_pct"] == pytest.approx(stored["generator_cpu_pct"], abs=0.05)
        assert row["server_rss_bytes_max"] == stored["target"]["rss_bytes_max"]
        assert row["server_sockets_max"] == stored["target"]["sockets_max"]
        assert row["server_cpu_pct_mean"] == pytest.approx(stored["target"]["cpu_pct_mean"],
                                                           abs=0.051)  # fmt: skip
        assert row["server_rss_per_conn_bytes"] == row["server_rss_bytes_max"] / row["users"]


def _final_rate(point_dir: Path, name: str) -> tuple[float, float]:
    """(successful requests/s, bytes/s) of `name` over the run's span, from locust_final.json."""
    entries = json.loads((point_dir / "locust_final.json").read_text())
    span_s = max(e["last_request_timestamp"] for e in entries) - min(
        e["start_time"] for e in entries)  # fmt: skip
    entry = next(e for e in entries if e["name"] == name)
    return ((entry["num_requests"] - entry["num_failures"]) / span_s,
            entry["total_content_length"] / span_s)  # fmt: skip


def test_rates_come_from_locusts_final_stats(sweep: Run, sweep_dir: Path) -> None:
    """msgs/s and bytes/s are the main name's successes and bytes over the run's span."""
    for _, row in sweep.points.iterrows():
        msgs, size = _final_rate(sweep_dir / "points" / row["point_id"], row["main_name"])
        assert row["msgs_per_s"] == pytest.approx(msgs)
        assert row["bytes_per_s"] == pytest.approx(size)


def test_rates_fall_back_to_locusts_csv(copy_run: Callable[[Path, str], Path]) -> None:
    """Without locust_final.json (older runs) rates and totals come from locust_stats.csv."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "sweep-small", "csv-only")
    for path in (run_dir / "points").glob("*/locust_final.json"):
        path.unlink()
    for _, row in load_run(run_dir).points.iterrows():
        stats = {r["Name"]: r for r in _csv(run_dir / "points" / row["point_id"] /
                                            "locust_stats.csv")}  # fmt: skip
        assert row["msgs_per_s"] == pytest.approx(float(stats[row["main_name"]]["Requests/s"]))
        assert row["requests"] == float(stats["Aggregated"]["Request Count"])


def test_main_measurement_per_scenario(sweep: Run) -> None:
    """echo's main name is "echo", connect's "ws upgrade", broadcast's "broadcast"."""
    names = dict(zip(sweep.points["scenario"], sweep.points["main_name"], strict=True))
    assert names == {"echo": "echo", "connect": "ws upgrade", "broadcast": "broadcast"}


def test_connect_and_upgrade_percentiles(sweep: Run, sweep_dir: Path) -> None:
    """connect_p99_us / upgrade_p99_us are the tcp connect and ws upgrade rows' p99."""
    for _, row in sweep.points.iterrows():
        rows = {r["name"]: r for r in _csv(sweep_dir / "points" / row["point_id"] /
                                           "locust_latency_us.csv")}  # fmt: skip
        assert row["connect_p99_us"] == float(rows["tcp connect"]["p99_us"])
        assert row["upgrade_p50_us"] == float(rows["ws upgrade"]["p50_us"])


def test_broadcast_counters_become_columns(sweep: Run, sweep_dir: Path) -> None:
    """The histograms file's counters (broadcast published/received) are per point columns."""
    broadcast = sweep.points[sweep.points["scenario"] == "broadcast"]
    for _, row in broadcast.iterrows():
        path = sweep_dir / "points" / row["point_id"] / "locust_latency_us_histograms.json"
        counters = json.loads(path.read_text())["counters"]
        assert row["broadcast_published"] == counters["broadcast published"]
        assert row["broadcast_received"] == counters["broadcast received"]


def test_time_series_frames(sweep: Run) -> None:
    """Windows and user counts start at t=0 (Locust's start) and reach the point's users."""
    point_id = "raw-echo-u5-host"
    windows = sweep.windows[sweep.windows["point_id"] == point_id]
    users = sweep.users[sweep.users["point_id"] == point_id]
    assert windows["t_s"].min() == 0.0 and users["t_s"].min() == 0.0
    assert users["users"].max() == 5
    echo = windows[windows["name"] == "echo"]
    assert (echo["msgs_per_s"] == echo["count"] / echo["window_s"]).all()


def test_failures_by_kind_and_close_code(extras: Run, extras_dir: Path) -> None:
    """A server close (1009, message too big) is loaded as kind ConnectionClosed, code 1009."""
    stored = _csv(extras_dir / "points" / "raw-echo-u2-host" / "locust_failures.csv")[0]
    failure = extras.failures.iloc[0]
    assert (failure["kind"], failure["close_code"]) == ("ConnectionClosed", 1009)
    assert failure["occurrences"] == int(stored["Occurrences"])
    point = extras.points.set_index("point_id").loc["raw-echo-u2-host"]
    summary = _point_json(extras_dir, "raw-echo-u2-host")["summary"]
    assert point["failures"] == summary["failures"] > 0
    assert point["failure_rate"] == pytest.approx(point["failures"] / point["requests"])
    assert point["msgs_per_s"] == 0  # every echo failed: no successful round trips


def test_push_counters_and_latency(extras: Run) -> None:
    """The push point has its received count and one-way latency percentiles."""
    push = extras.points.set_index("point_id").loc["raw-push-u2-host"]
    assert push["main_name"] == "push"
    assert push["push_received"] == push["count"]
    assert 0 < push["p50_us"] <= push["p99_us"]


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        ('ConnectionClosed("closed by server: 1008 (policy violation)")', "ConnectionClosed", 1008),
        ("ConnectionLost('connection reset')", "ConnectionLost", None),
        ("sequence gap", "sequence gap", None),
    ],
)
def test_parse_error(error: str, kind: str, code: int | None) -> None:
    """Locust's error cell gives the exception class as kind and any close code."""
    assert parse_error(error) == (kind, code)


def test_partial_run_loads_with_missing_and_incomplete_points(
    copy_run: Callable[[Path, str], Path],
) -> None:
    """A point without point.json is "incomplete", a planned point without a folder "missing"."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "sweep-small", "partial")
    (run_dir / "points" / "raw-echo-u5-host" / "point.json").unlink()
    shutil.rmtree(run_dir / "points" / "aiohttp-broadcast-u5-host")
    points = load_run(run_dir).points.set_index("point_id")
    assert points.loc["raw-echo-u5-host", "status"] == "incomplete"
    assert points.loc["raw-echo-u5-host", "p99_us"] > 0  # what was measured still shows
    assert points.loc["aiohttp-broadcast-u5-host", "status"] == "missing"
    assert pd.isna(points.loc["aiohttp-broadcast-u5-host", "p99_us"])
    assert (points.drop(["raw-echo-u5-host", "aiohttp-broadcast-u5-host"])["status"] == "ok").all()


def test_kernel_counters_file_is_loaded(two_profile_copy: Path) -> None:
    """kernel_counters.json deltas land in the kernel frame and as kernel_<side>_<name> columns."""
    run = load_run(two_profile_copy)
    assert run.profiles == ["host", "tuned"]
    row = run.points.set_index("point_id").loc["raw-echo-u5-host"]
    assert row["kernel_server_ListenOverflows"] == 12
    assert row["kernel_client_TCPTimeWaitOverflow"] == 3
    assert len(run.kernel) == 3 * len(run.points)


# A kernel_counters.json as the harness writes it without namespaces: one "host" side.
HOST_KERNEL_COUNTERS = {
    "host": {"ListenOverflows": 7, "TCP_tw": -3},
    "snapshots": {"host": {"before": {"unix_s": 1.0, "counters": {"TcpExtListenOverflows": 1},
                                      "gauges": {"TCP_tw": 5}, "file_nr": [1, 0, 9]},
                           "after": {"unix_s": 2.0, "counters": {"TcpExtListenOverflows": 8},
                                     "gauges": {"TCP_tw": 2}, "file_nr": [2, 0, 9]}}},
    "file_nr": {"before": [1, 0, 9], "after": [2, 0, 9]},
}  # fmt: skip


def test_kernel_counters_of_any_side_are_loaded(copy_run: Callable[[Path, str], Path]) -> None:
    """Every side holding name -> number is loaded ("host" too); the stored readings are not."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "sweep-small", "host-side")
    path = run_dir / "points" / "raw-connect-u5-host" / "kernel_counters.json"
    path.write_text(json.dumps(HOST_KERNEL_COUNTERS))
    run = load_run(run_dir)
    kernel = run.kernel[["side", "counter", "delta"]].sort_values("counter")
    assert kernel.values.tolist() == [["host", "ListenOverflows", 7], ["host", "TCP_tw", -3]]
    row = run.points.set_index("point_id").loc["raw-connect-u5-host"]
    assert row["kernel_host_ListenOverflows"] == 7


def _edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_bad_input_raises_one_line_report_errors(
    tmp_path: Path, copy_run: Callable[[Path, str], Path]
) -> None:
    """Not a folder, no meta.json, unknown schema versions, broken JSON: ReportError, one line."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "extras", "bad")
    cases: list[tuple[Path, type[ReportError]]] = [(tmp_path / "nowhere", NotARunError)]
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", NotARunError))
    for path, expected in cases:
        with pytest.raises(expected) as caught:
            load_run(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)

    _edit_json(run_dir / "points" / "raw-push-u2-host" / "point.json", schema_version=99)
    with pytest.raises(SchemaVersionError, match="version 99; this wsbench reads 1"):
        load_run(run_dir)
    _edit_json(run_dir / "meta.json", schema_version=2)
    with pytest.raises(SchemaVersionError, match="meta.json has result schema version 2"):
        load_run(run_dir)
    (run_dir / "meta.json").write_text("{not json")
    with pytest.raises(BadFileError) as caught:
        load_run(run_dir)
    assert "\n" not in str(caught.value)


def test_drop_counters_by_plain_or_nstat_name() -> None:
    """ListenOverflows and nstat's TcpExtListenOverflows are drops; InSegs is not."""
    assert is_drop_counter("ListenOverflows") and is_drop_counter("TcpExtListenOverflows")
    assert not is_drop_counter("TcpInSegs") and not is_drop_counter("ActiveOpens")


def test_a_truncated_point_json_marks_that_point_corrupt_and_the_report_is_made(
    copy_run: Callable[[Path, str], Path],
) -> None:
    """Half a point.json: that point is "corrupt" naming the file; the others and the page stay."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "extras", "truncated")
    path = run_dir / "points" / "raw-echo-u2-host" / "point.json"
    path.write_text(path.read_text()[:200])
    points = load_run(run_dir).points.set_index("point_id")
    assert points.loc["raw-echo-u2-host", "status"] == "corrupt"
    assert str(path) in points.loc["raw-echo-u2-host", "reason"]
    assert points.loc["raw-push-u2-host", "status"] == "ok"
    page = write_report(run_dir).read_text()
    assert "raw-echo-u2-host: corrupt" in page


def _gone_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_run_whose_runner_was_killed_reads_killed_in_the_report(
    copy_run: Callable[[Path, str], Path],
) -> None:
    """meta.json "running" with its runner's pid gone: the run and the page say "killed"."""
    run_dir = copy_run(Path(__file__).parent / "fixtures" / "extras", "killed")
    (run_dir / "points" / "raw-push-u2-host" / "point.json").unlink()
    _edit_json(run_dir / "meta.json", status="running", ended=None, runner_pid=_gone_pid(),
               runner_started_unix_s=1.0, runner_host=socket.gethostname())  # fmt: skip
    run = load_run(run_dir)
    assert run.meta["status"] == "killed" and run.meta["kind"] == "sweep"
    point = run.points.set_index("point_id").loc["raw-push-u2-host"]
    assert point["status"] == "incomplete" and "killed" in point["reason"]
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "running"  # read only
    assert "status killed" in write_report(run_dir).read_text()
