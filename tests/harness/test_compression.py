"""--compression deflate: permessage-deflate between the client and the reference targets, as a
point dimension; real targets, real Locust runs (as the runner's children)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import compression, plan

Run = Callable[..., subprocess.CompletedProcess[str]]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _points(out: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "point.json").read_text()) for p in (out / "points").iterdir()}


@pytest.fixture
def plain_aiohttp() -> Iterator[str]:
    """An aiohttp target started without --compression: it answers every offer without it."""
    proc = subprocess.Popen([sys.executable, "-m", "targets", "aiohttp", "--port", "0"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"ready (ws://\S+)", line.strip())
        assert match, line
        yield match[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


@pytest.mark.parametrize(("target", "content", "bits"), [
    ("aiohttp", "text", 15), ("aiohttp", "random", 15),
    ("websockets", "text", 12), ("websockets", "random", 12),
])  # fmt: skip
def test_a_deflate_echo_negotiates_and_round_trips_intact(
    wsbench: Run, tmp_path: Path, target: str, content: str, bits: int
) -> None:
    """Every upgrade agreed to the library's own permessage-deflate (its window sizes recorded);
    every echo, inflated, was byte for byte the message sent (a differing one fails), none
    failed; the point id and the summary say compression was on."""
    out = tmp_path / "run"
    done = wsbench("run", "--target", target, "--scenario", "echo", "--users", "3",
                   "--duration", "2s", "--compression", "deflate", "--payload-content", content,
                   "--payload-bytes", "200", "--out", out, timeout_s=90)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (point_id, result), = _points(out).items()
    assert point_id == f"{target}-echo-u3-deflate-host"
    summary = result["summary"]
    assert summary["main"]["successes"] > 100 and summary["main"]["failures"] == 0, summary
    entry = summary["compression"]
    assert entry["asked"] == "deflate" and entry["negotiated"], entry
    assert entry["negotiated_connections"] == 3 and entry["declined_connections"] == 0
    (agreed,) = entry["agreed"]
    assert agreed["parameters"]["server_max_window_bits"] == bits
    assert agreed["parameters"]["client_max_window_bits"] == bits
    assert result["point"]["compression"] == "deflate"
    assert "--ws-compression" in result["command"]


def test_an_echo_rate_point_with_deflate_and_without(wsbench: Run, tmp_path: Path) -> None:
    """--compression none,deflate: two points, each its own id; only the deflate one has a
    compression record; both measured every echo."""
    out = tmp_path / "run"
    done = wsbench("run", "--target", "websockets", "--scenario", "echo_rate", "--users", "2",
                   "--duration", "2s", "--rate", "50", "--compression", "none,deflate",
                   "--payload-content", "text", "--out", out, timeout_s=90)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    points = _points(out)
    assert set(points) == {"websockets-echo_rate-u2-host", "websockets-echo_rate-u2-deflate-host"}
    plain, deflated = points["websockets-echo_rate-u2-host"], points[
        "websockets-echo_rate-u2-deflate-host"]
    assert "compression" not in plain["summary"] and "compression" not in plain["point"]
    assert deflated["summary"]["compression"]["negotiated_connections"] == 2
    for result in (plain, deflated):
        assert result["status"] == "ok" and result["summary"]["main"]["failures"] == 0, result


@pytest.mark.parametrize(("scenario", "args"), [
    ("connect", ("--exchange",)), ("hold", ("--ping-interval-s", "0.5")),
    ("broadcast", ("--publish-rate", "20")), ("push", ("--push-rate", "50")),
])  # fmt: skip
def test_every_other_scenario_runs_on_deflate_connections(
    wsbench: Run, tmp_path: Path, scenario: str, args: tuple[str, ...]
) -> None:
    """The server's compressed messages (pushes, broadcast deliveries, the connect echo) are
    inflated and measured; pings stay uncompressed; nothing fails or goes missing."""
    out = tmp_path / "run"
    done = wsbench("run", "--target", "aiohttp", "--scenario", scenario, "--users", "3",
                   "--duration", "2s", "--compression", "deflate", *args, "--out", out,
                   timeout_s=90)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = _points(out).values()
    summary = result["summary"]
    assert result["status"] == "ok" and summary["main"]["successes"] > 0, result
    assert summary["main"]["failures"] == 0, summary["main"]
    assert summary["compression"]["negotiated"], summary["compression"]


def test_a_server_that_declines_fails_the_point_saying_so(
    wsbench: Run, tmp_path: Path, plain_aiohttp: str
) -> None:
    """A URL whose server answers without permessage-deflate: the point is failed, and its one
    line says compression was asked for and not negotiated; the record counts the refusals."""
    out = tmp_path / "run"
    done = wsbench("run", "--target", plain_aiohttp, "--scenario", "echo", "--users", "2",
                   "--duration", "2s", "--compression", "deflate", "--out", out,
                   timeout_s=90)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("wsbench: point failed")]
    assert len(failed) == 1, done.stderr
    assert "permessage-deflate asked for" in failed[0] and "not negotiated" in failed[0]
    assert "Traceback" not in done.stderr
    (result,) = _points(out).values()
    assert result["status"] == "failed"
    entry = result["summary"]["compression"]
    assert not entry["negotiated"] and entry["declined_connections"] >= 2, entry


def test_the_raw_target_refuses_deflate_in_one_line(wsbench: Run) -> None:
    """wsbench says so before anything starts (exit 2); the target itself, run alone, too
    (exit 1); neither with a traceback."""
    done = wsbench("run", "--target", "raw", "--scenario", "echo", "--users", "1",
                   "--duration", "1s", "--compression", "deflate")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "raw target does not implement permessage-deflate" in done.stderr
    alone = subprocess.run([sys.executable, "-m", "targets", "raw", "--compression", "deflate"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)  # fmt: skip
    assert alone.returncode == 1 and alone.stdout == "", alone
    assert alone.stderr.count("\n") == 1 and "does not implement permessage-deflate" in alone.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("--compression", "brotli"), "compression must be one of none, deflate, got 'brotli'"),
    (("--compression", "deflate,deflate"), "compression deflate given more than once"),
])  # fmt: skip
def test_bad_compression_is_refused_in_one_line(
    wsbench: Run, args: tuple[str, ...], said: str
) -> None:
    done = wsbench("run", "--target", "aiohttp", "--scenario", "echo", "--users", "1",
                   "--duration", "1s", *args)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr


def test_a_sweep_file_takes_a_compression_list_and_each_is_its_own_series() -> None:
    """compression = [...] in TOML: one point each, an id suffix only for deflate, its own SLO
    series, and nothing stored for the points without it (their ids and records as before)."""
    sweep = plan.sweep_from_settings({"targets": ["aiohttp"], "scenarios": ["echo"],
                                      "users": [10, 100], "compression": ["none", "deflate"]})
    points = sweep.points()
    assert [p.point_id for p in points] == [
        "aiohttp-echo-u10-host", "aiohttp-echo-u100-host",
        "aiohttp-echo-u10-deflate-host", "aiohttp-echo-u100-deflate-host"]  # fmt: skip
    assert len({sweep.series_key(p) for p in points}) == 2
    assert sweep.series_key(points[0]) == ("aiohttp", "echo", "host")
    assert "compression" not in points[0].as_dict()
    assert points[2].as_dict()["compression"] == "deflate"
    with pytest.raises(plan.PlanError, match="raw target does not implement"):
        plan.check_topology(plan.make_point("raw", "echo", 1, compression="deflate"))
    plan.check_topology(plan.make_point("ws://127.0.0.1:9/", "echo", 1, compression="deflate"))


def test_the_record_reads_the_counters_the_scenarios_leave() -> None:
    """Each distinct agreement with its count; refusals counted; the warning only with some."""
    counters = {
        "deflate negotiated": 5, "deflate declined": 1, "connect failures": 1,
        "deflate agreed: server_no_context_takeover=False, client_no_context_takeover=True, "
        "server_max_window_bits=12, client_max_window_bits=15": 5,
    }  # fmt: skip
    entry = compression.record(counters, "deflate")
    assert entry == {"asked": "deflate", "negotiated": True, "negotiated_connections": 5,
                     "declined_connections": 1, "agreed": [{"parameters": {
                         "server_no_context_takeover": False,
                         "client_no_context_takeover": True, "server_max_window_bits": 12,
                         "client_max_window_bits": 15}, "connections": 5}]}  # fmt: skip
    assert "1 upgrade(s) were answered without" in compression.declined_warning(entry)
    assert compression.declined_warning(compression.record({}, "deflate")) is None
