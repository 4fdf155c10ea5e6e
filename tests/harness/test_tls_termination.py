"""wss:// terminated at the reference target or at the proxy (`--tls` with `--via`), for real:
Debian's nginx and HAProxy with a throwaway CA's certificate, Locust verifying it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_proxies import _points, _proxies_running, require_proxies

from harness import plan, proxy

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_a_wss_storm_through_each_termination_point(wsbench: Run, tmp_path: Path) -> None:
    """Connects over TLS: at the raw target itself, at nginx and at HAProxy in front of a
    plain ws:// target. Every one handshakes (the client checks the certificate against the
    CA the point made) and each point says where TLS ended."""
    require_proxies()
    out = tmp_path / "run"
    done = wsbench("run", "--target", "raw", "--scenario", "connect", "--users", "5",
                   "--duration", "3s", "--tls", "--via", "direct,nginx,haproxy", "--out", out,
                   timeout_s=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    points = _points(out)
    assert set(points) == {"raw-connect-u5-wss-host", "raw-connect-u5-via-nginx-wss-host",
                           "raw-connect-u5-via-haproxy-wss-host"}  # fmt: skip
    for name, result in points.items():
        summary, pdir = result["summary"], out / "points" / name
        assert result["status"] == "ok", result["reason"]
        assert summary["main"]["url"].startswith("wss://"), summary["main"]
        handshakes = summary["latency_us"]["tls handshake"]
        made = summary["main"]["successes"]  # Locust's counts; the histograms leave out the stop
        assert made >= handshakes["count"] > 0.9 * made, (handshakes, made)
        via = result["point"].get("via")
        assert summary["tls"] == ({"terminated_at": "proxy", "by": via} if via
                                  else {"terminated_at": "target", "by": "raw"})  # fmt: skip
        if via is None:
            assert "proxy" not in summary and (pdir / "ca.pem").exists()
            continue
        assert summary["proxy"]["tls"] is True
        config = (pdir / proxy.PROXY_CONF).read_text()
        assert re.search(r"listen \S+ ssl |bind \S+ backlog \d+ ssl crt ", config), config
        # Behind the proxy the target speaks plain ws://: its ready line made no CA.
        assert "ca-file" not in (pdir / "target.log").read_text()
        assert (pdir / "ca.pem").exists() and (pdir / "server.pem").exists()
    assert _proxies_running() == []


def test_a_tls_sweep_dimension_makes_one_point_and_series_each() -> None:
    """`tls = [false, true]` in a sweep file: a ws:// and a wss:// point of each hop, apart."""
    sweep = plan.sweep_from_settings({"targets": ["raw"], "scenarios": ["echo_rate"],
                                      "users": [10], "rates": [100], "via": ["direct", "nginx"],
                                      "tls": [False, True]})  # fmt: skip
    ids = [p.point_id for p in sweep.points()]
    assert ids == ["raw-echo_rate-u10-r100-host", "raw-echo_rate-u10-r100-wss-host",
                   "raw-echo_rate-u10-r100-via-nginx-host",
                   "raw-echo_rate-u10-r100-via-nginx-wss-host"]  # fmt: skip
    keys = {sweep.series_key(p) for p in sweep.points()}
    assert len(keys) == 4
    at = {p.point_id: p.topology.tls_at for p in sweep.points()}
    assert at["raw-echo_rate-u10-r100-wss-host"] == "target"
    assert at["raw-echo_rate-u10-r100-via-nginx-wss-host"] == "proxy"
    assert at["raw-echo_rate-u10-r100-host"] == ""


@pytest.mark.parametrize("value", ["yes", [True, True], [], [1]])
def test_a_bad_tls_value_is_refused(value: object) -> None:
    with pytest.raises(plan.PlanError, match="tls"):
        plan.sweep_from_settings({"targets": ["raw"], "scenarios": ["echo"], "users": [1],
                                  "tls": value})  # fmt: skip

