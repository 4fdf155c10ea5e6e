"""The client of `python -m benchmarks.deflate`, one process: `python -m benchmarks.deflate_client`.

The websockets library's asyncio client, with its own permessage-deflate (`--compression
deflate`) or without: what is measured is the server, whose CPU and memory the benchmark reads
from outside; the client only has to offer the same thing to every target. Text messages come
from scenarios/payloads.py's `text` pool (distinct messages, so a kept compression context does
not make them free). It reports on stdout, one JSON object a line:

    echo   `measuring` after the warm-up, then `result` (messages, wall_s, lost, extensions)
           after --duration seconds of closed-loop echoes on --connections connections
    hold   `opened` (connections, extensions) once each of --connections connections has
           exchanged one message (so a compressor exists on both sides); on SIGUSR1 it
           closes them all and says `closed`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from websockets.asyncio.client import ClientConnection, connect

from benchmarks.targets_client import CLOSE_SIGNAL, OPEN_BATCH, WARMUP_S
from scenarios.payloads import Messages
from targets.protocol import ECHO_PATH


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _open(url: str, compression: str, messages: Messages) -> ClientConnection:
    """One connection that has echoed one message."""
    ws = await connect(url, compression="deflate" if compression == "deflate" else None,
                       max_size=None, ping_interval=None, open_timeout=30)  # fmt: skip
    await ws.send(messages.next().decode())
    await ws.recv()
    return ws


def _extensions(connections: Sequence[ClientConnection]) -> list[str]:
    """The distinct Sec-WebSocket-Extensions answers the server gave."""
    found = {c.response.headers.get("Sec-WebSocket-Extensions", "") for c in connections}
    return sorted(found)


async def _open_all(args: argparse.Namespace) -> list[ClientConnection]:
    messages = Messages("text", args.size, True)
    opened: list[ClientConnection] = []
    for start in range(0, args.connections, OPEN_BATCH):
        batch = range(start, min(start + OPEN_BATCH, args.connections))
        opened += await asyncio.gather(*(_open(args.url, args.compression, messages)
                                         for _ in batch))  # fmt: skip
    return opened


async def hold(args: argparse.Namespace) -> None:
    connections = await _open_all(args)
    close_now = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(CLOSE_SIGNAL, close_now.set)
    _emit("opened", connections=len(connections), extensions=_extensions(connections))
    await close_now.wait()
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
    _emit("closed")


async def echo(args: argparse.Namespace) -> None:
    connections = await _open_all(args)
    counted = [0]
    lost = [0]
    measuring = [False]

    async def loop(ws: ClientConnection) -> None:
        messages = Messages("text", args.size, True)
        try:
            while True:
                await ws.send(messages.next().decode())
                await ws.recv()
                if measuring[0]:
                    counted[0] += 1
        except Exception:  # a closed connection ends its loop; counted as lost
            lost[0] += 1

    tasks = [asyncio.create_task(loop(ws)) for ws in connections]
    await asyncio.sleep(WARMUP_S)
    measuring[0] = True
    _emit("measuring")
    started = time.monotonic()
    await asyncio.sleep(args.duration)
    measuring[0] = False
    wall_s = time.monotonic() - started
    _emit("result", messages=counted[0], wall_s=wall_s, lost=lost[0],
          extensions=_extensions(connections))  # fmt: skip
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deflate_client")
    parser.add_argument("mode", choices=("echo", "hold"))
    parser.add_argument("--url", required=True, help="the target's ws:// URL (its /echo is used)")
    parser.add_argument("--compression", choices=("none", "deflate"), default="none")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--size", type=int, default=256, help="text message bytes")
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    args.url = args.url.rstrip("/") + ECHO_PATH
    asyncio.run(echo(args) if args.mode == "echo" else hold(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
