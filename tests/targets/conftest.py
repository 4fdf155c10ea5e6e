"""Run the reference targets (`python -m targets NAME`) as subprocesses for the tests.

`running_target(name, *args)` starts one, waits for its `ready` line and, on exit, stops it with
SIGTERM and fails the test unless it exits 0, prints nothing else on stdout and leaves no worker
process behind. The module-scoped `target` fixture gives each test module one server per target;
`spawn` starts servers with special options. Test modules use these fixtures rather than
importing this file:
another conftest.py further down the tree would shadow the module name `conftest`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET_NAMES = ("aiohttp", "websockets", "raw")
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
READY_LINE = re.compile(r"ready (wss?)://(\[[^\]]+\]|[^:/\s]+):(\d+)")


@dataclass
class Target:
    """A running target process and where it listens."""

    name: str
    url: str  # ws://HOST:PORT or wss://HOST:PORT, as printed on the ready line
    host: str
    port: int
    process: subprocess.Popen[str]
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)

    def ws_url(self, path: str = "/echo") -> str:
        return self.url + path

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait_stderr(self, pattern: str, timeout_s: float = 5.0) -> re.Match[str]:
        """The first stderr line matching `pattern`, waiting for it to be printed."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in list(self.stderr_lines):
                if match := re.search(pattern, line):
                    return match
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no stderr line matching {pattern!r}:\n{self.stderr}")
            time.sleep(0.02)

    def http_get(self, path: str, timeout_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of a plain HTTP GET (no TLS)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def stats(self) -> dict[str, object]:
        status, _, body = self.http_get("/stats")
        assert status == 200, f"{self.name}: GET /stats -> {status} {body[:200]!r}"
        return json.loads(body)

    def wait_stats(self, predicate, timeout_s: float = 5.0) -> dict[str, object]:
        """The first /stats answer satisfying `predicate` (the last one if none does in time)."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if predicate(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)


def _pump(stream, lines: list[str], ready: queue.Queue[str] | None) -> None:
    for line in stream:
        lines.append(line)
        if ready is not None:
            ready.put(line)
    if ready is not None:
        ready.put("")


def launch(name: str, *args: str, ready_timeout_s: float = READY_TIMEOUT_S) -> Target:
    """Start `python -m targets NAME --port 0 ARGS` and wait for its ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "targets", name, "--port", "0", *args],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stdout_lines: list[str] = []
    stderr_lines: list[str] = []
    ready: queue.Queue[str] = queue.Queue()
    for stream, lines, q in ((proc.stdout, stdout_lines, ready), (proc.stderr, stderr_lines, None)):
        threading.Thread(target=_pump, args=(stream, lines, q), daemon=True).start()
    try:
        line = ready.get(timeout=ready_timeout_s)
    except queue.Empty:
        _kill_tree(proc)
        pytest.fail(f"{name}: no ready line within {ready_timeout_s} s; stderr:\n"
                    + "".join(stderr_lines))
    match = READY_LINE.fullmatch(line.strip())
    if not match:
        _kill_tree(proc)
        proc.wait(5)
        time.sleep(0.1)  # let the stderr pump finish
        pytest.fail(f"{name} {' '.join(args)}: expected a ready line, got {line!r}; "
                    f"exit {proc.poll()}; stderr:\n" + "".join(stderr_lines))
    tls = "--tls" in args
    assert match[1] == ("wss" if tls else "ws"), f"{name}: ready line {line!r}"
    host = match[2].strip("[]")
    if "--host" not in args:
        assert host == "127.0.0.1", f"{name}: default host in ready line {line!r}"
    return Target(name, f"{match[1]}://{match[2]}:{match[3]}", host, int(match[3]), proc,
                  stdout_lines, stderr_lines)


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    proc.kill()


def workers_of(target: Target) -> list[psutil.Process]:
    try:
        return psutil.Process(target.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def assert_no_survivors(target: Target, workers: list[psutil.Process], timeout_s: float) -> None:
    """Fail (after killing them) if any of `workers` is still alive after `timeout_s`."""
    _, alive = psutil.wait_procs(workers, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    assert not alive, f"{target.name}: orphan worker processes {[p.pid for p in alive]}"


def stop(target: Target, sig: signal.Signals = signal.SIGTERM, *, send: bool = True) -> None:
    """Send `sig` (unless `send` is false: already sent); fail unless the target exits 0 in time,
    leaves no worker process and printed only its ready line on stdout."""
    proc = target.process
    workers = workers_of(target)
    if send:
        proc.send_signal(sig)
    try:
        code = proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        proc.wait()
        pytest.fail(f"{target.name}: still running {STOP_TIMEOUT_S} s after {sig.name}; "
                    f"stderr:\n{target.stderr}")
    assert_no_survivors(target, workers, 5.0)
    time.sleep(0.05)  # let the pump threads read the last lines
    assert code == 0, f"{target.name}: exit {code} after {sig.name}; stderr:\n{target.stderr}"
    assert len(target.stdout_lines) == 1, f"{target.name}: stdout was {target.stdout_lines!r}"


@contextlib.contextmanager
def running_target(name: str, *args: str) -> Iterator[Target]:
    """A target for the duration of the block, stopped (and checked) with SIGTERM afterwards."""
    target = launch(name, *args)
    try:
        yield target
    except BaseException:
        if target.process.poll() is None:
            _kill_tree(target.process)
            target.process.wait()
        raise
    stop(target)


@pytest.fixture(scope="module", params=TARGET_NAMES)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """One server per target for the whole test module."""
    with running_target(request.param) as t:
        yield t


@pytest.fixture(params=TARGET_NAMES)
def target_name(request: pytest.FixtureRequest) -> str:
    """A target name, for tests that start their own server with special options."""
    return request.param


class Spawner:
    """What tests use to start their own servers (test modules must not import conftest)."""

    running = staticmethod(running_target)
    launch = staticmethod(launch)
    stop = staticmethod(stop)
    workers_of = staticmethod(workers_of)
    assert_no_survivors = staticmethod(assert_no_survivors)
    kill_tree = staticmethod(_kill_tree)


@pytest.fixture(scope="session")
def spawn() -> Spawner:
    """Starts targets with extra options: `with spawn.running(name, "--tls") as target: ...`."""
    return Spawner()
