"""The target benchmark's client: the frames it sends, the echoes it counts, its window."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import targets_client as client
from scenarios import frames
from targets.rfc6455 import Opcode, parse_frame, serialize_frame

REPO_ROOT = Path(__file__).resolve().parents[2]
MASK = bytes.fromhex("37fa213d")  # the mask of the RFC 6455 §5.7 examples


@pytest.fixture
def fixed_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame masked with MASK, so frames are byte vectors."""
    monkeypatch.setattr(frames, "next_mask_key", lambda: MASK)


def test_the_client_imports_neither_locust_nor_gevent() -> None:
    """The client process stays lean: scenarios.frames brings no Locust or gevent with it."""
    code = ("import sys, benchmarks.targets_client; "
            "print(sorted({'locust', 'gevent'} & {m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


# -- frames ------------------------------------------------------------------------------------


def test_masked_frame_matches_rfc_example(fixed_mask: None) -> None:
    """A masked "Hello" is the byte vector of RFC 6455 §5.7."""
    frame = frames.client_frame(frames.FIN | Opcode.TEXT, b"Hello")
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_masked_frame_decodes_to_payload(size: int) -> None:
    """The project's RFC 6455 parser reads the frame back as one final binary message."""
    payload = random.Random(size).randbytes(size)
    frame = frames.client_frame(frames.FIN | frames.OP_BINARY, payload)
    assert parse_frame(frame, 0, 1 << 20) == (True, Opcode.BINARY, payload, len(frame))


def test_count_echoes_counts_complete_stream() -> None:
    """Every server data frame in a buffer is counted, whatever its length encoding."""
    data = b"".join(serialize_frame(Opcode.BINARY, b"x" * n) for n in (0, 64, 126, 70000))
    assert client.count_echoes(data) == (4, len(data), False)


def test_count_echoes_reports_where_a_split_frame_resumes() -> None:
    """An incomplete header or payload stays for the next chunk; the whole frame counts."""
    frame = serialize_frame(Opcode.BINARY, b"y" * 300)  # 4-byte header
    assert client.count_echoes(frame[:3]) == (0, 0, False)
    assert client.count_echoes(frame[:10]) == (0, 0, False)
    assert client.count_echoes(frame + frame[:10]) == (1, len(frame), False)


def test_count_echoes_ignores_control_and_partial_fragments() -> None:
    """Pings and non-final fragments are not echoes; a close frame is reported."""
    data = (
        serialize_frame(Opcode.PING, b"")
        + serialize_frame(Opcode.BINARY, b"a", fin=False)
        + serialize_frame(Opcode.CONT, b"b")
        + serialize_frame(Opcode.CLOSE, b"\x03\xe8")
    )
    assert client.count_echoes(data) == (1, len(data), True)


# -- the echo window ---------------------------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def _peer(frame: bytes, window: int) -> client._EchoPeer:
    peer = client._EchoPeer(b"", frame, window=window)
    peer.transport = _Transport()  # type: ignore[assignment]
    peer.handshake.set_result(None)
    return peer


@pytest.mark.parametrize("size", [64, 200, 70000])
def test_echo_peer_resends_one_frame_per_echo_across_any_chunking(size: int) -> None:
    """The window is sent; echoes cut at random points are each counted and answered once."""
    frame = frames.client_frame(frames.FIN | frames.OP_BINARY, bytes(size))
    echoes = serialize_frame(Opcode.BINARY, bytes(size)) * 25
    rng = random.Random(size)

    async def feed() -> client._EchoPeer:
        peer = _peer(frame, window=4)
        peer.start()
        cuts = sorted(rng.sample(range(1, len(echoes)), 40))
        for start, stop in zip([0, *cuts], [*cuts, len(echoes)], strict=True):
            peer.data_received(echoes[start:stop])
        return peer

    peer = asyncio.run(feed())
    assert peer.echoed == 25
    assert peer.transport.written == frame * (4 + 25)  # type: ignore[union-attr]
    assert peer.tail == b""


def test_echo_peer_drops_a_server_that_masks() -> None:
    """A masked frame from the server is not an echo: the connection counts as lost."""
    frame = frames.client_frame(frames.FIN | frames.OP_BINARY, b"z" * 8)

    async def feed() -> client._EchoPeer:
        peer = _peer(frame, window=1)
        peer.start()
        peer.data_received(frame)  # a client frame: masked
        return peer

    peer = asyncio.run(feed())
    transport: _Transport = peer.transport  # type: ignore[assignment]
    assert (peer.echoed, peer.server_closed, transport.closed) == (0, True, True)
