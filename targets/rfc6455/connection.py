"""Server side of an open WebSocket connection (RFC 6455 §5-§7), without I/O.

Bytes from the socket go in through `receive_data`, which returns the complete data messages;
frames to write come out of `data_to_send`. The caller closes the TCP connection once
`close_transport` is true and the pending frames are flushed.
"""

from __future__ import annotations

import codecs
from enum import IntEnum

from .codes import CloseCode, Opcode
from .exceptions import InvalidPayload, MessageTooBig, ProtocolError
from .frames import (
    MAX_CONTROL_PAYLOAD,
    decode_close,
    encode_close,
    parse_frame,
    serialize_frame,
)


class State(IntEnum):
    OPEN = 1
    CLOSING = 2  # we sent a close frame and wait for the peer's
    CLOSED = 3


_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_DATA_OPCODES = (Opcode.CONT, Opcode.TEXT, Opcode.BINARY)
_SENDABLE = frozenset((Opcode.TEXT, Opcode.BINARY))
_UTF8_DECODER = codecs.getincrementaldecoder("utf-8")

# Unmasking a short payload as integers: the 32-bit mask times _REPEAT[n] lays the mask over
# every 4-byte word of an n-byte payload (little-endian), and _LOW_BYTES[n] drops the 1-3 bytes
# the last word spills past n. Cheaper than repeating and slicing the mask as bytes.
_REPEAT = tuple(sum(1 << (32 * i) for i in range((n + 3) // 4)) for n in range(126))
_LOW_BYTES = tuple((1 << (8 * n)) - 1 for n in range(126))


class ServerConnection:
    """The frame-level state machine of one server connection after the handshake."""

    # One of these exists per idle connection, so no per-instance dict and no buffers until
    # a partial frame or a fragmented message actually needs one.
    __slots__ = (
        "max_message_bytes",
        "state",
        "close_code",
        "close_reason",
        "close_transport",
        "failed",
        "pongs_received",
        "_buf",
        "_out",
        "_frag_opcode",
        "_frag_parts",
        "_frag_size",
        "_decoder",
    )

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        self.max_message_bytes = max_message_bytes
        self.state = _OPEN
        self.close_code: int | None = None  # as sent by the peer
        self.close_reason: str | None = None
        self.close_transport = False
        self.failed: ProtocolError | None = None
        self.pongs_received = 0
        self._buf: bytes | bytearray = b""  # unparsed input: at most one partial frame
        self._out: list[bytes] = []
        self._frag_opcode: Opcode | None = None  # opcode of the fragmented message in progress
        self._frag_parts: list[bytes] | None = None
        self._frag_size = 0
        self._decoder: codecs.IncrementalDecoder | None = None

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> list[tuple[Opcode, bytes]]:
        """Feed bytes from the peer; return the data messages they complete, in order. A
        protocol violation fails the connection (see `failed`) instead of raising: the messages
        completed before the bad frame are still returned."""
        if self.state is _CLOSED:
            return []
        buf = self._joined(data)
        end = len(buf)
        pos = 0
        maxb = self.max_message_bytes
        messages: list[tuple[Opcode, bytes]] = []
        append = messages.append
        from_bytes = int.from_bytes
        try:
            while pos < end:
                # Fast path: a whole masked text/binary frame, 7-bit length, not fragmented.
                b0 = buf[pos]
                if (b0 == 0x82 or b0 == 0x81) and pos + 1 < end and self._frag_opcode is None:
                    n = buf[pos + 1] - 0x80
                    if 0 <= n < 126 and n <= maxb:
                        start = pos + 6
                        stop = start + n
                        if stop > end:
                            break
                        payload = (
                            (
                                from_bytes(buf[start:stop], "little")
                                ^ from_bytes(buf[pos + 2 : start], "little") * _REPEAT[n]
                            )
                            & _LOW_BYTES[n]
                        ).to_bytes(n, "little")
                        pos = stop
                        if b0 == 0x82:
                            append((_BINARY, payload))
                        elif payload.isascii():
                            append((_TEXT, payload))
                        else:
                            _check_utf8(payload)
                            append((_TEXT, payload))
                        continue
                limit = maxb - self._frag_size
                frame = parse_frame(buf, pos, limit)
                if frame is None:
                    break
                fin, opcode, payload, pos = frame
                if opcode >= 0x8:
                    self._receive_control(opcode, payload)
                    if self.state is _CLOSED:
                        self._buf = b""
                        return messages
                else:
                    message = self._receive_data_frame(fin, opcode, payload)
                    if message is not None:
                        append(message)
        except ProtocolError as exc:
            self._fail(exc)
            return messages
        self._keep(buf, data, pos)
        return messages

    def _joined(self, data: bytes | bytearray) -> bytes | bytearray:
        """What is to be parsed: a partial frame kept from before, with `data` after it."""
        buf = self._buf
        if buf:
            buf += data  # type: ignore[operator]  # _buf is a bytearray whenever it is non-empty
            return buf
        return data

    def _keep(self, buf: bytes | bytearray, data: bytes | bytearray, pos: int) -> None:
        """Keep what follows `pos` in `buf`: the start of a frame not yet complete."""
        if pos >= len(buf):
            self._buf = b""
        elif buf is data:
            # In a bytearray of our own, so that later chunks append in place instead of
            # re-copying a large frame on every chunk.
            self._buf = bytearray(memoryview(buf)[pos:])
        else:
            del buf[:pos]  # type: ignore[union-attr]  # O(1): bytearray moves its start
            self._buf = buf

    def _receive_control(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.PING:
            if self.state is _OPEN:
                self._out.append(serialize_frame(Opcode.PONG, payload))
        elif opcode == Opcode.PONG:
            self.pongs_received += 1
        else:
            code, reason = decode_close(payload)
            self.close_code = code
            self.close_reason = reason
            if self.state is _OPEN:
                self._out.append(serialize_frame(Opcode.CLOSE, encode_close(code)))
            self._closed()

    def _receive_data_frame(
        self, fin: bool, opcode: int, payload: bytes
    ) -> tuple[Opcode, bytes] | None:
        frag_opcode = self._frag_opcode
        if opcode == Opcode.CONT:
            if frag_opcode is None:
                raise ProtocolError("continuation frame without a message in progress")
            self._frag_size += len(payload)
            if self._frag_size > self.max_message_bytes:
                raise MessageTooBig(f"message over {self.max_message_bytes} bytes")
            parts = self._frag_parts
            assert parts is not None
            parts.append(payload)
            if self._decoder is not None:
                _feed_utf8(self._decoder, payload, fin)
            if not fin:
                return None
            self._frag_opcode = self._frag_parts = self._decoder = None
            self._frag_size = 0
            return frag_opcode, b"".join(parts)
        if frag_opcode is not None:
            raise ProtocolError("new data frame inside a fragmented message")
        if len(payload) > self.max_message_bytes:
            raise MessageTooBig(f"message over {self.max_message_bytes} bytes")
        kind = _DATA_OPCODES[opcode]
        if fin:
            if kind is _TEXT:
                _check_utf8(payload)
            return kind, payload
        if kind is _TEXT:
            decoder = _UTF8_DECODER(errors="strict")
            _feed_utf8(decoder, payload, False)
            self._decoder = decoder
        self._frag_opcode = kind
        self._frag_parts = [payload]
        self._frag_size = len(payload)
        return None

    def _fail(self, exc: ProtocolError) -> None:
        self.failed = exc
        if self.state is _OPEN:
            frame = serialize_frame(Opcode.CLOSE, encode_close(exc.close_code, str(exc)))
            self._out.append(frame)
        self._closed()

    def _closed(self) -> None:
        self.state = _CLOSED
        self.close_transport = True
        self._buf = b""
        self._frag_opcode = self._frag_parts = self._decoder = None
        self._frag_size = 0

    # -- output ------------------------------------------------------------------------------

    def send_message(self, opcode: Opcode, payload: bytes) -> None:
        """Queue one unfragmented TEXT or BINARY message; ignored once closing has started."""
        if self.state is not _OPEN:
            return
        if opcode not in _SENDABLE:
            raise ValueError(f"not a data opcode: {opcode!r}")
        n = len(payload)
        if n < 126:
            self._out.append(bytes((0x80 | opcode, n)) + payload)
        else:
            self._out.append(serialize_frame(opcode, payload))

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a ping; ignored once closing has started."""
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError("ping payload over 125 bytes")
        if self.state is _OPEN:
            self._out.append(serialize_frame(Opcode.PING, payload))

    def send_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake; the state is CLOSED once the peer's close arrives."""
        if self.state is not _OPEN:
            return
        self._out.append(serialize_frame(Opcode.CLOSE, encode_close(code, reason)))
        self.state = _CLOSING

    def data_to_send(self) -> list[bytes]:
        """The frames queued since the last call, one complete frame per item."""
        out = self._out
        if not out:
            return []
        self._out = []
        return out


def _check_utf8(payload: bytes) -> None:
    try:
        payload.decode()
    except UnicodeDecodeError:
        raise InvalidPayload("text message is not UTF-8") from None


def _feed_utf8(decoder: codecs.IncrementalDecoder, payload: bytes, final: bool) -> None:
    try:
        decoder.decode(payload, final)
    except UnicodeDecodeError:
        raise InvalidPayload("text message is not UTF-8") from None
    if not final:
        # CPython keeps ED A0..ED BF pending instead of failing (a UTF-16 surrogate, left for
        # the surrogatepass handler); under strict it can never complete, so fail now rather
        # than when the next fragment arrives. It is the only such prefix (checked exhaustively).
        pending = decoder.getstate()[0]
        if len(pending) == 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise InvalidPayload("text message is not UTF-8")
