"""The `websockets` reference target: the library's asyncio server behind the shared protocol.

One addition to the library: when websockets fails a connection (it sends 1002 or 1009 and
half-closes), it waits for the client to close TCP with no deadline, so a client that never does
stays connected forever. A once-a-second sweep enforces the library's own close deadline there,
as the close-timeout policy asks of every target.

Failed handshakes are counted where the library shows them: process_response sees every
response to a request (a 101 or not), and a ServerConnection subclass sees a handshake the
library's open timeout cancelled before its request arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import os
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from targets import metrics
from targets.hub import LIBRARY_FORM, Outbox, payload_size, push_stream, serve_route
from targets.protocol import (
    HTTP_PATHS,
    METRICS_PATH,
    STATS_PATH,
    WORKER_HEADER,
    BadRequest,
    PushParams,
    Stats,
    route,
)
from targets.rfc6455.codes import CloseCode
from targets.server import LISTEN_BACKLOG, ServeContext

NAME = "websockets"
JANITOR_INTERVAL_S = 1.0
MESSAGE_FORM = LIBRARY_FORM  # how our broadcast messages travel through a broker


def _split(target: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target)
    return parts.path, dict(parse_qsl(parts.query))


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def _peer(ws: ServerConnection, ctx: ServeContext) -> Outbox:
    async def close(code: int, reason: str) -> None:
        await ws.close(code, reason)

    return Outbox(ws.send, close, ctx.limits.max_queue_bytes, ctx.stats)


class _App:
    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.worker = str(os.getpid())  # the X-Wsbench-Worker header of every handshake

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path, query = _split(request.path)
        if path == STATS_PATH:
            body = json.dumps(self.ctx.stats_json(NAME)).encode()
            return _response(200, body, "application/json")
        if path == METRICS_PATH:
            return _response(200, self.ctx.metrics_text(NAME), metrics.CONTENT_TYPE)
        try:
            found = route(path, query)
        except BadRequest as exc:
            return _response(400, f"{exc}\n".encode(), "text/plain; charset=utf-8")
        if found is None:
            return _response(404, b"404: Not Found\n", "text/plain; charset=utf-8")
        return None

    def process_response(self, ws: ServerConnection, request: Request, response: Response) -> None:
        response.headers[WORKER_HEADER] = self.worker
        if response.status_code != 101 and _split(request.path)[0] not in HTTP_PATHS:
            self.ctx.stats.handshake_failures += 1

    async def handler(self, ws: ServerConnection) -> None:
        stats = self.ctx.stats
        stats.opened()
        found = route(*_split(ws.request.path))
        assert found is not None  # process_request answered any other path with 404
        try:
            await serve_route(self, ws, found)
        except ConnectionClosed:
            pass
        finally:
            stats.closed()
            sent = ws.protocol.close_sent
            if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
                stats.oversize_closed += 1

    async def echo(self, ws: ServerConnection) -> None:
        stats = self.ctx.stats
        async for message in ws:
            size = payload_size(message)
            await ws.send(message)
            stats.messages_in += 1
            stats.messages_out += 1
            stats.bytes_in += size
            stats.bytes_out += size

    async def broadcast(self, ws: ServerConnection, room: str) -> None:
        rooms, stats = self.ctx.rooms, self.ctx.stats
        peer = _peer(ws, self.ctx)
        rooms.join(room, peer)
        try:
            async for message in ws:
                size = payload_size(message)
                stats.messages_in += 1
                stats.bytes_in += size
                rooms.publish(room, message, size)
        finally:
            rooms.leave(room, peer)
            await peer.shutdown()

    async def push(self, ws: ServerConnection, params: PushParams) -> None:
        peer = _peer(ws, self.ctx)
        pusher = asyncio.create_task(push_stream(params, peer, self.ctx.stats))
        try:
            async for message in ws:
                self.ctx.stats.messages_in += 1
                self.ctx.stats.bytes_in += payload_size(message)
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            await peer.shutdown()


def _connection_class(stats: Stats) -> type[ServerConnection]:
    class Connection(ServerConnection):
        """Counts a handshake cancelled by the open timeout before its request arrived."""

        async def handshake(self, *args, **kwargs) -> None:
            try:
                await super().handshake(*args, **kwargs)
            except asyncio.CancelledError:
                if self.request is None:
                    stats.handshake_failures += 1
                raise

    return Connection


async def _drop_overdue(server: Server) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(JANITOR_INTERVAL_S)
        now = loop.time()
        # all_connections: `connections` leaves out those past their opening state.
        for ws in server.all_connections:
            deadline = ws.close_deadline
            if deadline is not None and now > deadline:
                ws.transport.abort()


async def serve(ctx: ServeContext) -> None:
    app = _App(ctx)
    limits = ctx.limits
    server = await ws_serve(
        app.handler,
        sock=ctx.sock,
        backlog=LISTEN_BACKLOG,  # passed to asyncio, which calls listen() again (default 100)
        ssl=ctx.ssl_context,
        process_request=app.process_request,
        process_response=app.process_response,
        create_connection=_connection_class(ctx.stats),
        # websockets' own permessage-deflate with its defaults (12-bit windows, memLevel 5)
        compression="deflate" if ctx.deflate else None,
        ping_interval=None,
        open_timeout=limits.handshake_timeout_s,
        close_timeout=limits.close_timeout_s,
        max_size=limits.max_message_bytes,
    )
    janitor = asyncio.create_task(_drop_overdue(server))
    ctx.ready()
    await ctx.stop.wait()
    janitor.cancel()
    server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason="server shutdown")
    try:
        await asyncio.wait_for(server.wait_closed(), limits.close_timeout_s + 1)
    except TimeoutError:
        # A connection websockets failed (it sent 1002/1009 and half-closed) waits for the client
        # to close TCP, with no deadline; a client that never does must not block shutdown.
        for ws in server.all_connections:
            ws.transport.abort()
        await server.wait_closed()
