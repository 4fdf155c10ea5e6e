"""Units: the one place a nanosecond interval becomes the integer microseconds we record."""

from __future__ import annotations


def ns_to_us(ns: int) -> int:
    """Nanoseconds -> whole microseconds, half up: 1,499 ns is 1 µs, 1,500 ns is 2 µs.

    Every latency, lag and round trip is recorded through this, so that figures taken in
    different places round alike (integer arithmetic: no float on the per-message path).
    """
    return (ns + 500) // 1000
