"""`WebSocketUser`: the one Locust-aware class the scenarios build on.

A user holds at most one connection. Its URL is `--host` when that has a path (your server's
endpoint, used exactly as given), else `--host` + the scenario's `path` (what the reference
targets serve). Scenario tasks call `connect()`, then usually hand the connection to the
engine (`run_on_engine`, scenarios/engine.py), which reads and sends for every connection of
the process in gevent's hub while the user's greenlet waits.

Results: `report()` records a success in µs into this process's Recorder, which also feeds
Locust's own tables in bulk once per latency window (`measurement.log_to_locust`; µs become
Locust's ms there and nowhere else). `report_failure()` goes to Locust at once, as its
exception, so failures show as they happen. A dropped or refused connection is reopened after
an exponential back-off, so a user never dies of a network error.

Each scenario names its main measurement (`main_measurement`, its request names; the first
is the headline) and what it counts (`measurement_label`): a run is judged by it (a point is
failed when it has no success), and the files say so.

Importing this module registers the shared command-line options and the µs measurement
(latency windows, worker-to-master shipping, PREFIX_latency_us*.csv) with Locust.
"""

from __future__ import annotations

import random
import time
from typing import ClassVar

import gevent
import locust.runners
from gevent.event import Event
from locust import User, constant, events
from locust.env import Environment
from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_RUNNING, LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

from common.units import ns_to_us
from scenarios import options
from scenarios.connection import WsConnection, endpoint_url, open_connection
from scenarios.deflate import DeflateParams
from scenarios.engine import Channel, Handler, engine
from scenarios.failures import NotNegotiated, WsError, WsTimeout, classify
from scenarios.latency import (
    CONNECT_FAILED,
    DEFLATE_AGREED_PREFIX,
    DEFLATE_DECLINED,
    DEFLATE_NEGOTIATED,
    DROPPED,
)
from scenarios.measurement import measurement_for, on_init
from scenarios.output import UNANSWERED_PREFIX

REQUEST_TYPE = "WS"
# Seconds of missed heartbeats before a master calls a worker missing and gives its users to the
# others (Locust's default is 3). A worker busy opening thousands of connections on a 2-core box
# misses 3 s easily while still holding its users: the hand-over then duplicates them, pushing
# the others past the open-file limit or the port range (seen at 100k connections).
HEARTBEAT_LIVENESS_S = 15
# A task that runs exchanges in its own greenlet returns to Locust's scheduler after this long
# (Locust yields to the hub after every task): once per batch rather than once per message.
BATCH_NS = 200_000_000
_NO_CONTEXT: dict[str, object] = {}


def _tolerate_busy_workers(environment: Environment, **_: object) -> None:
    """locust.events.init listener: a master waits HEARTBEAT_LIVENESS_S for a worker's heartbeat.

    Locust (2.x) has no option for it: its master reads the module constant
    `locust.runners.HEARTBEAT_LIVENESS` each time a worker connects or sends a heartbeat, so it
    is set here, once the process is known to be a master, and in no other process. The init
    event fires before the master's greenlets first run: every worker gets the longer wait.
    """
    if isinstance(environment.runner, locust.runners.MasterRunner):
        locust.runners.HEARTBEAT_LIVENESS = HEARTBEAT_LIVENESS_S


events.init.add_listener(on_init)
events.init.add_listener(_tolerate_busy_workers)


class WebSocketUser(User):
    """A Locust user on one WebSocket connection (websocket-client handshake, lean frames).

    Attributes a scenario sets:
        path: the scenario's path (with any query string), used when --host has none.
        request_type: the Type column of Locust's tables for this user's rows.
        main_measurement: the request names whose successes are what the scenario measures.
        measurement_label: what those successes are, plural ("echo round trips").
        timed_at_arrival: messages are timed when they reached the socket, not when the
            generator read them (plain TCP; see engine.ArrivalChannel), and so is the
            upgrade (its 101 response; connection.open_connection).
        timed_from_intended: the latency starts at an intended send time of the generator's
            (so its lateness to send is in the figure), not at a time stamped when the
            message left (broadcast over plain TCP) or at the server (push).
    """

    abstract = True
    wait_time = constant(0)
    path: str = "/echo"
    request_type: str = REQUEST_TYPE
    main_measurement: ClassVar[tuple[str, ...]] = ("echo",)
    measurement_label: ClassVar[str] = "echo round trips"
    # False where connections come and go (connect): --skip-ramp then waits for no count.
    holds_connection: ClassVar[bool] = True
    timed_at_arrival: ClassVar[bool] = False
    timed_from_intended: ClassVar[bool] = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.measurement = measurement_for(environment)
        self.measurement.request_type = self.request_type
        recorder = self.measurement.recorder
        self._record = recorder.record
        self._fire = environment.events.request.fire
        self.ws: WsConnection | None = None
        self._backoff_s = 0.0
        # --ws-spread-s: the first connect waits a random part of that many seconds.
        self._spread_s = float(options.option(environment, "ws_spread_s", 0.0) or 0.0)
        self.engine = engine(recorder.lag)

    @classmethod
    def url_for(cls, host: str, environment: Environment) -> str:
        """The URL users of this class connect to (a scenario whose path depends on the
        options, such as push's query, says so by overriding this)."""
        return endpoint_url(host, cls.path)

    @property
    def url(self) -> str:
        return endpoint_url(self.host or "", self.path)

    def report(self, name: str, rtt_us: int, length: int = 0) -> None:
        """A measured success: µs into this process's Recorder (Locust gets it in bulk)."""
        self._record(name, rtt_us, length)

    def report_failure(self, name: str, elapsed_us: int, error: WsError) -> None:
        """A failed exchange: Locust counts it at once, by the error's text; no latency."""
        # The one other place µs become Locust's ms: a float, not rounded.
        self._fire(
            request_type=self.request_type,
            name=name,
            response_time=elapsed_us / 1000.0,
            response_length=0,
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
        if self._spread_s:
            gevent.sleep(random.uniform(0.0, self._spread_s))
            self._spread_s = 0.0
        if self._backoff_s:
            jitter = float(options.option(self.environment, "reconnect_jitter",
                                          options.DEFAULT_RECONNECT_JITTER))  # fmt: skip
            gevent.sleep(self._backoff_s * random.uniform(1.0 - jitter, 1.0))
        settings = options.connect_settings(self.environment)
        try:
            # Timed at arrival, the upgrade is too: from its request's send to its response.
            lag = self.measurement.recorder.lag if self.timed_at_arrival else None
            ws = open_connection(self.url, settings, self._report_phase, self.unanswered, lag)
        except WsError as exc:
            self.measurement.recorder.count(CONNECT_FAILED)
            if isinstance(exc, NotNegotiated):
                self.measurement.recorder.count(DEFLATE_DECLINED)
            self._back_off()  # slept at the start of the next attempt
            return None
        self._backoff_s = 0.0
        if ws.deflate is not None:
            self._count_deflate(ws.deflate.params)
        self.ws = ws
        self.measurement.open_connections += 1
        return ws

    def _count_deflate(self, params: DeflateParams) -> None:
        """The point's record of what the servers agreed to (harness/execute reads it)."""
        count = self.measurement.recorder.count
        count(DEFLATE_NEGOTIATED)
        agreed = ", ".join(f"{k}={v}" for k, v in params.as_dict().items())
        count(f"{DEFLATE_AGREED_PREFIX}{agreed}")

    def unanswered(self, name: str) -> None:
        """A request still waiting when the run stopped this user (within its timeout)."""
        self.measurement.recorder.count(f"{UNANSWERED_PREFIX}{name}")

    def _timeout_s(self) -> float:
        return float(options.option(self.environment, "ws_timeout_s", options.DEFAULT_TIMEOUT_S))

    def _back_off(self) -> None:
        env = self.environment
        first_s = float(options.option(env, "reconnect_backoff_ms",
                                       options.DEFAULT_RECONNECT_BACKOFF_MS)) / 1000  # fmt: skip
        limit_s = float(options.option(env, "reconnect_max_ms",
                                       options.DEFAULT_RECONNECT_MAX_MS)) / 1000  # fmt: skip
        self._backoff_s = min(max(2 * self._backoff_s, first_s), limit_s)

    def run_on_engine(self, ws: WsConnection, handler: Handler) -> Channel:
        """Give `ws` to the engine with `handler` and wait until the connection ends.

        The wait counts as Locust's own wait: stopping the test kills this greenlet at once
        (the handler's `on_stop`, if it has one, then sees what was still in flight). After a
        failure the connection is forgotten and the next connect() backs off first.
        """
        channel = self.engine.attach(ws, handler, self.timed_at_arrival)
        try:
            handler.attached(channel)
            channel.start()
            self._park(channel.ended)
        finally:
            if not channel.closed:
                stop = getattr(handler, "on_stop", None)
                if stop is not None:
                    stop()
                channel.close()
            self._forget(ws)
        if channel.error is not None:
            self.measurement.recorder.count(DROPPED)
            self._back_off()
        return channel

    def _park(self, ended: Event) -> None:
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()
        self._state = LOCUST_STATE_WAITING
        ended.wait()
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()
        self._state = LOCUST_STATE_RUNNING

    def _forget(self, ws: WsConnection) -> None:
        if self.ws is ws:
            self.ws = None
            self.measurement.open_connections -= 1

    def fail(self, name: str, started_ns: int, exc: BaseException) -> WsError:
        """Report `exc` as a failure of `name` (begun at `started_ns`) and drop the connection.

        The next connect() waits a back-off first: a server that drops everyone should not be
        hammered by instant reconnects.
        """
        if self.ws is not None and self.ws.timed_out:
            error: WsError = WsTimeout(f"timeout: no reply within {self._timeout_s():g} s")
        else:
            error = classify(exc, name)
        elapsed_us = ns_to_us(time.perf_counter_ns() - started_ns) if started_ns else 0
        self.report_failure(name, elapsed_us, error)
        if self.ws is not None:
            self.measurement.recorder.count(DROPPED)
        self.drop()
        self._back_off()
        return error

    def drop(self) -> None:
        """Forget the connection without a close handshake (it failed, or is being churned)."""
        if self.ws is not None:
            self.ws.abort()
            self._forget(self.ws)

    def close(self) -> None:
        """Close the connection politely (close frame 1000), without waiting for the answer."""
        if self.ws is not None:
            self.ws.close()
            self._forget(self.ws)

    def on_stop(self) -> None:
        self.close()
