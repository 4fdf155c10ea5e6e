"""Child processes of a benchmark: each pinned to one CPU, dying with us, always stopped.

Every child gets its CPU set before exec (so every thread it starts inherits it), the whole
open-file hard limit (10,000 connections are 10,000 files), and PR_SET_PDEATHSIG: if the
benchmark is killed outright, the kernel kills its children too. `stop` ends the child's whole
process group (Locust's and the targets' own children go with it). All of it is common.procs,
with the choices every benchmark child shares.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from common import procs as child
from common.procs import stop as stop  # re-exported: the benchmarks stop their children here

READY_TIMEOUT_S = 30.0


def spawn(
    cmd: Sequence[str], cpu: int, log_path: Path, cwd: Path | None = None, stdout_pipe: bool = False
) -> subprocess.Popen[str]:
    """Start `cmd` on `cpu` in its own session; stderr (and stdout unless piped) to `log_path`."""
    return child.spawn(
        cmd, log_path, text=True, stdout_pipe=stdout_pipe, nofile=child.HARD, cpu=cpu, cwd=cwd,
        die_signal=signal.SIGKILL,
    )  # fmt: skip


@dataclass
class Server:
    """A running sink: its URL (ws://HOST:PORT, no path) and its process, for CPU readings.

    `revive()` starts it again if it died (on a shared box something may kill it): the URL
    and process then change, so read them at each use.
    """

    name: str
    cmd: Sequence[str]
    cpu: int
    log_path: Path
    url: str = ""
    process: psutil.Process | None = None  # type: ignore[assignment]
    proc: subprocess.Popen[str] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.proc = spawn(self.cmd, self.cpu, self.log_path, stdout_pipe=True)
        line = _ready_line(self.proc)
        match = re.fullmatch(r"ready (ws://\S+)", line)
        if not match:
            stop(self.proc)
            raise RuntimeError(f"{self.name} did not start: {line!r} (see {self.log_path})")
        self.url, self.process = match[1], psutil.Process(self.proc.pid)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def revive(self) -> bool:
        """Start it again if it is gone; True if it had to be."""
        if self.alive:
            return False
        code = self.proc.returncode if self.proc is not None else None
        with self.log_path.open("a") as log:
            log.write(f"bench: {self.name} had exited ({code}); started again\n")
        self.restarts += 1
        self.start()
        return True

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@contextlib.contextmanager
def server(name: str, cmd: Sequence[str], cpu: int, log_path: Path) -> Iterator[Server]:
    """Start a server that prints `ready ws://HOST:PORT`; yield it once ready; stop it after."""
    running = Server(name, list(cmd), cpu, log_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _ready_line(proc: subprocess.Popen[str]) -> str:
    """Its ready line; else what `Server.start` has always reported: "" when it exited first."""
    try:
        return child.wait_ready(proc, READY_TIMEOUT_S)
    except child.NotReady:
        return f"no ready line in {READY_TIMEOUT_S:.0f} s"
    except child.ExitedEarly:
        return ""


def target_command(name: str) -> list[str]:
    """A wsbench reference target on uvloop, or the picows sink (`picows`)."""
    if name == "picows":
        return [sys.executable, "-m", "benchmarks.sink"]
    return [sys.executable, "-m", "targets", name, "--loop", "uvloop", "--port", "0"]


class CpuMeter:
    """CPU time of a process (and its children) over an interval, % of one CPU."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.start()

    def _cpu_s(self) -> float:
        try:
            times = self.process.cpu_times()
        except psutil.Error:
            return self._last_cpu_s
        self._last_cpu_s = times.user + times.system + times.children_user + times.children_system
        return self._last_cpu_s

    def start(self) -> None:
        self._last_cpu_s = 0.0
        self.wall_s, self.cpu_s = time.monotonic(), self._cpu_s()

    def pct(self) -> float:
        return 100 * (self._cpu_s() - self.cpu_s) / max(time.monotonic() - self.wall_s, 1e-9)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages and the CPU count, as `uptime` says them."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"
