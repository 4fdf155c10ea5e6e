"""The client's lean frame reader and writer, over a socket pair standing in for a server."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from scenarios.connection import WsConnection
from scenarios.failures import ConnectionClosed, ConnectionLost, ProtocolViolation
from scenarios.frames import mask


def server_frame(first_byte: int, payload: bytes) -> bytes:
    """An unmasked frame as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first_byte, 126, n) + payload
    return struct.pack("!BBQ", first_byte, 127, n) + payload


def read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(first byte, unmasked payload) of one frame the client sent; asserts it was masked."""
    head = _exactly(sock, 2)
    assert head[1] & 0x80, "client frames must be masked"
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", _exactly(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _exactly(sock, 8))[0]
    key = _exactly(sock, 4)
    return head[0], mask(_exactly(sock, n), key)


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "peer closed"
        data += chunk
    return data


@pytest.fixture
def pair():
    client, server = socket.socketpair()
    client.settimeout(5)
    server.settimeout(5)
    yield WsConnection(client), server
    client.close()
    server.close()


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 300_000])
def test_sent_messages_are_masked_and_read_back(pair, size):
    """Binary messages of every length encoding go out masked and come back whole."""
    ws, server = pair
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sent: list[tuple[int, bytes]] = []
    reader = threading.Thread(target=lambda: sent.append(read_client_frame(server)))
    reader.start()  # large frames fill the socket buffer: read while the client writes
    ws.send_binary(payload)
    reader.join(5)
    assert sent == [(0x82, payload)]
    writer = threading.Thread(target=server.sendall, args=(server_frame(0x82, payload),))
    writer.start()
    assert ws.recv() == payload
    writer.join(5)


def test_several_frames_in_one_read_are_returned_one_by_one(pair):
    """Frames that arrive together (pipelined echoes, fast pushes) are each returned."""
    ws, server = pair
    server.sendall(b"".join(server_frame(0x82, bytes([i]) * i) for i in range(1, 40)))
    assert [ws.recv() for _ in range(1, 40)] == [bytes([i]) * i for i in range(1, 40)]


def test_fragmented_message_is_reassembled_and_pings_answered(pair):
    """A message in three fragments with a ping between them: one message, one pong."""
    ws, server = pair
    server.sendall(
        server_frame(0x01, b"hel")
        + server_frame(0x89, b"are you there")
        + server_frame(0x00, b"lo ")
        + server_frame(0x80, b"world")
    )
    assert ws.recv() == b"hello world"
    assert read_client_frame(server) == (0x8A, b"are you there")


def test_close_frame_raises_with_code_and_reason_and_is_answered(pair):
    """A server close (1011) surfaces as ConnectionClosed(1011, reason) and is echoed."""
    ws, server = pair
    server.sendall(server_frame(0x88, struct.pack("!H", 1011) + b"overloaded"))
    with pytest.raises(ConnectionClosed) as caught:
        ws.recv()
    assert (caught.value.code, caught.value.reason) == (1011, "overloaded")
    first, payload = read_client_frame(server)
    assert first == 0x88 and struct.unpack("!H", payload[:2])[0] == 1011


def test_close_without_status_is_answered_with_1000(pair):
    """A close frame with no code (1005 never goes on the wire) is echoed as 1000."""
    ws, server = pair
    server.sendall(server_frame(0x88, b""))
    with pytest.raises(ConnectionClosed) as caught:
        ws.recv()
    assert caught.value.code == 1005
    first, payload = read_client_frame(server)
    assert first == 0x88 and struct.unpack("!H", payload[:2])[0] == 1000


def test_masked_server_frame_is_a_protocol_violation(pair):
    """RFC 6455 §5.1: a client must fail a connection on a masked frame from the server."""
    ws, server = pair
    server.sendall(bytes((0x82, 0x80 | 3)) + b"abcd" + b"xyz")
    with pytest.raises(ProtocolViolation):
        ws.recv()


def test_eof_without_close_frame_is_connection_lost(pair):
    """The server vanishing mid-frame is ConnectionLost, not a hang or a bogus message."""
    ws, server = pair
    server.sendall(bytes((0x82, 10)) + b"abc")
    server.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionLost):
        ws.recv()


def test_pong_is_awaited_for_a_ping(pair):
    """ping() then recv_pong() returns once the pong arrives, skipping data messages."""
    ws, server = pair
    ws.ping(b"p")
    assert read_client_frame(server) == (0x89, b"p")
    server.sendall(server_frame(0x82, b"data") + server_frame(0x8A, b"p"))
    ws.recv_pong()


def test_frame_pool_frames_unmask_to_the_payload_each_with_its_own_key():
    """Pooled frames carry the payload under a fresh key each, like client_frame's."""
    from scenarios.frames import FramePool, mask

    pool = FramePool(0x82, b"hello, pool")
    frames = [pool.next() for _ in range(FramePool.POOL_FRAMES + 10)]  # across a refill
    assert len(set(frames)) == len(frames)
    for frame in frames[:5] + frames[-5:]:
        assert frame[0] == 0x82 and frame[1] == 0x80 | 11
        key = frame[2:6]
        assert mask(frame[6:], key) == b"hello, pool"
    assert len({frame[2:6] for frame in frames}) > 0.99 * len(frames)
