"""`WebSocketUser`: the one Locust-aware class the scenarios build on.

A user holds at most one connection to `--host` + `path`. Scenario tasks call `connect()`,
do their exchanges, and hand results to `report()` (success: µs into this process's
histograms, and the ms figure Locust wants; `_to_locust` is the only place that converts) or
`fail()` (the failure kind, close code or errno, as Locust's exception; the connection is
dropped). A dropped or refused connection is reopened after an exponential back-off, so a
user never dies of a network error.

Importing this module registers the shared command-line options and the µs measurement
(latency windows, worker-to-master shipping, PREFIX_latency_us*.csv) with Locust.
"""

from __future__ import annotations

import random
import time

import gevent
import locust.runners
from locust import User, constant, events
from locust.env import Environment

from scenarios import options
from scenarios.connection import WsConnection, open_connection
from scenarios.failures import WsError, WsTimeout, classify
from scenarios.measurement import measurement_for, on_init

events.init.add_listener(on_init)

REQUEST_TYPE = "WS"
# Seconds of missed heartbeats before a master calls a worker missing and gives its users to the
# others (Locust's default is 3). A worker busy opening thousands of connections on a 2-core box
# misses 3 s easily while still holding its users: the hand-over then duplicates them, pushing
# the others past the open-file limit or the port range (seen at 100k connections).
HEARTBEAT_LIVENESS_S = 15
locust.runners.HEARTBEAT_LIVENESS = HEARTBEAT_LIVENESS_S
BACKOFF_MIN_S = 0.1
# A task runs exchanges for this long before returning to Locust's scheduler, which yields
# to the gevent hub after every task: once per batch rather than once per message.
BATCH_NS = 200_000_000
_NO_CONTEXT: dict[str, object] = {}


class WebSocketUser(User):
    """A Locust user on one WebSocket connection (websocket-client handshake, lean frames).

    Attributes a scenario sets:
        path: appended to --host for the connection URL (with any query string).
        request_type: the Type column of Locust's tables for this user's rows.
    """

    abstract = True
    wait_time = constant(0)
    path: str = "/echo"
    request_type: str = REQUEST_TYPE

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.measurement = measurement_for(environment)
        self._record = self.measurement.recorder.record
        self._fire = environment.events.request.fire
        self.ws: WsConnection | None = None
        self._backoff_s = 0.0
        if options.option(environment, "no_histograms", False):
            self.report = self._report_to_locust_only  # type: ignore[method-assign]

    @property
    def url(self) -> str:
        host = (self.host or "").rstrip("/")
        if host.startswith("http"):
            host = "ws" + host[4:]  # http:// -> ws://, https:// -> wss://
        return host + self.path

    def report(self, name: str, rtt_us: int, length: int = 0) -> None:
        """A measured success: µs into this process's histograms, and on to Locust."""
        self._record(name, rtt_us)
        self._to_locust(name, rtt_us, length, None)

    def _report_to_locust_only(self, name: str, rtt_us: int, length: int = 0) -> None:
        self._to_locust(name, rtt_us, length, None)

    def report_failure(self, name: str, elapsed_us: int, error: WsError) -> None:
        """A failed exchange: Locust counts it, by the error's text; no latency is recorded."""
        self._to_locust(name, elapsed_us, 0, error)

    def _to_locust(self, name: str, us: int, length: int, error: WsError | None) -> None:
        # The one place µs become Locust's ms: a float, not rounded (Locust buckets it itself).
        self._fire(
            request_type=self.request_type,
            name=name,
            response_time=us / 1000.0,
            response_length=length,
            exception=error,
            context=_NO_CONTEXT,
        )

    def _report_phase(self, name: str, rtt_us: int, length: int, error: WsError | None) -> None:
        if error is None:
            self.report(name, rtt_us, length)
        else:
            self.report_failure(name, rtt_us, error)

    def connect(self) -> WsConnection | None:
        """The open connection, opening one if there is none.

        None if opening failed: the failure is reported and this user has slept its back-off.
        """
        if self.ws is not None:
            return self.ws
        if self._backoff_s:
            gevent.sleep(self._backoff_s * random.uniform(0.5, 1.0))
        settings = options.connect_settings(self.environment)
        try:
            ws = open_connection(self.url, settings, self._report_phase)
        except WsError:
            self._back_off()  # slept at the start of the next attempt
            return None
        self._backoff_s = 0.0
        self.ws = ws
        self.measurement.open_connections += 1
        return ws

    def _timeout_s(self) -> float:
        return float(options.option(self.environment, "ws_timeout_s", options.DEFAULT_TIMEOUT_S))

    def _back_off(self) -> None:
        limit_s = float(options.option(self.environment, "ws_reconnect_max_s", 5.0))
        self._backoff_s = min(max(2 * self._backoff_s, BACKOFF_MIN_S), limit_s)

    def fail(self, name: str, started_ns: int, exc: BaseException) -> WsError:
        """Report `exc` as a failure of `name` (begun at `started_ns`) and drop the connection.

        The next connect() waits a back-off first: a server that drops everyone should not be
        hammered by instant reconnects.
        """
        if self.ws is not None and self.ws.timed_out:
            error: WsError = WsTimeout(f"timeout: no reply within {self._timeout_s():g} s")
        else:
            error = classify(exc, name)
        elapsed_us = (time.perf_counter_ns() - started_ns) // 1000 if started_ns else 0
        self.report_failure(name, elapsed_us, error)
        self.drop()
        self._back_off()
        return error

    def drop(self) -> None:
        """Forget the connection without a close handshake (it failed, or is being churned)."""
        if self.ws is not None:
            self.ws.abort()
            self.ws = None
            self.measurement.open_connections -= 1

    def close(self) -> None:
        """Close the connection politely (close frame 1000), without waiting for the answer."""
        if self.ws is not None:
            self.ws.close()
            self.ws = None
            self.measurement.open_connections -= 1

    def on_stop(self) -> None:
        self.close()
