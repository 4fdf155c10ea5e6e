"""harness.plan: durations, points, process sizing, sweep expansion and sweep files.

Most tests call the module directly (no processes); the sweep-file type checks run the CLI,
since what a user sees there is the exit status and stderr.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runner
from harness import plan
from harness.plan import (
    FD_HEADROOM,
    MAX_PROCESSES,
    PlanError,
    Sweep,
    make_point,
    parse_duration,
    sized,
)
from targets.protocol import DEFAULT_MAX_MESSAGE_BYTES

REPO_ROOT = Path(__file__).resolve().parents[2]


# parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1h", 3600.0),
        ("2m30s", 150.0),
        ("45", 45.0),
        ("1.5s", 1.5),
        (" 3s ", 3.0),
        ("24h", 86400.0),
    ],
)
def test_parse_duration_accepts_the_documented_forms(text: str, seconds: float) -> None:
    """'30s', '2m', '1h30m' and bare seconds are durations in seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0", "0s", "-1", "abc", "3 s", "1m30", "25h", "2d", "500ms", "s", "1.5.2s"]
)
def test_parse_duration_refuses_anything_else_naming_the_input(text: str) -> None:
    """Other durations (zero, over 24 h, '500ms', junk) are a PlanError quoting the input."""
    with pytest.raises(PlanError) as err:
        parse_duration(text)
    assert repr(text.strip()) in str(err.value)


# scenario options, checked before any load


def test_points_without_scenario_options_start_no_checker(monkeypatch) -> None:
    """Only points with scenario options pay the check's Locust import (most of a second)."""
    started = []
    monkeypatch.setattr(plan.subprocess, "run", lambda *a, **k: started.append(k["input"]) or
                        subprocess.CompletedProcess(a, 0, "", ""))  # fmt: skip
    plan.check_options([make_point("raw", "echo", 5), make_point("raw", "connect", 5)])
    assert started == []
    plan.check_options([make_point("raw", "echo", 5, options=("--payload-bytes", "64"))])
    assert [json.loads(i)[0]["options"] for i in started] == [["--payload-bytes", "64"]]


def test_every_scenarios_defaults_pass_its_own_check() -> None:
    """What the shortcut above relies on: no option is required, every default is valid and
    within a reference target's message limit."""
    checks = [{"scenario": name, "options": [], "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES}
              for name in plan.SCENARIOS]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "scenarios.check", "--batch"],
                          input=json.dumps(checks), capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


# make_point


def test_make_point_defaults_spawn_rate_to_all_users_at_once_up_to_1000() -> None:
    """Without --spawn-rate every user starts in the first second, capped at 1000/s."""
    assert make_point("raw", "echo", 10).workload.spawn_rate == 10.0
    assert make_point("raw", "echo", 5000).workload.spawn_rate == 1000.0
    assert make_point("raw", "echo", 5000, spawn_rate=50).workload.spawn_rate == 50.0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"target": "nginx"}, ["nginx", "aiohttp", "raw", "websockets", "ws://"]),
        ({"target": "ws://"}, ["ws://", "host"]),
        ({"target": "http://127.0.0.1:1"}, ["http://127.0.0.1:1"]),
        ({"scenario": "pingpong"}, ["pingpong", *plan.SCENARIOS]),
        ({"users": 0}, ["users", "0"]),
        ({"users": -3}, ["users", "-3"]),
        ({"users": plan.MAX_USERS + 1}, ["users", str(plan.MAX_USERS + 1)]),
        ({"spawn_rate": 0}, ["spawn rate"]),
        ({"spawn_rate": -1}, ["spawn rate"]),
        ({"processes": 0}, ["process"]),
        ({"target_processes": 0}, ["process"]),
    ],
)
def test_make_point_refuses_bad_parameters_with_a_message_naming_them(
    kwargs: dict[str, object], words: list[str]
) -> None:
    """Every bad parameter is a PlanError whose message names what was wrong."""
    args: dict[str, object] = {"target": "raw", "scenario": "echo", "users": 10, **kwargs}
    with pytest.raises(PlanError) as err:
        make_point(**args)  # type: ignore[arg-type]
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("duration_s", [0.0, -5.0, plan.MAX_DURATION_S + 1])
def test_make_point_refuses_a_duration_outside_0_to_24_h(duration_s: float) -> None:
    """make_point validates the run time too, not only the CLI's parse_duration."""
    with pytest.raises(PlanError, match="duration"):
        make_point("raw", "echo", 10, duration_s=duration_s)


def test_every_offered_scenario_has_a_locustfile() -> None:
    """The scenario names the CLI lists as choices can all be run."""
    for name in plan.SCENARIOS:
        assert plan.locustfile(name).is_file(), name


# point_id


def test_point_id_of_a_reference_target_names_target_scenario_users_and_profile() -> None:
    """A reference target's point id reads target-scenario-uN-profile."""
    assert make_point("raw", "echo", 10).point_id == "raw-echo-u10-host"
    assert make_point("aiohttp", "broadcast", 500).point_id == "aiohttp-broadcast-u500-host"


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:8080", "wss://example.test:443/chat/socket", "ws://[::1]:9000/x?y=1"]
)
def test_point_id_of_a_url_is_one_safe_folder_name(url: str) -> None:
    """A URL target's point id is one folder name: no slash, colon, bracket or query mark."""
    point_id = make_point(url, "echo", 10).point_id
    assert point_id.endswith("-echo-u10-host")
    assert not set(point_id) & set("/:[]?=\\ ")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ws://127.0.0.1:8080", "wss://127.0.0.1:8080"),
        ("ws://127.0.0.1:8080/app1", "ws://127.0.0.1:8080/app2"),
    ],
)
def test_point_ids_of_different_urls_differ(first: str, second: str) -> None:
    """Different URLs (scheme or path) get different point ids, so separate folders."""
    # Scenarios keep the URL's path (ws://h/app1 + /echo), so /app1 and /app2 are two servers;
    # with one id the second would be 'already ok, skipped' in a sweep.
    assert make_point(first, "echo", 10).point_id != make_point(second, "echo", 10).point_id


# sized


def test_sized_splits_users_over_locust_and_target_processes_and_says_why() -> None:
    """600 users at a limit of 800 get 2 Locust and 2 target processes, with the numbers why."""
    point, notes = sized(make_point("raw", "echo", 600), limit=800)
    assert (point.topology.processes, point.topology.target_processes) == (2, 2)
    assert len(notes) == 2
    assert "2 Locust processes" in notes[0]
    assert "800" in notes[0] and str(800 - FD_HEADROOM) in notes[0]
    assert "target" in notes[1]


def test_sized_leaves_a_point_that_fits_alone() -> None:
    """Users within the limit, or already spread enough, change nothing and print nothing."""
    small = make_point("raw", "echo", 300)
    assert sized(small, limit=800) == (small, [])
    spread = make_point("raw", "echo", 600, processes=3, target_processes=3)
    assert sized(spread, limit=800) == (spread, [])


def test_sized_does_not_add_target_processes_to_an_external_server() -> None:
    """An external URL's process count is not ours to change; only Locust is split."""
    point, notes = sized(make_point("ws://127.0.0.1:9", "echo", 600), limit=800)
    assert (point.topology.processes, point.topology.target_processes) == (2, 1)
    assert len(notes) == 1


@pytest.mark.parametrize("limit", [600, 1024, 4096, 65536])
def test_sized_never_gives_a_process_more_sockets_than_its_limit(limit: int) -> None:
    """Whatever the limit, processes x (limit - headroom) covers the users, up to MAX_PROCESSES."""
    for users in (1, 100, 999, 5000, 100_000):
        if math.ceil(users / (limit - FD_HEADROOM)) > MAX_PROCESSES:
            continue  # refused: see the next test
        point, _ = sized(make_point("raw", "hold", users), limit=limit)
        assert point.topology.processes * (limit - FD_HEADROOM) >= users
        assert point.topology.target_processes == point.topology.processes


def test_sized_refuses_a_split_into_more_than_max_processes() -> None:
    """100k users under a 1024 limit would need 191 processes: a PlanError saying ulimit -n."""
    with pytest.raises(PlanError) as err:
        sized(make_point("raw", "hold", 100_000), limit=1024)
    assert "191 processes" in str(err.value) and "ulimit -n" in str(err.value)


@pytest.mark.parametrize("limit", [256, 400, FD_HEADROOM])
def test_sized_refuses_when_the_limit_leaves_no_room_for_sockets(limit: int) -> None:
    """A limit at or below the fd headroom is a PlanError naming it and the fix (ulimit -n)."""
    # Today: ZeroDivisionError at exactly FD_HEADROOM, and one process (no split) below it.
    with pytest.raises(PlanError) as err:
        sized(make_point("raw", "echo", 600), limit=limit)
    assert str(limit) in str(err.value)
    assert "ulimit" in str(err.value) or "RLIMIT_NOFILE" in str(err.value)


# Sweep.points


def test_sweep_points_grow_connections_within_each_series() -> None:
    """Points come series by series, connection counts ascending within each series."""
    sweep = Sweep(("raw", "aiohttp"), ("echo", "connect"), (1000, 10, 100), duration_s=5.0)
    points = sweep.points()
    series = [sweep.series_key(p) for p in points]
    assert series == [
        (t, s, "host") for t in ("raw", "aiohttp") for s in ("echo", "connect") for _ in range(3)
    ]
    for start in range(0, len(points), 3):
        assert [p.workload.users for p in points[start : start + 3]] == [10, 100, 1000]
    assert {p.workload.duration_s for p in points} == {5.0}


def test_pinned_cpus_split_this_processs_cpus_between_target_and_locust() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    pinned = make_point("raw", "echo", 10, pin_cpus=True).topology.cpu_split()
    if len(cpus) < 2:
        assert pinned == (None, None)
    else:
        target, load = pinned
        assert target and load and not target & load and target | load == set(cpus)
        assert min(load) > max(target)
    assert make_point("raw", "echo", 10).topology.cpu_split() == (None, None)
    url = make_point("ws://127.0.0.1:9/x", "echo", 10, pin_cpus=True)
    assert url.topology.cpu_split() == (None, None)  # not our server: nothing to pin it to


def test_rates_step_the_offered_load_at_each_connection_count() -> None:
    """With rates, a series is one connection count with the rate ascending; each rate becomes
    the open-model scenario's per-connection option and part of the point id."""
    sweep = Sweep(("raw",), ("echo_rate",), (1000,), rates=(20_000.0, 5_000.0))
    points = sweep.points()
    assert [p.point_id for p in points] == ["raw-echo_rate-u1000-r5000-host",
                                            "raw-echo_rate-u1000-r20000-host"]  # fmt: skip
    assert [p.workload.options for p in points] == [("--rate", "5"), ("--rate", "20")]
    assert [sweep.series_key(p) for p in points] == [("raw", "echo_rate", "host", "1000")] * 2
    assert points[0].as_dict()["rate"] == 5_000.0
    assert "rate" not in make_point("raw", "echo", 10).as_dict()  # stored as before rates
    storm = make_point("raw", "connect", 100, rate=1000.0)
    assert storm.workload.options == ("--arrival-rate", "10")


@pytest.mark.parametrize("settings, message", [
    ({"scenarios": ["echo"], "rates": [100]}, "a rate applies to the open-model scenarios"),
    ({"rates": ["fast"]}, "rates must be numbers"),
    ({"rates": [0]}, "rate must be more than 0"),
    ({"rates": [100], "options": {"echo_rate": ["--rate", "3"]}}, "not both"),
])  # fmt: skip
def test_bad_rates_are_one_line_plan_errors(settings: dict, message: str) -> None:
    base = {"targets": ["raw"], "scenarios": ["echo_rate"], "users": [10]}
    with pytest.raises(PlanError, match=message):
        [s.points() for s in plan.sweeps_from_settings({**base, **settings})]


def test_matrix_parts_share_the_top_level_keys_and_run_a_shared_point_once() -> None:
    """Each [[part]] is a sweep of its keys over the top-level ones and the overrides (the
    command line's) over both; a point two parts plan runs once, in its first part."""
    settings = {
        "targets": ["raw", "aiohttp"], "duration": "3s", "users": [1000],
        "part": [
            {"name": "knee", "scenarios": ["echo_rate"], "rates": [5000, 10000],
             "slo_p99_ms": 10},
            {"name": "latency", "scenarios": ["echo_rate"], "users": [1000, 10000],
             "rates": [5000]},
            {"name": "memory", "scenarios": ["hold"], "users": [10000], "duration": "5s"},
        ],
    }  # fmt: skip
    sweeps = plan.sweeps_from_settings(settings, {"targets": ["raw"]})
    assert [(s.name, s.targets, s.slo.p99_ms) for s in sweeps] == [
        ("knee", ("raw",), 10.0), ("latency", ("raw",), None), ("memory", ("raw",), None)]
    matrix = plan.matrix_points(sweeps)
    assert [(s.name, p.point_id) for s, p in matrix] == [
        ("knee", "raw-echo_rate-u1000-r5000-host"),
        ("knee", "raw-echo_rate-u1000-r10000-host"),
        ("latency", "raw-echo_rate-u10000-r5000-host"),
        ("memory", "raw-hold-u10000-host"),
    ]
    assert matrix[-1][1].workload.duration_s == 5.0 and matrix[0][1].workload.duration_s == 3.0
    with pytest.raises(PlanError, match="part names must differ"):
        plan.sweeps_from_settings({**settings, "scenarios": ["echo"],
                                   "part": [{"name": "a"}, {"name": "a"}]})  # fmt: skip


def test_a_sweep_file_with_parts_is_checked_key_by_key(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text('targets = ["raw"]\n[[part]]\nname = "x"\nscenarios = ["echo"]\n'
                      'usres = [10]\n')  # fmt: skip
    with pytest.raises(PlanError, match=r"part 1: unknown keys \['usres'\]"):
        plan.load_sweep_file(config)


def test_sweep_points_pass_each_scenario_its_own_options() -> None:
    """Scenario options in a sweep reach only that scenario's points."""
    sweep = Sweep(("raw",), ("echo", "hold"), (1,), options={"hold": ("--ping-interval-s", "1")})
    assert {p.workload.scenario: p.workload.options for p in sweep.points()} == {
        "echo": (),
        "hold": ("--ping-interval-s", "1"),
    }


def test_sweep_points_are_unique_when_a_count_is_listed_twice() -> None:
    """'--users 10,100,10' measures 10 users once: each point id (its folder) appears once."""
    points = Sweep(("raw",), ("echo",), (10, 100, 10)).points()
    ids = [p.point_id for p in points]
    assert len(ids) == len(set(ids))
    assert [p.workload.users for p in points] == [10, 100]


# Sweep files


def test_load_sweep_file_reports_a_missing_file(tmp_path: Path) -> None:
    """A --config path that does not exist is a PlanError naming it."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(PlanError, match="does not exist") as err:
        plan.load_sweep_file(missing)
    assert str(missing) in str(err.value)


def test_load_sweep_file_reports_bad_toml_with_its_position(tmp_path: Path) -> None:
    """A file that is not TOML is a PlanError naming the file and where parsing stopped."""
    path = tmp_path / "bad.toml"
    path.write_text('targets = ["raw"\nusers = [1]\n')
    with pytest.raises(PlanError, match="not valid TOML") as err:
        plan.load_sweep_file(path)
    assert str(path) in str(err.value) and "line" in str(err.value)


def test_load_sweep_file_names_unknown_keys_and_the_known_ones(tmp_path: Path) -> None:
    """A misspelt key ('user') is refused, naming it and listing the keys that exist."""
    path = tmp_path / "typo.toml"
    path.write_text('targets = ["raw"]\nscenarios = ["echo"]\nuser = [10]\n')
    with pytest.raises(PlanError) as err:
        plan.load_sweep_file(path)
    message = str(err.value)
    assert "'user'" in message and "'users'" in message and "'slo_p99_ms'" in message


def test_the_shipped_default_matrix_asks_the_four_questions() -> None:
    """`make bench`'s harness/sweeps/default.toml: per target a rate-stepped knee at 1,000
    connections under an SLO, one rate at 1,000 and 10,000 connections, an open-model connect
    storm under three kernel profiles, a broadcast to 1,000 subscribers and 10,000 idle
    connections; each point once, the target and Locust on their own CPUs."""
    args, extras = runner.build_parser().parse_known_args(
        ["sweep", "--config", str(runner.DEFAULT_SWEEP)]
    )
    sweeps = runner.sweeps_from(args, extras)
    parts = {s.name: s for s in sweeps}
    assert list(parts) == ["knee", "latency", "connect storm", "broadcast", "memory"]
    assert parts["knee"].slo.p99_ms == 10 and parts["knee"].users == (1000,)
    assert len(parts["knee"].rates) >= 3
    assert parts["latency"].users == (1000, 10000) and len(parts["latency"].rates) == 1
    assert parts["connect storm"].kernel_profiles == ("default", "tuned", "constrained")
    matrix = plan.matrix_points(sweeps)
    points = [p for _, p in matrix]
    assert len({p.point_id for p in points}) == len(points)
    assert {p.topology.target for p in points} == {"aiohttp", "websockets", "raw"}
    assert all(p.topology.pin_cpus for p in points)
    broadcast = [p for p in points if p.workload.scenario == "broadcast"]
    assert {p.workload.users for p in broadcast} == {1001}
    assert {p.workload.users for p in points if p.workload.scenario == "hold"} == {10000}
    # Within six minutes on 2 cores: the points' run time, without their start and stop (about
    # 35 s more in all: 237 s of it took 4 min 31 s on 2026-12-04).
    assert sum(p.workload.duration_s for p in points) <= 255


def _sweep_file(tmp_path: Path, port: int, line: str) -> Path:
    """A one-point sweep against a closed port: if it is wrongly accepted it fails in a moment."""
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'targets = ["ws://127.0.0.1:{port}"]\nscenarios = ["echo"]\nduration = "2s"\n{line}\n'
    )
    return path


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('users = [5]\nprocesses = "two"', "processes"),
        ('users = [5]\nslo_p99_ms = "fast"', "slo_p99_ms"),
        ("users = [5]\noptions = { echo = 64 }", "options"),
        ('users = [5]\noptions = { nosuch = ["--x"] }', "nosuch"),
        ('users = [5, "x"]', "users"),
    ],
)
def test_wrongly_typed_sweep_file_values_are_one_line_errors(
    wsbench, free_port, tmp_path: Path, line: str, key: str
) -> None:
    """A wrongly typed sweep-file value is exit 2 and one stderr line naming the key."""
    out = tmp_path / "out"
    done = wsbench("sweep", "--config", _sweep_file(tmp_path, free_port(), line), "--out", out)
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert key in done.stderr
    assert not (out / "meta.json").exists()


def test_a_bare_number_of_users_in_a_sweep_file_is_not_a_traceback(
    wsbench, free_port, tmp_path: Path
) -> None:
    """`users = 100` (not a list) is either taken as [100] or refused in one line; never a crash."""
    out = tmp_path / "out"
    done = wsbench("sweep", "--config", _sweep_file(tmp_path, free_port(), "users = 5"),
                   "--out", out)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    # 1: taken as [5], and that point failed at once (nothing listens at the URL).
    assert done.returncode in (1, 2), done.stdout + done.stderr
    if done.returncode == 1:
        plan_users = [p["users"] for p in json.loads((out / "meta.json").read_text())["plan"]]
        assert plan_users == [5]
    else:
        assert len(done.stderr.strip().splitlines()) == 1 and "users" in done.stderr


def test_a_rate_series_stops_at_its_slo_breach_or_where_the_generator_was_the_limit() -> None:
    """With rates, a point over the SLO, or one whose generator was the limit, stops the rest
    of its series (higher rates would measure the generator again); without rates a
    generator-bound point stops nothing."""
    from common.schema import PointStatus
    from harness.execute import Outcome, _note_breach

    stepped = Sweep(("raw",), ("echo_rate",), (100,), rates=(100.0, 200.0),
                    slo=plan.SLO(p99_ms=10.0))  # fmt: skip
    point = stepped.points()[0]
    stopped: dict = {}
    bound = Outcome(point, PointStatus.OK, summary={"generator_bound": True})
    _note_breach(stepped, bound, stopped, ("k",))
    assert stopped == {("k",): "SLO stop: the load generator was the limit (its self-check) "
                               "at 100/s"}  # fmt: skip
    slow = Outcome(point, PointStatus.OK, summary={
        "main": {"names": ["echo corrected"]},
        "latency_us": {"echo corrected": {"p99_us": 25_000}}})  # fmt: skip
    stopped = {}
    _note_breach(stepped, slow, stopped, ("k",))
    assert "p99 25.00 ms > 10 ms at 100/s" in stopped[("k",)]
    plain = Sweep(("raw",), ("echo",), (10,), slo=plan.SLO(p99_ms=10.0))
    stopped = {}
    _note_breach(plain, Outcome(plain.points()[0], PointStatus.OK,
                                summary={"generator_bound": True}), stopped, ("k",))  # fmt: skip
    assert stopped == {}


def test_scenarios_on_the_command_line_pick_the_parts_of_a_matrix() -> None:
    """With parts, --scenarios keeps the parts that run them (a part's rates are its own)."""
    settings = {"targets": ["raw"], "users": [10], "part": [
        {"name": "knee", "scenarios": ["echo_rate"], "rates": [100, 200]},
        {"name": "memory", "scenarios": ["hold"]},
    ]}  # fmt: skip
    sweeps = plan.sweeps_from_settings(settings, {"scenarios": ["hold"]})
    assert [(s.name, s.scenarios) for s in sweeps] == [("memory", ("hold",))]
    with pytest.raises(PlanError, match=r"no part of the matrix runs the scenarios \['push'\]"):
        plan.sweeps_from_settings(settings, {"scenarios": ["push"]})
    single = plan.sweeps_from_settings({"targets": ["raw"], "users": [10],
                                        "scenarios": ["echo"]}, {"scenarios": ["hold"]})
    assert single[0].scenarios == ("hold",)  # one sweep: the command line's, as before
