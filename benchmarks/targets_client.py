"""The lean client of `make bench-targets`, one process: `python -m benchmarks.targets_client`.

It must cost less per message than any server, so that the figure measures the server: plain
asyncio protocols on uvloop, one pre-built masked frame re-sent per echo, and the server's frames
split by scenarios/frames.py (the generator's one client codec) and counted, never decoded. It
reports on stdout, one JSON object a line:

    echo   `measuring` after the warm-up (discarded), then `result` (messages, wall_s, lost)
           after --duration seconds; it lets the echoes in flight come back, then closes
    idle   `opened` (connections) once every handshake is done; on SIGUSR1 it closes them all
           (the closing handshake, 1000) and says `closed` (lost)

The opening handshake is written by hand (the client's only other framing need); the targets'
own codec (targets/rfc6455) is not used, so that a bug shared by both could not cancel out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from common.errors import WsbenchError
from scenarios.frames import FIN, OP_BINARY, OP_CLOSE, client_frame, close_payload, split_frames
from targets.protocol import ECHO_PATH

WARMUP_S = 1.0
OPEN_BATCH = 200  # handshakes in flight at once: no SYN backlog overflow
HANDSHAKE_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 2.0  # echoes still in flight when the measurement ends
CLOSE_TIMEOUT_S = 5.0  # the closing handshake of every connection
CLOSE_SIGNAL = signal.SIGUSR1  # the idle client's cue to close (its stdin is not a pipe)
SEED = 6455  # the payload is random but the same in every run


class ClientError(WsbenchError):
    """Connections that could not be opened; the client says it on stderr and exits 1."""


def handshake_request(host: str, port: int, path: str, key: bytes) -> bytes:
    """The opening handshake of a client (RFC 6455 §4.1) with the 16-byte nonce `key`."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(key).decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def bench_payload(size_bytes: int) -> bytes:
    """Random bytes, the same in every run."""
    return random.Random(SEED + size_bytes).randbytes(size_bytes)


def count_echoes(data: bytes) -> tuple[int, int, bool]:
    """(final data frames, offset where an incomplete frame starts, close frame seen) of the
    whole frames in `data`. ValueError for a masked frame: a server must not mask."""
    frames: list[tuple[int, bytes]] = []
    end = split_frames(data, 0, frames)
    messages, closed = 0, False
    for first, _ in frames:
        opcode = first & 0x0F
        if opcode == OP_CLOSE:
            closed = True
        elif first & FIN and opcode < OP_CLOSE:  # pings and non-final fragments are no echo
            messages += 1
    return messages, end, closed


class _Peer(asyncio.Protocol):
    """A client connection: opening handshake by hand, then `frames_received` gets the bytes."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.lost = False  # the TCP connection is gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.handshake.done():
            self.frames_received(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        status = self.head[: self.head.find(b"\r\n")]
        if status.split(b" ", 2)[1:2] != [b"101"]:
            self.handshake.set_exception(ClientError(f"handshake refused: {status.decode()!r}"))
            self.transport.close()  # type: ignore[union-attr]
            return
        self.handshake.set_result(None)
        if rest := self.head[end + 4 :]:
            self.frames_received(rest)

    def frames_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.handshake.done():
            self.handshake.set_exception(ClientError(f"connection lost in handshake: {exc}"))


class _EchoPeer(_Peer):
    """Keeps `window` frames in flight: one frame sent per echoed frame received."""

    def __init__(self, request: bytes, frame: bytes, window: int) -> None:
        super().__init__(request)
        self.frame, self.window = frame, window
        self.echoed = 0
        self.in_flight = 0
        self.sending = False
        self.server_closed = False
        self.tail = b""  # the start of a frame whose rest is still to come

    def start(self) -> None:
        assert self.transport is not None
        self.sending, self.in_flight = True, self.window
        self.transport.write(self.frame * self.window)

    def frames_received(self, data: bytes) -> None:
        if self.tail:
            data, self.tail = self.tail + data, b""
        try:
            messages, end, closed = count_echoes(data)
        except ValueError:  # not an RFC 6455 server: counted as a connection lost
            self.server_closed = True
            self.transport.close()  # type: ignore[union-attr]
            return
        if end < len(data):
            self.tail = data[end:]
        self.server_closed |= closed
        if not messages:
            return
        self.echoed += messages
        if self.sending:
            self.transport.write(self.frame * messages)  # type: ignore[union-attr]
        else:
            self.in_flight -= messages


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _open_peers(url: str, count: int, factory: Callable[[bytes], _Peer]) -> list[_Peer]:
    """`count` connections to `url` with completed handshakes, opened OPEN_BATCH at a time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = handshake_request(host, port, ECHO_PATH, os.urandom(16))
    loop = asyncio.get_running_loop()

    async def open_one() -> _Peer:
        _, peer = await loop.create_connection(lambda: factory(request), host, port)
        await asyncio.wait_for(peer.handshake, HANDSHAKE_TIMEOUT_S)
        return peer

    peers: list[_Peer] = []
    for start in range(0, count, OPEN_BATCH):
        batch = min(OPEN_BATCH, count - start)
        opened = await asyncio.gather(*(open_one() for _ in range(batch)), return_exceptions=True)
        failures = [p for p in opened if isinstance(p, BaseException)]
        peers += [p for p in opened if isinstance(p, _Peer)]
        if failures:
            print(f"bench client: {len(failures)} connection(s) failed: {failures[0]!r}",
                  file=sys.stderr)  # fmt: skip
            break
    return peers


async def _wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def _close(peers: Sequence[_Peer]) -> None:
    """The closing handshake (1000) on every connection, then the TCP close of any left."""
    frame = client_frame(FIN | OP_CLOSE, close_payload(1000))
    for peer in peers:
        if not peer.lost:
            peer.transport.write(frame)  # type: ignore[union-attr]
    await _wait_until(lambda: all(peer.lost for peer in peers), CLOSE_TIMEOUT_S)
    for peer in peers:
        peer.transport.close()  # type: ignore[union-attr]


async def run_echo_client(
    url: str, connections: int, window: int, size_bytes: int, duration_s: float
) -> None:
    """Echo load; emits `measuring` after the warm-up and `result` after `duration_s`."""
    # One masking key for every copy of the frame: the server's unmasking costs the same.
    frame = client_frame(FIN | OP_BINARY, bench_payload(size_bytes))
    peers = await _open_peers(url, connections, lambda req: _EchoPeer(req, frame, window))
    if len(peers) < connections:
        raise ClientError(f"opened only {len(peers)} of {connections} connections")
    echo_peers = [p for p in peers if isinstance(p, _EchoPeer)]
    for peer in echo_peers:
        peer.start()
    await asyncio.sleep(WARMUP_S)
    echoed_before, started = sum(p.echoed for p in echo_peers), time.perf_counter()
    _emit("measuring")
    await asyncio.sleep(duration_s)
    echoed_after, ended = sum(p.echoed for p in echo_peers), time.perf_counter()
    lost = sum(p.lost or p.server_closed for p in echo_peers)
    _emit("result", messages=echoed_after - echoed_before, wall_s=ended - started, lost=lost)
    # Let the echoes in flight come back before closing, so no server writes to a closed socket.
    for peer in echo_peers:
        peer.sending = False
    await _wait_until(lambda: all(p.in_flight <= 0 or p.lost for p in echo_peers), DRAIN_TIMEOUT_S)
    await _close(peers)


async def run_idle_client(url: str, count: int) -> None:
    """Opens `count` silent connections, emits `opened`, closes them on CLOSE_SIGNAL."""
    close_now = asyncio.Event()
    # Before `opened`: the parent signals as soon as it reads that line.
    asyncio.get_running_loop().add_signal_handler(CLOSE_SIGNAL, close_now.set)
    peers = await _open_peers(url, count, _Peer)
    _emit("opened", connections=len(peers))
    await close_now.wait()
    lost = sum(p.lost for p in peers)
    await _close(peers)
    _emit("closed", lost=lost)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.targets_client",
                                     description="The client process of benchmarks.targets.")
    add = parser.add_argument
    add("mode", choices=("echo", "idle"))
    add("--url", required=True, help="ws://HOST:PORT of the target")
    add("--connections", type=int, default=50, help="echo connections")
    add("--window", type=int, default=8, help="echo frames in flight per connection")
    add("--size", type=int, default=64, help="echo message bytes")
    add("--duration", type=float, default=10.0, help="echo seconds measured")
    add("--idle", type=int, default=5000, help="idle connections")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "echo":
        coro = run_echo_client(args.url, args.connections, args.window, args.size, args.duration)
    else:
        coro = run_idle_client(args.url, args.idle)
    run: Callable[..., object] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    try:
        run(coro)
    except ClientError as exc:
        print(f"bench client: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
