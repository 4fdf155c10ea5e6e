"""The --processes supervisor replaces a worker that dies once all were ready (failover drills),
and stops everything rather than respawn in a loop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import websocket

from targets.protocol import WORKER_HEADER
from targets.server import MAX_RESPAWNS, RESPAWN_WINDOW_S

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 5.0


def connect(url: str) -> tuple[websocket.WebSocket, int]:
    """An /echo client and the pid of the worker serving it."""
    ws = websocket.create_connection(url, timeout=TIMEOUT_S, http_no_proxy=["127.0.0.1"])
    return ws, int(ws.getheaders()[WORKER_HEADER.lower()])


def echoes(ws: websocket.WebSocket, text: str) -> bool:
    ws.send(text)
    return ws.recv() == text


def test_killed_worker_is_replaced_and_all_stop_on_sigterm(target_name, spawn):
    """SIGKILL to one of two workers: one line names it and its replacement, which serves on the
    same port next to the survivor; SIGTERM to the supervisor then stops all, exit 0."""
    target = spawn.launch(target_name, "--processes", "2")
    clients: list[websocket.WebSocket] = []
    try:
        victim, survivor = spawn.workers_of(target)
        victim.kill()
        line = target.wait_stderr(rf"^targets: worker {victim.pid} exited with status -9 "
                                  r"\(killed by SIGKILL\); started (\d+)$")  # fmt: skip
        new_pid = int(line[1])
        assert {p.pid for p in spawn.workers_of(target)} == {survivor.pid, new_pid}
        served: set[int] = set()
        deadline = time.monotonic() + TIMEOUT_S
        while served != {survivor.pid, new_pid}:
            assert time.monotonic() < deadline, f"only {served} served, not {new_pid}"
            ws, pid = connect(target.ws_url())
            clients.append(ws)
            served.add(pid)
            assert echoes(ws, f"to {pid}")
        assert not victim.is_running()
        assert target.process.poll() is None, "the supervisor stopped"
    except BaseException:
        spawn.kill_tree(target.process)
        target.process.wait()
        raise
    finally:
        for ws in clients:
            ws.abort()
    spawn.stop(target)  # exit 0, no worker (the replacement included) left behind


CRASH_LOOP = """
import sys
from targets.server import Supervisor
# A worker that is ready and exits at once: every replacement dies like its predecessor.
supervisor = Supervisor([sys.executable, "-c", "print('ready ws://x', flush=True)"])
supervisor.start_worker()
sys.exit(supervisor.serve())
"""


def test_crash_loop_stops_with_status_1():
    """Workers that keep dying are replaced MAX_RESPAWNS times; the next death within the
    window stops the supervisor with status 1 and one line saying why."""
    result = subprocess.run([sys.executable, "-c", CRASH_LOOP], cwd=REPO_ROOT, text=True,
                            capture_output=True, timeout=RESPAWN_WINDOW_S)  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert sum("; started " in line for line in lines) == MAX_RESPAWNS, result.stderr
    assert lines[-1].endswith(
        f"more than {MAX_RESPAWNS} workers exited within {RESPAWN_WINDOW_S:g} s, stopping"
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "ready ws://x" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
