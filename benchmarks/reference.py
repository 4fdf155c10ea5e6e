"""`python -m benchmarks.reference`: the yardstick client, picows + uvloop on one core.

What a compiled WebSocket client on a good event loop measures on the same schedule as our
Locust scenarios, so that `benchmarks.generator` can put our figures next to it:

    rate       N connections, each sending fixed-size binary messages at R msgs/s from a random
               phase; latency of each echo from its INTENDED send time (corrected, as
               scenarios/echo_rate.py's "echo corrected") and from the actual send
    broadcast  N subscribers and one publisher in one room of /broadcast, P publishes/s with
               targets/protocol.py's header; publish-to-receive latency at every member
               (publisher included, as scenarios/broadcast.py)

Sends are scheduled by one timerfd armed for the next send (ns precision: uvloop's own timers
have a 1 ms granularity, which would count as latency). Latency is counted per exact µs value
(a dict increment) and put into an HdrHistogram (1 µs .. 60 s, 3 significant figures) at the
end. Only sends intended inside the measured window count: the warm-up is discarded. Prints
one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import resource
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop
from hdrh.histogram import HdrHistogram
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks.locust_step import summary
from common.units import ns_to_us
from targets.protocol import BROADCAST_HEADER, decode_broadcast, encode_broadcast

LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES = 1, 60_000_000, 3
CONNECT_CONCURRENCY = 200
DRAIN_S = 2.0  # how long replies to the last sends are waited for
BATCH = 256  # sends per timer expiry at most
_CLOCK_MONOTONIC, _TFD_TIMER_ABSTIME = 1, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Timer:
    """One timerfd on the loop: `arm(at_ns)` calls `callback()` at that CLOCK_MONOTONIC instant."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self._spec = _Itimerspec()
        self._callback = callback
        loop.add_reader(self.fd, self._expired)

    def arm(self, at_ns: int) -> None:
        at_ns = max(at_ns, 1)  # 0 would disarm
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(at_ns, 1_000_000_000)
        self._libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)

    def _expired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        self._callback()

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.fd)
        os.close(self.fd)


class Recording:
    """Latency counts per exact µs value, for sends intended inside [start_ns, end_ns)."""

    def __init__(self) -> None:
        self.start_ns = 1 << 62
        self.end_ns = 1 << 62
        self.counts: dict[str, Counter[int]] = {}

    def histogram(self, name: str) -> HdrHistogram:
        histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        for value_us, count in self.counts.get(name, Counter()).items():
            histogram.record_value(min(max(value_us, LOWEST_US), HIGHEST_US), count)
        return histogram


class _Connection(WSListener):
    """One connection of the reference client: its transport, and what it does with the
    frames that are not its binary messages (kept off the per-message path)."""

    def __init__(self, recording: Recording) -> None:
        self.transport: WSTransport | None = None
        self.recording = recording

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    @staticmethod
    def _not_binary(transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.disconnect()


class EchoClient(_Connection):
    """One connection of the rate mode: what was sent and when, echoes recorded."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(recording)
        self.in_flight: deque[tuple[int, int]] = deque()
        self.corrected: Counter[int] = recording.counts.setdefault("corrected", Counter())
        self.uncorrected: Counter[int] = recording.counts.setdefault("uncorrected", Counter())
        self.payload = b""
        self.errors = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.BINARY:
            self._not_binary(transport, frame)
            return
        now_ns = time.monotonic_ns()
        if not self.in_flight or frame.payload_size != len(self.payload):
            self.errors += 1
            return
        intended_ns, sent_ns = self.in_flight.popleft()
        recording = self.recording
        if recording.start_ns <= intended_ns < recording.end_ns:
            self.corrected[ns_to_us(now_ns - intended_ns)] += 1
            self.uncorrected[ns_to_us(now_ns - sent_ns)] += 1

    def send(self, intended_ns: int, now_ns: int) -> None:
        self.in_flight.append((intended_ns, now_ns))
        self.transport.send(WSMsgType.BINARY, self.payload)  # type: ignore[union-attr]


class Schedule:
    """Every connection at the same rate from its own phase: the sends in time order.

    With one rate for all, one period visits the connections in phase order and the next
    repeats it, so the k-th send overall is connection k mod N at start + phase + k // N
    periods: an index, no heap.
    """

    def __init__(self, clients: Sequence[EchoClient], interval_ns: int, start_ns: int) -> None:
        phases = sorted((random.random() * interval_ns, n) for n in range(len(clients)))
        self.order = [clients[n] for _, n in phases]
        self.offsets_ns = [int(p) for p, _ in phases]
        self.interval_ns, self.start_ns = interval_ns, start_ns
        self.k = 0
        self.due = self.made = 0
        self.lag: Counter[int] = Counter()  # µs from intended to actual send
        self.stop_ns = 1 << 62

    def next_ns(self) -> int:
        n = len(self.order)
        return self.start_ns + self.offsets_ns[self.k % n] + (self.k // n) * self.interval_ns

    def run_due(self, recording: Recording) -> int:
        """Send what is due by now, at most BATCH; returns the next send's instant.

        A sender that has fallen behind yields after a batch (the timer, armed in the past,
        fires at once) so that echoes are read and the window ends on time.
        """
        clock, n = time.monotonic_ns, len(self.order)
        now_ns = clock()
        at_ns = self.next_ns()
        last_k = self.k + BATCH
        while at_ns <= now_ns and at_ns < self.stop_ns and self.k < last_k:
            client = self.order[self.k % n]
            counted = recording.start_ns <= at_ns < recording.end_ns
            if client.transport is not None and not client.transport.is_disconnected:
                client.send(at_ns, now_ns)
                if counted:
                    self.made += 1
                    self.lag[ns_to_us(now_ns - at_ns)] += 1
            if counted:
                self.due += 1
            self.k += 1
            at_ns = self.next_ns()
            if self.k % 64 == 0:
                now_ns = clock()
        return at_ns


SOURCE_IPS: list[str] = []  # local addresses to spread connections over (--source-ips)


async def _connect_all(url: str, count: int, factory: Callable[[], WSListener]) -> list[Any]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(n: int) -> Any:
        local = {"local_addr": (SOURCE_IPS[n % len(SOURCE_IPS)], 0)} if SOURCE_IPS else {}
        async with gate:
            _, listener = await ws_connect(factory, url, websocket_handshake_timeout=30, **local)
            return listener

    return list(await asyncio.gather(*(one(n) for n in range(count))))


SERVER_PID: list[int] = []  # --server-pid: whose CPU to report next to ours


class _Cpu:
    """CPU % of this process (and of the server, with --server-pid) since construction."""

    def __init__(self) -> None:
        self.wall_s, self.cpu_s = time.monotonic(), self._cpu()
        self.server_s = self._server_cpu()

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def _server_cpu() -> float:
        if not SERVER_PID:
            return 0.0
        try:
            fields = Path(f"/proc/{SERVER_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def pct(self) -> float:
        return 100 * (self._cpu() - self.cpu_s) / max(time.monotonic() - self.wall_s, 1e-9)

    def server_pct(self) -> float:
        elapsed_s = max(time.monotonic() - self.wall_s, 1e-9)
        return 100 * (self._server_cpu() - self.server_s) / elapsed_s


async def run_rate(args: argparse.Namespace) -> dict[str, Any]:
    recording = Recording()
    payload = b"x" * args.payload_bytes

    def factory() -> EchoClient:
        client = EchoClient(recording)
        client.payload = payload
        return client

    clients = await _connect_all(args.url + "/echo", args.connections, factory)
    loop = asyncio.get_running_loop()
    start_ns = time.monotonic_ns() + 50_000_000
    recording.start_ns = start_ns + int(args.warmup_s * 1e9)
    recording.end_ns = recording.start_ns + int(args.duration_s * 1e9)
    schedule = Schedule(clients, int(1e9 / args.rate), start_ns)
    schedule.stop_ns = recording.end_ns
    timer = Timer(loop, lambda: timer.arm(schedule.run_due(recording)))
    timer.arm(schedule.next_ns())
    await asyncio.sleep((recording.start_ns - time.monotonic_ns()) / 1e9)
    cpu = _Cpu()
    await asyncio.sleep((recording.end_ns - time.monotonic_ns()) / 1e9)
    cpu_pct, server_pct = cpu.pct(), cpu.server_pct()
    made_in_time = schedule.made  # sends of the window made by its end (late ones follow)
    due = len(clients) * int(args.duration_s * 1e9) // schedule.interval_ns
    await _drain(clients)
    timer.close(loop)
    recording.counts["send lag"] = schedule.lag
    return {
        "mode": "rate", "connections": args.connections, "rate_per_connection": args.rate,
        "duration_s": args.duration_s, "sends_due": due, "sends_made": made_in_time,
        "send_lag": summary(recording.histogram("send lag")),
        "corrected": summary(recording.histogram("corrected")),
        "uncorrected": summary(recording.histogram("uncorrected")),
        "unanswered": sum(len(c.in_flight) for c in clients),
        "errors": sum(c.errors for c in clients), "cpu_pct": round(cpu_pct, 1),
        "server_cpu_pct": round(server_pct, 1),
    }  # fmt: skip


async def _drain(clients: Sequence[EchoClient]) -> None:
    deadline = time.monotonic() + DRAIN_S
    while any(c.in_flight for c in clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for client in clients:
        if client.transport is not None:
            client.transport.disconnect()


class Member(_Connection):
    """A /broadcast member: publish-to-receive latency of every message relayed to it."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(recording)
        self.latency: Counter[int] = recording.counts.setdefault("broadcast", Counter())
        self.received = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.BINARY:
            self._not_binary(transport, frame)
            return
        now_ns = time.monotonic_ns()
        _, _, sent_ns = decode_broadcast(frame.get_payload_as_bytes())
        recording = self.recording
        if recording.start_ns <= sent_ns < recording.end_ns:
            self.latency[ns_to_us(now_ns - sent_ns)] += 1
            self.received += 1


async def run_broadcast(args: argparse.Namespace) -> dict[str, Any]:
    recording = Recording()
    url = f"{args.url}/broadcast?room={args.room}"
    members = await _connect_all(url, args.connections + 1, lambda: Member(recording))
    publisher = members[-1]  # a member too: it receives its own messages, as the protocol says
    loop = asyncio.get_running_loop()
    interval_ns = int(1e9 / args.rate)
    size = max(BROADCAST_HEADER.size, args.payload_bytes)
    publisher_id = random.getrandbits(32)
    state = {"seq": 0, "next_ns": time.monotonic_ns() + 50_000_000, "published": 0}
    recording.start_ns = state["next_ns"] + int(args.warmup_s * 1e9)
    recording.end_ns = recording.start_ns + int(args.duration_s * 1e9)

    def publish() -> None:
        now_ns = time.monotonic_ns()
        while state["next_ns"] <= now_ns and state["next_ns"] < recording.end_ns:
            message = encode_broadcast(publisher_id, state["seq"], size, time.monotonic_ns())
            publisher.transport.send(WSMsgType.BINARY, message)
            state["seq"] += 1
            state["next_ns"] += interval_ns
            if recording.start_ns <= now_ns < recording.end_ns:
                state["published"] += 1
        timer.arm(state["next_ns"])

    timer = Timer(loop, publish)
    timer.arm(state["next_ns"])
    await asyncio.sleep((recording.start_ns - time.monotonic_ns()) / 1e9)
    cpu = _Cpu()
    await asyncio.sleep(args.duration_s)
    cpu_pct, server_pct = cpu.pct(), cpu.server_pct()
    await asyncio.sleep(0.5)
    timer.close(loop)
    for member in members:
        if member.transport is not None:
            member.transport.disconnect()
    return {
        "mode": "broadcast", "subscribers": args.connections, "publish_rate": args.rate,
        "duration_s": args.duration_s, "published": state["published"],
        "deliveries": sum(m.received for m in members),
        "broadcast": summary(recording.histogram("broadcast")), "cpu_pct": round(cpu_pct, 1),
        "server_cpu_pct": round(server_pct, 1),
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("rate", "broadcast"))
    parser.add_argument("--url", required=True, help="ws://HOST:PORT (the mode adds the path)")
    parser.add_argument("--connections", type=int, default=1000,
                        help="echo connections, or subscribers (broadcast)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="msgs/s per connection (rate) or publishes/s (broadcast)")
    parser.add_argument("--payload-bytes", type=int, default=32)
    parser.add_argument("--room", default="reference")
    parser.add_argument("--server-pid", type=int, default=0,
                        help="also report this process's CPU over the measured window")
    parser.add_argument("--source-ips", default="",
                        help="comma-separated loopback addresses to connect from, round-robin")
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--duration-s", type=float, default=8.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    SOURCE_IPS[:] = [ip for ip in args.source_ips.split(",") if ip]
    SERVER_PID[:] = [args.server_pid] if args.server_pid else []
    runner = {"rate": run_rate, "broadcast": run_broadcast}[args.mode]
    result = uvloop.run(runner(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
