"""Series keyed by topology and profile: points that differ in via, compression, wss or kernel
profile are never one series, in the names, the findings rows or the knee columns."""

from __future__ import annotations

import pandas as pd
from test_findings import _run as findings_run

from reports import findings, page, tables
from reports.load import KERNEL_COLUMNS, Run

SLO_US = 10_000.0


def _step(target: str, profile: str, rate: float, p99_us: float, **topology) -> dict:
    """An echo_rate step at 10 connections, ok, its generator clean."""
    words = "".join(f"-{v}" for v in topology.values() if isinstance(v, str))
    return {
        "point_id": f"{target}-echo_rate-u10-r{rate:g}{words}-{profile}", "target": target,
        "scenario": "echo_rate", "users": 10, "rate": rate, "kernel_profile": profile,
        "options": "", "status": "ok", "reason": "", "msgs_per_s": rate, "p50_us": 100.0,
        "p99_us": p99_us, "main_error_rate": 0.0, "requests": 1000.0,
        "generator_saturated": False, "server_rss_per_conn_bytes": None, "kernel_explain": [],
        "kernel_stalls": [], "via": None, "compression": None, "tls": False, "tls_at": None,
        **topology,
    }  # fmt: skip


def _run(rows: list[dict]) -> Run:
    return findings_run(rows, slo={"p99_ms": SLO_US / 1000})


def test_a_series_name_says_what_sits_before_the_target() -> None:
    """Direct plain points keep the target's name; a proxy, deflate and wss each show."""
    points = pd.DataFrame([
        _step("raw", "host", 100, 900),
        _step("raw", "host", 100, 900, via="nginx"),
        _step("aiohttp", "host", 100, 900, compression="deflate"),
        _step("raw", "host", 100, 900, via="haproxy", tls=True, tls_at="proxy"),
        _step("raw", "host", 100, 900, tls=True, tls_at="target"),
        _step("raw", "host", 100, 900, tls=True),  # a wss point stored without tls_at
    ])  # fmt: skip
    assert tables.series_names(points).tolist() == [
        "raw", "raw · nginx", "aiohttp · deflate", "raw · haproxy · wss@proxy",
        "raw · wss@target", "raw · wss"]  # fmt: skip


def test_each_variant_and_profile_has_its_own_knee() -> None:
    """Steps through nginx and under a second profile are not the direct host steps: each
    row and profile column is read from its own steps only."""
    rows = [
        *(_step("raw", "host", r, p) for r, p in ((100, 900), (200, 900), (400, 20_000))),
        *(_step("raw", "host", r, p, via="nginx") for r, p in ((100, 900), (200, 20_000))),
        *(_step("raw", "tuned", r, p) for r, p in ((100, 900), (200, 900), (400, 900))),
    ]  # fmt: skip
    found = findings.build(_run(rows))
    cells = {row[0].text: dict(zip(found.columns[1:], row[1:], strict=True))
             for row in found.rows}  # fmt: skip
    host, tuned = "knee (msgs/s within SLO) · host", "knee (msgs/s within SLO) · tuned"
    assert cells["raw"][host].text == "200" and cells["raw"][tuned].text == "≥ 400"
    assert cells["raw · nginx"][host].text == "100"
    assert cells["raw · nginx"][host].href == "#point-raw-echo_rate-u10-r100-nginx-host"
    assert cells["raw · nginx"][tuned] == findings.EMPTY
    assert any(s.startswith("raw under the tuned profile held every step") for s in
               found.sentences)  # fmt: skip
    hop = [s for s in found.sentences if s.startswith("nginx in front of raw: ")]
    assert hop == ["nginx in front of raw: echo knee 100 vs 200 msgs/s direct, echo p99 at 200 "
                   "msgs/s 20.0 ms vs 900 µs direct (+19.1 ms)."], found.sentences  # fmt: skip
    profile = [s for s in found.sentences if s.startswith("raw under the tuned profile: ")]
    assert profile == ["raw under the tuned profile: echo knee ≥ 400 vs 200 msgs/s under host, "
                       "echo p99 at 200 msgs/s 900 µs vs 900 µs under host (+0 µs)."]  # fmt: skip


def _hold(profile: str, status: str, per_conn: float | None, reason: str = "") -> dict:
    return {**_step("raw", profile, 0, 900), "point_id": f"raw-hold-u2000-{profile}",
            "scenario": "hold", "users": 2000, "rate": None, "status": status, "reason": reason,
            "server_rss_per_conn_bytes": per_conn}  # fmt: skip


def test_a_full_conntrack_table_is_named_against_the_tuned_profile() -> None:
    """Under a firewall profile whose hold failed: its cell says failed (linked to the point),
    and its line names the failure and the conntrack counter that moved, against tuned."""
    why = "1,024 of 2,000 connections held; the kernel: conntrack's table was full"
    rows = [_hold("tuned", "ok", 2048.0), _hold("firewall-full", "failed", None, why)]
    run = _run(rows)
    kernel = pd.DataFrame([("raw-hold-u2000-firewall-full", "server", "ConntrackDrop", 5000.0),
                           ("raw-hold-u2000-firewall-full", "server", "TCPSynRetrans", 90.0)],
                          columns=list(KERNEL_COLUMNS))  # fmt: skip
    run = Run(**{**run.__dict__, "kernel": kernel})
    found = findings.build(run)
    line = [s for s in found.sentences if s.startswith("raw under the firewall-full profile: ")]
    assert line == [f"raw under the firewall-full profile: its hold point failed ({why}), the "
                    "server's ConntrackDrop +5,000."], found.sentences  # fmt: skip
    table = page.topology_section(run).tables[0]
    assert table.header == ["", "tuned", "firewall-full"]
    cells = {r[1][0]: (r[1][1:], links[1:]) for r, links in zip(table.rows, table.links,
                                                                  strict=True)}  # fmt: skip
    held = "#point-raw-hold-u2000-"
    assert cells["memory per held conn: target"] == (["2.0 KiB", "failed"],
                                                     [f"{held}tuned", f"{held}firewall-full"])
    assert cells["kernel (server): ConntrackDrop"] == (["–", "+5,000"],
                                                       [None, f"{held}firewall-full"])
    assert "kernel (server): TCPSynRetrans" not in cells  # not a conntrack or firewall counter
