"""Pages -> one self-contained HTML file each, with every chart's data as CSV beside it.

Charts are inlined as SVG (glyphs drawn as paths, so the page looks the same without any font
installed); the CSS is inline; nothing is fetched from anywhere, so the page works offline.
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


def svg(figure: Figure, salt: str) -> str:
    """The figure as an inline <svg> element: no XML prologue or DOCTYPE, no RDF metadata.

    Element ids are salted per chart so that many SVGs can share one page without clashing.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = _METADATA.sub("", _XML_PROLOGUE.sub("", buffer.getvalue(), count=1), count=1)
    return text.replace("<svg ", f'<svg role="img" aria-label="{_attr(_title(figure))}" ', 1)


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
    """Render the page with its charts' SVGs and write it atomically."""
    svgs = {chart.slug: svg(chart.figure, chart.slug) for chart in charts}
    text = render(template, svgs=svgs, **context)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
