"""The Locust master's Prometheus metrics (scenarios/metrics.py), scraped from a real run.

Headless with --wsbench-metrics-port: the µs histograms and the counters parse with
prometheus_client's own parser, agree with each other, and move between two scrapes.
(The web UI's /metrics is scraped in tests/harness/test_ui_browser.py.)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def _scrape(port: int) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _echo_histogram(families: dict[str, dict]) -> dict[str, float]:
    """echo_rate's main histogram ("echo corrected"): its buckets by bound ('le'), and
    count and sum."""
    found = {}
    family = families.get("wsbench_latency_us")
    for sample in family.samples if family else []:
        if sample.labels.get("name") != "echo corrected":
            continue
        key = sample.labels.get("le") or sample.name.rsplit("_", 1)[1]
        found[key] = sample.value
    return found


def test_master_metrics_parse_and_move_under_load(echo_url: str) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "scenarios/echo_rate.py", "--host", echo_url,
         "--headless", "-u", "5", "-r", "5", "-t", "8s", "--rate", "50",
         "--wsbench-metrics-port", str(port), "--loglevel", "WARNING"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        first: dict[str, dict] = {}
        while time.monotonic() < deadline and not _echo_histogram(first).get("count"):
            time.sleep(0.5)
            try:
                first = _scrape(port)
            except OSError:
                continue
        assert _echo_histogram(first).get("count"), "no echo latency scraped"
        assert {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("inet")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port} == {"127.0.0.1"}
        time.sleep(2.5)
        second = _scrape(port)
    finally:
        proc.terminate()
        proc.wait(30)
    before, after = _echo_histogram(first), _echo_histogram(second)
    assert after["count"] > before["count"]
    bounds = sorted((float(k), v) for k, v in after.items() if k not in ("count", "sum"))
    counts = [v for _, v in bounds]
    assert counts == sorted(counts) and counts[-1] == after["count"]  # cumulative, +Inf last
    assert 1 <= after["sum"] / after["count"] < 1_000_000  # a mean in µs, not ms or s
    requests = {s.labels["name"]: s.value for s in second["wsbench_requests"].samples
                if s.name.endswith("_total")}  # fmt: skip
    assert requests["echo corrected"] > 0  # Locust's own (logged each window: may lag)
    assert second["wsbench_generator_bound"].samples[0].value in (0.0, 1.0)
