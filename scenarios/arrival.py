"""The kernel's receive time of a read (socket(7) SO_TIMESTAMPNS), on the monotonic clock.

A socket with `enable(sock)` set brings, with each recvmsg(size, SPACE), the time its data
(the last segment of it) reached the socket, as a CLOCK_REALTIME timespec; `arrived_ns` puts
it on CLOCK_MONOTONIC, the clock every latency here is timed on. Used by the engine's
ArrivalChannel (messages) and by the upgrade of a plain-TCP connection (the 101 response):
both then end a latency when the data arrived, not when a busy generator got to it.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SCM_TIMESTAMPNS = _SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
SPACE = socket.CMSG_SPACE(_TIMESPEC.size)  # recvmsg()'s ancillary buffer size for one stamp

# CLOCK_REALTIME minus CLOCK_MONOTONIC, and when it was measured (monotonic ns). The two run
# at the same rate (NTP slews both), so the difference moves only when the realtime clock is
# stepped: measured once a second, not per read, and within a few hundred ns.
_clock = [0, 0]
OFFSET_REFRESH_NS = 1_000_000_000


def enable(sock: socket.socket) -> None:
    """Ask for receive timestamps on `sock` (a gevent socket's own descriptor is set)."""
    raw = getattr(sock, "_sock", sock)
    raw.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)


def arrived_ns(ancillary: Iterable[tuple[int, int, bytes]], now_ns: int) -> int | None:
    """When the data of a recvmsg() read at `now_ns` (monotonic) arrived, on the monotonic
    clock; None when the read brought no stamp. Never later than `now_ns`: a stamp past it
    means the realtime clock was stepped, and the offset is measured again at the next read."""
    for _, kind, stamp in ancillary:
        if kind == _SCM_TIMESTAMPNS:
            seconds, ns = _TIMESPEC.unpack(stamp)
            arrived = seconds * 1_000_000_000 + ns - _realtime_offset(now_ns)
            if arrived > now_ns:
                _clock[1] = 0
                return now_ns
            return arrived
    return None


def _realtime_offset(now_ns: int) -> int:
    if now_ns - _clock[1] > OFFSET_REFRESH_NS:
        best = None
        for _ in range(5):  # the monotonic reading between two realtime ones, the closest pair
            before, mono, after = time.time_ns(), time.monotonic_ns(), time.time_ns()
            if best is None or after - before < best[0]:
                best = (after - before, (before + after) // 2 - mono)
        _clock[0], _clock[1] = best[1], now_ns
    return _clock[0]
