"""Fixtures for the scenario tests: reference targets, small test servers and real Locust runs.

Targets run as `python -m targets NAME --port 0` subprocesses and are always stopped (SIGTERM,
then SIGKILL). Locust runs as a subprocess (`locust -f scenarios/X.py --headless --csv ...`)
in a temporary directory, so `import scenarios.*` must work from the installed package.
Test modules use the fixtures; they never import this file.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = REPO_ROOT / "scenarios"
TARGET_NAMES = ("aiohttp", "websockets", "raw")
READY_TIMEOUT_S = 20.0
LOCUST_TIMEOUT_S = 90.0


def target_available(name: str) -> bool:
    return name != "raw" or importlib.util.find_spec("targets.raw_server") is not None


@contextlib.contextmanager
def running_target(name: str, *args: str) -> Iterator[str]:
    """`python -m targets NAME --port 0 ARGS` until the block ends; yields its ws:// URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "targets", name, "--port", "0", *args],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        line = _read_line(proc, READY_TIMEOUT_S)
        match = re.fullmatch(r"ready (wss?://\S+)", line.strip())
        assert match, f"target {name}: expected a ready line, got {line!r}"
        yield match[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return lines[0] if lines else ""


@pytest.fixture(scope="module", params=TARGET_NAMES)
def target_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """One reference target per name for the whole module (raw skipped while it is missing)."""
    if not target_available(request.param):
        pytest.skip("targets.raw_server is not there yet")
    with running_target(request.param) as url:
        yield url


@pytest.fixture
def start_target() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """Starts a target with options: `with start_target("aiohttp", "--tls") as url: ...`."""
    return running_target


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """One fast echo target (raw if present, else aiohttp) for tests about the generator."""
    with running_target("raw" if target_available("raw") else "aiohttp") as url:
        yield url


@dataclass
class LocustRun:
    """What a headless Locust run left behind."""

    returncode: int
    output: str  # stdout and stderr
    prefix: Path

    def _csv(self, suffix: str) -> list[dict[str, str]]:
        with open(f"{self.prefix}{suffix}", newline="") as f:
            return list(csv.DictReader(f))

    @property
    def latency(self) -> dict[str, dict[str, int]]:
        """PREFIX_latency_us.csv: request name -> count and µs percentiles."""
        return {
            row["name"]: {k: int(float(v)) for k, v in row.items() if k != "name"}
            for row in self._csv("_latency_us.csv")
        }

    @property
    def history(self) -> list[dict[str, str]]:
        return self._csv("_latency_us_history.csv")

    @property
    def histograms(self) -> dict:
        return json.loads(Path(f"{self.prefix}_latency_us_histograms.json").read_text())

    @property
    def locust_stats(self) -> dict[str, dict]:
        """Locust's own final statistics by request name (--json-file).

        Not PREFIX_stats.csv: Locust rewrites that every second and not at exit, so it can
        miss the last second.
        """
        entries = json.loads(Path(f"{self.prefix}_locust.json").read_text())
        return {entry["name"]: entry for entry in entries}

    @property
    def failures(self) -> list[dict[str, str]]:
        """PREFIX_failures.csv (Locust's; it may lag the end of the run by up to a second)."""
        return self._csv("_failures.csv")

    def final_table(self) -> dict[str, tuple[int, int]]:
        """Locust's final printed table: request name -> (requests, failures)."""
        rows: dict[str, tuple[int, int]] = {}
        for match in re.finditer(r"^WS\s+(.+?)\s+(\d+)\s+(\d+)\(", self.output, re.MULTILINE):
            rows.setdefault(match[1], (int(match[2]), int(match[3])))
        return rows

    def describe(self) -> str:
        return f"exit {self.returncode}; output:\n{self.output[-6000:]}"


def locust_command() -> list[str]:
    script = Path(sys.executable).with_name("locust")
    return [str(script)] if script.exists() else [sys.executable, "-m", "locust"]


def run_locust_in(
    tmp_path: Path,
    scenario: str,
    host: str,
    *args: str,
    users: int = 4,
    duration: str = "3s",
    json_stats: bool = True,
) -> LocustRun:
    """`locust -f scenarios/SCENARIO.py --headless` for `duration`, with --csv in tmp_path.

    `json_stats`: also --json-file (Locust then prints no final table). Leave it off with
    --processes: Locust's forked workers keep the option and overwrite the master's file.
    """
    locustfile = Path(scenario) if scenario.endswith(".py") else SCENARIOS / f"{scenario}.py"
    prefix = tmp_path / locustfile.stem
    command = [
        *locust_command(),
        "-f", str(locustfile),
        "--host", host,
        "--headless", "-u", str(users), "-r", str(users), "-t", duration,
        "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        *(("--json-file", f"{prefix}_locust") if json_stats else ()),
        *args,
    ]  # fmt: skip
    proc = subprocess.run(
        command,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    return LocustRun(proc.returncode, proc.stdout + proc.stderr, prefix)


@pytest.fixture
def run_locust(tmp_path: Path) -> Callable[..., LocustRun]:
    """Runs a scenario headless: run_locust("echo", url, "--payload-bytes", "8", users=2)."""
    return lambda scenario, host, *args, **kw: run_locust_in(tmp_path, scenario, host, *args, **kw)


@contextlib.contextmanager
def serving(handler: Callable) -> Iterator[str]:
    """A websockets (sync) server running `handler(connection)` per client; yields its URL."""
    from websockets.sync.server import serve

    server = serve(handler, "127.0.0.1", 0, compression=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def ws_server() -> Callable[[Callable], contextlib.AbstractContextManager[str]]:
    """Test servers with odd behaviour: `with ws_server(handler) as url: ...`."""
    return serving
