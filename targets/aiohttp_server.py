"""The `aiohttp` reference target: aiohttp's `WebSocketResponse` behind the shared protocol.

Library behaviour worth knowing when comparing (see tests/targets/test_library_behaviour.py):
aiohttp has no timeout for a client that never finishes its HTTP request, so the handshake
timeout is not enforced here.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from targets.hub import Outbox, payload_size, push_stream
from targets.protocol import (
    BROADCAST_PATH,
    ECHO_PATH,
    PUSH_PATH,
    STATS_PATH,
    BadRequest,
    parse_push_params,
    room_of,
)
from targets.rfc6455.codes import CloseCode
from targets.server import ServeContext

NAME = "aiohttp"


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

    def _response(self) -> web.WebSocketResponse:
        limits = self.ctx.limits
        return web.WebSocketResponse(
            timeout=limits.close_timeout_s,
            autoping=True,
            heartbeat=None,
            compress=False,
            max_msg_size=limits.max_message_bytes,
        )

    async def _accept(self, request: web.Request) -> web.WebSocketResponse:
        ws = self._response()
        await ws.prepare(request)
        self.open.add(ws)
        self.ctx.stats.opened()
        return ws

    def _finish(self, ws: web.WebSocketResponse) -> None:
        self.open.discard(ws)
        stats = self.ctx.stats
        stats.closed()
        if ws.close_code == CloseCode.MESSAGE_TOO_BIG:
            stats.oversize_closed += 1

    async def echo(self, request: web.Request) -> web.StreamResponse:
        ws = await self._accept(request)
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
        finally:
            self._finish(ws)
        return ws

    async def broadcast(self, request: web.Request) -> web.StreamResponse:
        room = room_of(request.query)
        ws = await self._accept(request)
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
            self._finish(ws)
        return ws

    async def push(self, request: web.Request) -> web.StreamResponse:
        try:
            params = parse_push_params(request.query)
        except BadRequest as exc:
            return web.Response(status=400, text=f"{exc}\n")
        ws = await self._accept(request)
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
            self._finish(ws)
        return ws

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.ctx.stats_json(NAME))

    async def close_all(self) -> None:
        await asyncio.gather(
            *(ws.close(code=CloseCode.GOING_AWAY, message=b"server shutdown") for ws in self.open),
            return_exceptions=True,
        )


async def serve(ctx: ServeContext) -> None:
    app_state = _App(ctx)
    app = web.Application()
    app.router.add_get(ECHO_PATH, app_state.echo)
    app.router.add_get(BROADCAST_PATH, app_state.broadcast)
    app.router.add_get(PUSH_PATH, app_state.push)
    app.router.add_get(STATS_PATH, app_state.stats)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, ctx.sock, ssl_context=ctx.ssl_context, shutdown_timeout=1.0)
    await site.start()
    ctx.ready()
    await ctx.stop.wait()
    await app_state.close_all()
    await runner.cleanup()
