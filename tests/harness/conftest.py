"""Run `wsbench` the way a user does: `python runner.py ...` as a subprocess from the repo root.

Fixtures, not importable helpers (tests/targets has its own conftest.py; a test module that
imported `conftest` would get whichever one was loaded first):

    wsbench(*args, timeout_s=60, nofile=None) -> CompletedProcess (text), waits for the exit
    wsbench_bg(*args, nofile=None)            -> Background, a runner still running
    free_port()                               -> a TCP port on 127.0.0.1 nothing listens on

`nofile` runs the runner under a lower RLIMIT_NOFILE (soft = hard = nofile), which its
children inherit: the cheap way to make a few hundred users exceed the per-process limit.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 20.0


def _command(args: tuple[str | Path, ...]) -> list[str]:
    return [sys.executable, "runner.py", *(str(a) for a in args)]


def _limit_files(nofile: int | None) -> Callable[[], None] | None:
    if nofile is None:
        return None

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return preexec


@dataclass
class Background:
    """A runner started with Popen; stdout and stderr go to files so it never blocks on a pipe."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        """Every process below the runner right now (targets, Locust and their workers)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []

    def child_with(self, *words: str) -> psutil.Process | None:
        """The direct child whose command line holds `words` in a row, e.g. ('--users', '2')."""
        n = len(words)
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.proc.pid).children():
                with contextlib.suppress(psutil.Error):
                    cmd = child.cmdline()
                    if any(tuple(cmd[i : i + n]) == words for i in range(len(cmd))):
                        return child
        return None

    def wait_for(self, what: str, check: Callable[[], object], timeout_s: float = 30.0) -> object:
        """Poll `check` until it returns something true; fail the test if the runner exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"runner exited ({self.proc.returncode}) before {what}:\n"
                            f"{self.stdout}\n{self.stderr}")  # fmt: skip
            time.sleep(0.1)
        pytest.fail(f"no {what} within {timeout_s:g} s:\n{self.stdout}\n{self.stderr}")

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.proc.wait(timeout_s)


@pytest.fixture(scope="session")
def wsbench() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(
        *args: str | Path, timeout_s: float = 60.0, nofile: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _command(args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s,
            stdin=subprocess.DEVNULL, preexec_fn=_limit_files(nofile),
        )  # fmt: skip

    return run


@pytest.fixture
def wsbench_bg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Background]]:
    started: list[Background] = []

    def start(*args: str | Path, nofile: int | None = None) -> Background:
        logs = tmp_path_factory.mktemp("runner-output")
        out, err = logs / "stdout.txt", logs / "stderr.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                _command(args), cwd=REPO_ROOT, stdout=stdout, stderr=stderr,
                stdin=subprocess.DEVNULL, preexec_fn=_limit_files(nofile),
            )  # fmt: skip
        bg = Background(proc, out, err)
        started.append(bg)
        return bg

    yield start
    # A test that failed half-way must not leave a sweep running: SIGTERM is the runner's own
    # "stop the children and exit"; SIGKILL after that (its children die with it, PDEATHSIG).
    for bg in started:
        if bg.proc.poll() is None:
            bg.proc.send_signal(signal.SIGTERM)
            try:
                bg.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                bg.proc.kill()
                bg.proc.wait()


@pytest.fixture
def free_port() -> Callable[[], int]:
    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    return pick
