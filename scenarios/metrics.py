"""Prometheus metrics of the Locust master (or the single local process): µs latency and errors.

A prometheus_client Collector over what the process has merged (`Measurement.merger`: every
worker's exact µs counts) and Locust's own statistics, built when scraped, never on the load's
path. Served at `GET /metrics` on the web UI, and in a headless run with
`--wsbench-metrics-port PORT` on 127.0.0.1 (`--wsbench-metrics-host` to open it wider), by the
merging process only, never by workers.

    wsbench_latency_us{name}           histogram of µs latency per request name; buckets 1-2-5
                                       from 10 µs to 10 s, counted exactly from the merged
                                       counts, _sum exact too
    wsbench_requests_total{name}       Locust's successes and failures per name
    wsbench_failures_total{name}
    wsbench_errors_total{name,error}   failures by error (its text cut to 100 characters)
    wsbench_generator_bound            1 when the self-check calls the figures the generator's

A new test (the web UI's start, or its reset) starts the counts again: to Prometheus, a counter
reset, which rate() handles.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from locust import events
from locust.env import Environment
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from scenarios import output
from scenarios.options import add_once, positive

BUCKETS_US = tuple(m * 10**e for e in range(1, 7) for m in (1, 2, 5)) + (10_000_000,)
ERROR_TEXT = 100


@events.init_command_line_parser.add_listener
def _metrics_arguments(parser: Any, **_: object) -> None:
    add_once(parser, "--wsbench-metrics-port", type=positive(int), default=0,
             include_in_web_ui=False,
             help="Headless: serve Prometheus metrics (µs latency histograms, errors) on this "
             "port (the web UI serves them at /metrics)")  # fmt: skip
    add_once(parser, "--wsbench-metrics-host", default="127.0.0.1", include_in_web_ui=False,
             help="Address the metrics port binds to (default 127.0.0.1, this machine only)")


def buckets(counts: dict[int, int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) pairs ending with +Inf, and the sum, from exact µs counts."""
    per = [0] * (len(BUCKETS_US) + 1)
    total_us = 0
    for value_us, n in counts.items():
        per[bisect.bisect_left(BUCKETS_US, value_us)] += n
        total_us += value_us * n
    pairs, running = [], 0
    for bound, n in zip((*(str(b) for b in BUCKETS_US), "+Inf"), per, strict=True):
        running += n
        pairs.append((bound, float(running)))
    return pairs, float(total_us)


class MasterCollector(Collector):
    """The merging process's figures, read at scrape time."""

    def __init__(self, environment: Environment, measurement: Any) -> None:
        self.environment = environment
        self.measurement = measurement

    def collect(self) -> Iterator[Metric]:
        merger = self.measurement.merger
        latency = HistogramMetricFamily("wsbench_latency_us", "Latency per request name, µs",
                                        labels=["name"])  # fmt: skip
        for name, counts in sorted(merger.counts.items()):
            pairs, total = buckets(counts)
            latency.add_metric([name], pairs, total)
        yield latency
        requests = CounterMetricFamily("wsbench_requests", "Requests per name (Locust's)",
                                       labels=["name"])  # fmt: skip
        failures = CounterMetricFamily("wsbench_failures", "Failed requests per name",
                                       labels=["name"])  # fmt: skip
        for entry in self.environment.stats.entries.values():
            requests.add_metric([entry.name], entry.num_requests)
            failures.add_metric([entry.name], entry.num_failures)
        yield requests
        yield failures
        errors = CounterMetricFamily("wsbench_errors", "Failures by error",
                                     labels=["name", "error"])  # fmt: skip
        for error in self.environment.stats.errors.values():
            errors.add_metric([error.name, str(error.error)[:ERROR_TEXT]], error.occurrences)
        yield errors
        described = output.describe_measurement(self.environment, merger.counters)
        check = output.live_selfcheck(merger, described)
        yield GaugeMetricFamily("wsbench_generator_bound",
                                "1: the self-check says these figures are the generator's",
                                value=1.0 if check.bound else 0.0)  # fmt: skip


def install(environment: Environment, measurement: Any) -> CollectorRegistry | None:
    """/metrics on the web UI, or the headless metrics port; in the merging process only."""
    if not measurement.merges:
        return None
    registry = CollectorRegistry()
    registry.register(MasterCollector(environment, measurement))
    web_ui = environment.web_ui
    if web_ui is not None:
        from flask import Response

        web_ui.app.add_url_rule(
            "/metrics", "wsbench_metrics",
            lambda: Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST),
        )  # fmt: skip
    port = int(getattr(environment.parsed_options, "wsbench_metrics_port", 0) or 0)
    if port:
        from prometheus_client import start_http_server

        host = getattr(environment.parsed_options, "wsbench_metrics_host", "127.0.0.1")
        start_http_server(port, addr=host, registry=registry)
    return registry
