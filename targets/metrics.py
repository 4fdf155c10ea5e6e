"""`GET /metrics`: the counters of /stats in Prometheus's text format, one series per process.

The counters are the process's `Stats`, the same object /stats serves: the hot path counts once,
into plain ints, and a custom prometheus_client Collector turns them into metric families only
when /metrics is scraped (`exposition`). Every series has a `pid` label (and `target`).

With `--processes N` a scrape reaches one worker (SO_REUSEPORT picks it), yet must show every
worker. The supervisor makes a directory for that (`--peers-dir`, hidden): every worker writes
its Stats there as `<pid>` every SNAPSHOT_INTERVAL_S (when they changed; a temporary file
renamed over the old one, so a reader never sees half a snapshot), and the scraped worker
serves its own live Stats plus the other workers' latest snapshots (so up to
SNAPSHOT_INTERVAL_S old, nothing at Prometheus's scrape intervals). The supervisor deletes a
worker's snapshot when it reaps it, so a dead worker's series go away and its replacement's
start from 0 under a new pid (Prometheus's rate() and increase() take a new series as a reset).
A worker that stops removes its own, and the last one out removes the directory when the
supervisor died without doing so (a SIGKILL: the workers get SIGTERM from the kernel).

Why not prometheus_client's multiprocess mode: its values are mmap files written on every
increment, so the hot path would count twice (Stats for /stats, a Counter for /metrics) or
/stats would read the Counters: slower either way. It also sums dead processes into the
totals, where a `pid` series per live worker is what /stats already says. Why not ask the
other workers at scrape time: that needs a channel into each worker, a listening socket, and
/metrics adds none (it is a path on the target's own port).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from targets.protocol import Stats

SNAPSHOT_INTERVAL_S = 0.25
PREFIX = "wsbench_"
LABELS = ("target", "pid")
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Stats field -> (metric name without the prefix, gauge or counter, help). Counters are named
# without `_total`: prometheus_client adds it.
METRICS: dict[str, tuple[str, type[Metric], str]] = {
    "connections": ("connections", GaugeMetricFamily, "Open WebSocket connections."),
    "connections_total": ("connections_accepted", CounterMetricFamily,
                          "WebSocket connections accepted."),
    "messages_in": ("messages_in", CounterMetricFamily, "WebSocket messages received."),
    "messages_out": ("messages_out", CounterMetricFamily, "WebSocket messages sent."),
    "bytes_in": ("bytes_in", CounterMetricFamily, "Payload bytes received."),
    "bytes_out": ("bytes_out", CounterMetricFamily, "Payload bytes sent."),
    "slow_consumers_dropped": ("slow_consumers_dropped", CounterMetricFamily,
                               "Connections closed with 1008: outgoing backlog past the bound."),
    "oversize_closed": ("oversize_closed", CounterMetricFamily,
                        "Connections closed with 1009: a message over the size limit."),
    "handshake_failures": ("handshake_failures", CounterMetricFamily,
                           "Opening handshakes refused (not 101) or timed out."),
}  # fmt: skip
# Only with --broker.
BROKER_METRICS: dict[str, tuple[str, type[Metric], str]] = {
    "broker_connected": ("broker_connected", GaugeMetricFamily,
                         "1 while this process is connected to its broker."),
    "broker_published": ("broker_published", CounterMetricFamily,
                         "Messages published to the broker."),
    "broker_received": ("broker_received", CounterMetricFamily,
                        "Messages received from other processes through the broker."),
    "broker_errors": ("broker_errors", CounterMetricFamily,
                      "Messages not published to or not received from the broker."),
}  # fmt: skip


def snapshot(stats: Stats) -> dict[str, object]:
    """What a worker's snapshot holds: the fields /metrics shows, and the broker URL."""
    data: dict[str, object] = {name: getattr(stats, name) for name in METRICS}
    data["broker"] = stats.broker
    if stats.broker is not None:
        data.update({name: int(getattr(stats, name)) for name in BROKER_METRICS})
    return data


class Snapshots:
    """The directory where each worker of one port leaves its latest snapshot, named by pid."""

    def __init__(self, directory: Path, pid: int | None = None) -> None:
        self.directory = directory
        self.pid = os.getpid() if pid is None else pid
        self.supervisor = os.getppid()
        self._last: dict[str, object] | None = None

    def write(self, stats: Stats) -> None:
        """This process's snapshot, unless unchanged since the last one."""
        data = snapshot(stats)
        if data == self._last:
            return
        tmp = self.directory / f"{self.pid}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.directory / str(self.pid))
        self._last = data

    def others(self) -> Iterator[tuple[int, Mapping[str, object]]]:
        """(pid, snapshot) of every other worker that left one."""
        for path in self.directory.iterdir():
            if not path.name.isdigit() or int(path.name) == self.pid:
                continue  # a temporary file, or ours (served live)
            try:
                yield int(path.name), json.loads(path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue  # its worker was reaped meanwhile

    def close(self) -> None:
        """Remove our snapshot as we stop, and the directory if the supervisor is gone."""
        forget(self.directory, self.pid)
        if os.getppid() != self.supervisor:
            with contextlib.suppress(OSError):  # not empty: a worker still running removes it
                self.directory.rmdir()

    async def keep_writing(self, stats: Stats) -> None:
        """Write the snapshot every SNAPSHOT_INTERVAL_S until cancelled."""
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            # OSError: the supervisor is gone (it removed the directory), so we are stopping.
            with contextlib.suppress(OSError):
                self.write(stats)


def forget(directory: Path, pid: int) -> None:
    """Delete a reaped worker's snapshot (the supervisor's side)."""
    for name in (str(pid), f"{pid}.tmp"):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


class StatsCollector(Collector):
    """Metric families over this process's Stats and the other workers' snapshots."""

    def __init__(self, target: str, stats: Stats, peers: Snapshots | None) -> None:
        self.target = target
        self.stats = stats
        self.peers = peers

    def processes(self) -> list[tuple[int, Mapping[str, object]]]:
        own = (os.getpid(), snapshot(self.stats))
        others = sorted(self.peers.others()) if self.peers is not None else []
        return [own, *others]

    def collect(self) -> Iterable[Metric]:
        processes = self.processes()
        table = dict(METRICS)
        if any(data.get("broker") is not None for _, data in processes):
            table.update(BROKER_METRICS)
        for field, (name, family, help_text) in table.items():
            metric = family(PREFIX + name, help_text, labels=LABELS)
            for pid, data in processes:
                value = data.get(field)
                if value is not None:
                    metric.add_metric([self.target, str(pid)], float(value))
            yield metric


def exposition(target: str, stats: Stats, peers: Snapshots | None) -> bytes:
    """The body of a /metrics answer (its content type is CONTENT_TYPE)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(target, stats, peers))
    return generate_latest(registry)
