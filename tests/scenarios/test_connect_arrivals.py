"""connect --arrival-rate: the open model keeps its schedule, and a slow server shows as
latency from the intended start rather than as fewer arrivals."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from websockets.sync.server import serve

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_arrivals_keep_their_schedule(echo_url, run_locust):
    """10 users x 20 connects/s for 3 s: about 600 connects, every one due made, each timed
    from its intended start as well as from its own."""
    run = run_locust("connect", echo_url, "--arrival-rate", "20", users=10, duration="3s")
    assert run.returncode == 0, run.describe()
    counters = run.histograms["counters"]
    assert counters["connects due"] == counters["connects made"]
    assert 400 <= counters["connects made"] <= 700, counters
    corrected, upgrade = run.latency["connect corrected"], run.latency["ws upgrade"]
    assert corrected["count"] == upgrade["count"] >= 400
    assert corrected["p50_us"] >= upgrade["p50_us"]  # from the intended start: never less


def test_users_waiting_for_their_next_arrival_stop_at_once(echo_url, run_locust):
    """A stop ends the users asleep until their next connect at once, rather than after
    --stop-timeout (they slept on a timer entry the stop had dropped: every storm point took
    5 s longer than its run time), and an arrival the stop cut short is not made."""
    began = time.monotonic()
    run = run_locust("connect", echo_url, "--arrival-rate", "2", "--stop-timeout", "5",
                     users=4, duration="2s")  # fmt: skip
    elapsed = time.monotonic() - began
    assert run.returncode == 0, run.describe()
    assert elapsed < 2 + 3, elapsed  # Locust's start and stop, not the 5 s stop timeout
    counters = run.histograms["counters"]
    assert counters["connects due"] == counters["connects made"] > 0, counters


def test_a_slow_server_shows_in_corrected_latency(run_locust, tmp_path):
    """A server that takes 300 ms per upgrade, 2 users at 10 connects/s each: arrivals are
    due every 100 ms, so the corrected latency grows well past the upgrade's own 300 ms,
    while the uncorrected one stays near it (coordinated omission, corrected)."""
    def process_request(connection, request):
        time.sleep(0.3)

    server = serve(lambda ws: ws.recv(), "127.0.0.1", 0, compression=None,
                   process_request=process_request)  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/echo"
        run = run_locust("connect", url, "--arrival-rate", "10", "--no-close-handshake",
                         users=2, duration="3s")  # fmt: skip
    finally:
        server.shutdown()
    assert run.returncode in (0, 1), run.describe()
    corrected, upgrade = run.latency["connect corrected"], run.latency["ws upgrade"]
    assert upgrade["p50_us"] >= 250_000
    assert corrected["max_us"] >= 2 * upgrade["max_us"], (corrected, upgrade)
    counters = run.histograms["counters"]
    assert counters["connects due"] > 2 * counters["connects made"]


def _rise_s(url: str, tmp_path, *extra: str, users: int = 1000) -> float:
    """Seconds from the target's first accepted connection to its `users`-th, as a run of
    `hold` with -r USERS (one Locust batch) opens them; /stats polled every 10 ms."""
    stats = url.replace("ws://", "http://", 1).rstrip("/") + "/stats"
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(SCENARIOS / "hold.py"), "--host", url,
         "--headless", "-u", str(users), "-r", str(users), "-t", "4s", "--only-summary",
         "--loglevel", "WARNING", *extra],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    first = last = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and last is None:
            with urllib.request.urlopen(stats, timeout=5) as answer:
                total = json.load(answer)["connections_total"]
            now = time.monotonic()
            if total and first is None:
                first = now
            if total >= users:
                last = now
            time.sleep(0.01)
    finally:
        locust.wait(30)
    assert first is not None and last is not None, "the connections never all opened"
    return last - first


def test_spread_lets_a_ramps_connects_arrive_apart(start_target, tmp_path):
    """Locust starts the 1,000 users of -r 1000 at once, and their connects queue in the
    generator (upgrade p50 4.8 ms measured, against 236 µs spread). With --ws-spread-s 1 each
    user first waits a random part of a second: the connects arrive over about a second."""
    with start_target("raw") as url:
        at_once = _rise_s(url, tmp_path)
    with start_target("raw") as url:
        spread = _rise_s(url, tmp_path, "--ws-spread-s", "1")
    print(f"rise: at once {at_once:.2f} s, spread {spread:.2f} s")
    assert spread >= 0.8, (at_once, spread)
    assert at_once < spread - 0.2, (at_once, spread)
