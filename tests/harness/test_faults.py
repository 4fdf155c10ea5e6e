"""Bad input and faults (issue 4, item 7), each as the user meets it at the command line.

Bad input: exit 2, one line on stderr, no traceback, no results folder. Faults during a run:
recorded in point.json, the sweep goes on, nothing measured is lost, no process left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.plan import SCENARIOS, TARGETS
from kernel.netns import missing_privileges

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def assert_one_line_error(done, out: Path, *words: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists(), "bad input must not leave a results folder"


# Bad input


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unknown_target_is_one_line_listing_the_choices(wsbench, tmp_path: Path, command: str):
    """An unknown target is exit 2 and one stderr line naming every target and ws:// URLs."""
    out = tmp_path / "out"
    flag, scen = ("--target", "--scenario") if command == "run" else ("--targets", "--scenarios")
    done = wsbench(command, flag, "nginx", scen, "echo", "--users", "1", "--out", out)
    assert_one_line_error(done, out, "nginx", *sorted(TARGETS), "ws://")


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unknown_scenario_is_one_line_listing_the_choices(wsbench, tmp_path: Path, command: str):
    """`--scenario pingpong` is exit 2 and one stderr line naming every scenario."""
    out = tmp_path / "out"
    flag, scen = ("--target", "--scenario") if command == "run" else ("--targets", "--scenarios")
    done = wsbench(command, flag, "raw", scen, "pingpong", "--users", "1", "--out", out)
    assert_one_line_error(done, out, "pingpong", *SCENARIOS)


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("run", "--users", "1", "--duration", "5x"), "5x"),
        (("run", "--users", "1", "--duration", "500ms"), "500ms"),
        (("run", "--users", "0"), "users"),
        (("run", "--users", "1", "--spawn-rate", "0"), "spawn rate"),
        (("run", "--users", "1", "--processes", "0"), "process"),
        (("run", "--users", "1", "--kernel-profile", "tunde"), "tunde"),
        (("sweep", "--users", "10,lots"), "lots"),
        (("sweep",), "users"),
        (("sweep", "--users", "10", "--config", "/nonexistent/sweep.toml"), "/nonexistent"),
    ],
)
def test_bad_values_are_one_line_errors(wsbench, tmp_path: Path, args: tuple[str, ...], word):
    """A bad duration, count, rate, profile or config path is exit 2 and one line naming it."""
    out = tmp_path / "out"
    where = ("--target", "raw", "--scenario", "echo") if args[0] == "run" else (
        "--targets", "raw", "--scenarios", "echo")  # fmt: skip
    done = wsbench(args[0], *where, *args[1:], "--out", out)
    assert_one_line_error(done, out, word)


# Options that cannot work: refused before any target or Locust starts (issue 10)

BAD_OPTIONS = [
    ("echo", ("--think-ms", "-5"), "--think-ms: must be at least 0, got -5"),
    ("echo_rate", ("--rate", "0"), "--rate: must be more than 0"),
    ("echo_rate", ("--rate", "-1"), "--rate: must be more than 0"),
    ("broadcast", ("--publish-rate", "0"), "--publish-rate: must be more than 0"),
    ("push", ("--push-rate", "-1"), "--push-rate: must be more than 0"),
    ("echo", ("--payload-bytes", "0"), "--payload-bytes: must be more than 0"),
    ("echo", ("--payload-bytes", "-1"), "--payload-bytes: must be more than 0"),
    ("echo", ("--ws-timeout-s", "0"), "--ws-timeout-s: must be more than 0"),
    ("broadcast", ("--rooms", "0"), "--rooms: must be more than 0"),
    ("connect", ("--hold-ms", "-1"), "--hold-ms: must be at least 0"),
    ("hold", ("--ping-interval-s", "-1"), "--ping-interval-s: must be at least 0"),
    ("echo_rate", ("--max-in-flight", "-1"), "--max-in-flight: must be at least 0"),
    ("echo", ("--latency-window-s", "0"), "--latency-window-s: must be more than 0"),
    ("push", ("--push-size", "8"), "--push-size: must be at least 16"),
    ("echo", ("--ws-ca-file", "/nonexistent.pem"), "cannot read /nonexistent.pem"),
    ("echo", ("--payload-bytes", "2000000"), "limit of 1048576 bytes"),
    ("echo_rate", ("--payload-bytes", "1048577"), "limit of 1048576 bytes"),
    ("push", ("--push-size", "2000000"), "limit of 1048576 bytes"),
    ("echo", ("--payload-byts", "64"), "unrecognized arguments: --payload-byts"),
]


@pytest.mark.parametrize(("scenario", "options", "said"), BAD_OPTIONS,
                         ids=[" ".join((s, *o)) for s, o, _ in BAD_OPTIONS])  # fmt: skip
def test_an_option_that_cannot_work_is_refused_before_load(
    wsbench, tmp_path: Path, scenario: str, options: tuple[str, ...], said: str
) -> None:
    """A negative pause, a zero rate or size, a missing CA file, a payload over the reference
    target's limit, a misspelt option: exit 2, one line naming it, no folder."""
    out = tmp_path / "out"
    done = wsbench("run", "--target", "raw", "--scenario", scenario, "--users", "1",
                   "--duration", "2s", *options, "--out", out)  # fmt: skip
    assert_one_line_error(done, out, scenario, said)


def test_a_broadcast_payload_under_its_header_is_padded_not_refused(wsbench, tmp_path) -> None:
    """broadcast --payload-bytes 5 (under the 20-byte header) runs, as the scenario pads it."""
    out = tmp_path / "out"
    done = wsbench("run", "--target", "raw", "--scenario", "broadcast", "--users", "2",
                   "--duration", "2s", "--payload-bytes", "5", "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_payload_over_the_reference_limit_is_the_external_servers_business(
    wsbench, tmp_path: Path, free_port
) -> None:
    """--payload-bytes 2000000 at a ws:// URL is not refused up front (the server decides)."""
    done = wsbench("run", "--target", f"ws://127.0.0.1:{free_port()}/", "--scenario", "echo",
                   "--users", "1", "--duration", "2s", "--payload-bytes", "2000000",
                   "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 1 and "cannot reach" in done.stderr, done.stdout + done.stderr


def test_a_sweep_refuses_bad_options_of_its_toml_file(wsbench, tmp_path: Path) -> None:
    """A sweep file's [options] get the same check as the command line's."""
    config = tmp_path / "sweep.toml"
    config.write_text('targets = ["raw"]\nscenarios = ["echo"]\nusers = [1]\n'
                      '[options]\necho = ["--think-ms", "-5"]\n')  # fmt: skip
    out = tmp_path / "out"
    done = wsbench("sweep", "--config", config, "--out", out)
    assert_one_line_error(done, out, "echo", "--think-ms")


def test_a_sweep_checks_each_scenarios_options_as_that_scenario(wsbench, tmp_path: Path) -> None:
    """Per-scenario [options]: echo's are fine, push's bad one is refused naming push."""
    config = tmp_path / "sweep.toml"
    config.write_text('targets = ["raw"]\nscenarios = ["echo", "push"]\nusers = [1]\n'
                      '[options]\necho = ["--think-ms", "5"]\n'
                      'push = ["--push-rate", "0"]\n')  # fmt: skip
    out = tmp_path / "out"
    done = wsbench("sweep", "--config", config, "--out", out)
    assert_one_line_error(done, out, "push: argument --push-rate: must be more than 0")


def test_plain_locust_refuses_a_negative_think_time() -> None:
    """`locust -f scenarios/echo.py --think-ms -5` is Locust's usage error, exit 2."""
    done = subprocess.run([sys.executable, "-m", "locust", "-f", "scenarios/echo.py",
                           "--headless", "--think-ms", "-5"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "argument --think-ms: must be at least 0, got -5" in done.stderr


OTHER = "ws://192.0.2.1:8000/"  # TEST-NET-1: never reached, the run is refused first
HOST_EXTRAS = [("-H", OTHER), (f"-H{OTHER}",), ("--host", OTHER), (f"--host={OTHER}",),
               ("--hos", OTHER)]  # fmt: skip


@pytest.mark.parametrize("extras", HOST_EXTRAS, ids=[" ".join(e) for e in HOST_EXTRAS])
def test_extras_naming_a_host_are_refused(wsbench, tmp_path: Path, free_port, extras) -> None:
    """-H/--host in any spelling next to a loopback --target: exit 2, "the target is --target"."""
    out = tmp_path / "out"
    done = wsbench("run", "--target", f"ws://127.0.0.1:{free_port()}/", "--scenario", "echo",
                   "--users", "1", "--duration", "2s", *extras, "--out", out)  # fmt: skip
    assert_one_line_error(done, out, "the target is --target", "192.0.2.1")


@pytest.mark.parametrize(
    ("command", "option"), [("run", "--master-host"), ("sweep", "--master-bind-host")]
)
def test_locusts_own_destinations_in_extras_are_refused(
    wsbench, tmp_path: Path, command: str, option: str
) -> None:
    """--master-host / --master-bind-host (where Locust's own traffic goes) are refused."""
    out = tmp_path / "out"
    where = ("--target", "raw", "--scenario", "hold") if command == "run" else (
        "--targets", "raw", "--scenarios", "hold")  # fmt: skip
    done = wsbench(command, *where, "--users", "1", option, "192.0.2.1", "--out", out)
    assert_one_line_error(done, out, option, "192.0.2.1")


def test_a_host_in_sweep_toml_options_is_refused(wsbench, tmp_path: Path) -> None:
    """A host hidden in a sweep file's [options] is refused like one on the command line."""
    config = tmp_path / "sweep.toml"
    config.write_text('targets = ["raw"]\nscenarios = ["echo"]\nusers = [1]\n'
                      f'[options]\necho = ["--host", "{OTHER}"]\n')  # fmt: skip
    out = tmp_path / "out"
    done = wsbench("sweep", "--config", config, "--out", out)
    assert_one_line_error(done, out, "the target is --target", "192.0.2.1")


def test_ui_refuses_a_host_in_its_extras(wsbench, tmp_path: Path) -> None:
    """`wsbench ui ... -H ws://OTHER` is exit 2 and one line, before a target starts."""
    done = wsbench("ui", "--target", "raw", "--scenario", "echo", "-H", OTHER, timeout_s=30)
    assert_one_line_error(done, tmp_path / "none", "the target is --target")


# --out that cannot be written


def test_out_that_is_an_existing_file_is_one_line(wsbench, tmp_path: Path) -> None:
    """--out naming a regular file: exit 2, one line, the file untouched."""
    out = tmp_path / "results.txt"
    out.write_text("mine")
    done = wsbench("run", "--target", "raw", "--scenario", "echo", "--users", "1", "--out", out)
    assert "Traceback" not in done.stderr and done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"wsbench: --out {out} is an existing file, not a folder; " \
                                  "choose another"  # fmt: skip
    assert out.read_text() == "mine"


def test_out_on_a_read_only_file_system_is_one_line(wsbench, tmp_path: Path) -> None:
    """--out inside a read-only mount (a 0555 folder when not root): exit 2, one line."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root ignores mode bits: a read-only tmpfs is what refuses root
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    else:
        ro.chmod(0o555)
    try:
        done = wsbench("sweep", "--targets", "raw", "--scenarios", "echo", "--users", "1",
                       "--out", ro / "out")  # fmt: skip
        why = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
        assert_one_line_error(done, ro / "out", f"cannot write results to {ro / 'out'}", why)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)
        else:
            ro.chmod(0o755)


# Faults at start


def test_external_url_where_nothing_listens_fails_fast_and_clearly(
    wsbench, free_port, tmp_path: Path
) -> None:
    """A ws:// URL with no server fails within seconds with 'cannot reach URL', no traceback."""
    url = f"ws://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = wsbench("run", "--target", url, "--scenario", "echo", "--users", "1",
                   "--duration", "30s", "--out", tmp_path / "out")  # fmt: skip
    assert time.monotonic() - started < 5
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "cannot reach" in said and url in said
    point = next((tmp_path / "out" / "points").glob("*/point.json"))
    assert read_json(point)["status"] == "failed" and url in read_json(point)["reason"]


def test_port_already_in_use_is_a_clear_error_naming_the_port(wsbench, tmp_path: Path) -> None:
    """A --port another socket holds fails within seconds, naming the port and 'in use'."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        started = time.monotonic()
        done = wsbench("run", "--target", "raw", "--scenario", "echo", "--users", "1",
                       "--duration", "30s", "--port", str(port),
                       "--out", tmp_path / "out")  # fmt: skip
        elapsed = time.monotonic() - started
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert elapsed < 10
    assert "Traceback" not in said
    assert str(port) in said and "in use" in said
    point = read_json(tmp_path / "out" / "points" / "raw-echo-u1-host" / "point.json")
    assert point["status"] == "failed" and str(port) in point["reason"]


def test_a_scenario_option_locust_does_not_know_is_refused_before_any_load(
    wsbench, tmp_path: Path
) -> None:
    """A misspelt scenario option is exit 2, one line naming it, before anything starts."""
    out = tmp_path / "out"
    done = wsbench("run", "--target", "raw", "--scenario", "echo", "--users", "1",
                   "--duration", "2s", "--payload-byts", "64", "--out", out)  # fmt: skip
    assert_one_line_error(done, out, "--payload-byts", "echo")


# The open-file limit


def test_users_beyond_the_open_file_limit_are_split_across_processes(
    wsbench, tmp_path: Path
) -> None:
    """600 users under an open-file limit of 800 run in 2+2 processes, say why, hold all 600."""
    out = tmp_path / "out"
    done = wsbench("run", "--target", "raw", "--scenario", "hold", "--users", "600",
                   "--duration", "3s", "--out", out, nofile=800)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "600 users need 2 Locust processes" in done.stdout
    point = read_json(out / "points" / "raw-hold-u600-host" / "point.json")
    assert point["status"] == "ok"
    assert point["point"]["processes"] == 2 and point["point"]["target_processes"] == 2
    assert any("open-file limit of 800" in n for n in point["notes"])
    assert point["summary"]["target"]["sockets_max"] >= 600
    assert point["summary"]["failures"] == 0


# Faults during a sweep


def _sweep(out: Path, users: str, duration: str) -> tuple[str, ...]:
    return ("sweep", "--targets", "raw", "--scenarios", "echo", "--users", users,
            "--duration", duration, "--out", str(out))  # fmt: skip


def test_target_dying_mid_run_fails_that_point_and_the_sweep_goes_on(
    wsbench_bg, tmp_path: Path
) -> None:
    """A target killed mid-point fails that point with the reason; others stay or run ok."""
    out = tmp_path / "out"
    bg = wsbench_bg(*_sweep(out, "1,2,3", "3s"))
    bg.wait_for("Locust of the 2nd point", lambda: bg.child_with("--users", "2"))
    first = out / "points" / "raw-echo-u1-host" / "point.json"
    first_bytes = first.read_bytes()
    time.sleep(1.0)
    target = bg.child_with("-m", "targets")
    assert target is not None, [c.cmdline() for c in bg.children()]
    target.send_signal(signal.SIGKILL)
    assert bg.wait(60) == 1, bg.stdout + bg.stderr  # 1: a point failed (the sweep went on)
    second = read_json(out / "points" / "raw-echo-u2-host" / "point.json")
    assert second["status"] == "failed"
    assert "target exited" in second["reason"] and "-9" in second["reason"]
    assert first.read_bytes() == first_bytes
    assert read_json(out / "points" / "raw-echo-u3-host" / "point.json")["status"] == "ok"
    assert "raw-echo-u2-host" in bg.stdout and "failed" in bg.stdout


def test_sigint_stops_everything_keeps_done_points_and_the_sweep_resumes(
    wsbench_bg, wsbench, tmp_path: Path
) -> None:
    """Ctrl-C: exit 130, no child left, done points kept; the same command resumes after them."""
    out = tmp_path / "out"
    args = _sweep(out, "1,2", "2s")
    bg = wsbench_bg(*args)
    bg.wait_for("Locust of the 2nd point", lambda: bg.child_with("--users", "2"))
    time.sleep(0.5)
    children = bg.children()
    assert len(children) >= 2  # the target and Locust at least
    bg.proc.send_signal(signal.SIGINT)
    assert bg.wait(30) == 130, bg.stdout + bg.stderr
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    assert "Traceback" not in bg.stderr
    assert "interrupted" in bg.stderr
    first = out / "points" / "raw-echo-u1-host" / "point.json"
    first_bytes = first.read_bytes()
    assert read_json(first)["status"] == "ok"
    second = out / "points" / "raw-echo-u2-host" / "point.json"
    assert not second.exists() or read_json(second)["status"] == "interrupted"
    assert read_json(out / "meta.json")["status"] == "interrupted"

    done = wsbench(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout
    assert "raw-echo-u1-host: already ok, skipped" in done.stdout
    assert first.read_bytes() == first_bytes
    assert read_json(second)["status"] == "ok"
    assert read_json(out / "meta.json")["status"] == "complete"


def test_a_killed_runner_takes_its_children_along_and_the_sweep_resumes(
    wsbench_bg, wsbench, tmp_path: Path
) -> None:
    """A SIGKILLed runner's children die with it; the same command resumes the sweep."""
    out = tmp_path / "out"
    args = _sweep(out, "1,2", "2s")
    bg = wsbench_bg(*args)
    bg.wait_for("Locust of the 2nd point", lambda: bg.child_with("--users", "2"))
    time.sleep(0.5)
    children = bg.children()
    first = out / "points" / "raw-echo-u1-host" / "point.json"
    first_bytes = first.read_bytes()
    bg.proc.kill()
    bg.wait(10)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert read_json(out / "meta.json")["runner_pid"] == bg.proc.pid

    done = wsbench(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"its last runner (pid {bg.proc.pid}) was killed" in done.stdout
    assert "killed_noticed" in read_json(out / "meta.json")
    assert "raw-echo-u1-host: already ok, skipped" in done.stdout
    assert first.read_bytes() == first_bytes
    second = out / "points" / "raw-echo-u2-host" / "point.json"
    assert read_json(second)["status"] == "ok"
    assert read_json(out / "meta.json")["status"] == "complete"


def test_a_truncated_point_json_is_run_again_on_resume(wsbench, tmp_path: Path) -> None:
    """Half a point.json in a sweep folder: the resume runs that point again, no traceback."""
    out = tmp_path / "out"
    args = _sweep(out, "1", "2s")
    assert wsbench(*args).returncode == 0
    path = out / "points" / "raw-echo-u1-host" / "point.json"
    path.write_text(path.read_text()[:100])
    done = wsbench(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "already" not in done.stdout
    assert read_json(path)["status"] == "ok"


def _running(proc: psutil.Process) -> bool:
    """Still running: a zombie has exited (whoever adopted it has yet to reap it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(bool(missing_privileges()), reason="namespaces need root")
def test_nothing_outlives_a_sigkilled_runner_in_namespaces_by_a_second(
    wsbench_bg, wsbench, tmp_path: Path
) -> None:
    """kill -9 of a runner mid-point with --kernel-profile default: no child of it 1 s later,
    and the report of its folder says the run was killed."""
    out = tmp_path / "out"
    # Users asleep inside their task: on SIGTERM, Locust's graceful stop waits for them up to
    # --stop-timeout (5 s); only SIGKILL (procs.spawn's PDEATHSIG) ends it at once.
    bg = wsbench_bg("run", "--target", "raw", "--scenario", "connect", "--hold-ms", "20000",
                    "--users", "2", "--duration", "20s", "--kernel-profile", "default",
                    "--out", out)  # fmt: skip
    bg.wait_for("its Locust", lambda: bg.child_with("-m", "locust"))
    time.sleep(1.5)
    children = bg.children()
    assert len(children) >= 4, [c.cmdline() for c in children]  # 2 holders, target, Locust
    bg.proc.kill()
    bg.wait(10)
    time.sleep(1.0)
    alive = [p for p in children if _running(p)]
    assert not alive, [p.cmdline() for p in alive]
    assert read_json(out / "meta.json")["status"] == "running"  # as the killed runner left it
    done = wsbench("report", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status killed" in (out / "report" / "report.html").read_text()


def test_locusts_forked_workers_die_with_a_sigkilled_runner(wsbench_bg, tmp_path: Path) -> None:
    """kill -9 of a runner with --processes 2: Locust's forked workers are gone 1 s later too."""
    # They do not inherit PR_SET_PDEATHSIG; without their own they waited out the heartbeat.
    bg = wsbench_bg("run", "--target", "raw", "--scenario", "connect", "--hold-ms", "20000",
                    "--users", "2", "--processes", "2", "--duration", "20s",
                    "--out", tmp_path / "out")  # fmt: skip
    bg.wait_for("Locust's workers",
                lambda: len([c for c in bg.children() if _running(c)]) >= 4)  # fmt: skip
    time.sleep(1.0)
    children = bg.children()
    bg.proc.kill()
    bg.wait(10)
    time.sleep(1.0)
    alive = [p for p in children if _running(p)]
    assert not alive, [p.cmdline() for p in alive]


def _listening_beyond_loopback(procs: list[psutil.Process]) -> list[tuple[str, int]]:
    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        found += [
            (c.laddr.ip, c.laddr.port)
            for c in conns
            if c.status == psutil.CONN_LISTEN and not c.laddr.ip.startswith(("127.", "::1"))
        ]
    return found


def test_two_runs_with_several_locust_processes_at_once_both_work(
    wsbench_bg, tmp_path: Path
) -> None:
    """Two multi-process runs at once both succeed, and no Locust port listens beyond loopback."""
    # Locust's master binds *:5557 unless told otherwise: the second run's master cannot bind,
    # and the port is open to the network meanwhile.
    args = ("run", "--target", "raw", "--scenario", "echo", "--users", "4",
            "--processes", "2", "--duration", "3s")  # fmt: skip
    runs = [wsbench_bg(*args, "--out", tmp_path / name) for name in ("a", "b")]
    for bg in runs:
        bg.wait_for("its Locust", lambda bg=bg: bg.child_with("-m", "locust"))
    time.sleep(1.5)
    locust_procs = [p for bg in runs for p in bg.children() if "locust" in " ".join(p.cmdline())]
    exposed = _listening_beyond_loopback(locust_procs)
    for bg, name in zip(runs, ("a", "b"), strict=True):
        assert bg.wait(60) == 0, bg.stdout + bg.stderr
        point = read_json(tmp_path / name / "points" / "raw-echo-u4-host" / "point.json")
        assert point["status"] == "ok" and point["point"]["processes"] == 2
    assert not exposed, exposed
