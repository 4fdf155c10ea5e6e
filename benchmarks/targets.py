"""`python -m benchmarks.targets`: echo throughput and idle-connection memory of the targets.

A benchmark that prints figures, not a test. Every target gets the same treatment:

- echo: a fresh target pinned to one CPU, and a lean uvloop client pinned to another CPU in its
  own process (`python -m benchmarks.targets --client echo ...`). The client keeps `--window` masked
  binary frames in flight on each of `--connections` connections, re-sending one frame per echo
  it receives. After a warm-up that is discarded it counts the echoes over `--duration` seconds.
  The CPU use of both processes over that window is printed so a CPU-bound client is visible.
- idle: a fresh target; its RSS is read before and after the client opens `--idle` WebSocket
  connections that send nothing; /stats must then report exactly that many connections.

The client speaks RFC 6455 by hand (a pre-built masked frame, headers of the server's frames
parsed only far enough to count them) so that it costs less per message than any server and the
figure measures the server. Children are pinned and die with this process (PR_SET_PDEATHSIG);
they are stopped with SIGTERM, then killed, whatever happens here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import resource
import selectors
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from targets import TARGETS
from targets.protocol import DEFAULT_MAX_MESSAGE_BYTES, ECHO_PATH, STATS_PATH

BASELINE = "aiohttp"
RAW = "raw"
RAW_MIN_ECHO_RATIO = 1.0  # raw echo throughput relative to aiohttp's
RAW_MAX_IDLE_KIB = 16.0  # raw server memory per idle connection

WARMUP_S = 1.0
SETTLE_S = 0.5  # a fresh target's idle time before its baseline RSS is read
IDLE_HOLD_S = 1.0  # idle connections open before the second RSS reading
OPEN_BATCH = 200  # handshakes in flight at once: no SYN backlog overflow
HANDSHAKE_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 2.0  # echoes still in flight when the measurement ends
CLOSE_TIMEOUT_S = 5.0  # the closing handshake of every connection
READY_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
CLIENT_BUSY_PCT = 90.0  # a client this busy measures itself, not the server

SEED = 6455  # payload and mask are random but the same in every run
MASK = random.Random(SEED).randbytes(4)
CLOSE_NORMAL = struct.pack("!H", 1000)
PR_SET_PDEATHSIG = 1
KIB = 1024


class BenchError(Exception):
    """A target or client that failed to start or answer; reported per target, not raised out."""


# -- frames: pure ------------------------------------------------------------------------------


def masked_frame(payload: bytes, mask: bytes, opcode: int = 0x2) -> bytes:
    """One unfragmented client frame (FIN set) carrying `payload` masked with the 4-byte `mask`."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return header + mask + masked


def scan_frames(data: bytes, offset: int = 0) -> tuple[int, int, bool]:
    """Count the frames whose header starts in `data` at or after `offset`.

    Returns (final data frames, offset after the last one, close frame seen). The offset is past
    len(data) when the last frame's payload is still to come, and below it when `data` ends in
    an incomplete header: the caller keeps those bytes for the next call. A frame is counted when
    its header arrives.
    """
    messages, closed, end = 0, False, len(data)
    while offset + 2 <= end:
        first, second = data[offset], data[offset + 1]
        length, header = second & 0x7F, 2
        if length == 126:
            header = 4
        elif length == 127:
            header = 10
        if second & 0x80:  # servers do not mask, but a masked frame is still a frame
            header += 4
        if offset + header > end:
            break
        if length >= 126:
            length = int.from_bytes(data[offset + 2 : offset + (4 if length == 126 else 10)], "big")
        opcode = first & 0x0F
        if opcode == 0x8:
            closed = True
        elif first & 0x80 and opcode < 0x8:
            messages += 1
        offset += header + length
    return messages, offset, closed


def handshake_request(host: str, port: int, path: str, key: bytes) -> bytes:
    """The opening handshake of a client (RFC 6455 §4.1) with the 16-byte nonce `key`."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(key).decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def bench_payload(size_bytes: int) -> bytes:
    """Random bytes, the same in every run."""
    return random.Random(SEED + size_bytes).randbytes(size_bytes)


# -- client process ----------------------------------------------------------------------------


class _Peer(asyncio.Protocol):
    """A client connection: opening handshake by hand, then `frames_received` gets the bytes."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.lost = False  # the TCP connection is gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.handshake.done():
            self.frames_received(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        status = self.head[: self.head.find(b"\r\n")]
        if status.split(b" ", 2)[1:2] != [b"101"]:
            self.handshake.set_exception(BenchError(f"handshake refused: {status.decode()!r}"))
            self.transport.close()  # type: ignore[union-attr]
            return
        self.handshake.set_result(None)
        if rest := self.head[end + 4 :]:
            self.frames_received(rest)

    def frames_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.handshake.done():
            self.handshake.set_exception(BenchError(f"connection lost in handshake: {exc}"))


class _EchoPeer(_Peer):
    """Keeps `window` frames in flight: one frame sent per echoed frame received."""

    def __init__(self, request: bytes, frame: bytes, window: int) -> None:
        super().__init__(request)
        self.frame, self.window = frame, window
        self.echoed = 0
        self.in_flight = 0
        self.sending = False
        self.server_closed = False
        self.skip = 0  # payload bytes of the current frame still to come
        self.tail = b""  # an incomplete header

    def start(self) -> None:
        assert self.transport is not None
        self.sending, self.in_flight = True, self.window
        self.transport.write(self.frame * self.window)

    def frames_received(self, data: bytes) -> None:
        if self.tail:
            data, self.tail = self.tail + data, b""
        if self.skip >= len(data):
            self.skip -= len(data)
            return
        messages, offset, closed = scan_frames(data, self.skip)
        self.skip = max(0, offset - len(data))
        self.tail = data[offset:]
        self.server_closed |= closed
        if not messages:
            return
        self.echoed += messages
        if self.sending:
            self.transport.write(self.frame * messages)  # type: ignore[union-attr]
        else:
            self.in_flight -= messages


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _open_peers(url: str, count: int, factory: Callable[[bytes], _Peer]) -> list[_Peer]:
    """`count` connections to `url` with completed handshakes, opened OPEN_BATCH at a time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = handshake_request(host, port, ECHO_PATH, os.urandom(16))
    loop = asyncio.get_running_loop()

    async def open_one() -> _Peer:
        _, peer = await loop.create_connection(lambda: factory(request), host, port)
        await asyncio.wait_for(peer.handshake, HANDSHAKE_TIMEOUT_S)
        return peer

    peers: list[_Peer] = []
    for start in range(0, count, OPEN_BATCH):
        batch = min(OPEN_BATCH, count - start)
        opened = await asyncio.gather(*(open_one() for _ in range(batch)), return_exceptions=True)
        failures = [p for p in opened if isinstance(p, BaseException)]
        peers += [p for p in opened if isinstance(p, _Peer)]
        if failures:
            print(f"bench client: {len(failures)} connection(s) failed: {failures[0]!r}",
                  file=sys.stderr)  # fmt: skip
            break
    return peers


async def _wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def _close(peers: Sequence[_Peer]) -> None:
    """The closing handshake (1000) on every connection, then the TCP close of any left."""
    frame = masked_frame(CLOSE_NORMAL, MASK, opcode=0x8)
    for peer in peers:
        if not peer.lost:
            peer.transport.write(frame)  # type: ignore[union-attr]
    await _wait_until(lambda: all(peer.lost for peer in peers), CLOSE_TIMEOUT_S)
    for peer in peers:
        peer.transport.close()  # type: ignore[union-attr]


async def run_echo_client(
    url: str, connections: int, window: int, size_bytes: int, duration_s: float
) -> None:
    """Echo load; emits `measuring` after the warm-up and `result` after `duration_s`."""
    frame = masked_frame(bench_payload(size_bytes), MASK)
    peers = await _open_peers(url, connections, lambda req: _EchoPeer(req, frame, window))
    if len(peers) < connections:
        raise BenchError(f"opened only {len(peers)} of {connections} connections")
    echo_peers = [p for p in peers if isinstance(p, _EchoPeer)]
    for peer in echo_peers:
        peer.start()
    await asyncio.sleep(WARMUP_S)
    echoed_before, started = sum(p.echoed for p in echo_peers), time.perf_counter()
    _emit("measuring")
    await asyncio.sleep(duration_s)
    echoed_after, ended = sum(p.echoed for p in echo_peers), time.perf_counter()
    lost = sum(p.lost or p.server_closed for p in echo_peers)
    _emit("result", messages=echoed_after - echoed_before, wall_s=ended - started, lost=lost)
    # Let the echoes in flight come back before closing, so no server writes to a closed socket.
    for peer in echo_peers:
        peer.sending = False
    await _wait_until(lambda: all(p.in_flight <= 0 or p.lost for p in echo_peers), DRAIN_TIMEOUT_S)
    await _close(peers)


async def run_idle_client(url: str, count: int) -> None:
    """Opens `count` silent connections, emits `opened`, closes them when stdin says so."""
    peers = await _open_peers(url, count, _Peer)
    _emit("opened", connections=len(peers))
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    lost = sum(p.lost for p in peers)
    await _close(peers)
    _emit("closed", lost=lost)


def client_main(args: argparse.Namespace) -> int:
    if args.client == "echo":
        coro = run_echo_client(args.url, args.connections, args.window, args.size, args.duration)
    else:
        coro = run_idle_client(args.url, args.idle)
    run: Callable[..., object] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    try:
        run(coro)
    except BenchError as exc:
        print(f"bench client: {exc}", file=sys.stderr)
        return 1
    return 0


# -- child processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    server_cpu: int
    client_cpu: int

    def describe(self) -> str:
        if self.server_cpu == self.client_cpu:
            return (f"server and client share CPU {self.server_cpu} (only one CPU available): "
                    "figures include the client's own cost")  # fmt: skip
        return (f"server pinned to CPU {self.server_cpu}, client to CPU {self.client_cpu} "
                "(sched_setaffinity)")  # fmt: skip


def choose_placement() -> Placement:
    cpus = sorted(os.sched_getaffinity(0))
    return Placement(cpus[0], cpus[1] if len(cpus) > 1 else cpus[0])


def _child_setup(cpu: int) -> Callable[[], None]:
    libc, parent = ctypes.CDLL(None, use_errno=True), os.getpid()

    def preexec() -> None:
        # In the child between fork and exec; pinning here covers every thread it starts later.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
        os.sched_setaffinity(0, {cpu})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return preexec


@contextlib.contextmanager
def running(cmd: Sequence[str], cpu: int, stdin: int | None = None) -> Iterator[subprocess.Popen]:
    """A child pinned to `cpu`, stopped (SIGTERM, then SIGKILL) when the block exits."""
    # bufsize=0: readline() takes one line at a time, so select() sees the next one.
    # A session of its own: Ctrl-C reaches only this process, which stops the children in order
    # (client, then server) instead of racing them.
    proc = subprocess.Popen(
        cmd,
        stdin=stdin,
        stdout=subprocess.PIPE,
        bufsize=0,
        start_new_session=True,
        preexec_fn=_child_setup(cpu),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def read_line(proc: subprocess.Popen, timeout_s: float, what: str) -> str:
    """The next stdout line of `proc`; BenchError if it exits or stays silent for `timeout_s`."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not sel.select(timeout_s):
            raise BenchError(f"{what}: nothing after {timeout_s:g} s")
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.endswith(b"\n"):
        raise BenchError(f"{what}: exited with status {proc.wait()}")
    return line.decode().strip()


def read_event(proc: subprocess.Popen, event: str, timeout_s: float) -> dict[str, object]:
    """The client's next JSON line, which must be `event`."""
    line = read_line(proc, timeout_s, f"bench client waiting for {event!r}")
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("event") != event:
        raise BenchError(f"bench client sent {line!r}, expected {event!r}")
    return data


def start_target(name: str, cpu: int) -> contextlib.AbstractContextManager[subprocess.Popen]:
    return running([sys.executable, "-m", "targets", name, "--port", "0"], cpu)


def read_ready(proc: subprocess.Popen, name: str) -> str:
    line = read_line(proc, READY_TIMEOUT_S, f"target {name}")
    if not line.startswith("ready "):
        raise BenchError(f"target {name}: unexpected first line {line!r}")
    return line.split(" ", 1)[1]


def client_command(mode: str, url: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "benchmarks.targets", "--client", mode, "--url", url,
        "--connections", str(args.connections), "--window", str(args.window),
        "--size", str(args.size), "--duration", str(args.duration), "--idle", str(args.idle),
    ]  # fmt: skip


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children."""
    return sum(sum(p.cpu_times()[:2]) for p in _tree(pid))


def core_times_s(cpu: int) -> tuple[float, float]:
    """(busy, total) seconds of one CPU since boot; busy includes softirq time, which loopback
    TCP spends outside any process's own CPU time."""
    times = psutil.cpu_times(percpu=True)[cpu]
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


def busy_pct(before: tuple[float, float], after: tuple[float, float]) -> float:
    total = after[1] - before[1]
    return 100 * (after[0] - before[0]) / total if total > 0 else 0.0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (workers with --processes > 1)."""
    return sum(p.memory_info().rss for p in _tree(pid))


def fetch_stats(url: str) -> dict[str, object]:
    """The target's /stats (plain HTTP on the WebSocket port, never through a proxy)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("GET", STATS_PATH)
        response = conn.getresponse()
        if response.status != 200:
            raise BenchError(f"GET {STATS_PATH}: HTTP {response.status}")
        return json.loads(response.read())
    finally:
        conn.close()


# -- measurements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoResult:
    msgs_per_s: float
    server_cpu_pct: float  # the process, % of one core
    client_cpu_pct: float
    server_core_busy_pct: float  # the CPU it is pinned to, whoever used it
    client_core_busy_pct: float
    lost_connections: int
    cores_shared: bool = False

    @property
    def client_bound(self) -> bool:
        """The client's core was saturated, so the figure measures the client. On a core of its
        own, softirq time counts too: it is loopback work the client's sends cause."""
        if self.cores_shared:
            return self.client_cpu_pct >= CLIENT_BUSY_PCT
        return max(self.client_cpu_pct, self.client_core_busy_pct) >= CLIENT_BUSY_PCT


@dataclass(frozen=True)
class IdleResult:
    rss_before_kib: float
    rss_after_kib: float
    opened: int
    server_connections: int

    @property
    def kib_per_conn(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / max(1, self.opened)


@dataclass
class TargetResult:
    name: str
    echo: EchoResult | None = None
    idle: IdleResult | None = None
    error: str | None = None


@dataclass(frozen=True)
class _CpuSample:
    at_s: float
    process_s: tuple[float, ...]
    core_s: tuple[tuple[float, float], ...]

    @classmethod
    def take(cls, pids: Sequence[int], cores: Sequence[int]) -> _CpuSample:
        return cls(time.monotonic(), tuple(map(cpu_s, pids)), tuple(map(core_times_s, cores)))

    def process_pct(self, later: _CpuSample) -> list[float]:
        wall_s = later.at_s - self.at_s
        pairs = zip(self.process_s, later.process_s, strict=True)
        return [100 * (after - before) / wall_s for before, after in pairs]

    def core_pct(self, later: _CpuSample) -> list[float]:
        return [busy_pct(a, b) for a, b in zip(self.core_s, later.core_s, strict=True)]


def measure_echo(name: str, args: argparse.Namespace, placement: Placement) -> EchoResult:
    cores = (placement.server_cpu, placement.client_cpu)
    with start_target(name, placement.server_cpu) as server:
        url = read_ready(server, name)
        with running(client_command("echo", url, args), placement.client_cpu) as client:
            pids = (server.pid, client.pid)
            read_event(client, "measuring", EVENT_TIMEOUT_S)
            first = _CpuSample.take(pids, cores)
            result = read_event(client, "result", args.duration + EVENT_TIMEOUT_S)
            last = _CpuSample.take(pids, cores)
    server_pct, client_pct = first.process_pct(last)
    server_core, client_core = first.core_pct(last)
    return EchoResult(
        msgs_per_s=float(result["messages"]) / float(result["wall_s"]),  # type: ignore[arg-type]
        server_cpu_pct=server_pct,
        client_cpu_pct=client_pct,
        server_core_busy_pct=server_core,
        client_core_busy_pct=client_core,
        lost_connections=int(result["lost"]),  # type: ignore[call-overload]
        cores_shared=placement.server_cpu == placement.client_cpu,
    )


def measure_idle(name: str, args: argparse.Namespace, placement: Placement) -> IdleResult:
    with start_target(name, placement.server_cpu) as server:
        url = read_ready(server, name)
        time.sleep(SETTLE_S)
        before = rss_bytes(server.pid)
        command = client_command("idle", url, args)
        with running(command, placement.client_cpu, stdin=subprocess.PIPE) as client:
            opened = read_event(client, "opened", EVENT_TIMEOUT_S)
            time.sleep(IDLE_HOLD_S)
            after = rss_bytes(server.pid)
            server_connections = fetch_stats(url)["connections"]
            client.stdin.write(b"close\n")  # type: ignore[union-attr]
            read_event(client, "closed", EVENT_TIMEOUT_S)
    return IdleResult(
        rss_before_kib=before / KIB,
        rss_after_kib=after / KIB,
        opened=int(opened["connections"]),  # type: ignore[call-overload]
        server_connections=int(server_connections),  # type: ignore[call-overload]
    )


def measure(name: str, args: argparse.Namespace, placement: Placement) -> TargetResult:
    result = TargetResult(name)
    if importlib.util.find_spec(TARGETS[name]) is None:
        result.error = "not available"
        return result
    try:
        print(f"{name}: echo, {args.duration:g} s ...", file=sys.stderr, flush=True)
        result.echo = measure_echo(name, args, placement)
        print(f"{name}: {args.idle} idle connections ...", file=sys.stderr, flush=True)
        result.idle = measure_idle(name, args, placement)
    except (BenchError, OSError, psutil.Error) as exc:
        result.error = f"failed: {exc}"
    return result


# -- report ------------------------------------------------------------------------------------


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def result_rows(results: Sequence[TargetResult]) -> list[list[str]]:
    by_name = {r.name: r for r in results}
    base = by_name.get(BASELINE)
    base_msgs = base.echo.msgs_per_s if base and base.echo else None
    base_kib = base.idle.kib_per_conn if base and base.idle else None
    rows = []
    for r in results:
        if r.error and not (r.echo or r.idle):
            rows.append([r.name, r.error, "", "", ""])
            continue
        msgs = r.echo.msgs_per_s if r.echo else None
        kib = r.idle.kib_per_conn if r.idle else None
        rows.append([
            r.name,
            _fmt(msgs, ",.0f"),
            _fmt(ratio(msgs, base_msgs), ".2f", "x"),
            _fmt(kib, ".1f"),
            _fmt(ratio(kib, base_kib), ".2f", "x"),
        ])  # fmt: skip
    return rows


def notes(result: TargetResult, idle: int) -> list[str]:
    """Lines that qualify a target's figures: CPU use, lost connections, connection counts."""
    out = []
    if result.error and (result.echo or result.idle):
        out.append(f"{result.name}: {result.error}")
    if echo := result.echo:
        out.append(f"{result.name}: echo CPU: server process {echo.server_cpu_pct:.0f}%, "
                   f"client process {echo.client_cpu_pct:.0f}% of one core; their cores busy "
                   f"{echo.server_core_busy_pct:.0f}% and {echo.client_core_busy_pct:.0f}% "
                   "(incl. kernel softirq)")  # fmt: skip
        if echo.client_bound:
            out.append(f"{result.name}: WARNING the client was CPU-bound: the echo figure "
                       "measures the client, not the server")  # fmt: skip
        if echo.lost_connections:
            out.append(f"{result.name}: WARNING {echo.lost_connections} connection(s) closed "
                       "during the measurement")  # fmt: skip
    if (rec := result.idle) and not rec.opened == rec.server_connections == idle:
        out.append(f"{result.name}: WARNING idle: client opened {rec.opened} of {idle}, "
                   f"/stats reports {rec.server_connections} connections")  # fmt: skip
    return out


@dataclass(frozen=True)
class Check:
    status: str  # PASS, FAIL or SKIP (could not be measured)
    text: str

    def __str__(self) -> str:
        return f"{self.status} {self.text}"


def checks(results: Sequence[TargetResult]) -> list[Check]:
    """The project's targets for `raw`, judged on the measured figures."""
    by_name = {r.name: r for r in results}
    raw, base = by_name.get(RAW), by_name.get(BASELINE)
    echo_text = f"raw echo throughput >= {RAW_MIN_ECHO_RATIO:.1f}x aiohttp's"
    idle_text = f"raw server memory per idle connection <= {RAW_MAX_IDLE_KIB:g} KiB"
    found = []
    if raw and raw.echo and base and base.echo:
        r = raw.echo.msgs_per_s / base.echo.msgs_per_s
        status = "PASS" if r >= RAW_MIN_ECHO_RATIO else "FAIL"
        found.append(Check(status, f"{echo_text} (measured {r:.2f}x)"))
    else:
        found.append(Check("SKIP", f"{echo_text} (raw and aiohttp echo figures needed)"))
    if raw and raw.idle:
        kib = raw.idle.kib_per_conn
        found.append(Check("PASS" if kib <= RAW_MAX_IDLE_KIB else "FAIL",
                           f"{idle_text} (measured {kib:.1f} KiB)"))  # fmt: skip
    else:
        found.append(Check("SKIP", f"{idle_text} (raw idle figure needed)"))
    return found


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def header_lines(args: argparse.Namespace, placement: Placement) -> list[str]:
    libs = ", ".join(f"{p} {_version(p)}" for p in ("aiohttp", "websockets", "uvloop", "psutil"))
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} usable); Linux {platform.release()}",
        f"software: Python {platform.python_version()}; {libs}",
        f"placement: {placement.describe()}",
        f"echo: {args.connections} connections x {args.window} in flight, {args.size}-byte "
        f"binary messages, {WARMUP_S:g} s warm-up discarded, {args.duration:g} s measured",
        f"idle: {args.idle} connections; server RSS read {SETTLE_S:g} s after start and "
        f"{IDLE_HOLD_S:g} s after the last handshake; 1 server process",
    ]


def report(args: argparse.Namespace, placement: Placement, results: list[TargetResult]) -> str:
    headers = ["target", "echo msgs/s", "ratio to aiohttp",
               "server RSS per idle conn (KiB)", "ratio to aiohttp"]  # fmt: skip
    lines = [*header_lines(args, placement), "", format_table(headers, result_rows(results)), ""]
    for r in results:
        lines += notes(r, args.idle)
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------


def _positive(kind: type) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _target_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TARGETS)}; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.targets",
        description="Echo throughput and server memory per idle connection of the reference "
        "targets, each against the same pinned client. Prints figures; not a test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--targets", type=_target_list, default=",".join(TARGETS), help="comma-separated")
    add("--duration", type=_positive(float), default=10.0, help="echo seconds measured")
    add("--connections", type=_positive(int), default=50, help="echo connections")
    add("--window", type=_positive(int), default=8, help="echo frames in flight per connection")
    add("--size", type=_positive(int), default=64,
        help=f"echo message bytes, at most {DEFAULT_MAX_MESSAGE_BYTES}")  # fmt: skip
    add("--idle", type=_positive(int), default=5000, help="idle connections for the memory figure")
    add("--check", action="store_true",
        help="exit 1 unless every check of the raw target passes (SKIP is not a pass)")  # fmt: skip
    # Internal: the client process.
    add("--client", choices=("echo", "idle"), help=argparse.SUPPRESS)
    add("--url", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.client:
        return client_main(args)
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.idle + 100 > nofile:
        build_parser().error(f"--idle {args.idle} needs more than the open-file limit {nofile}")
    if args.size > DEFAULT_MAX_MESSAGE_BYTES:
        build_parser().error(f"--size is over the targets' limit of {DEFAULT_MAX_MESSAGE_BYTES}")
    placement = choose_placement()
    try:
        results = [measure(name, args, placement) for name in args.targets]
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    print(report(args, placement, results))
    found = checks(results)
    print("\n".join(str(c) for c in found))
    return 1 if args.check and any(c.status != "PASS" for c in found) else 0


if __name__ == "__main__":
    sys.exit(main())
