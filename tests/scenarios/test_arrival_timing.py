"""Messages and upgrades timed at their arrival in the kernel (engine.ArrivalChannel,
connection.open_connection), and the self-check of a measurement timed so: the generator's own
delay is measured (read lag) and left out."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import gevent
import pytest

from scenarios import arrival, connection
from scenarios.connection import WS_UPGRADE, ConnectSettings, WsConnection, open_connection
from scenarios.cpu import judge
from scenarios.engine import ArrivalChannel, Channel, Engine
from scenarios.selfcheck import READ_LAG, SelfCheck
from targets.rfc6455.handshake import accept_response

BUSY_S = 0.05  # how long the hub is kept from reading: a generator busy with a fan-out's burst


class _Times:
    """A handler that keeps each message with the time the engine gave it."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, int]] = []

    def attached(self, channel: Channel) -> None:
        self.channel = channel

    def on_message(self, payload: bytes, now_ns: int) -> None:
        self.messages.append((payload, now_ns))

    def on_end(self, error: object) -> None:
        pass


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the generator's end, the server's end) of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setblocking(False)
    yield client, server
    client.close()
    server.close()


def _time_one_message(
    client: socket.socket, server: socket.socket, at_arrival: bool
) -> tuple[type, int, int, list[tuple[str, int]]]:
    """(channel class, sent ns, the message's time, lags recorded) for one frame the server
    sends while the hub is busy for BUSY_S before it can read."""
    lags: list[tuple[str, int]] = []
    handler = _Times()
    channel = Engine(lambda name, us: lags.append((name, us))).attach(
        WsConnection(client), handler, at_arrival)  # fmt: skip
    handler.attached(channel)
    channel.start()
    sent_ns = time.monotonic_ns()
    server.sendall(b"\x82\x05hello")  # an unmasked binary frame, as a server sends it
    time.sleep(BUSY_S)  # blocks the hub: the message waits in the socket meanwhile
    deadline = time.monotonic() + 2
    while not handler.messages and time.monotonic() < deadline:
        gevent.sleep(0.001)
    channel.close()
    assert [payload for payload, _ in handler.messages] == [b"hello"]
    return type(channel), sent_ns, handler.messages[0][1], lags


def test_a_message_timed_at_arrival_leaves_the_generators_delay_out(pair) -> None:
    channel_class, sent_ns, timed_ns, lags = _time_one_message(*pair, at_arrival=True)
    assert channel_class is ArrivalChannel
    # Timed when it reached the socket, long before the busy hub read it (the kernel's
    # realtime stamp on the monotonic clock: within a few µs) ...
    assert -100_000 <= timed_ns - sent_ns < BUSY_S * 1e9 / 5
    # ... and how long it waited for the generator is its read lag.
    (name, read_lag_us), = lags
    assert name == READ_LAG
    assert BUSY_S * 1e6 * 0.9 <= read_lag_us < BUSY_S * 1e6 * 10


def test_a_fresh_sockets_first_segment_comes_stamped() -> None:
    """The kernel switches stamping on later than a socket asks (and off after the last one
    asking closes): each fresh socket's first segment here would come unstamped, and be timed
    when read, had the first enable not held stamping on for the process."""
    unstamped = 0
    for _ in range(50):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
        with client, server:
            arrival.enable(client)
            server.sendall(b"x")
            _, ancillary, _, _ = client.recvmsg(1, arrival.SPACE)
            unstamped += arrival.arrived_ns(ancillary, time.monotonic_ns()) is None
        time.sleep(0.005)  # time for the kernel to switch stamping off, had nothing held it
    assert unstamped == 0


def test_a_message_timed_when_read_carries_the_generators_delay(pair) -> None:
    channel_class, sent_ns, timed_ns, lags = _time_one_message(*pair, at_arrival=False)
    assert channel_class is Channel
    assert timed_ns - sent_ns >= BUSY_S * 1e9 * 0.9
    assert lags == []


@pytest.mark.parametrize("at_arrival", [True, False])
def test_a_read_timed_at_arrival_first_makes_the_sends_due(pair, at_arrival: bool) -> None:
    """A burst of arrivals must not hold back a scheduled send (its lateness is in a figure
    timed from the intended send); a channel timed when read leaves the timer to the hub, so
    that the canary still sees how long the hub was busy reading."""
    client, server = pair
    engine = Engine(lambda name, us: None)
    handler = _Times()
    channel = engine.attach(WsConnection(client), handler, at_arrival)
    handler.attached(channel)
    ran: list[int] = []
    engine.timer.at(time.monotonic_ns() + 1_000_000, lambda _due, now: ran.append(now))
    server.sendall(b"\x82\x05hello")
    time.sleep(0.005)  # the send is due, the message waits: the hub has not come round
    channel._on_readable()  # the hub reads the message, as the socket's watcher would
    channel.close()
    assert [payload for payload, _ in handler.messages] == [b"hello"]
    assert len(ran) == (1 if at_arrival else 0)


def _upgrade_while_busy(monkeypatch: pytest.MonkeyPatch, at_arrival: bool) -> tuple[int, list]:
    """(the upgrade's reported µs, lags recorded) for an upgrade whose 101 response the
    server sends at once while the generator is busy for BUSY_S after sending the request."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def answer() -> None:
            server, _ = listener.accept()
            with server:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += server.recv(4096)
                key = re.search(rb"Sec-WebSocket-Key: *(\S+)", request, re.I).group(1)
                server.sendall(accept_response(key.decode()))
                server.recv(4096)  # until the client closes

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        send = connection._HandshakeReader.send

        def busy_after_send(self, data: bytes) -> int:
            sent = send(self, data)
            time.sleep(BUSY_S)  # the response arrives meanwhile, and waits to be read
            return sent

        monkeypatch.setattr(connection._HandshakeReader, "send", busy_after_send)
        reports, lags = {}, []
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/echo"

        def report(name: str, us: int, _length: int, error: object) -> None:
            reports.setdefault(name, (us, error))

        def lag(name: str, us: int) -> None:
            lags.append((name, us))

        ws = open_connection(url, ConnectSettings(timeout_s=5), report,
                             lag=lag if at_arrival else None)
        ws.abort()
        thread.join(5)
    us, error = reports[WS_UPGRADE]
    assert error is None
    return us, lags


def test_an_upgrade_timed_at_arrival_leaves_the_generators_delay_out(monkeypatch) -> None:
    upgrade_us, lags = _upgrade_while_busy(monkeypatch, at_arrival=True)
    # From the request's send to the response's arrival: the server's answer, not the wait.
    assert 0 < upgrade_us < BUSY_S * 1e6 / 5
    (name, read_lag_us), = lags
    assert name == READ_LAG
    assert BUSY_S * 1e6 * 0.8 <= read_lag_us < BUSY_S * 1e6 * 10


def test_an_upgrade_timed_when_read_carries_the_generators_delay(monkeypatch) -> None:
    upgrade_us, lags = _upgrade_while_busy(monkeypatch, at_arrival=False)
    assert upgrade_us >= BUSY_S * 1e6 * 0.9
    assert lags == []


def _check(at_arrival: bool, wake_p99_us: int, sends: tuple[int, int] = (50, 50),
           cpu_pct: float = 20.0, from_intended: bool = False,
           send_p99_us: int = 200) -> SelfCheck:  # fmt: skip
    return SelfCheck(
        wake_lag={"count": 400, "p99_us": wake_p99_us},
        send_lag={"count": 50, "p99_us": send_p99_us},
        read_lag={"count": 30_000, "p99_us": 11_000} if at_arrival else {},
        at_arrival=at_arrival,
        from_intended=from_intended,
        latency_name="broadcast",
        latency_p99_us=7_500,
        sends_due=sends[0],
        sends_made=sends[1],
        saturation=judge({"run": cpu_pct}, [cpu_pct]),
    )


def test_a_busy_hub_does_not_bind_a_measurement_timed_at_arrival() -> None:
    # A wake lag p99 of 4 ms against a 7.5 ms p99: timed when read, that is the generator's
    # share of the figure; timed at arrival, from a send stamped as it left, it is in neither
    # end of it.
    assert _check(at_arrival=False, wake_p99_us=4_000).bound
    arrival = _check(at_arrival=True, wake_p99_us=4_000)
    assert not arrival.bound and arrival.delay_in_figure_p99_us is None
    assert "not in broadcast: timed at arrival, read p99 11,000 µs later" in arrival.verdict()
    assert arrival.as_dict()["timed_at"] == "arrival"
    assert arrival.as_dict()["read_lag_us"]["p99_us"] == 11_000


def test_timed_at_arrival_from_an_intended_send_the_send_lag_is_the_delay() -> None:
    # echo_rate: the round trip starts at the intended send, so a late send is in it (and
    # binds), while the hub's lateness to read is not.
    reading_late = _check(True, wake_p99_us=4_000, from_intended=True)
    assert not reading_late.bound and reading_late.delay_in_figure_p99_us == 200
    assert reading_late.verdict().startswith(
        "generator ok: send lag p99 200 µs, against broadcast p99 7,500 µs (timed at arrival, "
        "read p99 11,000 µs later; wake lag p99 4,000 µs, not in it)")
    sending_late = _check(True, wake_p99_us=300, from_intended=True, send_p99_us=3_000)
    assert "generator send lag p99 3,000 µs is 40% of broadcast p99" in sending_late.verdict()


def test_timed_at_arrival_the_sends_and_cpu_rules_still_bind() -> None:
    assert "of the scheduled sends" in _check(True, 4_000, sends=(50, 40)).verdict()
    assert "of a core" in _check(True, 4_000, cpu_pct=95.0).verdict()
