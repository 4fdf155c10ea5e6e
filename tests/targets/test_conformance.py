"""The command-line and application-protocol contract of every target, seen by three real clients.

Each test runs against the three targets (one server per target for the module, more only for
options such as --tls) and, where the client matters, with three independent client libraries:
websockets (sync), aiohttp and websocket-client, behind one small adapter interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Iterator

import aiohttp
import pytest
import websocket
import websockets.exceptions
import websockets.sync.client

from targets import protocol

RECV_TIMEOUT_S = 10.0
MAX_SIZE = protocol.DEFAULT_MAX_MESSAGE_BYTES
Message = str | bytes


class Closed(Exception):
    """The server closed the connection; `code`/`reason` of its close frame (None if none)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed by server: code={code} reason={reason!r}")
        self.code = code
        self.reason = reason


class Rejected(Exception):
    """The server refused the opening handshake with this HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake rejected with HTTP {status}")
        self.status = status


def _parse_close(payload: bytes) -> Closed:
    if len(payload) < 2:
        return Closed(None)
    return Closed(struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace"))


class WebsocketsClient:
    """The `websockets` library's sync client (offers permessage-deflate, like browsers do)."""

    name = "websockets"
    can_fragment = True

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        try:
            self.ws = websockets.sync.client.connect(
                url, ssl=ssl_context, open_timeout=RECV_TIMEOUT_S, close_timeout=RECV_TIMEOUT_S,
                ping_interval=None, max_size=None, proxy=None, legacy=True,
            )  # fmt: skip
        except websockets.exceptions.InvalidStatus as exc:
            raise Rejected(exc.response.status_code) from exc
        self.extensions_header = self.ws.response.headers.get("Sec-WebSocket-Extensions")

    def send(self, message: Message) -> None:
        self.ws.send(message)

    def send_fragments(self, fragments: list[str] | list[bytes]) -> None:
        self.ws.send(fragments)

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> Message:
        try:
            return self.ws.recv(timeout=timeout)
        except websockets.exceptions.ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise (Closed(rcvd.code, rcvd.reason) if rcvd else Closed(None)) from exc

    def ping(self, payload: bytes) -> bytes:
        # websockets sets the event only for a pong carrying this ping's payload.
        if not self.ws.ping(payload).wait(RECV_TIMEOUT_S):
            raise TimeoutError("no pong with the ping's payload")
        return payload

    def close(self, code: int, reason: str) -> Closed:
        self.ws.close(code, reason)
        rcvd = self.ws.protocol.close_rcvd
        return Closed(rcvd.code, rcvd.reason) if rcvd else Closed(None)

    def abort(self) -> None:
        self.ws.close_socket()


class AiohttpClient:
    """aiohttp's ClientSession.ws_connect, driven from a private event loop."""

    name = "aiohttp"
    can_fragment = False

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        try:
            self.ws = self._run(self._connect(url, ssl_context))
        except aiohttp.WSServerHandshakeError as exc:
            self.abort()
            raise Rejected(exc.status) from exc
        except BaseException:
            self.abort()
            raise
        self.extensions_header = self.ws._response.headers.get("Sec-WebSocket-Extensions")

    def _run(self, coro, timeout: float = RECV_TIMEOUT_S):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def _connect(self, url: str, ssl_context: ssl.SSLContext | None):
        self.session = aiohttp.ClientSession()
        # autoping off so pongs reach us; autoclose off so we see the server's close reason.
        return await self.session.ws_connect(
            url, ssl=ssl_context or True, autoping=False, autoclose=False,
            max_msg_size=0, proxy=None,
        )  # fmt: skip

    def send(self, message: Message) -> None:
        if isinstance(message, str):
            self._run(self.ws.send_str(message))
        else:
            self._run(self.ws.send_bytes(message))

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> Message:
        msg = self._run(self.ws.receive(timeout=timeout), timeout + 1)
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return msg.data
        if msg.type is aiohttp.WSMsgType.CLOSE:
            # Answer the close so the server completes its closing handshake.
            with contextlib.suppress(Exception):
                self._run(self.ws.send_frame(struct.pack("!H", msg.data), aiohttp.WSMsgType.CLOSE))
            raise Closed(msg.data, msg.extra or "")
        raise Closed(None, f"{msg.type.name}: {msg.data!r}")

    def ping(self, payload: bytes) -> bytes:
        self._run(self.ws.ping(payload))
        msg = self._run(self.ws.receive(timeout=RECV_TIMEOUT_S), RECV_TIMEOUT_S + 1)
        assert msg.type is aiohttp.WSMsgType.PONG, f"expected a pong, got {msg.type.name}"
        return msg.data

    def close(self, code: int, reason: str) -> Closed:
        payload = struct.pack("!H", code) + reason.encode()
        self._run(self.ws.send_frame(payload, aiohttp.WSMsgType.CLOSE))
        while True:
            msg = self._run(self.ws.receive(timeout=RECV_TIMEOUT_S), RECV_TIMEOUT_S + 1)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                self.abort()
                return Closed(msg.data, msg.extra or "")
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                self.abort()
                return Closed(None, msg.type.name)

    def abort(self) -> None:
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.session.close())
            self.session = None
        if not self.loop.is_closed():
            self.loop.close()


class WebsocketClientClient:
    """websocket-client's create_connection (synchronous, frame-level access)."""

    name = "websocket-client"
    can_fragment = True

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        sslopt = {"context": ssl_context} if ssl_context else None
        try:
            self.ws = websocket.create_connection(url, timeout=RECV_TIMEOUT_S, sslopt=sslopt,
                                                  http_no_proxy=["127.0.0.1", "localhost"])
        except websocket.WebSocketBadStatusException as exc:
            raise Rejected(exc.status_code) from exc
        self.extensions_header = self.ws.getheaders().get("sec-websocket-extensions")

    def send(self, message: Message) -> None:
        if isinstance(message, str):
            self.ws.send(message, websocket.ABNF.OPCODE_TEXT)
        else:
            self.ws.send_binary(message)

    def send_fragments(self, fragments: list[str] | list[bytes]) -> None:
        text = isinstance(fragments[0], str)
        opcode = websocket.ABNF.OPCODE_TEXT if text else websocket.ABNF.OPCODE_BINARY
        for i, fragment in enumerate(fragments):
            data = fragment.encode() if text else fragment
            fin = int(i == len(fragments) - 1)
            frame_opcode = opcode if i == 0 else websocket.ABNF.OPCODE_CONT
            self.ws.send_frame(websocket.ABNF.create_frame(data, frame_opcode, fin))

    def _frame(self, timeout: float):
        self.ws.settimeout(timeout)
        try:
            return self.ws.recv_frame()
        except websocket.WebSocketTimeoutException as exc:
            raise TimeoutError(str(exc)) from exc
        except websocket.WebSocketConnectionClosedException as exc:
            raise Closed(None, "connection closed without a close frame") from exc

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> Message:
        # Frame by frame rather than recv_data_frame(): that one answers a close frame itself
        # and, if the answer fails (the server already reset), loses the close code.
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame(max(0.01, deadline - time.monotonic()))
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                closed = _parse_close(frame.data)
                with contextlib.suppress(Exception):
                    self.ws.send_close(closed.code or 1000)
                raise closed
            if frame.opcode == websocket.ABNF.OPCODE_PING:
                self.ws.pong(frame.data)
            elif frame.opcode != websocket.ABNF.OPCODE_PONG:
                self.ws.cont_frame.validate(frame)
                self.ws.cont_frame.add(frame)
                if self.ws.cont_frame.is_fire(frame):
                    opcode, whole = self.ws.cont_frame.extract(frame)
                    text = opcode == websocket.ABNF.OPCODE_TEXT
                    return whole.data.decode() if text else whole.data

    def ping(self, payload: bytes) -> bytes:
        self.ws.ping(payload)
        while True:
            frame = self._frame(RECV_TIMEOUT_S)
            if frame.opcode == websocket.ABNF.OPCODE_PONG:
                return frame.data
            assert frame.opcode != websocket.ABNF.OPCODE_CLOSE, "closed while waiting for a pong"

    def close(self, code: int, reason: str) -> Closed:
        self.ws.send_close(code, reason.encode())
        while True:
            frame = self._frame(RECV_TIMEOUT_S)
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                self.abort()
                return _parse_close(frame.data)

    def abort(self) -> None:
        self.ws.shutdown()


CLIENTS = {c.name: c for c in (WebsocketsClient, AiohttpClient, WebsocketClientClient)}
FRAGMENTING_CLIENTS = [name for name, c in CLIENTS.items() if c.can_fragment]


@pytest.fixture(params=list(CLIENTS))
def connect(request: pytest.FixtureRequest) -> Iterator:
    """connect(url, ssl_context=None) with one client library; every connection is closed after."""
    opened: list = []

    def _connect(url: str, ssl_context: ssl.SSLContext | None = None):
        client = CLIENTS[request.param](url, ssl_context)
        opened.append(client)
        return client

    yield _connect
    for client in opened:
        with contextlib.suppress(Exception):
            client.abort()


def wait_close(client, timeout: float = RECV_TIMEOUT_S) -> Closed:
    """Read until the server closes; the close (data messages before it are ignored)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.recv(max(0.1, deadline - time.monotonic()))
        except Closed as closed:
            return closed


def utf8_text(n_bytes: int) -> str:
    """Text whose UTF-8 encoding is exactly `n_bytes`, with 2-, 3- and 4-byte characters."""
    unit = "aé€😀"  # 1 + 2 + 3 + 4 bytes
    text = unit * (n_bytes // 10) + "x" * (n_bytes % 10)
    assert len(text.encode()) == n_bytes
    return text


def binary(n_bytes: int) -> bytes:
    return (bytes(range(256)) * (n_bytes // 256 + 1))[:n_bytes]


def room_url(target, room: str | None) -> str:
    return target.ws_url(protocol.BROADCAST_PATH + (f"?room={room}" if room is not None else ""))


# --- echo ------------------------------------------------------------------------------------

ECHO_SIZES = [0, 125, 126, 65535, 65536, MAX_SIZE - 1]


@pytest.mark.parametrize("size", ECHO_SIZES)
def test_echo_text(target, connect, size):
    """A text message (multi-byte UTF-8) of each frame-length class comes back unchanged as text."""
    client = connect(target.ws_url())
    message = utf8_text(size)
    client.send(message)
    echoed = client.recv()
    assert isinstance(echoed, str)
    assert echoed == message


@pytest.mark.parametrize("size", ECHO_SIZES)
def test_echo_binary(target, connect, size):
    """A binary message of each frame-length class comes back unchanged as binary."""
    client = connect(target.ws_url())
    message = binary(size)
    client.send(message)
    echoed = client.recv()
    assert isinstance(echoed, bytes)
    assert echoed == message


def test_echo_message_of_exactly_max_size(target, connect):
    """A message of exactly --max-size bytes is accepted (only larger ones are closed 1009)."""
    client = connect(target.ws_url())
    message = binary(MAX_SIZE)
    client.send(message)
    assert client.recv() == message


def test_echo_keeps_order_of_many_messages(target, connect):
    """A burst of mixed text and binary messages is echoed in order with the right types."""
    client = connect(target.ws_url())
    messages = [f"msg-{i}-é" if i % 2 else binary(i * 7) for i in range(200)]
    for message in messages:
        client.send(message)
    assert [client.recv() for _ in messages] == messages


@pytest.mark.parametrize("client_name", FRAGMENTING_CLIENTS)
@pytest.mark.parametrize(
    "fragments",
    [
        ["frag", "mented ", "téxt €", ""],
        [b"\x00\x01", b"", b"\xff" * 70000, b"end"],
    ],
    ids=["text", "binary"],
)
def test_fragmented_message_echoed_whole(target, client_name, fragments):
    """A message sent as several frames comes back as one message equal to the concatenation."""
    client = CLIENTS[client_name](target.ws_url())
    try:
        client.send_fragments(fragments)
        client.send("after")  # the fragmented message must not swallow the next one
        assert client.recv() == fragments[0][:0].join(fragments)
        assert client.recv() == "after"
    finally:
        client.abort()


def test_server_declines_compression(target):
    """permessage-deflate offered by the client is not negotiated (compression is off)."""
    client = WebsocketsClient(target.ws_url())
    try:
        assert client.extensions_header is None
        client.send("x" * 1000)
        assert client.recv() == "x" * 1000
    finally:
        client.abort()


# --- control frames and closing --------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))], ids=["empty", "5", "125"])
def test_ping_answered_with_same_payload(target, connect, payload):
    """A ping gets a pong carrying the same application data."""
    client = connect(target.ws_url())
    assert client.ping(payload) == payload
    client.send("still open")
    assert client.recv() == "still open"


CLIENT_CLOSES = [(1000, ""), (1000, "bye"), (3000, "three thousand"), (4000, "für dich"),
                 (4999, "last private code")]


@pytest.mark.parametrize(("code", "reason"), CLIENT_CLOSES)
def test_client_close_code_echoed(target, connect, code, reason):
    """The server answers a client's close frame with the same close code."""
    client = connect(target.ws_url())
    client.send("hello")
    assert client.recv() == "hello"
    closed = client.close(code, reason)
    assert closed.code == code


def test_message_over_max_size_closed_1009(target, connect):
    """A message one byte over --max-size (default 1 MiB) is answered with close code 1009."""
    client = connect(target.ws_url())
    with contextlib.suppress(OSError, websocket.WebSocketException,
                             websockets.exceptions.ConnectionClosed, aiohttp.ClientError):
        client.send(binary(MAX_SIZE + 1))
    assert wait_close(client).code == 1009


# --- broadcast -------------------------------------------------------------------------------


def test_broadcast_reaches_room_members_only(target, connect):
    """A message in room A reaches every A member, sender included, and no member of room B."""
    room_a, room_b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    members_a = [connect(room_url(target, room_a)) for _ in range(3)]
    members_b = [connect(room_url(target, room_b)) for _ in range(2)]
    members_a[1].send("to A")
    assert [m.recv() for m in members_a] == ["to A"] * 3
    members_b[0].send(b"to B")
    # B's first message is its own: A's message never reached it.
    assert [m.recv() for m in members_b] == [b"to B"] * 2
    members_a[0].send("A again")
    assert [m.recv() for m in members_a] == ["A again"] * 3


def test_broadcast_without_room_uses_default_room(target, connect):
    """Clients that give no room share the default room, apart from clients in a named room."""
    plain = [connect(room_url(target, None)) for _ in range(2)]
    named_default = connect(room_url(target, protocol.DEFAULT_ROOM))
    other = connect(room_url(target, f"other-{uuid.uuid4().hex}"))
    tag = f"default-{uuid.uuid4().hex}"
    plain[0].send(tag)
    assert [m.recv() for m in (*plain, named_default)] == [tag] * 3
    other.send("other")
    assert other.recv() == "other"


def test_broadcast_relays_fan_in_from_every_member(target, connect):
    """Every member sees every member's messages, each publisher's in its sending order."""
    room = f"fan-{uuid.uuid4().hex}"
    members = [connect(room_url(target, room)) for _ in range(3)]
    for round_ in range(5):
        for i, member in enumerate(members):
            member.send(f"{i}:{round_}")
    for member in members:
        got = [member.recv() for _ in range(15)]
        assert sorted(got) == sorted(f"{i}:{r}" for i in range(3) for r in range(5))
        for i in range(3):
            assert [g for g in got if g.startswith(f"{i}:")] == [f"{i}:{r}" for r in range(5)]


# --- push ------------------------------------------------------------------------------------


def test_push_delivers_count_at_rate(target, connect):
    """/push?rate=50&size=100&count=25: 25 binary messages of 100 bytes over ~0.5 s, seq 0..24."""
    rate, size, count = 50, 100, 25
    client = connect(target.ws_url(f"{protocol.PUSH_PATH}?rate={rate}&size={size}&count={count}"))
    received = []
    for _ in range(count):
        message = client.recv()
        received.append((time.monotonic_ns(), message))
    assert all(isinstance(m, bytes) and len(m) == size for _, m in received)
    headers = [protocol.decode_push(m) for _, m in received]
    assert [seq for seq, _ in headers] == list(range(count))
    sent = [sent_ns for _, sent_ns in headers]
    assert sent == sorted(sent), "send times go backwards"
    assert all(s <= r for s, (r, _) in zip(sent, received, strict=True)), "sent after received"
    span_s = (sent[-1] - sent[0]) / 1e9
    expected_s = (count - 1) / rate
    assert 0.7 * expected_s <= span_s <= 3.0 * expected_s, f"{count} messages took {span_s:.3f} s"
    with contextlib.suppress(TimeoutError, Closed):
        extra = client.recv(timeout=0.15)
        pytest.fail(f"message after the last of count={count}: {extra[:16]!r}")


@pytest.mark.parametrize("query", ["rate=0", "rate=-5", "rate=abc", "size=3", "size=15",
                                   "count=-1", f"size={MAX_SIZE + 1}"])
def test_push_bad_params_rejected_400(target, connect, query):
    """/push with an invalid rate, size or count is refused with HTTP 400 at the handshake."""
    if "count" not in query:
        query += "&count=1"
    with pytest.raises(Rejected) as excinfo:
        connect(target.ws_url(f"{protocol.PUSH_PATH}?{query}"))
    assert excinfo.value.status == 400


def test_unknown_path_rejected_404(target, connect):
    """A WebSocket handshake on an unknown path is refused with HTTP 404."""
    with pytest.raises(Rejected) as excinfo:
        connect(target.ws_url("/no-such-path"))
    assert excinfo.value.status == 404


def test_unknown_path_plain_get_404(target):
    """A plain HTTP GET on an unknown path gets 404."""
    status, _, _ = target.http_get("/no-such-path")
    assert status == 404


# --- stats -----------------------------------------------------------------------------------

COUNTERS = ("connections", "connections_total", "messages_in", "messages_out", "bytes_in",
            "bytes_out")


def _delta(after: dict, before: dict) -> dict:
    return {name: after[name] - before[name] for name in COUNTERS}


def test_stats_fields(target):
    """GET /stats answers JSON with every protocol.STATS_FIELDS counter as a non-negative int."""
    status, headers, body = target.http_get(protocol.STATS_PATH)
    assert status == 200
    assert "json" in {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    stats = json.loads(body)
    for name in protocol.STATS_FIELDS:
        assert isinstance(stats[name], int) and stats[name] >= 0, name


def test_stats_count_echo_traffic_exactly(target_name, spawn):
    """On a fresh server, /stats counts exactly the connections, messages and payload bytes sent."""
    with spawn.running(target_name) as target:
        before = target.stats()
        first = WebsocketsClient(target.ws_url())
        second = WebsocketClientClient(target.ws_url())
        messages = [(first, "abc"), (first, binary(1000)), (second, "é€")]  # 3 + 1000 + 5 bytes
        for client, message in messages:
            client.send(message)
            assert client.recv() == message
        during = target.stats()
        first.close(1000, "")
        second.close(1000, "")
        after = target.wait_stats(lambda s: s["connections"] == before["connections"])
    assert _delta(during, before) == {"connections": 2, "connections_total": 2, "messages_in": 3,
                                      "messages_out": 3, "bytes_in": 1008, "bytes_out": 1008}
    assert _delta(after, before) == {**_delta(during, before), "connections": 0}


def test_stats_count_broadcast_fanout_and_push(target_name, spawn):
    """/stats counts one message in per broadcast and one out per recipient, and every push."""
    with spawn.running(target_name) as target:
        room = target.ws_url(f"{protocol.BROADCAST_PATH}?room=stats")
        members = [WebsocketsClient(room) for _ in range(3)]
        before = target.stats()
        members[0].send(b"0123456789")
        assert [m.recv() for m in members] == [b"0123456789"] * 3
        pusher = WebsocketsClient(target.ws_url(f"{protocol.PUSH_PATH}?rate=1000&size=20&count=4"))
        assert [len(pusher.recv()) for _ in range(4)] == [20] * 4
        after = target.stats()
        for client in (*members, pusher):
            client.abort()
    delta = _delta(after, before)
    assert (delta["messages_in"], delta["bytes_in"]) == (1, 10)
    assert (delta["messages_out"], delta["bytes_out"]) == (3 + 4, 30 + 80)


# --- process life cycle ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_clients_1001_and_exits_0(target_name, spawn, sig):
    """On SIGTERM/SIGINT every connected client gets close 1001 and the server exits 0."""
    target = spawn.launch(target_name)
    clients = []
    try:
        clients += [cls(target.ws_url()) for cls in CLIENTS.values()]
        for client in clients:
            client.send("hi")
            assert client.recv() == "hi"
        workers = spawn.workers_of(target)
        target.process.send_signal(sig)
        codes = {client.name: wait_close(client).code for client in clients}
        assert codes == dict.fromkeys(CLIENTS, 1001)
    except BaseException:
        spawn.kill_tree(target.process)
        raise
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.abort()
    spawn.stop(target, sig, send=False)  # exit status 0 in time, no worker left
    spawn.assert_no_survivors(target, workers, 1.0)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_tls_echo_trusting_printed_ca(target_name, spawn, tmp_path, processes):
    """With --tls the ready line says wss:// and every client echoes trusting the CA file."""
    ca_file = tmp_path / "ca.pem"
    args = ("--tls", "--ca-file", str(ca_file), "--processes", processes)
    with spawn.running(target_name, *args) as target:
        assert target.url.startswith("wss://")
        printed = target.wait_stderr(r"^ca-file: (.+)$")[1].strip()
        assert printed == str(ca_file)
        context = ssl.create_default_context(cafile=str(ca_file))
        for cls in CLIENTS.values():
            client = cls(target.ws_url(), context)
            try:
                client.send("secret é")
                assert client.recv() == "secret é", cls.name
                client.send(binary(70000))
                assert client.recv() == binary(70000), cls.name
            finally:
                client.abort()


def test_tls_without_ca_file_prints_temporary_ca(target_name, spawn):
    """With --tls and no --ca-file the CA is written to a temporary file named on stderr."""
    with spawn.running(target_name, "--tls") as target:
        ca_file = target.wait_stderr(r"^ca-file: (.+)$")[1].strip()
        client = WebsocketsClient(target.ws_url(), ssl.create_default_context(cafile=ca_file))
        try:
            client.send("hi")
            assert client.recv() == "hi"
        finally:
            client.abort()


def test_uvloop_and_asyncio_loops_serve(target_name, spawn):
    """The target serves echo with --loop asyncio and with --loop uvloop."""
    for loop in ("asyncio", "uvloop"):
        with spawn.running(target_name, "--loop", loop) as target:
            client = WebsocketsClient(target.ws_url())
            try:
                client.send(loop)
                assert client.recv() == loop
            finally:
                client.abort()


def test_processes_serve_and_stop_cleanly(target_name, spawn):
    """With --processes 2 connections echo, /stats is served, and SIGTERM closes every client
    with 1001 and stops every worker with exit 0."""
    target = spawn.launch(target_name, "--processes", "2")
    clients = []
    try:
        workers = spawn.workers_of(target)
        assert workers, "no worker processes"
        clients += [WebsocketsClient(target.ws_url()) for _ in range(12)]
        for i, client in enumerate(clients):
            client.send(f"c{i}")
        assert [c.recv() for c in clients] == [f"c{i}" for i in range(12)]
        assert set(protocol.STATS_FIELDS) <= set(target.stats())
        target.process.send_signal(signal.SIGTERM)
        assert [wait_close(c).code for c in clients] == [1001] * 12
    except BaseException:
        spawn.kill_tree(target.process)
        raise
    finally:
        for client in clients:
            client.abort()
    spawn.stop(target, send=False)
    spawn.assert_no_survivors(target, workers, 1.0)


def test_processes_parent_sigkill_leaves_no_orphan(target_name, spawn):
    """With --processes 2, SIGKILL of the parent takes every worker down too; the port closes."""
    target = spawn.launch(target_name, "--processes", "2")
    try:
        workers = spawn.workers_of(target)
        assert workers, "no worker processes"
        client = WebsocketsClient(target.ws_url())
        client.send("x")
        assert client.recv() == "x"
        target.process.kill()
        target.process.wait(5)
        spawn.assert_no_survivors(target, workers, 5.0)
        client.abort()
    finally:
        spawn.kill_tree(target.process)
        target.process.wait()
    with pytest.raises(OSError), socket.create_connection((target.host, target.port), timeout=2):
        pass
