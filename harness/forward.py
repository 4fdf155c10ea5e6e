"""A TCP port on the host forwarded to a port inside one of a point's network namespaces.

With a kernel profile, `wsbench ui` runs Locust (and so its web UI) in client namespace 0,
which has no link to the host: a browser on the host could not reach it. This listens on the
host address the user chose and, for each connection, opens one to 127.0.0.1:PORT inside the
namespace: the socket is made by a thread that entered the namespace (setns(2) moves only the
calling thread), and a socket belongs to the namespace it was made in, whichever thread then
uses it. Bytes are copied both ways by a thread per direction; a connection that closes one
way is shut down that way on the other side (HTTP keep-alive, as a browser uses, works).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Iterator

from common.errors import WsbenchError

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT_S = 5.0
CHUNK = 65536


class ForwardError(WsbenchError):
    """The forward could not be set up; one line for the user."""


def _enter_namespace(pid: int) -> None:
    """Move the calling thread into the network namespace of process `pid`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(fd)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end `sink`'s writing side."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class Forward:
    """host:port -> 127.0.0.1:inner_port in the namespace of `namespace_pid`."""

    def __init__(self, host: str, port: int, namespace_pid: int, inner_port: int) -> None:
        self.inner_port = inner_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.listener = socket.create_server((host, port), family=family, reuse_port=False)
        except OSError as exc:
            raise ForwardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.inside = concurrent.futures.ThreadPoolExecutor(
            1, "netns-connect", initializer=_enter_namespace, initargs=(namespace_pid,)
        )
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, name="forward", daemon=True)

    def start(self) -> Forward:
        self._accepting.start()
        return self

    def _connect_inside(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.inner_port), CONNECT_TIMEOUT_S)
        sock.settimeout(None)
        return sock

    def _accept(self) -> None:
        while True:
            try:
                outer, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                inner = self.inside.submit(self._connect_inside).result()
            except (OSError, RuntimeError):
                outer.close()  # nothing listens inside (yet); the browser sees a reset
                continue
            with self._lock:
                self._open.update((outer, inner))
            running = [2]  # directions still copying; the last to end closes both sockets
            for source, sink in ((outer, inner), (inner, outer)):
                threading.Thread(target=self._copy, args=(source, sink, running),
                                 daemon=True).start()  # fmt: skip

    def _copy(self, source: socket.socket, sink: socket.socket, running: list[int]) -> None:
        _pump(source, sink)
        with self._lock:
            running[0] -= 1
            if running[0]:
                return
            self._open.difference_update((source, sink))
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accepting.join(5)
        with self._lock:
            left, self._open = list(self._open), set()
        for sock in left:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.inside.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def forwarded(host: str, port: int, namespace_pid: int, inner_port: int) -> Iterator[Forward]:
    """A running Forward, closed at exit."""
    forward = Forward(host, port, namespace_pid, inner_port).start()
    try:
        yield forward
    finally:
        forward.close()
