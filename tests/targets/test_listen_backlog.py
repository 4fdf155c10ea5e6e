"""Each target's accept queue is as long as the kernel allows (somaxconn), not asyncio's 100.

asyncio's create_server(sock=...) calls listen() again with its own default backlog of 100; a
connection storm then overflows the queue however the kernel is tuned. `ss` shows a listening
socket's backlog in its Send-Q column.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from targets.server import LISTEN_BACKLOG

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")


def test_listen_backlog_is_capped_by_somaxconn_only(target):
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{target.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    send_q = int(listing[2])  # State Recv-Q Send-Q Local Peer
    assert send_q == min(LISTEN_BACKLOG, somaxconn), listing
