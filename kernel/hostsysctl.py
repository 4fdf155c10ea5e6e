"""Change host-wide sysctls for a run, and never leave them changed.

Some sysctls are not per network namespace on Linux (net.ipv4.tcp_mem, net.core.rmem_max,
net.core.wmem_max, net.core.netdev_max_backlog, fs.file-max, nf_conntrack_max): setting them
changes the whole machine. A run may set them only when the user passes --host-sysctls, and
`applied()` puts every original back when the run ends, by exception or Ctrl-C included.

A SIGKILL runs no `finally`, so before changing anything `applied()` saves the originals in
`state_path()` (on tmpfs, so it goes at reboot with the values it describes). The next start of
wsbench calls `recover()`, which restores what a dead run left changed.

Exceptions:

    HostSysctlError    one line for the user; every failure this module reports
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from common.errors import WsbenchError
from kernel.inside import PROC_SYS, fold, sysctl_path

DEFAULT_STATE_DIR = Path("/run/wsbench")
STATE_FILE = "host-sysctls.json"

Say = Callable[[str], None]


class HostSysctlError(WsbenchError):
    """A host sysctl could not be read, set or restored; the message is one line for the user."""


def state_path() -> Path:
    """Where a run's saved originals live: `$WSBENCH_STATE_DIR/host-sysctls.json`."""
    return Path(os.environ.get("WSBENCH_STATE_DIR") or DEFAULT_STATE_DIR) / STATE_FILE


def read(name: str, proc_sys: Path = PROC_SYS) -> str:
    """The value as `sysctl -n` prints it, whitespace folded to single spaces."""
    try:
        return fold(_path(proc_sys, name).read_text())
    except FileNotFoundError:
        raise HostSysctlError(
            f"sysctl {name} does not exist on this kernel (module not loaded?)"
        ) from None
    except OSError as e:
        raise HostSysctlError(f"cannot read sysctl {name}: {e.strerror}") from None


def recover(say: Say, proc_sys: Path = PROC_SYS) -> dict[str, str]:
    """Restore the host sysctls a dead run left changed; return what was written back.

    A state file whose run is still alive is left alone (that run restores its own values).
    """
    path = state_path()
    if not path.exists():
        return {}
    with _locked(path):
        state = _load(path)
        if state is None or _alive(state):
            return {}  # a live run restores its own values
        return _restore_dead(path, state, say, proc_sys)


@contextmanager
def applied(
    values: Mapping[str, str | int | Sequence[int]], say: Say, proc_sys: Path = PROC_SYS
) -> Iterator[dict[str, str]]:
    """Set host sysctls for the duration of the block; yield the values in force (read back).

    Lists and tuples are written space-separated (`tcp_mem` takes "min pressure max"). Keys
    already at the requested value are not written, but are saved and restored all the same.
    """
    wanted = {name: _format(value) for name, value in values.items()}
    path = state_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HostSysctlError(
            f"cannot create {path.parent}: {e.strerror} (set WSBENCH_STATE_DIR elsewhere)"
        ) from None
    with _locked(path):
        state = _load(path)
        if state is not None:
            _refuse_if_alive(state)
            _restore_dead(path, state, say, proc_sys)
        originals = {name: read(name, proc_sys) for name in wanted}
        _write_state(path, originals)
    try:
        for name, text in wanted.items():
            if fold(text) != originals[name]:
                _set(name, text, proc_sys)
        in_force = {name: read(name, proc_sys) for name in wanted}
        say("host sysctls set for this run: " + _changes(in_force, originals))
        yield in_force
    finally:
        _restore_own(path, originals, say, proc_sys)


def _refuse_if_alive(state: dict[str, Any]) -> None:
    pid = state["pid"]
    if pid == os.getpid():
        raise HostSysctlError("host sysctls are already changed by this run; not nesting")
    if _alive(state):
        raise HostSysctlError(
            f"another wsbench run (pid {pid}) has host sysctls changed; wait for it to finish"
        )


def _restore_dead(path: Path, state: dict[str, Any], say: Say, proc_sys: Path) -> dict[str, str]:
    """Write back the originals a dead run saved, then delete its state file."""
    pid = state["pid"]
    originals: dict[str, str] = state["originals"]
    _, failed = _restore(originals, say, proc_sys)
    if failed:
        raise HostSysctlError(
            f"could not restore host sysctls an interrupted run (pid {pid}) left changed"
            f" ({'; '.join(failed)}); set them by hand and delete {path}"
        )
    path.unlink()
    if originals:
        say(
            f"restored host sysctls an interrupted run (pid {pid}) left changed: "
            + ", ".join(f"{name}={value}" for name, value in originals.items())
        )
    return dict(originals)


def _restore_own(path: Path, originals: dict[str, str], say: Say, proc_sys: Path) -> None:
    restored, failed = _restore(originals, say, proc_sys)
    if restored:
        say("host sysctls restored: " + ", ".join(restored))
    if failed:
        # Keep the file: the next wsbench start retries, and it tells the user the originals.
        raise HostSysctlError(
            f"could not restore host sysctls ({'; '.join(failed)}); originals kept in {path}"
        )
    path.unlink(missing_ok=True)


def _restore(originals: dict[str, str], say: Say, proc_sys: Path) -> tuple[list[str], list[str]]:
    """Write back every original that differs, last set first; return (restored, failed)."""
    failed = []
    restored = []
    for name, value in reversed(originals.items()):
        try:
            current = fold(_path(proc_sys, name).read_text())
        except FileNotFoundError:
            say(f"host sysctl {name} no longer exists (module unloaded?); nothing to restore")
            continue
        except OSError as e:
            current = f"unreadable: {e.strerror}"
        if current == value:
            continue
        try:
            _set(name, value, proc_sys)
        except HostSysctlError as e:
            say(f"could not restore: {e}")
            failed.append(f"{name}={value}")
        else:
            restored.append(f"{name}={value}")
    return restored[::-1], failed


def _set(name: str, text: str, proc_sys: Path) -> None:
    try:
        # O_TRUNC: procfs ignores it, a fake tree in a test needs it. One write: the kernel
        # parses a sysctl from a single write() at offset 0.
        fd = os.open(_path(proc_sys, name), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise HostSysctlError(f"cannot set host sysctl {name}={text}: {e.strerror}") from None


def _write_state(path: Path, originals: dict[str, str]) -> None:
    """Save the originals atomically and durably, before any value is changed."""
    state = {
        "pid": os.getpid(),
        "pid_started_unix_s": psutil.Process().create_time(),
        "started_unix_s": time.time(),
        "originals": originals,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as f:
            json.dump(state, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HostSysctlError(
            f"cannot save host sysctl originals to {path}: {e.strerror}"
        ) from None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise _corrupt(path, str(e)) from None
    if not isinstance(state, dict):
        raise _corrupt(path, "not a JSON object")
    pid, originals = state.get("pid"), state.get("originals")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise _corrupt(path, "no valid pid")
    if not isinstance(originals, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in originals.items()
    ):
        raise _corrupt(path, "no valid originals")
    return state


def _corrupt(path: Path, reason: str) -> HostSysctlError:
    return HostSysctlError(
        f"host sysctl state file {path} is unreadable ({reason}); inspect it, restore the"
        " values it lists by hand, and delete it"
    )


def _alive(state: dict[str, Any]) -> bool:
    """Whether the run that wrote the state file still runs (not a zombie, not a reused pid)."""
    pid, started = state["pid"], state.get("pid_started_unix_s")
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if isinstance(started, int | float) and abs(proc.create_time() - started) > 1.0:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise check-and-claim of the state file between wsbench processes starting at once."""
    with path.with_name(f".{path.name}.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _path(proc_sys: Path, name: str) -> Path:
    try:
        return sysctl_path(name, proc_sys)
    except ValueError as e:
        raise HostSysctlError(str(e)) from None


def _format(value: str | int | Sequence[int]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list | tuple):
        return " ".join(str(int(v)) for v in value)
    raise TypeError(f"a sysctl value is a str, int or sequence of ints, not {value!r}")


def _changes(in_force: dict[str, str], originals: dict[str, str]) -> str:
    return ", ".join(f"{name}={value} (was {originals[name]})" for name, value in in_force.items())
