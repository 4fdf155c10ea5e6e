"""The opening handshake (RFC 6455 §4.2): HTTP/1.1 request parsing and the server's responses."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from .exceptions import HandshakeError

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_MAX_REQUEST_BYTES = 16384

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([^\x00-\x20\x7f]+) HTTP/1\.1")
_HEADER_LINE = re.compile(rf"({_TOKEN}):[ \t]*(.*?)[ \t]*")
# Field values may hold visible characters, spaces, tabs and obs-text (RFC 9110 §5.5); a bare
# CR or LF left after splitting on CRLF would let one header smuggle another.
_BAD_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §1.3)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(slots=True)
class Request:
    """An HTTP request head; `headers` has lower-cased names, repeated fields comma-joined."""

    method: str
    target: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def parse_request(
    buf: bytes | bytearray, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES
) -> tuple[Request, int] | None:
    """Parse the request head at the start of `buf`.

    Returns (request, bytes consumed), or None while the head is incomplete. Raises
    HandshakeError 400 for a malformed head and 431 when it grows past `max_bytes`.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) >= max_bytes:
            raise HandshakeError(431, "request header block too large")
        # Reject garbage (e.g. a TLS hello on a plain port) once its first line is complete,
        # rather than holding the connection until the size limit or the timeout.
        line_end = buf.find(b"\r\n")
        if line_end >= 0:
            _parse_request_line(bytes(buf[:line_end]).decode("latin-1"))
        return None
    consumed = end + 4
    if consumed > max_bytes:
        raise HandshakeError(431, "request header block too large")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    method, target, path, query = _parse_request_line(lines[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise HandshakeError(400, "malformed header line")
        name, value = match.groups()
        if _BAD_VALUE_CHARS.search(value):
            raise HandshakeError(400, "control character in header value")
        name = name.lower()
        previous = headers.get(name)
        headers[name] = value if previous is None else f"{previous}, {value}"
    return Request(method, target, path, query, headers), consumed


def _parse_request_line(line: str) -> tuple[str, str, str, dict[str, str]]:
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise HandshakeError(400, "malformed request line or not HTTP/1.1")
    method, target = match.groups()
    if target.startswith("/"):
        path, _, query = target.partition("?")
    elif target.startswith(("http://", "https://", "ws://", "wss://")):
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    elif target == "*":
        path, query = target, ""
    else:
        raise HandshakeError(400, "malformed request target")
    return method, target, path, dict(parse_qsl(query, keep_blank_values=True))


def _tokens(value: str | None) -> set[str]:
    if not value:
        return set()
    return {token.strip().lower() for token in value.split(",")}


def check_upgrade(req: Request) -> str:
    """Validate a WebSocket upgrade request (RFC 6455 §4.2.1); return its Sec-WebSocket-Key."""
    if req.method != "GET":
        raise HandshakeError(405, "WebSocket upgrade needs GET", [("Allow", "GET")])
    headers = req.headers
    upgrade = headers.get("upgrade")
    if upgrade is None:
        # 426 names the protocol to switch to; no "Connection: Upgrade" because the error
        # response already says "Connection: close".
        raise HandshakeError(426, "WebSocket upgrade required", [("Upgrade", "websocket")])
    if "websocket" not in _tokens(upgrade):
        raise HandshakeError(400, "Upgrade header does not name websocket")
    if "upgrade" not in _tokens(headers.get("connection")):
        raise HandshakeError(400, "Connection header lacks the upgrade token")
    if headers.get("sec-websocket-version", "").strip() != "13":
        raise HandshakeError(
            426, "unsupported WebSocket version", [("Sec-WebSocket-Version", "13")]
        )
    key = headers.get("sec-websocket-key", "").strip()
    if not key:
        raise HandshakeError(400, "missing Sec-WebSocket-Key")
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes of base64")
    return key


def accept_response(key: str) -> bytes:
    """The complete 101 response accepting an upgrade (no extensions, no subprotocol)."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
        "\r\n"
    ).encode("ascii")


def http_response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A complete HTTP/1.1 response after which the server closes the connection."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers)
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body


def error_response(exc: HandshakeError) -> bytes:
    """The HTTP response that reports a rejected handshake."""
    return http_response(exc.status, f"{exc.reason}\n".encode(), headers=exc.headers)
