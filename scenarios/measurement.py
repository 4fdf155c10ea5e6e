"""A run's µs latency measurement wired into Locust: windows, shipping, merging, output.

Every process that runs users (a worker, or the single local process) records into its
`Recorder`. At each wall-clock window boundary (`--latency-window-s`, aligned across
processes) and once more when the test stops, it logs the window's successes into Locust's own
statistics in bulk (`log_to_locust`: per-message events.request cost more than the message
itself once the engine made messages cheap) and ships the window to the master as a Locust
custom message: encoded HdrHistograms, the generator's delays (send lag, wake lag), counters,
its CPU use and open connections. The master (or the local process, which sends to itself)
merges them with `Merger`; at quit it writes PREFIX_latency_us*.csv/json when Locust has --csv
PREFIX, and prints a µs summary. A quit that arrives while users still run (SIGTERM, a target
that died) stops them first, so the files hold every failure they reported.

As with Locust's own statistics, a worker's last window reaches the master only if it arrives
before the master shuts down (Locust waits 0.5 s for workers after sending them quit).
"""

from __future__ import annotations

import gc
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_INIT, STATE_STOPPED, MasterRunner, WorkerRunner
from locust.stats import RequestStats, bucket_response_time

from scenarios import metrics, output, sessions, webui
from scenarios.cpu import CpuSampler
from scenarios.engine import engine
from scenarios.latency import Merger, RawWindow, Recorder, in_slices

MESSAGE = "wsbench_latency"
DEFAULT_WINDOW_S = 1.0
FINISH_AFTER_WINDOWS = 2  # a window is complete once data two windows newer has arrived
# How long the final flush waits for users killed at the stop timeout to finish dying.
KILLED_USERS_S = 1.0
PAUSE_S = 0.0001

logger = logging.getLogger(__name__)


@dataclass
class Measurement:
    """The measurement of one Locust environment (one per process)."""

    environment: Environment
    recorder: Recorder = field(default_factory=Recorder)
    cpu: CpuSampler = field(default_factory=CpuSampler)
    merger: Merger = field(default_factory=Merger)
    run_cpu_pct: dict[str, float] = field(default_factory=dict)
    open_connections: int = 0
    window_s: float = DEFAULT_WINDOW_S
    request_type: str = "WS"  # the Type column of Locust's rows (set by the users)
    _flusher: gevent.Greenlet | None = None
    # A window taken out of the recorder is merged whole: the flusher pauses within a merge
    # (`_merging`), so stop() lets it finish, and no new one begins once stop() began.
    _merging: bool = False
    _closing: bool = False
    _frozen_connections: int = -1
    spawned_s: float | None = None  # when the spawning completed, for --skip-ramp

    @property
    def records(self) -> bool:
        """This process runs users (local or worker)."""
        return not isinstance(self.environment.runner, MasterRunner)

    @property
    def merges(self) -> bool:
        """This process merges and writes (local or master)."""
        return not isinstance(self.environment.runner, WorkerRunner)

    def start(self) -> None:
        options = self.environment.parsed_options
        self.window_s = float(getattr(options, "latency_window_s", None) or DEFAULT_WINDOW_S)
        self.recorder.take()  # users hold its record method: empty it, do not replace it
        self.recorder.recording = True
        self.merger = Merger()
        self.run_cpu_pct = {}
        self.spawned_s = None
        self.cpu.start()
        if self.records and self._flusher is None:
            self._closing = False  # a test after a stopped one (the web UI) flushes again
            engine(self.recorder.lag).resume()
            engine().timer.start_canary()
            self._flusher = gevent.spawn(self._flush_at_boundaries)
            self._freeze_long_lived()

    def _freeze_long_lived(self) -> None:
        """Keep the garbage collector's full passes off what lives all run long.

        A full collection walks every tracked object: with Locust, gevent and 1,000 users'
        connections that took 196 ms (measured), a stall every latency would show. Objects
        frozen are never walked again (gc.freeze is O(1)); what they hold is still freed by
        reference counting. Done at the start and whenever connections have grown since,
        at a window boundary; garbage cycles made in between are frozen too (a small leak
        while a run grows, none once it is steady).
        """
        if self.open_connections > self._frozen_connections:
            gc.freeze()
            self._frozen_connections = self.open_connections

    def stopping(self) -> None:
        """Locust begins stopping the users: what happens from now on is the stop, not the
        run. No more scheduled sends, no more latency samples (counters still count)."""
        self.recorder.recording = False
        engine().stop_sending()

    def stop(self) -> None:
        """Ship what is left (the last, partial window) with this process's run CPU.

        Users still running past Locust's --stop-timeout are killed without waiting
        (killone(block=False)) just before test_stop: they are let die first, so that what
        they were still waiting for is counted as unanswered rather than lost."""
        if self._flusher is None:
            return
        users = getattr(self.environment.runner, "user_greenlets", None)
        if users is not None:
            users.join(timeout=KILLED_USERS_S)
        self._closing = True
        while self._merging:
            gevent.sleep(PAUSE_S)
        self._flusher.kill(block=False)
        self._flusher = None
        engine().timer.stop_canary()
        self._flush(self._window_start(time.time()), final=True)

    def _window_start(self, now_s: float) -> float:
        return math.floor(now_s / self.window_s) * self.window_s

    def _flush_at_boundaries(self) -> None:
        while True:
            now_s = time.time()
            boundary_s = self._window_start(now_s) + self.window_s
            gevent.sleep(boundary_s - now_s)
            if self._closing:
                return
            self._merging = True
            try:
                self._flush(boundary_s - self.window_s)
            finally:
                self._merging = False

    def _flush(self, start_s: float, final: bool = False) -> None:
        if not final:
            self._freeze_long_lived()
        raw = self.recorder.take_raw()
        # A window of the run, not the last one: the hub sends and reads between its slices.
        pause = _pause if self._merging else None
        log_to_locust(self.environment.stats, self.request_type, raw, pause)
        counts = {} if self._no_histograms() else raw.counts
        data: dict[str, Any] = {
            "start_s": start_s,
            # Exact µs counts, not histograms: building and encoding HdrHistograms here cost
            # milliseconds of the hub per window, felt as generator delay (wake lag).
            "counts": {name: dict(values) for name, values in counts.items()},
            "lags": {name: dict(values) for name, values in raw.lags.items()},
            "counters": raw.counters,
            "cpu_pct": self.cpu.window_pct(),
            "open_connections": self.open_connections,
        }
        if final:
            data["run_cpu_pct"] = self.cpu.run_pct()
        self.environment.runner.send_message(MESSAGE, data)

    def receive(self, source: str, data: dict[str, Any]) -> None:
        """A process's window arrived: merge it, and finish windows no one will add to."""
        start_s = data["start_s"]
        self.merger.add_counts(
            source,
            start_s,
            data["counts"],
            data["counters"],
            data["cpu_pct"],
            data["open_connections"],
            lags=data.get("lags"),
            # Paused only within this process's own periodic flush (a local run): a master
            # runs no load, and must not write its files between the slices of a merge.
            pause=_pause if self._merging else None,
        )
        if "run_cpu_pct" in data:
            self.run_cpu_pct[source] = data["run_cpu_pct"]
        self.merger.finish_windows(start_s - FINISH_AFTER_WINDOWS * self.window_s)
        if self.spawned_s is not None and self._skip_ramp():
            self.merger.mark_steady(self.spawned_s, self._connections_expected(), self.window_s)

    def _skip_ramp(self) -> bool:
        return bool(getattr(self.environment.parsed_options, "skip_ramp", False))

    def _connections_expected(self) -> int | None:
        """Connections open once the ramp is over: one per user, when the users hold theirs
        (None for scenarios whose connections come and go)."""
        classes = self.environment.user_classes
        if not all(getattr(c, "holds_connection", True) for c in classes):  # non-wsbench users
            return None
        return int(getattr(self.environment.runner, "target_user_count", 0) or 0) or None

    def reset_totals(self) -> None:
        """--reset-stats or the web UI's reset: start over, as Locust's own statistics do."""
        if self.records:
            self.recorder.take()
        if self.merges:
            self.merger = Merger()

    def _no_histograms(self) -> bool:
        # Benchmarking only (--no-histograms): Locust's tables without the µs histograms.
        return bool(getattr(self.environment.parsed_options, "no_histograms", False))

    def stop_users_first(self) -> None:
        """A quit while users still run (SIGTERM from the runner, Ctrl-C): stop them now, so
        that what they report while stopping is in the files written next."""
        runner = self.environment.runner
        if runner is None or runner.state in (STATE_STOPPED, STATE_INIT):
            return
        if isinstance(runner, MasterRunner):
            runner.quit()  # workers stop, ship their last window and stats, then we write
        else:
            runner.stop()

    def finish(self) -> None:
        """At quit: summarise, write the files for --csv, print the summary."""
        self.stop_users_first()
        if self.records:
            self.stop()
        self.merger.finish_windows()
        result = output.RunResult.of(
            self.merger, self.run_cpu_pct, self.window_s, output.describe_measurement(
                self.environment, self.merger.counters
            ),
        )  # fmt: skip
        prefix = getattr(self.environment.parsed_options, "csv_prefix", None)
        if prefix:
            for path in output.write_files(prefix, result):
                logger.info("wrote %s", path)
            for path in output.write_locust_final(prefix, self.environment.stats):
                logger.info("wrote %s", path)
        output.print_summary(result)


_MEASUREMENTS: weakref.WeakKeyDictionary[Environment, Measurement] = weakref.WeakKeyDictionary()


def measurement_for(environment: Environment) -> Measurement:
    """The Measurement of `environment`, created and hooked into its events on first use."""
    found = _MEASUREMENTS.get(environment)
    if found is None:
        found = _MEASUREMENTS[environment] = Measurement(environment)
        _hook(environment, found)
    return found


def _hook(environment: Environment, measurement: Measurement) -> None:
    events = environment.events
    runner = environment.runner
    if runner is not None and measurement.merges:
        runner.register_message(
            MESSAGE, lambda environment, msg, **_: measurement.receive(msg.node_id, msg.data)
        )
    events.test_start.add_listener(lambda **_: measurement.start())
    if measurement.records:
        events.test_stopping.add_listener(lambda **_: measurement.stopping())
        events.test_stop.add_listener(lambda **_: measurement.stop())
    if measurement.merges:
        events.quitting.add_listener(lambda **_: measurement.finish())

    def on_spawning_complete(**_: object) -> None:
        if measurement.spawned_s is None:
            measurement.spawned_s = measurement._window_start(time.time())
        if environment.reset_stats:
            measurement.reset_totals()

    events.spawning_complete.add_listener(on_spawning_complete)
    events.reset_stats.add_listener(lambda **_: measurement.reset_totals())


def _pause() -> None:
    """Let the hub run (a timer, not sleep(0): gevent runs its callbacks before it polls, so
    only a timer lets the engine's due sends and waiting reads in)."""
    gevent.sleep(PAUSE_S)


def log_to_locust(
    stats: RequestStats, method: str, window: RawWindow, pause: Callable[[], None] | None = None
) -> None:
    """A window's successes into Locust's statistics, as many StatsEntry.log calls would.

    Locust keeps response times in ms, bucketed (bucket_response_time); the µs values are
    converted here, the one place besides a failure's report. Requests are dated now, the end
    of the window: Locust's req/s averages over several seconds, so this shifts it by less than
    one window. `pause` is called between slices of its values (latency.in_slices).
    """
    now_s = time.time()
    second = int(now_s)
    total = stats.total
    for name, counts in window.counts.items():
        if not counts:
            continue
        entry = stats.get(name, method)
        n = sum(counts.values())
        sum_ms = 0.0
        for target in (entry, total):  # the last second's snapshot, before this window
            last = target.last_request_timestamp
            if target.use_response_times_cache and last and second > int(last):
                target._cache_response_times(second - 1)
        # The response times first: a statistics reader meanwhile sees no more requests than
        # their times account for.
        for value_us, times in in_slices(counts, pause):
            ms = value_us / 1000.0
            sum_ms += ms * times
            bucket = bucket_response_time(ms)
            entry.response_times[bucket] += times
            total.response_times[bucket] += times
        lowest_ms, highest_ms = min(counts) / 1000.0, max(counts) / 1000.0
        for target in (entry, total):
            target.num_requests += n
            target.num_reqs_per_sec[second] += n
            target.last_request_timestamp = now_s
            target.total_content_length += window.length_bytes.get(name, 0)
            low = target.min_response_time
            target.min_response_time = lowest_ms if low is None else min(low, lowest_ms)
            target.max_response_time = max(target.max_response_time, highest_ms)
        entry.total_response_time += sum_ms
        total.total_response_time += sum_ms


def on_init(environment: Environment, **_: object) -> None:
    """locust.events.init listener: every process gets its Measurement before the test.

    It also brings the hub's clock up to date: libev reads the time only when its loop runs,
    and it has not run since gevent was imported, so Locust's --run-time timer, armed next
    from that clock, ended every run 0.3-0.5 s early (5.5-5.7 s of a 6 s point).
    """
    gevent.get_hub().loop.update_now()
    measurement = measurement_for(environment)
    if measurement.merges:
        webui.install(environment, measurement)
        sessions.install(environment, measurement)
        metrics.install(environment, measurement)
