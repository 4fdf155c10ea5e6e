"""Child processes: spawn them dying with the parent, wait for their ready line, stop them.

Every child the suite starts (targets and their workers, Locust and its workers, namespace
holders, benchmark servers and clients) gets PR_SET_PDEATHSIG: if its parent is killed outright,
the kernel signals the child at once, so no run leaves an orphan behind. A child started in its
own session is its own process group, so `stop` also ends what it started (a Locust's forked
workers, a target's workers), and a Ctrl-C at the terminal reaches only the parent.

    ProcessError            a child did not become ready (callers translate it to their own error)
    ├── NotReady            no ready line within the bound
    └── ExitedEarly         it exited (closed its stdout) first; `why` is its log's last line
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Literal, overload

from common.errors import WsbenchError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_TIMEOUT_S = 10.0
EXIT_WAIT_S = 5.0  # a child that closed its stdout gets this long to finish exiting
READY_PREFIX = "ready "
HARD = "hard"  # spawn(nofile=HARD): the open-file soft limit raised to the hard limit
READ_CHUNK = 65536

AnyPopen = subprocess.Popen[bytes] | subprocess.Popen[str]
Nofile = int | Literal["hard"] | None  # see spawn
Cpus = int | frozenset[int] | None  # one CPU, a set of them, or wherever the scheduler likes
# A process pinned to its CPUs (the target's half, Locust's half) runs at this nice value when
# we are root: the harness's sampling and the machine's daemons, which the scheduler also puts
# there, then take their time slices from it less often. Measured (raw echo_rate at 10,000
# connections, three runs each, alternating): the generator's send lag p99 258-366 µs at
# nice -10 against 388-925 µs at 0.
PINNED_NICE = -10
# A pinned load generator (spawn's `generator`) runs in the lowest real-time class instead,
# when we are root: under EEVDF a task at nice 0 that gets the CPU runs its whole slice (about
# 3 ms) even against a waking nice -10 one, and a daemon's slice on the generator's CPU was
# then in its send lag (the last flagged points of make bench: send lag p99 1-4 ms). A
# real-time task is woken ahead of every normal one. Measured (aiohttp echo_rate at 1,000
# connections and 2,500 msgs/s, a competitor busy 3 ms in every 10 on the generator's CPU,
# three alternating runs each): send lag p99 53-104 µs, against 2.9 ms (generator-bound) at
# nice -10. Round-robin, not FIFO: Locust processes sharing a CPU still take turns when busy;
# and the kernel keeps 5 % of each CPU for normal tasks (sched_rt_runtime_us), so a saturated
# generator cannot starve the harness or the machine.
GENERATOR_POLICY = os.SCHED_RR
GENERATOR_PRIORITY = 1


class ProcessError(WsbenchError):
    """A child process did not become ready; the message is one line."""


class NotReady(ProcessError):
    """No ready line from `pending` (of the processes waited for) within `timeout_s`."""

    def __init__(self, pending: Sequence[AnyPopen], timeout_s: float) -> None:
        self.pending, self.timeout_s = list(pending), timeout_s
        super().__init__(f"{len(self.pending)} process(es) not ready after {timeout_s:g} s")


class ExitedEarly(ProcessError):
    """`proc` exited (status `status`, None if it had not yet) before its ready line; `why` is
    the last meaningful line of its log ("" without one)."""

    def __init__(self, proc: AnyPopen, status: int | None, why: str) -> None:
        self.proc, self.status, self.why = proc, status, why
        said = f": {why}" if why else ""
        super().__init__(f"process {proc.pid} exited with status {status} before ready{said}")


# --- spawning ----------------------------------------------------------------------------------


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


def _child_setup(
    parent: int, signum: int, nofile: Nofile, cpu: Cpus, generator: bool
) -> Callable[[], None]:
    cpus = None if cpu is None else {cpu} if isinstance(cpu, int) else set(cpu)

    def preexec() -> None:
        # Between fork and exec, so that every thread and child the program starts inherits it.
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
            if os.geteuid() == 0 and generator:
                os.sched_setscheduler(0, GENERATOR_POLICY, os.sched_param(GENERATOR_PRIORITY))
            elif os.geteuid() == 0:
                os.setpriority(os.PRIO_PROCESS, 0, PINNED_NICE)
        if nofile is not None:
            # Sockets are files: a load generator or a target needs many of them.
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if nofile == HARD else nofile, hard))
        die_with(parent, signum)

    return preexec


@overload
def spawn(
    cmd: Sequence[str], log_path: Path | None = None, *, text: Literal[False] = False,
    stdout_pipe: bool = False, new_session: bool = True, nofile: Nofile = None,
    cpu: Cpus = None, cwd: Path | None = None, die_signal: int = signal.SIGKILL,
    generator: bool = False,
) -> subprocess.Popen[bytes]: ...  # fmt: skip
@overload
def spawn(
    cmd: Sequence[str], log_path: Path | None = None, *, text: Literal[True],
    stdout_pipe: bool = False, new_session: bool = True, nofile: Nofile = None,
    cpu: Cpus = None, cwd: Path | None = None, die_signal: int = signal.SIGKILL,
    generator: bool = False,
) -> subprocess.Popen[str]: ...  # fmt: skip
def spawn(
    cmd: Sequence[str], log_path: Path | None = None, *, text: bool = False,
    stdout_pipe: bool = False, new_session: bool = True, nofile: Nofile = None,
    cpu: Cpus = None, cwd: Path | None = None, die_signal: int = signal.SIGKILL,
    generator: bool = False,
) -> AnyPopen:  # fmt: skip
    """Start `cmd` dying with us (`die_signal` when we die), stdin from /dev/null.

    stderr (and stdout unless `stdout_pipe`) is appended to `log_path`; without one they are
    ours. `new_session`: its own session and process group (what `stop` ends). `nofile`: its
    open-file soft limit (HARD: the hard limit; None: ours). `cpu`: the CPU (or the set of
    CPUs) it runs on, at PINNED_NICE when we are root; `generator` (a pinned load generator,
    root): in GENERATOR_POLICY instead.
    `text`: its piped stdout as str rather than bytes.
    """
    log = log_path.open("ab") if log_path is not None else None
    try:
        return subprocess.Popen(
            list(cmd), cwd=cwd, text=text, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log, stderr=log,
            start_new_session=new_session,
            preexec_fn=_child_setup(os.getpid(), die_signal, nofile, cpu, generator),
        )  # fmt: skip
    finally:
        if log is not None:
            log.close()  # the child has its own copy


def scheduling(pid: int) -> str | None:
    """How the kernel schedules `pid`: "SCHED_RR 1" (a real-time policy and its priority) or
    "nice -10"; None when it has gone."""
    try:
        policy = os.sched_getscheduler(pid)
        if policy in (os.SCHED_RR, os.SCHED_FIFO):
            name = "SCHED_RR" if policy == os.SCHED_RR else "SCHED_FIFO"
            return f"{name} {os.sched_getparam(pid).sched_priority}"
        return f"nice {os.getpriority(os.PRIO_PROCESS, pid)}"
    except OSError:
        return None


# --- waiting for ready -------------------------------------------------------------------------


class LineReader:
    """A child's piped stdout, read from its file descriptor in whole lines.

    Read from the descriptor, not the pipe's Python buffer: a line already sitting in a buffer
    would not wake select(), so a second line that arrived with the first would wait forever.
    """

    def __init__(self, stream: IO[Any]) -> None:
        self.fd = stream.fileno()
        self.pending = b""
        self.closed = False

    def read(self) -> list[str]:
        """The lines completed by what can be read now (call when the fd is readable); at end of
        file, the unterminated rest too, and `closed` is set."""
        chunk = os.read(self.fd, READ_CHUNK)
        if not chunk:
            self.closed = True
            rest, self.pending = self.pending, b""
            return [rest.decode(errors="replace").strip()] if rest else []
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        return [line.decode(errors="replace").strip() for line in lines]


def wait_all_ready(
    procs: Sequence[AnyPopen], timeout_s: float, logs: Sequence[Path | None] | None = None,
    prefix: str = READY_PREFIX,
) -> list[str]:  # fmt: skip
    """Block until each of `procs` printed a line starting with `prefix` on its piped stdout
    (other lines are skipped); their ready lines, stripped, in order.

    NotReady after `timeout_s`; ExitedEarly for the first one to close its stdout before, with
    the last meaningful line of its log (`logs`, one per process, None where there is none).
    """
    readers = [LineReader(_stdout_of(p)) for p in procs]
    found: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        for i, reader in enumerate(readers):
            sel.register(reader.fd, selectors.EVENT_READ, i)
        while len(found) < len(procs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotReady([p for i, p in enumerate(procs) if i not in found], timeout_s)
            for key, _ in sel.select(left):
                i, reader = key.data, readers[key.data]
                ready = [line for line in reader.read() if line.startswith(prefix)]
                if ready:
                    found[i] = ready[0]
                    sel.unregister(reader.fd)
                elif reader.closed:
                    raise _exited(procs[i], logs[i] if logs else None)
    return [found[i] for i in range(len(procs))]


def wait_ready(
    proc: AnyPopen, timeout_s: float, log_path: Path | None = None, prefix: str = READY_PREFIX
) -> str:
    """`wait_all_ready` for one process: its ready line, stripped."""
    return wait_all_ready([proc], timeout_s, [log_path], prefix)[0]


def _stdout_of(proc: AnyPopen) -> IO[Any]:
    if proc.stdout is None:
        raise ValueError(f"process {proc.pid} was not started with its stdout piped")
    return proc.stdout


def _exited(proc: AnyPopen, log_path: Path | None) -> ExitedEarly:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(EXIT_WAIT_S)
    return ExitedEarly(proc, proc.returncode, last_line(log_path) if log_path else "")


def last_line(path: Path) -> str:
    """The line of a log that says what went wrong: the last `error:` line, else the last line
    ("" if none, or no such file)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if line.strip() and "/INFO/" not in line]  # Locust's progress, not a reason
    except OSError:
        return ""
    errors = [line for line in lines if "error:" in line.lower()]
    return (errors or lines or [""])[-1].strip()


# --- stopping ----------------------------------------------------------------------------------


def stop(proc: AnyPopen | None, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the process group, wait up to `timeout_s`, then SIGKILL what is left of it (a
    Locust's forked workers, a target's workers); returns the exit status.

    For a child started in its own session (`spawn`'s default): its group is its pid."""
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
