"""`--broker redis://HOST:PORT`: rooms that span a target's processes, on a real redis-server.

Every test starts its own redis-server on a free port (dying with the test run) and real targets
with `--processes 2`; the X-Wsbench-Worker handshake header says which process serves a client.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket

from common import procs
from targets.protocol import WORKER_HEADER, decode_broadcast, encode_broadcast

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = "/usr/bin/redis-server"
REDIS_READY = "Ready to accept connections"
RECV_TIMEOUT_S = 5.0
QUIET_S = 0.3  # how long a member must stay silent to have received nothing more
MESSAGES = 150  # per publisher
SIZES = {0: 70_000, 1: 300}  # of the binary publisher's messages (else 64): every frame length form

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server missing: "
                                "apt-get install redis-server (make test does as root)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Redis:
    """A redis-server of the test's own; `kill` and `start` again on the same port."""

    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--logfile", str(self.log)]  # fmt: skip
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.process = procs.spawn(cmd)
        # Its log lines start with the pid and a time stamp, so procs.wait_ready (which matches
        # a line's start) cannot find its ready line: read the log for it instead.
        deadline = time.monotonic() + timeout_s
        while REDIS_READY not in self.log_text()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server not ready: {procs.last_line(self.log)}")
            time.sleep(0.02)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""  # not written yet

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)

    def stop(self) -> None:
        procs.stop(self.process, timeout_s=5)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    """A redis-server on a free port for this test, stopped afterwards."""
    server = Redis(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


class Member:
    """A /broadcast client and the process that serves it."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=RECV_TIMEOUT_S,
                                              http_no_proxy=["127.0.0.1"])  # fmt: skip
        self.worker = int(self.ws.getheaders()[WORKER_HEADER.lower()])

    def recv_all(self, count: int) -> list[str | bytes]:
        """`count` messages, then fail if another arrives within QUIET_S."""
        got = [self.ws.recv() for _ in range(count)]
        self.ws.settimeout(QUIET_S)
        with contextlib.suppress(websocket.WebSocketTimeoutException):
            extra = self.ws.recv()
            pytest.fail(f"member on {self.worker} got a message past the {count} expected: "
                        f"{extra[:40]!r}")  # fmt: skip
        self.ws.settimeout(RECV_TIMEOUT_S)
        return got

    def silent(self) -> bool:
        """True if nothing arrives within QUIET_S."""
        self.ws.settimeout(QUIET_S)
        try:
            self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return True
        finally:
            self.ws.settimeout(RECV_TIMEOUT_S)
        return False

    def close(self) -> None:
        self.ws.abort()


@contextlib.contextmanager
def members_on_two_workers(url: str, per_worker: int = 2) -> Iterator[dict[int, list[Member]]]:
    """Members of one room, opened until two processes serve at least `per_worker` each."""
    members: list[Member] = []
    by_worker: dict[int, list[Member]] = {}
    try:
        for _ in range(60):
            member = Member(url)
            members.append(member)
            by_worker.setdefault(member.worker, []).append(member)
            if len([w for w in by_worker.values() if len(w) >= per_worker]) >= 2:
                break
        else:
            pytest.fail(f"60 connections were all served by {sorted(by_worker)}")
        time.sleep(0.2)  # the library targets join the room just after their 101 is sent
        yield by_worker
    finally:
        for member in members:
            member.close()


def text_message(seq: int) -> str:
    return f"text publisher é {seq}"


def publish_and_check(by_worker: dict[int, list[Member]]) -> None:
    """A member of each of two processes publishes MESSAGES (one binary, one text); every member
    receives each message exactly once, each publisher's in order."""
    (first, *_), (second, *_) = list(by_worker.values())[:2]
    for seq in range(MESSAGES):
        first.ws.send_binary(encode_broadcast(7, seq, SIZES.get(seq, 64)))
        second.ws.send(text_message(seq))
    for member in (m for ms in by_worker.values() for m in ms):
        got = member.recv_all(2 * MESSAGES)
        who = f"member on {member.worker}"
        binary = [m for m in got if isinstance(m, bytes)]
        assert [decode_broadcast(m)[:2] for m in binary] == [(7, s) for s in range(MESSAGES)], who
        assert [len(m) for m in binary] == [SIZES.get(s, 64) for s in range(MESSAGES)], who
        text = [m for m in got if isinstance(m, str)]
        assert text == [text_message(seq) for seq in range(MESSAGES)], who


def stats_of_each(target, workers: int = 2, timeout_s: float = 5.0) -> dict[int, dict]:
    """The latest /stats of each of `workers` processes (new connections reach either)."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < workers and time.monotonic() < deadline:
        stats = target.stats()
        seen[stats["pid"]] = stats
    assert len(seen) == workers, f"/stats reached only {sorted(seen)}"
    return seen


def wait_connected(target, connected: bool, timeout_s: float = 5.0) -> dict[int, dict]:
    """Poll /stats until every process reports `broker_connected == connected`."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = stats_of_each(target)
        if all(s["broker_connected"] is connected for s in seen.values()):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"broker_connected not {connected} in {timeout_s} s: {seen}")
        time.sleep(0.05)


def test_room_spans_processes_exactly_once_in_order(target_name, spawn, redis):
    """With --broker, members on both processes get every message of publishers on both
    processes once and in order; /stats counts what went through the broker."""
    with spawn.running(target_name, "--processes", "2", "--broker", redis.url) as target:
        with members_on_two_workers(target.ws_url("/broadcast?room=span")) as by_worker:
            publish_and_check(by_worker)
        stats = stats_of_each(target)
        for pid, s in stats.items():
            assert s["broker"] == redis.url and s["broker_connected"] is True, s
            assert s["broker_published"] >= MESSAGES and s["broker_received"] >= MESSAGES, s
            assert s["broker_errors"] == 0, s
            assert pid in by_worker


def test_without_broker_rooms_stay_per_process(target_name, spawn):
    """Without --broker, a member on the other process does not get the message; /stats says
    there is no broker."""
    with spawn.running(target_name, "--processes", "2") as target:
        with members_on_two_workers(target.ws_url("/broadcast?room=local")) as by_worker:
            (here, *_), (there, *_) = list(by_worker.values())[:2]
            here.ws.send("only here")
            assert here.ws.recv() == "only here"
            assert there.silent(), "a member on the other process got it without a broker"
        for s in stats_of_each(target).values():
            assert s["broker"] is None and s["broker_connected"] is False, s


def test_broker_lost_and_back(spawn, redis):
    """Redis killed: the target keeps serving local members, says so once per process and in
    /stats; Redis back on its port: it reconnects and rooms span processes again."""
    with (
        spawn.running("raw", "--processes", "2", "--broker", redis.url) as target,
        members_on_two_workers(target.ws_url("/broadcast?room=lost")) as by_worker,
    ):
        here = next(iter(by_worker.values()))[0]
        redis.kill()
        target.wait_stderr(r"^targets: broker redis://127\.0\.0\.1:\d+ lost: .+; "
                           r"local rooms only until it is back$")  # fmt: skip
        wait_connected(target, False)
        here.ws.send("while lost")
        for member in by_worker[here.worker]:
            assert member.ws.recv() == "while lost", "local delivery stopped with the broker"
        for worker, members in by_worker.items():
            if worker != here.worker:
                assert all(m.silent() for m in members), "a remote member got it while lost"
        errors = stats_of_each(target)[here.worker]["broker_errors"]
        assert errors >= 1, "the message not published is not counted"

        redis.start()
        wait_connected(target, True, timeout_s=5.0)
        target.wait_stderr(r"^targets: broker redis://127\.0\.0\.1:\d+ is back")
        assert target.stderr.count(" lost: ") == 2, target.stderr  # one per process
        publish_and_check(by_worker)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_unreachable_broker_at_start_is_one_line(processes):
    """A broker nobody listens on: non-zero exit, one error line naming it, no ready line."""
    url = f"redis://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "targets", "raw", "--processes", processes, "--broker", url],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stdout == "", "printed a ready line"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"targets: cannot reach the broker {url}: "), \
        result.stderr  # fmt: skip


def test_replacement_that_cannot_reach_the_broker_stops_everything(spawn, redis):
    """Redis gone and a worker killed: its replacement cannot start, so the supervisor stops
    every worker and exits 1 instead of serving with a process short or respawning forever."""
    target = spawn.launch("raw", "--processes", "2", "--broker", redis.url)
    try:
        workers = spawn.workers_of(target)
        assert len(workers) == 2
        redis.kill()
        target.wait_stderr(" lost: ")
        workers[0].kill()
        assert target.process.wait(20) == 1
        spawn.assert_no_survivors(target, workers, 5.0)
        time.sleep(0.05)  # let the pump thread read the last lines
        assert f"worker {workers[0].pid} exited with status -9 (killed by SIGKILL)" in target.stderr
        assert "cannot reach the broker" in target.stderr
        assert "exited with status 1 before ready" in target.stderr, target.stderr
    finally:
        spawn.kill_tree(target.process)
        target.process.wait()

