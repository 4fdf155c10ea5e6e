"""Points and sweeps: what to run, validated before anything starts.

A point is one target x one scenario x one load (users, spawn rate, duration) x one kernel
profile. A sweep is the cross product of lists of those, read from the command line or a TOML
file, ordered so that connection counts grow within each (target, scenario, profile) series, which
is what the SLO stop needs.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
import resource
import shlex
import socket
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from targets.server import TARGETS

REPO = Path(__file__).resolve().parent.parent
SCENARIO_DIR = REPO / "scenarios"
SCENARIOS = ("echo", "echo_rate", "connect", "hold", "broadcast", "push")
HOST_PROFILE = "host"  # no kernel profile: the host's own settings, no namespaces
# File descriptors a Locust process needs besides its users' sockets (Python, gevent, logs).
FD_HEADROOM = 500
# More processes than this on one machine is a mistake, not a plan: raise the limit instead.
MAX_PROCESSES = 64
MAX_DURATION_S = 24 * 3600
MAX_USERS = 1_000_000


class PlanError(ValueError):
    """Bad input: reported as one line and exit status 2."""


@dataclass(frozen=True)
class SLO:
    """Stop growing connections for a series once a point breaks one of these."""

    p99_ms: float | None = None
    error_rate: float | None = None  # failures / requests, 0..1

    def __bool__(self) -> bool:
        return self.p99_ms is not None or self.error_rate is not None


@dataclass(frozen=True)
class Point:
    target: str  # a reference target name, or a ws:// / wss:// URL
    scenario: str
    users: int
    spawn_rate: float
    duration_s: float
    processes: int = 1  # Locust processes
    target_processes: int = 1
    kernel_profile: str = HOST_PROFILE
    target_port: int = 0
    tls: bool = False
    # Distributed: this run is a Locust master waiting for this many `wsbench worker`s.
    expect_workers: int = 0
    master_bind_host: str = "127.0.0.1"
    master_port: int = 5557
    options: tuple[str, ...] = ()  # scenario options, passed to Locust as they are

    @property
    def external(self) -> bool:
        return is_url(self.target)

    @property
    def point_id(self) -> str:
        target = self.target
        if self.external:
            parts = urlsplit(self.target)
            target = _slug(f"{parts.scheme}_{parts.netloc}{parts.path}")
        return f"{target}-{self.scenario}-u{self.users}-{_slug(self.kernel_profile)}"

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["options"] = list(self.options)
        data["point_id"] = self.point_id
        return data


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


def sized(point: Point, limit: int | None = None) -> tuple[Point, list[str]]:
    """`point` with Locust and target processes raised where the open-file limit needs it.

    Returns the point and one line per change saying why, for the run's output.
    """
    notes: list[str] = []
    limit = limit or fd_limit()
    need = processes_needed(point.users, limit)
    if need > point.processes and not point.expect_workers:
        notes.append(
            f"{point.users} users need {need} Locust processes: one process may hold "
            f"{limit - FD_HEADROOM} sockets under the open-file limit of {limit}"
        )
        point = replace(point, processes=need)
    if not point.external and need > point.target_processes:
        notes.append(
            f"the target gets {need} processes (SO_REUSEPORT) for the same reason"
            + ("; broadcast rooms are per process" if point.scenario == "broadcast" else "")
        )
        point = replace(point, target_processes=need)
    return point, notes


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
    rate = float(spawn_rate) if spawn_rate is not None else float(min(users, 1000))
    if rate <= 0:
        raise PlanError(f"spawn rate must be positive, got {rate:g}")
    point = Point(target, scenario, users, rate, duration_s, **extra)  # type: ignore[arg-type]
    if point.processes < 1 or point.target_processes < 1:
        raise PlanError("process counts must be at least 1")
    return point


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
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per scenario
    slo: SLO = SLO()

    def points(self) -> list[Point]:
        """Every point, connection counts ascending within each series."""
        return [
            make_point(
                target, scenario, users, self.spawn_rate, self.duration_s,
                processes=self.processes, target_processes=self.target_processes,
                kernel_profile=profile, options=self.options.get(scenario, ()),
            )  # fmt: skip
            for target, scenario, profile in itertools.product(
                self.targets, self.scenarios, self.kernel_profiles
            )
            for users in sorted(set(self.users))
        ]

    def series_key(self, point: Point) -> tuple[str, str, str]:
        return (point.target, point.scenario, point.kernel_profile)


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
    return Sweep(
        targets=tuple(check_target(t) for t in targets),
        scenarios=tuple(check_scenario(s) for s in scenarios),
        users=users,
        kernel_profiles=tuple(profiles),
        duration_s=parse_duration(str(duration)),
        spawn_rate=number(settings.get("spawn_rate"), "spawn_rate", float),
        processes=int(number(settings.get("processes"), "processes", int) or 1),
        target_processes=int(
            number(settings.get("target_processes"), "target_processes", int) or 1
        ),
        options=options,
        slo=slo,
    )


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
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise PlanError(f"sweep file {path}: unknown keys {unknown}; known: {sorted(known)}")
    return data
