"""Client-side RFC 6455 frame bytes: masking and headers, no I/O.

The generator keeps its own few lines of framing instead of borrowing the targets' codec
(targets/rfc6455): a masking bug shared by generator and server would cancel out unseen.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import numpy as np

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
FIN = 0x80
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
        return 1005, ""
    return U16.unpack_from(payload)[0], payload[2:].decode("utf-8", "replace")


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
