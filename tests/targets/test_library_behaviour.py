"""The bad-input cases of test_raw_bad_input.py against the aiohttp and websockets targets.

Where a library answers as RFC 6455 requires, the case shares the raw target's assertion. Where
it does not, a test below asserts what the library actually does, with a docstring saying why it
differs, so a library upgrade that changes the behaviour is noticed and the tables of results
stay honest about what each target does. The uniform policies (--max-size, --handshake-timeout,
--max-queue) are not library behaviour but the targets' contract: they must hold for all three.
"""

from __future__ import annotations

import contextlib

import pytest
from test_raw_bad_input import (
    CLOSE,
    CONT,
    FRAME_CASES,
    HANDSHAKE_CASES,
    PING,
    PONG,
    TEXT,
    Frame,
    HttpResponse,
    RawClient,
    assert_echo_works,
    check_handshake_timeout,
    check_max_size,
    check_silent_clients_do_not_block_shutdown,
    check_slow_consumer,
    check_unanswered_close_dropped,
    close_payload,
    encode_frame,
    observe_frame_case,
    observe_handshake_case,
)

LIBRARY_TARGETS = ("aiohttp", "websockets")

# Cases where a library departs from RFC 6455; each has its own test below.
DEVIATIONS = {
    ("aiohttp", "unmasked_frame"),
    ("aiohttp", "close_code_1006"),
    ("aiohttp", "close_code_5000"),
    ("aiohttp", "wrong_version"),
    ("aiohttp", "hybi_draft_version_8"),
    ("websockets", "wrong_version"),
    ("websockets", "hybi_draft_version_8"),
    ("websockets", "garbage"),
}


@pytest.fixture(scope="module")
def servers(spawn):
    """servers(name): that library target, started on first use and shared by the module."""
    with contextlib.ExitStack() as stack:
        started = {}

        def get(name: str):
            if name not in started:
                started[name] = stack.enter_context(spawn.running(name))
            return started[name]

        yield get


def _conforming(cases):
    return [pytest.param(name, case, id=f"{name}-{case.id}")
            for name in LIBRARY_TARGETS for case in cases if (name, case.id) not in DEVIATIONS]


@pytest.mark.parametrize(("name", "case"), _conforming(FRAME_CASES))
def test_bad_frame_gets_rfc_close_code(servers, name, case):
    """A protocol violation in a frame is answered with the close code RFC 6455 requires."""
    library = servers(name)
    assert observe_frame_case(library.host, library.port, case) == case.rfc
    assert_echo_works(library.host, library.port)


@pytest.mark.parametrize(("name", "case"), _conforming(HANDSHAKE_CASES))
def test_bad_handshake_gets_rfc_status(servers, name, case):
    """A broken opening handshake is refused with the HTTP status RFC 6455 implies."""
    library = servers(name)
    response = observe_handshake_case(library.host, library.port, case)
    assert isinstance(response, HttpResponse), f"no HTTP response: {response}"
    assert response.status == case.rfc
    assert_echo_works(library.host, library.port)


def _case(cases, case_id):
    return next(case for case in cases if case.id == case_id)


# --- aiohttp ---------------------------------------------------------------------------------


def test_aiohttp_echoes_unmasked_client_frame(servers):
    """Documents library behaviour: aiohttp echoes an unmasked client frame (RFC: close 1002).

    Differs from RFC 6455 §5.1 and from raw because aiohttp's frame reader never checks the
    MASK bit of frames it receives."""
    library = servers("aiohttp")
    with RawClient(library.host, library.port) as client:
        client.handshake()
        client.send(encode_frame(TEXT, b"unmasked", mask=False))
        assert client.read_message() == Frame(True, TEXT, b"unmasked")


@pytest.mark.parametrize("code", [1006, 5000])
def test_aiohttp_target_answers_invalid_close_codes_1002(servers, code):
    """Close code 1006 or 5000 gets 1002 from the aiohttp target, as the RFC asks.

    aiohttp's own automatic reply would be 1000 (its list of invalid codes misses these two);
    the target answers clients' closes itself (autoclose=False) to echo valid codes and refuse
    invalid ones, so it matches raw here."""
    library = servers("aiohttp")
    case = _case(FRAME_CASES, f"close_code_{code}")
    assert observe_frame_case(library.host, library.port, case) == "close 1002"


def test_aiohttp_accepts_hybi_draft_version_8(servers):
    """Documents library behaviour: aiohttp accepts Sec-WebSocket-Version 8 (RFC: 426 + 13).

    Differs from RFC 6455 §4.2.2 and from raw because aiohttp still serves the pre-RFC hybi
    draft versions 7 and 8, whose framing happens to match version 13."""
    library = servers("aiohttp")
    response = observe_handshake_case(library.host, library.port,
                                      _case(HANDSHAKE_CASES, "hybi_draft_version_8"))
    assert isinstance(response, HttpResponse) and response.status == 101


# --- both libraries --------------------------------------------------------------------------


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_library_rejects_unknown_version_400_without_version_header(servers, name):
    """Documents library behaviour: an unknown version gets 400 without a version header.

    Differs from RFC 6455 §4.2.2 (which requires `Sec-WebSocket-Version: 13` on the refusal,
    e.g. with 426) and from raw because neither library adds the header, so a client cannot
    learn which version to retry with."""
    library = servers(name)
    response = observe_handshake_case(library.host, library.port,
                                      _case(HANDSHAKE_CASES, "wrong_version"))
    assert isinstance(response, HttpResponse)
    assert (response.status, response.headers.get("sec-websocket-version")) == (400, None)


def test_websockets_rejects_draft_version_400_without_version_header(servers):
    """Documents library behaviour: websockets refuses version 8 with 400, no version header.

    Differs from RFC 6455 §4.2.2 and from raw for the same reason as an unknown version."""
    library = servers("websockets")
    response = observe_handshake_case(library.host, library.port,
                                      _case(HANDSHAKE_CASES, "hybi_draft_version_8"))
    assert isinstance(response, HttpResponse)
    assert (response.status, response.headers.get("sec-websocket-version")) == (400, None)


def test_websockets_hangs_up_on_garbage_without_400(servers):
    """Documents library behaviour: websockets hangs up on a non-HTTP request (RFC: a 400).

    Differs from RFC 6455 §4.2.1 (an HTTP error response such as 400) and from raw because
    websockets drops connections whose request line does not parse without answering; the
    server keeps serving other clients."""
    library = servers("websockets")
    outcome = observe_handshake_case(library.host, library.port,
                                     _case(HANDSHAKE_CASES, "garbage"))
    assert outcome in ("eof", "reset")
    assert_echo_works(library.host, library.port)


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_library_answers_ping_between_fragments(servers, name):
    """A ping between the fragments of a message is answered and the message still echoes."""
    library = servers(name)
    with RawClient(library.host, library.port) as client:
        client.handshake()
        client.send(encode_frame(TEXT, b"one", fin=False) + encode_frame(PING, b"p")
                    + encode_frame(CONT, b"two"))
        assert client.read_frame() == Frame(True, PONG, b"p")
        assert client.read_message() == Frame(True, TEXT, b"onetwo")
        client.send(encode_frame(CLOSE, close_payload(1000)))
        assert client.read_close() == "close 1000"


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_library_accepts_utf8_character_split_across_fragments(servers, name):
    """A multi-byte character split between two fragments is reassembled and echoed."""
    library = servers(name)
    with RawClient(library.host, library.port) as client:
        client.handshake()
        text = "split € here 😀".encode()
        client.send(encode_frame(TEXT, text[:7], fin=False)
                    + encode_frame(CONT, text[7:13], fin=False)
                    + encode_frame(CONT, text[13:]))
        assert client.read_message() == Frame(True, TEXT, text)


# --- the uniform policies: the targets' contract, not library behaviour ----------------------


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_max_size_closes_1009(spawn, name):
    """A message over --max-size, in one frame or in fragments, gets close 1009."""
    check_max_size(spawn, name)


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_unfinished_handshake_dropped(spawn, name):
    """A handshake not finished within --handshake-timeout is dropped; open connections stay."""
    check_handshake_timeout(spawn, name)


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_slow_broadcast_consumer_closed_1008(spawn, name):
    """A member whose backlog passes --max-queue is closed 1008; the others get every message."""
    check_slow_consumer(spawn, name)


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_unanswered_close_dropped(spawn, name):
    """A client that never answers the server's close frame is dropped after --close-timeout."""
    check_unanswered_close_dropped(spawn, name)


@pytest.mark.parametrize("name", LIBRARY_TARGETS)
def test_silent_clients_do_not_block_shutdown(spawn, name):
    """SIGTERM ends the server (exit 0) even when clients never answer its close frames."""
    check_silent_clients_do_not_block_shutdown(spawn, name)
