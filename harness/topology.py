"""The parts of a point's topology, each a context manager that starts it and always stops it.

    testbed    network namespaces with the kernel profile (and host sysctls), or nothing
    counters   kernel counters read on every side before the load and after it
    sampling   1 Hz CPU, RSS and socket samples of the processes below
    broker     redis-server for the target's processes to share rooms through, or nothing
    target     the reference target (in the server namespace), or a check of an external URL
    proxy      nginx or HAProxy in front of the target (--via), or nothing
    locust     Locust in client host 0 and, with several client hosts, its workers
    faults     the failover drills, done on time while Locust runs

`execute.run_point` enters them in this order in one ExitStack, so they stop in the reverse
one: Locust first (it writes its CSVs), then the target, then the counters are read, and the
namespaces go last. What a part learns while it runs or stops (samples, counter deltas, the
target's exit status, clean-up problems) it leaves on the `PointRun` it was given: a failure
in a clean-up is a warning on the point, never the loss of what was measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from common.procs import scheduling
from common.schema import (
    KERNEL_COUNTERS_JSON,
    LOCUST_LOG,
    LOCUST_PREFIX,
    RESOURCES_CSV,
    TARGET_LOG,
    write_json,
)
from harness import broker as brokers
from harness import faults as drills
from harness import procs, sampling
from harness import proxy as proxies
from harness.plan import Fault, Point, fd_limit, nofile_of, parse_fault, profile_of
from kernel import counters, netns
from kernel.hostsysctl import HostSysctlError

Say = Callable[[str], None]


@dataclass
class PointRun:
    """What one point's parts found out: read by `execute` to write the point's summary."""

    point: Point
    pdir: Path
    say: Say
    warnings: list[str] = field(default_factory=list)
    bed: netns.Testbed | None = None
    sides: dict[str, Path] = field(default_factory=lambda: {"host": counters.NET_DIR})
    counter_record: dict[str, Any] | None = None
    samples: list[sampling.Sample] = field(default_factory=list)
    target: procs.Target | None = None
    target_idle_rss: int | None = None
    target_status: int | None = None
    command: list[str] | None = None  # Locust's (or its master's) command line
    locust_started: float | None = None  # monotonic s: the measured time is Locust's own
    locust_ended: float | None = None
    broker: brokers.Broker | None = None
    faults_done: list[drills.Done] = field(default_factory=list)
    proxy: proxies.Proxy | None = None
    proxy_status: int | None = None
    proxy_idle_rss: int | None = None
    idle: dict[str, Any] | None = None  # the idle CPUs' wake-up latency request (harness/idle.py)
    scheduling: dict[str, str | None] = field(default_factory=dict)  # role -> procs.scheduling

    @property
    def host(self) -> str:
        """The URL Locust was given (the target's, or its proxy's), or the point's target as
        planned."""
        if self.target is None:
            return self.point.topology.target
        return self.proxy.url(self.target.url) if self.proxy is not None else self.target.url

    def measured_s(self) -> float | None:
        """The point's run time, or less when Locust was stopped early (its target died)."""
        if self.locust_started is None:
            return None
        ended = self.locust_ended or time.monotonic()
        return min(self.point.workload.duration_s, ended - self.locust_started)


@contextlib.contextmanager
def testbed(run: PointRun) -> Iterator[netns.Testbed | None]:
    """The point's namespaces with its kernel profile, removed (host sysctls restored) at exit;
    None on the host's own settings."""
    topology = run.point.topology
    profile = profile_of(topology)
    if profile is None:
        yield None
        return
    bed = netns.Testbed(profile, topology.client_hosts, topology.client_addresses,
                        topology.host_sysctls, run.say).open()  # fmt: skip
    run.bed = bed
    run.sides = {side: ns.net_dir for side, ns in bed.namespaces().items()}
    try:
        for line in netns.describe(bed):
            run.say(f"  {line}")
        yield bed
    finally:
        try:
            left = bed.close()
        except (HostSysctlError, OSError) as exc:
            run.warnings.append(f"clean-up failed: {exc}")
        else:
            if left:
                run.warnings.append(f"processes left in the namespaces were killed: {left}")


@contextlib.contextmanager
def kernel_counters(run: PointRun) -> Iterator[None]:
    """Counters on every side before the load; after it, their changes in kernel_counters.json."""
    extra = counter_extra(run)
    before = snapshots(run.sides, extra)
    try:
        yield
    finally:
        try:
            run.counter_record = store_counters(run.sides, before, run.pdir, extra)
        except OSError as exc:
            run.warnings.append(f"kernel counters not stored: {exc}")


@contextlib.contextmanager
def resource_sampling(run: PointRun) -> Iterator[sampling.Sampler]:
    """A sampler of the processes the parts after it register, stopped (samples kept) at exit."""
    sampler = sampling.Sampler(run.pdir / RESOURCES_CSV)
    if run.bed is not None:  # on the host, the processes' own sockets are what is counted
        for side, net_dir in run.sides.items():
            sampler.watch_sockstat(side, net_dir)
    try:
        yield sampler
    finally:
        run.samples = sampler.stop()


@contextlib.contextmanager
def broker(run: PointRun, sampler: sampling.Sampler) -> Iterator[brokers.Broker | None]:
    """The point's broker where the target runs (server namespace or loopback), ready; stopped
    at exit. None without one."""
    topology = run.point.topology
    if not topology.broker:
        yield None
        return
    enter, host, port = _beside_target(run, brokers.REDIS_PORT)
    started = brokers.start_redis(run.pdir, host, port, enter=enter,
                                  cpus=topology.cpu_split()[0])  # fmt: skip
    run.broker = started
    try:
        sampler.watch("broker", started.proc.pid)
        yield started
    finally:
        started.stop()


def _beside_target(run: PointRun, namespace_port: int) -> tuple[Sequence[str], str, int]:
    """(command prefix, address, port) for a helper process where the target runs: the server
    namespace, where a fresh namespace has every port free, or loopback, on a port the kernel
    says is free now."""
    bed = run.bed
    if bed is None or bed.server is None:
        return (), "127.0.0.1", procs.free_port("127.0.0.1")
    return bed.server.enter(), netns.SERVER_ADDRESS, namespace_port


@contextlib.contextmanager
def target(run: PointRun, sampler: sampling.Sampler) -> Iterator[procs.Target]:
    """The reference target, ready, in the server namespace when there is one; stopped at exit."""
    started = _start_target(run, run.point)
    run.target = started
    try:
        if started.proc is not None:
            sampler.watch("target", started.proc.pid)
            run.scheduling["target"] = scheduling(started.proc.pid)
            # Before any load: what the server costs with no connections, so memory per
            # connection can be told apart from the process's fixed size.
            run.target_idle_rss = sampler.rss_bytes("target")
        yield started
    finally:
        run.target_status = started.stop()


@contextlib.contextmanager
def proxy(
    run: PointRun, target_: procs.Target, sampler: sampling.Sampler
) -> Iterator[procs.Target]:
    """What Locust connects to: the target, or with --via the proxy in front of it (where the
    target runs, as many workers as it has processes, on its CPUs; with --tls it terminates
    TLS), stopped at exit."""
    topology = run.point.topology
    if not topology.via:
        yield target_
        return
    enter, host, port = _beside_target(run, proxies.PROXY_PORT)
    upstream = target_.url.split("://", 1)[1].split("/", 1)[0]
    started = proxies.start(
        topology.via, run.pdir, host, port, upstream, workers=topology.target_processes,
        idle_timeout_s=topology.via_idle_timeout_s or None,
        nofile=nofile_of(topology) or fd_limit(), enter=enter, cpus=topology.cpu_split()[0],
        tls=topology.tls_at == "proxy",
    )  # fmt: skip
    run.proxy = started
    ca_file = started.tls.ca if started.tls is not None else target_.ca_file
    try:
        sampler.watch("proxy", started.proc.pid)
        run.proxy_idle_rss = sampler.rss_bytes("proxy")  # before any load, as the target's
        yield procs.Target(started.url(target_.url), started.proc, started.log_path, ca_file)
    finally:
        run.proxy_status = started.stop()


@dataclass(frozen=True)
class WebUI:
    """Locust with its web UI instead of headless (wsbench ui): where it listens, and the
    folder it writes each test started from the UI into (scenarios/sessions.py)."""

    host: str
    port: int
    sessions: Path

    def arguments(self) -> list[str]:
        return ["--web-host", self.host, "--web-port", str(self.port),
                "--wsbench-sessions", str(self.sessions)]  # fmt: skip


@contextlib.contextmanager
def locust(
    run: PointRun, target_: procs.Target, sampler: sampling.Sampler, web: WebUI | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Locust in client host 0; with several client hosts, a worker group on each other one.
    The master first in the list: at exit it is stopped first, and tells its workers to stop.
    With `web`, Locust serves its web UI and runs what is started there."""
    point, bed = run.point, run.bed
    master = netns.client_address(0, 0) if point.topology.client_hosts > 1 else None
    run.command = procs.locust_command(point, target_.url, run.pdir / LOCUST_PREFIX,
                                       headless=web is None, ca_file=target_.ca_file,
                                       master_host=master)  # fmt: skip
    if web is not None:
        run.command += web.arguments()
    started: list[subprocess.Popen[bytes]] = []
    try:
        nofile = nofile_of(point.topology)
        enter = bed.clients[0].enter() if bed else []
        cpus = point.topology.cpu_split()[1]
        started.append(procs.spawn([*enter, *run.command], run.pdir / LOCUST_LOG, nofile=nofile,
                                   cpus=cpus, generator=True))  # fmt: skip
        if bed is not None and master is not None:
            started += _workers(point, bed, master, run.pdir, nofile)
        run.locust_started = time.monotonic()
        run.scheduling["locust"] = scheduling(started[0].pid)
        for proc in started:
            sampler.watch("locust", proc.pid)
        sampler.start()
        yield started
    finally:
        for proc in started:
            procs.stop(proc)


def _start_target(run: PointRun, point: Point) -> procs.Target:
    bed = run.bed
    enter = bed.server.enter() if bed and bed.server else ()
    host = netns.SERVER_ADDRESS if bed else None
    url = run.broker.url if run.broker is not None else None
    return procs.start_target(point.topology, run.pdir / TARGET_LOG, enter=enter, host=host,
                              broker_url=url)  # fmt: skip


@contextlib.contextmanager
def faults(run: PointRun, target_: procs.Target, sampler: sampling.Sampler) -> Iterator[None]:
    """The point's faults done on time after Locust started (none: nothing happens)."""
    planned = [parse_fault(text) for text in run.point.topology.faults]
    if not planned or run.locust_started is None:
        yield
        return

    def act(fault: Fault) -> tuple[str, list[int]]:
        if fault.action == "kill-target":
            return _kill_worker(target_)
        if fault.action == "restart-target":
            return _restart(run, target_, sampler)
        return _kill_broker(run)

    injector = drills.Injector(planned, run.locust_started, act).start()
    try:
        yield
    finally:
        injector.stop()
        run.faults_done = injector.done
        run.warnings += injector.errors


def _kill_worker(target_: procs.Target) -> tuple[str, list[int]]:
    """SIGKILL one of the target's worker processes (the supervisor starts another)."""
    root = psutil.Process(target_.proc.pid)
    workers = sorted((p for p in root.children(recursive=True) if "--worker" in p.cmdline()),
                     key=lambda p: p.pid)  # fmt: skip
    if not workers:
        raise procs.RunError("the target has no worker processes to kill")
    victim = workers[0]
    victim.send_signal(signal.SIGKILL)
    return f"SIGKILL to target worker {victim.pid} (1 of {len(workers)})", [victim.pid]


def _restart(
    run: PointRun, target_: procs.Target, sampler: sampling.Sampler
) -> tuple[str, list[int]]:
    """SIGKILL every target process, then start the target again on the same port."""
    old = target_.proc
    root = psutil.Process(old.pid)
    pids = [old.pid, *(p.pid for p in root.children(recursive=True))]
    target_.restarting = True
    os.killpg(old.pid, signal.SIGKILL)  # its own session: the group is its workers too
    old.wait()
    began = time.monotonic()
    port = int(target_.url.rsplit(":", 1)[1].split("/")[0])
    point = run.point.with_topology(target_port=port)
    again = _start_target(run, point)
    target_.proc = again.proc
    target_.restarting = False
    sampler.watch("target", again.proc.pid)
    return (f"SIGKILL to the target's {len(pids)} process(es); started again, ready after "
            f"{time.monotonic() - began:.2f} s", pids)  # fmt: skip


def _kill_broker(run: PointRun) -> tuple[str, list[int]]:
    proc = run.broker.proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return f"SIGKILL to {brokers.REDIS_BINARY} {proc.pid}", [proc.pid]


def _workers(
    point: Point, bed: netns.Testbed, master: str, pdir: Path, nofile: int | None
) -> list[subprocess.Popen[bytes]]:
    hosts = point.topology.load_hosts()
    workers = []
    for host in hosts:
        cmd = procs.worker_command(
            point.workload.scenario, master, point.topology.master_port,
            point.topology.processes // len(hosts), point.workload.options,
        )  # fmt: skip
        log = pdir / f"locust-worker{host}.log"
        workers.append(procs.spawn([*bed.clients[host].enter(), *cmd], log, nofile=nofile,
                                   cpus=point.topology.cpu_split()[1], generator=True))  # fmt: skip
    return workers


def counter_extra(run: PointRun) -> Callable[[], dict[str, dict[str, int]]] | None:
    """What reads the counters no /proc file holds (a profile's firewall), or None."""
    if run.bed is None or run.bed.profile.firewall is None:
        return None
    return run.bed.firewall_counters


def snapshots(
    sides: dict[str, Path], extra: Callable[[], dict[str, dict[str, int]]] | None = None
) -> dict[str, counters.Snapshot]:
    """The kernel counters of every side now (a side that cannot be read is left out), with
    the counters `extra` reads per side (a firewall's) among them."""
    found = {}
    more = extra() if extra is not None else {}
    for side, net_dir in sides.items():
        try:
            snap = counters.read_snapshot(net_dir)
        except counters.CounterError:
            continue  # a point does not fail for want of counters; they are just not stored
        found[side] = dataclasses.replace(snap, counters={**snap.counters, **more.get(side, {})})
    return found


def store_counters(
    sides: dict[str, Path], before: dict[str, counters.Snapshot], pdir: Path,
    extra: Callable[[], dict[str, dict[str, int]]] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The counters' changes on every side since `before`, in pdir's kernel_counters.json."""
    after = snapshots({side: sides[side] for side in before}, extra)
    pairs = {side: (before[side], after[side]) for side in before if side in after}
    if not pairs:
        return None
    record = counters.point_record(pairs)
    write_json(pdir / KERNEL_COUNTERS_JSON, record)
    return record
