"""Reports: stored run folders -> frames -> findings -> charts -> one HTML page; compare runs.

The page works offline and from file://: headline charts inline, per-point and scenario charts
as SVG files beside it.

Reads files only (it imports `common` and never Locust, the targets, the scenarios or the
harness), so a report can be made again at any time, anywhere, from a copied results folder.

    load.py        run folder -> pandas frames (the only module knowing file names and columns)
    histograms.py  percentiles and spectra from the stored encoded HdrHistograms
    tables.py      frames -> the exact tables the charts plot (written beside the page as CSV)
    findings.py    the answers per target and topology, each linked to its point; sentences
    topology.py    per target, its variants (proxy, deflate, wss, firewall profiles) side by
                   side, and one sentence per hop against the direct, plain baseline
    charts.py      table -> matplotlib Figure, one pure function per chart
    page.py        what a run's page holds: sections, charts, captions, tables
    compare.py     two runs -> per point changes, regression flags, environment diff
    html.py        page -> report.html (Jinja2 template, inline SVG) and the CSVs
    cli.py         write_report() and write_comparison(), for `wsbench report` / `compare`
    errors.py      ReportError and its subclasses (bad input, one line each)
"""
