"""The kernel's receive time of a read (socket(7) SO_TIMESTAMPNS), on the monotonic clock.

A socket with `enable(sock)` set brings, with each recvmsg(size, SPACE), the time its data
(the last segment of it) reached the socket, as a CLOCK_REALTIME timespec; `arrived_ns` puts
it on CLOCK_MONOTONIC, the clock every latency here is timed on. Used by the engine's
ArrivalChannel (messages) and by the upgrade of a plain-TCP connection (the 101 response):
both then end a latency when the data arrived, not when a busy generator got to it.

The kernel stamps received packets only while some socket on the machine asks for stamps, and
it switches that on (and, after the last such socket closes, off) later, from a work queue: a
socket's first segments after `enable` could come unstamped, and be timed when read. The first
`enable` in a process therefore opens a socket that asks for stamps for the process's lifetime,
and waits until a segment it sends itself comes back stamped.
"""

from __future__ import annotations

import os
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

STAMPS_ON_WAIT_S = 1.0  # how long the first enable waits for the kernel to stamp
_holders: dict[int, socket.socket] = {}  # pid -> the socket keeping stamps on for that process


def enable(sock: socket.socket) -> None:
    """Ask for receive timestamps on `sock` (a gevent socket's own descriptor is set)."""
    if os.getpid() not in _holders:
        _hold_stamps_on()
    raw = getattr(sock, "_sock", sock)
    raw.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)


def _hold_stamps_on() -> None:
    """Open this process's stamp-holding socket and wait (STAMPS_ON_WAIT_S at most) until the
    kernel stamps the segments it receives; past that, reads unstamped are timed when read.

    The wait is on a TCP pair: a datagram is stamped at its read when it came unstamped, so
    only a TCP segment shows whether the kernel stamps on receipt."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    _holders[os.getpid()] = holder
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
    with sender, receiver:
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        receiver.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        receiver.settimeout(STAMPS_ON_WAIT_S)
        deadline = time.monotonic() + STAMPS_ON_WAIT_S
        while time.monotonic() < deadline:
            sender.sendall(b"\0")
            _, ancillary, _, _ = receiver.recvmsg(1, SPACE)
            if any(kind == _SCM_TIMESTAMPNS for _, kind, _ in ancillary):
                return
            time.sleep(0.0005)


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
