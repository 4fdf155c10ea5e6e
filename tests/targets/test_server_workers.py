"""The supervisor's wait for its workers' ready lines, on stand-in worker processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from common import procs
from common.errors import WsbenchError
from targets.server import TargetError, wait_ready


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start stand-in workers with `python -c CODE`, each as the supervisor starts its own."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def worker(code: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", code]
    return procs.spawn(cmd, stdout_pipe=True, new_session=False, die_signal=signal.SIGTERM)


def test_all_workers_ready_is_ready(workers: list) -> None:
    """Returns once every worker printed its ready line."""
    workers.append(worker("import time; print('ready ws://x', flush=True); time.sleep(30)"))
    workers.append(worker("import time; time.sleep(0.2); print('ready ws://x', flush=True);"
                          " time.sleep(30)"))  # fmt: skip
    wait_ready(workers, 10.0)


def test_a_worker_that_exits_first_is_named_with_its_status(workers: list) -> None:
    """One line naming the worker and its exit status."""
    workers += [worker("import time; print('ready ws://x', flush=True); time.sleep(30)"),
                worker("import sys; sys.exit(4)")]  # fmt: skip
    with pytest.raises(TargetError) as caught:
        wait_ready(workers, 10.0)
    assert str(caught.value) == f"worker {workers[1].pid} exited with status 4 before ready"
    assert isinstance(caught.value, WsbenchError)


def test_workers_late_past_the_bound_are_counted(workers: list) -> None:
    """How many were not ready, and after how long."""
    workers += [worker("import time; print('ready ws://x', flush=True); time.sleep(30)"),
                worker("import time; time.sleep(30)"), worker("import time; time.sleep(30)")]
    with pytest.raises(TargetError, match=r"^2 worker\(s\) not ready after 0\.5 s$"):
        wait_ready(workers, 0.5)
