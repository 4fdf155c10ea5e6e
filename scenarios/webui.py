"""The generator self-check in Locust's web UI: a "Generator" tab, refreshed with the stats.

Locust's web UI takes extra tabs as template arguments (`extended_tabs`, `extended_tables`)
and their rows from an `extended_stats` entry in the JSON it polls (/stats/requests); its own
example, examples/extend_web_ui.py, does the same. The rows come from what the master (or the
single local process) has merged so far, so in distributed mode they are every worker's.
"""

from __future__ import annotations

import json
from typing import Any

from locust.env import Environment

from scenarios import output

TAB_KEY = "wsbench-generator"
STATS_PATH = "/stats/requests"
_STRUCTURE = [{"key": "check", "title": "Check"}, {"key": "value", "title": "Value"}]


def install(environment: Environment, measurement: Any) -> None:
    """Add the tab to `environment.web_ui` (a no-op for a headless run)."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    # update_template_args() merges into the existing dict, so these stay for every render.
    web_ui.template_args["extended_tabs"] = [{"title": "Generator", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": _STRUCTURE}]

    @web_ui.app.after_request
    def _add_rows(response):  # type: ignore[no-untyped-def]
        from flask import request

        if request.path != STATS_PATH or not response.is_json:
            return response
        rows = generator_rows(environment, measurement)
        extended = {"key": TAB_KEY, "data": rows}
        response.set_data(json.dumps({**response.json, "extended_stats": [extended]}))
        return response


def generator_rows(environment: Environment, measurement: Any) -> list[dict[str, str]]:
    """The tab's rows: the verdict first, then the figures behind it."""
    described = output.describe_measurement(environment, measurement.merger.counters)
    check = output.live_selfcheck(measurement.merger, described)

    def lag(summary: dict[str, int]) -> str:
        if not summary.get("count"):
            return "not measured"
        p50, p99, top = summary["p50_us"], summary["p99_us"], summary["max_us"]
        return f"p50 {p50:,} µs, p99 {p99:,} µs, max {top:,} µs"

    rows = [
        ("verdict", check.verdict()),
        ("wake lag (canary every 10 ms)", lag(dict(check.wake_lag))),
        ("send lag (scheduled sends)", lag(dict(check.send_lag))),
        ("main latency", f"{check.latency_name} p99 {check.latency_p99_us:,} µs"
         if check.latency_name else "no samples yet"),
        # Each connection counts its schedule when it ends, so this fills in at the end.
        ("scheduled sends made", f"{check.sends_made:,} of {check.sends_due:,}"
         if check.sends_due else "counted when connections end"),
        ("busiest process CPU", f"{check.saturation.busiest_run_pct:.0f}% of a core (window mean)"),
    ]
    return [{"check": name, "value": value} for name, value in rows]
