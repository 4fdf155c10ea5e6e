"""ServerConnection: messages out of client bytes, control frames, failures and closing."""

from __future__ import annotations

import pytest

from targets.rfc6455 import (
    InvalidPayload,
    MessageTooBig,
    Opcode,
    ProtocolError,
    ServerConnection,
    State,
    serialize_frame,
)

MASK = bytes.fromhex("37fa213d")


def client(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame with the fixed test mask."""
    return serialize_frame(opcode, payload, fin=fin, mask=MASK, rsv=rsv)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def server_frames(conn: ServerConnection) -> list[tuple[int, bytes]]:
    """Decode the (unmasked) frames the connection queued, as (opcode, payload)."""
    frames = []
    for frame in conn.data_to_send():
        assert frame[0] & 0x80, "server frames are never fragmented"
        assert not frame[1] & 0x80, "server frames are never masked"
        n = frame[1] & 0x7F
        start = 2
        if n == 126:
            n, start = int.from_bytes(frame[2:4], "big"), 4
        elif n == 127:
            n, start = int.from_bytes(frame[2:10], "big"), 10
        assert len(frame) == start + n, "one complete frame per item"
        frames.append((frame[0] & 0x0F, frame[start:]))
    return frames


def sent_close_code(conn: ServerConnection) -> int:
    """The code of the single close frame the connection queued."""
    frames = server_frames(conn)
    assert len(frames) == 1
    opcode, payload = frames[0]
    assert opcode == Opcode.CLOSE
    return int.from_bytes(payload[:2], "big")


# -- messages ---------------------------------------------------------------------------------


def test_single_frames_become_messages() -> None:
    """Text and binary frames in one chunk come back as messages, in order."""
    conn = ServerConnection()
    data = client(Opcode.TEXT, b"hi") + client(Opcode.BINARY, b"\x00\xff") + client(Opcode.TEXT)
    assert conn.receive_data(data) == [
        (Opcode.TEXT, b"hi"),
        (Opcode.BINARY, b"\x00\xff"),
        (Opcode.TEXT, b""),
    ]
    assert conn.data_to_send() == []
    assert conn.state is State.OPEN


@pytest.mark.parametrize("length", [125, 126, 65535, 65536])
def test_large_frames_become_messages(length: int) -> None:
    """Frames with 16- and 64-bit lengths are received whole."""
    payload = bytes(i % 256 for i in range(length))
    assert ServerConnection().receive_data(client(Opcode.BINARY, payload)) == [
        (Opcode.BINARY, payload)
    ]


def test_non_ascii_text_single_frame() -> None:
    """A valid non-ASCII UTF-8 text frame is accepted."""
    text = "κόσμε €𝄞".encode()
    assert ServerConnection().receive_data(client(Opcode.TEXT, text)) == [(Opcode.TEXT, text)]


def test_fragmented_message_reassembled() -> None:
    """TEXT(fin=0) + CONT + CONT(fin=1) is delivered as one message after the last fragment."""
    conn = ServerConnection()
    assert conn.receive_data(client(Opcode.TEXT, b"Hel", fin=False)) == []
    assert conn.receive_data(client(Opcode.CONT, b"l", fin=False)) == []
    assert conn.receive_data(client(Opcode.CONT, b"o")) == [(Opcode.TEXT, b"Hello")]
    assert conn.receive_data(client(Opcode.BINARY, b"next")) == [(Opcode.BINARY, b"next")]


def test_multibyte_char_split_across_fragments() -> None:
    """A UTF-8 character split over fragment boundaries is valid text."""
    euro, clef = "€".encode(), "𝄞".encode()
    data = (
        client(Opcode.TEXT, euro[:1], fin=False)
        + client(Opcode.CONT, euro[1:] + clef[:2], fin=False)
        + client(Opcode.CONT, clef[2:3], fin=False)
        + client(Opcode.CONT, clef[3:])
    )
    conn = ServerConnection()
    assert conn.receive_data(data) == [(Opcode.TEXT, euro + clef)]
    assert conn.failed is None


def test_ping_inside_fragmented_message() -> None:
    """A ping between fragments is answered with a pong and the message still reassembles."""
    conn = ServerConnection()
    data = (
        client(Opcode.BINARY, b"ab", fin=False)
        + client(Opcode.PING, b"are you there")
        + client(Opcode.CONT, b"cd")
    )
    assert conn.receive_data(data) == [(Opcode.BINARY, b"abcd")]
    assert server_frames(conn) == [(Opcode.PONG, b"are you there")]


def test_pong_counted_not_answered() -> None:
    """An unsolicited pong is counted and produces no output."""
    conn = ServerConnection()
    assert conn.receive_data(client(Opcode.PONG, b"x") + client(Opcode.PONG)) == []
    assert conn.pongs_received == 2
    assert conn.data_to_send() == []


def test_message_at_exact_limit_accepted() -> None:
    """A message of exactly max_message_bytes, whole or fragmented, is accepted."""
    conn = ServerConnection(max_message_bytes=200)
    data = client(Opcode.BINARY, b"a" * 200)
    data += client(Opcode.BINARY, b"b" * 100, fin=False) + client(Opcode.CONT, b"c" * 100)
    assert conn.receive_data(data) == [
        (Opcode.BINARY, b"a" * 200),
        (Opcode.BINARY, b"b" * 100 + b"c" * 100),
    ]
    assert conn.failed is None


def stream() -> bytes:
    """A mix of every frame kind the fast and slow paths handle."""
    return b"".join(
        [
            client(Opcode.TEXT, b"small"),
            client(Opcode.BINARY, bytes(range(256)) * 3),
            client(Opcode.TEXT, "x€y".encode()[:2], fin=False),
            client(Opcode.PING, b"p"),
            client(Opcode.CONT, "x€y".encode()[2:]),
            client(Opcode.BINARY, b"z" * 70000),
            client(Opcode.PONG),
            client(Opcode.BINARY),
            client(Opcode.CLOSE, close_payload(1000, b"done")),
        ]
    )


def test_byte_at_a_time_same_result() -> None:
    """Feeding the stream one byte at a time gives the same messages and output as one chunk."""
    whole = ServerConnection()
    expected = whole.receive_data(stream())
    expected_out = whole.data_to_send()
    assert [op for op, _ in expected] == [Opcode.TEXT, Opcode.BINARY, Opcode.TEXT] + [
        Opcode.BINARY
    ] * 2
    assert expected[2] == (Opcode.TEXT, "x€y".encode())

    trickle = ServerConnection()
    got = []
    data = stream()
    for i in range(len(data)):
        got += trickle.receive_data(data[i : i + 1])
    assert got == expected
    assert trickle.data_to_send() == expected_out
    assert trickle.state is State.CLOSED
    assert (trickle.close_code, trickle.close_reason) == (1000, "done")


@pytest.mark.parametrize("chunk", [2, 3, 7, 100, 4096])
def test_chunked_same_result(chunk: int) -> None:
    """Feeding the stream in fixed-size chunks gives the same messages as one chunk."""
    expected = ServerConnection().receive_data(stream())
    conn = ServerConnection()
    data = stream()
    got = []
    for i in range(0, len(data), chunk):
        got += conn.receive_data(data[i : i + chunk])
    assert got == expected


def test_bytearray_input_not_retained() -> None:
    """A partial frame fed from a caller's bytearray survives the caller reusing that buffer."""
    conn = ServerConnection()
    frame = client(Opcode.BINARY, b"abcdef")
    buf = bytearray(frame[:5])
    assert conn.receive_data(buf) == []
    buf[:] = b"\x00" * 5
    assert conn.receive_data(frame[5:]) == [(Opcode.BINARY, b"abcdef")]


# -- failures ---------------------------------------------------------------------------------

BAD_INPUT = [
    pytest.param(serialize_frame(Opcode.TEXT, b"x"), 1002, id="unmasked"),
    pytest.param(client(Opcode.TEXT, b"x", rsv=4), 1002, id="rsv1"),
    pytest.param(client(Opcode.TEXT, b"x", rsv=2), 1002, id="rsv2"),
    pytest.param(client(Opcode.TEXT, b"x", rsv=1), 1002, id="rsv3"),
    *(
        pytest.param(client(op, b"x"), 1002, id=f"opcode-{op:#x}")
        for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]
    ),
    pytest.param(client(Opcode.CONT, b"x"), 1002, id="cont-without-start"),
    pytest.param(
        client(Opcode.TEXT, b"a", fin=False) + client(Opcode.TEXT, b"b"),
        1002,
        id="text-inside-fragmented",
    ),
    pytest.param(
        client(Opcode.BINARY, b"a", fin=False) + client(Opcode.BINARY, b"b", fin=False),
        1002,
        id="binary-inside-fragmented",
    ),
    pytest.param(client(Opcode.PING, b"x" * 126), 1002, id="ping-over-125"),
    pytest.param(client(Opcode.CLOSE, close_payload(1000, b"x" * 124)), 1002, id="close-126"),
    pytest.param(client(Opcode.PING, b"x", fin=False), 1002, id="fragmented-ping"),
    pytest.param(bytes.fromhex("82ff8000000000000000") + MASK, 1002, id="length-msb"),
    pytest.param(client(Opcode.TEXT, b"\xff"), 1007, id="utf8-single"),
    pytest.param(client(Opcode.TEXT, b"a\xed\xa0\x80b"), 1007, id="utf8-surrogate"),
    pytest.param(
        client(Opcode.TEXT, b"\xce", fin=False) + client(Opcode.CONT, b"A"),
        1007,
        id="utf8-across-fragments",
    ),
    pytest.param(
        client(Opcode.TEXT, b"ok", fin=False) + client(Opcode.CONT, b"\xe2\x82"),
        1007,
        id="utf8-truncated-at-end",
    ),
    pytest.param(client(Opcode.CLOSE, close_payload(1000, b"\xff")), 1007, id="close-reason"),
    pytest.param(client(Opcode.CLOSE, b"\x03"), 1002, id="close-1-byte"),
    *(
        pytest.param(client(Opcode.CLOSE, close_payload(code)), 1002, id=f"close-{code}")
        for code in [999, 1004, 1005, 1006, 1015, 2000]
    ),
]


@pytest.mark.parametrize(("data", "code"), BAD_INPUT)
def test_bad_input_fails_with_close_code(data: bytes, code: int) -> None:
    """Each protocol violation queues one close frame with its code and ends the connection."""
    conn = ServerConnection()
    before = client(Opcode.TEXT, b"before")
    after = client(Opcode.TEXT, b"after")
    assert conn.receive_data(before + data + after) == [(Opcode.TEXT, b"before")]
    assert sent_close_code(conn) == code
    assert conn.state is State.CLOSED
    assert conn.close_transport
    assert isinstance(conn.failed, ProtocolError)
    assert conn.failed.close_code == code
    assert conn.close_code is None
    assert conn.receive_data(after) == []
    assert conn.data_to_send() == []


@pytest.mark.parametrize(("data", "code"), BAD_INPUT)
def test_bad_input_fails_byte_at_a_time(data: bytes, code: int) -> None:
    """The same violations fed one byte at a time fail with the same code."""
    conn = ServerConnection()
    for i in range(len(data)):
        assert conn.receive_data(data[i : i + 1]) == []
    assert sent_close_code(conn) == code


@pytest.mark.parametrize("tail", [b"\xed\xa0", b"\xed\xbf", b"\xf4\x90", b"\xe0\x80", b"\xf5"])
def test_invalid_utf8_caught_before_final_fragment(tail: bytes) -> None:
    """An impossible UTF-8 prefix fails the connection without waiting for the next fragment."""
    conn = ServerConnection()
    conn.receive_data(client(Opcode.TEXT, b"ok" + tail, fin=False))
    assert isinstance(conn.failed, InvalidPayload)
    assert sent_close_code(conn) == 1007


def test_last_non_surrogate_prefix_waits() -> None:
    """ED 9F (the start of U+D7FF) at a fragment end is valid and completes in the next one."""
    conn = ServerConnection()
    assert conn.receive_data(client(Opcode.TEXT, b"\xed\x9f", fin=False)) == []
    assert conn.failed is None
    assert conn.receive_data(client(Opcode.CONT, b"\xbf")) == [(Opcode.TEXT, "\ud7ff".encode())]


def test_declared_length_over_limit_fails_at_once() -> None:
    """A frame header declaring more than max_message_bytes fails before its payload arrives."""
    conn = ServerConnection(max_message_bytes=1000)
    header = bytes.fromhex("82fe03e9") + MASK  # 1001 bytes declared, none sent
    assert conn.receive_data(header) == []
    assert isinstance(conn.failed, MessageTooBig)
    assert sent_close_code(conn) == 1009


def test_huge_64bit_length_fails_at_once() -> None:
    """A 64-bit declared length of 1 TiB is refused from the header alone."""
    conn = ServerConnection()
    assert conn.receive_data(b"\x82\xff" + (1 << 40).to_bytes(8, "big")) == []
    assert sent_close_code(conn) == 1009


def test_small_frame_over_small_limit() -> None:
    """A 7-bit-length frame over a small max_message_bytes fails with 1009."""
    conn = ServerConnection(max_message_bytes=10)
    assert conn.receive_data(client(Opcode.TEXT, b"x" * 11)) == []
    assert sent_close_code(conn) == 1009


def test_fragments_accumulating_over_limit() -> None:
    """Fragments that together pass max_message_bytes fail with 1009 as soon as they do."""
    conn = ServerConnection(max_message_bytes=100)
    assert conn.receive_data(client(Opcode.BINARY, b"a" * 60, fin=False)) == []
    assert conn.failed is None
    # The second fragment's header alone already proves the total is over the limit.
    assert conn.receive_data(client(Opcode.CONT, b"b" * 60, fin=False)[:6]) == []
    assert isinstance(conn.failed, MessageTooBig)
    assert sent_close_code(conn) == 1009


def test_error_while_closing_sends_no_second_close() -> None:
    """A violation after we started closing ends the connection without another close frame."""
    conn = ServerConnection()
    conn.send_close(1001)
    conn.data_to_send()
    conn.receive_data(client(Opcode.TEXT, b"\xff"))
    assert conn.state is State.CLOSED
    assert conn.close_transport
    assert conn.data_to_send() == []


# -- closing ----------------------------------------------------------------------------------


def test_client_initiated_close() -> None:
    """A client close is answered with its code, recorded, and ends the connection."""
    conn = ServerConnection()
    data = client(Opcode.CLOSE, close_payload(1001, "bye ☃".encode()))
    data += client(Opcode.TEXT, b"ignored")
    assert conn.receive_data(data) == []
    assert server_frames(conn) == [(Opcode.CLOSE, close_payload(1001))]
    assert conn.state is State.CLOSED
    assert conn.close_transport
    assert (conn.close_code, conn.close_reason) == (1001, "bye ☃")
    assert conn.failed is None


def test_client_close_without_status() -> None:
    """An empty close payload is answered with an empty close and recorded as 1005."""
    conn = ServerConnection()
    assert conn.receive_data(client(Opcode.CLOSE)) == []
    assert server_frames(conn) == [(Opcode.CLOSE, b"")]
    assert (conn.close_code, conn.close_reason) == (1005, "")


def test_server_initiated_close() -> None:
    """send_close moves to CLOSING; the client's close completes it without a second close."""
    conn = ServerConnection()
    conn.send_close(1001, "going away")
    assert conn.state is State.CLOSING
    assert not conn.close_transport
    assert server_frames(conn) == [(Opcode.CLOSE, close_payload(1001, b"going away"))]
    # Data still in flight from the client is delivered; our replies are dropped.
    assert conn.receive_data(client(Opcode.TEXT, b"late")) == [(Opcode.TEXT, b"late")]
    conn.send_message(Opcode.TEXT, b"echo")
    conn.send_ping()
    conn.receive_data(client(Opcode.PING, b"p"))
    assert conn.data_to_send() == []
    conn.receive_data(client(Opcode.CLOSE, close_payload(1001)))
    assert conn.state is State.CLOSED
    assert conn.close_transport
    assert conn.close_code == 1001
    assert conn.data_to_send() == []


def test_send_close_twice_sends_once() -> None:
    """A second send_close is ignored."""
    conn = ServerConnection()
    conn.send_close()
    conn.send_close(1011)
    assert server_frames(conn) == [(Opcode.CLOSE, close_payload(1000))]


# -- sending ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_send_message_unmasked_frames(length: int) -> None:
    """send_message queues one unmasked frame per message with the right opcode."""
    conn = ServerConnection()
    payload = b"m" * length
    conn.send_message(Opcode.BINARY, payload)
    conn.send_message(Opcode.TEXT, b"t")
    assert server_frames(conn) == [(Opcode.BINARY, payload), (Opcode.TEXT, b"t")]


def test_send_message_matches_rfc_vector() -> None:
    """send_message of text "Hello" produces the RFC 6455 §5.7 unmasked bytes."""
    conn = ServerConnection()
    conn.send_message(Opcode.TEXT, b"Hello")
    assert conn.data_to_send() == [bytes.fromhex("810548656c6c6f")]


def test_send_message_rejects_control_opcode() -> None:
    """send_message refuses a control opcode."""
    with pytest.raises(ValueError):
        ServerConnection().send_message(Opcode.PING, b"")


def test_send_ping() -> None:
    """send_ping queues a ping; a payload over 125 bytes is refused."""
    conn = ServerConnection()
    conn.send_ping(b"123")
    assert server_frames(conn) == [(Opcode.PING, b"123")]
    with pytest.raises(ValueError):
        conn.send_ping(b"x" * 126)


def test_data_to_send_clears() -> None:
    """data_to_send returns each queued frame once."""
    conn = ServerConnection()
    conn.send_message(Opcode.TEXT, b"a")
    assert len(conn.data_to_send()) == 1
    assert conn.data_to_send() == []


def test_connection_is_small() -> None:
    """An idle connection has no instance dict (slots keep 5,000 idle connections cheap)."""
    conn = ServerConnection()
    assert not hasattr(conn, "__dict__")
