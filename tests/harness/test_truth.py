"""Runs tell the truth (issue 10): a point's status comes from what its main measurement measured.

Each test points `wsbench` at a real server it starts itself: a `websockets` server serving one
path only, `python -m http.server`, a TCP server that never answers, one that closes at once,
a reference target run by hand. Runs are 2-3 s with a few users.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from harness.execute import read_summary
from harness.measured import (
    DEFAULT_MEASUREMENT,
    Counts,
    Failure,
    arrivals_verdict,
    read_measurement,
    verdict,
)
from harness.plan import PlanError, load_sweep_file, sweep_from_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
WS_PATH = "/ws"
AGGREGATED = re.compile(r"^\s*Aggregated\s+(\d+)\s+(\d+)\(", re.M)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def only_point(out: Path) -> dict[str, Any]:
    (pdir,) = (out / "points").iterdir()
    return read_json(pdir / "point.json")


def run_echo(wsbench, target: str, out: Path, *extra: str, users: str = "2") -> Any:
    return wsbench("run", "--target", target, "--scenario", "echo", "--users", users,
                   "--duration", "2s", "--out", out, *extra)  # fmt: skip


def failed_line(done) -> str:
    """The one line that says why the point failed (stderr, `wsbench: point failed: ...`)."""
    lines = [line for line in done.stderr.splitlines() if "point failed" in line]
    assert len(lines) == 1, done.stdout + done.stderr
    return lines[0]


class PathServer:
    """A `websockets` echo server for WS_PATH only (HTTP 404 elsewhere), counting what it saw.

    With close_after=N each connection is closed with 1011 after N echoes, so some of the
    client's round trips fail and most succeed.
    """

    def __init__(self, close_after: int = 0) -> None:
        self.close_after = close_after
        self.echoed = 0
        self.rejected_paths: list[str] = []
        self.server: Server = serve(self._handle, "127.0.0.1", 0, compression=None,
                                    process_request=self._check_path)  # fmt: skip
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _check_path(self, connection: ServerConnection, request: Any) -> Any:
        if request.path != WS_PATH:
            self.rejected_paths.append(request.path)
            return connection.respond(404, "not here\n")
        return None

    def _handle(self, ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            for n, message in enumerate(ws, 1):
                ws.send(message)
                self.echoed += 1
                if self.close_after and n >= self.close_after:
                    ws.close(1011, "test server closes")
                    return

    def __enter__(self) -> PathServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.thread.join(10)


@contextlib.contextmanager
def tcp_server(on_accept: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 handing each accepted socket to on_accept; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            on_accept(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@contextlib.contextmanager
def started(cmd: list[str], ready: Callable[[subprocess.Popen[str]], str]) -> Iterator[str]:
    """A server process of the test's own; `ready` reads what to yield once it serves."""
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        yield ready(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_listening(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on port {port} after {timeout_s:g} s")


@pytest.fixture(scope="module")
def path_server() -> Iterator[PathServer]:
    with PathServer() as server:
        yield server


# A server on its own path


def test_a_url_with_a_path_is_the_endpoint(wsbench, path_server: PathServer, tmp_path: Path):
    """--target ws://HOST:P/ws measures /ws itself: ok, exit 0, and the server echoed the load."""
    echoed_before = path_server.echoed
    rejected_before = len(path_server.rejected_paths)
    done = run_echo(wsbench, f"ws://127.0.0.1:{path_server.port}{WS_PATH}", tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    point = only_point(tmp_path / "out")
    assert point["status"] == "ok", point["reason"]
    assert path_server.rejected_paths[rejected_before:] == []
    successes = point["summary"]["main"]["successes"]
    assert successes > 0
    # Every round trip the harness counts, the server echoed (it may have echoed a last few
    # whose replies arrived after the users were stopped).
    assert path_server.echoed - echoed_before >= successes


def test_the_wrong_path_fails_naming_404_and_the_url(
    wsbench, path_server: PathServer, tmp_path: Path
):
    """--target .../wrong: failed, exit 1, one line naming HTTP 404 and the URL, as the report."""
    url = f"ws://127.0.0.1:{path_server.port}/wrong"
    done = run_echo(wsbench, url, tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr
    line = failed_line(done)
    assert "HTTP 404" in line and url in line and "upgrades rejected" in line, line
    point = only_point(tmp_path / "out")
    assert point["status"] == "failed" and point["reason"] in line
    assert point["summary"]["main"]["successes"] == 0
    report = wsbench("report", tmp_path / "out")
    assert report.returncode == 0, report.stderr
    assert point["reason"] in (tmp_path / "out" / "report" / "report.html").read_text()


def test_a_plain_http_server_fails_naming_its_status(wsbench, free_port, tmp_path: Path):
    """`python -m http.server` answers upgrades with an HTTP error: failed, exit 1, status named."""
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
           "--directory", str(tmp_path)]  # fmt: skip

    def ready(_: subprocess.Popen[str]) -> str:
        wait_listening(port)
        return f"ws://127.0.0.1:{port}"

    with started(cmd, ready) as url:
        done = run_echo(wsbench, url, tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr
    line = failed_line(done)
    assert re.search(r"upgrades rejected, HTTP [45]\d\d at ws://127\.0\.0\.1:\d+/echo", line), line


def test_a_server_that_never_answers_fails_as_unanswered(wsbench, tmp_path: Path):
    """TCP accepted, upgrade never answered: failed, exit 1, the line says they were unanswered."""
    with tcp_server(lambda conn: None) as port:
        done = run_echo(wsbench, f"ws://127.0.0.1:{port}", tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr
    line = failed_line(done)
    assert "unanswered" in line and f"ws://127.0.0.1:{port}" in line, line
    assert only_point(tmp_path / "out")["summary"]["requests_per_s"] == 0


def test_messages_over_the_servers_limit_fail_naming_1009(wsbench, tmp_path: Path):
    """2 MB payloads to a reference target run by hand (1 MiB limit): failed, exit 1, 1009 named."""
    cmd = [sys.executable, "-m", "targets", "raw", "--port", "0"]

    def ready(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ready ws://"), line
        return line.split()[1]

    with started(cmd, ready) as url:
        done = run_echo(wsbench, url, tmp_path / "out", "--payload-bytes", "2000000")
    assert done.returncode == 1, done.stdout + done.stderr
    line = failed_line(done)
    assert "1009" in line and "echo round trips failed" in line, line


def test_a_target_killed_mid_run_counts_what_locust_counted(wsbench_bg, tmp_path: Path):
    """Target SIGKILLed mid-run: failed, and point.json's failures are Locust's final table's."""
    out = tmp_path / "out"
    bg = wsbench_bg("run", "--target", "raw", "--scenario", "echo", "--users", "3",
                    "--duration", "4s", "--out", out)  # fmt: skip
    bg.wait_for("Locust", lambda: bg.child_with("-m", "locust"))
    target = bg.wait_for("the target", lambda: bg.child_with("-m", "targets"))
    time.sleep(1.5)  # users connected and echoing
    target.send_signal(signal.SIGKILL)
    assert bg.wait(60) == 1, bg.stdout + bg.stderr
    pdir = out / "points" / "raw-echo-u3-host"
    point = read_json(pdir / "point.json")
    assert point["status"] == "failed" and "target exited" in point["reason"]
    final = read_json(pdir / "locust_final.json")
    assert point["summary"]["failures"] == sum(e["num_failures"] for e in final)
    assert point["summary"]["requests"] == sum(e["num_requests"] for e in final)
    printed = AGGREGATED.findall((pdir / "locust.log").read_text())
    assert printed, "Locust printed no final table"
    assert (point["summary"]["requests"], point["summary"]["failures"]) == tuple(
        map(int, printed[-1])
    )
    assert point["summary"]["failures"] > 0


# The error rate, per point and as the sweep's SLO


def sweep_args(port: int, out: Path, *extra: str) -> tuple[str | Path, ...]:
    return ("sweep", "--targets", f"ws://127.0.0.1:{port}{WS_PATH}", "--scenarios", "echo",
            "--users", "1,2", "--duration", "2s", "--out", out, *extra)  # fmt: skip


def test_a_failing_error_rate_stops_the_sweep_series(wsbench, tmp_path: Path):
    """1 echo in 6 fails: the first point fails by error rate; --slo-error-rate stops the rest."""
    out = tmp_path / "out"
    with PathServer(close_after=5) as server:
        done = wsbench(*sweep_args(server.port, out, "--slo-error-rate", "0.01"))
    assert done.returncode == 1, done.stdout + done.stderr
    points = {p.name.rsplit("-", 2)[1]: read_json(p / "point.json")
              for p in (out / "points").iterdir()}  # fmt: skip
    first, second = points["u1"], points["u2"]
    assert first["status"] == "failed", first
    assert re.match(r"\d+ of \d+ echo round trips failed \(\d+\.\d%, over --max-error-rate "
                    r"0\.01\); most often closed by server: 1011", first["reason"]), first["reason"]
    assert "1011" in first["reason"]
    assert first["summary"]["main"]["successes"] > 0
    assert 0.05 < first["summary"]["main_error_rate"] < 0.5
    assert first["point"]["max_error_rate"] == 0.01
    assert second["status"] == "skipped" and "SLO stop" in second["reason"]
    rate_pct = f"{100 * first['summary']['main_error_rate']:.1f}"
    assert re.search(rf"{first['point']['point_id']}\s+failed\s+\d+\s+\d+\s+{rate_pct}\s",
                     done.stdout), done.stdout  # the table's err%: the main measurement's
    page = (out / "report" / "report.html").read_text()  # a sweep ends with its report
    assert first["reason"].split(" at ws://")[0].split("; ")[0] in page
    assert f"{rate_pct} %" in page


def test_the_slo_error_rate_uses_the_main_measurements_rate(wsbench, tmp_path: Path):
    """Points allowed 90 % errors stay ok; the SLO on the echo error rate still stops the series."""
    out = tmp_path / "out"
    with PathServer(close_after=5) as server:
        done = wsbench(*sweep_args(server.port, out, "--slo-error-rate", "0.01",
                                   "--max-error-rate", "0.9"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    points = {p.name.rsplit("-", 2)[1]: read_json(p / "point.json")
              for p in (out / "points").iterdir()}  # fmt: skip
    assert points["u1"]["status"] == "ok"
    assert points["u2"]["status"] == "skipped"
    assert "SLO stop: error rate" in points["u2"]["reason"]


def test_max_error_rate_out_of_range_is_one_line(wsbench, tmp_path: Path):
    """--max-error-rate 5 is bad input: exit 2, one line, no traceback."""
    done = wsbench("run", "--target", "raw", "--scenario", "echo", "--users", "1",
                   "--max-error-rate", "5", "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "max error rate" in done.stderr


# compare


def test_compare_of_runs_sharing_no_point_fails_the_gate_quietly(wsbench, tmp_path: Path):
    """compare --fail-on-regression of runs sharing no point: exit 1, says so, no warnings."""
    runs = []
    for users in ("1", "2"):  # points match on connections too: these share none
        out = tmp_path / f"u{users}"
        done = wsbench("run", "--target", "raw", "--scenario", "echo", "--users", users,
                       "--duration", "1s", "--out", out)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        runs.append(out)
    done = wsbench("compare", *runs, "--fail-on-regression", "--out", tmp_path / "cmp")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0 points in common" in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"wsbench: {runs[0]} and {runs[1]} share no point: nothing compared"
    ], done.stderr
    again = wsbench("compare", runs[0], runs[0], "--fail-on-regression", "--out", tmp_path / "c2")
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert "1 point in common, 1 compared" in again.stdout


# CI-style: a run against a server that refuses everything is never green


def test_nothing_listening_exits_non_zero(wsbench, free_port, tmp_path: Path):
    """wsbench run at a port nobody listens on exits non-zero."""
    done = run_echo(wsbench, f"ws://127.0.0.1:{free_port()}", tmp_path / "out")
    assert done.returncode != 0, done.stdout + done.stderr


def test_a_server_closing_every_connection_exits_non_zero(wsbench, tmp_path: Path):
    """A server that accepts TCP and closes at once: failed, exit 1, no round trip measured."""
    with tcp_server(lambda conn: conn.close()) as port:
        done = run_echo(wsbench, f"ws://127.0.0.1:{port}", tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no echo round trips measured" in failed_line(done)


# Runs stored before the scenarios declared their measurement


OLD_RUN = REPO_ROOT / "tests" / "reports" / "fixtures" / "sweep-small" / "points"


@pytest.mark.parametrize(("point_id", "main", "label", "path"), [
    ("raw-echo-u2-host", ["echo"], "echo round trips", "/echo"),
    ("raw-connect-u2-host", ["ws upgrade"], "upgrades", "/echo"),
    ("raw-broadcast-u2-host", ["broadcast"], "deliveries", "/broadcast"),
])  # fmt: skip
def test_an_old_point_gets_its_scenarios_default_measurement(point_id, main, label, path):
    """A stored point without a "measurement" key is read with its scenario's defaults."""
    pdir = OLD_RUN / point_id
    scenario = point_id.split("-")[1]
    summary = read_summary(pdir, scenario, "ws://127.0.0.1:1", 2.0)
    assert summary["main"]["names"] == main and summary["main"]["label"] == label
    assert summary["main"]["declared"] is False
    assert summary["main"]["url"] == f"ws://127.0.0.1:1{path}"
    final = {e["name"]: e for e in read_json(pdir / "locust_final.json")}
    successes = sum(final[n]["num_requests"] - final[n]["num_failures"] for n in main)
    assert summary["main"]["successes"] == successes > 0
    assert summary["requests_per_s"] == pytest.approx(successes / 2.0)
    assert summary["generator_bound"] is False  # no self-check stored: the CPU flag decides


def test_a_sweep_file_sets_max_error_rate_for_every_point(tmp_path: Path):
    """max_error_rate in sweep TOML reaches every point; a value outside 0..1 is a PlanError."""
    config = tmp_path / "sweep.toml"
    config.write_text('targets = ["raw"]\nscenarios = ["echo"]\nusers = [1, 2]\n'
                      "max_error_rate = 0.2\n")  # fmt: skip
    sweep = sweep_from_settings(load_sweep_file(config))
    assert [p.workload.max_error_rate for p in sweep.points()] == [0.2, 0.2]
    assert sweep.points()[0].as_dict()["max_error_rate"] == 0.2  # stored in point.json
    with pytest.raises(PlanError, match="max_error_rate must be between 0 and 1"):
        sweep_from_settings({**load_sweep_file(config), "max_error_rate": 1.5})


URL = "ws://127.0.0.1:9/echo"


def _counts(per_name: dict[str, tuple[int, int]], *failures: tuple[str, str, int]) -> Counts:
    return Counts(per_name, [Failure(*f) for f in failures])


@pytest.mark.parametrize(("scenario", "counts", "unanswered", "reason"), [
    ("connect", _counts({"tcp connect": (40, 40)},
                        ("tcp connect", "refused: ECONNREFUSED (Connection refused)", 40)),
     {}, f"no upgrades measured: 40 of 40 TCP connects refused at {URL}"),
    ("echo", _counts({"tcp connect": (10, 0)}), {"ws upgrade": 10},
     f"no echo round trips measured: 10 upgrades still unanswered at the end ({URL})"),
    ("echo", _counts({"tcp connect": (10, 0)}), {},  # stored before unanswered was counted
     f"no echo round trips measured: 10 TCP connects succeeded, then nothing was answered or "
     f"failed ({URL})"),
    ("hold", _counts({"ws upgrade": (30, 0), "hold": (5, 5)},
                     ("hold", "closed by server: 1001 (going away)", 5)), {},
     f"5 of 30 connections held failed (16.7%, over --max-error-rate 0.01); most often "
     f"closed by server: 1001 (going away) (5) at {URL}"),
    # A connection that never opened is a connection not held: of all it tried to open.
    ("hold", _counts({"tcp connect": (1200, 177), "ws upgrade": (1023, 0)},
                     ("tcp connect", "timeout: tcp connect", 177)), {},
     f"177 of 1,200 connections held failed (14.8%, over --max-error-rate 0.01); most often "
     f"timeout: tcp connect (177) at {URL}"),
    ("connect", _counts({"tcp connect": (600, 3), "ws upgrade": (597, 0)},
                        ("tcp connect", "timeout: tcp connect", 3)), {}, None),  # 0.5%: ok
    ("connect", _counts({"tcp connect": (600, 30), "ws upgrade": (570, 0)},
                        ("tcp connect", "timeout: tcp connect", 30)), {},
     f"30 of 600 upgrades failed (5.0%, over --max-error-rate 0.01); most often "
     f"timeout: tcp connect (30) at {URL}"),
    ("echo", _counts({"tcp connect": (10, 2), "echo": (500, 0)},
                     ("tcp connect", "refused: ECONNREFUSED (Connection refused)", 2)), {},
     None),  # set-up failures do not dilute, or count in, the echo error rate
])  # fmt: skip
def test_the_reason_names_the_dominant_error_and_the_url(scenario, counts, unanswered, reason):
    """The one-line reason, per kind of failure; failures outside the main measurement aside."""
    measurement = read_measurement(
        {"measurement": {"scenario": scenario, "main": DEFAULT_MEASUREMENT[scenario][0],
                         "label": DEFAULT_MEASUREMENT[scenario][1], "url": URL,
                         "unanswered_at_end": unanswered}}, scenario, URL)  # fmt: skip
    assert verdict(measurement, counts, 0.01) == reason


@pytest.mark.parametrize(("due", "made", "opening", "reason"), [
    (2808, 1083, {"tcp connect": 60},
     f"only 1,083 of 2,808 connects due were started (39%): users waited on connects that did "
     f"not complete; 60 were still opening at the end, so the offered rate was not carried "
     f"({URL})"),
    (2833, 2833, {}, None),
    (1000, 960, {"ws upgrade": 3}, None),  # 96%: late connects catch up; the rest is the end
    (1000, 900, {}, f"only 900 of 1,000 connects due were started (90%): users waited on "
                    f"connects that did not complete, so the offered rate was not carried ({URL})"),
])  # fmt: skip
def test_an_open_model_storm_that_did_not_carry_its_rate_fails(due, made, opening, reason):
    """Arrivals never started are in no latency and no failure: too few of them fail it."""
    document = {"counters": {"connects due": due, "connects made": made},
                "measurement": {"scenario": "connect", "main": ["ws upgrade"],
                                "label": "upgrades", "url": URL, "unanswered_at_end": opening}}
    measurement = read_measurement(document, "connect", URL)
    assert arrivals_verdict(document, measurement) == reason
    assert arrivals_verdict({}, measurement) is None  # a closed-loop storm counts no arrivals


def test_a_hold_counts_connections_still_opening_at_the_end_as_not_held():
    """Within their connect timeout when the run ended, but not held: the point fails."""
    document = {"measurement": {"scenario": "hold", "main": ["ws upgrade", "hold"],
                                "label": "connections held", "url": URL,
                                "unanswered_at_end": {"tcp connect": 77}}}  # fmt: skip
    counts = _counts({"tcp connect": (1023, 0), "ws upgrade": (1023, 0)})
    assert verdict(read_measurement(document, "hold", URL), counts, 0.01) == (
        f"77 of 1,100 connections held failed (7.0%, over --max-error-rate 0.01); 77 still "
        f"opening at the end at {URL}")
    # A storm's users stop mid-connect as a matter of course: not counted against it.
    storm = {"measurement": {**document["measurement"], "scenario": "connect",
                             "main": ["ws upgrade"], "label": "upgrades"}}  # fmt: skip
    assert verdict(read_measurement(storm, "connect", URL), counts, 0.01) is None


def test_users_killed_at_the_stop_timeout_are_counted_as_unanswered(wsbench, tmp_path: Path):
    """Upgrades never answered, users still waiting past Locust's 5 s --stop-timeout and
    killed: what they waited for is counted (it was lost), and the hold fails naming it."""
    with tcp_server(lambda conn: None) as port:
        done = wsbench("run", "--target", f"ws://127.0.0.1:{port}", "--scenario", "hold",
                       "--users", "3", "--duration", "2s", "--out", str(tmp_path / "out"),
                       "--ws-timeout-s", "30")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert failed_line(done) == (
        f"wsbench: point failed: no connections held measured: 3 upgrades still unanswered at "
        f"the end (ws://127.0.0.1:{port}/echo)")
    main = only_point(tmp_path / "out")["summary"]["main"]
    assert main["unanswered_at_end"] == {"ws upgrade": 3}
    assert (main["requests"], main["failures"]) == (3, 3)
