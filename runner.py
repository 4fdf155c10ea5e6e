"""`wsbench` (also `python runner.py`): plan and run WebSocket benchmarks, store every run.

    wsbench run     --target NAME|URL --scenario NAME --users N [--duration 30s] [scenario options]
    wsbench sweep   --targets A,B --scenarios X,Y --users 10,100,1000 [--config FILE] [--out DIR]
    wsbench ui      --target NAME|URL --scenario NAME     (Locust's web UI on 127.0.0.1)
    wsbench worker  --master-host HOST --scenario NAME    (a Locust worker for a remote master)
    wsbench report  RUN_DIR                               (-> RUN_DIR/report/report.html)
    wsbench compare RUN_A RUN_B [--fail-on-regression]

This module is the command layer only; the work is in harness/ (plan, procs, sampling, store,
execute). Bad input is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common.errors import BadInput, WsbenchError
from common.schema import RunStatus, runner_fields, utc_now
from harness import plan, procs, session
from harness.broker import BROKERS
from harness.execute import (
    Outcome,
    error_rate,
    main_latency,
    run_sweep,
)
from harness.plan import HOST_PROFILE, PlanError, Point, Sweep
from harness.store import RunStore, start_meta
from kernel import hostsysctl, netns

DEFAULT_SWEEP = Path(__file__).resolve().parent / "harness" / "sweeps" / "default.toml"
EXIT_INTERRUPTED = 130


def say(text: str) -> None:
    print(text, flush=True)


def _add_point_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spawn-rate", type=float, help="users started per second (default: "
                   "all at once up to 1000/s)")  # fmt: skip
    p.add_argument("--duration", default="30s", help="run time, e.g. 30s, 2m (default 30s)")
    p.add_argument("--processes", type=int, default=1,
                   help="Locust processes on this machine (raised automatically when the users "
                   "exceed what one process may open)")  # fmt: skip
    p.add_argument("--target-processes", type=int, default=1,
                   help="SO_REUSEPORT processes of a reference target (default 1)")
    p.add_argument("--kernel-profile", metavar="NAME[,NAME...]",
                   help="kernel profile(s) from `wsbench kernel list`, or a .toml path: each "
                   "point runs in fresh network namespaces with its sysctls (default: host, "
                   "the host's own settings, no namespaces)")  # fmt: skip
    p.add_argument("--host-sysctls", action="store_true",
                   help="allow a profile's host-wide sysctls: saved first, restored at exit "
                   "(or at the next start after a crash)")  # fmt: skip
    p.add_argument("--client-hosts", type=int,
                   help="with a kernel profile: client namespaces, each with its own "
                   "addresses; with 2 or more, the first runs the Locust master and the "
                   "others its workers (default 1)")  # fmt: skip
    p.add_argument("--out", type=Path, help="results folder (default results/<run-id>)")
    p.add_argument("--pin-cpus", action="store_true",
                   help="the target on the first half of the CPUs, Locust on the rest (on a "
                   "small machine they otherwise share a core and the generator's delay grows); "
                   "as root the target at nice -10, Locust real-time (SCHED_RR 1), idle CPUs "
                   "polling while a point runs")
    p.add_argument("--broker", choices=BROKERS,
                   help="the reference target's processes share broadcast rooms through this "
                   "broker (Debian's redis-server, started per point); default: none, rooms "
                   "per process")  # fmt: skip
    p.add_argument("--fault", action="append", metavar="ACTION@TIME",
                   help="a failover drill, e.g. kill-target@10s: "
                   + "; ".join(f"{a}: {w}" for a, w in plan.FAULT_ACTIONS.items())
                   + " (repeatable)")  # fmt: skip
    p.add_argument("--via", metavar="direct|nginx|haproxy[,...]",
                   help="a reverse proxy between Locust and the reference target (Debian's nginx "
                   "or HAProxy, started per point); several, comma-separated, make one point "
                   "each (default: direct)")  # fmt: skip
    p.add_argument("--via-idle-timeout", metavar="DURATION",
                   help="with --via: the proxy closes an upgraded connection idle this long "
                   "(nginx proxy_read_timeout, HAProxy timeout tunnel; default theirs: 60s, 50s)")
    p.add_argument("--compression", metavar="none|deflate[,...]",
                   help="permessage-deflate (RFC 7692): the client offers it and compresses its "
                   "messages, the reference target serves it with its library's own (aiohttp, "
                   "websockets; raw refuses it); a server that declines fails the point; "
                   "several, comma-separated, make one point each (default: none)")
    p.add_argument("--tag", help="a word added to the point ids, to tell apart runs that differ "
                   "only in their scenario options (e.g. nojitter)")  # fmt: skip
    p.add_argument("--max-error-rate", type=float, metavar="F",
                   help="a point is failed when more than this share (0..1) of its main "
                   "measurement's requests failed (default "
                   f"{plan.DEFAULT_MAX_ERROR_RATE:g}, i.e. 1 %%)")  # fmt: skip
    _add_remote_option(p)


def _add_remote_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a ws:// URL target that is not on this machine (a server you own)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsbench",
        description="Benchmark WebSocket servers with Locust: reference targets "
        f"({', '.join(sorted(plan.TARGETS))}) or any ws:// / wss:// URL.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_sweep, _add_ui, _add_other_commands):
        add(sub)
    return parser


# Commands that pass what they do not know to the scenario take no abbreviations: else
# Locust's --host would be read as --host-sysctls, and its URL passed on as a stray word.
EXACT = {"allow_abbrev": False}
Subparsers = argparse._SubParsersAction  # argparse names no public type for it


def _add_run(sub: Subparsers) -> None:
    """`wsbench run`: one point (and the distributed master options)."""
    run = sub.add_parser("run", help="one target x one scenario x one load point",
                         description="Run one point. Options this command does not know are "
                         "passed to the scenario (e.g. --payload-bytes 64).", **EXACT)  # fmt: skip
    run.add_argument("--target", required=True, help="reference target name or ws:// URL")
    run.add_argument("--scenario", required=True, help=", ".join(plan.SCENARIOS))
    run.add_argument("--users", type=int, required=True, help="concurrent Locust users")
    run.add_argument("--port", type=int, default=0, help="port of the reference target")
    run.add_argument("--tls", action="store_true",
                     help="serve wss://: the reference target does TLS, or with --via the "
                     "proxy does (and talks ws:// to the target); a throwaway CA's certificate")
    run.add_argument("--expect-workers", type=int, default=0,
                     help="distributed: be the Locust master and wait for this many "
                     "`wsbench worker` processes (on this or other machines)")  # fmt: skip
    run.add_argument("--master-bind-host", default="127.0.0.1",
                     help="with --expect-workers: address workers connect to (default "
                     "127.0.0.1; 0.0.0.0 for workers on other machines)")  # fmt: skip
    run.add_argument("--master-port", type=int, default=5557,
                     help="with --expect-workers: port workers connect to (default 5557)")
    _add_point_options(run)


def _add_sweep(sub: Subparsers) -> None:
    """`wsbench sweep`: a matrix of points, from a TOML file and lists."""
    sweep = sub.add_parser("sweep", help="targets x scenarios x connection counts (resumable)",
                           **EXACT,
                           description="Run a matrix of points. Re-running with the same --out "
                           "skips points already complete. Options this command does not know "
                           "are passed to every scenario.")  # fmt: skip
    sweep.add_argument("--config", type=Path, help="TOML matrix; command-line lists override it")
    sweep.add_argument("--targets", help="comma-separated target names or URLs")
    sweep.add_argument("--scenarios", help="comma-separated scenario names")
    sweep.add_argument("--users", help="comma-separated connection counts, e.g. 10,100,1000")
    sweep.add_argument("--tls", action="store_true", default=None,
                       help="every point on wss:// (at the target, or the proxy with --via); "
                       "tls = [false, true] in the sweep file makes one point each")
    sweep.add_argument("--kernel-profiles", dest="kernel_profile", help=argparse.SUPPRESS)
    sweep.add_argument("--slo-p99-ms", type=float,
                       help="stop raising connections for a target x scenario once p99 passes this")
    sweep.add_argument("--slo-error-rate", type=float,
                       help="... or once the main measurement's failures/requests passes this "
                       "(0..1); a failed point stops its series too")  # fmt: skip
    _add_point_options(sweep)
    sweep.set_defaults(duration=None, processes=None, target_processes=None)


def _add_ui(sub: Subparsers) -> None:
    """`wsbench ui`: a target and Locust's web UI; each test started there is stored as a run."""
    ui = sub.add_parser("ui", help="a target plus Locust's web UI (each test stored as a run)",
                        description="Serve Locust's web UI with wsbench's tabs. Each test "
                        "started and stopped there is stored as a run (meta.json, the point, "
                        "its report). Options this command does not know are passed to the "
                        "scenario.", **EXACT)  # fmt: skip
    ui.add_argument("--target", required=True, help="reference target name or ws:// URL")
    ui.add_argument("--scenario", required=True, help=", ".join(plan.SCENARIOS))
    ui.add_argument("--users", type=int, default=10, help="users prefilled in the form")
    ui.add_argument("--web-host", default="127.0.0.1",
                    help="address the web UI binds to (default 127.0.0.1, this machine only; "
                    "0.0.0.0 opens it to the network)")  # fmt: skip
    ui.add_argument("--web-port", type=int, default=8089)
    ui.add_argument("--port", type=int, default=0, help="port of the reference target")
    ui.add_argument("--tls", action="store_true",
                    help="serve wss:// (at the reference target, or the proxy with --via)")
    _add_point_options(ui)
    ui.set_defaults(spawn_rate=10.0, duration="10m")
    for action in ui._actions:  # the form's prefilled values, and where sessions go
        if action.dest == "spawn_rate":
            action.help = "spawn rate prefilled in the form (default 10)"
        elif action.dest == "duration":
            action.help = "run time prefilled in the form, so a test stops by itself (default 10m)"
        elif action.dest == "out":
            action.help = "folder each session's run folder goes in (default results/)"


def _add_other_commands(sub: Subparsers) -> None:
    """`wsbench worker`, `report`, `compare` and `kernel`."""
    worker = sub.add_parser("worker", help="a Locust worker for a master on another machine")
    worker.add_argument("--master-host", required=True)
    worker.add_argument("--master-port", type=int, default=5557)
    worker.add_argument("--scenario", required=True, help=", ".join(plan.SCENARIOS))
    worker.add_argument("--processes", type=int, default=1)

    report = sub.add_parser("report", help="a results folder -> one self-contained report.html")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, help="an .html file or a folder (default "
                        "RUN_DIR/report/report.html); chart CSVs go beside it")  # fmt: skip

    compare = sub.add_parser("compare", help="two results folders -> a comparison page",
                             description="Compare matching points of two runs (two machines, "
                             "kernel settings or server versions).")  # fmt: skip
    compare.add_argument("run_a", type=Path, metavar="RUN_A", help="the baseline")
    compare.add_argument("run_b", type=Path, metavar="RUN_B", help="the candidate")
    compare.add_argument("--out", type=Path, help="an .html file or a folder "
                         "(default RUN_B/compare-<RUN_A>/comparison.html)")  # fmt: skip
    compare.add_argument("--threshold-pct", type=float, default=10.0,
                         help="flag a metric more than this %% worse (default 10)")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when a regression is flagged (to gate CI)")

    kernel = sub.add_parser("kernel", help="kernel profiles: list them, or show one",
                            description="Kernel profiles are TOML files in kernel/profiles/.")
    ksub = kernel.add_subparsers(dest="kernel_command", required=True, metavar="list|show")
    ksub.add_parser("list", help="the profiles and what each is for")
    show = ksub.add_parser("show", help="a profile, its difference from this host, and the "
                           "sysctl -w lines that apply it on a real server")  # fmt: skip
    show.add_argument("name", metavar="NAME")


def _check_no_extras(args: argparse.Namespace, extras: list[str]) -> None:
    if extras and args.command not in ("run", "sweep", "ui"):
        raise PlanError(f"unrecognized arguments: {' '.join(extras)}")


def _profiles(value: str | None) -> list[str]:
    profiles = plan.split_list(value, "--kernel-profile") or [HOST_PROFILE]
    twice = sorted({p for p in profiles if profiles.count(p) > 1})
    if twice:
        raise PlanError(f"kernel profile {', '.join(twice)} given more than once")
    return profiles


def _check_kernel(points: Sequence[Point]) -> None:
    """Every point's kernel profile loads and can run here, and its limits can be met: said
    before the first point runs, not mid-sweep."""
    for point in points:
        plan.check_kernel(point.topology)
        plan.check_topology(plan.sized(point)[0])


@contextlib.contextmanager
def _run_status(store: RunStore) -> Iterator[None]:
    """meta.json's end: "complete" when the block finished, "interrupted" when it did not."""
    status = RunStatus.INTERRUPTED
    try:
        yield
        status = RunStatus.COMPLETE
    finally:
        store.update_meta(ended=utc_now(), status=status)


def _check_targets(targets: Sequence[str], allow_remote: bool) -> None:
    if not allow_remote:
        for target in targets:
            if plan.is_url(target):
                plan.check_local(target)


def cmd_run(args: argparse.Namespace, extras: list[str]) -> int:
    """One point; with several kernel profiles, the same point under each, one after another."""
    _check_targets([args.target], args.allow_remote)
    duration = plan.parse_duration(args.duration)
    points = [
        plan.make_point(
            args.target, args.scenario, args.users, args.spawn_rate, duration,
            processes=args.processes, target_processes=args.target_processes,
            kernel_profile=profile,
            client_hosts=1 if args.client_hosts is None else args.client_hosts,
            host_sysctls=args.host_sysctls, target_port=args.port, tls=args.tls,
            options=tuple(extras), expect_workers=args.expect_workers,
            master_bind_host=args.master_bind_host, master_port=args.master_port,
            max_error_rate=_max_error_rate(args), pin_cpus=args.pin_cpus,
            broker=args.broker or "", faults=_faults(args.fault), tag=args.tag or "",
            via=via, via_idle_timeout_s=_idle_timeout(args, via), compression=compression,
        )
        for profile in _profiles(args.kernel_profile)
        for via in plan.parse_via(args.via)
        for compression in plan.parse_compression(args.compression)
    ]  # fmt: skip
    _check_kernel(points)
    plan.check_options(points)
    if args.out is not None and (args.out / "meta.json").exists():
        found = RunStore(args.out).claim() or {}
        raise PlanError(f"{args.out} already holds a run (status {found.get('status')}); "
                        "choose another --out")  # fmt: skip
    store = RunStore.create(args.out, "run")
    start_meta(store, "run", points)
    say(f"wsbench run: {', '.join(p.point_id for p in points)} -> {store.root}")
    # A sweep of this point (one per kernel profile), with no SLO stop.
    one = Sweep((args.target,), (args.scenario,), (args.users,))
    outcomes = _measure(store, [(one, point) for point in points])
    say(f"results: {store.root}")
    failed = [o for o in outcomes if o.status != "ok"]
    for outcome in failed:
        print(f"wsbench: point failed: {outcome.reason}", file=sys.stderr)
    return 1 if failed else 0


def _measure(store: RunStore, planned: list[tuple[Sweep, Point]]) -> list[Outcome]:
    """What `run` and `sweep` both do once the run folder has its meta.json: the points in
    order (the SLO stop per series of each sweep), meta.json's end status, the table."""
    with _run_status(store):
        outcomes = run_sweep(planned, store, say)
    print_table(outcomes)
    return outcomes


def _idle_timeout(args: argparse.Namespace, via: str) -> float:
    """--via-idle-timeout in seconds for a point through a proxy (0: the proxy's default);
    given without --via, the plan refuses it."""
    if not args.via_idle_timeout:
        return 0.0
    if not via and args.via is not None:
        return 0.0  # the direct point of a --via direct,nginx comparison
    return plan.parse_duration(args.via_idle_timeout)


def _faults(given: Sequence[str] | None) -> tuple[str, ...]:
    """--fault values as the canonical ACTION@Ns (PlanError, one line, for a bad one)."""
    return tuple(str(plan.parse_fault(text)) for text in given or ())


def _max_error_rate(args: argparse.Namespace) -> float:
    value = args.max_error_rate
    return plan.DEFAULT_MAX_ERROR_RATE if value is None else value


def sweeps_from(args: argparse.Namespace, extras: list[str]) -> list[Sweep]:
    """The sweep file's sweeps (one, or one per part) with the command line's values laid over
    each."""
    settings: dict[str, Any] = plan.load_sweep_file(args.config) if args.config else {}
    cli = {
        "targets": args.targets, "scenarios": args.scenarios, "users": args.users,
        "kernel_profiles": args.kernel_profile, "duration": args.duration,
        "client_hosts": args.client_hosts, "host_sysctls": args.host_sysctls or None,
        "spawn_rate": args.spawn_rate, "processes": args.processes,
        "target_processes": args.target_processes, "slo_p99_ms": args.slo_p99_ms,
        "slo_error_rate": args.slo_error_rate, "max_error_rate": args.max_error_rate,
        "pin_cpus": args.pin_cpus or None, "broker": args.broker, "via": args.via,
        "via_idle_timeout": args.via_idle_timeout, "compression": args.compression,
        "faults": list(_faults(args.fault)) or None, "tag": args.tag, "tls": args.tls,
    }  # fmt: skip
    overrides = {k: v for k, v in cli.items() if v is not None}
    sweeps = _without_namespaces_if_refused(plan.sweeps_from_settings(settings, overrides, extras))
    points = [point for sweep in sweeps for point in sweep.points()]
    _check_targets([t for sweep in sweeps for t in sweep.targets], args.allow_remote)
    _check_kernel(points)
    plan.check_options(points)
    return sweeps


def _without_namespaces_if_refused(sweeps: list[Sweep]) -> list[Sweep]:
    """A matrix of parts (the default benchmark) still runs where namespaces cannot be made:
    its parts' kernel profiles other than host are left out, said in one line each. A single
    sweep keeps them, and the kernel check refuses it with the reason."""
    if len(sweeps) < 2 or all(s.kernel_profiles == (HOST_PROFILE,) for s in sweeps):
        return sweeps
    try:
        netns.check_privileges("default")
        return sweeps
    except netns.KernelError as exc:
        reason = str(exc).split(";")[0].replace("kernel profile 'default' runs", "they run")
    kept = []
    for sweep in sweeps:
        host = tuple(p for p in sweep.kernel_profiles if p == HOST_PROFILE)
        if host != sweep.kernel_profiles:
            left = ", ".join(p for p in sweep.kernel_profiles if p != HOST_PROFILE)
            say(f"wsbench sweep: part {sweep.name}: skipped kernel profiles {left}: {reason} "
                "(run as root to compare them)")
        if host:
            kept.append(dataclasses.replace(sweep, kernel_profiles=host))
    return kept


def _slo_meta(matrix: list[tuple[Sweep, Point]]) -> Any:
    """meta.json's "slo": the sweep's, or with parts one per part (its name, its SLO and the
    points it runs: the report judges a point by its part's SLO)."""
    sweeps = list({id(sweep): sweep for sweep, _ in matrix}.values())
    if len(sweeps) == 1:
        return dataclasses.asdict(sweeps[0].slo)
    return [
        {"part": s.name, **dataclasses.asdict(s.slo),
         "points": [p.point_id for owner, p in matrix if owner is s]}
        for s in sweeps
    ]  # fmt: skip


def cmd_sweep(args: argparse.Namespace, extras: list[str]) -> int:
    sweeps = sweeps_from(args, extras)
    matrix = plan.matrix_points(sweeps)
    points = [point for _, point in matrix]
    store = RunStore.create(args.out, "sweep")
    previous = store.claim()
    planned = [p.as_dict() for p in points]
    slo = _slo_meta(matrix)
    if previous is not None:
        if _planned_before(previous.get("plan")) != planned or previous.get("slo") != slo:
            raise PlanError(f"{store.root} holds a different sweep; choose another --out")
        if previous.get("status") == RunStatus.KILLED:
            say(f"wsbench sweep: its last runner (pid {previous.get('runner_pid')}) was killed")
        say(f"wsbench sweep: resuming {store.root}")
        store.update_meta(status=RunStatus.RUNNING, resumed=utc_now(), **runner_fields())
    else:
        start_meta(store, "sweep", points, slo=slo)
    say(f"wsbench sweep: {len(points)} points -> {store.root}")
    outcomes = _measure(store, matrix)
    failed = [o for o in outcomes if o.status == "failed"]
    say(f"results: {store.root} ({len(outcomes)} points run, {len(failed)} failed)")
    page = write_report(store.root)
    if page is not None:
        say(f"report: {page}")
    say_findings(store.root)  # last: the console ends with the answers
    if failed:
        print(f"wsbench: {len(failed)} point(s) failed; their point.json says why "
              "(re-running the same sweep retries them)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _planned_before(plan_dicts: Any) -> Any:
    """A stored plan as this version writes it: sweeps planned before points had a
    max_error_rate had the default, and still resume."""
    if not isinstance(plan_dicts, list):
        return plan_dicts
    before = {"max_error_rate": plan.DEFAULT_MAX_ERROR_RATE, "pin_cpus": False}
    return [{**before, **p} if isinstance(p, dict) else p for p in plan_dicts]


def print_table(outcomes: Sequence[Outcome]) -> None:
    """One line per point: the figures a reader looks at first, of the main measurement.

    msgs/s is its successes over the run time; fail counts every failed request (set-up phases
    such as TCP connects too), err% is the main measurement's error rate, the one the status
    is judged by; gen is BOUND when the generator's own delay bounded the point.
    """
    if not outcomes:
        return
    header = f"{'point':<40} {'status':<8} {'msgs/s':>9} {'fail':>6} {'err%':>6} " \
             f"{'p50_us':>8} {'p99_us':>8} {'srv_cpu%':>8} {'srv_MiB':>8} {'gen':>5}"  # fmt: skip
    say(header)
    say("-" * len(header))
    for o in outcomes:
        s = o.summary
        _, row = main_latency(s)
        target = s.get("target") or {}
        rss = target.get("rss_bytes_max")
        rate = error_rate(s)
        bound = s.get("generator_bound", s.get("generator_saturated"))
        say(
            f"{o.point.point_id:<40.40} {o.status:<8} "
            f"{_fmt(s.get('requests_per_s'), '.0f'):>9} "
            f"{_fmt(s.get('failures'), 'd'):>6} "
            f"{_fmt(rate * 100 if rate is not None else None, '.1f'):>6} "
            f"{_fmt(row.get('p50_us'), '.0f'):>8} {_fmt(row.get('p99_us'), '.0f'):>8} "
            f"{_fmt(target.get('cpu_pct_mean'), '.0f'):>8} "
            f"{_fmt(rss / 2**20 if rss else None, '.0f'):>8} "
            f"{'BOUND' if bound else 'ok':>5}"
        )


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def cmd_ui(args: argparse.Namespace, extras: list[str]) -> int:
    """Locust's web UI for one planned point (form values prefilled), until Ctrl-C."""
    _check_targets([args.target], args.allow_remote)
    if args.fault:
        raise PlanError("--fault is for run and sweep: a drill's times count from a start the "
                        "web UI does not fix")  # fmt: skip
    profiles, vias = _profiles(args.kernel_profile), plan.parse_via(args.via)
    compressions = plan.parse_compression(args.compression)
    if len(profiles) > 1 or len(vias) > 1 or len(compressions) > 1:
        raise PlanError("wsbench ui takes one kernel profile, one --via and one --compression")
    point = plan.make_point(
        args.target, args.scenario, args.users, args.spawn_rate, plan.parse_duration(args.duration),
        processes=args.processes, target_processes=args.target_processes,
        kernel_profile=profiles[0], client_hosts=args.client_hosts or 1,
        host_sysctls=args.host_sysctls, target_port=args.port, tls=args.tls,
        options=tuple(extras), max_error_rate=_max_error_rate(args), pin_cpus=args.pin_cpus,
        broker=args.broker or "", tag=args.tag or "", via=vias[0],
        via_idle_timeout_s=_idle_timeout(args, vias[0]), compression=compressions[0],
    )  # fmt: skip
    _check_kernel([point])
    plan.check_options([point])
    _check_web_port(args.web_host, args.web_port)
    if args.out is not None:  # said now, not when the first session ends
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PlanError(f"cannot write results to {args.out}: {exc.strerror or exc}") from None
    listen = session.Listen("" if args.web_host == "*" else args.web_host, args.web_port)
    try:
        return session.serve(point, listen, args.out, say, _report_of)
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) is how a UI session ends
        say("wsbench ui: stopped")
        return 0


def _check_web_port(web_host: str, port: int) -> None:
    """PlanError unless the web UI's port is free: Locust would only log a busy port and exit,
    after we had printed its URL."""
    host = "" if web_host == "*" else web_host  # Locust's "*": every interface
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Locust's server
            probe.bind((host, port))
    except OSError as exc:
        raise PlanError(f"cannot serve the web UI on {web_host}:{port}: "
                        f"{exc.strerror or exc}; choose another --web-port") from None  # fmt: skip


def _report_of(store: RunStore) -> Path | None:
    """A stored UI session's report. (Its findings are a sweep's: one point answers none of
    the questions, and the console has its line already.)"""
    return write_report(store.root)


def write_report(run_dir: Path) -> Path | None:
    """The HTML report of a run folder; a report that cannot be made is said, not fatal."""
    from reports.cli import write_report as write  # pandas and matplotlib: only when needed

    try:
        return write(run_dir)
    except BadInput as exc:  # a report's bad input (ReportError, a stored file not readable)
        print(f"wsbench: no report: {exc}", file=sys.stderr)
        return None


def say_findings(run_dir: Path) -> None:
    """The run's findings table and sentences (reports/findings.py), as the report opens with."""
    from reports import findings
    from reports.load import load_run

    try:
        found = findings.build(load_run(run_dir))
    except BadInput as exc:
        print(f"wsbench: no findings: {exc}", file=sys.stderr)
        return
    print("\n".join(findings.as_text(found)), flush=True)


def cmd_report(args: argparse.Namespace, extras: list[str]) -> int:
    from reports.cli import write_report as write

    say(f"report: {write(args.run_dir, args.out)}")
    return 0


def cmd_compare(args: argparse.Namespace, extras: list[str]) -> int:
    from reports.cli import write_comparison_of

    page, result = write_comparison_of(args.run_a, args.run_b, args.out, args.threshold_pct)
    say(f"comparison: {page}")
    say(result.in_common)
    if not result.compared:
        # A gate that compared nothing must not pass: say so on stderr, one line.
        what = "share no point" if not result.shared else "share no point that is ok in both"
        line = f"wsbench: {args.run_a} and {args.run_b} {what}: nothing compared"
        if args.fail_on_regression:
            print(line, file=sys.stderr)
            return 1
        say(line.removeprefix("wsbench: "))
        return 0
    if result.regressed:
        say(f"regression: a metric is more than {args.threshold_pct:g}% worse in {args.run_b}")
        return 1 if args.fail_on_regression else 0
    say("no regression flagged")
    return 0


def cmd_worker(args: argparse.Namespace, extras: list[str]) -> int:
    cmd = procs.worker_command(args.scenario, args.master_host, args.master_port, args.processes)
    say("wsbench worker: " + shlex.join(cmd))
    return procs.subprocess.call(cmd + extras)


def cmd_kernel(args: argparse.Namespace, extras: list[str]) -> int:
    from kernel.profile import ProfileError
    from kernel.show import list_lines, show_lines

    try:
        lines = list_lines() if args.kernel_command == "list" else show_lines(args.name)
    except ProfileError as exc:
        raise PlanError(str(exc)) from None
    for line in lines:
        say(line)
    return 0


COMMANDS = {
    "run": cmd_run, "sweep": cmd_sweep, "ui": cmd_ui, "worker": cmd_worker,
    "report": cmd_report, "compare": cmd_compare, "kernel": cmd_kernel,
}  # fmt: skip
# Commands that may start load: before they do, undo host sysctls a killed run left changed.
RECOVERING = ("run", "sweep", "ui")


def _recover_host_sysctls() -> None:
    try:
        hostsysctl.recover(say)
    except OSError as exc:  # e.g. a root run's state file, and this user is not root
        raise hostsysctl.HostSysctlError(
            f"cannot check {hostsysctl.state_path()} for host sysctls a killed run left "
            f"changed: {exc.strerror or exc}"
        ) from None


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    command = COMMANDS[args.command]
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    # Started from a background job, SIGINT arrives ignored; Ctrl-C/kill -INT must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _check_no_extras(args, extras)
        if args.command in RECOVERING:
            _recover_host_sysctls()
        return command(args, extras)
    except WsbenchError as exc:  # every package's one-line errors, each with its exit status
        print(f"wsbench: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        resume = " (re-run the same sweep to resume)" if args.command == "sweep" else ""
        print(f"wsbench: interrupted; children stopped, completed points kept{resume}",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
