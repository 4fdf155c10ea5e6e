"""The `raw` reference target: our sans-I/O RFC 6455 core (targets/rfc6455) on asyncio.Protocol.

This module is only glue: bytes from the transport go into the core, frames from the core go
to the transport. There is no task per connection; an idle connection is a protocol object, the
core's state machine and the transport.

Backpressure: when the transport's buffer passes its high-water mark (`pause_writing`) an echo
connection stops reading, so a client that does not read its echoes is slowed by TCP, not
buffered without bound. Broadcast and push connections cannot slow their sources, so their
buffer is bounded by `--max-queue` and a connection past it is closed with 1008 (a slow consumer).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import cast

from targets import metrics
from targets.hub import MessageForm, push_stream
from targets.protocol import (
    BROADCAST_PATH,
    ECHO_PATH,
    HTTP_PATHS,
    METRICS_PATH,
    PUSH_PATH,
    WEBSOCKET_PATHS,
    WORKER_HEADER,
    BadRequest,
    Route,
    route,
)
from targets.rfc6455 import (
    CloseCode,
    HandshakeError,
    Opcode,
    ServerConnection,
    accept_response,
    check_upgrade,
    error_response,
    http_response,
    parse_request,
    serialize_frame,
)
from targets.server import LISTEN_BACKLOG, ServeContext

NAME = "raw"
WRITE_HIGH_WATER_BYTES = 64 * 1024


def _split_frame(frame: bytes) -> tuple[int, memoryview]:
    """A broadcast frame we serialized (FIN set, unmasked): its opcode and payload, uncopied."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return frame[0] & 0x0F, memoryview(frame)[start:]


# Our broadcast messages are complete frames; through a broker they travel as opcode + payload.
MESSAGE_FORM = MessageForm(_split_frame, serialize_frame)


class _Connection(asyncio.Protocol):
    """One TCP connection: an HTTP request first, then (after the upgrade) a WebSocket."""

    __slots__ = (
        "server", "transport", "ws", "path", "room", "request_buf", "timer", "pusher",
        "paused", "open", "lingering",
    )  # fmt: skip

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.ws: ServerConnection | None = None
        self.path = ""
        self.room = ""
        self.request_buf = b""
        self.timer: asyncio.TimerHandle | None = None
        self.pusher: asyncio.Task[None] | None = None
        self.paused = False
        self.open = False  # a WebSocket that may still be offered messages
        self.lingering = False  # failed it: reading only to let the close frame arrive

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        self.server.connections.add(self)
        self.timer = self.server.loop.call_later(
            self.server.ctx.limits.handshake_timeout_s, self._handshake_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # what a failed client still sends is dropped unread
        if self.ws is not None:
            self._ws_data(data)
        else:
            self._request_data(data)

    def eof_received(self) -> bool:
        return False  # close our side too: a WebSocket has no half-closed state

    def pause_writing(self) -> None:
        self.paused = True
        if self.path == ECHO_PATH and self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.path == ECHO_PATH and self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.ws is None:
            return
        self.open = False
        stats = server.ctx.stats
        stats.closed()
        failed = self.ws.failed
        if failed is not None and failed.close_code == CloseCode.MESSAGE_TOO_BIG:
            stats.oversize_closed += 1
        if self.path == BROADCAST_PATH:
            server.ctx.rooms.leave(self.room, self)
        elif self.pusher is not None:
            self.pusher.cancel()
        if not server.connections:
            server.all_closed.set()

    # -- the opening handshake ---------------------------------------------------------------

    def _handshake_timed_out(self) -> None:
        transport = self.transport
        assert transport is not None
        if not transport.is_closing():  # not one already answered, its answer still unread
            self.server.ctx.stats.handshake_failures += 1
        transport.abort()

    def _refuse(self, response: bytes) -> None:
        """Answer a request with an error and hang up: a failed handshake."""
        assert self.transport is not None
        self.server.ctx.stats.handshake_failures += 1
        self.transport.write(response)
        self.transport.close()

    def _request_data(self, data: bytes) -> None:
        buf = self.request_buf + data if self.request_buf else data
        transport = self.transport
        assert transport is not None
        try:
            parsed = parse_request(buf)
        except HandshakeError as exc:  # not a request we can read: answered, not counted
            transport.write(error_response(exc))
            transport.close()
            return
        if parsed is None:
            self.request_buf = buf
            return
        request, used = parsed
        self.request_buf = b""
        if request.path in HTTP_PATHS:
            self._reply_http(request.method, request.path)
            return
        try:
            if request.path not in WEBSOCKET_PATHS:
                raise HandshakeError(404, "Not Found")
            key = check_upgrade(request)  # before the query: a bad upgrade is answered first
            found = route(request.path, request.query)
        except HandshakeError as exc:
            self._refuse(error_response(exc))
            return
        except BadRequest as exc:
            self._refuse(http_response(400, f"{exc}\n".encode()))
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport.write(self.server.accept_response(key))
        self._open(found)
        if used < len(buf):
            self._ws_data(buf[used:])

    def _reply_http(self, method: str, path: str) -> None:
        """/stats or /metrics."""
        assert self.transport is not None
        ctx = self.server.ctx
        if method != "GET":
            response = http_response(405, b"GET only\n", headers=[("Allow", "GET")])
        elif path == METRICS_PATH:
            response = http_response(200, ctx.metrics_text(NAME), metrics.CONTENT_TYPE)
        else:
            body = json.dumps(ctx.stats_json(NAME)).encode()
            response = http_response(200, body, "application/json")
        self.transport.write(response)
        self.transport.close()

    def _open(self, found: Route) -> None:
        ctx = self.server.ctx
        self.ws = ServerConnection(ctx.limits.max_message_bytes)
        self.path = found.path
        self.open = True
        ctx.stats.opened()
        if found.path == BROADCAST_PATH:
            self.room = found.room
            ctx.rooms.join(found.room, self)
        elif found.path == PUSH_PATH:
            self.pusher = self.server.loop.create_task(push_stream(found.push, self, ctx.stats))

    # -- WebSocket traffic -------------------------------------------------------------------

    def _ws_data(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None and self.transport is not None
        messages = ws.receive_data(data)
        if messages:
            stats = self.server.ctx.stats
            stats.messages_in += len(messages)
            path = self.path
            if path == ECHO_PATH:
                size = 0
                for opcode, payload in messages:
                    ws.send_message(opcode, payload)
                    size += len(payload)
                stats.bytes_in += size
                stats.messages_out += len(messages)
                stats.bytes_out += size
            elif path == BROADCAST_PATH:
                rooms = self.server.ctx.rooms
                for opcode, payload in messages:
                    stats.bytes_in += len(payload)
                    # One frame for every member: the same bytes are written to each.
                    rooms.publish(self.room, serialize_frame(opcode, payload), len(payload))
            else:
                stats.bytes_in += sum(len(payload) for _, payload in messages)
        self._flush()

    def _flush(self) -> None:
        ws, transport = self.ws, self.transport
        assert ws is not None and transport is not None
        out = ws.data_to_send()
        if out:
            transport.writelines(out)
        if ws.close_transport:
            self.open = False
            if ws.failed is not None and not self.lingering:
                self._linger()
            elif not self.lingering:
                transport.close()

    def _linger(self) -> None:
        """We failed the connection (1009, 1002...) and sent a close frame; the client may
        still be sending (the rest of a message over the limit). Closing now, with its bytes
        unread, makes the kernel answer with a reset that destroys the close frame before the
        client reads it, so it would see a reset instead of the reason. Read and drop until
        the client closes (EOF) or the close timeout passes, then close (RFC 6455 §7.1.1)."""
        transport = self.transport
        assert transport is not None
        self.lingering = True
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.server.loop.call_later(
            self.server.ctx.limits.close_timeout_s, transport.close
        )

    # -- hub.Peer: what broadcast and push offer -----------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.open

    def offer(self, message: bytes) -> None:
        """Write `message` (a complete frame for broadcast, a binary payload for push)."""
        if not self.open:
            return
        transport = self.transport
        assert transport is not None
        if self.path == PUSH_PATH:
            message = serialize_frame(Opcode.BINARY, message)
        transport.write(message)
        ctx = self.server.ctx
        if self.paused and transport.get_write_buffer_size() > ctx.limits.max_queue_bytes:
            ctx.stats.slow_consumers_dropped += 1
            self.close(CloseCode.POLICY_VIOLATION, "slow consumer: outgoing queue full")

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; drop the connection if the peer does not answer in time."""
        ws = self.ws
        if ws is None or self.transport is None:
            return
        self.open = False
        ws.send_close(code, reason)
        self._flush()
        if self.timer is None:
            self.timer = self.server.loop.call_later(
                self.server.ctx.limits.close_timeout_s, self.transport.abort
            )


class _Server:
    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self.all_closed = asyncio.Event()
        # The 101 response ends with a blank line; our header goes before it.
        self.worker_header = f"{WORKER_HEADER}: {os.getpid()}\r\n\r\n".encode()

    def accept_response(self, key: str) -> bytes:
        """The 101 response, with the X-Wsbench-Worker header naming this process."""
        return accept_response(key)[:-2] + self.worker_header

    async def shutdown(self) -> None:
        """Close every WebSocket with 1001, drop connections still in their handshake."""
        if not self.connections:
            return
        self.all_closed.clear()
        for conn in tuple(self.connections):
            if conn.ws is None:
                assert conn.transport is not None
                conn.transport.abort()
            else:
                conn.close(CloseCode.GOING_AWAY, "server shutdown")
        try:
            await asyncio.wait_for(self.all_closed.wait(), self.ctx.limits.close_timeout_s + 1)
        except TimeoutError:
            for conn in tuple(self.connections):
                if conn.transport is not None:
                    conn.transport.abort()


async def serve(ctx: ServeContext) -> None:
    server = _Server(ctx)
    listener = await server.loop.create_server(
        # asyncio calls listen() again, with its own default of 100 unless told otherwise.
        lambda: _Connection(server), sock=ctx.sock, ssl=ctx.ssl_context, backlog=LISTEN_BACKLOG,
        ssl_handshake_timeout=ctx.limits.handshake_timeout_s if ctx.ssl_context else None,
    )  # fmt: skip
    ctx.ready()
    await ctx.stop.wait()
    listener.close()
    await server.shutdown()
    await listener.wait_closed()
