"""connect --arrival-rate: the open model keeps its schedule, and a slow server shows as
latency from the intended start rather than as fewer arrivals."""

from __future__ import annotations

import threading
import time

from websockets.sync.server import serve


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
