"""A matrix file of parts: each part its own sweep, and what cannot run here said, not fatal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MATRIX = """
targets = ["raw"]
duration = "1s"
[[part]]
name = "echo"
scenarios = ["echo"]
users = [1]
[[part]]
name = "storm"
scenarios = ["connect"]
users = [2]
kernel_profiles = ["default", "tuned"]
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_a_matrix_without_namespace_privileges_skips_its_profile_parts_in_one_line(
    tmp_path: Path,
) -> None:
    """Without CAP_NET_ADMIN / CAP_SYS_ADMIN (as a non-root user), the parts' kernel profiles
    are left out with one line saying why; the host parts run, and the run is stored."""
    config = tmp_path / "m.toml"
    config.write_text(MATRIX)
    drop = ["setpriv", "--bounding-set", "-net_admin,-sys_admin", "--inh-caps",
            "-net_admin,-sys_admin"]  # fmt: skip
    done = subprocess.run(
        [*drop, sys.executable, "runner.py", "sweep", "--config", str(config), "--out",
         str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = [line for line in done.stdout.splitlines() if "skipped kernel profiles" in line]
    assert skipped == [
        "wsbench sweep: part storm: skipped kernel profiles default, tuned: they run in network "
        "namespaces, which need CAP_NET_ADMIN, CAP_SYS_ADMIN (run as root to compare them)"
    ]
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert [p["point_id"] for p in meta["plan"]] == ["raw-echo-u1-host"]
    assert done.stdout.splitlines()[-1].startswith("findings: ")  # the console ends with them


def test_a_single_sweep_that_needs_namespaces_is_still_refused(tmp_path: Path) -> None:
    """Outside a matrix of parts the kernel check refuses, as before: exit 2, one line."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv")
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-net_admin,-sys_admin", "--inh-caps",
         "-net_admin,-sys_admin", sys.executable, "runner.py", "sweep", "--targets", "raw",
         "--scenarios", "connect", "--users", "2", "--kernel-profile", "default",
         "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "network namespaces" in done.stderr and "Traceback" not in done.stderr
