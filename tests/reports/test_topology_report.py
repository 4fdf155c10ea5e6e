"""The report's Topology section and findings per hop, from small real runs made by the CLI.

Each run is a `wsbench sweep` subprocess of a few seconds per point, all started side by
side when the module's first test needs one (`runs`), with no SLO (so no rate
step is skipped after one whose generator was the limit, as this busy machine's often is):
raw direct and through Debian's nginx (echo_rate rate steps, a connect storm, held
connections), aiohttp with and without permessage-deflate, and raw under `tuned` and under a
firewall profile in network namespaces (root and nft only). The figures the page and the
findings show are checked against the stored point.json files; a run of direct points only
has no Topology section.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import background
import pytest
from background import Background

from kernel.netns import missing_privileges
from reports import findings
from reports.cli import write_report
from reports.load import load_run

REPO_ROOT = Path(__file__).resolve().parents[2]
KIB = 1024
SWEEP_TIMEOUT_S = 240.0
PROXIES = """
targets = ["raw"]
via = ["direct", "nginx"]
duration = "2s"
spawn_rate = 1000

[[part]]
name = "knee"
scenarios = ["echo_rate"]
users = [10]
rates = [100, 200]

[[part]]
name = "connect storm"
scenarios = ["connect"]
users = [5]
rates = [50]

[[part]]
name = "memory"
scenarios = ["hold"]
users = [50]
"""
DEFLATE = """
targets = ["aiohttp"]
compression = ["none", "deflate"]
duration = "2s"
spawn_rate = 1000

[[part]]
name = "knee"
scenarios = ["echo_rate"]
users = [10]
rates = [100, 200]
[part.options]
echo_rate = ["--payload-content", "text"]
"""
FIREWALL = DEFLATE.replace('"aiohttp"', '"raw"').replace('compression = ["none", "deflate"]', "")
FIREWALL = FIREWALL.replace('[part.options]\necho_rate = ["--payload-content", "text"]\n', "")
TLS = """
targets = ["raw"]
via = ["direct", "nginx"]
tls = [false, true]
duration = "2s"
spawn_rate = 1000

[[part]]
name = "connect storm"
scenarios = ["connect"]
users = [5]
rates = [50]
"""
# tuned plus the stateful firewall, with the host's own conntrack table size: no host-wide
# sysctl is changed (the shipped firewall profiles size the table, so need --host-sysctls).
FIREWALL_PROFILE = """description = "tuned behind the nftables firewall, the host's table size"
extends = "tuned"

[firewall]
"""


@dataclass
class _Sweep:
    """A `wsbench sweep` running in the background into `out`; `stdout()` waits for it to
    succeed, `stop()` ends it if it still runs."""

    out: Path
    runner: Background

    def stdout(self) -> str:
        assert self.runner.wait(SWEEP_TIMEOUT_S) == 0, self.runner.stdout + self.runner.stderr
        return self.runner.stdout

    def stop(self) -> None:
        self.runner.stop()


def _sweep(out: Path, matrix: str, *extra: str) -> _Sweep:
    config = out.with_suffix(".toml")
    config.write_text(matrix)
    logs = out.with_name(f"{out.name}-output")
    logs.mkdir()
    return _Sweep(out, background.start(logs, "sweep", "--config", config, "--out", out, *extra))


def _require(*binaries: str) -> None:
    missing = _missing(*binaries)
    if missing:
        pytest.skip(f"needs Debian's {', '.join(missing)} (apt-get install {' '.join(missing)})")


def _missing(*binaries: str) -> list[str]:
    return [b for b in binaries if shutil.which(b) is None and not Path(f"/usr/sbin/{b}")
            .exists()]  # fmt: skip


def _start_firewalled(folder: Path) -> _Sweep:
    profile = folder / "firewall-lite.toml"
    profile.write_text(FIREWALL_PROFILE)
    return _sweep(folder / "firewall", FIREWALL, "--kernel-profile", f"tuned,{profile}")


# The run each fixture reads: (what it needs, how it starts in a fresh folder).
RUNS = {
    "proxies": (lambda: not _missing("nginx"), lambda d: _sweep(d / "proxies", PROXIES)),
    "deflate": (lambda: True, lambda d: _sweep(d / "deflate", DEFLATE)),
    "wss": (lambda: not _missing("nginx"), lambda d: _sweep(d / "tls", TLS)),
    "firewalled": (lambda: not missing_privileges() and not _missing("nft"), _start_firewalled),
}


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, _Sweep]]:
    """Every run the selected tests of this module read, started at once: their few seconds
    of light points mostly wait, so side by side they take about the longest one's time
    (about 80 s one after another). A run that cannot start here is left to its fixture,
    which skips saying why."""
    wanted = {name for item in request.session.items if item.module is request.module
              for name in item.fixturenames if name in RUNS}  # fmt: skip
    started = {name: RUNS[name][1](tmp_path_factory.mktemp("topology"))
               for name in sorted(wanted) if RUNS[name][0]()}  # fmt: skip
    yield started
    for sweep in started.values():
        sweep.stop()


@pytest.fixture(scope="module")
def proxies(runs: dict[str, _Sweep]) -> tuple[Path, str]:
    """raw direct and through nginx: the run folder and the sweep's console output."""
    _require("nginx")
    return runs["proxies"].out, runs["proxies"].stdout()


@pytest.fixture(scope="module")
def proxies_page(proxies: tuple[Path, str]) -> str:
    return write_report(proxies[0]).read_text()


def _point(run_dir: Path, point_id: str) -> dict:
    return json.loads((run_dir / "points" / point_id / "point.json").read_text())


def _table(page: str, table_id: str) -> list[list[tuple[str, str | None]]]:
    """A page table's rows (header first) as (text, href or None) per cell."""
    found = re.search(rf'<div class="scroll" id="{table_id}">(.*?)</table>', page, re.S)
    assert found, f"no table {table_id}"
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S):
        cells = []
        for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S):
            link = re.match(r'<a href="([^"]*)">(.*)</a>$', cell, re.S)
            text = link.group(2) if link else cell
            cells.append((html.unescape(text), link.group(1) if link else None))
        rows.append(cells)
    return rows


def _row(rows: list[list[tuple[str, str | None]]], label: str) -> list[tuple[str, str | None]]:
    matching = [r for r in rows if r[0][0].startswith(label)]
    assert matching, (label, [r[0][0] for r in rows])
    return matching[0][1:]


def _shared_rate(rows: list[list[tuple[str, str | None]]]) -> int:
    """The offered rate the table's latency row is at: the highest step every variant ran ok
    (a sweep skips the steps after one whose generator was the limit, so it may be the
    first)."""
    label = next(r[0][0] for r in rows if r[0][0].startswith("echo p50 / p99 at "))
    rate = int(re.search(r"at ([\d,]+) msgs/s", label).group(1).replace(",", ""))
    assert rate in (100, 200), label
    return rate


def _kib(value: float) -> str:
    return f"{value / KIB:.1f} KiB"


def _cpu_us(result: dict, role: str) -> str:
    summary = result["summary"]
    return f"{summary[role]['cpu_pct_mean'] * 10_000 / summary['requests_per_s']:,.1f}"


def test_a_proxied_run_compares_direct_and_nginx_side_by_side(
    proxies: tuple[Path, str], proxies_page: str
) -> None:
    """The Topology table has a direct and an nginx column whose figures are the stored
    points' (p50/p99, CPU per message, proxy memory per held connection), each linked to its
    point's anchor on the page."""
    run_dir, _ = proxies
    rows = _table(proxies_page, "table-topology-raw")
    assert [text for text, _ in rows[0]] == ["", "direct", "nginx"]
    ids = {"direct": "", "nginx": "-via-nginx"}
    rate = _shared_rate(rows)
    echo = {v: _point(run_dir, f"raw-echo_rate-u10-r{rate}{s}-host") for v, s in ids.items()}
    hold = {v: _point(run_dir, f"raw-hold-u50{s}-host") for v, s in ids.items()}
    assert all(r["status"] == "ok" for r in [*echo.values(), *hold.values()])
    latency = _row(rows, f"echo p50 / p99 at {rate} msgs/s, 10 conns")
    for (text, href), variant in zip(latency, ids, strict=True):
        stored = echo[variant]["summary"]["latency_us"]["echo corrected"]
        assert text == f"{findings.ms(stored['p50_us'])} / {findings.ms(stored['p99_us'])}"
        assert href == f"#point-raw-echo_rate-u10-r{rate}{ids[variant]}-host"
    cpu = _row(rows, "server CPU µs / msg: target")
    assert [c for c, _ in cpu] == [_cpu_us(echo[v], "target") for v in ids]
    proxy_cpu = _row(rows, "server CPU µs / msg: proxy")
    assert [c for c, _ in proxy_cpu] == ["–", _cpu_us(echo["nginx"], "proxy")]
    proxy = hold["nginx"]["summary"]["proxy"]
    grown = (proxy["rss_bytes_max"] - proxy["rss_bytes_idle"]) / 50
    memory = _row(rows, "memory per held conn: proxy")
    assert memory == [("–", None), (_kib(grown), "#point-raw-hold-u50-via-nginx-host")]
    connects = _row(rows, "connects/s in a storm")
    assert [h for _, h in connects] == ["#point-raw-connect-u5-r50-host",
                                        "#point-raw-connect-u5-r50-via-nginx-host"]  # fmt: skip
    for row in rows[1:]:  # every linked cell's point has its anchor on the page
        for _, href in row:
            assert href is None or f'id="{href[1:]}"' in proxies_page, href
    for chart in ("knee", "latency", "cpu", "connect", "memory"):
        assert f'id="chart-topology-{chart}"' in proxies_page, chart


def test_the_findings_name_the_hop_and_never_merge_it_with_the_direct_points(
    proxies: tuple[Path, str], proxies_page: str
) -> None:
    """The findings have a row per variant and one generated line for nginx, with the stored
    p99s and the proxy's KiB per held connection; the console says it too; the knee chart has
    a line per variant."""
    run_dir, console = proxies
    run = load_run(run_dir)
    result = findings.build(run)
    assert [row[0].text for row in result.rows] == ["raw", "raw · nginx"]
    hop = [s for s in result.sentences if s.startswith("nginx in front of raw: ")]
    assert len(hop) == 1, result.sentences
    rate = _shared_rate(_table(proxies_page, "table-topology-raw"))
    p99 = {v: _point(run_dir, f"raw-echo_rate-u10-r{rate}{s}-host")["summary"]["latency_us"]
           ["echo corrected"]["p99_us"] for v, s in (("direct", ""), ("nginx", "-via-nginx"))}
    assert (f"echo p99 at {rate} msgs/s {findings.ms(p99['nginx'])} vs "
            f"{findings.ms(p99['direct'])} direct") in hop[0]  # fmt: skip
    proxy = _point(run_dir, "raw-hold-u50-via-nginx-host")["summary"]["proxy"]
    grown = (proxy["rss_bytes_max"] - proxy["rss_bytes_idle"]) / 50
    assert f"+{_kib(grown)} per held connection in the proxy" in hop[0]
    assert result.links[hop[0]] == "#table-topology-raw"
    assert f'<a href="#table-topology-raw">{html.escape(hop[0], quote=False)}</a>' in \
        proxies_page.replace("&#39;", "'")  # fmt: skip
    assert hop[0] in console  # the sweep's own findings
    knee = (run_dir / "report" / "knee.csv").read_text()
    assert "\nraw · nginx," in knee and "\nraw," in knee


@pytest.fixture(scope="module")
def deflate(runs: dict[str, _Sweep]) -> Path:
    runs["deflate"].stdout()
    return runs["deflate"].out


def test_deflate_is_its_own_variant_against_the_uncompressed_one(deflate: Path) -> None:
    """aiohttp with permessage-deflate is a row and a column of its own, its cost a sentence
    against the uncompressed points with the stored p99s."""
    run = load_run(deflate)
    result = findings.build(run)
    assert [row[0].text for row in result.rows] == ["aiohttp", "aiohttp · deflate"]
    rows = _table(write_report(deflate).read_text(), "table-topology-aiohttp")
    assert [text for text, _ in rows[0]] == ["", "uncompressed", "deflate"]
    rate = _shared_rate(rows)
    p99 = {s: _point(deflate, f"aiohttp-echo_rate-u10-r{rate}{s}-host")["summary"]
           ["latency_us"]["echo corrected"]["p99_us"] for s in ("", "-deflate")}
    line = [s for s in result.sentences if s.startswith("aiohttp with permessage-deflate: ")]
    assert len(line) == 1, result.sentences
    assert (f"echo p99 at {rate} msgs/s {findings.ms(p99['-deflate'])} vs "
            f"{findings.ms(p99[''])} uncompressed") in line[0]  # fmt: skip


@pytest.fixture(scope="module")
def wss(runs: dict[str, _Sweep]) -> Path:
    _require("nginx")
    runs["wss"].stdout()
    return runs["wss"].out


def test_wss_is_labelled_with_where_tls_ended(wss: Path) -> None:
    """ws and wss, at the target and at nginx, are four variants named by where TLS ended;
    the CPU per connect of each side is the stored points', and each wss line says where."""
    result = findings.build(load_run(wss))
    assert [row[0].text for row in result.rows] == [
        "raw", "raw · wss@target", "raw · nginx", "raw · nginx · wss@proxy"]  # fmt: skip
    rows = _table(write_report(wss).read_text(), "table-topology-raw")
    assert [text for text, _ in rows[0]] == ["", "direct · ws", "wss@target", "nginx",
                                             "nginx · wss@proxy"]  # fmt: skip
    ids = ["", "-wss", "-via-nginx", "-via-nginx-wss"]
    stored = [_point(wss, f"raw-connect-u5-r50{i}-host") for i in ids]
    assert [r["summary"].get("tls", {}).get("terminated_at") for r in stored] == \
        [None, "target", None, "proxy"]  # fmt: skip
    assert [c for c, _ in _row(rows, "server CPU µs / connect: target")] == \
        [_cpu_us(r, "target") for r in stored]  # fmt: skip
    assert [c for c, _ in _row(rows, "server CPU µs / connect: proxy")] == \
        ["–", "–", *(_cpu_us(r, "proxy") for r in stored[2:])]  # fmt: skip
    starts = ("raw over wss (TLS ended at the target): ",
              "nginx in front of raw over wss (TLS ended at the proxy): ")
    for start in starts:
        line = [s for s in result.sentences if s.startswith(start)]
        assert len(line) == 1 and "µs per connect" in line[0], result.sentences


@pytest.fixture(scope="module")
def firewalled(runs: dict[str, _Sweep]) -> Path:
    if missing_privileges():
        pytest.skip(f"needs root for namespaces: {missing_privileges()}")
    _require("nft")
    runs["firewalled"].stdout()
    return runs["firewalled"].out


def test_a_firewall_profile_is_compared_with_tuned_and_shows_its_counters(
    firewalled: Path,
) -> None:
    """Under a firewall profile the table has a column per profile and the conntrack counters
    that moved, as kernel_counters.json has them; the sentence names the profile."""
    run = load_run(firewalled)
    profile = next(p for p in run.profiles if p != "tuned")
    rows = _table(write_report(firewalled).read_text(), "table-topology-raw")
    assert [text for text, _ in rows[0]] == ["", "tuned", profile]
    counted = [r for r in rows if r[0][0].startswith("kernel (server): ")]
    assert counted, "no conntrack counter moved under the firewall"
    for row in counted:
        name = row[0][0].removeprefix("kernel (server): ")
        text, href = row[2]
        pid = href.removeprefix("#point-")
        stored = json.loads((firewalled / "points" / pid / "kernel_counters.json").read_text())
        assert text == f"{stored['server'][name]:+,.0f}", (name, text)
        assert row[1] == ("–", None)  # tuned has no firewall: its counters are not shown
    result = findings.build(run)
    line = [s for s in result.sentences if s.startswith(f"raw under the {profile} profile: ")]
    assert len(line) == 1 and "under tuned" in line[0], result.sentences


def test_a_run_of_direct_points_has_no_topology_section(sweep_report: Path) -> None:
    """sweep-small (direct, plain, uncompressed points only): no Topology section, no hop line."""
    page = sweep_report.read_text()
    assert 'id="topology"' not in page and "table-topology-" not in page
    assert "in front of" not in page and "permessage-deflate:" not in page


OVERFLOWING_JS = """
const width = document.documentElement.clientWidth;
return Array.from(document.querySelectorAll('#topology *'))
  .filter(e => !e.parentElement.closest('.scroll'))
  .filter(e => e.getBoundingClientRect().right > width + 0.5)
  .map(e => `${e.tagName}#${e.id} ${Math.round(e.getBoundingClientRect().right)}`);
"""


def test_the_topology_section_fits_1280_px(
    proxies: tuple[Path, str], proxies_page: str, tmp_path: Path
) -> None:
    """In Chromium at 1280 px nothing of the Topology section passes the right edge, its
    table needs no scrolling, and the page logs no console error."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "harness"))
    from browser import console_errors, headless_chromium, require_chromium

    require_chromium()
    page = proxies[0] / "report" / "report.html"
    with headless_chromium(tmp_path / "profile", width=1280, height=1000) as driver:
        driver.get(page.as_uri() + "#topology")
        assert driver.execute_script(OVERFLOWING_JS) == []
        scroll, box = driver.execute_script(
            "const b = document.getElementById('table-topology-raw');"
            "return [b.scrollWidth, b.clientWidth];")  # fmt: skip
        assert 0 < scroll <= box
        assert console_errors(driver) == []
