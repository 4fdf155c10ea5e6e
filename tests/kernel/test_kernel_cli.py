"""`wsbench kernel list|show` and `wsbench run --kernel-profile` as a user runs them.

Refusals must be one line on stderr, exit status 2, and nothing started or written. One test
(root only) runs tuned-host with --host-sysctls for 2 s and checks the host is left as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.hostsysctl import STATE_FILE
from kernel.profile import load

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60.0
RUN = ("run", "--target", "raw", "--scenario", "echo", "--users", "1", "--duration", "1s")


def wsbench(
    *args: str | Path, state_dir: Path, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`python runner.py ARGS` from the repo root, with host-sysctl state kept in `state_dir`."""
    env = {**os.environ, "WSBENCH_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [*prefix, sys.executable, "runner.py", *(str(a) for a in args)], cwd=REPO_ROOT,
        env=env, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single `wsbench: ...` line a refusal prints; fails on anything more."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("wsbench: ")
    return lines[0]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_kernel_list_names_every_profile(state_dir: Path) -> None:
    """`kernel list` shows host and every shipped profile, one per line, with what it is for."""
    done = wsbench("kernel", "list", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert names[0] == "host"
    assert set(names) >= {"host", "default", "tuned", "constrained", "tuned-host"}
    tuned = next(line for line in done.stdout.splitlines() if line.startswith("tuned "))
    assert load("tuned").description in tuned


def test_kernel_show_tuned(state_dir: Path) -> None:
    """`kernel show tuned`: the TOML as written, a row per sysctl, and sysctl -w lines."""
    done = wsbench("kernel", "show", "tuned", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    assert load("tuned").path.read_text().rstrip() in done.stdout
    row = re.compile(r"^[* ] server\s+net\.core\.somaxconn\s+\S+\s+\S+\s+65535\s*$", re.M)
    assert row.search(done.stdout), done.stdout
    assert "sysctl -w net.core.somaxconn=65535" in done.stdout.splitlines()
    assert "sysctl -w 'net.ipv4.ip_local_port_range=1024 65535'" in done.stdout.splitlines()


def test_kernel_show_unknown_profile(state_dir: Path) -> None:
    """`kernel show nope`: exit 2 and one line, no traceback."""
    done = wsbench("kernel", "show", "nope", state_dir=state_dir)
    assert _one_error_line(done).startswith("wsbench: unknown kernel profile")
    assert done.stdout == ""


def test_kernel_show_malformed_profile_file(tmp_path: Path, state_dir: Path) -> None:
    """A profile file with a port range that is not two numbers: one line, exit 2."""
    path = tmp_path / "bad.toml"
    path.write_text('description = "x"\n[client.sysctls]\n'
                    '"net.ipv4.ip_local_port_range" = "abc"\n')  # fmt: skip
    done = wsbench("kernel", "show", path, state_dir=state_dir)
    assert "ip_local_port_range" in _one_error_line(done)


def test_host_wide_profile_needs_host_sysctls(tmp_path: Path, state_dir: Path) -> None:
    """tuned-host without --host-sysctls is refused before any results folder is made."""
    out = tmp_path / "out"
    done = wsbench(*RUN, "--kernel-profile", "tuned-host", "--out", out, state_dir=state_dir)
    assert "--host-sysctls" in _one_error_line(done)
    assert not out.exists()


def test_client_hosts_need_a_kernel_profile(tmp_path: Path, state_dir: Path) -> None:
    """--client-hosts 2 with the host profile is refused."""
    out = tmp_path / "out"
    done = wsbench(*RUN, "--kernel-profile", "host", "--client-hosts", "2", "--out", out,
                   state_dir=state_dir)  # fmt: skip
    assert "--client-hosts" in _one_error_line(done)
    assert not out.exists()


def test_url_target_with_a_kernel_profile(tmp_path: Path, state_dir: Path) -> None:
    """A ws:// target is outside the namespaces: refused, pointing at --kernel-profile host."""
    out = tmp_path / "out"
    args = ["run", "--target", "ws://127.0.0.1:9/", *RUN[3:]]
    done = wsbench(*args, "--kernel-profile", "tuned", "--out", out, state_dir=state_dir)
    assert "--kernel-profile host" in _one_error_line(done)
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop capabilities")  # fmt: skip
def test_kernel_profile_without_privileges(tmp_path: Path, state_dir: Path) -> None:
    """Without CAP_NET_ADMIN/CAP_SYS_ADMIN: one line saying what is missing and what works."""
    out = tmp_path / "out"
    drop = ("setpriv", "--bounding-set", "-net_admin,-sys_admin", "--")
    done = wsbench(*RUN, "--kernel-profile", "tuned", "--out", out, state_dir=state_dir,
                   prefix=drop)  # fmt: skip
    line = _one_error_line(done)
    assert "CAP_NET_ADMIN" in line or "CAP_SYS_ADMIN" in line
    assert "--kernel-profile host" in line
    assert "still" in line
    assert not out.exists()


def _proc_sys(key: str) -> Path:
    return Path("/proc/sys", *key.split("."))


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and host sysctls need root")
def test_tuned_host_run_sets_and_restores_host_sysctls(tmp_path: Path, state_dir: Path) -> None:
    """A tuned-host run records its host values in force and leaves the host byte-identical."""
    profile = load("tuned-host")
    before = {key: _proc_sys(key).read_bytes() for key in profile.host}
    out = tmp_path / "x"
    try:
        done = wsbench(
            "run", "--target", "raw", "--scenario", "echo", "--users", "2", "--duration", "2s",
            "--kernel-profile", "tuned-host", "--host-sysctls", "--out", out, state_dir=state_dir,
        )  # fmt: skip
        assert done.returncode == 0, (done.stdout, done.stderr)
        meta = json.loads((out / "meta.json").read_text())
        in_force = meta["kernel_profiles"]["tuned-host"]["in_force"]["host"]
        assert in_force == {key: " ".join(v.split()) for key, v in profile.host.items()}
        after = {key: _proc_sys(key).read_bytes() for key in profile.host}
        assert after == before
        assert not (state_dir / STATE_FILE).exists()
    finally:
        for key, original in before.items():  # never leave the host changed, whatever failed
            if _proc_sys(key).read_bytes() != original:
                _proc_sys(key).write_bytes(original)


def test_a_profile_given_twice_is_refused(tmp_path: Path, state_dir: Path) -> None:
    """`run --kernel-profile default,default` would store two attempts under one point id."""
    out = tmp_path / "out"
    done = wsbench(*RUN, "--kernel-profile", "default,default", "--out", out, state_dir=state_dir)
    assert "default given more than once" in _one_error_line(done)
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the profile check probes namespaces: root only")
def test_unmeetable_limits_are_refused_before_the_sweep(tmp_path: Path, state_dir: Path) -> None:
    """A later point needing more source addresses than a host may have: said up front."""
    narrow = tmp_path / "narrow.toml"
    narrow.write_text('description = "x"\n[client.sysctls]\n'
                      '"net.ipv4.ip_local_port_range" = "50000 50099"\n')  # fmt: skip
    out = tmp_path / "out"
    done = wsbench("sweep", "--targets", "raw", "--scenarios", "hold", "--users", "10,200000",
                   "--kernel-profile", narrow, "--out", out, state_dir=state_dir)  # fmt: skip
    assert "widen the range or add --client-hosts" in _one_error_line(done)
    assert not (out / "points").exists() or not any((out / "points").iterdir())
