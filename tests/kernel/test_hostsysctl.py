"""kernel.hostsysctl: host-wide sysctls are changed only inside applied() and always put back.

Most tests use a fake /proc/sys tree in tmp_path; one changes a real, harmless host-wide key
(net.core.netdev_max_backlog) in a child it SIGKILLs, and puts it back whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel import hostsysctl
from kernel.hostsysctl import HostSysctlError, applied, read, recover, state_path

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_KEY = "net.core.netdev_max_backlog"
REAL_FILE = Path("/proc/sys/net/core/netdev_max_backlog")
# A real sysctl even root cannot write (mode 0444): a genuine kernel write error for a fake key.
READ_ONLY = Path("/proc/sys/kernel/osrelease")

# A wsbench run that sets one sysctl, says so, and waits to be killed.
HOLDER = """
import sys, time
from pathlib import Path
from kernel import hostsysctl
name, value, proc_sys = sys.argv[1:4]
with hostsysctl.applied({name: value}, lambda line: None, Path(proc_sys)):
    print("applied", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("WSBENCH_STATE_DIR", str(path))
    return path


@pytest.fixture
def proc_sys(tmp_path: Path) -> Path:
    """A fake /proc/sys with the kernel's formatting (trailing newline, tabs in tcp_mem)."""
    root = tmp_path / "proc_sys"
    for name, text in {
        "net.core.rmem_max": "212992\n",
        "net.core.wmem_max": "212992\n",
        "net.ipv4.tcp_mem": "188856\t251810\t377712\n",
        "fs.file-max": "9223372036854775807\n",
    }.items():
        path = root.joinpath(*name.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    """Children started by a test; any still running at the end are killed."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def hold_applied(
    children: list[subprocess.Popen[str]], name: str, value: str, proc_sys: Path, state_dir: Path
) -> subprocess.Popen[str]:
    """Start a run that holds `name=value` applied; return once it says it has."""
    env = {**os.environ, "WSBENCH_STATE_DIR": str(state_dir), "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, name, value, str(proc_sys)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children.append(child)
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline()
    if line != "applied\n":
        child.kill()
        pytest.fail(f"holder did not apply: {line!r} {child.stderr.read()}")
    return child


def sigkill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_state_path_follows_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state file is in $WSBENCH_STATE_DIR, else on tmpfs in /run/wsbench."""
    monkeypatch.delenv("WSBENCH_STATE_DIR", raising=False)
    assert state_path() == Path("/run/wsbench/host-sysctls.json")
    monkeypatch.setenv("WSBENCH_STATE_DIR", "/tmp/elsewhere")
    assert state_path() == Path("/tmp/elsewhere/host-sysctls.json")


def test_read_prints_like_sysctl_n_and_names_a_missing_key(proc_sys: Path) -> None:
    """Whitespace is folded as `sysctl -n` shows it; a missing key says it may be a module."""
    assert read("net.ipv4.tcp_mem", proc_sys) == "188856 251810 377712"
    assert read("net/ipv4/tcp_mem", proc_sys) == "188856 251810 377712"
    with pytest.raises(HostSysctlError, match=r"^sysctl net.netfilter.nf_conntrack_max does not"):
        read("net.netfilter.nf_conntrack_max", proc_sys)


def test_applied_sets_the_values_and_restores_them(proc_sys: Path, state_dir: Path) -> None:
    """Inside the block the new values are in force (as read back); after it, the originals."""
    said: list[str] = []
    values = {"net.core.rmem_max": 4194304, "net.ipv4.tcp_mem": (1000, 2000, 3000)}
    with applied(values, said.append, proc_sys) as in_force:
        assert in_force == {"net.core.rmem_max": "4194304", "net.ipv4.tcp_mem": "1000 2000 3000"}
        assert read("net.core.rmem_max", proc_sys) == "4194304"
        assert read("net.ipv4.tcp_mem", proc_sys) == "1000 2000 3000"
    assert read("net.core.rmem_max", proc_sys) == "212992"
    assert read("net.ipv4.tcp_mem", proc_sys) == "188856 251810 377712"
    assert not state_path().exists()
    assert "net.core.rmem_max=4194304 (was 212992)" in said[0]
    assert said[-1].startswith("host sysctls restored: ")


def test_state_file_holds_the_originals_while_the_values_are_changed(
    proc_sys: Path, state_dir: Path
) -> None:
    """During the block a SIGKILL would leave the file naming this pid and every original."""
    with applied({"net.core.rmem_max": "1", "fs.file-max": 100}, print, proc_sys):
        state = json.loads(state_path().read_text())
        assert state["pid"] == os.getpid()
        assert state["originals"] == {
            "net.core.rmem_max": "212992",
            "fs.file-max": "9223372036854775807",
        }
        assert isinstance(state["started_unix_s"], float)
    assert not state_path().exists()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_exception_or_ctrl_c_in_the_block_still_restores(
    proc_sys: Path, state_dir: Path, error: type[BaseException]
) -> None:
    """A failing run and a Ctrl-C both put the originals back and remove the state file."""
    with pytest.raises(error), applied({"net.core.wmem_max": 999}, print, proc_sys):
        assert read("net.core.wmem_max", proc_sys) == "999"
        raise error("boom")
    assert read("net.core.wmem_max", proc_sys) == "212992"
    assert not state_path().exists()


def test_a_missing_key_fails_before_anything_is_changed(proc_sys: Path, state_dir: Path) -> None:
    """If one key does not exist, no key is written and no state file is left."""
    rmem = proc_sys / "net/core/rmem_max"
    before = rmem.read_bytes()
    values = {"net.core.rmem_max": 1, "net.netfilter.nf_conntrack_max": 262144}
    with (
        pytest.raises(HostSysctlError, match="module not loaded"),
        applied(values, print, proc_sys),
    ):
        pytest.fail("the block ran")
    assert rmem.read_bytes() == before
    assert not state_path().exists()


@pytest.mark.skipif(not READ_ONLY.exists(), reason="needs Linux /proc/sys/kernel/osrelease")
def test_a_write_failure_midway_restores_the_keys_already_written(
    proc_sys: Path, state_dir: Path
) -> None:
    """The kernel refusing the second key undoes the first, skips the third, says why."""
    (proc_sys / "kernel").mkdir()
    (proc_sys / "kernel/osrelease").symlink_to(READ_ONLY)
    values = {"net.core.rmem_max": 1, "kernel.osrelease": "9.9", "net.core.wmem_max": 2}
    with (
        pytest.raises(HostSysctlError, match=r"kernel\.osrelease=9\.9: Permission denied"),
        applied(values, print, proc_sys),
    ):
        pytest.fail("the block ran")
    assert read("net.core.rmem_max", proc_sys) == "212992"
    assert (proc_sys / "net/core/wmem_max").read_text() == "212992\n"
    assert not state_path().exists()


@pytest.mark.skipif(not READ_ONLY.exists(), reason="needs Linux /proc/sys/kernel/osrelease")
def test_a_key_already_at_the_value_is_not_written_but_is_recorded(
    proc_sys: Path, state_dir: Path
) -> None:
    """Asking for the current value of a key the kernel will not let us write is not an error."""
    (proc_sys / "kernel").mkdir()
    (proc_sys / "kernel/osrelease").symlink_to(READ_ONLY)
    release = READ_ONLY.read_text().strip()
    with applied({"kernel.osrelease": release}, print, proc_sys) as in_force:
        assert in_force == {"kernel.osrelease": release}
        assert json.loads(state_path().read_text())["originals"] == in_force


def test_a_failed_restore_keeps_the_state_file_and_raises(proc_sys: Path, state_dir: Path) -> None:
    """If one key cannot be put back, the others still are and the originals stay on disk."""
    wmem = proc_sys / "net/core/wmem_max"
    with (
        pytest.raises(HostSysctlError, match=r"could not restore .*net\.core\.wmem_max=212992"),
        applied({"net.core.rmem_max": 1, "net.core.wmem_max": 2}, print, proc_sys),
    ):
        wmem.unlink()
        wmem.mkdir()  # now neither readable nor writable as a value
    assert read("net.core.rmem_max", proc_sys) == "212992"
    assert json.loads(state_path().read_text())["originals"]["net.core.wmem_max"] == "212992"


def test_a_live_run_blocks_a_second_one_and_recover_leaves_it(
    proc_sys: Path, state_dir: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """While another run holds host sysctls, applied() refuses and recover() touches nothing."""
    holder = hold_applied(spawn, "net.core.rmem_max", "777", proc_sys, state_dir)
    with (
        pytest.raises(HostSysctlError) as caught,
        applied({"net.core.wmem_max": 1}, print, proc_sys),
    ):
        pytest.fail("the block ran")
    assert str(caught.value) == (
        f"another wsbench run (pid {holder.pid}) has host sysctls changed; wait for it to finish"
    )
    assert read("net.core.wmem_max", proc_sys) == "212992"
    assert recover(print, proc_sys) == {}
    assert read("net.core.rmem_max", proc_sys) == "777"
    assert json.loads(state_path().read_text())["pid"] == holder.pid


def test_recover_restores_what_a_killed_run_left_changed(
    proc_sys: Path, state_dir: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """After a SIGKILL the next start writes the saved originals back and says whose they were."""
    holder = hold_applied(spawn, "net.core.rmem_max", "777", proc_sys, state_dir)
    sigkill(holder)
    assert read("net.core.rmem_max", proc_sys) == "777"
    said: list[str] = []
    assert recover(said.append, proc_sys) == {"net.core.rmem_max": "212992"}
    assert read("net.core.rmem_max", proc_sys) == "212992"
    assert not state_path().exists()
    assert said == [
        f"restored host sysctls an interrupted run (pid {holder.pid}) left changed:"
        " net.core.rmem_max=212992"
    ]
    assert recover(said.append, proc_sys) == {}


def test_applied_recovers_a_killed_run_before_saving_its_own_originals(
    proc_sys: Path, state_dir: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """A new run saves the true originals, not the values a killed run left behind."""
    sigkill(hold_applied(spawn, "net.core.rmem_max", "777", proc_sys, state_dir))
    with applied({"net.core.rmem_max": 888}, print, proc_sys):
        saved = json.loads(state_path().read_text())["originals"]
        assert saved == {"net.core.rmem_max": "212992"}
    assert read("net.core.rmem_max", proc_sys) == "212992"


def test_a_reused_pid_does_not_pass_for_the_run_that_wrote_the_file(
    proc_sys: Path, state_dir: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """A live process with the recorded pid but a later start time is not that run."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    spawn.append(other)
    (proc_sys / "net/core/rmem_max").write_text("777\n")
    state_dir.mkdir()
    state_path().write_text(
        json.dumps(
            {
                "pid": other.pid,
                "pid_started_unix_s": 1.0,
                "started_unix_s": 1.0,
                "originals": {"net.core.rmem_max": "212992"},
            }
        )
    )
    assert recover(print, proc_sys) == {"net.core.rmem_max": "212992"}
    assert read("net.core.rmem_max", proc_sys) == "212992"


def test_a_corrupt_state_file_names_the_path_to_inspect(proc_sys: Path, state_dir: Path) -> None:
    """An unreadable state file stops recover() and applied() with the file to look at."""
    state_dir.mkdir()
    state_path().write_text('{"pid": 12')
    with pytest.raises(HostSysctlError, match=f"{state_path()}.*delete it"):
        recover(print, proc_sys)
    with (
        pytest.raises(HostSysctlError, match="unreadable"),
        applied({"net.core.rmem_max": 1}, print, proc_sys),
    ):
        pytest.fail("the block ran")
    assert read("net.core.rmem_max", proc_sys) == "212992"


@pytest.mark.skipif(os.geteuid() != 0, reason="changes a real host sysctl: needs root")
@pytest.mark.skipif(not REAL_FILE.exists(), reason=f"{REAL_KEY} absent on this kernel")
def test_real_host_sysctl_is_restored_after_the_run_is_sigkilled(
    state_dir: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """With the real /proc/sys, a SIGKILLed run's change is undone byte for byte by recover()."""
    if not os.access(REAL_FILE, os.W_OK):
        pytest.skip("/proc/sys is read-only here")
    original = REAL_FILE.read_bytes()
    changed = str(int(original) + 7)
    try:
        holder = hold_applied(spawn, REAL_KEY, changed, hostsysctl.PROC_SYS, state_dir)
        assert REAL_FILE.read_text().strip() == changed
        sigkill(holder)
        assert REAL_FILE.read_text().strip() == changed
        said: list[str] = []
        assert recover(said.append) == {REAL_KEY: original.decode().strip()}
        assert REAL_FILE.read_bytes() == original
        assert not state_path().exists()
        assert f"(pid {holder.pid})" in said[0]
    finally:
        if REAL_FILE.read_bytes() != original:
            REAL_FILE.write_bytes(original)
