"""Opening handshake: request parsing, upgrade validation and responses (RFC 6455 §4)."""

from __future__ import annotations

import pytest

from targets.rfc6455 import (
    HandshakeError,
    Request,
    accept_key,
    accept_response,
    check_upgrade,
    error_response,
    http_response,
    parse_request,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 §1.3 example

UPGRADE_HEADERS = {
    "host": "127.0.0.1:8765",
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-key": KEY,
    "sec-websocket-version": "13",
}

REQUEST = (
    b"GET /push?rate=5&size=64&rate=7 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8765\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"X-Multi: a\r\n"
    b"x-multi:   b  \r\n"
    b"\r\n"
)


def upgrade_request(method: str = "GET", **overrides: str | None) -> Request:
    """A valid upgrade Request with some headers replaced (or removed when None)."""
    headers = dict(UPGRADE_HEADERS)
    for name, value in overrides.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return Request(method=method, target="/echo", path="/echo", query={}, headers=headers)


def rejection(req: Request) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        check_upgrade(req)
    return info.value


# -- accept key -------------------------------------------------------------------------------


def test_accept_key_rfc_example() -> None:
    """The §1.3 key "dGhlIHNhbXBsZSBub25jZQ==" gives "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="."""
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_response_content() -> None:
    """The 101 response carries exactly Upgrade, Connection and Sec-WebSocket-Accept."""
    assert accept_response(KEY) == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )


# -- parse_request ----------------------------------------------------------------------------


def test_parse_complete_request() -> None:
    """A complete head is parsed into method, target, path, query and headers."""
    result = parse_request(REQUEST + b"\x81\x85extra")
    assert result is not None
    req, consumed = result
    assert consumed == len(REQUEST)
    assert req.method == "GET"
    assert req.target == "/push?rate=5&size=64&rate=7"
    assert req.path == "/push"
    assert req.query == {"rate": "7", "size": "64"}
    assert req.headers["sec-websocket-key"] == KEY
    assert req.headers["connection"] == "keep-alive, Upgrade"
    assert req.headers["x-multi"] == "a, b"
    assert check_upgrade(req) == KEY


def test_parse_incomplete_request() -> None:
    """Every strict prefix of a valid head parses as incomplete."""
    for cut in range(len(REQUEST)):
        assert parse_request(REQUEST[:cut]) is None


def test_parse_request_from_bytearray() -> None:
    """parse_request accepts the bytearray a protocol accumulates into."""
    result = parse_request(bytearray(REQUEST))
    assert result is not None
    assert result[1] == len(REQUEST)


def test_parse_absolute_form_target() -> None:
    """An absolute-form target is split into its path and query."""
    result = parse_request(b"GET http://h:1/broadcast?room=r1 HTTP/1.1\r\nHost: h:1\r\n\r\n")
    assert result is not None
    req = result[0]
    assert (req.path, req.query) == ("/broadcast", {"room": "r1"})


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /echo HTTP/1.0\r\nHost: x\r\n\r\n", id="http-1.0"),
        pytest.param(b"GET /echo HTTP/2\r\n\r\n", id="http-2"),
        pytest.param(b"GET /echo\r\n\r\n", id="no-version"),
        pytest.param(b"GET  /echo HTTP/1.1\r\n\r\n", id="double-space"),
        pytest.param(b"G(T /echo HTTP/1.1\r\n\r\n", id="bad-method"),
        pytest.param(b"GET echo HTTP/1.1\r\n\r\n", id="bad-target"),
        pytest.param(b"GET /echo HTTP/1.1\r\nHost x\r\n\r\n", id="no-colon"),
        pytest.param(b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n", id="space-before-colon"),
        pytest.param(b"GET /echo HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", id="obs-fold"),
        pytest.param(b"GET /echo HTTP/1.1\r\nA: b\nC: d\r\n\r\n", id="bare-lf"),
        pytest.param(b"GET /echo HTTP/1.1\r\nA: b\x00\r\n\r\n", id="nul-in-value"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", id="tls-hello"),
    ],
)
def test_parse_garbage_is_400(head: bytes) -> None:
    """Malformed request lines and header lines are rejected with 400."""
    with pytest.raises(HandshakeError) as info:
        parse_request(head)
    assert info.value.status == 400


def test_garbage_first_line_rejected_before_head_ends() -> None:
    """A malformed request line is rejected as soon as it is complete."""
    with pytest.raises(HandshakeError) as info:
        parse_request(b"SSH-2.0-OpenSSH_9.6\r\n")
    assert info.value.status == 400


def test_parse_oversize_without_end_is_431() -> None:
    """A head that reaches max_bytes without ending is rejected with 431."""
    head = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 100
    assert parse_request(head, max_bytes=len(head) + 1) is None
    with pytest.raises(HandshakeError) as info:
        parse_request(head, max_bytes=len(head))
    assert info.value.status == 431


def test_parse_oversize_complete_head_is_431() -> None:
    """A complete head longer than max_bytes is rejected with 431; one exactly at it passes."""
    assert parse_request(REQUEST, max_bytes=len(REQUEST)) is not None
    with pytest.raises(HandshakeError) as info:
        parse_request(REQUEST, max_bytes=len(REQUEST) - 1)
    assert info.value.status == 431


# -- check_upgrade ----------------------------------------------------------------------------


def test_check_upgrade_accepts_token_lists_case_insensitively() -> None:
    """Upgrade and Connection are matched as case-insensitive comma-separated tokens."""
    req = upgrade_request(upgrade="WebSocket", connection="keep-alive, UPGRADE")
    assert check_upgrade(req) == KEY


def test_check_upgrade_wrong_method_is_405() -> None:
    """A non-GET upgrade is refused with 405 and Allow: GET."""
    exc = rejection(upgrade_request("POST"))
    assert exc.status == 405
    assert ("Allow", "GET") in exc.headers


def test_check_upgrade_plain_get_is_426() -> None:
    """A GET without an Upgrade header gets 426 naming websocket."""
    exc = rejection(upgrade_request(upgrade=None))
    assert exc.status == 426
    assert ("Upgrade", "websocket") in exc.headers


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"upgrade": "h2c"}, id="upgrade-other"),
        pytest.param({"upgrade": ""}, id="upgrade-empty"),
        pytest.param({"connection": None}, id="connection-missing"),
        pytest.param({"connection": "keep-alive"}, id="connection-no-upgrade"),
        pytest.param({"connection": "upgraded"}, id="connection-not-token"),
        pytest.param({"sec_websocket_key": None}, id="key-missing"),
        pytest.param({"sec_websocket_key": "c2hvcnQ="}, id="key-too-short"),
        pytest.param({"sec_websocket_key": "AAAAAAAAAAAAAAAAAAAAAAAA"}, id="key-18-bytes"),
        pytest.param({"sec_websocket_key": "dGhlIHNhbXBsZSBub25jZQ=!"}, id="key-not-base64"),
    ],
)
def test_check_upgrade_malformed_is_400(overrides: dict[str, str | None]) -> None:
    """Malformed Upgrade, Connection or Sec-WebSocket-Key headers are refused with 400."""
    assert rejection(upgrade_request(**overrides)).status == 400


@pytest.mark.parametrize("version", [None, "8", "14", "13, 8"])
def test_check_upgrade_wrong_version_is_426(version: str | None) -> None:
    """A missing or unsupported version gets 426 with Sec-WebSocket-Version: 13."""
    exc = rejection(upgrade_request(sec_websocket_version=version))
    assert exc.status == 426
    assert ("Sec-WebSocket-Version", "13") in exc.headers


# -- responses --------------------------------------------------------------------------------


def test_http_response_is_complete() -> None:
    """http_response has the status line, Content-Length, Connection: close and the body."""
    response = http_response(200, b'{"n": 1}', "application/json", [("X-Run", "7")])
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert set(lines[1:]) == {
        b"Content-Type: application/json",
        b"Content-Length: 8",
        b"Connection: close",
        b"X-Run: 7",
    }
    assert body == b'{"n": 1}'


def test_error_response_carries_status_and_headers() -> None:
    """error_response turns a HandshakeError into its status, headers and reason body."""
    exc = HandshakeError(426, "unsupported WebSocket version", [("Sec-WebSocket-Version", "13")])
    response = error_response(exc)
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in response
    assert b"\r\nConnection: close\r\n" in response
    assert response.endswith(b"\r\n\r\nunsupported WebSocket version\n")
