"""Pages -> one HTML file each, with every chart's data as CSV beside it.

Charts are SVG with glyphs drawn as paths, so they look the same without any font installed.
Those marked inline (a run page's headline charts) are in the page; the others (scenario,
kernel and per point charts) are SVG files beside it, shown with <img loading="lazy">, which
works offline and from file:// (where a script's fetch() would be refused). The CSS is inline;
nothing is fetched from elsewhere.

Drawing is most of a report's time (make bench's 72 charts: 15 s of 19 on one core, two thirds
of each in matplotlib's constrained layout), so a page with many charts has them drawn by a
pool of forked processes, one per CPU: a fork has the figures already, and sends back only the
inline SVG text or the <img> attributes of the file it wrote.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure

from common.procs import die_with
from reports.page import Chart, Table

TEMPLATES = Path(__file__).resolve().parent / "templates"
_XML_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
# Under this many charts per CPU, forking costs about what it saves: drawn in this process.
CHARTS_PER_WORKER = 6
_FORKED: list[Chart] = []  # the charts a forked drawing worker finds by index


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _svg_document(figure: Figure, salt: str) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _METADATA.sub("", buffer.getvalue(), count=1)


def svg(figure: Figure, salt: str) -> str:
    """The figure as an inline <svg> element: no XML prologue or DOCTYPE, no RDF metadata.

    Element ids are salted per chart so that many SVGs can share one page without clashing.
    """
    text = _XML_PROLOGUE.sub("", _svg_document(figure, salt), count=1)
    return text.replace("<svg ", f'<svg role="img" aria-label="{_attr(_title(figure))}" ', 1)


def write_svg(out_dir: Path, chart: Chart) -> dict[str, str]:
    """The chart as a standalone SVG file in out_dir; what its <img> needs (src, size, alt)."""
    path = out_dir / f"{chart.slug}.svg"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(_svg_document(chart.figure, chart.slug), encoding="utf-8")
    tmp.replace(path)
    width, height = chart.figure.get_size_inches() * 96  # CSS px; the page scales it down
    return {"src": path.name, "width": f"{width:.0f}", "height": f"{height:.0f}",
            "alt": _title(chart.figure)}  # fmt: skip


def _title(figure: Figure) -> str:
    titles = [figure.get_suptitle()] + [ax.get_title() for ax in figure.axes]
    return next((t for t in titles if t), "chart")


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def write_csvs(out_dir: Path, charts: list[Chart], tables: list[Table]) -> list[Path]:
    """Each chart's plotted tables and each page table as CSV in out_dir."""
    written = []
    for chart in charts:
        for key, name in chart.csv_names().items():
            written.append(_csv(chart.data[key], out_dir / name))
    for table in tables:
        written.append(_csv(table.frame, out_dir / f"{table.slug}.csv"))
    return written


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def write_page(path: Path, template: str, charts: list[Chart], **context: Any) -> Path:
    """Render the page with its inline charts' SVGs, write the others' SVG files beside it,
    and write the page atomically."""
    drawn = draw_charts(path.parent, charts)
    svgs = {chart.slug: drawn[chart.slug] for chart in charts if chart.inline}
    images = {chart.slug: drawn[chart.slug] for chart in charts if not chart.inline}
    text = render(template, svgs=svgs, images=images, **context)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def draw_charts(out_dir: Path, charts: list[Chart]) -> dict[str, Any]:
    """Each chart drawn: an inline one as its <svg> text, another as the SVG file beside the
    page and its <img> attributes (write_svg), by slug; in forked workers when there are many."""
    workers = min(len(charts) // CHARTS_PER_WORKER, len(os.sched_getaffinity(0)))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return dict(_draw(chart, out_dir) for chart in charts)
    global _FORKED
    _FORKED = charts
    pool = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                               initializer=_worker_setup, initargs=(os.getpid(),))  # fmt: skip
    try:
        # The slowest (most panels) first, so that no worker is left with one at the end.
        order = sorted(range(len(charts)), key=lambda i: -len(charts[i].figure.axes))
        futures = [pool.submit(_draw_forked, i, str(out_dir)) for i in order]
        return dict(future.result() for future in futures)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # an interrupt leaves no worker behind
        _FORKED = []


def _draw(chart: Chart, out_dir: Path) -> tuple[str, Any]:
    if chart.inline:
        return chart.slug, svg(chart.figure, chart.slug)
    return chart.slug, write_svg(out_dir, chart)


def _draw_forked(index: int, out_dir: str) -> tuple[str, Any]:
    return _draw(_FORKED[index], Path(out_dir))


def _worker_setup(parent: int) -> None:
    """A drawing worker dies with the process that forked it and leaves signals to it: Ctrl-C
    reaches the whole process group, and the parent's own handlers are not the worker's."""
    die_with(parent, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
