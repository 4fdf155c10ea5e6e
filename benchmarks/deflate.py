"""`python -m benchmarks.deflate`: what permessage-deflate costs the aiohttp and websockets targets.

A benchmark, not a test. For each target, without and with `--compression deflate` (each
library's own implementation, its defaults), a fresh target pinned to one CPU and the client
(benchmarks/deflate_client.py, the websockets library's client) on another:

- hold: the target's RSS before and after `--hold` connections that each echoed one text
  message (so both sides' compressor and decompressor exist) -> KiB per held connection. The
  websockets library documents about 64 KiB per connection with compression and 14 KiB
  without (its "Memory usage" page); this reproduces or refutes that for each target.
- echo: closed-loop text echoes on `--connections` connections for `--duration` seconds after a
  warm-up; the target's CPU seconds over that window / the echoes -> server CPU µs per message
  (one message in, inflated, and one out, compressed).

Stored like the other benchmarks (common/schema.py), in results/<run-id>-bench-deflate-*/:

    meta.json                                   kind, command, settings, placement, provenance
    points/TARGET-hold-cN[-deflate]-host/       point.json: RSS idle and held, extensions agreed
    points/TARGET-echo-cN[-deflate]-host/       point.json: msgs/s, CPU µs per message

`--show RUN_DIR` prints a stored run's table again without running anything.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import pinned
from benchmarks.targets import (
    CLIENT_BUSY_PCT,
    KIB,
    SETTLE_S,
    BenchError,
    Events,
    Placement,
    choose_placement,
    cpu_s,
    fetch_stats,
    format_table,
    rss_bytes,
    store_point,
)
from benchmarks.targets_client import CLOSE_SIGNAL
from common import schema
from common.errors import WsbenchError
from common.schema import PointParams, PointStatus, RunStatus, utc_now
from harness import provenance
from harness.store import RunStore, new_run_id
from kernel.profile import HOST_PROFILE

KIND = "bench-deflate"
TARGETS = ("aiohttp", "websockets")
COMPRESSIONS = ("none", "deflate")
HOLD_S = 1.0  # connections held before the second RSS reading
EVENT_TIMEOUT_S = 120.0
CLIENT_LOG = "client.log"
DOCUMENTED_KIB = {"none": 14.0, "deflate": 64.0}  # websockets' docs, per connection


def _point_id(target: str, scenario: str, count: int, compression: str) -> str:
    suffix = "-deflate" if compression == "deflate" else ""
    return f"{target}-{scenario}-c{count}{suffix}-{HOST_PROFILE}"


def params(target: str, scenario: str, args: argparse.Namespace, compression: str) -> PointParams:
    count = args.hold if scenario == "hold" else args.connections
    found: dict[str, Any] = {
        "point_id": _point_id(target, scenario, count, compression), "target": target,
        "scenario": scenario, "users": count,
        "duration_s": HOLD_S if scenario == "hold" else args.duration,
        "options": ["--size", str(args.size), "--payload-content", "text"],
        "processes": 1, "target_processes": 1, "kernel_profile": HOST_PROFILE,
    }  # fmt: skip
    if compression == "deflate":
        found["compression"] = compression
    return found  # type: ignore[return-value]


def _client(mode: str, url: str, args: argparse.Namespace, compression: str) -> list[str]:
    count = args.hold if mode == "hold" else args.connections
    return [sys.executable, "-m", "benchmarks.deflate_client", mode, "--url", url,
            "--compression", compression, "--connections", str(count),
            "--size", str(args.size), "--duration", str(args.duration)]  # fmt: skip


def _target(name: str, compression: str, cpu: int, point_dir: Path) -> Any:
    cmd = [*pinned.target_command(name), "--compression", compression]
    return pinned.server(name, cmd, cpu, point_dir / schema.TARGET_LOG)


def measure_hold(name: str, compression: str, args: argparse.Namespace, placement: Placement,
                 point_dir: Path) -> dict[str, Any]:  # fmt: skip
    with _target(name, compression, placement.server_cpu, point_dir) as server:
        time.sleep(SETTLE_S)
        before = rss_bytes(server.proc.pid)
        cmd = _client("hold", server.url, args, compression)
        proc = pinned.spawn(cmd, placement.client_cpu, point_dir / CLIENT_LOG, stdout_pipe=True)
        try:
            events = Events(proc, point_dir / CLIENT_LOG)
            opened = events.next("opened", EVENT_TIMEOUT_S)
            time.sleep(HOLD_S)
            after = rss_bytes(server.proc.pid)
            connections = int(fetch_stats(server.url)["connections"])  # type: ignore[call-overload]
            os.kill(proc.pid, CLOSE_SIGNAL)
            events.next("closed", EVENT_TIMEOUT_S)
        finally:
            pinned.stop(proc)
    held = int(opened["connections"])  # type: ignore[call-overload]
    return {"measured_s": HOLD_S, "connections_opened": held,
            "target": {"rss_bytes_idle": before, "rss_bytes_max": after,
                       "connections": connections},
            "kib_per_connection": (after - before) / KIB / max(1, held),
            "extensions": opened.get("extensions")}  # fmt: skip


def measure_echo(name: str, compression: str, args: argparse.Namespace, placement: Placement,
                 point_dir: Path) -> dict[str, Any]:  # fmt: skip
    with _target(name, compression, placement.server_cpu, point_dir) as server:
        cmd = _client("echo", server.url, args, compression)
        proc = pinned.spawn(cmd, placement.client_cpu, point_dir / CLIENT_LOG, stdout_pipe=True)
        try:
            events = Events(proc, point_dir / CLIENT_LOG)
            events.next("measuring", EVENT_TIMEOUT_S)
            server_before, client_before = cpu_s(server.proc.pid), cpu_s(proc.pid)
            result = events.next("result", args.duration + EVENT_TIMEOUT_S)
            server_s = cpu_s(server.proc.pid) - server_before
            client_s = cpu_s(proc.pid) - client_before
        finally:
            pinned.stop(proc)
    messages, wall_s = int(result["messages"]), float(result["wall_s"])  # type: ignore[call-overload, arg-type]
    return {"requests": messages, "requests_per_s": messages / wall_s, "measured_s": wall_s,
            "target": {"cpu_pct_mean": 100 * server_s / wall_s},
            "client": {"cpu_pct_mean": 100 * client_s / wall_s},
            "server_cpu_us_per_message": 1e6 * server_s / max(1, messages),
            "lost_connections": result.get("lost"),
            "extensions": result.get("extensions")}  # fmt: skip


def _checked(summary: dict[str, Any], compression: str) -> list[str]:
    """A point whose agreement is not what it set out to measure says so, and an echo point
    whose client was the limit."""
    agreed = [e for e in summary.get("extensions") or [] if e]
    if compression == "deflate" and not agreed:
        return ["the server did not accept permessage-deflate: these are uncompressed figures"]
    if compression == "none" and agreed:
        return [f"the server agreed to {agreed} without being asked"]
    client_pct = (summary.get("client") or {}).get("cpu_pct_mean") or 0.0
    if client_pct >= CLIENT_BUSY_PCT:
        return [f"the client was CPU-bound ({client_pct:.0f}% of a core): msgs/s measure the "
                "client; the server's CPU per message is its own, at this (lower) load"]
    return []


def measure(store: RunStore, args: argparse.Namespace, placement: Placement) -> bool:
    """Every point, one at a time, each stored once made; False if any failed."""
    ok = True
    steps = (("hold", measure_hold), ("echo", measure_echo))
    for name in args.targets:
        for compression in COMPRESSIONS:
            for scenario, run in steps:
                point = params(name, scenario, args, compression)
                started = utc_now()
                print(f"{point['point_id']} ...", file=sys.stderr, flush=True)
                try:
                    summary = run(name, compression, args, placement,
                                  store.point_dir(point["point_id"]))  # fmt: skip
                except (BenchError, OSError, RuntimeError) as exc:
                    store_point(store, point, started, reason=str(exc).splitlines()[0])
                    ok = False
                    continue
                store_point(store, point, started, summary,  # type: ignore[arg-type]
                            warnings=_checked(summary, compression))  # fmt: skip
    return ok


def table(run_dir: Path) -> str:
    """The stored run's figures: per target, without and with deflate, and the ratio."""
    meta = schema.read_meta(run_dir)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for point in meta.get("plan") or []:
        result = schema.point_as_found(run_dir / schema.POINTS_DIR / point["point_id"])
        if result is not None and result.get("status") == PointStatus.OK:
            key = (point["target"], point["scenario"], point.get("compression", "none"))
            found[key] = dict(result.get("summary") or {})
    rows = []
    for name in meta["settings"]["targets"]:
        for compression in COMPRESSIONS:
            hold = found.get((name, "hold", compression), {})
            echo = found.get((name, "echo", compression), {})
            kib, us = hold.get("kib_per_connection"), echo.get("server_cpu_us_per_message")
            rows.append([name, compression, "-" if kib is None else f"{kib:.1f}",
                         f"{DOCUMENTED_KIB[compression]:g}" if name == "websockets" else "-",
                         "-" if us is None else f"{us:.1f}",
                         "-" if not echo else f"{echo['requests_per_s']:,.0f}",
                         "; ".join(e for e in hold.get("extensions") or [] if e) or "-"])
    s = meta["settings"]
    headers = ["target", "compression", "KiB/held conn", "documented", "server µs/msg",
               "echo msgs/s", "agreed"]  # fmt: skip
    return "\n".join([
        f"hold: {s['hold']} connections after one {s['size_bytes']}-byte text message each; "
        f"echo: {s['connections']} connections, closed loop, {s['duration_s']:g} s measured "
        f"(text from scenarios/payloads.py); placement: "
        f"{Placement(**meta['placement']).describe()}",
        "", format_table(headers, rows),
    ])  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.deflate",
        description="Memory per held connection and server CPU per echoed message of the "
        "aiohttp and websockets targets without and with permessage-deflate. Stores a run, "
        "prints its figures; not a test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--targets", default=",".join(TARGETS), help="comma-separated: aiohttp, websockets")
    add("--hold", type=int, default=1000, help="connections held for the memory figure")
    add("--connections", type=int, default=10, help="echo connections")
    add("--size", type=int, default=256, help="text message bytes")
    add("--duration", type=float, default=5.0, help="echo seconds measured")
    add("--results-dir", type=Path, default=Path("results"), help="where the run folder goes")
    add("--show", type=Path, metavar="RUN_DIR", help="print a stored run's table and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show is not None:
        try:
            print(table(args.show))
        except (schema.ResultsError, KeyError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        return 0
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown or not args.targets:
        parser.error(f"--targets: choose from {', '.join(TARGETS)}; got {unknown or 'none'}")
    for flag in ("hold", "connections", "size", "duration"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be positive")
    if args.hold + 100 > resource.getrlimit(resource.RLIMIT_NOFILE)[1]:
        parser.error(f"--hold {args.hold} needs more than the open-file limit")
    placement = choose_placement()
    try:
        store = RunStore.create(args.results_dir / new_run_id(KIND), KIND)
    except WsbenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_status
    settings = {"targets": args.targets, "hold": args.hold, "connections": args.connections,
                "size_bytes": args.size, "duration_s": args.duration, "hold_s": HOLD_S}
    store.write_meta({
        "kind": KIND, "run_id": store.root.name,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "started": utc_now(), "ended": None, "status": RunStatus.RUNNING,
        "settings": settings, "placement": asdict(placement),
        "plan": [params(t, s, args, c) for t in args.targets for c in COMPRESSIONS
                 for s in ("hold", "echo")],
        **schema.runner_fields(), **provenance.collect(),
    })  # fmt: skip
    status = RunStatus.INTERRUPTED
    try:
        status = RunStatus.COMPLETE if measure(store, args, placement) else RunStatus.FAILED
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        store.update_meta(ended=utc_now(), status=status)
    print(table(store.root))
    print(f"stored: {store.root} (python -m benchmarks.deflate --show DIR prints it again)",
          file=sys.stderr)  # fmt: skip
    return 0 if status == RunStatus.COMPLETE else 1


if __name__ == "__main__":
    sys.exit(main())
