"""Every scenario runs headless against every reference target, cleanly, with µs histograms."""

from __future__ import annotations

import pytest

# scenario -> (extra Locust arguments, request names that must have latency samples)
RUNS = {
    "echo": (("--payload-bytes", "64"), {"echo", "tcp connect", "ws upgrade"}),
    "echo_rate": (("--rate", "50"), {"echo corrected", "echo uncorrected"}),
    "connect": (("--exchange",), {"tcp connect", "ws upgrade", "connect echo", "ws close"}),
    "hold": (("--ping-interval-s", "0.5"), {"hold ping"}),
    "broadcast": (("--publish-rate", "20"), {"broadcast"}),
    "push": (("--push-rate", "50"), {"push"}),
}
COUNTERS = {
    "broadcast": ("broadcast published", "broadcast received"),
    "push": ("push received",),
}


@pytest.mark.parametrize("scenario", sorted(RUNS))
def test_scenario_runs_clean_against_target(scenario, target_url, run_locust):
    """A 2 s run: no failures, µs histograms with Locust's counts, every user's connection open."""
    args, names = RUNS[scenario]
    run = run_locust(scenario, target_url, *args, duration="2s")
    assert run.returncode == 0, run.describe()
    latency, stats = run.latency, run.locust_stats
    assert all(entry["num_failures"] == 0 for entry in stats.values()), run.describe()
    for name in names:
        assert latency.get(name, {}).get("count", 0) > 0, f"no samples for {name}\n{run.describe()}"
        assert latency[name]["p50_us"] > 0
        assert stats[name]["method"] == "WS"
    for name, summary in latency.items():
        assert stats[name]["num_requests"] == summary["count"], name
    peak_open = max(int(row["open_connections"]) for row in run.history)
    assert peak_open == 4 or (scenario == "connect" and peak_open <= 4), peak_open  # churn
    counters = run.histograms["counters"]
    for counter in COUNTERS.get(scenario, ()):
        assert counters.get(counter, 0) > 0, f"{counter} missing: {counters}"
    assert not any("lost" in name and n for name, n in counters.items()), counters
