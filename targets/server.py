"""`python -m targets NAME`: start a reference target, print `ready ws://HOST:PORT`, serve.

One process serves directly. With `--processes N` this process becomes a supervisor: it reserves
the port, starts N workers that each listen on it with SO_REUSEPORT (the kernel spreads new
connections over them), forwards SIGTERM/SIGINT to them and prints one ready line once all are
ready. Workers die with the supervisor (PR_SET_PDEATHSIG), so killing it leaves no orphan.
Once all are ready, a worker that exits (a failover drill's SIGKILL, a crash) is replaced by a new
one on the same port; a replacement that is never ready, or too many of them too fast, stops all.
The supervisor also keeps the directory where workers leave their counters for each other's
/metrics (targets/metrics.py) and deletes a worker's when it reaps it.

With `--compression deflate` the aiohttp and websockets targets accept permessage-deflate
(RFC 7692) through their library's own implementation, with its defaults; the raw target
refuses it in one line (its core has no RFC 7692).

With `--broker redis://HOST:PORT` every process relays its rooms through Redis (targets/broker.py),
so a room spans all of them; without it rooms are per process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import procs as child
from common.errors import WsbenchError
from targets import COMPRESSIONS, DEFLATE_TARGETS, TARGETS, pauses
from targets.hub import Rooms
from targets.metrics import Snapshots, exposition, forget
from targets.protocol import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_QUEUE_BYTES,
    Limits,
    Stats,
)

LISTEN_BACKLOG = 65535  # the kernel caps it at net.core.somaxconn
READY_TIMEOUT_S = 30.0
# More replacements than this within RESPAWN_WINDOW_S is a crash loop: stop rather than respawn.
MAX_RESPAWNS = 10
RESPAWN_WINDOW_S = 10.0


class TargetError(WsbenchError):
    """A start-up failure reported as one line and a non-zero exit, without a traceback."""


@dataclass
class ServeContext:
    """What a target module's `serve()` gets: a listening socket and the shared machinery."""

    sock: socket.socket
    ssl_context: ssl.SSLContext | None
    limits: Limits
    stats: Stats = field(default_factory=Stats)
    rooms: Rooms = field(init=False)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: Callable[[], None] = lambda: None
    peers: Snapshots | None = None  # with --processes: the workers' counters, for /metrics
    deflate: bool = False  # --compression deflate: accept permessage-deflate when offered

    def __post_init__(self) -> None:
        self.rooms = Rooms(self.stats)

    def stats_json(self, target: str) -> dict[str, object]:
        return self.stats.as_dict(target=target, pid=os.getpid())

    def metrics_text(self, target: str) -> bytes:
        """The /metrics body: every worker's counters (metrics.CONTENT_TYPE)."""
        return exposition(target, self.stats, self.peers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m targets",
        description="Start a wsbench reference WebSocket server. It serves /echo, "
        "/broadcast?room=R, /push?rate=R&size=S&count=N, /stats and /metrics, and prints "
        "`ready ws://HOST:PORT` once it accepts connections.",
    )
    parser.add_argument("target", choices=sorted(TARGETS), help="which implementation to run")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes sharing the port with SO_REUSEPORT (default 1). /stats is per "
        "process, /metrics shows every worker; broadcast rooms are per process unless --broker "
        "(without it, members of one room must reach the same worker). A worker that dies is "
        "replaced.",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help="redis://HOST:PORT: relay broadcast rooms through this Redis, so a room spans "
        "every process (default: none)",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="deflate: accept permessage-deflate (RFC 7692) from clients that offer it, "
        f"with the library's own implementation ({', '.join(sorted(DEFLATE_TARGETS))}; the "
        "raw target refuses it); default: none",
    )
    parser.add_argument(
        "--tls", action="store_true", help="serve wss:// with a throwaway certificate"
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        help="with --tls: where to write the CA certificate clients must trust "
        "(default: a temporary file, path printed on stderr)",
    )
    _add_limits(parser)
    # Internal: how a supervisor starts its workers.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tls-cert", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tls-key", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--peers-dir", type=Path, help=argparse.SUPPRESS)
    return parser


def _add_limits(parser: argparse.ArgumentParser) -> None:
    """The per-connection limits every target enforces alike (protocol.Limits)."""
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest message accepted, bytes; larger ones are closed with 1009 "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE_BYTES,
        help="outgoing bytes buffered per connection before it is closed with 1008 as a slow "
        "consumer (default %(default)s)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=DEFAULT_HANDSHAKE_TIMEOUT_S,
        help="seconds a client has to complete its opening handshake (default %(default)s)",
    )
    parser.add_argument(
        "--close-timeout",
        type=float,
        default=DEFAULT_CLOSE_TIMEOUT_S,
        help="seconds to wait for a client's close frame before dropping it (default %(default)s)",
    )


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise TargetError(f"--port must be between 0 and 65535, got {port}")


def check_compression(target: str, compression: str) -> None:
    if compression == "deflate" and target not in DEFLATE_TARGETS:
        raise TargetError(f"the {target} target does not implement permessage-deflate "
                          f"(RFC 7692): use --compression none, or the "
                          f"{' or '.join(sorted(DEFLATE_TARGETS))} target")  # fmt: skip


def limits_from(args: argparse.Namespace) -> Limits:
    for name in ("max_size", "max_queue"):
        if getattr(args, name) <= 0:
            raise TargetError(f"--{name.replace('_', '-')} must be positive")
    for name in ("handshake_timeout", "close_timeout"):
        if getattr(args, name) <= 0:
            raise TargetError(f"--{name.replace('_', '-')} must be positive")
    return Limits(
        max_message_bytes=args.max_size,
        max_queue_bytes=args.max_queue,
        handshake_timeout_s=args.handshake_timeout,
        close_timeout_s=args.close_timeout,
    )


def make_certificates(host: str, directory: Path, ca_file: Path | None) -> tuple[Path, Path, Path]:
    """A throwaway CA (trustme) and a server certificate for `host`; returns (ca, cert, key)."""
    import trustme

    ca = trustme.CA()
    names = [host, "localhost", "127.0.0.1", "::1"] if host else ["localhost"]
    server_cert = ca.issue_cert(*dict.fromkeys(names))
    ca_path = ca_file or directory / "ca.pem"
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    try:
        ca.cert_pem.write_to_path(str(ca_path))
    except OSError as exc:
        raise TargetError(f"cannot write the CA file {ca_path}: {exc.strerror or exc}") from None
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    server_cert.private_key_pem.write_to_path(str(key_path))
    return ca_path, cert_path, key_path


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def cannot_listen(host: str, port: int, exc: OSError) -> TargetError:
    return TargetError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    try:
        return socket.create_server(
            (host, port), family=family_of(host), backlog=LISTEN_BACKLOG, reuse_port=reuse_port
        )
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None


def url_of(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'wss' if tls else 'ws'}://{shown}:{port}"


def run_worker(args: argparse.Namespace, limits: Limits, ssl_context: ssl.SSLContext | None) -> int:
    module = importlib.import_module(TARGETS[args.target])
    sock = listen(args.host, args.port, reuse_port=args.worker)
    port = sock.getsockname()[1]
    url = url_of(args.host, port, ssl_context is not None)

    async def main() -> None:
        ctx = ServeContext(sock=sock, ssl_context=ssl_context, limits=limits,
                           deflate=args.compression == "deflate")  # fmt: skip
        snapshots = None
        if args.peers_dir is not None:
            ctx.peers = Snapshots(args.peers_dir)
            snapshots = asyncio.create_task(ctx.peers.keep_writing(ctx.stats))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ctx.stop.set)

        def ready() -> None:
            # From now on the long garbage collections go to stderr, where the harness finds
            # them (not before: a target that cannot start says so in one line).
            pauses.install()
            print(f"ready {url}", flush=True)

        ctx.ready = ready
        relay = None
        if args.broker:
            from targets import broker  # only then: redis is not imported without a broker

            relay = await broker.start(args.broker, ctx.stats, module.MESSAGE_FORM)
            ctx.rooms = relay.rooms
        if ctx.peers is not None:
            ctx.peers.write(ctx.stats)  # before the ready line: a scrape then shows every worker
        try:
            await module.serve(ctx)
        finally:
            if snapshots is not None:
                snapshots.cancel()
                ctx.peers.close()
            if relay is not None:
                await relay.close()

    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    return 0


def worker_command(
    args: argparse.Namespace, port: int, cert: Path | None, key: Path | None, peers_dir: Path
) -> list[str]:
    cmd = [
        sys.executable, "-m", "targets", args.target, "--worker",
        "--host", args.host, "--port", str(port), "--loop", args.loop,
        "--peers-dir", str(peers_dir),
        "--max-size", str(args.max_size), "--max-queue", str(args.max_queue),
        "--handshake-timeout", str(args.handshake_timeout),
        "--close-timeout", str(args.close_timeout), "--compression", args.compression,
    ]  # fmt: skip
    if cert and key:
        cmd += ["--tls-cert", str(cert), "--tls-key", str(key)]
    if args.broker:
        cmd += ["--broker", args.broker]
    return cmd


def wait_ready(workers: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """Block until every worker printed its ready line; TargetError if one dies or is late."""
    try:
        child.wait_all_ready(workers, timeout_s)
    except child.NotReady as exc:
        raise TargetError(f"{len(exc.pending)} worker(s) not ready after {timeout_s:g} s") from None
    except child.ExitedEarly as exc:
        raise TargetError(
            f"worker {exc.proc.pid} exited with status {exc.status} before ready"
        ) from None


def exit_status_text(status: int) -> str:
    """`status 3`, or `status -9 (killed by SIGKILL)` for a process a signal ended (Popen's
    negative return code)."""
    if status >= 0:
        return f"status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"status {status} (killed by {name})"


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket that holds the port (bind picks it when
    `port` is 0) without taking a share of the connections: the kernel routes them to
    listening sockets."""
    if port:
        # SO_REUSEPORT would let us share a port another server (even another wsbench target)
        # holds, silently splitting its traffic: a plain bind first says whether it is free.
        listen(host, port, reuse_port=False).close()
    reservation = socket.socket(family_of(host))
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reservation.bind((host, port))
    except OSError as exc:
        reservation.close()
        raise cannot_listen(host, port, exc) from None
    return reservation


def next_exited(live: dict[int, subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    """Block until one of `live` exits; the ones that have, reaped (their returncode set)."""
    done = [w for w in live.values() if w.returncode is not None]  # reaped by send_signal
    while not done:
        try:
            # WNOWAIT: find who exited without reaping it, so Popen reaps it and keeps its status.
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # all of them reaped meanwhile (by a signal handler's poll)
            return [w for w in live.values() if w.poll() is not None]
        if info is None:
            continue
        worker = live.get(info.si_pid)
        if worker is None:
            os.waitpid(info.si_pid, 0)  # not a worker: nothing to do but reap it
            continue
        worker.wait()
        done = [worker]
    return done


class Supervisor:
    """The workers of one port: started, replaced when one dies, stopped on a signal."""

    def __init__(self, command: list[str], peers_dir: Path | None = None) -> None:
        self.command = command
        self.peers_dir = peers_dir
        self.live: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.failed = False
        self.respawns: deque[float] = deque()

    def start_worker(self) -> subprocess.Popen[bytes]:
        # In our process group, so a signal to the group reaches them too; SIGTERM if we die, so
        # they still close their clients with 1001.
        worker = child.spawn(self.command, stdout_pipe=True, new_session=False,
                             die_signal=signal.SIGTERM)  # fmt: skip
        self.live[worker.pid] = worker
        return worker

    def stop(self, *_: Any) -> None:
        """SIGTERM every worker (our SIGTERM/SIGINT handler)."""
        self.stopping = True
        for worker in tuple(self.live.values()):
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGTERM)

    def fail(self, message: str) -> None:
        print(f"targets: {message}", file=sys.stderr, flush=True)
        self.failed = True
        self.stop()

    def serve(self) -> int:
        """Replace workers that exit until stopped; 1 if stopped by a failure or a worker did
        not exit cleanly when stopped."""
        while self.live:
            for worker in next_exited(self.live):
                del self.live[worker.pid]
                if self.peers_dir is not None:
                    forget(self.peers_dir, worker.pid)  # its /metrics series end with it
                if self.stopping:
                    self.failed |= worker.returncode != 0
                else:
                    self.replace(worker)
        return 1 if self.failed else 0

    def replace(self, dead: subprocess.Popen[bytes]) -> None:
        now = time.monotonic()
        self.respawns.append(now)
        while self.respawns[0] < now - RESPAWN_WINDOW_S:
            self.respawns.popleft()
        if len(self.respawns) > MAX_RESPAWNS:
            self.fail(f"worker {dead.pid} exited with {exit_status_text(dead.returncode)}; "
                      f"more than {MAX_RESPAWNS} workers exited within {RESPAWN_WINDOW_S:g} s, "
                      "stopping")  # fmt: skip
            return
        new = self.start_worker()
        print(f"targets: worker {dead.pid} exited with {exit_status_text(dead.returncode)}; "
              f"started {new.pid}", file=sys.stderr, flush=True)  # fmt: skip
        try:
            wait_ready([new], READY_TIMEOUT_S)
        except TargetError as exc:
            if not self.stopping:
                self.fail(f"replacement {exc}")


def supervise(args: argparse.Namespace, cert: Path | None, key: Path | None) -> int:
    if args.broker:
        from targets import broker

        broker.check_reachable(args.broker)  # once here, rather than one line per worker
    reservation = reserve_port(args.host, args.port)
    port = reservation.getsockname()[1]
    peers_dir = Path(tempfile.mkdtemp(prefix="wsbench-workers-"))
    workers = Supervisor(worker_command(args, port, cert, key, peers_dir), peers_dir)
    signal.signal(signal.SIGTERM, workers.stop)
    signal.signal(signal.SIGINT, workers.stop)
    try:
        for _ in range(args.processes):
            workers.start_worker()
        wait_ready(list(workers.live.values()), READY_TIMEOUT_S)
        print(f"ready {url_of(args.host, port, cert is not None)}", flush=True)
        return workers.serve()
    finally:
        for worker in workers.live.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        reservation.close()
        shutil.rmtree(peers_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.processes < 1:
            raise TargetError("--processes must be at least 1")
        check_port(args.port)
        check_compression(args.target, args.compression)
        limits = limits_from(args)
        if args.broker:
            from targets import broker

            broker.check_url(args.broker)
        with tempfile.TemporaryDirectory(prefix="wsbench-tls-") as tmp:
            cert, key = args.tls_cert, args.tls_key
            if args.tls and not args.worker:
                ca, cert, key = make_certificates(args.host, Path(tmp), args.ca_file)
                print(f"ca-file: {ca}", file=sys.stderr, flush=True)
            if args.processes > 1 and not args.worker:
                return supervise(args, cert, key)
            context = server_ssl_context(cert, key) if cert and key else None
            return run_worker(args, limits, context)
    except TargetError as exc:
        print(f"targets: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        if exc.errno == errno.EMFILE:
            print("targets: too many open files (raise `ulimit -n`)", file=sys.stderr)
            return 1
        raise
