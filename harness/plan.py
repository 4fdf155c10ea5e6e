"""Points and sweeps: what to run, validated before anything starts.

A point is one target x one scenario x one load (users, spawn rate, duration, and for the
open-model scenarios an offered rate) x one kernel profile. A sweep is the cross product of lists
of those, read from the command line or a TOML file, ordered so that connection counts grow
within each (target, scenario, profile) series, or, with rates, so that the offered rate grows at
each connection count: what the SLO stop needs. A matrix file may hold several sweeps (`[[part]]`
tables over shared top-level keys): the default benchmark asks several questions in one run.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import math
import os
import re
import resource
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.errors import BadInput
from harness import broker, proxy
from kernel.inside import read as read_sysctl
from kernel.netns import KernelError, check_privileges, client_address
from kernel.profile import (
    HOST_PROFILE,
    MAX_CLIENT_ADDRESSES,
    Profile,
    ProfileError,
    parse_port_range,
)
from kernel.profile import load as load_profile
from targets import COMPRESSIONS, DEFLATE_TARGETS, TARGETS
from targets.protocol import DEFAULT_MAX_MESSAGE_BYTES

REPO = Path(__file__).resolve().parent.parent
SCENARIO_DIR = REPO / "scenarios"
SCENARIOS = ("echo", "echo_rate", "connect", "hold", "broadcast", "push")
# File descriptors a Locust process needs besides its users' sockets (Python, gevent, logs).
FD_HEADROOM = 500
# More processes than this on one machine is a mistake, not a plan: raise the limit instead.
MAX_PROCESSES = 64
MAX_DURATION_S = 24 * 3600
MAX_USERS = 1_000_000
MAX_CLIENT_HOSTS = 16
# What a fresh network namespace gets (the kernel's compiled default), when a profile is silent.
FRESH_PORT_RANGE = (32768, 60999)
# Plan concurrent connections per source address at half the port range: above that, connect()
# spends more and more kernel time searching for a free port (at 100k connections over 4
# addresses on the host's range it took most of a core, and connects took seconds), and ports
# in TIME_WAIT after reconnects need room too.
PORT_RANGE_USE = 0.5
SOURCE_IPS_OPTION = "--ws-source-ips"
# A point is failed when more than this share of its main measurement's requests failed.
DEFAULT_MAX_ERROR_RATE = 0.01
# The scenario option an offered total rate becomes, divided over the connections: the open-model
# scenarios' per-connection rate (msgs/s for echo_rate, connects/s for connect).
RATE_OPTIONS = {"echo_rate": "--rate", "connect": "--arrival-rate"}


class PlanError(BadInput, ValueError):
    """Bad input: reported as one line and exit status 2."""


@dataclass(frozen=True)
class SLO:
    """Stop growing connections for a series once a point breaks one of these."""

    p99_ms: float | None = None
    error_rate: float | None = None  # failures / requests, 0..1

    def __bool__(self) -> bool:
        return self.p99_ms is not None or self.error_rate is not None


@dataclass(frozen=True)
class Workload:
    """What the users do: the scenario, how many users, how fast they start, for how long."""

    scenario: str
    users: int
    spawn_rate: float
    duration_s: float
    options: tuple[str, ...] = ()  # scenario options, passed to Locust as they are
    # failures / requests of the main measurement above which the point is failed, 0..1
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    # The offered total rate of an open-model scenario (its RATE_OPTIONS option per connection is
    # among `options`); None: the scenario's options say what the load is.
    rate: float | None = None
    # A word in the point id: tells apart points that differ only in their options (a matrix
    # part comparing --reconnect-jitter 0 with the default); "": none.
    tag: str = ""


@dataclass(frozen=True)
class Topology:
    """Where the target and the load generators run, with how many processes and addresses."""

    target: str  # a reference target name, or a ws:// / wss:// URL
    target_processes: int = 1
    target_port: int = 0
    tls: bool = False
    processes: int = 1  # Locust processes
    kernel_profile: str = HOST_PROFILE
    host_sysctls: bool = False  # the profile's host-wide sysctls may be applied (and restored)
    # Client "hosts" (namespaces) with a kernel profile: one runs Locust, or with several, the
    # first runs the master and the others its workers.
    client_hosts: int = 1
    client_addresses: int = 0  # source addresses per client host; 0: sized from the port range
    # Distributed: this run is a Locust master waiting for this many `wsbench worker`s.
    expect_workers: int = 0
    master_bind_host: str = "127.0.0.1"
    master_port: int = 5557
    # The target on the first half of this process's CPUs, Locust on the rest: on a small
    # machine the two otherwise take turns on one core and the generator's delay grows.
    pin_cpus: bool = False
    broker: str = ""  # "redis": the target's processes share rooms through it; "": none
    faults: tuple[str, ...] = ()  # failover drills, as parse_fault reads them: kill-target@10s
    via: str = ""  # a reverse proxy in front of the target: "nginx", "haproxy"; "": direct
    via_idle_timeout_s: float = 0.0  # the proxy's idle timeout; 0: its own default
    # "deflate": the client offers permessage-deflate and the reference target serves it with
    # its library's own (--compression); "": none
    compression: str = ""

    @property
    def external(self) -> bool:
        return is_url(self.target)

    @property
    def tls_at(self) -> str:
        """Where TLS is terminated: "proxy" (--tls with --via: the proxy serves wss:// and
        talks ws:// to the target), "target" (--tls alone), "" (ws://)."""
        if not self.tls:
            return ""
        return "proxy" if self.via else "target"

    @property
    def namespaced(self) -> bool:
        return self.kernel_profile != HOST_PROFILE

    @property
    def has_master(self) -> bool:
        """Locust runs as a master whose workers are other processes it waits for: remote
        `wsbench worker`s, or the worker groups on client hosts 1..N-1."""
        return bool(self.expect_workers) or self.client_hosts > 1

    @property
    def workers_expected(self) -> int:
        return self.expect_workers or self.processes

    def cpu_split(self) -> tuple[frozenset[int] | None, frozenset[int] | None]:
        """(the target's CPUs, Locust's) with pin_cpus and two CPUs or more, else (None, None)."""
        cpus = sorted(os.sched_getaffinity(0))
        if not self.pin_cpus or len(cpus) < 2 or self.external:
            return None, None
        half = len(cpus) // 2
        return frozenset(cpus[:half]), frozenset(cpus[half:])

    def load_hosts(self) -> list[int]:
        """The client hosts whose Locust processes open connections (not a master's host)."""
        return list(range(1, self.client_hosts)) if self.client_hosts > 1 else [0]


@dataclass(frozen=True)
class Point:
    """One run of a workload on a topology."""

    workload: Workload
    topology: Topology

    @property
    def point_id(self) -> str:
        target = self.topology.target
        if self.topology.external:
            parts = urlsplit(target)
            target = _slug(f"{parts.scheme}_{parts.netloc}{parts.path}")
        rate = f"-r{self.workload.rate:g}" if self.workload.rate is not None else ""
        extra = "".join(f"-{part}" for part in self._topology_parts())
        if self.workload.tag:
            extra += f"-{_slug(self.workload.tag)}"
        return (f"{target}-{self.workload.scenario}-u{self.workload.users}{rate}{extra}-"
                f"{_slug(self.topology.kernel_profile)}")  # fmt: skip

    def _topology_parts(self) -> list[str]:
        """The point id's words for a broker, a proxy, compression and faults (none for points
        without them, so the ids of earlier runs stay what they were)."""
        topology = self.topology
        parts = [f"p{topology.target_processes}-{topology.broker}"] if topology.broker else []
        if topology.via:
            parts.append(f"via-{topology.via}")
            if topology.via_idle_timeout_s:
                parts.append(f"idle{topology.via_idle_timeout_s:g}s")
        if topology.compression:
            parts.append(topology.compression)
        if topology.tls:
            parts.append("wss")
        for text in topology.faults:
            fault = parse_fault(text)
            parts.append(f"{fault.action}{fault.at_s:g}s")
        return parts

    def with_workload(self, **changes: Any) -> Point:
        return replace(self, workload=replace(self.workload, **changes))

    def with_topology(self, **changes: Any) -> Point:
        return replace(self, topology=replace(self.topology, **changes))

    def as_dict(self) -> dict[str, object]:
        """The stored parameters (schema.PointParams): one flat record, as point.json holds it."""
        data: dict[str, object] = {**asdict(self.topology), **asdict(self.workload)}
        data["options"] = list(self.workload.options)
        data["point_id"] = self.point_id
        if data["rate"] is None:
            del data["rate"]  # as points were stored before rates: their sweeps still resume
        for key in ("broker", "faults", "tag", "via", "via_idle_timeout_s", "compression"):
            if not data[key]:
                del data[key]
        if "faults" in data:
            data["faults"] = list(self.topology.faults)
        return data


WORKLOAD_FIELDS = frozenset(f.name for f in fields(Workload))
TOPOLOGY_FIELDS = frozenset(f.name for f in fields(Topology))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "x"


def is_url(target: str) -> bool:
    return target.startswith(("ws://", "wss://"))


def check_target(target: str) -> str:
    if is_url(target):
        parts = urlsplit(target)
        if not parts.hostname:
            raise PlanError(f"target URL {target!r} has no host")
        return target
    if target not in TARGETS:
        choices = ", ".join(sorted(TARGETS))
        raise PlanError(f"unknown target {target!r}: choose one of {choices}, or a ws:// URL")
    return target


# Where load may go without asking: this machine, and the benchmarking range (RFC 2544) in which
# the suite's own network namespaces live.
LOCAL_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"),
                  ipaddress.ip_network("198.18.0.0/15"))  # fmt: skip


def check_local(url: str) -> None:
    """PlanError unless every address the URL's host resolves to is local (see LOCAL_NETWORKS)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise PlanError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not any(address in net for net in LOCAL_NETWORKS):
            raise PlanError(
                f"{url} resolves to {address}, not this machine: load goes to loopback unless "
                "you pass --allow-remote for a server you own"
            )


def check_scenario(scenario: str) -> str:
    if scenario not in SCENARIOS:
        raise PlanError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    return scenario


def locustfile(scenario: str) -> Path:
    return SCENARIO_DIR / f"{check_scenario(scenario)}.py"


OPTIONS_CHECK_TIMEOUT_S = 60.0


def option_checks(points: Iterable[Point]) -> dict[tuple[str, tuple[str, ...]], int | None]:
    """Each distinct (scenario, options) of the points, with the message size its options must
    fit: a reference target's limit, or None when all its targets are URLs (the user's server,
    whose limits are its own: there a point measures the refusals)."""
    checks: dict[tuple[str, tuple[str, ...]], int | None] = {}
    for point in points:
        key = (point.workload.scenario, point.workload.options)
        limit = None if point.topology.external else DEFAULT_MAX_MESSAGE_BYTES
        if key not in checks or checks[key] is None:
            checks[key] = limit
    return checks


def check_options(points: Iterable[Point]) -> None:
    """PlanError (the scenario's one line) unless every point's scenario options are ones its
    Locust run can use, checked by Locust's own parser with the locustfile loaded
    (`python -m scenarios.check`): the locustfiles define their options, nobody else.

    One process for every distinct (scenario, options): it imports Locust once (most of a
    second), which must not happen in the runner (Locust monkey-patches with gevent). A point
    with no scenario options has nothing to check (the locustfiles' defaults are valid and
    fit every message limit) and starts no process.
    """
    checks = [{"scenario": scenario, "options": list(options), "max_message_bytes": limit}
              for (scenario, options), limit in option_checks(points).items()
              if options]  # fmt: skip
    if not checks:
        return
    try:
        done = subprocess.run(
            [sys.executable, "-m", "scenarios.check", "--batch"], input=json.dumps(checks),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=OPTIONS_CHECK_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PlanError(f"checking the scenario options took over "
                        f"{OPTIONS_CHECK_TIMEOUT_S:g} s") from None  # fmt: skip
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        if done.returncode != 2:  # it crashed: say so rather than blame the options
            why = f"cannot check the scenario options: {why}"
        raise PlanError(why)


def parse_duration(text: str) -> float:
    """'30s', '2m', '1h30m', '45' (seconds) -> seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
        if not text or not parts or not any(parts.groups()):
            raise PlanError(f"duration {text!r} is not like 30s, 2m or 1h30m")
        h, m, s = parts.groups()
        seconds = int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)
    if not 0 < seconds <= MAX_DURATION_S:
        raise PlanError(f"duration {text!r} must be more than 0 s and at most 24 h")
    return seconds


FAULT_ACTIONS = {
    "kill-target": "SIGKILL one target process (its supervisor starts another)",
    "restart-target": "SIGKILL every target process, then start the target again",
    "kill-broker": "SIGKILL the broker (the targets go on with local rooms)",
}


@dataclass(frozen=True)
class Fault:
    """A failover drill: `action` at `at_s` seconds after Locust started."""

    action: str
    at_s: float

    def __str__(self) -> str:
        return f"{self.action}@{self.at_s:g}s"


def parse_fault(text: str) -> Fault:
    """'kill-target@10s' -> Fault; PlanError naming the actions for anything else."""
    action, at, when = text.strip().partition("@")
    if action not in FAULT_ACTIONS or not at:
        raise PlanError(f"fault {text!r} is not ACTION@TIME with ACTION one of "
                        f"{', '.join(FAULT_ACTIONS)} (e.g. kill-target@10s)")  # fmt: skip
    return Fault(action, parse_duration(when))


def check_topology(point: Point) -> None:
    """PlanError unless the point's broker and faults make sense for it (after `sized`)."""
    topology, workload = point.topology, point.workload
    if topology.broker:
        if topology.external:
            raise PlanError(f"--broker runs with the reference targets; {topology.target} has "
                            "its own")  # fmt: skip
        try:
            broker.check_installed(topology.broker)
        except broker.BrokerError as exc:
            raise PlanError(str(exc)) from None
    elif workload.scenario == "broadcast" and topology.target_processes > 1:
        raise PlanError(
            f"broadcast with {topology.target_processes} target processes needs --broker redis: "
            "without a broker each process has its own rooms, and members on the other "
            "processes would never receive (or use --target-processes 1)"
        )
    if topology.compression:
        _check_compression(topology)
    if topology.via:
        _check_via(topology)
    elif topology.via_idle_timeout_s:
        raise PlanError("--via-idle-timeout is the proxy's: it needs --via nginx or haproxy")
    for text in topology.faults:
        fault = parse_fault(text)
        if fault.at_s >= workload.duration_s:
            raise PlanError(f"fault {fault} is not within the run's {workload.duration_s:g} s")
        if topology.external:
            raise PlanError(f"fault {fault} needs a reference target, which the run starts")
        if fault.action == "kill-target" and topology.target_processes < 2:
            raise PlanError(f"fault {fault} needs --target-processes 2 or more: with one "
                            "process nothing is left to serve (use restart-target)")  # fmt: skip
        if fault.action == "kill-broker" and not topology.broker:
            raise PlanError(f"fault {fault} needs --broker redis")
        if fault.action == "restart-target" and topology.tls_at == "target":
            raise PlanError(f"fault {fault} with --tls at the target: started again it would "
                            "have a new throwaway CA, which the clients do not trust (with "
                            "--via the proxy keeps its certificate)")  # fmt: skip


def _check_via(topology: Topology) -> None:
    if topology.external:
        raise PlanError(f"--via runs a proxy in front of the reference targets; put yours in "
                        f"front of {topology.target} yourself")  # fmt: skip
    try:
        proxy.check_installed(topology.via)
    except proxy.ProxyError as exc:
        raise PlanError(str(exc)) from None


def _check_compression(topology: Topology) -> None:
    if topology.compression not in COMPRESSIONS:
        raise PlanError(f"compression must be one of {', '.join(COMPRESSIONS)}, got "
                        f"{topology.compression!r}")  # fmt: skip
    if not topology.external and topology.target not in DEFLATE_TARGETS:
        raise PlanError(f"--compression deflate: the {topology.target} target does not implement "
                        f"permessage-deflate (RFC 7692); use "
                        f"{' or '.join(sorted(DEFLATE_TARGETS))}, or --compression none for it "
                        "(a sweep: its own [[part]])")  # fmt: skip


def parse_compression(value: object) -> list[str]:
    """'none,deflate' or a list -> ['', 'deflate'] ('' is none); PlanError for another name."""
    return _choices(value, "compression", COMPRESSIONS, "none")


def parse_via(value: object) -> list[str]:
    """'direct,nginx' or a list -> ['', 'nginx'] ('' is direct); PlanError for another name."""
    return _choices(value, "via", proxy.VIAS, "direct")


def _choices(value: object, key: str, names: Sequence[str], default: str) -> list[str]:
    """A list of `names` (default: [default]), each once; `default` itself given as ''."""
    found = []
    for name in split_list(value, key) or [default]:
        if name not in names:
            raise PlanError(f"{key} must be one of {', '.join(names)}, got {name!r}")
        found.append("" if name == default else name)
    twice = sorted({n or default for n in found if found.count(n) > 1})
    if twice:
        raise PlanError(f"{key} {', '.join(twice)} given more than once")
    return found


def fd_limit() -> int:
    """Open files one child process may have: the hard limit (children raise soft to it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)


def processes_needed(connections: int, limit: int | None = None) -> int:
    """Processes needed so that none holds more sockets than the open-file limit allows."""
    limit = limit or fd_limit()
    per_process = limit - FD_HEADROOM
    if per_process < 1:
        raise PlanError(
            f"the open-file limit ({limit}) leaves no room for sockets; raise it "
            f"(ulimit -n) above {FD_HEADROOM}"
        )
    need = max(1, math.ceil(connections / per_process))
    if need > MAX_PROCESSES:
        raise PlanError(
            f"{connections} connections would need {need} processes under the open-file "
            f"limit of {limit}; raise it (ulimit -n) or lower the users"
        )
    return need


def profile_of(topology: Topology) -> Profile | None:
    """The topology's kernel profile, or None for the host's own settings."""
    if not topology.namespaced:
        return None
    try:
        return _profile(topology.kernel_profile)
    except ProfileError as exc:
        raise PlanError(str(exc)) from None


@functools.cache
def _profile(name: str) -> Profile:
    """Each profile file is read once: every point of a run sees it as the run was planned."""
    return load_profile(name)


def check_kernel(topology: Topology) -> None:
    """PlanError unless the topology's kernel profile can run as asked, here, by this user."""
    profile = profile_of(topology)
    if not 1 <= topology.client_hosts <= MAX_CLIENT_HOSTS:
        raise PlanError(f"client hosts must be 1..{MAX_CLIENT_HOSTS}, got {topology.client_hosts}")
    if profile is None:
        if topology.client_hosts != 1:
            raise PlanError("--client-hosts needs a kernel profile: client hosts are network "
                            "namespaces (try --kernel-profile default)")  # fmt: skip
        return
    if topology.external:
        raise PlanError(
            f"a kernel profile runs a reference target in its own network namespace; "
            f"{topology.target} is outside it, so use --kernel-profile {HOST_PROFILE}"
        )
    if topology.expect_workers:
        raise PlanError(
            "--expect-workers waits for workers on other machines, which cannot reach a "
            "namespace; use --client-hosts N for workers in namespaces"
        )
    if profile.host and not topology.host_sysctls:
        raise PlanError(
            f"kernel profile {profile.name} sets host-wide sysctls "
            f"({', '.join(profile.host)}), which are global on Linux, not per namespace; "
            "pass --host-sysctls to apply them for the run (saved first, restored at exit)"
        )
    if isinstance(profile.nofile, int) and profile.nofile > fd_limit():
        raise PlanError(
            f"kernel profile {profile.name} asks for {profile.nofile} open files per process, "
            f"above the hard limit here ({fd_limit()}), which this run cannot raise"
        )
    try:
        check_privileges(profile.name)
    except KernelError as exc:
        raise PlanError(str(exc)) from None


def nofile_of(topology: Topology) -> int | None:
    """The open-file limit the topology's processes get: a profile's number, else the hard limit."""
    profile = profile_of(topology)
    if profile is not None and isinstance(profile.nofile, int):
        return profile.nofile
    return None


def port_range_of(profile: Profile | None) -> tuple[int, int]:
    """The client's ephemeral port range: the profile's, a fresh namespace's, or the host's."""
    if profile is not None:
        return profile.port_range() or FRESH_PORT_RANGE
    try:
        return parse_port_range(read_sysctl("net.ipv4.ip_local_port_range"))
    except (OSError, ValueError):
        return FRESH_PORT_RANGE


def sized(point: Point, limit: int | None = None) -> tuple[Point, list[str]]:
    """`point` with processes and source addresses raised where the limits in force need it.

    Locust and target processes: no process may hold more sockets than the open-file limit.
    Source addresses: one address holds at most the ephemeral port range's worth of connections
    to one server address and port. Returns the point and one line per change saying why.
    """
    notes: list[str] = []
    users, scenario, topology = point.workload.users, point.workload.scenario, point.topology
    profile = profile_of(topology)
    limit = limit or nofile_of(topology) or fd_limit()
    need = processes_needed(users, limit)
    if need > topology.processes and not topology.expect_workers:
        notes.append(
            f"{users} users need {need} Locust processes: one process may hold "
            f"{limit - FD_HEADROOM} sockets under the open-file limit of {limit}"
        )
        point = point.with_topology(processes=need)
    if not topology.external and need > topology.target_processes:
        notes.append(
            f"the target gets {need} processes (SO_REUSEPORT) for the same reason"
            + ("; its rooms span them through the broker" if scenario == "broadcast"
               and topology.broker else "")
        )
        point = point.with_topology(target_processes=need)
    if point.topology.client_hosts > 1:
        hosts = point.topology.client_hosts - 1
        per_host = math.ceil(point.topology.processes / hosts)
        notes.append(f"client host 0 runs the Locust master; hosts 1..{hosts} run "
                     f"{per_host} worker process(es) each")  # fmt: skip
        point = point.with_topology(processes=per_host * hosts)
    return _with_source_addresses(point, profile, notes)



def _with_source_addresses(
    point: Point, profile: Profile | None, notes: list[str]
) -> tuple[Point, list[str]]:
    topology = point.topology
    if topology.external:
        return point, notes  # its routes are not ours to know: --ws-source-ips is the user's
    low, high = port_range_of(profile)
    per_address = max(1, int((high - low + 1) * PORT_RANGE_USE))
    hosts = topology.load_hosts()
    per_host = math.ceil(point.workload.users / len(hosts))
    need = math.ceil(per_host / per_address)
    fixed = profile.client_addresses if profile else None
    if fixed is not None:
        count = fixed
        if need > fixed:
            notes.append(
                f"kernel profile {profile.name} fixes {fixed} source address(es) per client "
                f"host: {per_host} connections may run out of ports (about {per_address} per "
                f"address fit well in ip_local_port_range {low} {high})"
            )  # fmt: skip
    else:
        if need > MAX_CLIENT_ADDRESSES:
            raise PlanError(
                f"{per_host} connections from one client need {need} source addresses under "
                f"ip_local_port_range {low} {high}; widen the range or add --client-hosts"
            )
        base = max(topology.client_addresses, 1)
        count = max(base, need)
        if need > base:
            notes.append(
                f"{per_host} connections from one client host need {need} source addresses: "
                f"one address holds about {per_address} connections to one server address and "
                f"port (ip_local_port_range {low} {high})"
            )
    if count == 1 and len(hosts) == 1:
        return (point.with_topology(client_addresses=1) if profile else point), notes
    point = point.with_topology(client_addresses=count)
    if has_option(point.workload.options, SOURCE_IPS_OPTION):
        notes.append(f"{SOURCE_IPS_OPTION} was given, so it is used as it is")
        return point, notes
    if profile is not None:
        addresses = [client_address(h, n) for h in hosts for n in range(count)]
    else:  # the host's loopback: all of 127.0.0.0/8 is local, no set-up needed
        addresses = [f"127.0.0.{n + 1}" for n in range(count)]
    options = (*point.workload.options, SOURCE_IPS_OPTION, ",".join(addresses))
    return point.with_workload(options=options), notes


def make_point(
    target: str,
    scenario: str,
    users: int,
    spawn_rate: float | None = None,
    duration_s: float = 30.0,
    **extra: object,
) -> Point:
    check_target(target)
    check_scenario(scenario)
    if not 1 <= users <= MAX_USERS:
        raise PlanError(f"users must be between 1 and {MAX_USERS}, got {users}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise PlanError(f"duration must be more than 0 s and at most 24 h, got {duration_s:g} s")
    spawn = float(spawn_rate) if spawn_rate is not None else float(min(users, 1000))
    if spawn <= 0:
        raise PlanError(f"spawn rate must be positive, got {spawn:g}")
    unknown = set(extra) - WORKLOAD_FIELDS - TOPOLOGY_FIELDS
    if unknown:
        raise TypeError(f"make_point() got unexpected keyword arguments {sorted(unknown)}")
    workload = _with_rate(
        Workload(scenario, users, spawn, duration_s, **_only(extra, WORKLOAD_FIELDS))
    )
    topology = Topology(target, **_only(extra, TOPOLOGY_FIELDS))
    if topology.processes < 1 or topology.target_processes < 1:
        raise PlanError("process counts must be at least 1")
    check_rate(workload.max_error_rate, "max error rate")
    return Point(workload, topology)


def _with_rate(workload: Workload) -> Workload:
    """The workload with its offered total rate as the scenario's per-connection option."""
    if workload.rate is None:
        return workload
    flag = RATE_OPTIONS.get(workload.scenario)
    if flag is None:
        raise PlanError(f"a rate applies to the open-model scenarios {sorted(RATE_OPTIONS)}, "
                        f"not {workload.scenario}")  # fmt: skip
    if not 0 < workload.rate <= 10_000_000:
        raise PlanError(f"rate must be more than 0 and at most 10,000,000 per s, got "
                        f"{workload.rate:g}")  # fmt: skip
    if has_option(workload.options, flag):
        raise PlanError(f"{workload.scenario}: give the rate as the sweep's rates or as {flag}, "
                        "not both")  # fmt: skip
    per_connection = f"{workload.rate / workload.users:.6g}"
    return replace(workload, options=(*workload.options, flag, per_connection))


def has_option(options: Sequence[str], flag: str) -> bool:
    """`flag` is among scenario options, as `--flag value` or `--flag=value`."""
    return any(o.split("=")[0] == flag for o in options)


def _only(extra: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k in names}


def check_rate(value: float | None, key: str) -> None:
    """PlanError unless `value` is a share between 0 and 1 (or absent)."""
    if value is not None and not 0 <= value <= 1:
        raise PlanError(f"{key} must be between 0 and 1 (0.01 is 1 %), got {value:g}")


@dataclass(frozen=True)
class Sweep:
    targets: tuple[str, ...]
    scenarios: tuple[str, ...]
    users: tuple[int, ...]
    kernel_profiles: tuple[str, ...] = (HOST_PROFILE,)
    duration_s: float = 30.0
    spawn_rate: float | None = None
    processes: int = 1
    target_processes: int = 1
    client_hosts: int = 1
    host_sysctls: bool = False
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per scenario
    slo: SLO = SLO()
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    rates: tuple[float, ...] = ()  # offered total rates (open-model scenarios); () for none
    name: str = ""  # the part of a matrix file it is, if any
    pin_cpus: bool = False
    broker: str = ""
    faults: tuple[str, ...] = ()
    tag: str = ""
    vias: tuple[str, ...] = ("",)  # "" is direct
    via_idle_timeout_s: float = 0.0
    compressions: tuple[str, ...] = ("",)  # "" is none
    tls_modes: tuple[bool, ...] = (False,)  # wss:// (at the target, or the proxy with a via)

    def points(self) -> list[Point]:
        """Every point, connection counts ascending within each series (rates ascending at
        each connection count, when there are rates)."""
        return [
            make_point(
                target, scenario, users, self.spawn_rate, self.duration_s,
                processes=self.processes, target_processes=self.target_processes,
                kernel_profile=profile, client_hosts=self.client_hosts,
                host_sysctls=self.host_sysctls, options=self.options.get(scenario, ()),
                max_error_rate=self.max_error_rate, rate=rate, pin_cpus=self.pin_cpus,
                broker=self.broker, faults=self.faults, tag=self.tag, via=via,
                via_idle_timeout_s=self.via_idle_timeout_s if via else 0.0,
                compression=compression, tls=tls,
            )  # fmt: skip
            for target, scenario, profile, via, compression, tls in itertools.product(
                self.targets, self.scenarios, self.kernel_profiles, self.vias, self.compressions,
                self.tls_modes,
            )
            for users in sorted(set(self.users))
            for rate in (sorted(set(self.rates)) or [None])
        ]

    def series_key(self, point: Point) -> tuple[str, ...]:
        """The points one SLO breach stops: the rest of its connection counts, or with rates,
        the higher rates at its connection count."""
        topology = point.topology
        key = (topology.target, point.workload.scenario, topology.kernel_profile)
        key += (topology.via,) if topology.via else ()  # each proxied hop is a series too
        key += (topology.compression,) if topology.compression else ()  # and deflate
        key += ("wss",) if topology.tls else ()  # and TLS
        return (*key, str(point.workload.users)) if self.rates else key


def split_list(value: object, key: str = "list") -> list[str]:
    """'a,b' or ['a', 'b'] -> ['a', 'b']; anything else is a PlanError naming `key`."""
    if value is None:
        return []
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise PlanError(f"{key} must be a list or a comma-separated string, got {value!r}")
    if any(not isinstance(item, str | int) or isinstance(item, bool) for item in items):
        raise PlanError(f"{key} must hold names or numbers, got {value!r}")
    return [str(item).strip() for item in items if str(item).strip()]


def int_list(values: Iterable[str], key: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise PlanError(f"{key} must be whole numbers, got {list(values)}") from None


def number(value: object, key: str, kind: type[int] | type[float]) -> float | int | None:
    """A number from a sweep file or the command line, or None; PlanError names `key`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PlanError(f"{key} must be a number, got {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise PlanError(f"{key} must be a number, got {value!r}") from None


def scenario_options(value: object) -> dict[str, tuple[str, ...]]:
    """The [options] table: scenario -> arguments (a list, or one string split like a shell)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PlanError(f"options must be a table of scenario = [arguments], got {value!r}")
    options = {}
    for scenario, args in value.items():
        check_scenario(scenario)
        if isinstance(args, str):
            options[scenario] = tuple(shlex.split(args))
        elif isinstance(args, list) and all(isinstance(a, str) for a in args):
            options[scenario] = tuple(args)
        else:
            raise PlanError(f"options.{scenario} must be a list of strings, got {args!r}")
    return options


def sweep_from_settings(settings: Mapping[str, object], extra_options: Sequence[str] = ()) -> Sweep:
    """A Sweep from sweep-file keys (command-line values already laid over them)."""
    targets = split_list(settings.get("targets"), "targets")
    scenarios = split_list(settings.get("scenarios"), "scenarios")
    users = int_list(split_list(settings.get("users"), "users"), "users")
    profiles = split_list(settings.get("kernel_profiles"), "kernel_profiles") or [HOST_PROFILE]
    for key, values in (("targets", targets), ("scenarios", scenarios), ("users", users)):
        if not values:
            raise PlanError(f"a sweep needs {key} (--{key} or the --config file)")
    options = scenario_options(settings.get("options"))
    if extra_options:
        options = {s: options.get(s, ()) + tuple(extra_options) for s in scenarios}
    duration = settings.get("duration", "30s")
    if not isinstance(duration, str | int | float) or isinstance(duration, bool):
        raise PlanError(f"duration must be like 30s, got {duration!r}")
    slo = SLO(
        number(settings.get("slo_p99_ms"), "slo_p99_ms", float),
        number(settings.get("slo_error_rate"), "slo_error_rate", float),
    )
    check_rate(slo.error_rate, "slo_error_rate")
    max_error_rate = number(settings.get("max_error_rate"), "max_error_rate", float)
    check_rate(max_error_rate, "max_error_rate")
    host_sysctls, pin_cpus = settings.get("host_sysctls", False), settings.get("pin_cpus", False)
    for key, value in (("host_sysctls", host_sysctls), ("pin_cpus", pin_cpus)):
        if not isinstance(value, bool):
            raise PlanError(f"{key} must be true or false, got {value!r}")
    rates = split_list(settings.get("rates"), "rates")
    try:
        offered = tuple(float(r) for r in rates)
    except ValueError:
        raise PlanError(f"rates must be numbers (per second), got {rates}") from None
    return Sweep(
        targets=tuple(check_target(t) for t in targets),
        scenarios=tuple(check_scenario(s) for s in scenarios),
        users=users,
        kernel_profiles=tuple(profiles),
        duration_s=parse_duration(str(duration)),
        spawn_rate=number(settings.get("spawn_rate"), "spawn_rate", float),
        processes=_count(settings, "processes"),
        target_processes=_count(settings, "target_processes"),
        client_hosts=_count(settings, "client_hosts"),
        host_sysctls=host_sysctls,
        options=options,
        slo=slo,
        max_error_rate=DEFAULT_MAX_ERROR_RATE if max_error_rate is None else max_error_rate,
        rates=offered,
        name=str(settings.get("name") or ""),
        pin_cpus=bool(pin_cpus),
        broker=_broker(settings.get("broker")),
        tag=str(settings.get("tag") or ""),
        faults=tuple(str(parse_fault(f)) for f in split_list(settings.get("faults"), "faults")),
        vias=tuple(parse_via(settings.get("via"))),
        via_idle_timeout_s=_idle_timeout(settings.get("via_idle_timeout")),
        compressions=tuple(parse_compression(settings.get("compression"))),
        tls_modes=tuple(parse_tls(settings.get("tls"))),
    )


def parse_tls(value: object) -> list[bool]:
    """A sweep's tls: true, false or a list of them ([false, true]: ws:// and wss://)."""
    if value is None:
        return [False]
    found = value if isinstance(value, list) else [value]
    if not found or not all(isinstance(v, bool) for v in found):
        raise PlanError(f"tls must be true, false or a list of them, got {value!r}")
    if len(set(found)) != len(found):
        raise PlanError(f"tls {value!r} gives a value more than once")
    return list(found)


def _idle_timeout(value: object) -> float:
    """The proxy's idle timeout: a duration ("5s", 5), 0 or none for the proxy's own."""
    if value in (None, "", 0):
        return 0.0
    return parse_duration(str(value))


def _broker(value: object) -> str:
    if value in (None, "", "none"):
        return ""
    if value not in broker.BROKERS:
        raise PlanError(f"broker must be one of {', '.join(broker.BROKERS)} (or none), "
                        f"got {value!r}")  # fmt: skip
    return str(value)


def sweeps_from_settings(
    settings: Mapping[str, object], overrides: Mapping[str, object] | None = None,
    extra_options: Sequence[str] = (),
) -> list[Sweep]:  # fmt: skip
    """The sweeps of a matrix: one, or one per `part` (its keys over the top-level ones), with
    `overrides` (the command line's values) over each. Points two parts share run once."""
    top = {k: v for k, v in settings.items() if k != "part"}
    parts = settings.get("part") or [{}]
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise PlanError("part must be a list of tables ([[part]] in the sweep file)")
    overrides = dict(overrides or {})
    # With parts, --scenarios picks the parts (and their scenarios) to run, rather than
    # giving every part the same scenarios: a part's rates belong to its own.
    wanted = split_list(overrides.pop("scenarios", None), "scenarios") if len(parts) > 1 else []
    sweeps = []
    for n, part in enumerate(parts, 1):
        if "part" in part:
            raise PlanError(f"part {n}: parts do not nest")
        merged = {**top, **part, **overrides}
        if len(parts) > 1:
            merged.setdefault("name", f"part {n}")
        if wanted:
            kept = [s for s in split_list(merged.get("scenarios"), "scenarios") if s in wanted]
            if not kept:
                continue
            merged["scenarios"] = kept
        sweeps.append(sweep_from_settings(merged, extra_options))
    if not sweeps:
        raise PlanError(f"no part of the matrix runs the scenarios {wanted}")
    names = [s.name for s in sweeps]
    if len(set(names)) != len(names):
        raise PlanError(f"part names must differ, got {names}")
    return sweeps


def matrix_points(sweeps: Sequence[Sweep]) -> list[tuple[Sweep, Point]]:
    """Every point of the matrix with the sweep it is part of, each point once (its first)."""
    seen: set[str] = set()
    found = []
    for sweep in sweeps:
        for point in sweep.points():
            if point.point_id not in seen:
                seen.add(point.point_id)
                found.append((sweep, point))
    return found


def _count(settings: Mapping[str, object], key: str) -> int:
    """A count from the settings, 1 when absent (0 stays 0, for make_point to refuse)."""
    value = number(settings.get(key), key, int)
    return 1 if value is None else int(value)


def load_sweep_file(path: Path) -> dict[str, object]:
    """A sweep matrix file (TOML); its keys are the `wsbench sweep` option names."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise PlanError(f"sweep file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"sweep file {path} is not valid TOML: {exc}") from None
    known = {
        "targets", "scenarios", "users", "kernel_profiles", "duration", "spawn_rate",
        "processes", "target_processes", "options", "slo_p99_ms", "slo_error_rate",
        "client_hosts", "host_sysctls", "max_error_rate", "rates", "pin_cpus", "broker", "faults",
        "tag", "via", "via_idle_timeout", "compression", "tls",
    }  # fmt: skip
    unknown = sorted(set(data) - known - {"part"})
    if unknown:
        raise PlanError(f"sweep file {path}: unknown keys {unknown}; known: {sorted(known)}")
    parts = data.get("part", [])
    for n, part in enumerate(parts if isinstance(parts, list) else [], 1):
        extra = sorted(set(part) - known - {"name"}) if isinstance(part, dict) else []
        if extra:
            raise PlanError(f"sweep file {path}: part {n}: unknown keys {extra}")
    return data
