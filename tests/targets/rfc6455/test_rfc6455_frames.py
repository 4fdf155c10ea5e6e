"""Frame encoding and decoding: RFC 6455 §5.7 byte vectors and round trips with fixed masks."""

from __future__ import annotations

import os

import pytest

from targets.rfc6455 import (
    InvalidPayload,
    MessageTooBig,
    Opcode,
    ProtocolError,
    apply_mask,
    decode_close,
    encode_close,
    parse_frame,
    serialize_frame,
)

MASK = bytes.fromhex("37fa213d")  # the mask of the RFC 6455 §5.7 examples
BIG = 1 << 30


def reference_mask(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


# -- RFC 6455 §5.7 examples -------------------------------------------------------------------


def test_rfc_unmasked_text_hello() -> None:
    """A single-frame unmasked text "Hello" is 81 05 48 65 6c 6c 6f."""
    assert serialize_frame(Opcode.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")


def test_rfc_masked_text_hello_serialize() -> None:
    """A single-frame masked text "Hello" is 81 85 37 fa 21 3d 7f 9f 4d 51 58."""
    frame = serialize_frame(Opcode.TEXT, b"Hello", mask=MASK)
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


def test_rfc_masked_text_hello_parse() -> None:
    """Parsing the masked "Hello" example yields the unmasked payload and the end position."""
    frame = bytes.fromhex("818537fa213d7f9f4d5158")
    assert parse_frame(frame, 0, BIG) == (True, Opcode.TEXT, b"Hello", 11)


def test_rfc_fragmented_unmasked_text() -> None:
    """Text "Hel" + "lo" fragmented is 01 03 48 65 6c then 80 02 6c 6f."""
    assert serialize_frame(Opcode.TEXT, b"Hel", fin=False) == bytes.fromhex("010348656c")
    assert serialize_frame(Opcode.CONT, b"lo") == bytes.fromhex("80026c6f")


def test_rfc_fragmented_masked_text_parse() -> None:
    """The fragmented example, masked, parses to a non-final TEXT then a final CONT."""
    buf = serialize_frame(Opcode.TEXT, b"Hel", fin=False, mask=MASK)
    buf += serialize_frame(Opcode.CONT, b"lo", mask=MASK)
    first = parse_frame(buf, 0, BIG)
    assert first is not None
    assert first[:3] == (False, Opcode.TEXT, b"Hel")
    assert parse_frame(buf, first[3], BIG) == (True, Opcode.CONT, b"lo", len(buf))


def test_rfc_unmasked_ping() -> None:
    """An unmasked ping carrying "Hello" is 89 05 48 65 6c 6c 6f."""
    assert serialize_frame(Opcode.PING, b"Hello") == bytes.fromhex("890548656c6c6f")


def test_rfc_masked_pong() -> None:
    """A masked pong carrying "Hello" is 8a 85 37 fa 21 3d 7f 9f 4d 51 58 and parses back."""
    frame = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert serialize_frame(Opcode.PONG, b"Hello", mask=MASK) == frame
    assert parse_frame(frame, 0, BIG) == (True, Opcode.PONG, b"Hello", 11)


def test_rfc_256_byte_binary_header() -> None:
    """A 256-byte unmasked binary frame starts 82 7E 01 00."""
    frame = serialize_frame(Opcode.BINARY, bytes(256))
    assert frame[:4] == bytes.fromhex("827e0100")
    assert len(frame) == 4 + 256


def test_rfc_64k_binary_header() -> None:
    """A 64 KiB unmasked binary frame starts 82 7F 00 00 00 00 00 01 00 00."""
    frame = serialize_frame(Opcode.BINARY, bytes(65536))
    assert frame[:10] == bytes.fromhex("827f0000000000010000")
    assert len(frame) == 10 + 65536


# -- length encodings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, "8200"),
        (125, "827d"),
        (126, "827e007e"),
        (65535, "827effff"),
        (65536, "827f0000000000010000"),
    ],
)
def test_length_encoding_is_minimal(length: int, header: str) -> None:
    """Lengths use 7, 16 or 64 bits, whichever is the smallest that fits."""
    frame = serialize_frame(Opcode.BINARY, b"\xab" * length)
    expected = bytes.fromhex(header)
    assert frame[: len(expected)] == expected
    assert len(frame) == len(expected) + length


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536])
def test_masked_round_trip(length: int) -> None:
    """A masked frame of each length class parses back to its payload."""
    payload = bytes(i % 251 for i in range(length))
    frame = serialize_frame(Opcode.BINARY, payload, mask=MASK)
    assert frame[1] & 0x80
    assert parse_frame(frame, 0, BIG) == (True, Opcode.BINARY, payload, len(frame))


@pytest.mark.parametrize("length", [5, 126, 65536])
def test_incomplete_frame_returns_none(length: int) -> None:
    """Every strict prefix of a frame parses as incomplete."""
    frame = serialize_frame(Opcode.BINARY, b"z" * length, mask=MASK)
    cuts = {*range(min(16, len(frame))), len(frame) - 1}
    for cut in sorted(cuts):
        assert parse_frame(frame[:cut], 0, BIG) is None


def test_parse_from_offset() -> None:
    """parse_frame starts at `pos` and returns the position after the frame."""
    first = serialize_frame(Opcode.TEXT, b"one", mask=MASK)
    second = serialize_frame(Opcode.BINARY, b"two", mask=b"\x00\x01\x02\x03")
    buf = bytearray(first + second)
    assert parse_frame(buf, len(first), BIG) == (True, Opcode.BINARY, b"two", len(buf))


# -- invalid frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(serialize_frame(Opcode.BINARY, b"x"), id="unmasked"),
        pytest.param(serialize_frame(Opcode.BINARY, b"x", mask=MASK, rsv=4), id="rsv1"),
        pytest.param(serialize_frame(Opcode.BINARY, b"x", mask=MASK, rsv=2), id="rsv2"),
        pytest.param(serialize_frame(Opcode.BINARY, b"x", mask=MASK, rsv=1), id="rsv3"),
        pytest.param(serialize_frame(0x3, b"x", mask=MASK), id="opcode-3"),
        pytest.param(serialize_frame(0xB, b"x", mask=MASK), id="opcode-B"),
        pytest.param(serialize_frame(Opcode.PING, b"x" * 126, mask=MASK), id="ping-126"),
        pytest.param(serialize_frame(Opcode.PING, b"x", mask=MASK, fin=False), id="ping-nofin"),
        pytest.param(bytes.fromhex("82ff8000000000000000") + MASK, id="length-msb"),
    ],
)
def test_invalid_frame_is_protocol_error(frame: bytes) -> None:
    """Frames breaking §5.2 raise ProtocolError with close code 1002."""
    with pytest.raises(ProtocolError) as info:
        parse_frame(frame, 0, BIG)
    assert info.value.close_code == 1002
    assert type(info.value) is ProtocolError


def test_too_big_rejected_from_header_alone() -> None:
    """A declared length over the limit raises MessageTooBig before any payload arrives."""
    header = bytes.fromhex("82ff") + (1 << 40).to_bytes(8, "big")
    with pytest.raises(MessageTooBig) as info:
        parse_frame(header, 0, 1 << 20)
    assert info.value.close_code == 1009


def test_limit_is_inclusive_and_ignores_control_frames() -> None:
    """A data frame of exactly max_payload passes; control frames are not held to it."""
    data = serialize_frame(Opcode.BINARY, b"x" * 10, mask=MASK)
    assert parse_frame(data, 0, 10) is not None
    ping = serialize_frame(Opcode.PING, b"x" * 10, mask=MASK)
    assert parse_frame(ping, 0, 0) is not None


# -- masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", range(10))
def test_apply_mask_matches_reference_small(length: int) -> None:
    """apply_mask equals a byte-by-byte XOR for lengths 0..9."""
    data = bytes(range(200, 200 + length))
    assert apply_mask(data, MASK) == reference_mask(data, MASK)


@pytest.mark.parametrize("length", [8191, 8192, 8193, 100_003])
def test_apply_mask_matches_reference_large(length: int) -> None:
    """apply_mask equals a byte-by-byte XOR around and above its large-payload switch."""
    data = os.urandom(length)
    assert apply_mask(data, MASK) == reference_mask(data, MASK)


@pytest.mark.parametrize("length", [0, 3, 64, 20_000])
def test_apply_mask_is_an_involution(length: int) -> None:
    """Masking twice with the same key gives the original bytes back."""
    data = os.urandom(length)
    masked = apply_mask(data, MASK)
    assert apply_mask(masked, MASK) == data
    if length:
        assert masked != data


def test_apply_mask_accepts_bytearray() -> None:
    """apply_mask works on bytearray input and returns bytes."""
    result = apply_mask(bytearray(b"Hello"), bytearray(MASK))
    assert result == bytes.fromhex("7f9f4d5158")
    assert type(result) is bytes


# -- close payloads ---------------------------------------------------------------------------


def test_close_round_trip() -> None:
    """encode_close and decode_close invert each other."""
    payload = encode_close(1001, "going away ☃")
    assert payload[:2] == b"\x03\xe9"
    assert decode_close(payload) == (1001, "going away ☃")


def test_close_empty_payload_means_no_status() -> None:
    """An empty close payload decodes as 1005 and 1005 encodes as empty."""
    assert decode_close(b"") == (1005, "")
    assert encode_close(1005) == b""


def test_close_reason_truncated_on_character_boundary() -> None:
    """A long reason is cut to fit 125 bytes without splitting a UTF-8 character."""
    payload = encode_close(1000, "€" * 100)
    assert len(payload) <= 125
    code, reason = decode_close(payload)
    assert code == 1000
    assert reason == "€" * 41


def test_close_one_byte_payload() -> None:
    """A 1-byte close payload is a protocol error."""
    with pytest.raises(ProtocolError) as info:
        decode_close(b"\x03")
    assert info.value.close_code == 1002


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000])
def test_close_invalid_codes(code: int) -> None:
    """Codes that may not appear on the wire are protocol errors."""
    with pytest.raises(ProtocolError) as info:
        decode_close(code.to_bytes(2, "big"))
    assert info.value.close_code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
def test_close_valid_codes(code: int) -> None:
    """Registered and private-range codes are accepted."""
    assert decode_close(code.to_bytes(2, "big")) == (code, "")


def test_close_reason_not_utf8() -> None:
    """A close reason that is not UTF-8 raises InvalidPayload (1007)."""
    with pytest.raises(InvalidPayload) as info:
        decode_close(b"\x03\xe8\xff")
    assert info.value.close_code == 1007
