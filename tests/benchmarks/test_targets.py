"""The target benchmark: its frame encoder and counter, its report, and one short run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from benchmarks import targets as bench
from targets.rfc6455 import Opcode, parse_frame, serialize_frame

REPO_ROOT = Path(__file__).resolve().parents[2]
MASK = bytes.fromhex("37fa213d")  # the mask of the RFC 6455 §5.7 examples


# -- frames ------------------------------------------------------------------------------------


def test_masked_frame_matches_rfc_example() -> None:
    """A masked "Hello" is the byte vector of RFC 6455 §5.7."""
    frame = bench.masked_frame(b"Hello", MASK, opcode=Opcode.TEXT)
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_masked_frame_decodes_to_payload(size: int) -> None:
    """The project's RFC 6455 parser reads the frame back as one final binary message."""
    payload = random.Random(size).randbytes(size)
    frame = bench.masked_frame(payload, MASK)
    assert parse_frame(frame, 0, 1 << 20) == (True, Opcode.BINARY, payload, len(frame))


def test_scan_frames_counts_complete_stream() -> None:
    """Every server data frame in a buffer is counted, whatever its length encoding."""
    data = b"".join(serialize_frame(Opcode.BINARY, b"x" * n) for n in (0, 64, 126, 70000))
    assert bench.scan_frames(data) == (4, len(data), False)


def test_scan_frames_reports_where_a_split_frame_resumes() -> None:
    """An incomplete header stays for the next chunk; an incomplete payload is skipped."""
    frame = serialize_frame(Opcode.BINARY, b"y" * 300)  # 4-byte header
    assert bench.scan_frames(frame[:3]) == (0, 0, False)
    assert bench.scan_frames(frame[:10]) == (1, len(frame), False)


def test_scan_frames_ignores_control_and_partial_fragments() -> None:
    """Pings and non-final fragments are not echoes; a close frame is reported."""
    data = (
        serialize_frame(Opcode.PING, b"")
        + serialize_frame(Opcode.BINARY, b"a", fin=False)
        + serialize_frame(Opcode.CONT, b"b")
        + serialize_frame(Opcode.CLOSE, b"\x03\xe8")
    )
    assert bench.scan_frames(data) == (1, len(data), True)


class _Transport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data


@pytest.mark.parametrize("size", [64, 200, 70000])
def test_echo_peer_resends_one_frame_per_echo_across_any_chunking(size: int) -> None:
    """The window is sent; echoes cut at random points are each counted and answered once."""
    frame = bench.masked_frame(bytes(size), MASK)
    echoes = serialize_frame(Opcode.BINARY, bytes(size)) * 25
    rng = random.Random(size)

    async def feed() -> bench._EchoPeer:
        peer = bench._EchoPeer(b"", frame, window=4)
        peer.transport = _Transport()  # type: ignore[assignment]
        peer.handshake.set_result(None)
        peer.start()
        cuts = sorted(rng.sample(range(1, len(echoes)), 40))
        for start, stop in zip([0, *cuts], [*cuts, len(echoes)], strict=True):
            peer.data_received(echoes[start:stop])
        return peer

    peer = asyncio.run(feed())
    assert peer.echoed == 25
    assert peer.transport.written == frame * (4 + 25)  # type: ignore[union-attr]
    assert (peer.skip, peer.tail) == (0, b"")


# -- report ------------------------------------------------------------------------------------


def _echo(msgs_per_s: float, client_cpu_pct: float = 50.0) -> bench.EchoResult:
    return bench.EchoResult(msgs_per_s, 100.0, client_cpu_pct, 100.0, client_cpu_pct, 0)


def _idle(kib_per_conn: float, opened: int = 100, server: int = 100) -> bench.IdleResult:
    return bench.IdleResult(1000.0, 1000.0 + kib_per_conn * opened, opened, server)


def test_table_shows_ratios_to_aiohttp_and_unavailable_targets() -> None:
    """Ratios are relative to aiohttp; a target that is not installed says so."""
    results = [
        bench.TargetResult("aiohttp", _echo(100_000), _idle(12.0)),
        bench.TargetResult("websockets", _echo(50_000), _idle(6.0)),
        bench.TargetResult("raw", error="not available"),
    ]
    rows = bench.result_rows(results)
    assert rows[0] == ["aiohttp", "100,000", "1.00x", "12.0", "1.00x"]
    assert rows[1] == ["websockets", "50,000", "0.50x", "6.0", "0.50x"]
    assert rows[2][:2] == ["raw", "not available"]
    table = bench.format_table(["target", "a", "b", "c", "d"], rows).splitlines()
    assert len({len(line) for line in table[:3]}) == 1  # aligned columns


def test_checks_pass_fail_and_skip() -> None:
    """raw is judged against aiohttp's throughput and the 16 KiB bound; missing figures skip."""
    aiohttp = bench.TargetResult("aiohttp", _echo(100_000), _idle(12.0))
    fast_lean = bench.TargetResult("raw", _echo(150_000), _idle(3.0))
    slow_fat = bench.TargetResult("raw", _echo(90_000), _idle(17.0))
    assert [c.status for c in bench.checks([aiohttp, fast_lean])] == ["PASS", "PASS"]
    assert [c.status for c in bench.checks([aiohttp, slow_fat])] == ["FAIL", "FAIL"]
    assert [c.status for c in bench.checks([aiohttp])] == ["SKIP", "SKIP"]
    assert [c.status for c in bench.checks([fast_lean])] == ["SKIP", "PASS"]


def test_notes_warn_about_a_busy_client_and_a_connection_count_mismatch() -> None:
    """A client at 90% of its core and /stats disagreeing with the idle count are flagged."""
    result = bench.TargetResult("raw", _echo(1.0, client_cpu_pct=95.0), _idle(1.0, server=99))
    text = "\n".join(bench.notes(result, idle=100))
    assert "client was CPU-bound" in text
    assert "/stats reports 99" in text
    assert "WARNING" not in "\n".join(bench.notes(bench.TargetResult("x", _echo(1.0)), 100))


def test_missing_target_is_reported_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target whose module does not exist yet is 'not available' and nothing is started."""
    monkeypatch.setitem(bench.TARGETS, "raw", "targets.no_such_module")
    args = bench.build_parser().parse_args([])
    result = bench.measure("raw", args, bench.Placement(0, 0))
    assert (result.error, result.echo, result.idle) == ("not available", None, None)


# -- one short run -----------------------------------------------------------------------------


def _marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("WSBENCH_TEST_RUN") == marker:
                found.append(proc)
    return found


def test_short_run_prints_the_table_and_leaves_no_process() -> None:
    """A run against aiohttp prints its row and the checks, exits 0 and stops its children."""
    cmd = [sys.executable, "-m", "benchmarks.targets", "--targets", "aiohttp",
           "--duration", "0.5", "--connections", "4", "--idle", "50"]  # fmt: skip
    marker = uuid.uuid4().hex  # inherited by every process the run starts
    env = {**os.environ, "WSBENCH_TEST_RUN": marker}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    cells = next(line for line in done.stdout.splitlines() if line.startswith("aiohttp ")).split()
    assert (cells[2], cells[4]) == ("1.00x", "1.00x")
    assert float(cells[1].replace(",", "")) > 0 and float(cells[3]) > 0
    assert "SKIP raw echo throughput" in done.stdout
    assert _marked_processes(marker) == []
