"""The point's reverse proxy: Debian's nginx or HAProxy between Locust and the reference target.

Production WebSocket servers are rarely reached directly; `--via nginx|haproxy` puts one hop in
front of the target, started per point where the target runs (the server namespace, or
loopback) from a template in harness/proxies/, with the WebSocket upgrade passed on, as many
workers (nginx processes, HAProxy threads) as the target has processes, on the target's CPUs
with --pin-cpus, and its own port. It stops with the point; the config it ran with is the
point's proxy.conf, its log proxy.log, its version in the summary. An upgraded connection idle
for --via-idle-timeout is closed by the proxy (nginx's proxy_read_timeout, HAProxy's
timeout tunnel): the defaults are each one's own as Debian ships it, 60 s and 50 s. With --tls
the proxy terminates TLS (a throwaway CA's certificate from trustme, as the targets make theirs;
TLS 1.2 and 1.3, each one's default ciphers and session cache) and talks ws:// to the target.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from common import procs as child
from common.errors import WsbenchError
from common.procs import last_line, stop

PROXIES = {"nginx": ("nginx", "nginx"), "haproxy": ("haproxy", "haproxy")}  # binary, package
VIAS = ("direct", *PROXIES)
DEFAULT_IDLE_TIMEOUT_S = {"nginx": 60.0, "haproxy": 50.0}
PROXY_CONF = "proxy.conf"
PROXY_LOG = "proxy.log"
PROXY_PORT = 8080  # in the server namespace, where nothing else listens
READY_TIMEOUT_S = 15.0
POLL_S = 0.05
TEMPLATES = Path(__file__).with_name("proxies")
TEMPLATE = {"nginx": "nginx.conf.j2", "haproxy": "haproxy.cfg.j2"}


class ProxyError(WsbenchError):
    """The proxy cannot start: one line, naming what to install when it is missing."""


def check_installed(kind: str) -> None:
    """ProxyError unless `kind` is a proxy this suite can start, installed here."""
    if kind not in PROXIES:
        raise ProxyError(f"unknown proxy {kind!r}: choose one of {', '.join(VIAS)}")
    binary, package = PROXIES[kind]
    if _binary(binary) is None:
        raise ProxyError(f"--via {kind} needs {binary}, which is not installed: apt-get install "
                         f"{package} (Debian's package)")  # fmt: skip


def _binary(name: str) -> str | None:
    # Debian puts both in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def version(kind: str) -> str:
    """'1.22.1' from `nginx -v`, '2.6.12-1+deb12u3' from `haproxy -v` ('unknown' otherwise)."""
    binary = _binary(PROXIES[kind][0]) or kind
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    pattern = r"nginx/(\S+)" if kind == "nginx" else r"HAProxy version (\S+)"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def render(kind: str, directory: Path, listen: str, upstream: str, workers: int,
           idle_timeout_s: float, nofile: int, tls: Tls | None = None) -> str:  # fmt: skip
    """The proxy's whole config for one point (serving wss:// with `tls`)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      keep_trailing_newline=True, autoescape=False)  # noqa: S701 (not HTML)
    # Each proxied WebSocket holds two sockets (client side, target side).
    connections = max(1024, nofile // 2 - 64)
    return env.get_template(TEMPLATE[kind]).render(
        directory=directory, listen=listen, upstream=upstream, workers=workers,
        idle_timeout_s=f"{idle_timeout_s:g}", nofile=nofile, connections=connections,
        root=os.geteuid() == 0, tls=tls,
    )  # fmt: skip


@dataclass(frozen=True)
class Tls:
    """What a proxy terminating TLS serves: its certificate chain and key (PEM files; the
    chain file holds the key too, as HAProxy's `crt` wants) and the CA clients must trust."""

    chain: Path
    key: Path
    ca: Path


def certificates(directory: Path, host: str) -> Tls:
    """A throwaway CA (trustme, as the reference targets make theirs) and a certificate for
    `host` in `directory`."""
    from targets.server import TargetError, make_certificates

    try:
        ca, chain, key = make_certificates(host, directory, None)
    except TargetError as exc:
        raise ProxyError(str(exc)) from None
    return Tls(chain, key, ca)


@dataclass
class Proxy:
    kind: str
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None
    log_path: Path
    version: str
    idle_timeout_s: float
    tls: Tls | None = None  # it terminates TLS: wss:// in front, ws:// to the target

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, target_url: str) -> str:
        """The target's URL with the proxy's address (and scheme) in place of the target's."""
        scheme, rest = target_url.split("://", 1)
        path = rest.split("/", 1)[1] if "/" in rest else ""
        scheme = "wss" if self.tls is not None else scheme
        return f"{scheme}://{self.address}/{path}".rstrip("/")

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def stop(self) -> int | None:
        return stop(self.proc)

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "version": self.version, "address": self.address,
                "idle_timeout_s": self.idle_timeout_s, "tls": self.tls is not None}  # fmt: skip


def start(
    kind: str, directory: Path, host: str, port: int, upstream: str, *, workers: int = 1,
    idle_timeout_s: float | None = None, nofile: int = 65536, enter: Sequence[str] = (),
    cpus: frozenset[int] | None = None, tls: bool = False,
) -> Proxy:  # fmt: skip
    """The proxy on host:port in front of `upstream` (HOST:PORT), accepting connections (with
    `tls`, on wss:// with a throwaway CA's certificate, ws:// to the upstream); ProxyError
    (with its log's last line) if it exits or does not listen in time."""
    check_installed(kind)
    idle = DEFAULT_IDLE_TIMEOUT_S[kind] if idle_timeout_s is None else idle_timeout_s
    served = certificates(directory, host) if tls else None
    config = directory / PROXY_CONF
    config.write_text(render(kind, directory, f"{host}:{port}", upstream, workers, idle, nofile,
                             served))  # fmt: skip
    log_path = directory / PROXY_LOG
    binary = _binary(PROXIES[kind][0]) or kind
    if kind == "nginx":
        cmd = [binary, "-p", str(directory), "-e", str(log_path), "-c", str(config)]
    else:
        cmd = [binary, "-db", "-f", str(config)]  # -db: foreground, no daemon
    # Dies with the runner like the target; stopped with the point, its group (nginx's
    # workers) with it.
    proc = child.spawn([*enter, *cmd], log_path, die_signal=signal.SIGKILL, cpu=cpus,
                       nofile=nofile)  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _listening(proc.pid, port):
        if proc.poll() is not None:
            raise ProxyError(f"{kind} exited with status {proc.returncode}: "
                             f"{last_line(log_path)}")  # fmt: skip
        if time.monotonic() > deadline:
            stop(proc)
            raise ProxyError(f"{kind} not listening on {host}:{port} after "
                             f"{READY_TIMEOUT_S:g} s: {last_line(log_path)}")  # fmt: skip
        time.sleep(POLL_S)
    return Proxy(kind, host, port, proc, log_path, version(kind), idle, served)


def _listening(pid: int, port: int) -> bool:
    """A socket listens on `port` in the network namespace of process `pid`. Read from its
    /proc/PID/net/tcp rather than by connecting: a refused probe would count in the point's
    kernel counters (AttemptFails) as if the load had failed."""
    wanted = f":{port:04X} "
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        # local_address is field 2 (ADDR:PORT in hex), st field 4; 0A is LISTEN.
        if any(wanted in f"{f[1]} " and f[3] == "0A" for f in (line.split() for line in lines)):
            return True
    return False


def ping_interval_s(options: Sequence[str]) -> float:
    """The scenario's --ping-interval-s among its options (0: no pings)."""
    for n, word in enumerate(options):
        if word.startswith("--ping-interval-s="):
            return float(word.split("=", 1)[1])
        if word == "--ping-interval-s" and n + 1 < len(options):
            return float(options[n + 1])
    return 0.0


def idle_drops(proxy: Proxy, options: Sequence[str], failures: int, run_s: float) -> str | None:
    """Why connections through the proxy were dropped, when its idle timeout explains it:
    connections failed, the run outlasted the timeout, and no client ping came more often."""
    timeout = proxy.idle_timeout_s
    pings = ping_interval_s(options)
    if not failures or run_s <= timeout or (pings and pings < timeout):
        return None
    setting = "proxy_read_timeout" if proxy.kind == "nginx" else "timeout tunnel"
    said = f"pings every {pings:g} s" if pings else "no client pings"
    return (f"{proxy.kind} closes a WebSocket idle for {timeout:g} s ({setting}), with {said}: "
            f"ping more often than that (--ping-interval-s) or raise it (--via-idle-timeout)")
