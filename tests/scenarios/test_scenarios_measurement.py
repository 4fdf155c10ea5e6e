"""µs latency output: merged across worker processes, written with units, re-derivable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from hdrh.histogram import HdrHistogram

EXPECTED_TOTALS_HEADER = (
    "name,count,min_us,p50_us,p90_us,p99_us,p999_us,p9999_us,max_us,"
    "generator_cpu_pct,generator_saturated,generator_send_lag_p99_us,generator_wake_lag_p99_us,"
    "generator_bound"
)


def test_two_worker_processes_merge_to_the_sum_of_their_counts(echo_url, run_locust):
    """With --processes 2 the merged echo count is both workers' sum and Locust's own count."""
    run = run_locust("echo", echo_url, "--processes", "2", users=4, json_stats=False)
    assert run.returncode == 0, run.describe()
    by_process = run.histograms["counts_by_process"]
    assert len(by_process) == 2, by_process
    assert all(counts.get("echo", 0) > 0 for counts in by_process.values()), by_process
    merged = run.latency["echo"]["count"]
    assert merged == sum(counts["echo"] for counts in by_process.values())
    assert run.final_table()["echo"] == (merged, 0), run.describe()


def test_loopback_echo_p50_is_a_nonzero_number_of_microseconds(echo_url, run_locust):
    """On loopback Locust's ms would round to 0; the µs p50 is a real, positive figure."""
    run = run_locust("echo", echo_url, users=2, duration="2s")
    assert run.returncode == 0, run.describe()
    echo = run.latency["echo"]
    assert 0 < echo["min_us"] <= echo["p50_us"] <= echo["p99_us"] <= echo["max_us"]
    assert echo["p50_us"] < 100_000, echo  # a loopback round trip, not a stall


def test_latency_files_have_units_windows_and_reusable_histograms(echo_url, run_locust):
    """The CSV names its units; windows add up to the totals; the JSON re-derives them."""
    run = run_locust("echo", echo_url, "--latency-window-s", "0.5", users=2, duration="3s")
    assert run.returncode == 0, run.describe()
    header = Path(f"{run.prefix}_latency_us.csv").read_text().splitlines()[0]
    assert header == EXPECTED_TOTALS_HEADER
    window_counts: defaultdict[str, int] = defaultdict(int)
    starts = set()
    for row in run.history:
        window_counts[row["name"]] += int(row["count"])
        starts.add(float(row["window_start_unix_s"]))
    assert len(starts) >= 5, sorted(starts)  # 3 s in 0.5 s windows
    for name, totals in run.latency.items():
        assert window_counts[name] == totals["count"], name
    document = run.histograms
    assert document["unit"] == "us"
    decoded = HdrHistogram.decode(document["totals"]["echo"])
    assert decoded.get_total_count() == run.latency["echo"]["count"]
    assert decoded.get_value_at_percentile(50) == run.latency["echo"]["p50_us"]


def test_wss_connections_report_their_tls_handshake(start_target, run_locust, tmp_path):
    """Against a --tls target, echo over wss:// (trusting its CA) times the TLS handshake."""
    ca_file = tmp_path / "ca.pem"
    with start_target("aiohttp", "--tls", "--ca-file", str(ca_file)) as url:
        assert url.startswith("wss://")
        run = run_locust("echo", url, "--ws-ca-file", str(ca_file), users=2, duration="2s")
    assert run.returncode == 0, run.describe()
    assert run.latency["tls handshake"]["count"] == 2  # one connection per user
    assert run.latency["tls handshake"]["p50_us"] > 0
    assert run.latency["echo"]["count"] > 0


def test_scenario_options_are_offered_in_the_web_ui():
    """A scenario's parameters are Locust custom arguments the web UI's start form shows."""
    code = (
        "import json, sys\n"
        "from locust import argument_parser\n"
        "from locust.util.load_locustfile import load_locustfile\n"
        "load_locustfile(sys.argv[1])\n"
        "print(json.dumps(sorted(argument_parser.ui_extra_args_dict(['-f', sys.argv[1]]))))\n"
    )
    locustfile = Path(__file__).resolve().parents[2] / "scenarios" / "echo_rate.py"
    out = subprocess.run(
        [sys.executable, "-c", code, str(locustfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    shown = set(json.loads(out.strip().splitlines()[-1]))
    assert {"rate", "payload_bytes", "max_in_flight", "ws_timeout_s"} <= shown, shown


def test_a_window_being_merged_when_the_run_stops_is_merged_whole():
    """The periodic flush pauses between slices of a window (the hub runs meanwhile); a stop
    that comes then lets it finish: a broadcast's end markers, counted in the last full
    window, were lost when the stop killed the flusher mid-merge. A test started after it
    (the web UI runs several in one process) is flushed at its window boundaries again."""
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import json, time, gevent\n"
        "from locust.env import Environment\n"
        "from scenarios import measurement\n"
        "env = Environment()\n"
        "env.create_local_runner()\n"
        "m = measurement.measurement_for(env)\n"
        "m.start()\n"
        "for value in range(1, 5001):\n"
        "    m.recorder.record('echo', value)\n"
        "m.recorder.count('broadcast expected', 7)\n"
        # Until the window boundary's flush has taken the window (then it pauses in slices).
        "while m.recorder._window:\n"
        "    gevent.sleep(0.0002)\n"
        "m.stop()\n"
        "found = [m.merger.counters.get('broadcast expected'),\n"
        "         sum(m.merger.counts.get('echo', {}).values())]\n"
        # A second test in the same process (the web UI's) is flushed at its boundaries too.
        "m.start()\n"
        "m.recorder.record('echo', 3)\n"
        "deadline = time.monotonic() + 3\n"
        "while m.recorder._window and time.monotonic() < deadline:\n"
        "    gevent.sleep(0.01)\n"
        "print(json.dumps(found + [not m.recorder._window]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, cwd=Path(__file__).resolve().parents[2])
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [7, 5000, True]
