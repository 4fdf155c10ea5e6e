"""The pages in real headless Chromium (Debian's): no console errors, charts drawn, not blank."""

from __future__ import annotations

from pathlib import Path

from browser import console_errors, headless_chromium, require_chromium, screenshot_spread

from reports.cli import write_comparison

FIGURE_HEIGHTS_JS = (
    "return Array.from(document.querySelectorAll('figure svg'))"
    ".filter(s => !s.closest('details:not([open])'))"
    ".map(s => s.getBoundingClientRect().height)"
)


def test_pages_render_in_chromium(
    sweep_report: Path, sweep_dir: Path, slower_copy: Path, tmp_path: Path
) -> None:
    """Report and comparison load offline with no console errors; charts have size; not blank."""
    require_chromium()
    comparison, _ = write_comparison(sweep_dir, slower_copy, tmp_path / "cmp")
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><title>x</title><script>console.error('boom')</script>")
    with headless_chromium(tmp_path / "profile", width=1280, height=2400) as driver:
        driver.get(broken.as_uri())
        assert console_errors(driver), "console errors are not being captured"
        for path in (sweep_report, comparison):
            driver.get(path.as_uri())
            assert driver.title.startswith("wsbench"), path
            heights = driver.execute_script(FIGURE_HEIGHTS_JS)
            assert heights and min(heights) > 150, (path, heights)
            driver.execute_script("document.querySelector('figure').scrollIntoView()")
            shot = tmp_path / f"{path.stem}.png"
            driver.save_screenshot(str(shot))
            colours, commonest = screenshot_spread(shot)
            assert colours > 50 and commonest < 0.95, f"{shot} looks blank ({colours} colours)"
            assert console_errors(driver) == [], path
