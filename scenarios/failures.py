"""What went wrong with a WebSocket exchange, as one line Locust can group failures by.

    WsError                      base; str() is the failure kind shown in Locust's failures table
    ├── ConnectionClosed         the server sent a close frame: code and reason
    ├── ConnectionLost           the TCP connection ended without a close frame (EOF, reset)
    ├── WsTimeout                nothing arrived within the timeout
    ├── HandshakeRejected        the HTTP upgrade was answered with another status
    ├── NotNegotiated            an extension asked for (--ws-compression) the server declined
    ├── ProtocolViolation        the server broke RFC 6455 (or the echo came back wrong)
    ├── SequenceGap              messages of a numbered stream (push, broadcast) went missing
    └── NetworkError             any other socket error, named by its errno (EADDRNOTAVAIL, EMFILE)

`classify()` turns whatever a socket, ssl or websocket-client raised into one of these. The
messages hold no ports, timestamps or counts, so identical failures share one row in Locust.
"""

from __future__ import annotations

import errno
import socket
import ssl

from websocket import (
    WebSocketBadStatusException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketTimeoutException,
)

from targets.rfc6455.codes import CloseCode

# errno values whose failure kind is worth a word of its own; the rest keep just their name.
_KIND_OF_ERRNO = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.ECONNABORTED: "reset",
    errno.ETIMEDOUT: "timeout",
    errno.EADDRNOTAVAIL: "no free local address/port",
    errno.EADDRINUSE: "local address in use",
    errno.EMFILE: "out of file descriptors (process)",
    errno.ENFILE: "out of file descriptors (system)",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
}
_LOST_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class WsError(Exception):
    """A failed WebSocket exchange; the message is the failure kind."""


class ConnectionClosed(WsError):
    """The server closed the connection with a close frame."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        try:
            name = CloseCode(code).name.lower().replace("_", " ")
        except ValueError:
            name = "application" if 3000 <= code <= 4999 else "unknown"
        text = f"closed by server: {code} ({name})"
        super().__init__(f"{text} {reason!r}" if reason else text)


class ConnectionLost(WsError):
    """The connection ended without a close frame."""


class WsTimeout(WsError):
    """Nothing arrived in time."""


class HandshakeRejected(WsError):
    """The server answered the upgrade request with a non-101 status."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"upgrade rejected: HTTP {status}")


class NotNegotiated(WsError):
    """The upgrade succeeded without an extension the run asked for: measuring on would
    report figures of another configuration than the one asked for."""

    def __init__(self, extension: str, option: str) -> None:
        self.extension = extension
        super().__init__(f"{extension} asked for ({option}) and not negotiated: the server's "
                         "upgrade answer did not accept it")  # fmt: skip


class ProtocolViolation(WsError):
    """The peer broke RFC 6455, or an echo did not match what was sent."""


class SequenceGap(WsError):
    """Messages of a numbered stream went missing (a gap in the sequence numbers)."""

    def __init__(self) -> None:
        super().__init__("sequence gap: messages lost")


class NetworkError(WsError):
    """A socket error named by its errno."""

    def __init__(self, err: int | None, strerror: str | None) -> None:
        self.errno = err
        name = errno.errorcode.get(err, f"errno {err}") if err is not None else "OSError"
        kind = _KIND_OF_ERRNO.get(err) if err is not None else None
        detail = f"{name} ({strerror})" if strerror else name
        super().__init__(f"{kind}: {detail}" if kind else detail)


def classify(exc: BaseException, doing: str) -> WsError:
    """`exc` as a WsError; `doing` says what was under way ("tcp connect", "recv", ...)."""
    if isinstance(exc, WsError):
        return exc
    if isinstance(exc, (TimeoutError, socket.timeout, WebSocketTimeoutException)):
        return WsTimeout(f"timeout: {doing}")
    if isinstance(exc, WebSocketBadStatusException):
        return HandshakeRejected(exc.status_code)
    if isinstance(exc, WebSocketConnectionClosedException):
        return ConnectionLost(f"connection lost without close frame: {doing}")
    if isinstance(exc, ssl.SSLError):
        return NetworkError(None, f"TLS: {exc.reason or exc}")
    if isinstance(exc, OSError):
        if exc.errno in _LOST_ERRNOS:
            name = errno.errorcode[exc.errno]
            return ConnectionLost(f"reset: {name} during {doing}")
        return NetworkError(exc.errno, exc.strerror)
    if isinstance(exc, WebSocketException):
        return ProtocolViolation(f"protocol error: {exc}")
    return WsError(f"{type(exc).__name__}: {doing}")
