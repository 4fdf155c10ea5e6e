"""Distributed runs: `wsbench run --expect-workers N` as master, `wsbench worker` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _wsbench(*args: object, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "runner.py", *(str(a) for a in args)], cwd=REPO_ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_master_merges_the_histograms_of_two_workers(free_port, tmp_path: Path) -> None:
    """A master with two `wsbench worker`s: each worker ran users, counts add up to Locust's."""
    out, port = tmp_path / "out", free_port()
    master = _wsbench("run", "--target", "raw", "--scenario", "echo", "--users", "4",
                      "--duration", "3s", "--expect-workers", "2", "--master-port", port,
                      "--out", out)  # fmt: skip
    workers = [
        _wsbench("worker", "--master-host", "127.0.0.1", "--master-port", port,
                 "--scenario", "echo")  # fmt: skip
        for _ in range(2)
    ]
    try:
        output, _ = master.communicate(timeout=90)
        assert master.returncode == 0, output
        for worker in workers:
            worker.wait(30)
    finally:
        for proc in (master, *workers):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    pdir = out / "points" / "raw-echo-u4-host"
    document = json.loads((pdir / "locust_latency_us_histograms.json").read_text())
    by_worker = document["counts_by_process"]
    assert len(by_worker) == 2, by_worker
    assert all(counts.get("echo", 0) > 0 for counts in by_worker.values())
    final = json.loads((pdir / "locust_final.json").read_text())
    locust_echo = next(e["num_requests"] for e in final if e["name"] == "echo")
    assert sum(c["echo"] for c in by_worker.values()) == locust_echo
    point = json.loads((pdir / "point.json").read_text())
    assert point["status"] == "ok" and point["summary"]["requests"] >= locust_echo


def test_worker_needs_a_master_host() -> None:
    """`wsbench worker` without --master-host is exit 2 with a usage line, no traceback."""
    done = subprocess.run([sys.executable, "runner.py", "worker", "--scenario", "echo"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2
    assert "--master-host" in done.stderr and "Traceback" not in done.stderr

