"""The point's message broker: Debian's redis-server, started per point, stopped with it.

The reference targets relay broadcast rooms through it (`python -m targets NAME --broker URL`),
so a room spans every target process. It runs where the target runs (the server namespace, or
loopback), bound to that one address, without persistence: a broker's job here is pub/sub,
and a snapshot to disk in the middle of a measurement would be the disk's figure. The config
it ran with is stored in the point folder, its version in the point's summary.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import procs as child
from common.errors import WsbenchError
from common.procs import last_line, stop
from common.schema import BROKER_CONF, BROKER_LOG

BROKERS = ("redis",)
REDIS_BINARY = "redis-server"
REDIS_PORT = 6379  # in the server namespace, where nothing else listens
READY_TEXT = "Ready to accept connections"
READY_TIMEOUT_S = 15.0
POLL_S = 0.05


class BrokerError(WsbenchError):
    """The broker cannot start: one line, naming what to install when it is missing."""


def check_installed(kind: str) -> None:
    """BrokerError unless `kind` is a broker this suite can start, installed here."""
    if kind not in BROKERS:
        raise BrokerError(f"unknown broker {kind!r}: choose one of {', '.join(BROKERS)}")
    if shutil.which(REDIS_BINARY) is None:
        raise BrokerError(f"--broker {kind} needs {REDIS_BINARY}, which is not installed: "
                          "apt-get install redis-server (Debian's package)")  # fmt: skip


def redis_version() -> str:
    """'7.0.15' from `redis-server --version` ('unknown' if it says nothing like it)."""
    done = subprocess.run([REDIS_BINARY, "--version"], capture_output=True, text=True, timeout=10)
    found = re.search(r"v=(\S+)", done.stdout)
    return found.group(1) if found else "unknown"


def redis_config(host: str, port: int) -> str:
    """The whole config: one address, no persistence, logs to stdout (the point's broker.log)."""
    return "\n".join([
        f"bind {host}",
        f"port {port}",
        "protected-mode no",  # bound to one address of our own; no password to hand out
        'save ""',
        "appendonly no",
        "daemonize no",
        'logfile ""',
        # A subscriber that falls behind is disconnected by default at 32 MB / 8 MB for 60 s;
        # the targets' own slow-consumer limit is per WebSocket client, not here.
        "client-output-buffer-limit pubsub 0 0 0",
        "",
    ])  # fmt: skip


@dataclass
class Broker:
    kind: str
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None
    log_path: Path
    version: str

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def stop(self) -> int | None:
        return stop(self.proc)

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "version": self.version, "address": self.address}


def start_redis(
    directory: Path, host: str, port: int, *, enter: Sequence[str] = (),
    cpus: frozenset[int] | None = None,
) -> Broker:  # fmt: skip
    """redis-server on host:port with its config in `directory`/broker.conf, ready; BrokerError
    (with the log's last line) if it exits or is not ready in time."""
    check_installed("redis")
    config = directory / BROKER_CONF
    config.write_text(redis_config(host, port))
    log_path = directory / BROKER_LOG
    # Dies with the runner like the target (SIGKILL: nobody is left to read what it says).
    proc = child.spawn([*enter, REDIS_BINARY, str(config)], log_path, die_signal=signal.SIGKILL,
                       cpu=cpus)  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT_S
    while READY_TEXT not in _text(log_path):
        if proc.poll() is not None:
            raise BrokerError(f"redis-server exited with status {proc.returncode}: "
                              f"{last_line(log_path)}")  # fmt: skip
        if time.monotonic() > deadline:
            stop(proc)
            raise BrokerError(f"redis-server not ready after {READY_TIMEOUT_S:g} s")
        time.sleep(POLL_S)
    return Broker("redis", host, port, proc, log_path, redis_version())


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
