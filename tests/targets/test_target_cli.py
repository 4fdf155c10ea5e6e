"""`python -m targets` start-up errors: a non-zero exit and one readable line, never a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_targets(*args: str, timeout_s: float = 20.0) -> subprocess.CompletedProcess[str]:
    """`python -m targets ARGS` run to completion (its process group killed if it hangs)."""
    proc = subprocess.Popen([sys.executable, "-m", "targets", *args], cwd=REPO_ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"`{' '.join(args)}` still running after {timeout_s} s; stdout {stdout!r}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines of a failed start, after checking it failed without a traceback."""
    assert result.returncode != 0, f"exit 0; stdout {result.stdout!r}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "", "printed on stdout (a ready line?)"
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_unknown_target_name_exits_2_with_one_error_line():
    """An unknown target name exits 2 with one error line naming it (after argparse's usage)."""
    result = run_targets("nosuch")
    lines = error_lines(result)
    assert result.returncode == 2
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and "nosuch" in errors[0], result.stderr
    assert lines[-1] == errors[0]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_port_in_use_exits_with_one_line_naming_port(target_name, processes):
    """A --port another socket listens on fails fast with one line naming the port."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_targets(target_name, "--port", str(port), "--processes", processes)
    lines = error_lines(result)
    assert len(lines) == 1 and str(port) in lines[0], result.stderr


def test_port_held_by_another_multiprocess_target_is_in_use(target_name, spawn):
    """A --processes target on the port of a running --processes target fails as port in use,
    rather than silently sharing the port (and the load) with it through SO_REUSEPORT."""
    with spawn.running(target_name, "--processes", "2") as first:
        result = run_targets(target_name, "--port", str(first.port), "--processes", "2",
                             timeout_s=5)
        lines = error_lines(result)
        assert len(lines) == 1 and str(first.port) in lines[0], result.stderr


INVALID_OPTIONS = [
    (("--port", "70000"), "70000"),
    (("--port", "-1"), "-1"),
    (("--port", "70000", "--processes", "2"), "70000"),
    (("--processes", "0"), "--processes"),
    (("--max-size", "0"), "--max-size"),
    (("--max-queue", "-1"), "--max-queue"),
    (("--handshake-timeout", "0"), "--handshake-timeout"),
    (("--loop", "nosuch"), "nosuch"),
    (("--tls", "--ca-file", "/nonexistent-dir/ca.pem"), "/nonexistent-dir/ca.pem"),
]


@pytest.mark.parametrize(("args", "named"),
                         [pytest.param(*case, id=" ".join(case[0])) for case in INVALID_OPTIONS])
def test_invalid_option_exits_with_one_error_line(args, named):
    """An invalid option value fails with one error line naming the value, no traceback."""
    result = run_targets("raw", *args)
    lines = error_lines(result)
    errors = [line for line in lines if not line.startswith(("usage:", " "))]
    assert len(errors) == 1 and named in errors[0], result.stderr
