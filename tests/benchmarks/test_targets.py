"""The target benchmark: its report, the run it stores, and one short run read back."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from benchmarks import targets as bench
from common import schema
from harness.store import RunStore

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- report ------------------------------------------------------------------------------------


def _echo(msgs_per_s: float, client_cpu_pct: float = 50.0) -> bench.EchoResult:
    return bench.EchoResult(msgs_per_s, 100.0, client_cpu_pct, 100.0, client_cpu_pct, 0)


def _idle(kib_per_conn: float, opened: int = 100, server: int = 100) -> bench.IdleResult:
    return bench.IdleResult(1000.0, 1000.0 + kib_per_conn * opened, opened, server)


def test_table_shows_ratios_to_aiohttp_and_unavailable_targets() -> None:
    """Ratios are relative to aiohttp; a target that is not installed says so."""
    results = [
        bench.TargetResult("aiohttp", _echo(100_000), _idle(12.0)),
        bench.TargetResult("websockets", _echo(50_000), _idle(6.0)),
        bench.TargetResult("raw", error="not available"),
    ]
    rows = bench.result_rows(results)
    assert rows[0] == ["aiohttp", "100,000", "1.00x", "12.0", "1.00x"]
    assert rows[1] == ["websockets", "50,000", "0.50x", "6.0", "0.50x"]
    assert rows[2][:2] == ["raw", "not available"]
    table = bench.format_table(["target", "a", "b", "c", "d"], rows).splitlines()
    assert len({len(line) for line in table[:3]}) == 1  # aligned columns


def test_checks_pass_fail_and_skip() -> None:
    """raw is judged against aiohttp's throughput and the 16 KiB bound; missing figures skip."""
    aiohttp = bench.TargetResult("aiohttp", _echo(100_000), _idle(12.0))
    fast_lean = bench.TargetResult("raw", _echo(150_000), _idle(3.0))
    slow_fat = bench.TargetResult("raw", _echo(90_000), _idle(17.0))
    assert [c.status for c in bench.checks([aiohttp, fast_lean])] == ["PASS", "PASS"]
    assert [c.status for c in bench.checks([aiohttp, slow_fat])] == ["FAIL", "FAIL"]
    assert [c.status for c in bench.checks([aiohttp])] == ["SKIP", "SKIP"]
    assert [c.status for c in bench.checks([fast_lean])] == ["SKIP", "PASS"]


def test_notes_warn_about_a_busy_client_and_a_connection_count_mismatch() -> None:
    """A client at 90% of its core and /stats disagreeing with the idle count are flagged."""
    result = bench.TargetResult("raw", _echo(1.0, client_cpu_pct=95.0), _idle(1.0, server=99))
    text = "\n".join(bench.notes(result, idle=100))
    assert "client was CPU-bound" in text
    assert "/stats reports 99" in text
    assert "WARNING" not in "\n".join(bench.notes(bench.TargetResult("x", _echo(1.0)), 100))


def test_missing_target_is_reported_not_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A target whose module does not exist yet is 'not available' and nothing is started."""
    monkeypatch.setitem(bench.TARGETS, "raw", "targets.no_such_module")
    args = bench.build_parser().parse_args([])
    store = RunStore.create(tmp_path / "run", bench.KIND)
    result = bench.measure("raw", args, bench.Placement(0, 0), store)
    assert (result.error, result.echo, result.idle) == ("not available", None, None)
    stored = [schema.read_point(p) for p in schema.point_dirs(store.root)]
    assert [(p["status"], p["reason"]) for p in stored if p] == [("failed", "not available")] * 2
    assert not list(store.root.rglob(schema.TARGET_LOG))  # nothing was started


def test_a_stored_run_reads_back_as_the_figures_it_stored(tmp_path: Path) -> None:
    """Figures go to point.json and come back the same; a failed point keeps its reason."""
    args = bench.build_parser().parse_args(["--targets", "aiohttp,raw", "--idle", "100"])
    store = RunStore.create(tmp_path / "run", bench.KIND)
    store.write_meta(bench.run_meta(store, args, bench.Placement(0, 1)))
    echo, idle = _echo(100_000), _idle(12.0)
    bench.store_point(store, bench.echo_params("aiohttp", args), "t0", bench.echo_summary(echo))
    bench.store_point(store, bench.hold_params("aiohttp", args), "t0", bench.idle_summary(idle))
    bench.store_point(store, bench.echo_params("raw", args), "t0", reason="raw did not start")
    meta, results = bench.load(store.root)
    assert meta["kind"] == "bench-targets" and meta["placement"] == {"server_cpu": 0,
                                                                      "client_cpu": 1}
    assert results == [bench.TargetResult("aiohttp", echo, idle),
                       bench.TargetResult("raw", error="failed: raw did not start")]  # fmt: skip
    assert bench.result_rows(results)[1] == ["raw", "failed: raw did not start", "", "", ""]


def test_the_report_shows_the_figures_a_stored_run_measured(tmp_path: Path) -> None:
    """reports/load.py reads a bench-targets run's figures from its point summaries (it has no
    Locust files): echo msgs/s, server CPU and RSS, client CPU; per idle connection, the growth
    over the idle server."""
    from reports.load import load_run

    args = bench.build_parser().parse_args(["--targets", "aiohttp", "--idle", "100"])
    store = RunStore.create(tmp_path / "run", bench.KIND)
    store.write_meta(bench.run_meta(store, args, bench.Placement(0, 1)))
    echo = bench.EchoResult(123_456.0, 97.0, 61.0, 99.0, 70.0, 0, rss_bytes=40 * 2**20)
    bench.store_point(store, bench.echo_params("aiohttp", args), "t0", bench.echo_summary(echo))
    bench.store_point(store, bench.hold_params("aiohttp", args), "t0",
                      bench.idle_summary(_idle(12.0)))  # fmt: skip
    rows = load_run(store.root).points.set_index("scenario")
    assert rows.loc["echo", "msgs_per_s"] == 123_456.0
    assert rows.loc["echo", "server_cpu_pct_mean"] == 97.0
    assert rows.loc["echo", "server_rss_bytes_max"] == 40 * 2**20
    assert rows.loc["echo", "generator_cpu_pct"] == 61.0
    assert rows.loc["hold", "server_rss_per_conn_bytes"] == pytest.approx(12.0 * 1024)


def test_show_refuses_a_folder_that_is_not_a_bench_targets_run(tmp_path: Path, capsys) -> None:
    """--show on another kind of run, or on no run, is one line and exit status 2."""
    schema.write_meta(tmp_path, {"kind": "sweep", "plan": []})
    assert bench.main(["--show", str(tmp_path)]) == 2
    assert "is not a bench-targets run" in capsys.readouterr().err
    assert bench.main(["--show", str(tmp_path / "nope")]) == 2


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[[str], bench.Events]]:
    """Events of `python -c CODE` started as the benchmark starts its client; stopped after."""
    started: list[bench.Events] = []

    def start(code: str) -> bench.Events:
        log = tmp_path / "client.log"
        proc = bench.pinned.spawn([sys.executable, "-c", code], 0, log, stdout_pipe=True)
        started.append(bench.Events(proc, log))
        return started[-1]

    yield start
    for events in started:
        bench.pinned.stop(events.proc)
        events.proc.stdout.close()  # type: ignore[union-attr]


def test_events_written_together_are_each_read(child: Callable[[str], bench.Events]) -> None:
    """Two event lines that arrive in one read are both delivered, without waiting."""
    events = child("import time; print('{\"event\": \"a\"}\\n{\"event\": \"b\"}', flush=True);"
                   " time.sleep(30)")
    started = time.monotonic()
    assert events.next("a", 10)["event"] == "a"
    assert events.next("b", 10)["event"] == "b"
    assert time.monotonic() - started < 5


def test_a_client_that_exits_says_its_status_and_last_log_line(
    child: Callable[[str], bench.Events],
) -> None:
    """BenchError names the exit status and what the client said last on stderr."""
    events = child("import sys; print('bench client: refused', file=sys.stderr); sys.exit(3)")
    with pytest.raises(bench.BenchError, match=r"exited with status 3 \(bench client: refused\)"):
        events.next("measuring", 10)


# -- one short run -----------------------------------------------------------------------------


def _marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("WSBENCH_TEST_RUN") == marker:
                found.append(proc)
    return found


@dataclass(frozen=True)
class ShortRun:
    done: subprocess.CompletedProcess[str]
    run_dir: Path
    marker: str


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShortRun]:
    """One short run against aiohttp (about 5 s), shared by the tests that read it."""
    results = tmp_path_factory.mktemp("results")
    cmd = [sys.executable, "-m", "benchmarks.targets", "--targets", "aiohttp",
           "--duration", "0.5", "--connections", "4", "--idle", "50",
           "--results-dir", str(results)]  # fmt: skip
    marker = uuid.uuid4().hex  # inherited by every process the run starts
    env = {**os.environ, "WSBENCH_TEST_RUN": marker}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    runs = sorted(results.glob("*-bench-targets-*"))
    yield ShortRun(done, runs[0] if len(runs) == 1 else results / "no single run", marker)


def _aiohttp_cells(stdout: str) -> list[str]:
    return next(line for line in stdout.splitlines() if line.startswith("aiohttp ")).split()


def test_short_run_prints_the_table_and_leaves_no_process(short_run: ShortRun) -> None:
    """A run against aiohttp prints its row and the checks, exits 0 and stops its children."""
    done = short_run.done
    assert done.returncode == 0, done.stderr
    cells = _aiohttp_cells(done.stdout)
    assert (cells[2], cells[4]) == ("1.00x", "1.00x")
    assert float(cells[1].replace(",", "")) > 0 and float(cells[3]) > 0
    assert "SKIP raw echo throughput" in done.stdout
    assert _marked_processes(short_run.marker) == []


def test_short_run_is_stored_as_a_run_of_two_points(short_run: ShortRun) -> None:
    """meta.json (complete, with provenance) and an ok echo and hold point with their figures."""
    meta = schema.read_meta(short_run.run_dir)
    assert (meta["kind"], meta["status"]) == ("bench-targets", "complete")
    assert meta["machine"]["cpu_model"] and meta["ended"]
    echo = schema.read_point(short_run.run_dir / "points" / "aiohttp-echo-c4-host")
    hold = schema.read_point(short_run.run_dir / "points" / "aiohttp-hold-c50-host")
    assert echo and hold and echo["status"] == hold["status"] == "ok"
    assert echo["point"]["scenario"] == "echo" and hold["point"]["users"] == 50
    assert echo["summary"]["requests_per_s"] > 0 and echo["summary"]["measured_s"] > 0
    assert echo["summary"]["target"]["cpu_pct_mean"] > 0
    server = hold["summary"]["target"]
    assert server["rss_bytes_max"] > server["rss_bytes_idle"] > 0 and server["connections"] == 50


def test_show_prints_the_stored_run_as_the_run_printed_it(short_run: ShortRun) -> None:
    """--show RUN_DIR prints the same table, notes and checks again, starting nothing."""
    cmd = [sys.executable, "-m", "benchmarks.targets", "--show", str(short_run.run_dir)]
    shown = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == short_run.done.stdout


def test_wsbench_report_and_compare_read_a_stored_run(short_run: ShortRun, tmp_path: Path) -> None:
    """`wsbench report` and `wsbench compare` work on a bench-targets run (itself, here)."""
    wsbench = [sys.executable, "-m", "runner"]
    run = str(short_run.run_dir)
    report = subprocess.run([*wsbench, "report", run, "--out", str(tmp_path / "report")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "report.html").stat().st_size > 0
    compare = subprocess.run([*wsbench, "compare", run, run, "--out", str(tmp_path / "cmp")],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert compare.returncode == 0, compare.stderr
    assert "2 points in common, 2 compared" in compare.stdout
