"""`wsbench run` and `wsbench sweep` end to end: real targets, real Locust, short runs.

One raw/echo run (5 users, 3 s) is shared by the tests that read its folder; sweeps run their
own. Every run writes into a tmp_path via --out.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness import idle
from harness.execute import run_point
from harness.plan import make_point
from harness.store import RunStore

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_ARGS = ("run", "--target", "raw", "--scenario", "echo", "--users", "5", "--duration", "3s")
POINT_ID = "raw-echo-u5-host"
# The network sysctls and limits issue 4 asks meta.json to snapshot.
SYSCTLS = (
    "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem", "net.ipv4.tcp_mem", "fs.file-max", "fs.nr_open",
)  # fmt: skip
PACKAGES = ("locust", "websocket-client", "aiohttp", "websockets")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def echo_run(wsbench, tmp_path_factory: pytest.TempPathFactory):
    """(the finished process, its --out folder, the arguments after runner.py)."""
    out = tmp_path_factory.mktemp("echo-run") / "out"
    args = (*RUN_ARGS, "--out", str(out))
    done = wsbench(*args)
    return done, out, list(args)


def test_run_exits_0_and_prints_the_point_and_where_it_went(echo_run) -> None:
    """A good run exits 0, shows the point as ok in its table and says where the results are."""
    done, out, _ = echo_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert any(line.startswith(POINT_ID) and " ok " in line for line in done.stdout.splitlines())
    assert f"results: {out}" in done.stdout


def test_meta_json_records_command_commit_versions_and_when(echo_run) -> None:
    """meta.json has schema version, command line, git commit, versions, start and end."""
    _, out, args = echo_run
    meta = read_json(out / "meta.json")
    assert meta["schema_version"] == 1
    assert meta["command"][1:] == args
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert meta["suite"]["commit"] == head
    assert meta["versions"]["python"] == platform.python_version()
    for package in PACKAGES:
        assert meta["versions"][package] == metadata.version(package), package
    started = datetime.fromisoformat(meta["started"])
    ended = datetime.fromisoformat(meta["ended"])
    assert started.tzinfo is not None
    assert 2 <= (ended - started).total_seconds() <= 60
    assert meta["status"] == "complete"


def test_meta_json_records_the_machine_kernel_settings_and_limits(echo_run) -> None:
    """meta.json has CPU, cores, memory, kernel release, the sysctls and RLIMIT_NOFILE."""
    _, out, _ = echo_run
    meta = read_json(out / "meta.json")
    machine = meta["machine"]
    assert isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert machine["cores"] == os.cpu_count()
    assert machine["memory_bytes"] == psutil.virtual_memory().total
    assert machine["kernel_release"] == platform.release()
    for name in SYSCTLS:
        proc_file = Path("/proc/sys") / name.replace(".", "/")
        expected = " ".join(proc_file.read_text().split()) if proc_file.exists() else None
        assert meta["sysctls"][name] == expected, name
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert meta["rlimits"] == {"RLIMIT_NOFILE_soft": soft, "RLIMIT_NOFILE_hard": hard}


def test_point_folder_holds_locust_csvs_latency_and_resources(echo_run) -> None:
    """The point folder has Locust CSVs, µs latency, target+Locust samples, point.json ok."""
    _, out, _ = echo_run
    pdir = out / "points" / POINT_ID
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                 "locust_latency_us_histograms.json"):  # fmt: skip
        assert (pdir / name).is_file(), name
    stats = {row["Name"]: row for row in read_csv(pdir / "locust_stats.csv")}
    assert int(stats["Aggregated"]["Request Count"]) > 0
    latency = {row["name"]: row for row in read_csv(pdir / "locust_latency_us.csv")}
    assert int(latency["echo"]["count"]) > 0
    assert 0 < float(latency["echo"]["p50_us"]) <= float(latency["echo"]["p99_us"])
    samples = read_csv(pdir / "resources.csv")
    assert {"role", "cpu_pct", "rss_bytes", "open_files", "sockets"} <= set(samples[0])
    for role in ("target", "locust"):
        mine = [s for s in samples if s["role"] == role]
        assert len(mine) >= 2, role
        assert max(int(s["rss_bytes"]) for s in mine) > 0
        assert max(int(s["sockets"]) for s in mine) >= 5, role  # 5 users' connections
    point = read_json(pdir / "point.json")
    assert point["status"] == "ok" and point["reason"] == ""
    assert point["point"]["users"] == 5 and point["point"]["scenario"] == "echo"
    assert point["summary"]["requests"] > 0
    assert point["summary"]["latency_us"]["echo"]["p99_us"] > 0


def test_point_json_counts_every_request_of_the_run(echo_run) -> None:
    """point.json's request count is the whole run's (the µs histograms' count within 0.1 %)."""
    # Locust rewrites locust_stats.csv once a second and not at exit: up to 1 s of a run is lost.
    _, out, _ = echo_run
    pdir = out / "points" / POINT_ID
    summary = read_json(pdir / "point.json")["summary"]
    histogram_count = sum(int(r["count"]) for r in read_csv(pdir / "locust_latency_us.csv"))
    assert summary["requests"] == pytest.approx(histogram_count, rel=0.001)


def test_a_pinned_point_holds_idle_cpus_polling_and_says_so(
    echo_run, wsbench, tmp_path: Path
) -> None:
    """With --pin-cpus as root the point's summary records the wake-up latency request it held
    (harness/idle.py) and how its generator (real-time) and target (nice) were scheduled; an
    unpinned point asks nothing and both run as the harness does."""
    _, unpinned, _ = echo_run
    loose = read_json(unpinned / "points" / POINT_ID / "point.json")["summary"]
    ours = f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    assert loose["idle"] is None
    assert loose["locust"]["scheduling"] == loose["target"]["scheduling"] == ours
    out = tmp_path / "out"
    done = wsbench(*RUN_ARGS, "--pin-cpus", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = read_json(out / "points" / POINT_ID / "point.json")["summary"]
    if os.geteuid() != 0 or len(os.sched_getaffinity(0)) < 2:
        assert summary["idle"] is None
        assert summary["locust"]["scheduling"] == ours
    else:
        assert summary["idle"] == {"cpu_dma_latency_us": 0,
                                   "cpuidle_driver": idle.cpuidle_driver()}  # fmt: skip
        assert summary["locust"]["scheduling"] == "SCHED_RR 1"
        assert summary["target"]["scheduling"] == "nice -10"
    assert idle.current_request_us() != 0  # let go with the point


def test_first_resource_sample_measures_cpu(echo_run) -> None:
    """The first resource sample of the busy target and of Locust shows non-zero CPU."""
    # A 0 here is psutil's priming call, and it drags the run's mean CPU down (a third in 3 s).
    _, out, _ = echo_run
    samples = read_csv(out / "points" / POINT_ID / "resources.csv")
    for role in ("target", "locust"):
        first = next(s for s in samples if s["role"] == role)
        assert float(first["cpu_pct"]) > 0, (role, first)


def test_a_failed_rerun_into_the_same_folder_reports_no_old_figures(
    echo_run, tmp_path: Path
) -> None:
    """A point failing when re-run (as a resumed sweep retries it) shows no earlier figures."""
    _, out, _ = echo_run
    again = tmp_path / "out"
    shutil.copytree(out, again)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        point = make_point("raw", "echo", 5, duration_s=3.0, target_port=port)
        assert point.point_id == POINT_ID
        outcome = run_point(point, RunStore(again), lambda _: None)
    assert outcome.status == "failed" and str(port) in outcome.reason
    point = read_json(again / "points" / POINT_ID / "point.json")
    assert point["status"] == "failed"
    assert not point["summary"].get("requests")
    assert not point["summary"].get("latency_us")


@pytest.fixture
def own_server() -> Iterator[str]:
    """A server the runner did not start (a reference target run by hand): its ws:// URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "targets", "raw", "--port", "0"], cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ready ws://"), line
        yield line.split()[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_run_against_your_own_server_by_url(wsbench, own_server: str, tmp_path: Path) -> None:
    """A ws:// URL of a server started by hand is measured ok; only Locust is sampled."""
    out = tmp_path / "out"
    done = wsbench("run", "--target", own_server, "--scenario", "echo", "--users", "2",
                   "--duration", "2s", "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    port = own_server.rsplit(":", 1)[1]
    (pdir,) = (out / "points").iterdir()
    assert pdir.name == f"ws_127.0.0.1_{port}-echo-u2-host"
    point = read_json(pdir / "point.json")
    assert point["status"] == "ok" and point["summary"]["requests"] > 0
    assert point["point"]["target"] == own_server
    assert {s["role"] for s in read_csv(pdir / "resources.csv")} == {"locust"}


# Sweeps


def test_sweep_slo_stop_skips_the_rest_of_each_series_with_the_reason(
    wsbench, tmp_path: Path
) -> None:
    """An unmeetable p99 SLO skips each series' next point with the reason, series apart."""
    out = tmp_path / "out"
    done = wsbench("sweep", "--targets", "raw,aiohttp", "--scenarios", "echo", "--users", "2,1",
                   "--duration", "2s", "--slo-p99-ms", "0.001", "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for target in ("raw", "aiohttp"):
        first = read_json(out / "points" / f"{target}-echo-u1-host" / "point.json")
        second = read_json(out / "points" / f"{target}-echo-u2-host" / "point.json")
        assert first["status"] == "ok", target
        assert first["summary"]["requests"] > 0, target
        assert second["status"] == "skipped", target
        assert "SLO" in second["reason"] and "p99" in second["reason"]
        assert "0.001 ms" in second["reason"] and "1 users" in second["reason"]
        assert not (out / "points" / f"{target}-echo-u2-host" / "locust_stats.csv").exists()
        assert f"{target}-echo-u2-host: skipped" in done.stdout


def test_sweep_refuses_to_resume_a_different_plan(wsbench, free_port, tmp_path: Path) -> None:
    """Another plan into the same sweep --out is exit 2, one line, folder unchanged."""
    out = tmp_path / "out"
    target = f"ws://127.0.0.1:{free_port()}"  # nothing listens: each point fails at once
    common = ("sweep", "--targets", target, "--scenarios", "echo", "--duration", "2s")
    first = wsbench(*common, "--users", "1", "--out", out)
    assert first.returncode == 1, first.stdout + first.stderr  # its one point failed
    meta_before = (out / "meta.json").read_bytes()
    done = wsbench(*common, "--users", "1,2", "--out", out)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "different sweep" in done.stderr and str(out) in done.stderr
    assert (out / "meta.json").read_bytes() == meta_before
    assert not (out / "points" / f"ws_127.0.0.1_{target.rsplit(':', 1)[1]}-echo-u2-host").exists()
