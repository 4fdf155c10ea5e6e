"""`make bench-scale`'s figures: how many idle connections each target held, for how long, and
at what memory per connection. Reads a finished run folder (harness/sweeps/scale.toml):

    python -m benchmarks.scale RUN_DIR [--hold-s 60]

Held connections are counted from the server's side, once a second: in a kernel profile's
namespace, the TCP sockets in use there (sockstat.csv); on the host, the sockets the target's
processes have open (resources.csv). Listening sockets are not counted. Memory per connection is the
growth of the server's resident memory over its idle size, divided by the connections held.
Exit status 0 when every point held all its connections for --hold-s seconds with no failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import schema
from common.schema import PointResult, PointStatus

KIB = 1024


@dataclass
class Held:
    target: str
    users: int
    status: str
    failures: int | None
    failure_names: list[str]
    peak: int  # most connections the server held at once
    held_s: float  # seconds with every connection open
    ramp_s: float | None  # from the first sample to the first with every connection open
    kib_per_connection: float | None
    locust_kib_per_user: float | None
    target_processes: int
    target_cpu_pct: float | None
    explain: list[str]


def _rows(path: Path, value: str, column: str) -> list[dict[str, float]]:
    try:
        return [{k: float(v) for k, v in row.items() if k != column}
                for row in schema.read_csv(path) if row[column] == value]  # fmt: skip
    except (OSError, ValueError, KeyError):
        return []


def _failure_names(point_dir: Path) -> list[str]:
    path = point_dir / schema.FINAL_FAILURES_JSON
    if not path.exists():
        return []
    return [f"{e['occurrences']}x {e['error']}" for e in schema.read_list(path)]


def held(point_dir: Path, result: PointResult | None = None) -> Held:
    """The point's figures; `result` is its point.json, read here when not given."""
    if result is None:
        result = schema.read_point(point_dir)
        if result is None:
            raise schema.BadFileError(f"{point_dir} has no {schema.POINT}")
    params, summary = result["point"], result.get("summary") or {}
    users, listeners = int(params["users"]), int(params.get("target_processes") or 1)
    samples = _rows(point_dir / schema.SOCKSTAT_CSV, "server", "side")
    if samples:
        open_now = [(s["elapsed_s"], int(s["TCP_inuse"]) - listeners) for s in samples]
    else:
        samples = _rows(point_dir / schema.RESOURCES_CSV, "target", "role")
        open_now = [(s["elapsed_s"], int(s["sockets"]) - listeners) for s in samples]
    full = [t for t, n in open_now if n >= users]
    interval = samples[1]["elapsed_s"] - samples[0]["elapsed_s"] if len(samples) > 1 else 1.0
    peak = max((n for _, n in open_now), default=0)
    target = summary.get("target") or {}
    rss_max, rss_idle = target.get("rss_bytes_max"), target.get("rss_bytes_idle")
    locust_rss = (summary.get("locust") or {}).get("rss_bytes_max")
    return Held(
        target=params["target"], users=users, status=result["status"],
        failures=summary.get("failures"), failure_names=_failure_names(point_dir), peak=peak,
        held_s=len(full) * interval, ramp_s=full[0] - open_now[0][0] if full else None,
        kib_per_connection=(rss_max - rss_idle) / peak / KIB if rss_max and rss_idle and peak
        else None,
        locust_kib_per_user=locust_rss / peak / KIB if locust_rss and peak else None,
        target_processes=listeners, target_cpu_pct=target.get("cpu_pct_mean"),
        explain=(summary.get("kernel") or {}).get("explain") or [],
    )  # fmt: skip


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(run_dir: Path, hold_s: float) -> tuple[list[str], bool]:
    """The table's lines and whether every point held all its connections for hold_s."""
    finished = [(p, r) for p in schema.point_dirs(run_dir) if (r := schema.read_point(p))]
    if not finished:
        raise SystemExit(f"benchmarks.scale: no finished points in {run_dir}")
    rows = [held(p, r) for p, r in finished]
    base = next((r for r in rows if r.target == "aiohttp"), None)
    lines = [
        f"{'target':<11} {'asked':>7} {'peak held':>9} {'held s':>6} {'ramp s':>6} "
        f"{'fail':>5} {'KiB/conn':>8} {'vs aiohttp':>10} {'procs':>5} {'cpu%':>5} "
        f"{'locust KiB/user':>15}"
    ]  # fmt: skip
    ok = True
    for r in rows:
        ratio = None
        if base and r.kib_per_connection and base.kib_per_connection:
            ratio = r.kib_per_connection / base.kib_per_connection
        lines.append(
            f"{r.target:<11} {r.users:>7} {r.peak:>9} {r.held_s:>6.0f} {_fmt(r.ramp_s, '.0f'):>6} "
            f"{_fmt(r.failures, 'd'):>5} {_fmt(r.kib_per_connection, '.2f'):>8} "
            f"{_fmt(ratio, '.2f'):>10} {r.target_processes:>5} "
            f"{_fmt(r.target_cpu_pct, '.0f'):>5} {_fmt(r.locust_kib_per_user, '.1f'):>15}"
        )
        if r.status != PointStatus.OK or r.failures or r.held_s < hold_s:
            ok = False
    for r in rows:
        if r.status != PointStatus.OK or r.failures or r.held_s < hold_s:
            lines.append(f"{r.target}: held {r.peak} of {r.users} at most, all of them for "
                         f"{r.held_s:.0f} s (wanted {hold_s:g} s); status {r.status}")  # fmt: skip
            lines += [f"  failure: {name}" for name in r.failure_names]
            lines += [f"  kernel: {line}" for line in r.explain]
    return lines, ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--hold-s", type=float, default=60.0,
                        help="seconds every connection must stay open (default 60)")
    args = parser.parse_args(argv)
    if not (args.run_dir / schema.POINTS_DIR).is_dir():
        print(f"benchmarks.scale: {args.run_dir} is not a wsbench run folder", file=sys.stderr)
        return 2
    try:
        lines, ok = report(args.run_dir, args.hold_s)
    except schema.ResultsError as exc:  # a point.json not whole, or of another schema version
        print(f"benchmarks.scale: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"{'every target held' if ok else 'NOT every target held'} its connections for "
          f"{args.hold_s:g} s with no failure ({args.run_dir})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
