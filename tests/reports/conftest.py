"""Fixtures for the report tests: the stored fixture runs, doctored copies of them, rendered pages.

fixtures/sweep-small and fixtures/extras were made by real `wsbench sweep` runs (their README
says how) and are never edited; tests that need other data (a slower run, two kernel profiles,
kernel counters, a broken run) change copies under tmp_path. Test modules use the fixtures here
rather than importing this file. Chromium helpers come from tests/harness/browser.py.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from reports.cli import write_report
from reports.load import Run, load_run

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
SWEEP = FIXTURES / "sweep-small"
EXTRAS = FIXTURES / "extras"
sys.path.insert(0, str(HERE.parent / "harness"))  # for `import browser` (shared helpers)

# Kernel counter deltas written into the renamed copy (shape of kernel_counters.json).
KERNEL_COUNTERS = {
    "host": {"server": {"ListenOverflows": 12, "TCPTimeWaitOverflow": 0},
             "client": {"TCPTimeWaitOverflow": 3}},
    "tuned": {"server": {"ListenOverflows": 0, "TCPTimeWaitOverflow": 0},
              "client": {"TCPTimeWaitOverflow": 0}},
}  # fmt: skip


@pytest.fixture(scope="session")
def sweep_dir() -> Path:
    return SWEEP


@pytest.fixture(scope="session")
def extras_dir() -> Path:
    return EXTRAS


@pytest.fixture(scope="session")
def sweep() -> Run:
    return load_run(SWEEP)


@pytest.fixture(scope="session")
def extras() -> Run:
    return load_run(EXTRAS)


@pytest.fixture
def copy_run(tmp_path: Path) -> Callable[[Path, str], Path]:
    """copy_run(fixture, name): a copy of a fixture run under tmp_path to change freely."""

    def copy(source: Path, name: str) -> Path:
        return Path(shutil.copytree(source, tmp_path / name))

    return copy


def scale_latency(run_dir: Path, factor: float) -> None:
    """Make every recorded latency `factor` times longer: histograms and the µs CSV."""
    for pdir in (run_dir / "points").iterdir():
        path = pdir / "locust_latency_us_histograms.json"
        if path.exists():
            document = json.loads(path.read_text())
            document["totals"] = {name: _scaled(blob, factor, document)
                                  for name, blob in document["totals"].items()}  # fmt: skip
            path.write_text(json.dumps(document))
        totals = pdir / "locust_latency_us.csv"
        if totals.exists():
            with totals.open(newline="") as f:
                rows = list(csv.DictReader(f))
            for row in rows:
                for column in row:
                    if column.endswith("_us"):
                        row[column] = str(round(float(row[column]) * factor))
            with totals.open("w", newline="") as f:
                writer = csv.DictWriter(f, list(rows[0]) if rows else [])
                writer.writeheader()
                writer.writerows(rows)


def _scaled(blob: str, factor: float, document: dict) -> str:
    source = HdrHistogram.decode(blob)
    scaled = HdrHistogram(document["lowest_us"], document["highest_us"],
                          document["significant_figures"])  # fmt: skip
    for item in source.get_recorded_iterator():
        scaled.record_value(round(item.value_iterated_to * factor), item.count_at_value_iterated_to)
    return scaled.encode().decode("ascii")


@pytest.fixture
def slower_copy(copy_run: Callable[[Path, str], Path]) -> Path:
    """A copy of sweep-small whose latencies are all 1.5x longer (a doctored regression)."""
    run_dir = copy_run(SWEEP, "slower")
    scale_latency(run_dir, 1.5)
    return run_dir


def add_profile_copies(run_dir: Path, scenario: str, profile: str) -> None:
    """Keep `scenario`'s points only and add a copy of each under kernel profile `profile`.

    The copies are the same measurements with point.json's profile (and id) renamed: the
    suite cannot apply kernel profiles yet, so this is how the kernel comparison is exercised.
    Both profiles' points get a kernel_counters.json (KERNEL_COUNTERS).
    """
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    plan = [p for p in meta["plan"] if p["scenario"] == scenario]
    for pdir in list((run_dir / "points").iterdir()):
        if not pdir.name.startswith(tuple(f"{p['target']}-{scenario}-" for p in plan)):
            shutil.rmtree(pdir)
    renamed = []
    for planned in plan:
        old_id = planned["point_id"]
        new_id = old_id.removesuffix(f"-{planned['kernel_profile']}") + f"-{profile}"
        new_dir = Path(shutil.copytree(run_dir / "points" / old_id, run_dir / "points" / new_id))
        result = json.loads((new_dir / "point.json").read_text())
        result["point"].update(kernel_profile=profile, point_id=new_id)
        (new_dir / "point.json").write_text(json.dumps(result))
        renamed.append({**planned, "kernel_profile": profile, "point_id": new_id})
        for pid, name in ((old_id, planned["kernel_profile"]), (new_id, profile)):
            counters = run_dir / "points" / pid / "kernel_counters.json"
            counters.write_text(json.dumps(KERNEL_COUNTERS[name]))
    meta["plan"] = plan + renamed
    meta_path.write_text(json.dumps(meta))


@pytest.fixture
def two_profile_copy(copy_run: Callable[[Path, str], Path]) -> Path:
    """sweep-small's echo points under "host" and (renamed copies) under "tuned"."""
    run_dir = copy_run(SWEEP, "two-profiles")
    add_profile_copies(run_dir, "echo", "tuned")
    return run_dir


@pytest.fixture
def connect_profiles_copy(copy_run: Callable[[Path, str], Path]) -> Path:
    """sweep-small's connect points under "host" and (renamed copies) under "tuned"."""
    run_dir = copy_run(SWEEP, "connect-profiles")
    add_profile_copies(run_dir, "connect", "tuned")
    return run_dir


@pytest.fixture(scope="session")
def sweep_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sweep-small's report.html, written once per session (with its CSVs beside it)."""
    return write_report(SWEEP, tmp_path_factory.mktemp("sweep-report"))


@pytest.fixture(scope="session")
def extras_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """extras' report.html (failures with a close code, push), written once per session."""
    return write_report(EXTRAS, tmp_path_factory.mktemp("extras-report"))


# Capacity steps made from each target's 5-user echo point: (--rate per connection, latency
# factor). The SLO is set between the second and third steps, so each target's knee is its
# third step.
KNEE_STEPS = ((10, 1.0), (40, 2.0), (160, 60.0))


def _as_echo_rate(pdir: Path) -> None:
    """Rename a copied echo point's main request name to echo_rate's ("echo corrected")."""
    path = pdir / "locust_latency_us_histograms.json"
    document = json.loads(path.read_text())
    rename = {"echo": "echo corrected"}
    document["totals"] = {rename.get(k, k): v for k, v in document["totals"].items()}
    for window in document.get("windows") or []:
        window["histograms"] = {rename.get(k, k): v for k, v in window["histograms"].items()}
    path.write_text(json.dumps(document))
    for name, prefix in (("locust_latency_us.csv", "echo,"), ("locust_stats.csv", "WS,echo,"),
                         ("locust_latency_us_history.csv", None)):  # fmt: skip
        path = pdir / name
        if not path.exists():
            continue
        lines = path.read_text().splitlines(keepends=True)
        if prefix:
            lines = [line.replace(prefix, prefix[:-1] + " corrected,", 1)
                     if line.startswith(prefix) else line for line in lines]  # fmt: skip
        else:
            lines = [line.replace(",echo,", ",echo corrected,", 1) for line in lines]
        path.write_text("".join(lines))


def add_knee_steps(run_dir: Path, staging: Path) -> float:
    """Add echo_rate capacity steps (KNEE_STEPS) per target to a copy of sweep-small.

    Each step is the target's echo-u5 point under a new id, with `--rate R`, its latency
    scaled by the step's factor. Sets meta.json's SLO between the 2nd and 3rd steps of every
    target and returns it in µs.
    """
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    base = {t: json.loads((run_dir / "points" / f"{t}-echo-u5-host" / "point.json").read_text())
            ["summary"]["latency_us"]["echo"]["p99_us"] for t in ("raw", "aiohttp")}  # fmt: skip
    slo_us = 4.0 * max(base.values())
    assert all(60.0 * p99 > slo_us for p99 in base.values())  # every third step is over
    for target in base:
        for rate, factor in KNEE_STEPS:
            new_id = f"{target}-echo_rate-u5-r{rate}-host"
            stage = staging / new_id
            shutil.copytree(run_dir / "points" / f"{target}-echo-u5-host",
                            stage / "points" / new_id)  # fmt: skip
            scale_latency(stage, factor)
            pdir = Path(shutil.move(stage / "points" / new_id, run_dir / "points" / new_id))
            _as_echo_rate(pdir)
            result = json.loads((pdir / "point.json").read_text())
            users = result["point"]["users"]  # the offered total, as a sweep's rates store it
            result["point"].update(scenario="echo_rate", point_id=new_id, rate=rate * users,
                                   options=["--rate", str(rate)])  # fmt: skip
            (pdir / "point.json").write_text(json.dumps(result))
            meta["plan"].append(result["point"])
    meta["slo"] = {"p99_ms": slo_us / 1000.0, "error_rate": None}
    meta_path.write_text(json.dumps(meta))
    return slo_us


@pytest.fixture
def knee_copy(copy_run: Callable[[Path, str], Path], tmp_path: Path) -> tuple[Path, float]:
    """sweep-small plus echo_rate rate steps per target (KNEE_STEPS), and the SLO in µs."""
    run_dir = copy_run(SWEEP, "knee")
    return run_dir, add_knee_steps(run_dir, tmp_path / "staging")


# Kernel counters that grew in the wide copy: as many as a namespaced connect storm moves.
WIDE_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeWaitOverflow",
                 "TCPChallengeACK", "PAWSActive", "TWRecycled", "TCPReqQFullDrop",
                 "SyncookiesSent", "TCPBacklogDrop", "TCPAbortOnMemory", "TCPMemoryPressures",
                 "RetransSegs", "TCPAbortOnData", "TCPRcvQDrop")  # fmt: skip


@pytest.fixture
def wide_copy(copy_run: Callable[[Path, str], Path]) -> Path:
    """sweep-small's echo points under two kernel profiles (so the summary has a profile
    column), each point's self-check with a six-digit delay, and kernel counters moving on
    both sides: a kernel table far wider than the page (30 counter columns)."""
    run_dir = copy_run(SWEEP, "wide")
    add_profile_copies(run_dir, "echo", "tuned")
    for i, pdir in enumerate(sorted((run_dir / "points").iterdir())):
        sides = {side: {c: 1000 * (i + 1) + j for j, c in enumerate(WIDE_COUNTERS)}
                 for side in ("server", "client")}  # fmt: skip
        (pdir / "kernel_counters.json").write_text(json.dumps(sides))
        path = pdir / "locust_latency_us_histograms.json"
        document = json.loads(path.read_text())
        document["generator"] = {**document.get("generator", {}), "bound": True,
                                 "delay_p99_us": 123_456 + i, "busiest_run_pct": 99.5,
                                 "verdict": "GENERATOR-BOUND: delay p99 123,456 µs"}  # fmt: skip
        path.write_text(json.dumps(document))
    return run_dir


@pytest.fixture
def latency_copy(knee_copy: tuple[Path, float]) -> Path:
    """knee_copy plus, per target, an echo_rate point at 2 connections offered the same total
    (800 msgs/s) as its last 5-connection step: one total rate at two connection counts."""
    run_dir, _ = knee_copy
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    for target in ("raw", "aiohttp"):
        new_id = f"{target}-echo_rate-u2-r400-host"
        pdir = Path(shutil.copytree(run_dir / "points" / f"{target}-echo-u2-host",
                                    run_dir / "points" / new_id))  # fmt: skip
        _as_echo_rate(pdir)
        result = json.loads((pdir / "point.json").read_text())
        result["point"].update(scenario="echo_rate", point_id=new_id, rate=800.0,
                               options=["--rate", "400"])  # fmt: skip
        (pdir / "point.json").write_text(json.dumps(result))
        meta["plan"].append(result["point"])
    meta_path.write_text(json.dumps(meta))
    return run_dir
