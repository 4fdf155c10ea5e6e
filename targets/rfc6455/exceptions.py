"""Errors raised by the RFC 6455 core; one tree, so callers can catch at the level they need.

WebSocketError
├── HandshakeError       the HTTP request is rejected before the upgrade; carries the
│                        status, a reason for the body and extra response headers
└── ProtocolError        the peer broke RFC 6455 after the upgrade; carries the close code
    │                    to send back (1002)
    ├── InvalidPayload   a text message or close reason is not valid UTF-8 (1007)
    └── MessageTooBig    a message is larger than the configured limit (1009)
"""

from __future__ import annotations

from collections.abc import Iterable

from .codes import CloseCode


class WebSocketError(Exception):
    """Base class of every error raised by targets.rfc6455."""


class HandshakeError(WebSocketError):
    """The opening handshake failed; answer with `status` and close the connection."""

    def __init__(self, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers: list[tuple[str, str]] = list(headers)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class ProtocolError(WebSocketError):
    """The peer violated the framing rules; the connection must fail with `close_code`."""

    close_code: int = CloseCode.PROTOCOL_ERROR

    def __init__(self, reason: str = "protocol error", close_code: int | None = None) -> None:
        super().__init__(reason)
        if close_code is not None:
            self.close_code = close_code


class InvalidPayload(ProtocolError):
    """Text data or a close reason that is not valid UTF-8."""

    close_code = CloseCode.INVALID_DATA


class MessageTooBig(ProtocolError):
    """A message (or a frame's declared length) is over the size limit."""

    close_code = CloseCode.MESSAGE_TOO_BIG
