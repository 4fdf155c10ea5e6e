"""The engine and what a run says about itself: the URL as given, the main measurement, requests
left unanswered, and the generator self-check flagging a generator that cannot keep up."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from scenarios.connection import endpoint_url
from scenarios.frames import FIN, OP_BINARY, OP_CONT, OP_PING, split_frames

# scenarios.webui's TAB_KEY: importing it would import Locust (and gevent's patching) here.
TAB_KEY = "wsbench-generator"


def test_endpoint_url_keeps_a_path_and_adds_the_scenario_path_to_a_bare_host():
    """ws://h:1/ws is used as given; ws://h:1 and ws://h:1/ get the scenario's path."""
    assert endpoint_url("ws://h:1/ws", "/echo") == "ws://h:1/ws"
    assert endpoint_url("ws://h:1/ws?token=a", "/echo") == "ws://h:1/ws?token=a"
    assert endpoint_url("ws://h:1", "/echo") == "ws://h:1/echo"
    assert endpoint_url("ws://h:1/", "/push?rate=5") == "ws://h:1/push?rate=5"
    assert endpoint_url("https://h:1", "/echo") == "wss://h:1/echo"


def test_split_frames_returns_whole_frames_and_keeps_the_rest():
    """Frames split across reads come out whole; the unparsed tail is left for the next read."""
    frames = bytes((FIN | OP_BINARY, 3)) + b"abc" + bytes((FIN | OP_PING, 0))
    frames += bytes((OP_BINARY, 126)) + (300).to_bytes(2, "big") + b"x" * 300
    frames += bytes((FIN | OP_CONT, 1)) + b"y"
    for cut in range(len(frames) + 1):
        out: list[tuple[int, bytes]] = []
        pos = split_frames(frames[:cut], 0, out)
        pos = split_frames(frames[:cut][pos:] + frames[cut:], 0, out)
        assert [payload for _, payload in out] == [b"abc", b"", b"x" * 300, b"y"], cut
    with pytest.raises(ValueError):
        split_frames(bytes((FIN | OP_BINARY, 0x80 | 1)) + b"kkkkz", 0, [])


def _only_ws(connection) -> None:
    if connection.request.path != "/ws":
        return
    with contextlib.suppress(ConnectionClosed):
        for message in connection:
            connection.send(message)


def test_a_host_with_a_path_is_the_endpoint(ws_server, run_locust):
    """--host ws://HOST:PORT/ws sends every connection to /ws, and the files name that URL."""
    from websockets.sync.server import serve

    def process_request(connection, request):
        if request.path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "no such path\n")
        return None

    server = serve(_only_ws, "127.0.0.1", 0, compression=None, process_request=process_request)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/ws"
        run = run_locust("echo", url, users=2, duration="2s")
    finally:
        server.shutdown()
        thread.join(10)
    assert run.returncode == 0, run.describe()
    assert run.latency["echo"]["count"] > 50
    measurement = run.histograms["measurement"]
    assert measurement["url"] == url
    assert measurement["main"] == ["echo"]
    assert measurement["scenario"] == "echo"


@contextlib.contextmanager
def _silent_tcp_server() -> Iterator[str]:
    """Accepts TCP connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for sock in held:
            sock.close()
        listener.close()


def test_upgrades_a_server_never_answers_are_counted_unanswered(run_locust):
    """A server that accepts TCP and never answers: 0 upgrades, each user's wait is counted."""
    with _silent_tcp_server() as url:
        run = run_locust("echo", url, users=3, duration="2s", json_stats=False)
    measurement = run.histograms["measurement"]
    assert measurement["unanswered_at_end"] == {"ws upgrade": 3}, run.describe()
    assert "ws upgrade" not in run.latency


def test_echoes_in_flight_at_the_end_are_counted_unanswered(ws_server, run_locust):
    """echo_rate against a server that reads and never answers: in-flight echoes are counted."""

    def swallow(connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            for _ in connection:
                pass

    with ws_server(swallow) as url:
        run = run_locust("echo_rate", url, "--rate", "20", users=2, duration="2s")
    measurement = run.histograms["measurement"]
    assert measurement["main"] == ["echo corrected"]
    counters = run.histograms["counters"]
    assert counters.get("echo sends made", 0) >= 20, run.describe()
    # Nothing was answered, nothing timed out (10 s): every send made is still awaited.
    assert measurement["unanswered_at_end"]["echo corrected"] == counters["echo sends made"]
    assert counters["echo sends due"] >= counters["echo sends made"]


def test_self_check_is_in_every_run_with_its_figures(echo_url, run_locust):
    """A light echo_rate run stores send and wake lag, sends due/made and a verdict line."""
    run = run_locust("echo_rate", echo_url, "--rate", "20", users=5, duration="3s")
    assert run.returncode == 0, run.describe()
    generator = run.histograms["generator"]
    assert generator["send_lag_us"]["count"] >= 100  # 5 x 20/s for ~3 s, less the ramp
    assert generator["wake_lag_us"]["count"] >= 100  # the canary, every 10 ms
    assert generator["sends_made"] >= 0.9 * generator["sends_due"] > 0
    assert generator["latency_name"] == "echo corrected"
    assert generator["verdict"].startswith(("generator ok", "GENERATOR-BOUND"))
    with open(f"{run.prefix}_latency_us.csv") as f:
        header = f.readline().strip().split(",")
    assert {"generator_send_lag_p99_us", "generator_wake_lag_p99_us"} <= set(header)


def test_self_check_flags_an_overloaded_generator(echo_url, run_locust):
    """1,000 connections at 500 msgs/s each is far past one core: the run is GENERATOR-BOUND."""
    run = run_locust(
        "echo_rate", echo_url, "--rate", "500", users=1000, duration="4s", json_stats=False
    )
    generator = run.histograms["generator"]
    assert generator["bound"] is True, generator["verdict"]
    assert generator["verdict"].startswith("GENERATOR-BOUND")
    assert generator["sends_made"] < 0.95 * generator["sends_due"] or (
        generator["delay_p99_us"] > generator["delay_limit_us"]
    )
    assert "GENERATOR-BOUND" in run.output


def test_web_ui_has_a_generator_tab_with_the_live_verdict(echo_url, tmp_path):
    """With the web UI, /stats/requests carries the self-check rows and the page its tab."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "locust", "-f", "scenarios/echo_rate.py", "--host", echo_url,
        "--autostart", "-u", "5", "-r", "5", "-t", "6s", "--rate", "20",
        "--web-host", "127.0.0.1", "--web-port", str(port), "--loglevel", "WARNING",
    ]  # fmt: skip
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        rows: list = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            r["check"] == "wake lag (canary every 10 ms)" and "p99" in r["value"] for r in rows
        ):
            time.sleep(0.5)
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/requests") as r:
                    stats = json.load(r)
                rows = next(e["data"] for e in stats["extended_stats"] if e["key"] == TAB_KEY)
        verdict = next(r["value"] for r in rows if r["check"] == "verdict")
        assert verdict.startswith(("generator ok", "GENERATOR-BOUND")), rows
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as r:
            assert TAB_KEY in r.read().decode()
    finally:
        proc.terminate()
        proc.wait(20)
