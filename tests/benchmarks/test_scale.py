"""benchmarks.scale: held connections, seconds held and memory per connection from a run folder."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.scale import held, main
from common import schema

MIB = 2**20


def write_point(run: Path, target: str, in_use: list[int], failures: int = 0,
                sockstat: bool = True) -> Path:  # fmt: skip
    """A finished hold point: 100 users, 2 target processes, one sample a second."""
    pdir = run / schema.POINTS_DIR / f"{target}-hold-u100-tuned"
    pdir.mkdir(parents=True)
    summary = {
        "failures": failures,
        "target": {"rss_bytes_max": 30 * MIB, "rss_bytes_idle": 20 * MIB, "cpu_pct_mean": 5.0},
        "locust": {"rss_bytes_max": 5 * MIB},
        "kernel": {"explain": ["server: 3 ListenOverflows — ..."] if failures else []},
    }
    point = {"target": target, "users": 100, "target_processes": 2}
    schema.write_point(pdir, {"point": point, "status": "ok", "summary": summary})
    if failures:
        schema.write_json(pdir / schema.FINAL_FAILURES_JSON,
                          [{"error": "NetworkError('EMFILE')", "occurrences": failures}])
    name, column = ((schema.SOCKSTAT_CSV, "TCP_inuse") if sockstat
                    else (schema.RESOURCES_CSV, "sockets"))  # fmt: skip
    with (pdir / name).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["elapsed_s", "side" if sockstat else "role", column])
        for t, n in enumerate(in_use):
            writer.writerow([t + 1.0, "server" if sockstat else "target", n + 2])  # + listeners
    return pdir


def test_seconds_held_count_samples_with_every_connection_open(tmp_path: Path) -> None:
    pdir = write_point(tmp_path, "raw", [10, 50, 100, 100, 100, 99, 100, 0])
    result = held(pdir)
    assert result.peak == 100
    assert result.held_s == 4  # 99 open is not all of them
    assert result.ramp_s == 2
    assert result.kib_per_connection == 10 * 1024 / 100  # 10 MiB growth over 100 connections
    assert result.locust_kib_per_user == 5 * 1024 / 100


def test_host_runs_count_the_target_processes_sockets(tmp_path: Path) -> None:
    pdir = write_point(tmp_path, "raw", [100] * 3, sockstat=False)
    assert held(pdir).held_s == 3


def test_exit_status_says_whether_every_target_held_long_enough(tmp_path: Path, capsys) -> None:
    write_point(tmp_path, "raw", [100] * 5)
    write_point(tmp_path, "aiohttp", [100] * 5)
    assert main([str(tmp_path), "--hold-s", "5"]) == 0
    assert main([str(tmp_path), "--hold-s", "6"]) == 1
    out = capsys.readouterr().out
    assert "raw: held 100 of 100 at most, all of them for 5 s (wanted 6 s)" in out


def test_failures_fail_the_benchmark_and_are_named(tmp_path: Path, capsys) -> None:
    write_point(tmp_path, "websockets", [100] * 5, failures=3)
    assert main([str(tmp_path), "--hold-s", "1"]) == 1
    out = capsys.readouterr().out
    assert "3x NetworkError('EMFILE')" in out and "kernel: server: 3 ListenOverflows" in out


def test_not_a_run_folder_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    assert "not a wsbench run folder" in capsys.readouterr().err


def test_a_point_json_of_another_schema_version_is_exit_2(tmp_path: Path, capsys) -> None:
    """A point.json this code cannot read is one line on stderr, not a traceback."""
    pdir = write_point(tmp_path, "raw", [100] * 5)
    schema.write_json(pdir / schema.POINT, {"schema_version": 99, "status": "ok"})
    assert main([str(tmp_path)]) == 2
    assert "result schema version 99" in capsys.readouterr().err

