"""Child processes of a run: a target and Locust, started, watched and always stopped.

Children run in their own session, so a Ctrl-C at the terminal reaches only the runner, which
stops them in order (Locust first, so it writes its CSVs; then the target). Each child also gets
PR_SET_PDEATHSIG with SIGKILL: if the runner is killed outright, the kernel ends its children
at once. Not SIGTERM: nobody is left to read what a child would write on a graceful stop, and
Locust's graceful stop waits up to --stop-timeout for users whose connections may never close
(in namespaces the network under them is gone with the server namespace).
"""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from common import procs as child
from common.errors import WsbenchError
from common.procs import stop
from harness.plan import Point, Topology, locustfile, nofile_of

READY_TIMEOUT_S = 30.0
WORKERS_WAIT_S = 30.0  # a master gives up on missing workers after this
REACH_TIMEOUT_S = 3.0


class RunError(WsbenchError):
    """A run could not start or went wrong; the message is one line for the user."""


def spawn(
    cmd: Sequence[str], log_path: Path, stdout: int | None = None, nofile: int | None = None,
    cpus: frozenset[int] | None = None, generator: bool = False,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start `cmd` in its own session with stderr (and stdout unless piped) to `log_path`.

    `nofile` is its open-file limit: sockets are files, so the kernel profile's limit (which
    the plan checked is not above the hard limit), else the whole hard limit. `cpus`: the
    CPUs it may run on (Topology.cpu_split), None: any; `generator`: it is Locust (pinned and
    root, it runs in common.procs.GENERATOR_POLICY)."""
    return child.spawn(
        cmd, log_path, stdout_pipe=stdout == subprocess.PIPE, nofile=nofile or child.HARD,
        die_signal=signal.SIGKILL, cpu=cpus, generator=generator,
    )  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Target:
    url: str
    proc: subprocess.Popen[bytes] | None  # None for an external server
    log_path: Path | None
    ca_file: Path | None = None  # the CA a wss:// reference target's certificate chains to
    restarting: bool = False  # a restart-target drill has it down on purpose

    def exited(self) -> int | None:
        if self.restarting:
            return None
        return self.proc.poll() if self.proc is not None else None

    def stop(self) -> int | None:
        return stop(self.proc)


def target_command(
    topology: Topology, ca_file: Path | None = None, host: str | None = None,
    broker_url: str | None = None,
) -> list[str]:  # fmt: skip
    cmd = [
        sys.executable, "-m", "targets", topology.target,
        "--port", str(topology.target_port), "--processes", str(topology.target_processes),
    ]  # fmt: skip
    if host is not None:
        cmd += ["--host", host]
    if broker_url is not None:
        cmd += ["--broker", broker_url]
    if topology.tls_at == "target":  # at the proxy, the target serves ws:// behind it
        cmd.append("--tls")
        if ca_file is not None:
            cmd += ["--ca-file", str(ca_file)]
    if topology.compression:
        cmd += ["--compression", topology.compression]
    return cmd


def check_reachable(url: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """RunError unless something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise RunError(f"cannot reach {url}: {reason} (is the server running?)") from None


def start_target(
    topology: Topology, log_path: Path, timeout_s: float = READY_TIMEOUT_S, *,
    enter: Sequence[str] = (), host: str | None = None, broker_url: str | None = None,
) -> Target:  # fmt: skip
    """Start a reference target and wait for its ready line, or check an external URL.

    `enter` is a command prefix that runs it elsewhere (a network namespace), `host` the
    address it listens on there, `broker_url` the broker its processes share rooms through.
    """
    if topology.external:
        check_reachable(topology.target)
        return Target(topology.target, None, None)
    ca_file = log_path.with_name("ca.pem") if topology.tls_at == "target" else None
    cmd = [*enter, *target_command(topology, ca_file, host, broker_url)]
    proc = spawn(cmd, log_path, stdout=subprocess.PIPE, nofile=nofile_of(topology),
                 cpus=topology.cpu_split()[0])  # fmt: skip
    try:
        line = child.wait_ready(proc, timeout_s, log_path)
    except child.NotReady:
        stop(proc)
        raise RunError(f"target {topology.target} not ready after {timeout_s:g} s") from None
    except child.ExitedEarly as exc:
        stop(proc)
        why = exc.why or f"exit status {exc.status}"
        raise RunError(f"target {topology.target} did not start: {why}") from None
    except BaseException:
        stop(proc)
        raise
    return Target(line.split(None, 1)[1], proc, log_path, ca_file)


def locust_command(
    point: Point, host: str, csv_prefix: Path, *, headless: bool = True,
    ca_file: Path | None = None, master_host: str | None = None,
) -> list[str]:
    """Locust for the point; with several client hosts, the master that `master_host` binds."""
    workload, topology = point.workload, point.topology
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile(workload.scenario)), "--host", host,
        "--users", str(workload.users), "--spawn-rate", f"{workload.spawn_rate:g}",
        # INFO: a worker the master calls missing (and whose users it hands over) is logged so.
        "--loglevel", "INFO",
        # In the web UI this prefills the run-time field: a swarm stops by itself there too.
        "--run-time", f"{math.ceil(workload.duration_s)}s",
    ]  # fmt: skip
    if ca_file is not None:
        cmd += ["--ws-ca-file", str(ca_file)]
    if topology.compression:  # the client offers it, to a reference target or a URL alike
        cmd += ["--ws-compression", topology.compression]
    if headless:
        cmd += ["--headless", "--only-summary", "--csv", str(csv_prefix), "--stop-timeout", "5"]
    if topology.has_master:
        cmd += ["--master", "--expect-workers", str(topology.workers_expected),
                "--expect-workers-max-wait", str(int(WORKERS_WAIT_S)),
                "--master-bind-host", master_host or topology.master_bind_host,
                "--master-bind-port", str(topology.master_port)]  # fmt: skip
    elif topology.processes > 1:
        # Master and forked workers talk over a port of our choosing on loopback: Locust's
        # default (*:5557) is reachable from the network and collides with another run.
        port = free_port()
        cmd += ["--processes", str(topology.processes), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(port), "--master-port", str(port)]  # fmt: skip
    return cmd + list(workload.options)


def worker_command(
    scenario: str, master_host: str, master_port: int, processes: int = 1,
    options: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """A Locust worker (or `processes` of them) for a master at master_host:master_port."""
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile(scenario)), "--worker",
        "--master-host", master_host, "--master-port", str(master_port),
    ]  # fmt: skip
    if processes > 1:
        cmd += ["--processes", str(processes)]
    return cmd + list(options)
