"""`GET /metrics` on the real targets: Prometheus's text format, the counters of /stats, moved by
exactly what a client did, and one scrape showing every worker of `--processes 2`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import websocket
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from common import procs
from targets.metrics import SNAPSHOT_INTERVAL_S
from targets.protocol import METRICS_PATH, WORKER_HEADER

TIMEOUT_S = 5.0
REDIS_SERVER = "/usr/bin/redis-server"
# (text or binary, payload) of the echo messages every test sends: their byte counts differ.
MESSAGES: tuple[str | bytes, ...] = ("hi", "é" * 3, b"\x00" * 200, "x" * 130, b"z")

Scrape = dict[str, dict[int, float]]  # sample name -> pid -> value


def scrape(target) -> Scrape:
    """GET /metrics, parsed by prometheus_client's own parser."""
    status, headers, body = target.http_get(METRICS_PATH)
    assert status == 200, f"{target.name}: GET /metrics -> {status} {body[:200]!r}"
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST, headers
    samples: Scrape = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            assert sample.labels["target"] == target.name, sample
            samples.setdefault(sample.name, {})[int(sample.labels["pid"])] = sample.value
    return samples


def wait_scrape(target, done: Callable[[Scrape], bool], timeout_s: float = TIMEOUT_S) -> Scrape:
    """The first scrape satisfying `done` (the last one if none does in time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(target)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def payload_bytes(message: str | bytes) -> int:
    return len(message.encode() if isinstance(message, str) else message)


def connect(url: str) -> tuple[websocket.WebSocket, int]:
    """A WebSocket client and the pid of the worker serving it."""
    ws = websocket.create_connection(url, timeout=TIMEOUT_S, http_no_proxy=["127.0.0.1"])
    return ws, int(ws.getheaders()[WORKER_HEADER.lower()])


def echo_all(ws: websocket.WebSocket) -> None:
    for message in MESSAGES:
        if isinstance(message, bytes):
            ws.send_binary(message)
        else:
            ws.send(message)
        assert ws.recv() == message


def delta(after: Scrape, before: Scrape, name: str, pid: int) -> float:
    return after[name][pid] - before.get(name, {}).get(pid, 0.0)


def test_echo_moves_the_counters_exactly(target):
    """Five echoes on one connection: accepted +1, messages in/out +5, bytes in/out + their
    payload bytes, nothing dropped or refused; once closed the open gauge is back."""
    before = scrape(target)
    ws, pid = connect(target.ws_url())
    try:
        echo_all(ws)
        during = scrape(target)
        assert delta(during, before, "wsbench_connections", pid) == 1
    finally:
        ws.close()
    after = wait_scrape(target, lambda s: s["wsbench_connections"][pid] == 0)
    assert set(after["wsbench_connections"]) == {pid} == {target.process.pid}
    sent = sum(payload_bytes(m) for m in MESSAGES)
    expected = {
        "wsbench_connections": 0,
        "wsbench_connections_accepted_total": 1,
        "wsbench_messages_in_total": len(MESSAGES),
        "wsbench_messages_out_total": len(MESSAGES),
        "wsbench_bytes_in_total": sent,
        "wsbench_bytes_out_total": sent,
        "wsbench_slow_consumers_dropped_total": 0,
        "wsbench_oversize_closed_total": 0,
        "wsbench_handshake_failures_total": 0,
    }
    assert {name: delta(after, before, name, pid) for name in expected} == expected
    assert not [name for name in after if name.startswith("wsbench_broker")], "no --broker"
    stats = target.stats()  # /stats says the same
    assert stats["messages_in"] == after["wsbench_messages_in_total"][pid]
    assert stats["handshake_failures"] == after["wsbench_handshake_failures_total"][pid]


def refused_status(url: str) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(url, timeout=TIMEOUT_S, http_no_proxy=["127.0.0.1"])
    return caught.value.status_code


def test_handshake_failures_are_counted_alike(target_name, spawn):
    """A 404, a 400 for a bad query, an upgrade-less GET of /echo and a connection silent past
    --handshake-timeout count one failure each; /stats and /metrics requests count none."""
    with spawn.running(target_name, "--handshake-timeout", "0.5") as target:
        pid = target.process.pid
        before = scrape(target)
        assert refused_status(target.url + "/nowhere") == 404
        assert refused_status(target.url + "/push?rate=0") == 400
        status, _, _ = target.http_get("/echo")
        assert status in (400, 426), status
        with socket.create_connection((target.host, target.port), timeout=TIMEOUT_S) as silent:
            assert silent.recv(4096) == b""  # dropped by the handshake timeout
        target.stats()
        after = wait_scrape(target, lambda s: s["wsbench_handshake_failures_total"][pid] >= 4)
        assert delta(after, before, "wsbench_handshake_failures_total", pid) == 4
        assert delta(after, before, "wsbench_connections_accepted_total", pid) == 0


def worker_pids(spawn, target) -> set[int]:
    return {proc.pid for proc in spawn.workers_of(target)}


def clients_on_every_worker(target, workers: set[int], path: str) -> dict[int, websocket.WebSocket]:
    """One client per worker, connecting until each served one (spare clients closed)."""
    clients: dict[int, websocket.WebSocket] = {}
    for _ in range(60):
        ws, pid = connect(target.ws_url(path))
        if pid in clients:
            ws.close()
        else:
            clients[pid] = ws
        if set(clients) == workers:
            return clients
    pytest.fail(f"60 connections did not reach every worker of {sorted(workers)}")


def test_processes_2_one_scrape_shows_both_workers(target_name, spawn):
    """Every scrape, whichever worker answers it, has a series per worker labelled with its pid,
    each moved by exactly the echoes its own client sent."""
    with spawn.running(target_name, "--processes", "2") as target:
        workers = worker_pids(spawn, target)
        assert len(workers) == 2
        first = scrape(target)
        assert set(first["wsbench_connections"]) == workers
        clients = clients_on_every_worker(target, workers, "/echo")
        for ws in clients.values():
            echo_all(ws)
        sent = sum(payload_bytes(m) for m in MESSAGES)

        def settled(s: Scrape) -> bool:
            return all(delta(s, first, "wsbench_bytes_out_total", pid) == sent for pid in workers)

        for _ in range(6):  # SO_REUSEPORT spreads the scrapes too: each worker answers some
            samples = wait_scrape(target, settled, timeout_s=SNAPSHOT_INTERVAL_S * 8 + 2)
            assert set(samples["wsbench_messages_in_total"]) == workers
            for pid in workers:
                assert delta(samples, first, "wsbench_messages_in_total", pid) == len(MESSAGES)
                assert delta(samples, first, "wsbench_bytes_out_total", pid) == sent
                assert samples["wsbench_connections"][pid] == 1
        for ws in clients.values():
            ws.close()


def test_processes_2_a_replaced_worker_leaves_the_scrape(spawn):
    """A worker killed and replaced: its pid's series go, the replacement's come (the
    supervisor's part, the same for every target)."""
    with spawn.running("raw", "--processes", "2") as target:
        old = worker_pids(spawn, target)
        victim = min(old)
        os.kill(victim, signal.SIGKILL)
        new = int(target.wait_stderr(rf"worker {victim} exited .*; started (\d+)")[1])
        live = old - {victim} | {new}
        samples = wait_scrape(target, lambda s: set(s["wsbench_connections"]) == live)
        assert set(samples["wsbench_connections"]) == live


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    """A redis-server of this test's own on a free port."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server missing: apt-get install redis-server (make test does)")
    port = free_port()
    cmd = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--logfile", str(tmp_path / "redis.log")]  # fmt: skip
    server = procs.spawn(cmd)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64) == b"+PONG\r\n":
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("redis-server not ready")
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    server.terminate()
    try:
        server.wait(5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def test_broker_counters_per_worker(target_name, spawn, redis_url):
    """With --broker, three messages published on one worker: its broker_published +3, the
    other's broker_received +3, both connected, no errors."""
    with spawn.running(target_name, "--processes", "2", "--broker", redis_url) as target:
        workers = worker_pids(spawn, target)
        first = scrape(target)
        ws, publisher = connect(target.ws_url("/broadcast?room=metrics"))
        (other,) = workers - {publisher}
        try:
            for i in range(3):
                ws.send(f"m{i}")
                assert ws.recv() == f"m{i}"  # the sender is a member too

            def relayed(s: Scrape) -> bool:
                return (
                    delta(s, first, "wsbench_broker_published_total", publisher) >= 3
                    and delta(s, first, "wsbench_broker_received_total", other) >= 3
                )

            samples = wait_scrape(target, relayed)
        finally:
            ws.close()
        assert delta(samples, first, "wsbench_broker_published_total", publisher) == 3
        assert delta(samples, first, "wsbench_broker_received_total", other) == 3
        assert samples["wsbench_broker_connected"] == {pid: 1.0 for pid in workers}
        assert samples["wsbench_broker_errors_total"] == {pid: 0.0 for pid in workers}


def peers_dir_of(spawn, target) -> str:
    (cmdline,) = {tuple(proc.cmdline()) for proc in spawn.workers_of(target)}
    return cmdline[cmdline.index("--peers-dir") + 1]


def test_processes_2_leave_no_snapshot_directory(spawn):
    """The workers' snapshot directory is gone after SIGTERM, and after a SIGKILL of the
    supervisor too (its workers, stopped by the kernel's SIGTERM, remove it)."""
    with spawn.running("raw", "--processes", "2") as target:
        stopped = peers_dir_of(spawn, target)
        assert os.path.isdir(stopped)
    assert not os.path.exists(stopped)
    target = spawn.launch("raw", "--processes", "2")
    try:
        killed, workers = peers_dir_of(spawn, target), spawn.workers_of(target)
        target.process.kill()
        target.process.wait(5)
        spawn.assert_no_survivors(target, workers, 5.0)
    finally:
        spawn.kill_tree(target.process)
        target.process.wait()
    assert not os.path.exists(killed)
