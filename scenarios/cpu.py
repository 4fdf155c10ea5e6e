"""Generator honesty: how busy each Locust process was, and whether that makes it the bottleneck.

A process at 90 % of a core or more cannot keep its schedule or read replies promptly, so its
latencies and rates measure the generator rather than the server. Such runs are flagged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil

SATURATED_PCT = 90.0


class CpuSampler:
    """CPU time of this process as a percentage of one core, per window and since start()."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._run_start = self._last = self._now()

    def _now(self) -> tuple[float, float]:
        times = self._process.cpu_times()
        return time.monotonic(), times.user + times.system

    def start(self) -> None:
        self._run_start = self._last = self._now()

    def window_pct(self) -> float:
        """Busy percentage since the previous call (or start())."""
        now = self._now()
        pct = _pct(self._last, now)
        self._last = now
        return pct

    def run_pct(self) -> float:
        """Busy percentage since start()."""
        return _pct(self._run_start, self._now())


def _pct(before: tuple[float, float], after: tuple[float, float]) -> float:
    wall_s = after[0] - before[0]
    return 100.0 * (after[1] - before[1]) / wall_s if wall_s > 0 else 0.0


@dataclass(frozen=True)
class Saturation:
    """The verdict on a run's generator processes."""

    busiest_run_pct: float  # the busiest process's mean over the run
    peak_window_pct: float  # the busiest process in the busiest window
    saturated_windows: int
    windows: int

    @property
    def saturated(self) -> bool:
        """A process averaged >= 90 % of a core: its figures measure the generator."""
        return self.busiest_run_pct >= SATURATED_PCT

    def describe(self) -> str:
        text = (
            f"generator CPU: busiest process {self.busiest_run_pct:.0f}% of a core over the "
            f"run, peak {self.peak_window_pct:.0f}% in a window"
        )
        if self.saturated:
            return text + " -- SATURATED: these figures measure the load generator, not the server"
        if self.saturated_windows:
            return text + (
                f" -- {self.saturated_windows} of {self.windows} windows had a process at "
                f">= {SATURATED_PCT:.0f}%"
            )
        return text


def judge(run_pct_by_process: Mapping[str, float], window_peaks: Iterable[float]) -> Saturation:
    peaks = list(window_peaks)
    return Saturation(
        busiest_run_pct=max(run_pct_by_process.values(), default=0.0),
        peak_window_pct=max(peaks, default=0.0),
        saturated_windows=sum(p >= SATURATED_PCT for p in peaks),
        windows=len(peaks),
    )
