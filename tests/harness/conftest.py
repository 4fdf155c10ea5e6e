"""Run `wsbench` the way a user does: `python runner.py ...` as a subprocess from the repo root.

Fixtures, not importable helpers (tests/targets has its own conftest.py; a test module that
imported `conftest` would get whichever one was loaded first; what other folders share is in
background.py):

    wsbench(*args, timeout_s=60, nofile=None) -> CompletedProcess (text), waits for the exit
    wsbench_bg(*args, nofile=None)            -> Background, a runner still running, stopped
                                                 at the test's end if it still runs
    free_port()                               -> a TCP port on 127.0.0.1 nothing listens on

`nofile` runs the runner under a lower RLIMIT_NOFILE (soft = hard = nofile), which its
children inherit: the cheap way to make a few hundred users exceed the per-process limit.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from background import REPO_ROOT, Background, command, limit_files, start


@pytest.fixture(scope="session")
def wsbench() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(
        *args: str | Path, timeout_s: float = 60.0, nofile: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command(args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s,
            stdin=subprocess.DEVNULL, preexec_fn=limit_files(nofile),
        )  # fmt: skip

    return run


@pytest.fixture
def wsbench_bg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Background]]:
    started: list[Background] = []

    def start_bg(*args: str | Path, nofile: int | None = None) -> Background:
        bg = start(tmp_path_factory.mktemp("runner-output"), *args, nofile=nofile)
        started.append(bg)
        return bg

    yield start_bg
    for bg in started:
        bg.stop()


@pytest.fixture
def free_port() -> Callable[[], int]:
    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    return pick
