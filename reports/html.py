"""Pages -> one HTML file each, with every chart's data as CSV beside it.

Charts are SVG with glyphs drawn as paths, so they look the same without any font installed.
Those marked inline (a run page's headline charts) are in the page; the others (scenario,
kernel and per point charts) are SVG files beside it, shown with <img loading="lazy">, which
works offline and from file:// (where a script's fetch() would be refused). The CSS is inline;
nothing is fetched from elsewhere.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure

from reports.page import Chart, Table

TEMPLATES = Path(__file__).resolve().parent / "templates"
_XML_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


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
    svgs = {chart.slug: svg(chart.figure, chart.slug) for chart in charts if chart.inline}
    images = {chart.slug: write_svg(path.parent, chart) for chart in charts if not chart.inline}
    text = render(template, svgs=svgs, images=images, **context)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
