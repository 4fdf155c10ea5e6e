"""permessage-deflate (RFC 7692) on the client side: the offer, the server's answer, and the
compression of each message (no I/O; stdlib zlib does the deflating).

The client offers `permessage-deflate; client_max_window_bits` (OFFER) in its upgrade request.
`agreed()` reads the server's Sec-WebSocket-Extensions answer into `DeflateParams` (None: the
server declined; ProtocolViolation for an answer RFC 7692 forbids). A `Deflate` then compresses
each outgoing message (the sync flush's 0x00 0x00 0xff 0xff tail stripped, §7.2.1) and inflates
each incoming one (the tail put back, §7.2.2), keeping each direction's LZ77 window across
messages unless the answer said `*_no_context_takeover`. The frames carry RSV1 on a compressed
message's first frame only (frames.RSV1); control frames are never compressed.

Memory: a zlib compressor takes 2^(windowBits + 2) + 2^(memLevel + 9) bytes, 256 KiB at zlib's
defaults (15, 8). The generator may hold tens of thousands of connections, so it compresses
with memLevel CLIENT_MEM_LEVEL and the window the server allowed (a client may always use a
smaller window than agreed); it inflates with the window the server may use.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

from scenarios.failures import ProtocolViolation

EXTENSION = "permessage-deflate"
OFFER = f"{EXTENSION}; client_max_window_bits"
TAIL = b"\x00\x00\xff\xff"
MAX_WINDOW_BITS = 15
# zlib refuses an 8-bit window for raw deflate (it would silently use 9), so a server asking
# the client for 8 is refused rather than sent frames it did not agree to.
MIN_CLIENT_WINDOW_BITS = 9
MIN_WINDOW_BITS = 8
CLIENT_MEM_LEVEL = 5  # about 16 KiB of hash tables instead of 128 KiB at zlib's default 8

_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_BITS = ("server_max_window_bits", "client_max_window_bits")


@dataclass(frozen=True)
class DeflateParams:
    """What the server agreed to (RFC 7692 §7.1): the absent parameters have their defaults."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = MAX_WINDOW_BITS
    client_max_window_bits: int = MAX_WINDOW_BITS

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _split_params(text: str) -> list[tuple[str, str | None]]:
    """'a; b=1; c="2"' -> [('a', None), ('b', '1'), ('c', '2')] (names lower-cased)."""
    found = []
    for part in text.split(";"):
        name, equals, value = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            raise ProtocolViolation(f"protocol error: empty extension parameter in {text!r}")
        found.append((name, value.strip().strip('"') if equals else None))
    return found


def agreed(header: str | None) -> DeflateParams | None:
    """The parameters of the server's Sec-WebSocket-Extensions answer to OFFER; None when it
    does not accept permessage-deflate. ProtocolViolation when it names an extension that was
    not offered, accepts it twice, or gives a parameter RFC 7692 does not allow in an answer."""
    if not header or not header.strip():
        return None
    found: DeflateParams | None = None
    for extension in header.split(","):
        (name, value), *params = _split_params(extension)
        if name != EXTENSION or value is not None:
            raise ProtocolViolation(f"protocol error: the server accepted extension {name!r}, "
                                    "which was not offered")  # fmt: skip
        if found is not None:
            raise ProtocolViolation(f"protocol error: the server accepted {EXTENSION} twice")
        found = _params(params)
    return found


def _params(params: list[tuple[str, str | None]]) -> DeflateParams:
    values: dict[str, object] = {}
    for name, value in params:
        if name in values:
            raise ProtocolViolation(f"protocol error: {EXTENSION} parameter {name} given twice")
        if name in _FLAGS and value is None:
            values[name] = True
        elif name in _BITS and value is not None:
            values[name] = _window_bits(name, value)
        else:
            shown = name if value is None else f"{name}={value}"
            raise ProtocolViolation(f"protocol error: {EXTENSION} parameter {shown} is not "
                                    "allowed in a server's answer")  # fmt: skip
    return DeflateParams(**values)  # type: ignore[arg-type]


def _window_bits(name: str, value: str) -> int:
    low = MIN_CLIENT_WINDOW_BITS if name == "client_max_window_bits" else MIN_WINDOW_BITS
    if not value.isdigit() or not low <= int(value) <= MAX_WINDOW_BITS:
        raise ProtocolViolation(f"protocol error: {EXTENSION} {name}={value} is not "
                                f"{low}..{MAX_WINDOW_BITS} (or not usable with zlib)")  # fmt: skip
    return int(value)


class Deflate:
    """One connection's compressor and decompressor, as `params` say (RFC 7692 §7.2)."""

    __slots__ = ("params", "_compress", "_inflate")

    def __init__(self, params: DeflateParams) -> None:
        self.params = params
        self._compress = self._new_compressor()
        self._inflate = self._new_decompressor()

    def _new_compressor(self) -> zlib._Compress:
        return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                -self.params.client_max_window_bits, CLIENT_MEM_LEVEL)  # fmt: skip

    def _new_decompressor(self) -> zlib._Decompress:
        return zlib.decompressobj(-self.params.server_max_window_bits)

    def compress(self, payload: bytes) -> bytes:
        """One message's compressed payload, its sync-flush tail removed."""
        compressor = self._compress
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.params.client_no_context_takeover:
            self._compress = self._new_compressor()
        return data[:-4] if data.endswith(TAIL) else data

    def decompress(self, payload: bytes) -> bytes:
        """One whole compressed message (its frames' payloads joined) as it was sent."""
        try:
            data = self._inflate.decompress(payload + TAIL)
        except zlib.error as exc:
            raise ProtocolViolation(f"protocol error: bad compressed message ({exc})") from None
        if self.params.server_no_context_takeover:
            self._inflate = self._new_decompressor()
        return data
