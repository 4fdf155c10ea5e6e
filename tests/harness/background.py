"""A `wsbench` runner as a subprocess from the repo root, the way a user starts one: in the
foreground (`command`, `limit_files`) or in the background (`start` -> Background, `stop()`).

An importable module, unlike conftest.py: tests/harness's fixtures use it, and so do other
folders' tests (tests/reports/conftest.py puts this folder on sys.path, as for browser.py).
"""

from __future__ import annotations

import contextlib
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 20.0


def command(args: tuple[str | Path, ...]) -> list[str]:
    return [sys.executable, "runner.py", *(str(a) for a in args)]


def limit_files(nofile: int | None) -> Callable[[], None] | None:
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

    def stop(self) -> None:
        """Stop it if it still runs (a test that failed half-way must not leave a sweep
        running): SIGTERM is the runner's own "stop the children and exit", which also
        removes its namespaces; SIGKILL after that (its children die with it, PDEATHSIG)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(logs: Path, *args: str | Path, nofile: int | None = None) -> Background:
    """`wsbench *args` started in the background, its stdout and stderr in files under `logs`."""
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            command(args), cwd=REPO_ROOT, stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL, preexec_fn=limit_files(nofile),
        )  # fmt: skip
    return Background(proc, out, err)
