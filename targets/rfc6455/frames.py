"""Frame encoding and decoding (RFC 6455 §5): pure functions over caller-owned buffers."""

from __future__ import annotations

import struct

from .codes import CloseCode, Opcode, is_valid_close_code
from .exceptions import InvalidPayload, MessageTooBig, ProtocolError

MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2

_VALID_OPCODES = frozenset(int(op) for op in Opcode)

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_HDR16 = struct.Struct("!BBH")
_HDR64 = struct.Struct("!BBQ")

# Below this size one big-int XOR is cheapest; above it numpy XORs eight bytes at a time
# (about 17x faster than the big-int XOR at 64 KiB, which builds three payload-sized integers).
_NUMPY_MIN_BYTES = 8192


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """XOR `data` with the 4-byte `mask` repeated (masking and unmasking are the same)."""
    n = len(data)
    if n < _NUMPY_MIN_BYTES:
        rep = (mask * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(rep, "little")).to_bytes(
            n, "little"
        )
    return _apply_mask_numpy(data, bytes(mask))


def _apply_mask_numpy(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    # Imported here so that only a process that meets a large frame pays for numpy.
    import numpy as np

    n = len(data)
    whole = n & ~7
    src = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(n, dtype=np.uint8)
    mask8 = np.frombuffer(mask * 2, dtype=np.uint8)
    np.bitwise_xor(
        src[:whole].view(np.uint64), mask8.view(np.uint64)[0], out=out[:whole].view(np.uint64)
    )
    np.bitwise_xor(src[whole:], mask8[: n - whole], out=out[whole:])
    return out.tobytes()


def serialize_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bytes | None = None,
    rsv: int = 0,
) -> bytes:
    """Encode one frame with the minimal length encoding; masked when `mask` is given.

    `rsv` is the 3-bit RSV1-RSV3 field. Nothing is validated, so tests can build the invalid
    frames a hostile client would send.
    """
    b0 = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0x0F)
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        header = bytes((b0, mask_bit | n))
    elif n < 0x10000:
        header = _HDR16.pack(b0, mask_bit | 126, n)
    else:
        header = _HDR64.pack(b0, mask_bit | 127, n)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def parse_frame(
    buf: bytes | bytearray, pos: int, max_payload: int
) -> tuple[bool, int, bytes, int] | None:
    """Parse one client (masked) frame at `buf[pos:]`.

    Returns (fin, opcode, unmasked payload, position after the frame), or None while the frame
    is incomplete. Header errors are raised as soon as the bytes that prove them have arrived;
    `max_payload` applies to data frames and is checked against the declared length, so a huge
    length is refused before any of its payload is buffered.
    """
    end = len(buf)
    if pos >= end:
        return None
    b0 = buf[pos]
    if b0 & 0x70:
        raise ProtocolError("reserved bits set")
    opcode = b0 & 0x0F
    if opcode not in _VALID_OPCODES:
        raise ProtocolError(f"reserved opcode {opcode:#x}")
    fin = bool(b0 & 0x80)
    control = opcode >= 0x8
    if control and not fin:
        raise ProtocolError("fragmented control frame")
    if pos + 1 >= end:
        return None
    b1 = buf[pos + 1]
    if not b1 & 0x80:
        raise ProtocolError("unmasked client frame")
    length = b1 & 0x7F
    hpos = pos + 2
    if control and length > MAX_CONTROL_PAYLOAD:
        raise ProtocolError("control frame payload over 125 bytes")
    if length == 126:
        if end < hpos + 2:
            return None
        (length,) = _U16.unpack_from(buf, hpos)
        hpos += 2
    elif length == 127:
        if end < hpos + 8:
            return None
        (length,) = _U64.unpack_from(buf, hpos)
        if length >> 63:
            raise ProtocolError("64-bit length with the most significant bit set")
        hpos += 8
    if length > max_payload and not control:
        raise MessageTooBig(f"message over {max_payload} bytes")
    start = hpos + 4
    stop = start + length
    if stop > end:
        return None
    return fin, opcode, apply_mask(buf[start:stop], buf[hpos:start]), stop


def encode_close(code: int, reason: str = "") -> bytes:
    """Close frame payload; 1005 ("no status") encodes as the empty payload.

    The reason is cut at a character boundary so the payload fits a control frame.
    """
    if code == CloseCode.NO_STATUS:
        return b""
    raw = reason.encode()
    if len(raw) > MAX_CLOSE_REASON_BYTES:
        raw = raw[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()
    return _U16.pack(code) + raw


def decode_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a received close frame; an empty payload means (1005, "")."""
    n = len(payload)
    if n == 0:
        return CloseCode.NO_STATUS, ""
    if n == 1:
        raise ProtocolError("close payload of 1 byte")
    (code,) = _U16.unpack_from(payload)
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise InvalidPayload("close reason is not UTF-8") from None
    return code, reason
