"""Opcodes and close codes of RFC 6455 (§5.2, §7.4)."""

from __future__ import annotations

from enum import IntEnum


class Opcode(IntEnum):
    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire
    ABNORMAL = 1006  # never on the wire
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


# Codes a peer may send in a close frame: the registered ones that are allowed on the wire
# (RFC 6455 §7.4.1 plus the IANA registry's 1012-1014) and the 3000-4999 private ranges.
_SENDABLE = frozenset(int(c) for c in CloseCode) - {1004, 1005, 1006, 1015}


def is_valid_close_code(code: int) -> bool:
    """True if `code` may appear in a close frame received from a peer."""
    return code in _SENDABLE or 3000 <= code <= 4999
