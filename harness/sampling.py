"""Resource samples of a run's processes, once a second: CPU, RSS, open files, sockets; and the
TCP socket counts of the run's network namespaces (sockstat.csv: TCP_inuse, TCP_tw, ...).

Each role ("target", "locust") is a process tree: the process the runner started and its
children (SO_REUSEPORT workers, Locust's forked workers), summed. Sockets are counted from
/proc/PID/fd rather than from the connection table, which costs the same at 100k connections.
"""

from __future__ import annotations

import contextlib
import csv
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import psutil

from common import schema
from kernel.counters import CounterError, parse_sockstat

INTERVAL_S = 1.0
# Above this many open files, sockets are counted in full only every RECOUNT_EVERY samples.
# Counting reads every fd's link: at 1,000 connections each for the target and Locust that was
# 13 ms of the harness's 22 ms of CPU a second (py-spy, 2026-12-04), in one burst, partly on
# the generator's CPU, where the generator then waited its turn (its send lag).
BIG_FDS = 256
RECOUNT_EVERY = 10
# From /proc/PID/net/sockstat: inuse and tw are the namespace's; orphan, alloc and mem (pages)
# are the whole machine's.
SOCKSTAT_COLUMNS = ("TCP_inuse", "TCP_orphan", "TCP_tw", "TCP_alloc", "TCP_mem")
SOCKSTAT_FIELDS = ["unix_s", "elapsed_s", "side", *SOCKSTAT_COLUMNS]


@dataclass(frozen=True)
class Sample:
    unix_s: float
    elapsed_s: float
    role: str
    processes: int
    cpu_pct: float  # of one core, summed over the tree
    rss_bytes: int
    open_files: int
    sockets: int


COLUMNS = [f.name for f in fields(Sample)]


def count_sockets(pid: int) -> int:
    try:
        entries = os.scandir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    n = 0
    with entries:
        for entry in entries:
            try:
                if os.readlink(entry.path).startswith("socket:"):
                    n += 1
            except OSError:
                continue
    return n


def descendants(pid: int) -> list[int]:
    """Every descendant of `pid`, from its threads' /proc children lists: the tree alone, where
    psutil's children() reads every process on the machine (5 ms of the harness's CPU a second
    per tree, measured, partly on the generator's CPU)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


class _Tree:
    """A root process and its descendants, with CPU % measured between calls."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.root.cpu_percent(None)  # the first call starts the measurement, returns 0
        self.known: dict[int, psutil.Process] = {root_pid: self.root}
        # pid -> (sockets, open files, samples since) at the last full count of a big process
        self.counted: dict[int, tuple[int, int, int]] = {}
        self.new: set[int] = set()  # pids members() saw for the first time

    def members(self) -> list[psutil.Process]:
        if not self.root.is_running():
            return []
        current = {}
        self.new = set()
        for pid in [self.root.pid, *descendants(self.root.pid)]:
            # Keep the same Process objects: cpu_percent() measures since its previous call.
            proc = self.known.get(pid)
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)
                except psutil.NoSuchProcess:
                    continue
                self.new.add(pid)
            current[pid] = proc
        self.known = current
        return list(current.values())

    def sample(self, role: str, elapsed_s: float) -> Sample:
        cpu = 0.0
        rss = files = socks = 0
        members = self.members()
        for proc in members:
            try:
                with proc.oneshot():
                    # A process first seen now was only just primed: its CPU counts from the
                    # next sample (measured over microseconds, it read thousands of %).
                    cpu += 0.0 if proc.pid in self.new else proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    fds = proc.num_fds()
                files += fds
                socks += self._sockets(proc.pid, fds)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return Sample(
            round(time.time(), 3), round(elapsed_s, 3), role, len(members), round(cpu, 1), rss,
            files, socks,
        )  # fmt: skip

    def _sockets(self, pid: int, fds: int) -> int:
        """Sockets of one process. Counting means reading every fd's link: at 20,000 fds a
        process that is most of a core's worth of system time a second. A process with over
        BIG_FDS is counted in full every RECOUNT_EVERY samples; in between, its change in open
        files is taken as sockets (nearly all it opens are)."""
        last = self.counted.get(pid)
        if fds > BIG_FDS and last is not None and last[2] < RECOUNT_EVERY:
            self.counted[pid] = (last[0], last[1], last[2] + 1)
            return max(0, last[0] + fds - last[1])
        sockets = count_sockets(pid)
        self.counted[pid] = (sockets, fds, 1)
        return sockets

    def rss_bytes(self) -> int:
        """Resident memory of the whole tree now."""
        total = 0
        for proc in self.members():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total


def _sockstat(net_dir: Path) -> dict[str, int]:
    try:
        gauges = parse_sockstat((net_dir / "sockstat").read_text())
    except (OSError, CounterError):
        return {}  # the namespace is gone: the run is ending
    return {name: gauges.get(name, 0) for name in SOCKSTAT_COLUMNS}


def _combined(samples: list[Sample]) -> Sample:
    """One sample of a role from the samples of its trees (sums; the first one's times)."""
    first = samples[0]
    return Sample(
        first.unix_s, first.elapsed_s, first.role,
        sum(s.processes for s in samples), round(sum(s.cpu_pct for s in samples), 1),
        sum(s.rss_bytes for s in samples), sum(s.open_files for s in samples),
        sum(s.sockets for s in samples),
    )  # fmt: skip


class Sampler:
    """A background thread writing samples of the given process trees to a CSV file."""

    def __init__(self, csv_path: Path, interval_s: float = INTERVAL_S) -> None:
        self.csv_path = csv_path
        self.interval_s = interval_s
        self.trees: dict[str, list[_Tree]] = {}  # a role may span several process trees
        self.net_dirs: dict[str, Path] = {}  # side -> /proc/PID/net of a namespace
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def watch(self, role: str, pid: int) -> None:
        """Sample the tree rooted at `pid` as (part of) `role`."""
        with self._lock, contextlib.suppress(psutil.NoSuchProcess):
            tree = _Tree(pid)  # first: a process already gone must not leave an empty role
            self.trees.setdefault(role, []).append(tree)

    def watch_sockstat(self, side: str, net_dir: Path) -> None:
        """Sample the TCP socket counts of the namespace whose /proc/PID/net is `net_dir`
        (before start())."""
        with self._lock:
            self.net_dirs[side] = net_dir

    def rss_bytes(self, role: str) -> int | None:
        """Resident memory of a watched role now (e.g. the idle target before load starts)."""
        trees = self.trees.get(role)
        return sum(tree.rss_bytes() for tree in trees) if trees else None

    def sockets(self, role: str) -> int | None:
        """Sockets a watched role holds now (e.g. the idle target's listeners)."""
        trees = self.trees.get(role)
        if not trees:
            return None
        return sum(count_sockets(proc.pid) for tree in trees for proc in tree.members())

    def start(self) -> Sampler:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        net_dirs = dict(self.net_dirs)  # the namespaces are known before start()
        with self.csv_path.open("w", newline="") as f, contextlib.ExitStack() as more:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            if net_dirs:
                socks_file = more.enter_context(
                    self.csv_path.with_name(schema.SOCKSTAT_CSV).open("w", newline="")
                )
                socks = csv.DictWriter(socks_file, SOCKSTAT_FIELDS)
                socks.writeheader()
            while not self._stop.wait(self.interval_s):
                with self._lock:
                    trees = list(self.trees.items())
                now, elapsed = round(time.time(), 3), round(time.monotonic() - self._start, 3)
                for side, net_dir in net_dirs.items():
                    row = _sockstat(net_dir)
                    if row:
                        socks.writerow({"unix_s": now, "elapsed_s": elapsed, "side": side, **row})
                if net_dirs:
                    socks_file.flush()
                for role, members in trees:
                    sample = _combined([tree.sample(role, elapsed) for tree in members])
                    if not sample.processes:
                        continue  # exited: a row of zeros would drag the means down
                    self.samples.append(sample)
                    writer.writerow(asdict(sample))
                f.flush()

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s * 5)
        return self.samples


def summarise(
    samples: list[Sample], role: str, period: tuple[float, float] | None = None
) -> dict[str, float | int | str | None]:
    """Peak figures of one role over a run, and its mean CPU over `period` (unix seconds: the
    point's measured windows, when it has them and they hold a sample) or else the whole run.

    The mean is what CPU per message or per connect divides by the measured rate: over the
    whole run it would average in the ramp, and the stop (idle seconds, or every connection
    closing at once). A sample covers the second before it: it counts when its middle is in
    `period`. `cpu_pct_mean_over` says which it is."""
    mine = [s for s in samples if s.role == role]
    if not mine:
        return {"cpu_pct_mean": None, "cpu_pct_mean_over": None, "cpu_pct_max": None,
                "rss_bytes_max": None, "open_files_max": None, "sockets_max": None}  # fmt: skip
    inside = [s for s in mine if period and period[0] <= s.unix_s - INTERVAL_S / 2 < period[1]]
    timed = inside or mine
    return {
        "cpu_pct_mean": round(sum(s.cpu_pct for s in timed) / len(timed), 1),
        "cpu_pct_mean_over": (schema.CPU_MEAN_MEASURED if inside
                              else schema.CPU_MEAN_WHOLE_RUN),  # fmt: skip
        "cpu_pct_max": max(s.cpu_pct for s in mine),
        "rss_bytes_max": max(s.rss_bytes for s in mine),
        "open_files_max": max(s.open_files for s in mine),
        "sockets_max": max(s.sockets for s in mine),
    }
