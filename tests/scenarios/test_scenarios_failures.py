"""Failures are counted with what happened, and a misbehaving server never crashes Locust."""

from __future__ import annotations

import contextlib
import errno
import socket

from websockets.exceptions import ConnectionClosed as ServerSideClosed

from scenarios.failures import ConnectionClosed, NetworkError, WsTimeout, classify

CLOSE_AFTER = 20


def _close_with_1011_after_some_messages(connection) -> None:
    with contextlib.suppress(ServerSideClosed):
        for count, message in enumerate(connection, start=1):
            connection.send(message)
            if count == CLOSE_AFTER:
                connection.close(1011, "test: closing mid-run")
                return


def test_server_closing_mid_run_gives_failures_with_the_close_code(ws_server, run_locust):
    """Connections closed with 1011 are failures naming 1011; users reconnect and go on."""
    with ws_server(_close_with_1011_after_some_messages) as url:
        run = run_locust("echo", url, "--reconnect-max-ms", "200", users=2, duration="3s")
    assert run.returncode == 1, run.describe()  # Locust's exit code when there were failures
    assert "Traceback" not in run.output, run.describe()
    failures = [row for row in run.failures if "1011" in row["Error"]]
    assert failures and "internal error" in failures[0]["Error"], run.describe()
    echo = run.locust_stats["echo"]
    assert echo["num_failures"] >= 4, run.describe()  # several drops: the users reconnected
    assert run.latency["echo"]["count"] >= 4 * (CLOSE_AFTER - 1)
    assert run.latency["ws upgrade"]["count"] >= 4


def test_refused_connections_are_failures_and_back_off(run_locust):
    """A port nobody listens on gives 'refused' failures, spaced by the back-off."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connects are refused
        run = run_locust("echo", f"ws://127.0.0.1:{port}", users=2, duration="3s")
    assert run.returncode == 1, run.describe()
    assert "Traceback" not in run.output, run.describe()
    connects = run.locust_stats["tcp connect"]
    assert connects["num_failures"] == connects["num_requests"] > 0
    assert connects["num_failures"] < 40, "no back-off: reconnects hammer the server"
    assert any("refused: ECONNREFUSED" in row["Error"] for row in run.failures), run.describe()


def test_errno_failures_are_named():
    """Socket errors read as their errno name: EADDRNOTAVAIL, EMFILE, refused, timeout."""
    no_port = classify(OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "x")
    assert isinstance(no_port, NetworkError)
    assert "EADDRNOTAVAIL" in str(no_port)
    assert "EMFILE" in str(classify(OSError(errno.EMFILE, "Too many open files"), "x"))
    assert str(classify(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "x")).startswith(
        "refused: ECONNREFUSED"
    )
    assert isinstance(classify(TimeoutError(), "recv"), WsTimeout)
    assert str(ConnectionClosed(1008, "slow")) == "closed by server: 1008 (policy violation) 'slow'"


def _never_answer(connection) -> None:
    with contextlib.suppress(ServerSideClosed):
        for _ in connection:
            pass  # reads everything, answers nothing


def test_a_server_that_never_answers_gives_timeouts(ws_server, run_locust):
    """With --ws-timeout-s 0.5, unanswered echoes fail as timeouts and the user reconnects."""
    with ws_server(_never_answer) as url:
        run = run_locust("echo", url, "--ws-timeout-s", "0.5", users=2, duration="3s")
    assert run.returncode == 1, run.describe()
    echo = run.locust_stats["echo"]
    assert echo["num_requests"] == echo["num_failures"] >= 2, run.describe()
    assert any("timeout: no reply within 0.5 s" in row["Error"] for row in run.failures)
    assert run.locust_stats["ws upgrade"]["num_requests"] >= 3  # reconnected after a timeout
