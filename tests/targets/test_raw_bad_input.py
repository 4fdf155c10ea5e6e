"""Bad input on the wire, answered by the raw target as RFC 6455 requires.

The test speaks TCP with its own small frame encoder and decoder (deliberately independent of
targets/rfc6455, so this is a second opinion on that code). Every case expects the close code
(or HTTP status) RFC 6455 mandates, then checks the server still echoes for a fresh client.
The same cases run against the library targets in test_library_behaviour.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass

import pytest

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT_S = 5.0
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --- a tiny independent RFC 6455 client ------------------------------------------------------


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 mask: bool = True, mask_key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """One frame as a client sends it (masked unless `mask` is false); `rsv` is the 3 RSV bits."""
    n = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes([first, mask_bit | n])
    elif n < 1 << 16:
        header = bytes([first, mask_bit | 126]) + struct.pack("!H", n)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return header + payload
    key = (mask_key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + mask_key + masked


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names


def handshake_request(path: str = "/echo", *, key: str | None = None, version: str = "13",
                      omit: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """(request bytes, key) of an opening handshake; `omit` drops headers by name."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    headers = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": version}
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items() if k not in omit]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


class RawClient:
    """A TCP connection speaking RFC 6455 by hand."""

    def __init__(self, host: str, port: int, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT_S)
        self.sock.connect((host, port))
        self.buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buffer += chunk

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waiting for {n} bytes, have {len(self.buffer)}")
            self._fill(left)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_http(self, timeout: float = TIMEOUT_S) -> HttpResponse:
        """The status and headers of an HTTP response (its body stays unread)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"incomplete HTTP response {self.buffer[:200]!r}")
            self._fill(left)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1."), f"status line {status_line!r}"
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return HttpResponse(int(status_line.split()[1]), headers)

    def handshake(self, path: str = "/echo") -> None:
        """Open the WebSocket connection, checking the 101 response and its accept key."""
        request, key = handshake_request(path)
        self.send(request)
        response = self.read_http()
        assert response.status == 101, f"handshake for {path}: HTTP {response.status}"
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert response.headers.get("sec-websocket-accept") == accept
        assert response.headers.get("upgrade", "").lower() == "websocket"

    def read_frame(self, timeout: float = TIMEOUT_S) -> Frame:
        deadline = time.monotonic() + timeout
        b0, b1 = self._take(2, deadline)
        assert not b1 & 0x80, "server frames must not be masked"
        assert not b0 & 0x70, f"server frame has RSV bits set: {b0:#x}"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8, deadline))[0]
        return Frame(bool(b0 & 0x80), b0 & 0x0F, self._take(n, deadline))

    def read_message(self, timeout: float = TIMEOUT_S) -> Frame:
        """The next data message, fragments joined (control frames other than close skipped)."""
        first = self.read_frame(timeout)
        while first.opcode in (PING, PONG):
            first = self.read_frame(timeout)
        payload = first.payload
        last = first
        while not last.fin:
            last = self.read_frame(timeout)
            payload += last.payload
        return Frame(True, first.opcode, payload)

    def read_close(self, timeout: float = TIMEOUT_S, *, reply: bool = True) -> str:
        """How the server ends the connection: `close CODE`, `close (no code)`, `eof`, `reset`
        or `timeout`; data frames before the close frame are skipped. With `reply`, a close
        frame is answered to complete the closing handshake."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                frame = self.read_frame(max(0.01, deadline - time.monotonic()))
                if frame.opcode == CLOSE:
                    break
        except TimeoutError:
            return "timeout"
        except EOFError:
            return "eof"
        except ConnectionResetError:
            return "reset"
        if reply:
            with contextlib.suppress(OSError):
                self.send(encode_frame(CLOSE, frame.payload[:2]))
        if len(frame.payload) < 2:
            return "close (no code)"
        return f"close {struct.unpack('!H', frame.payload[:2])[0]}"


def assert_echo_works(host: str, port: int) -> None:
    """A fresh client gets its text message echoed."""
    with RawClient(host, port) as client:
        client.handshake()
        client.send(encode_frame(TEXT, "still serving ✓".encode()))
        assert client.read_message() == Frame(True, TEXT, "still serving ✓".encode())
        client.send(encode_frame(CLOSE, close_payload(1000)))
        assert client.read_close() == "close 1000"


# --- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameCase:
    """Bytes sent after a successful handshake on /echo, and the RFC 6455 answer."""

    id: str
    data: bytes
    rfc: str  # as returned by RawClient.read_close


def _fragments(first: bytes, *rest: bytes, opcode: int = TEXT) -> bytes:
    frames = [encode_frame(opcode, first, fin=not rest)]
    frames += [encode_frame(CONT, part, fin=i == len(rest) - 1) for i, part in enumerate(rest)]
    return b"".join(frames)


FRAME_CASES = [
    FrameCase("unmasked_frame", encode_frame(TEXT, b"hello", mask=False), "close 1002"),
    FrameCase("rsv1_without_extension", encode_frame(TEXT, b"hello", rsv=4), "close 1002"),
    FrameCase("rsv2", encode_frame(BINARY, b"hello", rsv=2), "close 1002"),
    FrameCase("rsv3", encode_frame(TEXT, b"hello", rsv=1), "close 1002"),
    FrameCase("reserved_data_opcode_3", encode_frame(0x3, b"hello"), "close 1002"),
    FrameCase("reserved_control_opcode_0xB", encode_frame(0xB, b"hello"), "close 1002"),
    FrameCase("continuation_without_start", encode_frame(CONT, b"hello"), "close 1002"),
    FrameCase("new_message_inside_fragmented_one",
              encode_frame(TEXT, b"hel", fin=False) + encode_frame(TEXT, b"lo"), "close 1002"),
    FrameCase("control_frame_over_125_bytes", encode_frame(PING, b"x" * 126), "close 1002"),
    FrameCase("fragmented_control_frame", encode_frame(PING, b"hi", fin=False), "close 1002"),
    FrameCase("invalid_utf8_text", encode_frame(TEXT, b"bad \xff byte"), "close 1007"),
    FrameCase("overlong_utf8_text", encode_frame(TEXT, b"\xc0\xaf"), "close 1007"),
    FrameCase("utf16_surrogate_in_text", encode_frame(TEXT, b"\xed\xa0\x80"), "close 1007"),
    FrameCase("invalid_utf8_across_fragments", _fragments("ok €".encode()[:-1], b"\x28 bad"),
              "close 1007"),
    FrameCase("truncated_utf8_at_message_end", _fragments(b"ok", "€".encode()[:2]),
              "close 1007"),
    FrameCase("invalid_utf8_close_reason",
              encode_frame(CLOSE, close_payload(1000, b"bad \xff reason")), "close 1007"),
    FrameCase("close_payload_of_1_byte", encode_frame(CLOSE, b"\x03"), "close 1002"),
    *(FrameCase(f"close_code_{code}", encode_frame(CLOSE, close_payload(code)), "close 1002")
      for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000)),
]


@dataclass(frozen=True)
class HandshakeCase:
    """Bytes sent instead of a valid opening handshake, and the HTTP status RFC 6455 implies."""

    id: str
    request: bytes
    rfc: int


HANDSHAKE_CASES = [
    HandshakeCase("missing_key", handshake_request(omit=("Sec-WebSocket-Key",))[0], 400),
    HandshakeCase("key_not_16_bytes", handshake_request(key="c2hvcnQ=")[0], 400),
    HandshakeCase("wrong_version", handshake_request(version="99")[0], 426),
    HandshakeCase("hybi_draft_version_8", handshake_request(version="8")[0], 426),
    HandshakeCase("garbage", b"\x16\x03\x01 this is not HTTP at all\r\n\r\n", 400),
]


def observe_frame_case(host: str, port: int, case: FrameCase) -> str:
    """How the server answers `case` (see RawClient.read_close)."""
    with RawClient(host, port) as client:
        client.handshake()
        client.send(case.data)
        return client.read_close()


def observe_handshake_case(host: str, port: int, case: HandshakeCase) -> HttpResponse | str:
    """The server's HTTP response to `case`, or `eof`/`reset` if it just hung up."""
    with RawClient(host, port) as client:
        client.send(case.request)
        try:
            return client.read_http()
        except EOFError:
            return "eof"
        except ConnectionResetError:
            return "reset"


# --- policies that need a server started with special options --------------------------------

SMALL_MAX_SIZE = 1024


def check_max_size(spawn, name: str) -> None:
    """--max-size 1024: 1024 bytes echo; 1025 in one frame or in fragments get 1009, even for a
    client that reads only after the server has given up; oversize_closed counts them."""
    with spawn.running(name, "--max-size", str(SMALL_MAX_SIZE)) as target:
        with RawClient(target.host, target.port) as client:
            client.handshake()
            client.send(encode_frame(BINARY, b"m" * SMALL_MAX_SIZE))
            assert client.read_message().payload == b"m" * SMALL_MAX_SIZE
        oversize = [encode_frame(BINARY, b"m" * (SMALL_MAX_SIZE + 1)),
                    _fragments(b"m" * 400, b"m" * 400, b"m" * 400, opcode=BINARY)]
        for data in oversize:
            with RawClient(target.host, target.port) as client:
                client.handshake()
                client.send(data)
                assert client.read_close() == "close 1009"
        with RawClient(target.host, target.port) as client:
            client.handshake()
            with contextlib.suppress(OSError):  # the server may stop reading mid-frame
                client.send(encode_frame(BINARY, b"m" * (1 << 20)))
            time.sleep(0.3)  # a client busy elsewhere: the server is done before it reads
            assert client.read_close() == "close 1009"
        stats = target.wait_stats(lambda s: s["oversize_closed"] >= 3)
        assert stats["oversize_closed"] == 3
        assert_echo_works(target.host, target.port)


def check_handshake_timeout(spawn, name: str) -> None:
    """--handshake-timeout 1: a silent or half-sent handshake is dropped after ~1 s, while an
    established connection idle for as long stays open."""
    with (spawn.running(name, "--handshake-timeout", "1") as target,
          RawClient(target.host, target.port) as established):
        established.handshake()
        silent = RawClient(target.host, target.port)
        partial = RawClient(target.host, target.port)
        partial.send(handshake_request()[0][:40])
        start = time.monotonic()
        for client in (silent, partial):
            with client:
                client.sock.settimeout(4.0)
                try:
                    while client.sock.recv(4096):
                        pass  # a 408 response is fine; the hang-up is what matters
                except ConnectionResetError:
                    pass
                except TimeoutError:
                    pytest.fail("unfinished handshake still open after 4 s")
                elapsed = time.monotonic() - start
                assert 0.5 <= elapsed <= 3.0, f"dropped after {elapsed:.2f} s"
        established.send(encode_frame(TEXT, b"after the timeout"))
        assert established.read_message().payload == b"after the timeout"


def check_unanswered_close_dropped(spawn, name: str) -> None:
    """--close-timeout 1: a client that never answers the server's close frame (sent for a
    protocol error) nor closes TCP is dropped within ~1 s and leaves /stats `connections`."""
    with spawn.running(name, "--close-timeout", "1") as target:
        with RawClient(target.host, target.port) as silent:
            silent.handshake()
            silent.send(encode_frame(0x3, b""))
            assert silent.read_close(reply=False) == "close 1002"
            stats = target.wait_stats(lambda s: s["connections"] == 0, timeout_s=4)
            assert stats["connections"] == 0, "connection still held 4 s after its close"
        assert_echo_works(target.host, target.port)


def check_silent_clients_do_not_block_shutdown(spawn, name: str) -> None:
    """--close-timeout 1: SIGTERM still ends the server with exit 0 within the stop limit while
    clients ignore its close frames, one after a protocol error and one after the 1001."""
    target = spawn.launch(name, "--close-timeout", "1")
    try:
        with RawClient(target.host, target.port) as failed, \
                RawClient(target.host, target.port) as idle:
            failed.handshake()
            idle.handshake()
            failed.send(encode_frame(0x3, b""))
            assert failed.read_close(reply=False) == "close 1002"
            target.process.send_signal(signal.SIGTERM)
            assert idle.read_close(reply=False) == "close 1001"
            spawn.stop(target, send=False)  # fails unless it exits 0 in time
    finally:
        if target.process.poll() is None:
            spawn.kill_tree(target.process)
            target.process.wait()


def _read_messages(client: RawClient, count: int, into: list[bytes]) -> None:
    with contextlib.suppress(Exception):
        while len(into) < count:
            into.append(client.read_message(timeout=20).payload)


def check_slow_consumer(spawn, name: str) -> None:
    """--max-queue 65536: a /broadcast member that never reads is closed with 1008 (or reset)
    and counted once in slow_consumers_dropped, while a reading member gets every message."""
    # The publisher waits for its own copy of each message before sending the next, so members
    # that read keep up whatever the machine's speed; the silent one falls 4 MiB behind: far
    # past the queue bound plus what kernel buffers hold with its 4 KiB receive buffer.
    count, size = 1024, 4096
    with spawn.running(name, "--max-queue", "65536") as target:
        path = f"/broadcast?room=slow-{uuid.uuid4().hex}"
        slow = RawClient(target.host, target.port, rcvbuf=4096)
        normal = RawClient(target.host, target.port)
        publisher = RawClient(target.host, target.port)
        with slow, normal, publisher:
            for client in (slow, normal, publisher):
                client.handshake(path)
            got_normal: list[bytes] = []
            reader = threading.Thread(target=_read_messages, args=(normal, count, got_normal),
                                      daemon=True)
            reader.start()
            messages = [struct.pack("!I", i) + b"s" * (size - 4) for i in range(count)]
            for i, message in enumerate(messages):
                publisher.send(encode_frame(BINARY, message))
                echoed = publisher.read_message(timeout=10)
                assert echoed.opcode == BINARY, f"publisher closed at message {i}: {echoed}"
                assert echoed.payload == message, f"publisher got a wrong message at {i}"
            reader.join(20)
            assert len(got_normal) == count, f"reading member got {len(got_normal)}/{count}"
            assert got_normal == messages, "reading member got messages changed or reordered"
            outcome = slow.read_close(timeout=10)
            assert outcome in ("close 1008", "reset"), f"slow consumer: {outcome}"
        stats = target.wait_stats(lambda s: s["slow_consumers_dropped"] >= 1)
        assert stats["slow_consumers_dropped"] == 1
        assert_echo_works(target.host, target.port)


# --- the raw target --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(spawn):
    """One raw target for the module."""
    with spawn.running("raw") as target:
        yield target


@pytest.mark.parametrize("case", FRAME_CASES, ids=lambda c: c.id)
def test_bad_frame_gets_rfc_close_code(raw, case):
    """A protocol violation in a frame is answered with the close code RFC 6455 requires."""
    assert observe_frame_case(raw.host, raw.port, case) == case.rfc
    assert_echo_works(raw.host, raw.port)


@pytest.mark.parametrize("case", HANDSHAKE_CASES, ids=lambda c: c.id)
def test_bad_handshake_gets_rfc_status(raw, case):
    """A broken opening handshake is refused with the HTTP status RFC 6455 implies."""
    response = observe_handshake_case(raw.host, raw.port, case)
    assert isinstance(response, HttpResponse), f"no HTTP response: {response}"
    assert response.status == case.rfc
    assert_echo_works(raw.host, raw.port)


def test_wrong_version_names_supported_version(raw):
    """A 426 for a wrong Sec-WebSocket-Version carries `Sec-WebSocket-Version: 13`."""
    response = observe_handshake_case(raw.host, raw.port, HANDSHAKE_CASES[2])
    assert isinstance(response, HttpResponse)
    assert (response.status, response.headers.get("sec-websocket-version")) == (426, "13")


def test_utf8_character_split_across_fragments_is_valid(raw):
    """A multi-byte character split between two fragments is reassembled and echoed."""
    with RawClient(raw.host, raw.port) as client:
        client.handshake()
        text = "split € here 😀".encode()
        client.send(_fragments(text[:7], text[7:13], text[13:]))
        assert client.read_message() == Frame(True, TEXT, text)


def test_control_frames_between_fragments_are_allowed(raw):
    """A ping between the fragments of a message is answered and the message still echoes."""
    with RawClient(raw.host, raw.port) as client:
        client.handshake()
        client.send(encode_frame(BINARY, b"one", fin=False) + encode_frame(PING, b"p")
                    + encode_frame(CONT, b"two"))
        assert client.read_frame() == Frame(True, PONG, b"p")
        assert client.read_message() == Frame(True, BINARY, b"onetwo")


def test_max_size_closes_1009(spawn):
    """A message over --max-size, in one frame or in fragments, gets close 1009."""
    check_max_size(spawn, "raw")


def test_unfinished_handshake_dropped(spawn):
    """A handshake not finished within --handshake-timeout is dropped; open connections stay."""
    check_handshake_timeout(spawn, "raw")


def test_unanswered_close_dropped(spawn):
    """A client that never answers the server's close frame is dropped after --close-timeout."""
    check_unanswered_close_dropped(spawn, "raw")


def test_silent_clients_do_not_block_shutdown(spawn):
    """SIGTERM ends the server (exit 0) even when clients never answer its close frames."""
    check_silent_clients_do_not_block_shutdown(spawn, "raw")


def test_slow_broadcast_consumer_closed_1008(spawn):
    """A member whose backlog passes --max-queue is closed 1008; the others get every message."""
    check_slow_consumer(spawn, "raw")
