"""Failover drills and the broker (issue 14), run as a user runs them: `wsbench run --fault ...`.

Each drill is a real run: a real target (its supervisor starts a replacement for a killed
worker), real Locust, Debian's redis-server. The drill record in point.json is read back and
checked against the history it was computed from; afterwards no target, Locust or redis
process of the run is left.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness import faults
from harness.plan import Fault

pytestmark = pytest.mark.timeout(180)
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server "
                                 "missing: apt-get install redis-server (make test does as root)")


def _using(folder: Path) -> list[list[str]]:
    """Processes of a run in `folder`: every child the runner starts logs into its point folder
    (the target, redis-server and Locust write there; Locust's CSVs are named on its command)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            files = [f.path for f in proc.open_files()]
        except psutil.Error:
            continue
        cmd = proc.info["cmdline"] or []
        if any(str(folder) in text for text in (*files, *cmd)):
            found.append(cmd)
    return found


@pytest.fixture
def no_leftovers(tmp_path):
    yield
    left = _using(tmp_path)
    assert not left, f"left running: {left}"


def _point(out: Path) -> dict[str, Any]:
    [pdir] = (out / "points").iterdir()
    return json.loads((pdir / "point.json").read_text())


def _history(out: Path) -> list[dict[str, str]]:
    [pdir] = (out / "points").iterdir()
    with (pdir / "locust_latency_us_history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _ok_run(wsbench, out: Path, *args: str) -> dict[str, Any]:
    """`wsbench run ARGS --out OUT`, which must exit 0 with its point ok: the point.json."""
    done = wsbench("run", *args, "--out", out, timeout_s=90)
    assert done.returncode == 0, done.stdout + done.stderr
    point = _point(out)
    assert point["status"] == "ok", point["reason"]
    point["stdout"] = done.stdout
    return point


def _per_window(rows: list[dict[str, str]], column: str) -> int:
    seen = {r["window_start_unix_s"]: int(r[column]) for r in rows}
    return sum(seen.values())


def test_kill_target_drill_counts_the_drops_and_the_recovery(wsbench, tmp_path, no_leftovers):
    out = tmp_path / "run"
    point = _ok_run(wsbench, out, "--target", "raw", "--target-processes", "2", "--scenario",
                    "hold", "--users", "200", "--fault", "kill-target@3s", "--duration", "8s",
                    "--ping-interval-s", "0.5")  # fmt: skip
    assert point["point"]["faults"] == ["kill-target@3s"]
    [drill] = point["summary"]["drill"]
    # One of two workers died: some connections, not all (SO_REUSEPORT spreads them).
    assert 0 < drill["dropped"] < 200, drill
    assert drill["dropped"] == _per_window(_history(out), "connections_dropped")
    assert drill["recovered_after_s"] is not None and drill["recovered_after_s"] < 5, drill
    assert drill["open_at_end"] == 200
    assert drill["reconnect_peak_per_s"] >= drill["dropped"] / 2
    assert drill["latency_name"] == "hold ping" and drill["p99_peak_us"] > 0
    pdir = next((out / "points").iterdir())
    assert "killed by SIGKILL" in (pdir / "target.log").read_text()
    assert json.loads((pdir / "faults.json").read_text())["faults"][0]["pids"]
    assert "kill-target at 3 s" in point["stdout"] and "connections dropped" in point["stdout"]


def test_restart_target_drops_everyone_and_counts_failed_reconnects(wsbench, tmp_path,
                                                                     no_leftovers):
    out = tmp_path / "run"
    point = _ok_run(wsbench, out, "--target", "aiohttp", "--scenario", "hold", "--users", "100",
                    "--fault", "restart-target@3s", "--duration", "9s",
                    "--reconnect-jitter", "0", "--reconnect-backoff-ms", "20")  # fmt: skip
    [drill] = point["summary"]["drill"]
    assert drill["dropped"] == 100, drill
    assert drill["recovered_after_s"] is not None, drill
    # With 20 ms between attempts and no jitter, everyone tries while the target starts again.
    assert drill["failed_reconnects"] > 0, drill
    assert drill["failed_reconnects"] == _per_window(_history(out), "connect_failures")
    assert any("connect" in reason or "upgrade" in reason for reason in drill["failed_reasons"])


@needs_redis
def test_broadcast_spans_processes_through_the_broker(wsbench, tmp_path, no_leftovers):
    out = tmp_path / "run"
    point = _ok_run(wsbench, out, "--target", "raw", "--target-processes", "2", "--broker",
                    "redis", "--scenario", "broadcast", "--users", "40", "--duration", "6s")
    summary = point["summary"]
    assert summary["broker"]["kind"] == "redis" and summary["broker"]["version"] != "unknown"
    [pdir] = (out / "points").iterdir()
    assert "save \"\"" in (pdir / "broker.conf").read_text()
    counters = json.loads((pdir / "locust_latency_us_histograms.json").read_text())["counters"]
    # Exact: every member got every message of every publisher, across both processes.
    assert counters["broadcast expected"] > 0
    assert counters["broadcast received"] == counters["broadcast expected"], counters
    assert counters.get("broadcast lost", 0) == 0 and counters.get("broadcast duplicated", 0) == 0


@needs_redis
def test_kill_broker_is_noticed_and_the_loss_counted(wsbench, tmp_path, no_leftovers):
    out = tmp_path / "run"
    point = _ok_run(wsbench, out, "--target", "raw", "--target-processes", "2", "--broker",
                    "redis", "--scenario", "broadcast", "--users", "40", "--duration", "8s",
                    "--fault", "kill-broker@3s")  # fmt: skip
    [drill] = point["summary"]["drill"]
    assert drill["broker_lost_seen"] is True
    # Members on the other process miss what was published after the broker died.
    assert drill["lost"] > 0 and drill["published_during"] > 0, drill


@needs_redis
def test_kill_target_under_broadcast_counts_what_the_dropped_members_missed(wsbench, tmp_path,
                                                                            no_leftovers):
    out = tmp_path / "run"
    # Six publishers over three processes: that one dies, at least one of them publishes on
    # (all six on the killed process: a chance of 1 in 729).
    point = _ok_run(wsbench, out, "--target", "raw", "--target-processes", "3", "--broker",
                    "redis", "--scenario", "broadcast", "--users", "60", "--duration", "8s",
                    "--publishers", "6", "--publish-rate", "20", "--reconnect-backoff-ms", "200",
                    "--reconnect-jitter", "0", "--fault", "kill-target@3s")  # fmt: skip
    [drill] = point["summary"]["drill"]
    assert 0 < drill["dropped"] < 60 and drill["recovered_after_s"] < 4, drill
    # A dropped member was away at least its 200 ms back-off, while publishers on the other
    # processes went on; it cannot have missed more than was published meanwhile.
    assert 0 < drill["lost"] <= drill["dropped"] * drill["published_during"], drill
    counters = json.loads(next((out / "points").iterdir()).joinpath(
        "locust_latency_us_histograms.json").read_text())["counters"]  # fmt: skip
    assert counters["broadcast missed while reconnecting"] > 0


@pytest.mark.parametrize(("args", "words"), [
    (("--fault", "explode@3s"), ("explode@3s", "kill-target")),
    (("--fault", "kill-target@3s"), ("--target-processes 2",)),
    (("--fault", "kill-broker@3s", "--target-processes", "2"), ("--broker redis",)),
    (("--fault", "restart-target@30s"), ("not within",)),
    (("--fault", "restart-target@2s", "--tls"), ("new throwaway CA",)),
    (("--scenario", "broadcast", "--target-processes", "2"), ("needs --broker redis",)),
])  # fmt: skip
def test_bad_drills_are_refused_in_one_line(wsbench, tmp_path, args, words):
    out = tmp_path / "run"
    scenario = () if "--scenario" in args else ("--scenario", "hold")
    done = wsbench("run", "--target", "raw", *scenario, "--users", "10", "--duration", "5s",
                   *args, "--out", out)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    for word in words:
        assert word in line, line
    assert not out.exists()


def _window(start: float, open_: int, dropped: int = 0, upgrades: int = 0) -> faults.Window:
    return faults.Window(start, 1.0, open_, {faults.DROPPED: dropped},
                         {"ws upgrade": upgrades} if upgrades else {})  # fmt: skip


def test_a_drill_whose_users_never_came_back_is_failed():
    done = faults.Done("restart-target", 2.0, 102.5, 102.6, "SIGKILL to the target")
    windows = [_window(100, 50), _window(101, 50), _window(102, 0, dropped=50),
               _window(103, 10, upgrades=10), _window(104, 20, upgrades=10), _window(105, 0)]
    record = faults.drill(done, windows, 50, "ws upgrade", {}, {}, None)
    assert record["dropped"] == 50 and record["recovered_after_s"] is None
    assert record["open_at_end"] == 20
    reason = faults.verdict(record, Fault("restart-target", 2.0))
    assert reason is not None and "30 of 50 users" in reason
    windows[4] = _window(104, 50, upgrades=40)
    record = faults.drill(done, windows, 50, "ws upgrade", {}, {}, None)
    assert record["recovered_after_s"] == 2.5 and record["reconnect_peak_per_s"] == 40
    assert faults.verdict(record, Fault("restart-target", 2.0)) is None


def test_the_drill_and_broker_matrices_plan_distinct_points():
    """bench-failover and bench-broker: every part's points have their own ids (a tag tells
    the no-jitter drill from the default one), so no part's point runs in another's place."""
    from harness import plan

    root = Path(__file__).resolve().parents[2] / "harness" / "sweeps"
    for name, per_part in (("failover", 3), ("broker", 3)):
        sweeps = plan.sweeps_from_settings(plan.load_sweep_file(root / f"{name}.toml"))
        points = plan.matrix_points(sweeps)
        assert len(points) == per_part * len(sweeps), [p.point_id for _, p in points]
        for _, point in points:
            plan.check_topology(point)
    ids = [p.point_id for _, p in plan.matrix_points(plan.sweeps_from_settings(
        plan.load_sweep_file(root / "failover.toml")))]  # fmt: skip
    assert "raw-hold-u2000-kill-target10s-nojitter-host" in ids
    assert "raw-broadcast-u1001-p4-redis-kill-target10s-host" in ids
