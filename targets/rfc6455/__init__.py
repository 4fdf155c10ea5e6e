"""RFC 6455 WebSocket protocol core without I/O, for the `raw` reference target.

handshake   HTTP/1.1 request parsing, upgrade validation, 101 and error responses
frames      frame and close-payload encoding and decoding, masking (pure functions)
connection  ServerConnection: bytes in, messages and bytes to send out
"""

from .codes import CONTROL_OPCODES, DATA_OPCODES, CloseCode, Opcode, is_valid_close_code
from .connection import ServerConnection, State
from .exceptions import (
    HandshakeError,
    InvalidPayload,
    MessageTooBig,
    ProtocolError,
    WebSocketError,
)
from .frames import apply_mask, decode_close, encode_close, parse_frame, serialize_frame
from .handshake import (
    Request,
    accept_key,
    accept_response,
    check_upgrade,
    error_response,
    http_response,
    parse_request,
)

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "CloseCode",
    "HandshakeError",
    "InvalidPayload",
    "MessageTooBig",
    "Opcode",
    "ProtocolError",
    "Request",
    "ServerConnection",
    "State",
    "WebSocketError",
    "accept_key",
    "accept_response",
    "apply_mask",
    "check_upgrade",
    "decode_close",
    "encode_close",
    "error_response",
    "http_response",
    "is_valid_close_code",
    "parse_frame",
    "parse_request",
    "serialize_frame",
]
