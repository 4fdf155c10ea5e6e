"""Where a run happened: machine, software versions, suite commit, kernel settings and limits.

Everything a reader of a result needs to judge whether two runs are comparable; read once per
run and stored in meta.json.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil

from kernel import inside

REPO = Path(__file__).resolve().parent.parent
PACKAGES = (
    "locust", "websocket-client", "gevent", "hdrhistogram", "aiohttp", "websockets", "uvloop",
    "psutil",
)  # fmt: skip
# The sysctls that decide how many connections a box accepts and holds, and how fast.
SYSCTLS = (
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mem",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.netdev_max_backlog",
    "fs.file-max",
    "fs.nr_open",
)


def read_sysctl(name: str, proc_root: Path = Path("/proc/sys")) -> str | None:
    """The value as `sysctl -n` prints it (whitespace folded), or None where it does not exist."""
    try:
        return inside.read(name, proc_root)
    except (OSError, ValueError):
        return None


def sysctl_snapshot(names: tuple[str, ...] = SYSCTLS) -> dict[str, str | None]:
    return {name: read_sysctl(name) for name in names}


def rlimits() -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"RLIMIT_NOFILE_soft": soft, "RLIMIT_NOFILE_hard": hard}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit(repo: Path = REPO) -> dict[str, object]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_bytes": psutil.virtual_memory().total,
        "kernel_release": platform.release(),
        "os": platform.platform(),
    }


def collect() -> dict[str, object]:
    """All of the above, as meta.json stores it."""
    return {
        "machine": machine(),
        "versions": versions(),
        "suite": git_commit(),
        "sysctls": sysctl_snapshot(),
        "rlimits": rlimits(),
        "python_executable": sys.executable,
    }
