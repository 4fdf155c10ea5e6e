"""harness.procs.start_target on a real reference target: ready, and the two ways it is not."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from harness.plan import Topology
from harness.procs import RunError, start_target


def targets_running() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "targets" in p.cmdline()]


def test_a_target_that_prints_ready_is_started_and_stops_cleanly(tmp_path: Path) -> None:
    """Its URL is the one on its ready line; SIGTERM ends it with status 0."""
    target = start_target(Topology("raw"), tmp_path / "target.log")
    try:
        assert target.url.startswith("ws://127.0.0.1:")
        assert target.exited() is None
    finally:
        assert target.stop() == 0


def test_a_target_that_cannot_listen_says_why(tmp_path: Path) -> None:
    """Exited before ready: the error line from its log, in the runner's words."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(RunError) as caught:
            start_target(Topology("raw", target_port=port), tmp_path / "target.log")
    assert str(caught.value).startswith(
        f"target raw did not start: targets: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )


def test_a_target_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    """Past the bound: one line saying so, and no target process left behind."""
    with pytest.raises(RunError, match=r"^target raw not ready after 0\.01 s$"):
        start_target(Topology("raw"), tmp_path / "target.log", timeout_s=0.01)
    assert targets_running() == []
