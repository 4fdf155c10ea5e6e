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


@pytest.fixture(scope="session")
def sweep_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sweep-small's report.html, written once per session (with its CSVs beside it)."""
    return write_report(SWEEP, tmp_path_factory.mktemp("sweep-report"))


@pytest.fixture(scope="session")
def extras_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """extras' report.html (failures with a close code, push), written once per session."""
    return write_report(EXTRAS, tmp_path_factory.mktemp("extras-report"))
