"""The client's permessage-deflate: the answer it accepts, and messages both ways checked
against the websockets library's own RFC 7692 implementation as the server."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from test_scenarios_frames import read_client_frame
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from scenarios.connection import WsConnection
from scenarios.deflate import Deflate, DeflateParams, agreed
from scenarios.failures import ProtocolViolation
from scenarios.frames import FIN, OP_BINARY, OP_CONT, OP_PING, OP_TEXT, RSV1, ServerFrames
from scenarios.payloads import POOL_BYTES, Messages, pool

TEXT = b"the quick brown fox jumps over the lazy dog " * 20


def server_frame(first_byte: int, payload: bytes) -> bytes:
    """An unmasked frame as a server sends it (payloads under 64 KiB)."""
    n = len(payload)
    head = bytes((first_byte, n)) if n < 126 else struct.pack("!BBH", first_byte, 126, n)
    return head + payload


def library_server(params: DeflateParams) -> PerMessageDeflate:
    """websockets' server side of the agreement `params` describe."""
    return PerMessageDeflate(
        remote_no_context_takeover=params.client_no_context_takeover,
        local_no_context_takeover=params.server_no_context_takeover,
        remote_max_window_bits=params.client_max_window_bits,
        local_max_window_bits=params.server_max_window_bits,
    )


class _Reader(ServerFrames):
    __slots__ = ("sent",)

    def __init__(self, deflate: Deflate | None) -> None:
        super().__init__()
        self.deflate = deflate
        self.sent: list[bytes] = []

    def answer(self, frame: bytes) -> None:
        self.sent.append(frame)


def test_agreed_reads_the_servers_answer():
    """No answer is a decline; parameters, quoted or not, in any case, are read as agreed."""
    assert agreed(None) is None
    assert agreed("  ") is None
    assert agreed("permessage-deflate") == DeflateParams()
    found = agreed('Permessage-Deflate; server_max_window_bits="12"; client_max_window_bits=10;'
                   " server_no_context_takeover; CLIENT_NO_CONTEXT_TAKEOVER")
    assert found == DeflateParams(True, True, 12, 10)


@pytest.mark.parametrize("header", [
    "x-webkit-deflate-frame",
    "permessage-deflate, permessage-deflate",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=8",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; mystery",
    "permessage-deflate;",
])  # fmt: skip
def test_agreed_refuses_what_rfc_7692_forbids(header):
    """An extension not offered, twice, a bad or unknown parameter: the connection fails."""
    with pytest.raises(ProtocolViolation):
        agreed(header)


@pytest.mark.parametrize("params", [
    DeflateParams(),
    DeflateParams(client_no_context_takeover=True),
    DeflateParams(server_max_window_bits=12, client_max_window_bits=12),
    DeflateParams(True, True, 9, 9),
])  # fmt: skip
def test_messages_round_trip_with_the_library(params):
    """Ours compressed, the library inflates; the library's compressed, ours inflates; over
    several messages, so a context kept (or not) across them must match on both sides."""
    ours, theirs = Deflate(params), library_server(params)
    messages = [TEXT, TEXT, os.urandom(300), b"", TEXT[:7], TEXT * 3]
    for message in messages:
        data = ours.compress(message)
        assert not data.endswith(b"\x00\x00\xff\xff")
        frame = theirs.decode(Frame(Opcode.BINARY, data, rsv1=True))
        assert frame.data == message
        reply = theirs.encode(Frame(Opcode.BINARY, message))
        assert reply.rsv1
        assert ours.decompress(reply.data) == message


def test_context_takeover_shrinks_a_repeated_message():
    """With context takeover a repeat costs a back-reference; without, the whole again."""
    kept, fresh = Deflate(DeflateParams()), Deflate(DeflateParams(client_no_context_takeover=True))
    first = kept.compress(TEXT)
    assert len(kept.compress(TEXT)) < len(first) // 4
    fresh.compress(TEXT)
    assert fresh.compress(TEXT) == first


def test_a_compressed_frame_is_inflated_off_the_fast_path():
    """0xC2 (FIN, RSV1, binary) and 0xC1 (text) come out as the messages that were sent."""
    params = DeflateParams()
    reader, server = _Reader(Deflate(params)), library_server(params)
    for opcode, first in ((Opcode.BINARY, FIN | RSV1 | OP_BINARY),
                          (Opcode.TEXT, FIN | RSV1 | OP_TEXT)):  # fmt: skip
        frame = server.encode(Frame(opcode, TEXT))
        assert reader.other_frame(first, frame.data, 0) == TEXT


def test_a_fragmented_compressed_message_is_inflated_once_whole():
    """RSV1 on the first fragment only; the continuations joined, then inflated; and a
    following uncompressed fragmented message is left as it is."""
    params = DeflateParams()
    reader, server = _Reader(Deflate(params)), library_server(params)
    data = server.encode(Frame(Opcode.BINARY, TEXT)).data
    third = len(data) // 3
    assert reader.other_frame(RSV1 | OP_BINARY, data[:third], 0) is None
    assert reader.other_frame(OP_CONT, data[third:2 * third], 0) is None
    assert reader.other_frame(FIN | OP_CONT, data[2 * third:], 0) == TEXT
    assert reader.other_frame(OP_BINARY, b"plain ", 0) is None
    assert reader.other_frame(FIN | OP_CONT, b"bytes", 0) == b"plain bytes"
    # The context goes on: the next compressed message still inflates.
    again = server.encode(Frame(Opcode.BINARY, TEXT)).data
    assert reader.other_frame(FIN | RSV1 | OP_BINARY, again, 0) == TEXT


@pytest.mark.parametrize("first", [FIN | RSV1 | OP_CONT, FIN | RSV1 | OP_PING,
                                   FIN | 0x20 | OP_TEXT])  # fmt: skip
def test_reserved_bits_where_deflate_does_not_allow_them(first):
    """RSV1 on a continuation or control frame, or RSV2 at all, fails the connection."""
    reader = _Reader(Deflate(DeflateParams()))
    reader._parts = [b""] if first & 0x0F == OP_CONT else None
    with pytest.raises(ProtocolViolation):
        reader.other_frame(first, b"", 0)


def test_rsv1_without_deflate_is_still_a_violation():
    """A server that compresses what was never negotiated is caught as before."""
    with pytest.raises(ProtocolViolation, match="reserved bits"):
        _Reader(None).other_frame(FIN | RSV1 | OP_BINARY, b"\x02\x00", 0)


def test_a_garbled_compressed_message_is_a_protocol_violation():
    """Bytes that do not inflate fail the connection, with a reason."""
    with pytest.raises(ProtocolViolation, match="bad compressed message"):
        _Reader(Deflate(DeflateParams())).other_frame(FIN | RSV1 | OP_BINARY, b"\xff\xff\xff", 0)


def test_connection_sends_compressed_frames_and_reads_compressed_replies():
    """On a socket: send_binary masks a RSV1 frame the library inflates; the library's
    compressed echo comes back from recv() inflated; without deflate nothing changes."""
    params = DeflateParams(server_max_window_bits=12, client_max_window_bits=12)
    client_sock, server_sock = socket.socketpair()
    with client_sock, server_sock:
        conn = WsConnection(client_sock)
        conn.deflate, server = Deflate(params), library_server(params)
        for message in (TEXT, TEXT, os.urandom(200)):
            conn.send_binary(message)
            first, payload = read_client_frame(server_sock)
            assert first == FIN | RSV1 | OP_BINARY
            assert server.decode(Frame(Opcode.BINARY, payload, rsv1=True)).data == message
            server_sock.sendall(server_frame(FIN | RSV1 | OP_BINARY,
                                             server.encode(Frame(Opcode.BINARY, message)).data))
            assert conn.recv() == message
        plain = WsConnection(client_sock)
        plain.send_binary(TEXT)
        assert read_client_frame(server_sock) == (FIN | OP_BINARY, TEXT)


def test_payload_pools_are_distinct_and_span_the_largest_window():
    """text and random pools hold distinct messages of the exact size, more than 32 KiB in
    all; x is the one repeated payload; text frames' random payload is ASCII."""
    assert pool("x", 10, False) == (b"x" * 10,)
    for content in ("text", "random"):
        payloads = pool(content, 100, content == "random")
        assert {len(p) for p in payloads} == {100}
        assert len(set(payloads)) > len(payloads) * 0.9
        assert sum(map(len, payloads)) >= POOL_BYTES
    assert all(p.isascii() for p in pool("random", 50, True))
    messages = Messages("text", 64, False)
    seen = [messages.next() for _ in range(len(messages.payloads) + 1)]
    assert seen[0] == seen[-1] and len(set(seen[:-1])) == len(set(messages.payloads))
