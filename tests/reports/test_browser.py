"""The pages in real headless Chromium (Debian's): no console errors, charts drawn, not blank."""

from __future__ import annotations

import time
from pathlib import Path

from browser import (
    console_errors,
    console_errors_within,
    headless_chromium,
    require_chromium,
    screenshot_spread,
)

from reports.cli import write_comparison, write_report
from reports.load import Run

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
        assert console_errors_within(driver), "console errors are not being captured"
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


VIEWPORT_WIDTH = 1280
# Elements whose right edge passes the viewport, other than those inside a scrolling box
# (whose box clips them): what a reader would have to scroll the whole page sideways to see.
OVERFLOWING_JS = """
const width = document.documentElement.clientWidth;
return Array.from(document.querySelectorAll('body *'))
  .filter(e => !e.parentElement.closest('.scroll'))
  .filter(e => e.getBoundingClientRect().right > width + 0.5)
  .map(e => `${e.tagName}#${e.id} ${Math.round(e.getBoundingClientRect().right)}`);
"""
BOX_JS = "const b = document.getElementById(arguments[0]); return [b.scrollWidth, b.clientWidth];"


def _wait(driver, script: str, *args: object, timeout_s: float = 10.0) -> object:
    """The script's value once truthy (polled), or its last value after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = driver.execute_script(script, *args)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_report_reads_at_1280_px(
    sweep: Run, sweep_report: Path, wide_copy: Path, tmp_path: Path
) -> None:
    """At 1280 px the findings open the page, nothing runs off the right edge (a table wider
    than the page scrolls in its own box), and a point's chart loads from file:// when its
    box is opened by following its link."""
    require_chromium()
    wide = write_report(wide_copy, tmp_path / "wide")
    assert wide.read_text().count("<th>") > 40  # a kernel table far wider than the page
    with headless_chromium(tmp_path / "profile", width=VIEWPORT_WIDTH, height=1000) as driver:
        for path in (sweep_report, wide):
            driver.get(path.as_uri())
            first = driver.execute_script("return document.querySelector('section').id")
            assert first == "findings", path
            tops = driver.execute_script(
                "return ['findings', 'warnings'].map(i => document.getElementById(i)"
                ".getBoundingClientRect().top)")  # fmt: skip
            assert tops[0] < tops[1] < 1000, tops  # findings first, warnings on the first screen
            assert driver.execute_script(OVERFLOWING_JS) == [], path
            width = driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= VIEWPORT_WIDTH, (path, width)
            scroll, box = driver.execute_script(BOX_JS, "table-summary")
            assert scroll <= box, f"{path}: the summary needs scrolling at 1280 px (a cut column)"
            assert console_errors(driver) == [], path
        scroll, box = driver.execute_script(BOX_JS, "table-kernel-counters")
        assert scroll > box, "the kernel table is not wider than its box: nothing tested"
        driver.get(sweep_report.as_uri())

        pid = sweep.points.loc[sweep.points["status"] == "ok", "point_id"].iloc[-1]
        images = f"#point-{pid} img"
        assert driver.execute_script(f"return document.querySelector('{images}').naturalWidth") \
            == 0  # lazy: not loaded while its box is closed and off screen  # fmt: skip
        driver.get(f"{sweep_report.as_uri()}#point-{pid}")  # what a findings cell's link does
        opened = _wait(driver, f"return document.getElementById('point-{pid}')"
                       ".closest('details').open")  # fmt: skip
        assert opened, "following a point's link did not open its box"
        widths = _wait(driver, f"const w = Array.from(document.querySelectorAll('{images}'))"
                       ".map(i => i.naturalWidth); return w.every(x => x > 0) && w")  # fmt: skip
        assert widths and len(widths) == 2, widths
        assert console_errors(driver) == []
