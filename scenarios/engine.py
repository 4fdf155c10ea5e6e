"""The generator's engine: every open connection's reads and every scheduled send of a process,
run as callbacks inside gevent's hub, with no greenlet switch per message.

Why (a profile of the greenlet-per-connection design at 1,000 connections x 10 msgs/s, one
core saturated at about 10k msgs/s): gevent's switching took 29 % of the time, the per-send
timerfd alarm 24 %, socket calls 27 % (two recv() per message, one of them EAGAIN before each
wait). Per message that design woke a sender greenlet and a receiver greenlet, armed a timer
and went through the hub twice.

Here a user's greenlet still opens its connection (websocket-client does the upgrade) and then
hands the socket to the engine and waits, parked, until the connection ends. The engine gives
the socket one libev read watcher: its callback reads what is there (one recv), splits the
frames and hands each message to the scenario's `Handler`, in the hub. Scheduled sends go
through one `Timer` per process (a timerfd, precise to tens of µs where gevent's own timers are
late by up to a millisecond): when it fires, every send that is due is made in one pass. A
send the socket cannot take at once is queued and finished by a write watcher, so nothing in
the hub ever blocks.

Self-check: `Timer` runs a canary every CANARY_INTERVAL_NS and records how late it ran ("wake
lag": the time the hub was busy elsewhere, or the kernel's wake-up); schedulers record how late
each send left against its intended time ("send lag"). Both go to the Recorder's lag series.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import os
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from gevent.event import Event
from gevent.hub import get_hub

from common.units import ns_to_us
from scenarios import arrival
from scenarios.connection import RECV_BYTES, WsConnection
from scenarios.deadlines import watchdog
from scenarios.failures import ConnectionLost, ProtocolViolation, WsError, WsTimeout, classify
from scenarios.frames import FIN, OP_CLOSE, ServerFrames, client_frame, close_payload, split_frames
from scenarios.selfcheck import READ_LAG, WAKE_LAG
from targets.rfc6455.codes import CloseCode

# Schedules run on time.monotonic_ns (the timerfd's clock) while handshakes and closed-loop
# round trips use time.perf_counter_ns: the same CLOCK_MONOTONIC on Linux.
assert not sys.platform.startswith("linux") or (
    time.get_clock_info("perf_counter").implementation
    == time.get_clock_info("monotonic").implementation
)

CANARY_INTERVAL_NS = 10_000_000  # 100 samples a second: about 0.05 % of a core
# recv() sizes: measured, a 4 KiB read of a small message costs 1 µs less than a 64 KiB one.
READ_MIN_BYTES = 4096
READ_MAX_BYTES = 1 << 18
_EV_READ, _EV_WRITE = 1, 2
_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Handler(Protocol):
    """What a scenario gives the engine for one connection (all but `attached` in the hub).

    `attached(channel)` comes first, from the user's greenlet: keep the channel, start
    schedules. A handler may also have `on_stop()`, called when the run stops its user while
    the connection is open: requests still in flight are counted there.
    """

    def attached(self, channel: Channel) -> None:
        """The engine has the connection; `channel.send` and the timer may be used from now."""

    def on_message(self, payload: bytes, now_ns: int) -> None:
        """A whole data message (text as UTF-8 bytes, not validated) read at `now_ns`."""

    def on_end(self, error: WsError | None) -> None:
        """The connection ended: `error` says why (None: the handler closed it itself)."""


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Timer:
    """Callbacks at CLOCK_MONOTONIC instants, run in the hub; one timerfd armed for the earliest.

    `at(due_ns, fn)` calls `fn(due_ns, now_ns)` once due. Entries are lists so that `cancel`
    can mark one dead in place (heap removal would cost a scan). A schedule that repeats at a
    fixed interval passes it as `lane`: each interval's entries are kept in a FIFO, which stays
    in time order because each entry is its predecessor plus the same interval, so a send costs
    an append and a popleft instead of a heap push and pop. An entry that would break a lane's
    order (a schedule's first, from a random phase) goes to the heap.
    """

    def __init__(self, lag: Callable[[str, int], None] | None = None) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self._settime = self._libc.timerfd_settime
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._heap: list[list] = []
        self._lanes: dict[int, deque[list]] = {}
        self._order = itertools.count()
        self._armed_ns = 0
        self._in_pass = False  # callbacks are running: arm once at the end, not per entry
        self._watcher = get_hub().loop.io(self._fd, _EV_READ)
        self._watcher.ref = False  # an idle timer must not keep the hub alive
        self._watcher.start(self._on_expiry)
        self._lag = lag
        self._canary: list | None = None
        self._sleepers: set[Event] = set()  # greenlets in sleep_until: clear() wakes them
        self.closed = False  # the run is stopping: nothing new is scheduled (see clear)
        self.last_pass_ns = 0  # when the last pass began: all that was due by then ran

    def at(self, due_ns: int, fn: Callable[[int, int], None], lane: int = 0) -> list:
        if self.closed:
            return [due_ns, 0, None]  # never runs: a stopping run sends nothing new
        entry = [due_ns, next(self._order), fn]
        if lane:
            queue = self._lanes.get(lane)
            if queue is None:
                queue = self._lanes[lane] = deque()
            if not queue or queue[-1][0] <= due_ns:
                queue.append(entry)
                if not self._in_pass and (not self._armed_ns or due_ns < self._armed_ns):
                    self._arm(due_ns)
                return entry
        heapq.heappush(self._heap, entry)
        if not self._in_pass and (not self._armed_ns or due_ns < self._armed_ns):
            self._arm(due_ns)
        return entry

    @staticmethod
    def cancel(entry: list | None) -> None:
        if entry is not None:
            entry[2] = None

    def _arm(self, at_ns: int) -> None:
        self._armed_ns = at_ns
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(max(at_ns, 1), 1_000_000_000)
        self._settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ref, None)
        self._watcher.ref = True

    def _on_expiry(self) -> None:
        # No read(): timerfd_settime, which every pass ends with (_rearm), resets the
        # expiration count, and so the readability: one system call a pass less.
        self._armed_ns = 0
        heap, pop = self._heap, heapq.heappop
        now_ns = self.last_pass_ns = time.monotonic_ns()
        # Only what was due when this pass began: a callback that schedules its next turn
        # in the past (a send catching up) runs in the next pass, after the hub has read
        # what arrived meanwhile. Otherwise a late generator would send forever and never
        # read a reply (or let Locust stop it).
        due = []
        while heap and heap[0][0] <= now_ns:
            entry = pop(heap)
            if entry[2] is not None:
                due.append(entry)
        for queue in self._lanes.values():
            while queue and queue[0][0] <= now_ns:
                entry = queue.popleft()
                if entry[2] is not None:
                    due.append(entry)
        if len(due) > 1:
            due.sort()  # in time order, so that the lanes stay in order as they refill
        clock = time.monotonic_ns
        self._in_pass = True
        try:
            for due_ns, _, fn in due:
                if fn is not None:
                    fn(due_ns, clock())
        finally:
            self._in_pass = False
            self._rearm()

    def run_if_due(self, now_ns: int) -> None:
        """Run the pass now if its earliest entry was due by `now_ns` (from a read callback:
        the sends due need not wait for the hub to get to the timer's descriptor)."""
        if self._armed_ns and self._armed_ns <= now_ns and not self._in_pass:
            self._on_expiry()

    def _rearm(self) -> None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        earliest = heap[0][0] if heap else 0
        for queue in self._lanes.values():
            while queue and queue[0][2] is None:
                queue.popleft()
            if queue and (not earliest or queue[0][0] < earliest):
                earliest = queue[0][0]
        if earliest:
            if earliest != self._armed_ns:
                self._arm(earliest)
        else:
            self._disarm()

    def _disarm(self) -> None:
        self._armed_ns = 0
        value = self._spec.it_value
        value.tv_sec = value.tv_nsec = 0
        self._settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ref, None)
        self._watcher.ref = False

    def clear(self) -> None:
        """Drop every pending callback and take no new ones until `reopen` (the run is
        stopping: no more scheduled sends, whoever asks). Greenlets in `sleep_until` return at
        once: asleep until a dropped entry, they would wait for Locust's --stop-timeout."""
        self.closed = True
        for sleeper in self._sleepers:
            sleeper.set()
        self._sleepers.clear()
        for entry in self._heap:
            entry[2] = None
        for queue in self._lanes.values():
            for entry in queue:
                entry[2] = None
        self._heap.clear()
        self._lanes.clear()
        self._canary = None
        self._disarm()

    def reopen(self) -> None:
        self.closed = False
        self.last_pass_ns = 0

    def sleep_until(self, at_ns: int) -> bool:
        """Block the calling greenlet until `at_ns` (for code that still runs in a greenlet);
        False when it returns early, or at once, because the run is stopping (`clear`)."""
        if self.closed:
            return False
        if at_ns <= time.monotonic_ns():
            return True
        done = Event()
        entry = self.at(at_ns, lambda _due, _now: done.set())
        self._sleepers.add(done)
        try:
            done.wait()
        finally:
            self._sleepers.discard(done)
            self.cancel(entry)
        return not self.closed

    # The canary: how late the hub runs a timer callback, all run long.

    def start_canary(self) -> None:
        if self._canary is None and self._lag is not None:
            self._canary = self.at(time.monotonic_ns() + CANARY_INTERVAL_NS, self._on_canary)

    def stop_canary(self) -> None:
        self.cancel(self._canary)
        self._canary = None

    def _on_canary(self, due_ns: int, now_ns: int) -> None:
        lag = self._lag
        if lag is None or self._canary is None:
            return
        lag(WAKE_LAG, ns_to_us(now_ns - due_ns))
        following = due_ns + CANARY_INTERVAL_NS
        if following <= now_ns:  # the hub was blocked past whole intervals: one sample for it
            following = now_ns + CANARY_INTERVAL_NS
        self._canary = self.at(following, self._on_canary)


class Channel(ServerFrames):
    """One connection inside the engine: its read watcher, frame splitting and send queue.

    Pings, pongs (`on_pong`), closes and fragments are handled by ServerFrames.other_frame.
    """

    __slots__ = (
        "conn", "handler", "ended", "error", "closed", "deadline_ns",
        "_recv", "_send", "_pending", "_buf", "_reader", "_writer", "_out", "_read_bytes",
    )  # fmt: skip

    def __init__(self, conn: WsConnection, handler: Handler) -> None:
        super().__init__()
        self.deflate = conn.deflate  # the compression context goes on where the upgrade left it
        self.conn = conn
        self.handler = handler
        self.ended = Event()
        self.error: WsError | None = None
        self.closed = False
        self.deadline_ns = 0  # perf_counter_ns; the watchdog expires the channel past it
        sock = conn.sock
        sslobj = getattr(sock, "_sslobj", None)
        if sslobj is not None:  # wss://: the TLS object reads and writes, never blocking
            self._recv, self._send, self._pending = sslobj.read, sslobj.write, sslobj.pending
        else:
            raw = getattr(sock, "_sock", sock)  # gevent's socket wraps the OS-level one
            self._recv, self._send, self._pending = raw.recv, raw.send, None
        self._buf = conn.take_buffer()
        self._read_bytes = READ_MIN_BYTES
        # Made on the first send the socket cannot take: an idle connection keeps none
        # (an empty deque is 600 bytes, a fifth of what a held connection may cost).
        self._out: deque[bytes | memoryview] | None = None
        self._reader = get_hub().loop.io(sock.fileno(), _EV_READ)
        self._writer = None  # the write watcher, made on the first backlog as `_out` is
        watchdog().forget(conn)
        watchdog().watch(self)

    def start(self) -> None:
        self._reader.start(self._on_readable)
        if self._buf:  # bytes that came with the upgrade response (a push server's first)
            data, self._buf = self._buf, b""
            self._consume(data, time.monotonic_ns())

    # Reading

    def _on_readable(self) -> None:
        recv, size = self._recv, self._read_bytes
        try:
            data = recv(size)
            if self._pending is not None:
                while self._pending():
                    data += recv(RECV_BYTES)
        except _WOULD_BLOCK:
            return
        except Exception as exc:  # reset, TLS error: the connection is gone
            self._fail(classify(exc, "recv"))
            return
        if not data:
            self._fail(ConnectionLost("connection lost without close frame"))
            return
        self._read_bytes = _next_read_size(len(data), size)
        self._consume(data, time.monotonic_ns())

    def _consume(self, data: bytes, now_ns: int) -> None:
        buf = self._buf + data if self._buf else data
        frames: list[tuple[int, bytes]] = []
        try:
            pos = split_frames(buf, 0, frames)
        except ValueError:
            self._fail(ProtocolViolation("protocol error: masked frame from server"))
            return
        self._buf = buf[pos:] if pos < len(buf) else b""
        on_message = self.handler.on_message
        try:
            for first, payload in frames:
                if first == 0x82 or first == 0x81:
                    on_message(payload, now_ns)
                else:
                    message = self.other_frame(first, payload, now_ns)
                    if message is not None:
                        on_message(message, now_ns)
                if self.closed:
                    return
        except WsError as exc:
            self._fail(exc)
        except Exception as exc:  # a handler's bug must end this connection, not the hub
            self._fail(classify(exc, "handling a message"))

    # Writing

    def send(self, frame: bytes) -> None:
        """Send one frame now, or queue it behind what the socket has not yet taken."""
        if self._out:
            self._out.append(frame)
            return
        try:
            sent = self._send(frame)
        except _WOULD_BLOCK:
            sent = 0
        except Exception as exc:
            self._send_failed(exc)
            return
        if sent < len(frame):
            # A TLS write is all or nothing and retried with the same bytes; a plain one
            # continues where it stopped.
            rest = frame if self._pending is not None else memoryview(frame)[sent:]
            if self._out is None:
                self._out = deque()
                self._writer = get_hub().loop.io(self.conn.sock.fileno(), _EV_WRITE)
            self._out.append(rest)
            self._writer.start(self._on_writable)

    answer = send  # ServerFrames' pong and close echo: a failed send fails the channel

    def _on_writable(self) -> None:
        out = self._out
        if out is None:
            return
        try:
            while out:
                chunk = out[0]
                sent = self._send(chunk)
                if sent < len(chunk):
                    if self._pending is None:
                        out[0] = memoryview(chunk)[sent:]
                    return
                out.popleft()
        except _WOULD_BLOCK:
            return
        except Exception as exc:
            self._send_failed(exc)
            return
        self._writer.stop()

    def _send_failed(self, exc: BaseException) -> None:
        """A send hit a reset: the server has usually said why first (a close frame, 1009 for
        a message over its limit), and that is already here to read. Report that, not the reset.
        """
        with contextlib.suppress(*_WOULD_BLOCK, OSError):
            while not self.closed:
                data = self._recv(RECV_BYTES)
                if not data:
                    break
                self._consume(data, time.monotonic_ns())
        self._fail(classify(exc, "send"))  # nothing said why (no-op if the frame ended it)

    @property
    def backlog(self) -> int:
        """Frames waiting for the socket (TCP back-pressure)."""
        return len(self._out) if self._out else 0

    # Ending

    def expire(self) -> None:
        """Called by the watchdog past `deadline_ns`."""
        self._fail(WsTimeout(f"timeout: no reply within {self.conn.timeout_ns / 1e9:g} s"))

    def _fail(self, error: WsError) -> None:
        if self.closed:
            return
        self.error = error
        self._release()
        self.handler.on_end(error)
        self.ended.set()

    def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close politely (a close frame, without waiting for the answer) and release the socket."""
        if self.closed:
            return
        if not self._out:
            with contextlib.suppress(*_WOULD_BLOCK, OSError, ValueError):
                self._send(client_frame(FIN | OP_CLOSE, close_payload(code)))
        self._release()
        self.handler.on_end(None)
        self.ended.set()

    def _release(self) -> None:
        self.closed = True
        self._reader.stop()
        if self._writer is not None:
            self._writer.stop()
        self._out = None
        watchdog().forget(self)
        self.conn.abort()  # watchers first: libev must not watch a closed descriptor


class ArrivalChannel(Channel):
    """A channel whose messages are timed when they reached the socket: the kernel's receive
    time of each read (SO_TIMESTAMPNS; of its last segment, when it holds several), not the
    time the hub got to it. A scenario whose messages come in bursts (a fan-out: a thousand
    members' copies at once) times the server's delivery this way rather than the generator's
    pace through the burst; how long the generator took to read each one is its "read lag".
    Plain TCP only (a TLS record is timed by the hub, as in Channel).

    Sends due come first: a read that finds the timer past due runs its pass before the hub
    reads on, so a burst of a thousand arrivals does not hold back the scheduled sends (whose
    lateness is in a figure timed from an intended send) while it is read. Only here: where a
    message is timed when read, the canary must still see how long the hub was busy reading.
    """

    __slots__ = ("_recvmsg", "_read_lag", "_run_if_due")

    def __init__(
        self, conn: WsConnection, handler: Handler, lag: Callable[[str, int], None],
        timer: Timer,
    ) -> None:  # fmt: skip
        super().__init__(conn, handler)
        arrival.enable(conn.sock)
        self._recvmsg = getattr(conn.sock, "_sock", conn.sock).recvmsg
        self._read_lag = lag
        self._run_if_due = timer.run_if_due

    def _on_readable(self) -> None:
        size = self._read_bytes
        try:
            data, ancillary, _, _ = self._recvmsg(size, arrival.SPACE)
        except _WOULD_BLOCK:
            return
        except Exception as exc:
            self._fail(classify(exc, "recv"))
            return
        now_ns = time.monotonic_ns()
        if not data:
            self._fail(ConnectionLost("connection lost without close frame"))
            return
        arrived_ns = arrival.arrived_ns(ancillary, now_ns)
        if arrived_ns is None:
            arrived_ns = now_ns
        else:
            self._read_lag(READ_LAG, ns_to_us(now_ns - arrived_ns))
        self._read_bytes = _next_read_size(len(data), size)
        self._consume(data, arrived_ns)
        self._run_if_due(now_ns)


def _next_read_size(got: int, size: int) -> int:
    """The next recv() size: recv() allocates the whole size asked for, so small for the usual
    small message, larger while reads come back full (big messages, the watcher calling
    again), smaller again when they shrink."""
    if got >= size:
        return min(size * 4, READ_MAX_BYTES)
    if size > READ_MIN_BYTES and got < size // 16:
        return size // 2
    return size


class Engine:
    """The engine of one process (and gevent hub): its Timer and the recorder it reports to."""

    def __init__(self, lag: Callable[[str, int], None] | None = None) -> None:
        self.timer = Timer(lag)
        self.stopped_ns = 0  # monotonic ns when the run stopped sending; 0 while it runs

    def stop_sending(self) -> None:
        """The run is stopping: make no more scheduled sends, so that an overloaded
        generator can stop its users in time; schedules count what was due until the
        timer's last pass (now, when none ran).

        Locust's stop holds the hub before it tells anyone (its stop logs, looks up its
        caller's source lines): 25-40 ms in every point measured, once 290 ms, in which no
        pass ran and, counted up to now, every send due then was "missed" (95 % of sends made
        at 2,500 msgs/s, a point flagged generator-bound whose send lag p99 was 60 µs). A
        generator behind its schedule keeps running passes, so what it owed before the last
        one still counts as missed.
        """
        self.stopped_ns = self.timer.last_pass_ns or time.monotonic_ns()
        self.timer.clear()

    def resume(self) -> None:
        """A new run (the web UI starts again): schedules count from their own start."""
        self.stopped_ns = 0
        self.timer.reopen()

    def schedule_now_ns(self) -> int:
        """Until when a schedule's sends were due: now, or when the run began stopping."""
        return self.stopped_ns or time.monotonic_ns()

    def attach(self, conn: WsConnection, handler: Handler, at_arrival: bool = False) -> Channel:
        """Hand an open connection to the engine; call `start()` on the result to read.

        `at_arrival`: time its messages at their arrival in the kernel (ArrivalChannel) when
        the connection is plain TCP and the run records lags.
        """
        lag = self.timer._lag
        # A TLS record is read by its SSL object, which has no receive timestamps.
        if at_arrival and lag is not None and getattr(conn.sock, "_sslobj", None) is None:
            return ArrivalChannel(conn, handler, lag, self.timer)
        return Channel(conn, handler)


_engines: dict[tuple[int, object], Engine] = {}


def engine(lag: Callable[[str, int], None] | None = None) -> Engine:
    """This process's engine (a forked Locust worker must not share its parent's timerfd)."""
    key = (os.getpid(), get_hub())
    found = _engines.get(key)
    if found is None:
        found = _engines[key] = Engine(lag)
    elif lag is not None and found.timer._lag is None:
        found.timer._lag = lag
    return found
