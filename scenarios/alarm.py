"""Sleep until a CLOCK_MONOTONIC instant with tens-of-µs precision, for the open-model schedules.

gevent's timers ride on epoll_wait's millisecond timeout: gevent.sleep() ends 0 to 1 ms late
(measured: p50 0.6 ms). An open-model scenario counts that lateness as latency from the
intended send time, which on loopback would dwarf the round trip. A timerfd armed at the
earliest pending instant becomes readable at that instant and epoll returns at once (measured
lateness: p50 about 50 µs, the kernel's wake-up). One timerfd per process serves every waiting
greenlet. Where timerfd is missing (not Linux) this falls back to gevent.sleep.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import os
import sys
import time

import gevent
from gevent.hub import Waiter, get_hub

# Schedules run on time.monotonic_ns (the timerfd's clock) while deadlines and round trips use
# time.perf_counter_ns: the same CLOCK_MONOTONIC on Linux, which this module relies on.
assert not sys.platform.startswith("linux") or (
    time.get_clock_info("perf_counter").implementation
    == time.get_clock_info("monotonic").implementation
)

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_EV_READ = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerfdAlarm:
    """Waiting greenlets in a heap by wake-up time; the timerfd is armed for the earliest."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self._spec = _Itimerspec()
        self._heap: list[tuple[int, int, Waiter]] = []
        self._order = itertools.count()
        self._watcher = get_hub().loop.io(self._fd, _EV_READ)
        self._watcher.ref = False  # an idle alarm must not keep the hub alive
        self._watcher.start(self._on_expiry)

    def _arm(self, at_ns: int) -> None:
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(at_ns, 1_000_000_000)
        self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)

    def _on_expiry(self) -> None:
        # Runs in the hub, where waking a Waiter is allowed.
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        heap, now_ns = self._heap, time.monotonic_ns()
        while heap and heap[0][0] <= now_ns:
            heapq.heappop(heap)[2].switch(None)
        if heap:
            self._arm(heap[0][0])
        else:
            self._watcher.ref = False

    def sleep_until(self, at_ns: int) -> None:
        waiter = Waiter()
        heapq.heappush(self._heap, (at_ns, next(self._order), waiter))
        self._watcher.ref = True
        if self._heap[0][2] is waiter:
            self._arm(at_ns)
        try:
            waiter.get()
        except BaseException:
            # Killed while waiting: leave no dead waiter behind.
            self._heap[:] = [entry for entry in self._heap if entry[2] is not waiter]
            heapq.heapify(self._heap)
            raise


# Per process and hub: a forked worker must not share its parent's timerfd.
_alarms: dict[tuple[int, object], _TimerfdAlarm | None] = {}


def sleep_until(at_ns: int) -> None:
    """Yield until time.monotonic_ns() >= at_ns (returns at once if that is past)."""
    wait_ns = at_ns - time.monotonic_ns()
    if wait_ns <= 0:
        return
    key = (os.getpid(), get_hub())
    if key not in _alarms:
        try:
            _alarms[key] = _TimerfdAlarm()
        except (OSError, AttributeError):
            _alarms[key] = None
    alarm = _alarms[key]
    if alarm is None:
        gevent.sleep(wait_ns / 1e9)
    else:
        alarm.sleep_until(at_ns)
