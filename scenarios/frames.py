"""The generator's one client-side RFC 6455 codec: frame bytes and what a client does with them.

No I/O: masking and headers (`client_frame`, `FramePool`), the frame splitter (`split_frames`),
close payloads, and `ServerFrames`, the client's answer to every frame a server may send other
than a whole data message. Both readers of the generator build on it: the engine's channels
(scenarios/engine.py) and the blocking WsConnection (scenarios/connection.py).

The generator keeps its own few lines of framing instead of borrowing the targets' codec
(targets/rfc6455): a masking bug shared by generator and server would cancel out unseen.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

import numpy as np

from scenarios.deflate import Deflate
from scenarios.failures import ConnectionClosed, ProtocolViolation
from targets.rfc6455.codes import CloseCode

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
FIN = 0x80
RSV1 = 0x40  # permessage-deflate: this message is compressed (RFC 7692 §6)
MASK_BIT = 0x80

U16 = struct.Struct("!H")
U64 = struct.Struct("!Q")
_HDR16 = struct.Struct("!BBH")
_HDR64 = struct.Struct("!BBQ")
_KEY_BLOCK_BYTES = 4096


def _key_stream() -> Iterator[bytes]:
    # Masking keys must come from a strong source (RFC 6455 §5.3); one getrandom() call per
    # 1024 keys keeps that off the per-message cost.
    while True:
        block = os.urandom(_KEY_BLOCK_BYTES)
        for i in range(0, _KEY_BLOCK_BYTES, 4):
            yield block[i : i + 4]


next_mask_key = _key_stream().__next__


def mask(payload: bytes, key: bytes) -> bytes:
    """`payload` XOR the 4-byte `key` repeated: one big-integer XOR, done in C."""
    n = len(payload)
    rep = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(rep, "little")).to_bytes(n, "little")


def client_frame(first_byte: int, payload: bytes) -> bytes:
    """One masked frame; `first_byte` is FIN | opcode (0x82 for a whole binary message)."""
    n = len(payload)
    key = next_mask_key()
    if n < 126:
        header = bytes((first_byte, MASK_BIT | n))
    elif n < 65536:
        header = _HDR16.pack(first_byte, MASK_BIT | 126, n)
    else:
        header = _HDR64.pack(first_byte, MASK_BIT | 127, n)
    return header + key + mask(payload, key)


class FramePool:
    """Masked frames of one fixed payload, made in batches: each with its own random key.

    An open-model schedule sends the same payload again and again; masking it per message
    costs about 2 µs, a batch of POOL_FRAMES costs about 0.4 µs a frame (numpy XOR over all
    of them at once). The keys come from os.urandom as client_frame's do (RFC 6455 §5.3),
    and every frame is used once.
    """

    POOL_FRAMES = 4096

    def __init__(self, first_byte: int, payload: bytes) -> None:
        n = len(payload)
        if n >= 126:
            raise ValueError("FramePool is for payloads under 126 bytes")
        self._header = np.frombuffer(bytes((first_byte, MASK_BIT | n)), dtype=np.uint8)
        self._payload = np.frombuffer(payload, dtype=np.uint8)
        self._frame_bytes = 2 + 4 + n
        self._frames: list[bytes] = []

    def _refill(self) -> None:
        count, n = self.POOL_FRAMES, len(self._payload)
        keys = np.frombuffer(os.urandom(4 * count), dtype=np.uint8).reshape(count, 4)
        repeated = np.tile(keys, (1, (n + 3) // 4))[:, :n]
        block = np.concatenate(
            [np.tile(self._header, (count, 1)), keys, repeated ^ self._payload], axis=1
        ).tobytes()
        size = self._frame_bytes
        frames = [block[i : i + size] for i in range(0, len(block), size)]
        frames.reverse()  # pop() from the end
        self._frames = frames

    def next(self) -> bytes:
        """A frame never handed out before."""
        if not self._frames:
            self._refill()
        return self._frames.pop()


def close_payload(code: int, reason: str = "") -> bytes:
    return U16.pack(code) + reason.encode()[:123]


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame's payload; 1005 (no status) when it carries none."""
    if len(payload) < 2:
        return CloseCode.NO_STATUS, ""
    return U16.unpack_from(payload)[0], payload[2:].decode("utf-8", "replace")


# Codes that describe a close but never travel in a close frame (RFC 6455 §7.4.1).
_NEVER_SENT = frozenset({CloseCode.NO_STATUS, CloseCode.ABNORMAL, CloseCode.TLS_HANDSHAKE})


def close_echo(code: int) -> int:
    """The code a client answers a server's close with: the server's own (RFC 6455 §5.5.1),
    or 1000 when the server's cannot be sent back."""
    return CloseCode.NORMAL if code in _NEVER_SENT else code


def split_frames(buf: bytes, pos: int, out: list[tuple[int, bytes]]) -> int:
    """Append (first byte, payload) of each whole frame in buf[pos:]; return where the rest starts.

    The one frame parser of the generator: the engine calls it on each read, the blocking
    reader of scenarios/connection.py on its buffer. A frame from the server must not be
    masked (RFC 6455 §5.1): ValueError.
    """
    end_buf = len(buf)
    while end_buf - pos >= 2:
        n = buf[pos + 1]
        start = pos + 2
        if n >= 126:
            if n == 126:
                if end_buf - pos < 4:
                    break
                n = U16.unpack_from(buf, start)[0]
                start += 2
            elif n == 127:
                if end_buf - pos < 10:
                    break
                n = U64.unpack_from(buf, start)[0]
                start += 8
            else:
                raise ValueError("masked frame from server")
        end = start + n
        if end > end_buf:
            break
        out.append((buf[pos], buf[start:end]))
        pos = end
    return pos


class ServerFrames:
    """A client's rules for the frames a server sends, but for whole data messages (no I/O).

    A reader keeps whole binary and text frames (first byte 0x82, 0x81) on its own fast path
    and hands every other frame to `other_frame`: pings are answered, pongs go to `on_pong`, a
    close is echoed and ends the connection, fragments are joined into their message, anything
    else fails the connection. The reader supplies the sending: `answer(frame)` (a pong) and,
    if the close echo needs more, `answer_close(frame)`.

    With permessage-deflate negotiated (`deflate`, scenarios/deflate.py), a compressed message
    starts with RSV1 set (0xC1, 0xC2), so it too comes here, off the uncompressed fast path,
    and is inflated once whole.
    """

    __slots__ = ("on_pong", "deflate", "_parts", "_compressed")

    def __init__(self) -> None:
        self.on_pong: Callable[[int], None] | None = None  # called with the pong's read time
        self.deflate: Deflate | None = None  # permessage-deflate, when negotiated
        self._parts: list[bytes] | None = None  # a fragmented message being reassembled
        self._compressed = False  # ... whose first frame had RSV1

    def answer(self, frame: bytes) -> None:
        """Send `frame` (a pong) to the server."""
        raise NotImplementedError

    def answer_close(self, frame: bytes) -> None:
        """Send the echo of the server's close; ConnectionClosed is raised right after."""
        self.answer(frame)

    def message_frame(self, first_byte: int, payload: bytes) -> bytes:
        """One masked frame of a whole data message: compressed (RSV1) with deflate."""
        deflate = self.deflate
        if deflate is None:
            return client_frame(first_byte, payload)
        return client_frame(first_byte | RSV1, deflate.compress(payload))

    def other_frame(self, first: int, payload: bytes, now_ns: int) -> bytes | None:
        """The message this frame completes (None: none); ConnectionClosed on a close frame,
        ProtocolViolation on a frame RFC 6455 forbids here. Rare, so kept off the fast path."""
        opcode = first & 0x0F
        reserved = first & 0x70
        if reserved:
            self._check_reserved(reserved, opcode)
        if opcode == OP_PING:
            self.answer(client_frame(FIN | OP_PONG, payload))
        elif opcode == OP_PONG:
            if self.on_pong is not None:
                self.on_pong(now_ns)
        elif opcode == OP_CLOSE:
            code, reason = parse_close(payload)
            self.answer_close(client_frame(FIN | OP_CLOSE, close_payload(close_echo(code))))
            raise ConnectionClosed(code, reason)
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._parts is not None:
                raise ProtocolViolation("protocol error: new message inside a fragmented one")
            if first & FIN:
                return self.deflate.decompress(payload) if reserved else payload
            self._parts = [payload]
            self._compressed = bool(reserved)
        elif opcode == OP_CONT and self._parts is not None:
            self._parts.append(payload)
            if first & FIN:
                message, self._parts = b"".join(self._parts), None
                return self.deflate.decompress(message) if self._compressed else message
        else:
            raise ProtocolViolation(f"protocol error: unexpected opcode {opcode:#x}")
        return None

    def _check_reserved(self, reserved: int, opcode: int) -> None:
        """RSV1 is allowed on the first frame of a data message with deflate; nothing else."""
        if self.deflate is None or reserved != RSV1:
            raise ProtocolViolation("protocol error: reserved bits set without an extension")
        if opcode not in (OP_TEXT, OP_BINARY):
            raise ProtocolViolation("protocol error: RSV1 on a control or continuation frame")


_pools: dict[tuple[int, int, bytes], FramePool] = {}


def frame_pool(first_byte: int, payload: bytes) -> FramePool | None:
    """This process's pool for a payload (None when too long for one): a forked worker gets
    its own, so no two processes ever send a frame with the same key."""
    if len(payload) >= 126:
        return None
    key = (os.getpid(), first_byte, payload)
    pool = _pools.get(key)
    if pool is None:
        pool = _pools[key] = FramePool(first_byte, payload)
    return pool
