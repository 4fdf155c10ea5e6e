"""Entry points for the command line: `wsbench report` and `wsbench compare`.

Both read stored files only, so they can be re-run at any time. Bad input raises a
reports.errors.ReportError whose message is one line.
"""

from __future__ import annotations

from pathlib import Path

from reports import compare, html, page
from reports.errors import ReportError
from reports.load import load_run

REPORT_DIR = "report"
REPORT_HTML = "report.html"
COMPARISON_HTML = "comparison.html"


def _target(out: Path | None, default_dir: Path, filename: str) -> Path:
    """Where the page goes: `out` as a file (*.html) or a folder, else default_dir/filename."""
    if out is None:
        path = default_dir / filename
    elif out.suffix.lower() in (".html", ".htm"):
        path = out
    else:
        path = out / filename
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {path.parent}: {exc.strerror}") from None
    return path


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write RUN_DIR/report/report.html (or `out`) and the charts' CSVs beside it."""
    run = load_run(Path(run_dir))
    content = page.build(run)
    path = _target(out, Path(run_dir) / REPORT_DIR, REPORT_HTML)
    html.write_csvs(path.parent, content.charts(), content.tables())
    return html.write_page(path, "report.html.j2", content.charts(), page=content)


def write_comparison(
    run_a: Path, run_b: Path, out: Path | None = None, threshold_pct: float = 10.0
) -> tuple[Path, bool]:
    """Write the comparison page of two runs; return its path and whether a regression shows.

    Default place: RUN_B/compare-<run A's folder name>/comparison.html, CSVs beside it.
    """
    path, result = write_comparison_of(run_a, run_b, out, threshold_pct)
    return path, result.regressed


def write_comparison_of(
    run_a: Path, run_b: Path, out: Path | None = None, threshold_pct: float = 10.0
) -> tuple[Path, compare.Comparison]:
    """As write_comparison, returning the whole comparison (how many points it compared)."""
    if threshold_pct < 0:
        raise ReportError(f"the regression threshold must be 0 % or more, got {threshold_pct:g}")
    a, b = load_run(Path(run_a)), load_run(Path(run_b))
    result = compare.compare(a, b, threshold_pct)
    content = compare.build_page(result)
    path = _target(out, Path(run_b) / f"compare-{Path(run_a).resolve().name}", COMPARISON_HTML)
    html.write_csvs(path.parent, content.charts(), content.tables())
    written = html.write_page(path, "report.html.j2", content.charts(), page=content)
    return written, result
