"""`python -m benchmarks.closed_loop`: how efficient is closed-loop echo? (A benchmark, not a test.)

One fast echo target is pinned to one CPU and every Locust process to another. Variants:

    naive         benchmarks/naive_echo.py: websocket-client create_connection/send/recv
    echo          scenarios/echo.py with the same 32-byte text messages
    echo, no hdr  the same with --no-histograms: what µs recording costs

Each round runs every variant alone (round trips per second on a whole CPU), then two pairs
side by side on the Locust CPU: naive with echo, and echo with echo-no-hdr. Side by side, the
kernel gives both processes the same CPU time, so the ratio of their round trips per second is
the ratio of their efficiency, and other load on the machine hits both alike: these ratios are
the verdict. Alone figures swing with whatever else the machine runs (and CPU per round trip
falls when a process is starved, as each poll then finds more work), so they are context.
The server's CPU is printed: well under 100 % means the generator, not the server, set the
pace, as intended here.

The recording cost is also measured directly, free of the noise of whole runs: the CPU time of
recording, shipping and merging one window's samples, per sample, against echo's CPU per round
trip.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks import pinned

BENCHMARKS = Path(__file__).resolve().parent
SCENARIOS = BENCHMARKS.parent / "scenarios"
VARIANTS = {
    "naive": (BENCHMARKS / "naive_echo.py", ()),
    "echo": (SCENARIOS / "echo.py", ("--text", "--payload-bytes", "32")),
    "echo, no hdr": (SCENARIOS / "echo.py", ("--text", "--payload-bytes", "32", "--no-histograms")),
}
PAIRS = (("naive", "echo"), ("echo", "echo, no hdr"))


@dataclass(frozen=True)
class Run:
    """One Locust process's run: echo round trips/s, its CPU and the server's (% of a CPU)."""

    variant: str
    rate: float
    locust_cpu_pct: float
    server_cpu_pct: float

    @property
    def cpu_us_per_round_trip(self) -> float:
        return self.locust_cpu_pct / 100 * 1e6 / self.rate


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.closed_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="raw", help="reference target (default %(default)s)")
    parser.add_argument("--users", type=int, default=10, help="connections per Locust process")
    parser.add_argument("--duration-s", type=int, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of runs")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the target")
    parser.add_argument("--locust-cpu", type=int, default=1, help="CPU for Locust")
    return parser.parse_args(argv)


@contextlib.contextmanager
def running_target(name: str, cpu: int, tmp: Path) -> Iterator[tuple[str, psutil.Process]]:
    """A reference target (or `picows`, the sink) pinned to `cpu`; its URL and process."""
    with pinned.server(name, pinned.target_command(name), cpu, tmp / f"{name}.log") as server:
        yield server.url, server.process


class CpuWatch:
    """A process's CPU use while the block runs, % of one CPU (median of 1 s samples)."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.pct = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.process.cpu_percent()
        samples = []
        while not self._stop.wait(1.0):
            with contextlib.suppress(psutil.NoSuchProcess):
                samples.append(self.process.cpu_percent())
        # The median keeps the steady part, not start-up or shutdown.
        self.pct = statistics.median(samples) if samples else 0.0

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_together(
    variants: Sequence[str], url: str, server: psutil.Process, args: argparse.Namespace, tmp: Path
) -> list[Run]:
    """Run each of `variants` as its own headless Locust, all at once on the Locust CPU."""
    procs: list[subprocess.Popen[str]] = []
    stats_files: list[Path] = []
    logs: list[Path] = []
    for n, variant in enumerate(variants):
        locustfile, extra = VARIANTS[variant]
        stats_files.append(tmp / f"run{n}")
        command = [
            sys.executable, "-m", "locust", "-f", str(locustfile), "--host", url,
            "--headless", "-u", str(args.users), "-r", str(args.users),
            "-t", f"{args.duration_s}s", "--only-summary", "--loglevel", "WARNING",
            "--json-file", str(stats_files[-1]), *extra,
        ]  # fmt: skip
        logs.append(tmp / f"run{n}.log")
        procs.append(pinned.spawn(command, args.locust_cpu, logs[-1], cwd=tmp))
    try:
        with contextlib.ExitStack() as stack:
            watches = [stack.enter_context(CpuWatch(psutil.Process(p.pid))) for p in procs]
            server_watch = stack.enter_context(CpuWatch(server))
            for proc in procs:
                proc.wait(args.duration_s + 60)
    finally:
        for proc in procs:
            pinned.stop(proc)
    runs = []
    for variant, proc, log, watch, stats_file in zip(
        variants, procs, logs, watches, stats_files, strict=True
    ):
        if proc.returncode != 0 or not stats_file.with_suffix(".json").exists():
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"bench: {variant} failed (exit {proc.returncode}):\n{tail}")
        runs.append(Run(variant, _rate(stats_file), watch.pct, server_watch.pct))
    return runs


def _rate(stats_file: Path) -> float:
    """Echo round trips per second from Locust's final statistics (--json-file)."""
    entries = json.loads(stats_file.with_suffix(".json").read_text())
    echo = next(e for e in entries if e["name"] == "echo")
    return echo["num_requests"] / (echo["last_request_timestamp"] - echo["start_time"])


def recording_us_per_sample(samples_per_window: int, windows: int = 5) -> float:
    """CPU µs per latency sample to record it, ship its window and merge it (one process)."""
    # Imported here: scenarios/ is the engine under test, and may move under this benchmark.
    from scenarios.latency import Merger, Recorder, encode_all

    rng = random.Random(1)
    values = [int(rng.lognormvariate(5.0, 0.6)) for _ in range(samples_per_window)]
    recorder, merger = Recorder(), Merger()
    start_s = time.process_time()
    for window in range(windows):
        record = recorder.record
        for value in values:
            record("echo", value)
        if hasattr(recorder, "take_raw") and hasattr(merger, "add_counts"):
            # The new engine ships exact counts in-process (histograms only for the master).
            raw = recorder.take_raw()
            merger.add_counts("local", float(window), raw.counts, raw.counters, 0.0, 0)
        else:
            histograms, counters = recorder.take()
            merger.add("local", float(window), encode_all(histograms), counters, 0.0, 0)
        merger.finish_windows(float(window))
    merger.finish_windows()
    merger.total_rows()
    return (time.process_time() - start_s) / (windows * samples_per_window) * 1e6


def median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def report(alone: dict[str, list[Run]], paired: dict[tuple[str, str], list[tuple[Run, Run]]],
           args: argparse.Namespace) -> None:
    print(f"\nalone on CPU {args.locust_cpu} (median of {args.rounds}):")
    print(f"  {'variant':<14}{'round trips/s':>15}{'CPU us/rt':>11}{'Locust CPU%':>13}"
          f"{'server CPU%':>13}")
    for variant, runs in alone.items():
        print(f"  {variant:<14}{median(runs, 'rate'):>15,.0f}"
              f"{median(runs, 'cpu_us_per_round_trip'):>11.1f}"
              f"{median(runs, 'locust_cpu_pct'):>13.0f}{median(runs, 'server_cpu_pct'):>13.0f}")
    print(f"side by side on CPU {args.locust_cpu} (same CPU time for both; median ratio):")
    ratios, per_cpu = {}, {}
    for (a, b), runs in paired.items():
        ratios[a, b] = statistics.median(rb.rate / ra.rate for ra, rb in runs)
        per_cpu[a, b] = statistics.median(
            ra.cpu_us_per_round_trip / rb.cpu_us_per_round_trip for ra, rb in runs
        )
        rates = ", ".join(f"{ra.rate:,.0f} / {rb.rate:,.0f}" for ra, rb in runs)
        print(f"  {b} / {a}: {ratios[a, b]:.2f}x round trips/s, {per_cpu[a, b]:.2f}x round "
              f"trips per CPU second   ({a} / {b} round trips/s: {rates})")
    naive, echo = alone["naive"], alone["echo"]
    # Per CPU second: under contention the two processes' CPU shares can still differ a little.
    print(f"\necho / naive: {per_cpu['naive', 'echo']:.2f}x round trips per CPU second side by "
          f"side ({ratios['naive', 'echo']:.2f}x round trips/s; alone "
          f"{median(echo, 'rate') / median(naive, 'rate'):.2f}x; target >= 1.5x)")
    direct_us = recording_us_per_sample(int(median(echo, "rate")))
    direct_pct = 100 * direct_us / median(echo, "cpu_us_per_round_trip")
    side_pct = 100 * (per_cpu["echo", "echo, no hdr"] - 1)
    print(f"HdrHistogram recording cost: {side_pct:.1f}% more CPU per round trip side by side; "
          f"{direct_pct:.1f}% measured directly ({direct_us:.2f} CPU µs per sample recorded, "
          f"shipped and merged; target <= 5%)")
    server_peak = max(run.server_cpu_pct for runs in alone.values() for run in runs)
    verdict = "not the bottleneck" if server_peak < 90 else "MAY BE THE BOTTLENECK"
    print(f"server ({args.target}, CPU {args.server_cpu}): at most {server_peak:.0f}% of its CPU "
          f"with one Locust: {verdict}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("bench: needs two CPUs (one for the server, one for Locust)", file=sys.stderr)
        return 2
    print(f"generator benchmark: {args.users} connections per Locust, 32-byte text echo, "
          f"{args.duration_s} s runs, {args.rounds} rounds; target {args.target} on CPU "
          f"{args.server_cpu}, Locust on CPU {args.locust_cpu}")
    alone: dict[str, list[Run]] = defaultdict(list)
    paired: dict[tuple[str, str], list[tuple[Run, Run]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="wsbench-bench-") as tmp, running_target(
        args.target, args.server_cpu, Path(tmp)
    ) as (url, server):
        for round_no in range(1, args.rounds + 1):
            for variant in VARIANTS:
                (run,) = run_together([variant], url, server, args, Path(tmp))
                alone[variant].append(run)
                print(f"  round {round_no} alone  {variant:<14}{run.rate:>10,.0f} rt/s  "
                      f"Locust {run.locust_cpu_pct:.0f}%  server {run.server_cpu_pct:.0f}%",
                      flush=True)
            for pair in PAIRS:
                ra, rb = run_together(pair, url, server, args, Path(tmp))
                paired[pair].append((ra, rb))
                print(f"  round {round_no} paired {pair[0]} {ra.rate:,.0f} rt/s | {pair[1]} "
                      f"{rb.rate:,.0f} rt/s  server {ra.server_cpu_pct:.0f}%", flush=True)
    report(dict(alone), dict(paired), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
