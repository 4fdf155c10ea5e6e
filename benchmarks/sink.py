"""`python -m benchmarks.sink`: a picows + uvloop /echo server, the fastest sink we know of.

Every data frame on any path is sent back unchanged (any path: it is an echo sink for the
capacity section, not a wsbench target). Prints `ready ws://HOST:PORT` like the targets; exits
on SIGTERM/SIGINT. Lives in the benchmark, not the product: the product does not depend on
picows.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server


class EchoListener(WSListener):
    """Echoes text and binary frames; answers close."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
            transport.send(kind, frame.get_payload_as_memoryview())
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


def _listener(_request: WSUpgradeRequest) -> WSListener:
    return EchoListener()


async def serve(host: str, port: int) -> None:
    server = await ws_create_server(
        _listener, host, port, websocket_handshake_timeout=10, max_frame_size=1 << 20,
        backlog=4096, reuse_address=True,
    )  # fmt: skip
    bound_port = server.sockets[0].getsockname()[1]
    print(f"ready ws://{host}:{bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
