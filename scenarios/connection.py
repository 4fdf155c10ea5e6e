"""One client WebSocket connection: opened in timed phases, then a lean frame reader and writer.

Opening: TCP connect, TLS handshake (wss://) and HTTP upgrade are timed apart and reported
through the caller's `report(name, rtt_us, length, error)`, each bounded by the socket timeout.
websocket-client does the upgrade (request headers, Sec-WebSocket-Accept and subprotocol
checks) over our socket.

With `ConnectSettings.deflate` the upgrade offers permessage-deflate (scenarios/deflate.py)
and the server's answer must accept it (NotNegotiated, an upgrade failure, if not); the
connection's `deflate` then compresses and inflates its messages.

After the upgrade the socket is ours: websocket-client's frame path costs about twice ours
per message (per-frame objects, one recv per header field, locks), and the message path is
the hottest code in the project. Reads are buffered: one recv() can deliver several frames.
Sends use one send() (gevent's sendall() adds a getsockopt() system call per message). Open
connections have no socket timeout: waits are bounded by `deadline_ns` and the per-process
watchdog (scenarios/deadlines.py). Everything runs under gevent's monkey-patched sockets.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import websocket
from gevent import GreenletExit

from common.units import ns_to_us
from scenarios import arrival
from scenarios.deadlines import watchdog
from scenarios.deflate import OFFER, Deflate, agreed
from scenarios.failures import (
    ConnectionLost,
    HandshakeRejected,
    NotNegotiated,
    ProtocolViolation,
    WsError,
    classify,
)
from scenarios.frames import (
    FIN,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ServerFrames,
    client_frame,
    close_payload,
    split_frames,
)
from scenarios.selfcheck import READ_LAG
from targets.rfc6455.codes import CloseCode

TCP_CONNECT = "tcp connect"
TLS_HANDSHAKE = "tls handshake"
WS_UPGRADE = "ws upgrade"
RECV_BYTES = 65536
# Linux: let connect() pick the port after bind(ip, 0), so each source IP has the whole
# ephemeral range per destination rather than one shared range (value from linux/in.h).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

Report = Callable[[str, int, int, "WsError | None"], None]
T = TypeVar("T")


@dataclass
class ConnectSettings:
    """How every connection of this process is opened (from the shared command-line options)."""

    timeout_s: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    headers: Sequence[str] = ()
    subprotocols: Sequence[str] = ()
    origin: str | None = None
    source_ips: Sequence[str] = ()
    deflate: bool = False  # offer permessage-deflate and require it (--ws-compression deflate)
    _next_source: Iterator[str] | None = field(default=None, init=False, repr=False)

    def source_address(self) -> tuple[str, int] | None:
        """The next local address to bind, round-robin over `source_ips`; None: the kernel's."""
        if not self.source_ips:
            return None
        if self._next_source is None:
            self._next_source = itertools.cycle(self.source_ips)
        return next(self._next_source), 0


def client_ssl_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@functools.lru_cache(maxsize=64)
def _resolve(host: str, port: int) -> tuple[int, tuple]:
    # Resolved once per process: a connection storm should measure connects, not DNS.
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, address


def _tcp_connect(host: str, port: int, settings: ConnectSettings) -> socket.socket:
    family, address = _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(settings.timeout_s)
        source = settings.source_address()
        if source is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind(source)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


class _HandshakeReader:
    """The socket as websocket-client's handshake sees it.

    It reads the HTTP response one byte per recv() call; this serves those bytes from one
    larger read. Bytes past the response (a /push server may send at once) are kept in
    `leftover` for the frame reader.

    With `stamped` (plain TCP) each read brings the kernel's receive time (scenarios/arrival.py):
    `arrived_ns` is the last read's (the response's end), `read_late_ns` how long after it the
    read was made.
    """

    def __init__(self, sock: socket.socket, stamped: bool = False) -> None:
        self.sock = sock
        self._buf = b""
        self._pos = 0
        self.arrived_ns = self.read_late_ns = 0
        self._refill = self._read_stamped if stamped else self._read
        if stamped:
            arrival.enable(sock)

    @property
    def leftover(self) -> bytes:
        return self._buf[self._pos :]

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._refill(), 0
        out = self._buf[self._pos : self._pos + bufsize]
        self._pos += len(out)
        return out

    def _read(self) -> bytes:
        return self.sock.recv(RECV_BYTES)

    def _read_stamped(self) -> bytes:
        data, ancillary, _, _ = self.sock.recvmsg(RECV_BYTES, arrival.SPACE)
        now_ns = time.monotonic_ns()
        arrived = arrival.arrived_ns(ancillary, now_ns)
        self.arrived_ns = now_ns if arrived is None else arrived
        self.read_late_ns = now_ns - self.arrived_ns
        return data

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()

    def close(self) -> None:
        self.sock.close()


def _phase(
    report: Report,
    name: str,
    step: Callable[[], T],
    unanswered: Callable[[str], None] | None,
    ended: Callable[[], int] | None = None,
) -> T:
    """Run one opening phase, report its duration or its failure (then raise the WsError).

    A phase cut short by the end of the run (the greenlet killed while waiting) is neither:
    `unanswered(name)` counts it, so a server that never answers is seen as such. `ended`:
    when a successful phase ended (monotonic ns; 0: when `step` returned), such as its
    answer's arrival in the kernel.
    """
    t0 = time.perf_counter_ns()
    try:
        result = step()
    except Exception as exc:
        error = classify(exc, name)
        report(name, ns_to_us(time.perf_counter_ns() - t0), 0, error)
        raise error from exc
    except GreenletExit:
        if unanswered is not None:
            unanswered(name)
        raise
    end_ns = (ended() if ended is not None else 0) or time.perf_counter_ns()
    report(name, ns_to_us(end_ns - t0), 0, None)
    return result


def open_connection(
    url: str,
    settings: ConnectSettings,
    report: Report,
    unanswered: Callable[[str], None] | None = None,
    lag: Callable[[str, int], None] | None = None,
) -> WsConnection:
    """Connect to `url` (ws:// or wss://), reporting each phase; WsError if one fails.

    With `lag` a plain-TCP upgrade is timed from its request's send to its response's arrival
    in the kernel, and how much later the generator read it goes to `lag(READ_LAG, µs)`: a
    busy generator's delay is then out of "ws upgrade" (a TLS record has no receive time).
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    sock = _phase(
        report, TCP_CONNECT, lambda: _tcp_connect(host, port, settings), unanswered
    )
    try:
        if secure:
            context = settings.ssl_context or client_ssl_context(None, False)
            plain = sock
            sock = _phase(
                report,
                TLS_HANDSHAKE,
                lambda: context.wrap_socket(plain, server_hostname=host),
                unanswered,
            )
        reader = _HandshakeReader(sock, stamped=lag is not None and not secure)
        ws = websocket.WebSocket(enable_multithread=False, skip_utf8_validation=True)
        headers = list(settings.headers)
        if settings.deflate:
            headers.append(f"Sec-WebSocket-Extensions: {OFFER}")
        options: dict[str, object] = {"socket": reader, "header": headers}
        if settings.subprotocols:
            options["subprotocols"] = list(settings.subprotocols)
        if settings.origin:
            options["origin"] = settings.origin
        deflate = _phase(report, WS_UPGRADE, lambda: _upgrade(ws, url, options, settings.deflate),
                         unanswered, lambda: reader.arrived_ns)  # fmt: skip
    except BaseException:
        sock.close()
        raise
    if reader.arrived_ns and lag is not None:
        lag(READ_LAG, ns_to_us(reader.read_late_ns))
    sock.settimeout(None)  # from now on the watchdog bounds waits (see module docstring)
    connection = WsConnection(sock, reader.leftover, ws.getsubprotocol(), settings.timeout_s)
    connection.deflate = deflate
    watchdog().watch(connection)
    return connection


def endpoint_url(host: str, path: str) -> str:
    """The URL to connect to: `host` itself when it has a path, else `host` + `path`.

    http(s):// is taken as ws(s)://, as Locust's web form suggests http://.
    """
    host = host or ""
    if host.startswith("http"):
        host = "ws" + host[4:]  # http:// -> ws://, https:// -> wss://
    parts = urlsplit(host)
    if parts.path not in ("", "/") or parts.query:
        return host
    return host.rstrip("/") + path


def _upgrade(
    ws: websocket.WebSocket, url: str, options: dict[str, object], deflate: bool
) -> Deflate | None:
    """The upgrade; with `deflate`, the compression the server's answer agreed to."""
    ws.connect(url, redirect_limit=0, **options)
    status = ws.getstatus()
    if status != 101:
        raise HandshakeRejected(status or 0)
    if not deflate:
        return None
    params = agreed((ws.getheaders() or {}).get("sec-websocket-extensions"))
    if params is None:
        raise NotNegotiated("permessage-deflate", "--ws-compression deflate")
    return Deflate(params)


class WsConnection(ServerFrames):
    """An open client connection: masked sends, buffered frame reads, ping/close handling.

    Most scenarios hand it to the engine (scenarios/engine.py) right after the upgrade; the
    blocking reads here serve what stays in a greenlet (connect's one exchange and close
    handshake). `deadline_ns` (time.perf_counter_ns, 0: none) bounds the current wait: past
    it the watchdog expires the connection, the blocked read fails and `timed_out` says why.
    """

    __slots__ = (
        "sock", "subprotocol", "timeout_ns", "deadline_ns", "timed_out", "closed",
        "_buf", "_frames", "_recv", "_send", "_sendall",
    )  # fmt: skip

    def __init__(
        self,
        sock: socket.socket,
        initial: bytes = b"",
        subprotocol: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.sock = sock
        self.subprotocol = subprotocol
        self.timeout_ns = int(timeout_s * 1e9)
        self.deadline_ns = 0
        self.timed_out = False
        self.closed = False
        self._buf = initial
        self._frames: deque[tuple[int, bytes]] | None = None  # made when first needed
        self._recv = sock.recv
        self._send = sock.send
        self._sendall = sock.sendall

    def take_buffer(self) -> bytes:
        """The bytes read but not yet parsed (the engine takes over the socket with them)."""
        if self._frames:
            raise RuntimeError("frames already parsed cannot be handed over")
        self._frames = None
        buf, self._buf = self._buf, b""
        return buf

    def send_frame(self, frame: bytes) -> None:
        """Send bytes made by frames.client_frame: usually one send() call."""
        sent = self._send(frame)
        if sent != len(frame):
            self._sendall(memoryview(frame)[sent:])

    def send_binary(self, payload: bytes) -> None:
        self.send_frame(self.message_frame(FIN | OP_BINARY, payload))

    def send_text(self, payload: bytes) -> None:
        """`payload` is already UTF-8: encoding is the caller's, once, not per message."""
        self.send_frame(self.message_frame(FIN | OP_TEXT, payload))

    def ping(self, payload: bytes = b"") -> None:
        self.send_frame(client_frame(FIN | OP_PING, payload))

    def expire(self) -> None:
        """Called by the watchdog past the deadline: fail the blocked read, as a timeout."""
        self.timed_out = True
        self.abort()

    def _read_frame(self) -> tuple[int, bytes]:
        """(first byte, payload) of the next frame, whatever it is; reads as needed."""
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        while not frames:
            found: list[tuple[int, bytes]] = []
            try:
                pos = split_frames(self._buf, 0, found)
            except ValueError:
                raise ProtocolViolation("protocol error: masked frame from server") from None
            if found:
                self._buf = self._buf[pos:]
                frames.extend(found)
                break
            chunk = self._recv(RECV_BYTES)
            if not chunk:
                raise ConnectionLost("connection lost without close frame")
            self._buf = self._buf + chunk if self._buf else chunk
        return frames.popleft()

    def recv(self) -> bytes:
        """The payload of the next data message (text as UTF-8 bytes, not validated).

        Answers pings, skips pongs; ConnectionClosed on a close frame, ConnectionLost on EOF.
        """
        while True:
            first, payload = self._read_frame()
            if (first == 0x82 or first == 0x81) and self._parts is None:
                return payload
            message = self.other_frame(first, payload, 0)
            if message is not None:
                return message

    answer = send_frame  # ServerFrames' pong

    def answer_close(self, frame: bytes) -> None:
        """ServerFrames' close echo: a send the server can no longer take is no failure of
        ours (the close frame read says what happened); nothing is read or sent after it."""
        with contextlib.suppress(OSError):
            self.send_frame(frame)
        self.abort()

    def recv_pong(self) -> None:
        """Wait (up to the timeout) for the next pong, answering pings, skipping data."""
        self.deadline_ns = time.perf_counter_ns() + self.timeout_ns
        while True:
            first, payload = self._read_frame()
            if first & 0x0F == OP_PONG:
                self.deadline_ns = 0
                return
            if first & 0x0F >= OP_CLOSE:
                self.other_frame(first, payload, 0)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Send a close frame and drop the socket without waiting for the server's answer."""
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.send_frame(client_frame(FIN | OP_CLOSE, close_payload(code, reason)))
        self.abort()

    def close_handshake(self, code: int = CloseCode.NORMAL) -> None:
        """Close as RFC 6455 §7.1.1 asks: send close, read to the server's close and its EOF.

        The server then closes TCP first, so TIME_WAIT lands on its side: a churning client
        that closed first would run out of ephemeral ports within a minute.
        """
        self.deadline_ns = time.perf_counter_ns() + self.timeout_ns
        try:
            self.send_frame(client_frame(FIN | OP_CLOSE, close_payload(code)))
            while self._read_frame()[0] & 0x0F != OP_CLOSE:
                pass
            self._buf, self._frames = b"", None
            while self._recv(RECV_BYTES):
                pass
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the socket at once (after a failure the connection is unusable)."""
        if self.closed:
            return
        self.closed = True
        self.deadline_ns = 0
        watchdog().forget(self)
        self.sock.close()
