"""common.procs on real children: ready lines, early exits, stopping, dying with the parent."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from common import procs
from common.errors import WsbenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
GONE_TIMEOUT_S = 5.0


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Children the test starts; whatever is left of them is killed afterwards."""
    children: list[subprocess.Popen] = []
    yield children
    for proc in children:
        procs.stop(proc, timeout_s=1.0)


def gone(pid: int, timeout_s: float = GONE_TIMEOUT_S) -> bool:
    """True once `pid` no longer runs (a zombie nobody has reaped yet counts as gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def test_a_child_that_prints_ready_is_ready(started: list, tmp_path: Path) -> None:
    """Lines before the ready line are skipped, even when they arrive in the same write."""
    code = "import time; print('starting\\nready ws://127.0.0.1:1', flush=True); time.sleep(30)"
    started.append(procs.spawn(python(code), tmp_path / "log", stdout_pipe=True))
    assert procs.wait_ready(started[0], 10.0) == "ready ws://127.0.0.1:1"


def test_several_children_are_waited_for_together(started: list, tmp_path: Path) -> None:
    """Each child's ready line comes back in the order the children were given."""
    for n, delay in ((1, 0.3), (2, 0.0)):
        code = f"import time; time.sleep({delay}); print('ready {n}', flush=True); time.sleep(30)"
        started.append(procs.spawn(python(code), stdout_pipe=True))
    assert procs.wait_all_ready(started, 10.0) == ["ready 1", "ready 2"]


def test_a_child_that_exits_before_ready_says_why(started: list, tmp_path: Path) -> None:
    """ExitedEarly carries the exit status and the log's error line, not its last line."""
    code = ("import sys; print('error: cannot listen on :1', file=sys.stderr);"
            " print('bye', file=sys.stderr); sys.exit(3)")  # fmt: skip
    log = tmp_path / "child.log"
    started.append(procs.spawn(python(code), log, stdout_pipe=True))
    with pytest.raises(procs.ExitedEarly) as caught:
        procs.wait_ready(started[0], 10.0, log)
    assert (caught.value.status, caught.value.why) == (3, "error: cannot listen on :1")
    assert str(caught.value) == (f"process {started[0].pid} exited with status 3 before ready: "
                                 "error: cannot listen on :1")  # fmt: skip
    assert isinstance(caught.value, procs.ProcessError)
    assert isinstance(caught.value, WsbenchError)


def test_a_silent_child_is_not_ready_after_the_bound(started: list) -> None:
    """NotReady names the processes still pending once the bound has passed, not before."""
    started.append(procs.spawn(python("import time; time.sleep(30)"), stdout_pipe=True))
    began = time.monotonic()
    with pytest.raises(procs.NotReady) as caught:
        procs.wait_ready(started[0], 0.3)
    assert time.monotonic() - began >= 0.3
    assert caught.value.pending == started
    assert str(caught.value) == "1 process(es) not ready after 0.3 s"


def test_stop_ends_a_child_with_sigterm(started: list) -> None:
    """A child that honours SIGTERM stops at once with it."""
    code = "import time; print('ready', flush=True); time.sleep(30)"
    started.append(procs.spawn(python(code), stdout_pipe=True))
    procs.wait_ready(started[0], 10.0, prefix="ready")
    began = time.monotonic()
    assert procs.stop(started[0], timeout_s=5.0) == -signal.SIGTERM
    assert time.monotonic() - began < 4.0


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace(started: list) -> None:
    """SIGTERM ignored: SIGKILL once the grace period is over, and its own children go too."""
    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']);"
            " print('ready', kid.pid, flush=True); time.sleep(30)")  # fmt: skip
    started.append(procs.spawn(python(code), stdout_pipe=True))
    grandchild = int(procs.wait_ready(started[0], 10.0).split()[1])
    began = time.monotonic()
    assert procs.stop(started[0], timeout_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - began >= 0.5
    assert gone(grandchild)


PARENT = """
import signal, sys, time
from pathlib import Path
from common import procs
code = ("import signal, sys, time; from pathlib import Path;"
        " signal.signal(signal.SIGTERM, lambda *_: (Path(sys.argv[1]).write_text('TERM'),"
        " sys.exit(0))); print('ready', flush=True); time.sleep(30)")
child = procs.spawn([sys.executable, "-c", code, sys.argv[1]], stdout_pipe=True,
                    die_signal=signal.Signals[sys.argv[2]])
procs.wait_ready(child, 10.0, prefix="ready")
print(child.pid, flush=True)
time.sleep(30)
"""


@contextlib.contextmanager
def parent_of_a_child(told: Path, die_signal: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """A parent process (killed after) and the pid of the child it spawned with `die_signal`."""
    parent = subprocess.Popen(
        python(PARENT) + [str(told), die_signal], cwd=REPO_ROOT, stdout=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        yield parent, int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """The parent killed outright (SIGKILL): its child is gone at once, not orphaned."""
    with parent_of_a_child(tmp_path / "told", "SIGKILL") as (parent, child):
        parent.kill()
        assert gone(child)
    assert not (tmp_path / "told").exists()  # SIGKILL: it had no chance to write


def test_the_death_signal_is_the_one_asked_for(tmp_path: Path) -> None:
    """die_signal=SIGTERM: the orphaned child gets SIGTERM, so it can stop gracefully."""
    with parent_of_a_child(tmp_path / "told", "SIGTERM") as (parent, child):
        parent.kill()
        assert gone(child)
    assert (tmp_path / "told").read_text() == "TERM"


def test_spawn_options_reach_the_child(started: list, tmp_path: Path) -> None:
    """CPU, open-file limit, working directory and text mode are the child's from its start."""
    code = ("import os, resource; print('ready', sorted(os.sched_getaffinity(0)),"
            " resource.getrlimit(resource.RLIMIT_NOFILE)[0], os.getcwd(), flush=True)")  # fmt: skip
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cpu = min(os.sched_getaffinity(0))
    for nofile in (procs.HARD, 256):
        proc = procs.spawn(python(code), stdout_pipe=True, text=True, nofile=nofile, cpu=cpu,
                           cwd=tmp_path)  # fmt: skip
        started.append(proc)
        expected = hard if nofile == procs.HARD else 256
        assert procs.wait_ready(proc, 10.0) == f"ready [{cpu}] {expected} {tmp_path}"
        assert isinstance(proc.stdout.read(), str)  # type: ignore[union-attr]


def test_a_set_of_cpus_is_the_childs_affinity(started: list) -> None:
    code = "import os; print('ready', sorted(os.sched_getaffinity(0)), flush=True)"
    cpus = frozenset(sorted(os.sched_getaffinity(0))[-2:])
    proc = procs.spawn(python(code), stdout_pipe=True, text=True, cpu=cpus)
    started.append(proc)
    assert procs.wait_ready(proc, 10.0) == f"ready {sorted(cpus)}"


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root")
def test_a_pinned_child_runs_at_the_pinned_nice_and_an_unpinned_one_at_ours(
    started: list,
) -> None:
    code = "import os; print('ready', os.getpriority(os.PRIO_PROCESS, 0), flush=True)"
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    for cpu, nice in ((min(os.sched_getaffinity(0)), procs.PINNED_NICE), (None, ours)):
        proc = procs.spawn(python(code), stdout_pipe=True, text=True, cpu=cpu)
        started.append(proc)
        assert procs.wait_ready(proc, 10.0) == f"ready {nice}"
    assert ours > procs.PINNED_NICE


@pytest.mark.skipif(os.geteuid() != 0, reason="a real-time policy needs root")
def test_a_pinned_generator_runs_real_time_and_says_so(started: list) -> None:
    """A pinned generator runs in GENERATOR_POLICY (a waking real-time task is run ahead of
    every normal one on its CPU); unpinned, it is scheduled like us; `scheduling` says which."""
    code = "import time; print('ready 1', flush=True); time.sleep(30)"
    cpu = min(os.sched_getaffinity(0))
    pinned = procs.spawn(python(code), stdout_pipe=True, text=True, cpu=cpu, generator=True)
    loose = procs.spawn(python(code), stdout_pipe=True, text=True, generator=True)
    started.extend([pinned, loose])
    for proc in (pinned, loose):
        procs.wait_ready(proc, 10.0)
    assert os.sched_getscheduler(pinned.pid) == procs.GENERATOR_POLICY == os.SCHED_RR
    assert procs.scheduling(pinned.pid) == f"SCHED_RR {procs.GENERATOR_PRIORITY}"
    assert os.sched_getscheduler(loose.pid) == os.SCHED_OTHER
    assert procs.scheduling(loose.pid) == f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    procs.stop(loose)
    assert procs.scheduling(loose.pid) is None  # gone (reaped)


def test_spawn_appends_stdout_and_stderr_to_the_log(tmp_path: Path) -> None:
    """Without a pipe both streams go to the log, after what it held already."""
    log = tmp_path / "child.log"
    log.write_text("before\n")
    code = "import sys; print('out', flush=True); print('err', file=sys.stderr)"
    assert procs.spawn(python(code), log).wait(10) == 0
    assert log.read_text().splitlines() == ["before", "out", "err"]


def test_last_line_is_the_line_that_says_what_went_wrong(tmp_path: Path) -> None:
    """The last `error:` line, else the last line; Locust's INFO lines and blanks skipped."""
    log = tmp_path / "log"
    log.write_text("starting\nValueError: bad\nstill going\n")
    assert procs.last_line(log) == "ValueError: bad"
    log.write_text("starting\nthe reason\n[2026] host/INFO/locust.main: Shutting down\n\n")
    assert procs.last_line(log) == "the reason"
    assert procs.last_line(tmp_path / "nowhere") == ""
