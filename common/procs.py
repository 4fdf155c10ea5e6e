"""Child processes: die with the parent, and stop a whole process group with a grace period.

Every child the suite starts (targets and their workers, Locust and its workers, namespace
holders, benchmark servers) gets PR_SET_PDEATHSIG: if its parent is killed outright, the kernel
signals the child at once, so no run leaves an orphan behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_TIMEOUT_S = 10.0


def die_with(parent: int, signum: int) -> None:
    """Ask the kernel to send `signum` to this process when `parent` dies (exit at once if it
    already did, between the fork and this call)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn: the child, between fork and exec, asks to die with `parent`."""

    def preexec() -> None:
        die_with(parent, signum)

    return preexec


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None,
         timeout_s: float = STOP_TIMEOUT_S) -> int | None:  # fmt: skip
    """SIGTERM the process group, wait up to `timeout_s`, then SIGKILL what is left of it (a
    Locust's forked workers, a target's workers); returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout_s)
    return proc.returncode
