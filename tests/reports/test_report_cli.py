"""write_report / write_comparison: where the files go."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from reports.cli import write_comparison, write_report


def test_report_goes_into_the_run_folder_by_default(
    copy_run: Callable[[Path, str], Path], extras_dir: Path
) -> None:
    """Without --out: RUN/report/report.html with the CSVs beside it; points/ untouched."""
    run_dir = copy_run(extras_dir, "run")
    before = sorted(p.relative_to(run_dir) for p in (run_dir / "points").rglob("*"))
    path = write_report(run_dir)
    assert path == run_dir / "report" / "report.html" and path.is_file()
    assert (run_dir / "report" / "summary.csv").is_file()
    assert (run_dir / "report" / "push-latency-gaps.csv").is_file()
    assert sorted(p.relative_to(run_dir) for p in (run_dir / "points").rglob("*")) == before
    assert write_report(run_dir) == path  # re-running overwrites in place


def test_out_may_be_a_file_or_a_folder(extras_dir: Path, tmp_path: Path) -> None:
    """--out x.html writes that file; --out DIR writes DIR/report.html; CSVs beside both."""
    named = write_report(extras_dir, tmp_path / "a" / "mine.html")
    assert named == tmp_path / "a" / "mine.html" and (tmp_path / "a" / "summary.csv").is_file()
    assert write_report(extras_dir, tmp_path / "b") == tmp_path / "b" / "report.html"


def test_comparison_default_place(copy_run: Callable[[Path, str], Path], extras_dir: Path) -> None:
    """Without --out the comparison goes to RUN_B/compare-<RUN_A name>/comparison.html."""
    run_a, run_b = copy_run(extras_dir, "a"), copy_run(extras_dir, "b")
    path, regressed = write_comparison(run_a, run_b)
    assert path == run_b / "compare-a" / "comparison.html" and path.is_file()
    assert not regressed
    assert (path.parent / "changes.csv").is_file()


def test_partial_runs_still_make_a_report(
    copy_run: Callable[[Path, str], Path], extras_dir: Path
) -> None:
    """Unfinished and never-started points are listed as such; the page is still written."""
    run_dir = copy_run(extras_dir, "partial")
    (run_dir / "points" / "raw-push-u2-host" / "point.json").unlink()
    text = write_report(run_dir).read_text()
    assert "raw-push-u2-host: incomplete" in text
    for point in (run_dir / "points").iterdir():
        shutil.rmtree(point)
    text = write_report(run_dir).read_text()
    assert "raw-echo-u2-host: missing" in text and "raw-push-u2-host: missing" in text
    assert text.count('<tr class="bad">') == 2
