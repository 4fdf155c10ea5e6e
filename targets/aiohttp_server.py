"""The `aiohttp` reference target: aiohttp's `WebSocketResponse` behind the shared protocol.

aiohttp has no timeout for a client that never finishes its HTTP request, so this module adds
one: each accepted connection gets a timer that drops it unless a request was served by then.
The app's on_response_prepare signal sees the response to every request aiohttp parsed (the
router's 404 and 405 and prepare()'s 400 included), so it is where failed handshakes are
counted. (Not a middleware: its coroutine would live as long as each WebSocket, about 0.5 KiB
more per connection, measured.)
Other library behaviour that differs from RFC 6455 is recorded in
tests/targets/test_library_behaviour.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from aiohttp import WSMsgType, web

from targets import metrics
from targets.hub import LIBRARY_FORM, Outbox, payload_size, push_stream, serve_route
from targets.protocol import (
    HTTP_PATHS,
    METRICS_PATH,
    STATS_PATH,
    WEBSOCKET_PATHS,
    WORKER_HEADER,
    BadRequest,
    PushParams,
    route,
)
from targets.rfc6455.codes import CloseCode, is_valid_close_code
from targets.server import LISTEN_BACKLOG, ServeContext

NAME = "aiohttp"
MESSAGE_FORM = LIBRARY_FORM  # how our broadcast messages travel through a broker


def close_reply(received: int | None) -> int:
    """The code to answer a client's close with: its own when valid, else 1000 or 1002."""
    if received is None or received == CloseCode.NO_STATUS:
        return CloseCode.NORMAL
    return received if is_valid_close_code(received) else CloseCode.PROTOCOL_ERROR


class _Peer(Outbox):
    """An aiohttp WebSocketResponse seen by the shared fan-out logic."""

    __slots__ = ("ws",)

    def __init__(self, ws: web.WebSocketResponse, ctx: ServeContext) -> None:
        super().__init__(self._send_message, self._close_ws, ctx.limits.max_queue_bytes, ctx.stats)
        self.ws = ws

    async def _send_message(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            await self.ws.send_str(payload)
        else:
            await self.ws.send_bytes(payload)

    async def _close_ws(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())


class _App:
    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.open: set[web.WebSocketResponse] = set()
        # Connections that reached a handler within the handshake timeout (cleared by the timer).
        self.served: set[asyncio.BaseProtocol] = set()
        self.worker = str(os.getpid())  # the X-Wsbench-Worker header of every handshake

    def handshake_deadline(self, protocol: asyncio.BaseProtocol) -> None:
        """Drop a connection that has not reached a handler: a slow or half-sent handshake."""
        if protocol in self.served:
            self.served.discard(protocol)
            return
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            self.ctx.stats.handshake_failures += 1
            transport.abort()

    async def answering(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every request's response: its connection was served in time; a handshake not
        answered with 101 is counted."""
        self.served.add(request.protocol)
        if response.status != 101 and request.path not in HTTP_PATHS:
            self.ctx.stats.handshake_failures += 1

    def _response(self) -> web.WebSocketResponse:
        limits = self.ctx.limits
        return web.WebSocketResponse(
            timeout=limits.close_timeout_s,
            autoping=True,
            heartbeat=None,
            compress=self.ctx.deflate,  # aiohttp's permessage-deflate, window 15 bits
            # aiohttp refuses a message of exactly max_msg_size; the policy allows it.
            max_msg_size=limits.max_message_bytes + 1,
            # We answer the client's close ourselves, echoing its code as RFC 6455 §5.5.1 asks
            # (aiohttp's automatic reply is always 1000).
            autoclose=False,
        )

    async def _accept(self, request: web.Request) -> web.WebSocketResponse:
        ws = self._response()
        ws.headers[WORKER_HEADER] = self.worker
        await ws.prepare(request)
        self.open.add(ws)
        self.ctx.stats.opened()
        return ws

    async def _finish(self, ws: web.WebSocketResponse) -> None:
        if not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.close(code=close_reply(ws.close_code))
        self.open.discard(ws)
        stats = self.ctx.stats
        stats.closed()
        # aiohttp reports a 1009 it sent as the connection's exception (close_code reads 1006).
        if getattr(ws.exception(), "code", None) == CloseCode.MESSAGE_TOO_BIG:
            stats.oversize_closed += 1

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """/echo, /broadcast and /push: the query checked (400), then the connection served."""
        try:
            found = route(request.path, request.query)
        except BadRequest as exc:
            return web.Response(status=400, text=f"{exc}\n")
        assert found is not None  # the router sends only the protocol's paths here
        ws = await self._accept(request)
        try:
            await serve_route(self, ws, found)
        finally:
            await self._finish(ws)
        return ws

    async def echo(self, ws: web.WebSocketResponse) -> None:
        stats = self.ctx.stats
        try:
            async for msg in ws:
                kind = msg.type
                if kind is WSMsgType.TEXT:
                    size = payload_size(msg.data)
                    await ws.send_str(msg.data)
                elif kind is WSMsgType.BINARY:
                    size = len(msg.data)
                    await ws.send_bytes(msg.data)
                else:
                    continue
                stats.messages_in += 1
                stats.messages_out += 1
                stats.bytes_in += size
                stats.bytes_out += size
        except ConnectionResetError:
            pass  # the client left while we were answering: not a server error

    async def broadcast(self, ws: web.WebSocketResponse, room: str) -> None:
        peer = _Peer(ws, self.ctx)
        rooms, stats = self.ctx.rooms, self.ctx.stats
        rooms.join(room, peer)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    size = payload_size(msg.data)
                    stats.messages_in += 1
                    stats.bytes_in += size
                    rooms.publish(room, msg.data, size)
        finally:
            rooms.leave(room, peer)
            await peer.shutdown()

    async def push(self, ws: web.WebSocketResponse, params: PushParams) -> None:
        peer = _Peer(ws, self.ctx)
        pusher = asyncio.create_task(push_stream(params, peer, self.ctx.stats))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    self.ctx.stats.messages_in += 1
                    self.ctx.stats.bytes_in += payload_size(msg.data)
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            await peer.shutdown()

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.ctx.stats_json(NAME))

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = self.ctx.metrics_text(NAME)
        # Content-Type as is: aiohttp's content_type= would drop its version parameter.
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def close_all(self) -> None:
        await asyncio.gather(
            *(ws.close(code=CloseCode.GOING_AWAY, message=b"server shutdown") for ws in self.open),
            return_exceptions=True,
        )


async def serve(ctx: ServeContext) -> None:
    app_state = _App(ctx)
    app = web.Application()
    app.on_response_prepare.append(app_state.answering)
    for path in sorted(WEBSOCKET_PATHS):
        app.router.add_get(path, app_state.websocket)
    app.router.add_get(STATS_PATH, app_state.stats)
    app.router.add_get(METRICS_PATH, app_state.metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    http = runner.server
    assert http is not None
    loop = asyncio.get_running_loop()
    timeout_s = ctx.limits.handshake_timeout_s

    def connection() -> asyncio.BaseProtocol:
        protocol = http()
        loop.call_later(timeout_s, app_state.handshake_deadline, protocol)
        return protocol

    # Our own listener instead of aiohttp's SockSite, to put the handshake timer on each
    # connection; aiohttp's request handling is unchanged.
    # asyncio calls listen() again, with its own default of 100 unless told otherwise.
    listener = await loop.create_server(
        connection, sock=ctx.sock, ssl=ctx.ssl_context, backlog=LISTEN_BACKLOG
    )
    ctx.ready()
    await ctx.stop.wait()
    listener.close()
    await app_state.close_all()
    await runner.cleanup()
