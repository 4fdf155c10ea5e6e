"""A target's own stops for garbage collection, timed and said on stderr.

CPython's full collection (generation 2) walks every object it tracks. A server holding 10,000
WebSocket connections tracks hundreds of thousands (about 660,000 in the websockets target,
measured with gc.callbacks), and one collection then stops its event loop for about 0.3 s:
every connection's messages wait, and a point's p99 is that pause. Each collection that stopped
the process for REPORT_MS or more is one stderr line (protocol.GcPause), so that the harness can
put a latency tail down to the server's own pause rather than leave it unexplained. The cost is
two clock readings per collection (a few hundred collections a second at most).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any, TextIO

from targets.protocol import GcPause

REPORT_MS = 10.0  # shorter stops are not what a latency tail in milliseconds is made of


def install(stream: TextIO | None = None) -> None:
    """Time this process's collections from now on; report the long ones on `stream` (stderr)."""
    if any(getattr(cb, "wsbench_pauses", False) for cb in gc.callbacks):
        return  # already timing (a second ready)
    out = stream or sys.stderr
    began: list[float] = [0.0, 0.0, 0.0]  # perf_counter, thread_time, time.time at "start"
    pid = os.getpid()

    def on_collect(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[:] = time.perf_counter(), time.thread_time(), time.time()
            return
        wall_ms = (time.perf_counter() - began[0]) * 1e3
        if wall_ms < REPORT_MS:
            return
        cpu_ms = (time.thread_time() - began[1]) * 1e3
        pause = GcPause(wall_ms, cpu_ms, int(info.get("generation", 0)), began[2], pid)
        print(pause.line(), file=out, flush=True)

    on_collect.wsbench_pauses = True  # type: ignore[attr-defined]
    gc.callbacks.append(on_collect)
