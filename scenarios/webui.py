"""What wsbench measures, in Locust's web UI: four tabs, a verdict strip, and JSON routes.

Locust's web UI takes extra tabs as template arguments (`extended_tabs`, `extended_tables`)
and their rows from an `extended_stats` entry in the JSON it polls (/stats/requests) every
2 s; its own example, examples/extend_web_ui.py, does the same. The tabs:

    Latency        per request name, the µs percentiles of the merged HdrHistograms
    Server         the target's CPU, RSS, open connections and memory per connection
    Kernel         the kernel counters that moved since the test started, and what they mean
    Generator      the generator self-check: the verdict and the figures behind it

Their data, and more, is JSON under one prefix for tests and scripts:

    /wsbench/latency     rows per name, and each name's percentile spectrum
    /wsbench/server      the target's samples over time (from wsbench ui's sampler)
    /wsbench/kernel      the counters that moved, with their meaning
    /wsbench/generator   the self-check: verdict, bound, rows
    /wsbench/sessions    the tests run from this UI, each stored as a run by wsbench ui
    /wsbench/sessions/N/report.html   that run's HTML report (and the files beside it)

The server and kernel figures are read where the Locust process cannot see them (the target
is another process, perhaps in another namespace): `wsbench ui` samples them and writes
SESSIONS/live.json each second (harness/session.py); a plain `locust -f` web UI says so
instead. Tables cannot hold charts or links, so the page also loads /wsbench/ui.js (added to
Locust's own index page): the percentile spectrum and the server's chart under their tabs,
the generator verdict in a strip visible on every tab, and the link to each stored report.
Everything comes from what the master (or the single local process) has merged, so in
distributed mode it is every worker's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from locust.env import Environment

from scenarios import output, sessions
from scenarios.latency import PERCENTILE_COLUMNS, summarise

PREFIX = "/wsbench"
STATS_PATH = "/stats/requests"
LIVE = "live.json"
SCRIPT = Path(__file__).with_name("webui.js")
TABS = {
    # Locust shows tab titles in capitals, and a capital µ reads as M: spelled out.
    "wsbench-latency": ("Latency (microseconds)", ("name", "count", *PERCENTILE_COLUMNS)),
    "wsbench-server": ("Server", ("time", "cpu_pct", "rss_mib", "connections",
                                  "kib_per_connection")),  # fmt: skip
    "wsbench-kernel": ("Kernel", ("side", "counter", "change", "meaning")),
    "wsbench-generator": ("Generator", ("check", "value")),
}
TITLES = {
    "name": "Name", "count": "# Samples", "min_us": "Min µs", "p50_us": "p50 µs",
    "p90_us": "p90 µs", "p99_us": "p99 µs", "p999_us": "p99.9 µs", "p9999_us": "p99.99 µs",
    "max_us": "Max µs", "time": "Time (s)", "cpu_pct": "CPU % of a core", "rss_mib": "RSS MiB",
    "connections": "Open connections", "kib_per_connection": "KiB per connection",
    "side": "Side", "counter": "Counter", "change": "Change", "meaning": "What it means",
    "check": "Check", "value": "Value",
}  # fmt: skip
# The spectrum's percentiles: evenly spaced in "nines" (1/(1-p)), as HdrHistogram plots them.
SPECTRUM = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0)
# How old a view may be. Views are computed in the process that merges, which in a local run
# is also the one generating the load: the latency and generator views take about 5 ms there
# (building the histograms), and a stall once a second would be 1 % of the 10 ms canary's
# wake-ups, i.e. the generator's p99. Once every 5 s stays out of it.
CACHE_S = 5.0
CACHED = ("latency", "generator")  # the others read a small file
SERVER_ROWS = 15  # the table's newest samples; the chart and the JSON have them all
NOT_VIA_WSBENCH = ("run through `wsbench ui` to see the server and kernel figures: a plain "
                   "Locust web UI does not know the target's processes")  # fmt: skip


def install(environment: Environment, measurement: Any) -> None:
    """Add the tabs, routes and script to `environment.web_ui` (a no-op for a headless run)."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    # update_template_args() merges into the existing dict, so these stay for every render.
    web_ui.template_args["extended_tabs"] = [{"title": t, "key": k} for k, (t, _) in TABS.items()]
    web_ui.template_args["extended_tables"] = [
        {"key": key, "structure": [{"key": c, "title": TITLES[c]} for c in columns]}
        for key, (_, columns) in TABS.items()
    ]
    views = Views(environment, measurement)
    _add_routes(web_ui.app, views)


class Views:
    """The JSON of each route, from the process's measurement and wsbench ui's live file."""

    def __init__(self, environment: Environment, measurement: Any) -> None:
        self.environment = environment
        self.measurement = measurement
        self._cache: dict[str, tuple[float, Any]] = {}

    def cached(self, name: str) -> Any:
        """A view; one in CACHED at most CACHE_S old: the browser's polls (Locust's own every
        2 s, and this page's script) must not each rebuild the histograms."""
        if name not in CACHED:
            return getattr(self, name)()
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit is None or now - hit[0] > CACHE_S:
            hit = self._cache[name] = (now, getattr(self, name)())
        return hit[1]

    @property
    def sessions_dir(self) -> Path | None:
        folder = getattr(self.environment.parsed_options, "wsbench_sessions", "") or ""
        return Path(folder) if folder else None

    def latency(self) -> dict[str, Any]:
        histograms = self.measurement.merger.totals
        rows = [{"name": name, **summarise(h)} for name, h in histograms.items()]
        spectrum = {}
        for name, h in histograms.items():
            if h.get_total_count():  # one pass over the counts for every percentile
                values = h.get_percentile_to_value_dict(list(SPECTRUM))
                spectrum[name] = [[p, int(values[p])] for p in SPECTRUM]
        return {"unit": "µs", "rows": rows, "spectrum": spectrum}

    def _live(self) -> dict[str, Any] | None:
        folder = self.sessions_dir
        if folder is None:
            return None
        try:
            return json.loads((folder / LIVE).read_text())
        except (OSError, ValueError):
            return {}  # not written yet

    def server(self) -> dict[str, Any]:
        live = self._live()
        if live is None:
            return {"available": False, "why": NOT_VIA_WSBENCH, "samples": []}
        return {"available": True, **(live.get("server") or {"samples": []})}

    def kernel(self) -> dict[str, Any]:
        live = self._live()
        if live is None:
            return {"available": False, "why": NOT_VIA_WSBENCH, "rows": [], "explain": []}
        return {"available": True, **(live.get("kernel") or {"rows": [], "explain": []})}

    def generator(self) -> dict[str, Any]:
        described = output.describe_measurement(self.environment,
                                                self.measurement.merger.counters)  # fmt: skip
        check = output.live_selfcheck(self.measurement.merger, described)
        measured = bool(check.latency_name or check.wake_lag.get("count"))
        return {"verdict": check.verdict() if measured else "not measured yet",
                "bound": check.bound if measured else False,
                "rows": generator_rows(check)}  # fmt: skip

    def sessions(self) -> dict[str, Any]:
        folder = self.sessions_dir
        if folder is None:
            return {"available": False, "sessions": []}
        found = []
        for path in sessions.session_dirs(folder):
            number = int(path.name[8:])
            stored = _read(path / sessions.STORED)
            state = ("stored" if stored else "stopped" if (path / sessions.STOPPED).exists()
                     else "running")  # fmt: skip
            entry = {"session": number, "state": state, **_read(path / sessions.STARTED)}
            if stored:
                entry.update(stored)
                if stored.get("report"):
                    name = Path(stored["report"]).name
                    entry["report_url"] = f"{PREFIX}/sessions/{number}/{name}"
            found.append(entry)
        return {"available": True, "sessions": found}

    def report_path(self, number: int) -> Path | None:
        folder = self.sessions_dir
        if folder is None:
            return None
        report = _read(folder / f"session-{number}" / sessions.STORED).get("report")
        return Path(report) if report else None

    def tables(self) -> list[dict[str, Any]]:
        """The four tabs' rows, as Locust's extended_stats."""
        return [
            {"key": "wsbench-latency", "data": self.cached("latency")["rows"]},
            {"key": "wsbench-server", "data": server_rows(self.cached("server"))},
            {"key": "wsbench-kernel", "data": kernel_rows(self.cached("kernel"))},
            {"key": "wsbench-generator", "data": self.cached("generator")["rows"]},
        ]


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def server_rows(server: dict[str, Any]) -> list[dict[str, Any]]:
    if not server.get("available"):
        return [{"time": server.get("why", "")}]
    rows = []
    for sample in reversed(server.get("samples", [])[-SERVER_ROWS:]):
        per = sample.get("bytes_per_connection")
        rows.append({
            "time": f"{sample['t_s']:.0f}", "cpu_pct": f"{sample['cpu_pct']:.0f}",
            "rss_mib": f"{sample['rss_bytes'] / 2**20:.1f}",
            "connections": f"{sample['connections']:,}",
            "kib_per_connection": "-" if per is None else f"{per / 1024:.1f}",
        })  # fmt: skip
    return rows or [{"time": "no samples yet"}]


def kernel_rows(kernel: dict[str, Any]) -> list[dict[str, Any]]:
    if not kernel.get("available"):
        return [{"side": kernel.get("why", "")}]
    rows = [{**row, "change": f"{row['change']:+,}"} for row in kernel.get("rows", [])]
    return rows or [{"side": "no counter moved since the test started"}]


def generator_rows(check: Any) -> list[dict[str, str]]:
    """The generator tab's rows: the verdict first, then the figures behind it."""

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


def _add_routes(app: Any, views: Views) -> None:
    from flask import Response, abort, jsonify, request, send_from_directory

    for name in ("latency", "server", "kernel", "generator", "sessions"):
        app.add_url_rule(f"{PREFIX}/{name}", f"wsbench_{name}",
                         lambda name=name: jsonify(views.cached(name)))  # fmt: skip

    @app.route(f"{PREFIX}/sessions/<int:number>/<path:name>")
    def wsbench_report(number: int, name: str) -> Any:
        """The session's report, and the charts and CSVs beside it that it loads."""
        path = views.report_path(number)
        if path is None or not path.is_file():
            abort(404)
        return send_from_directory(path.parent, name)

    @app.route(f"{PREFIX}/ui.js")
    def wsbench_script() -> Any:
        return Response(SCRIPT.read_text(), mimetype="application/javascript")

    @app.after_request
    def _extend(response: Any) -> Any:
        if request.path == STATS_PATH and response.is_json:
            response.set_data(json.dumps({**response.json, "extended_stats": views.tables()}))
        elif request.path == "/" and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            tag = f'<script src="{PREFIX}/ui.js" defer></script>'
            response.set_data(page.replace("</body>", tag + "</body>", 1))
        return response
