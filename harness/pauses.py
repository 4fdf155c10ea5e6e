"""The target's own stops for garbage collection during a point's measured windows, from the
lines a reference target prints (targets/pauses.py): a latency tail the server made itself,
named as such rather than left unexplained.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.schema import TARGET_LOG
from targets.protocol import GcPause


def read(point_dir: Path) -> list[GcPause]:
    """Every pause the target's processes reported in the point's target.log."""
    try:
        text = (point_dir / TARGET_LOG).read_text(errors="replace")
    except OSError:
        return []
    return [p for p in map(GcPause.parse, text.splitlines()) if p is not None]


def measured_period(document: Mapping[str, Any]) -> tuple[float, float] | None:
    """(from, to) unix seconds of the windows a point's totals count: from the steady start
    (--skip-ramp) or the first window, to the end of the last that measured anything (the
    windows while Locust stops measure nothing, and what the target does as its connections
    close is no point's latency); None without such windows."""
    starts = sorted(float(w["start_unix_s"]) for w in document.get("windows") or ()
                    if w.get("start_unix_s") is not None and w.get("histograms"))  # fmt: skip
    if not starts:
        return None
    steady = document.get("steady_from_unix_s")
    window_s = float(document.get("window_s") or 1.0)
    return (float(steady) if steady is not None else starts[0]), starts[-1] + window_s


# A point's p99 within these multiples of its target's longest pause is that pause: the pause
# is of the p99's size, and long enough to hold up 1 % of the messages.
MADE_P99 = (0.25, 2.0)


def summarise(
    pauses: list[GcPause], period: tuple[float, float] | None, p99_us: float | None
) -> dict[str, Any] | None:
    """The pauses that overlap `period`: how many, in all, the longest, and whether the
    longest made the point's p99 (summary target.gc_pauses); None when there were none.

    A pause that began before the measured windows and ended in them counts: the messages
    sent into it are answered, late, in those windows (websockets at 10,000 connections: the
    ramp's last full collection, 434 ms from 0.13 s before the steady windows, was their p99
    of 394 ms).
    """
    if period is None:
        return None
    mine = [p for p in pauses if p.at_unix_s < period[1]
            and p.at_unix_s + p.wall_ms / 1e3 > period[0]]  # fmt: skip
    if not mine:
        return None
    longest = max(mine, key=lambda p: p.wall_ms)
    found = {
        "count": len(mine),
        "total_ms": round(sum(p.wall_ms for p in mine), 1),
        "longest_ms": longest.wall_ms,
        "longest_cpu_ms": longest.cpu_ms,
        "longest_generation": longest.generation,
        "longest_at_s": round(longest.at_unix_s - period[0], 2),
        "processes": len({p.pid for p in mine}),
        "made_p99": bool(p99_us) and MADE_P99[0] <= p99_us / (longest.wall_ms * 1e3) <= MADE_P99[1],
    }
    found["sentence"] = sentence(found)
    return found


def sentence(found: Mapping[str, Any]) -> str:
    """The pauses in words (the console warning, the report's explanation)."""
    count = int(found["count"])
    how = (f"once in the measured windows, for {found['longest_ms']:,.0f} ms" if count == 1 else
           f"{count} times in the measured windows ({found['total_ms']:,.0f} ms in all), the "
           f"longest for {found['longest_ms']:,.0f} ms")  # fmt: skip
    at_s = float(found["longest_at_s"])
    when = f"{at_s:g} s in" if at_s >= 0 else f"from {-at_s:g} s before they began"
    return (f"Python's garbage collector stopped the target {how} (generation "
            f"{found['longest_generation']}, {found['longest_cpu_ms']:,.0f} ms of it the "
            f"collector's CPU, {when}): every message to that process "
            f"waited as long, so a latency tail up to that is the server's own")  # fmt: skip
