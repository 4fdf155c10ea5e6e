"""--via nginx|haproxy: Debian's real proxies between Locust and the reference target.

The binaries are installed with apt-get when missing and this is root (CI is; `.ci/run`
installs them up front); elsewhere the tests that run them are skipped, saying so.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from harness import plan, proxy

Run = Callable[..., subprocess.CompletedProcess[str]]
PACKAGES = ("nginx", "haproxy")


def require_proxies() -> None:
    missing = [name for name in PACKAGES if proxy._binary(name) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{', '.join(missing)} missing and cannot install here: apt-get install "
                    f"{' '.join(missing)}")  # fmt: skip
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *missing]
    if subprocess.run(install, capture_output=True, env=env, timeout=600).returncode:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        subprocess.run(install, check=True, capture_output=True, env=env, timeout=600)


def _points(out: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "point.json").read_text()) for p in (out / "points").iterdir()}


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _proxies_running() -> list[str]:
    return [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
            if Path((p.info["cmdline"] or [""])[0]).name in PACKAGES]  # fmt: skip


def test_an_echo_point_through_each_proxy_records_the_proxy(wsbench: Run, tmp_path: Path) -> None:
    """One run, three points (nginx, haproxy, direct): each measures echoes through its hop;
    the proxy's config, log, version, CPU and RSS are the point's; none is left running."""
    require_proxies()
    out = tmp_path / "run"
    done = wsbench("run", "--target", "raw", "--scenario", "echo", "--users", "4",
                   "--duration", "3s", "--via", "nginx,haproxy,direct", "--out", out,
                   timeout_s=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    points = _points(out)
    assert set(points) == {"raw-echo-u4-via-nginx-host", "raw-echo-u4-via-haproxy-host",
                           "raw-echo-u4-host"}  # fmt: skip
    for kind in PACKAGES:
        name = f"raw-echo-u4-via-{kind}-host"
        result, pdir = points[name], out / "points" / name
        assert result["status"] == "ok" and result["summary"]["main"]["successes"] > 0, result
        info = result["summary"]["proxy"]
        assert info["kind"] == kind and info["version"] != "unknown", info
        # Locust went to the proxy, which went to the target.
        config = (pdir / proxy.PROXY_CONF).read_text()
        upstream = re.search(r"^\s*server (?:target )?(127\.0\.0\.1:\d+)", config, re.M)
        assert result["summary"]["main"]["url"] == f"ws://{info['address']}/echo", info
        assert upstream and upstream.group(1) != info["address"], config
        assert 0 < info["cpu_pct_mean"] < 400 and info["rss_bytes_max"] > 0, info
        assert info["exit_status"] is not None and result["point"]["via"] == kind
        assert "upgrade" in config.lower() or kind == "haproxy"  # HAProxy passes it on itself
        assert (pdir / proxy.PROXY_LOG).exists()
    assert "proxy" not in points["raw-echo-u4-host"]["summary"]
    assert _proxies_running() == []


def test_a_proxy_idle_timeout_drops_idle_connections_and_pings_keep_them(
    wsbench: Run, wsbench_bg, tmp_path: Path
) -> None:
    """Held connections idle longer than the proxy's timeout are dropped, and the point's
    reason names the timeout and the fix; with pings more often than it, every one is held.
    (The two runs go side by side: five idle connections each.)"""
    require_proxies()
    common = ("run", "--target", "raw", "--scenario", "hold", "--users", "5", "--duration",
              "4s", "--via", "nginx,haproxy", "--via-idle-timeout", "1s")  # fmt: skip
    pinged = wsbench_bg(*common, "--ping-interval-s", "0.3", "--out", tmp_path / "pinged")
    idle = wsbench(*common, "--out", tmp_path / "idle", timeout_s=120)
    assert idle.returncode == 1, idle.stdout + idle.stderr
    for kind, setting in (("nginx", "proxy_read_timeout"), ("haproxy", "timeout tunnel")):
        result = _points(tmp_path / "idle")[f"raw-hold-u5-via-{kind}-idle1s-host"]
        assert result["status"] == "failed", result
        assert result["summary"]["main"]["failures"] >= 5, result["summary"]["main"]
        assert f"{kind} closes a WebSocket idle for 1 s ({setting})" in result["reason"]
        assert "--ping-interval-s" in result["reason"]
        # The report shows the drops on the point's timeline, at the timeout's marks.
        report = tmp_path / "idle" / "report"
        if not report.exists():
            assert wsbench("report", tmp_path / "idle").returncode == 0
        name = f"idle-raw-hold-u5-via-{kind}-idle1s-host"
        timeline = _csv(report / f"{name}.csv")
        marks = [float(row["t_s"]) for row in _csv(report / f"{name}-marks.csv")]
        drops = [float(row["t_s"]) for row in timeline if float(row["drops_per_s"]) > 0]
        assert drops and marks, (drops, marks)
        assert abs(drops[0] - marks[0]) <= 1.0, (drops, marks)  # within a 1 s window
    page = (tmp_path / "idle" / "report" / "report.html").read_text()
    assert "Proxy idle timeouts" in page and "proxy_read_timeout" in page
    assert pinged.proc.wait(120) == 0, pinged.stdout + pinged.stderr
    for result in _points(tmp_path / "pinged").values():
        assert result["status"] == "ok" and result["summary"]["main"]["failures"] == 0, result
    assert wsbench("report", tmp_path / "pinged").returncode == 0
    assert "Proxy idle timeouts" not in (tmp_path / "pinged" / "report" / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--via", "envoy"), "via must be one of direct, nginx, haproxy, got 'envoy'"),
        (("--via", "nginx,nginx"), "via nginx given more than once"),
        (("--via-idle-timeout", "5s"), "--via-idle-timeout is the proxy's"),
        (("--target", "ws://127.0.0.1:9/echo", "--via", "nginx"), "put yours in front of"),
    ],
    ids=["unknown", "twice", "idle-without-via", "external"],
)
def test_what_a_proxy_cannot_do_is_refused_in_one_line(
    wsbench: Run, args: tuple[str, ...], said: str
) -> None:
    target = () if "--target" in args else ("--target", "raw")
    done = wsbench("run", *target, "--scenario", "echo", "--users", "1", "--duration", "1s",
                   *args)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr


def test_a_sweep_file_takes_a_via_list_and_each_hop_is_its_own_series() -> None:
    sweep = plan.sweep_from_settings({"targets": ["raw"], "scenarios": ["echo"],
                                      "users": [10, 100], "via": ["direct", "haproxy"],
                                      "via_idle_timeout": "30s"})  # fmt: skip
    ids = [p.point_id for p in sweep.points()]
    assert ids == ["raw-echo-u10-host", "raw-echo-u100-host",
                   "raw-echo-u10-via-haproxy-idle30s-host",
                   "raw-echo-u100-via-haproxy-idle30s-host"]  # fmt: skip
    keys = {sweep.series_key(p) for p in sweep.points()}
    assert len(keys) == 2  # an SLO stop of the direct series leaves the proxied one running
    assert "via" not in sweep.points()[0].as_dict()
