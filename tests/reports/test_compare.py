"""Comparing two runs: nothing flagged against itself, a doctored slower copy flagged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reports import compare
from reports.cli import write_comparison
from reports.errors import NotARunError, ReportError
from reports.load import Run, load_run


def test_run_against_itself_flags_nothing(sweep: Run, sweep_dir: Path, tmp_path: Path) -> None:
    """Every point matches itself with 0 % change; the page says no regression."""
    result = compare.compare(sweep, sweep, 10.0)
    assert not result.regressed
    assert len(result.changes) == len(sweep.points) * len(compare.METRICS)
    assert (result.changes["change_pct"].fillna(0) == 0).all()
    assert result.unmatched.empty and result.environment.empty
    path, regressed = write_comparison(sweep_dir, sweep_dir, tmp_path)
    assert not regressed and "No regression beyond 10 %" in path.read_text()


def test_slower_copy_is_flagged(sweep: Run, sweep_dir: Path, slower_copy: Path,
                                tmp_path: Path) -> None:  # fmt: skip
    """Latencies 1.5x longer: p50 and p99 of every point flagged, throughput not."""
    result = compare.compare(sweep, load_run(slower_copy), 10.0)
    assert result.regressed
    flagged = result.regressions
    assert set(flagged["metric"]) == {"p50 µs", "p99 µs"}
    assert len(flagged) == 2 * len(sweep.points)
    assert flagged["change_pct"].between(45, 55).all()
    path, regressed = write_comparison(sweep_dir, slower_copy, tmp_path / "out")
    assert regressed
    text = path.read_text()
    assert text.count("REGRESSION ") == len(flagged)
    assert text.count('<tr class="regression">') == len(sweep.points)


def test_threshold_decides(sweep: Run, slower_copy: Path) -> None:
    """A 50 % slowdown is not a regression at a 60 % threshold; a speed-up never is."""
    slower = load_run(slower_copy)
    assert not compare.compare(sweep, slower, 60.0).regressed
    assert not compare.compare(slower, sweep, 10.0).regressed  # B faster than A


def test_environment_diff_lists_what_changed(
    sweep: Run, copy_run: Callable[[Path, str], Path], sweep_dir: Path
) -> None:
    """A changed version and sysctl show up in the diff, identical values do not."""
    other = copy_run(sweep_dir, "upgraded")
    meta = json.loads((other / "meta.json").read_text())
    meta["versions"]["aiohttp"] = "9.9.9"
    meta["sysctls"]["net.core.somaxconn"] = "65535"
    (other / "meta.json").write_text(json.dumps(meta))
    diff = compare.compare(sweep, load_run(other)).environment
    rows = {(r.section, r.key): (r.a, r.b) for r in diff.itertuples()}
    assert rows == {
        ("versions", "aiohttp"): (sweep.meta["versions"]["aiohttp"], "9.9.9"),
        ("sysctls", "net.core.somaxconn"): (sweep.meta["sysctls"]["net.core.somaxconn"], "65535"),
    }


def test_runs_with_different_single_profiles_match(
    sweep: Run, copy_run: Callable[[Path, str], Path], sweep_dir: Path
) -> None:
    """Two kernel configurations (one profile each) are compared point by point."""
    other = copy_run(sweep_dir, "tuned")
    for point_json in (other / "points").glob("*/point.json"):
        result = json.loads(point_json.read_text())
        result["point"]["kernel_profile"] = "tuned"
        point_json.write_text(json.dumps(result))
    meta = json.loads((other / "meta.json").read_text())
    for planned in meta["plan"]:
        planned["kernel_profile"] = "tuned"
    (other / "meta.json").write_text(json.dumps(meta))
    result = compare.compare(sweep, load_run(other))
    assert "kernel_profile" not in result.keys
    assert result.unmatched.empty and not result.regressed


def test_unmatched_and_failed_points_are_listed(sweep: Run, extras: Run) -> None:
    """Points only in one run are listed as not compared rather than failing the comparison."""
    result = compare.compare(sweep, extras)
    assert len(result.unmatched) == len(sweep.points) + len(extras.points)
    assert result.changes.empty and not result.regressed


def test_bad_input(tmp_path: Path, sweep_dir: Path) -> None:
    """A missing run folder or a negative threshold is a one-line ReportError."""
    with pytest.raises(NotARunError):
        write_comparison(sweep_dir, tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ReportError, match="threshold must be 0 % or more"):
        write_comparison(sweep_dir, sweep_dir, tmp_path / "out", threshold_pct=-1)


def test_it_counts_the_points_the_runs_share(sweep: Run, extras: Run, tmp_path: Path) -> None:
    """Shared and compared points are counted; a comparison of nothing says so on its page."""
    itself = compare.compare(sweep, sweep)
    assert itself.shared == itself.compared == len(sweep.points)
    assert itself.in_common == f"{len(sweep.points)} points in common, " \
        f"{len(sweep.points)} compared (ok in both)"  # fmt: skip
    apart = compare.compare(sweep, extras)
    assert (apart.shared, apart.compared) == (0, 0)
    page = compare.build_page(apart)
    assert "0 points in common" in page.subtitle
    assert page.warnings[0].startswith("NOTHING COMPARED")
