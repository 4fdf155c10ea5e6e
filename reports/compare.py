"""Two runs side by side: per matching point, the change of each metric, flagged past a threshold.

Points match on target, topology (proxy, compression, wss), scenario, connections and scenario
options, and on the kernel profile
too unless each run has a single, different profile (comparing two kernel configurations).
Only points that are ok in both runs are compared; the rest are listed. The environment diff
covers machine, versions, kernel settings, limits and the suite's commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports import charts, tables
from reports.load import Run
from reports.page import Chart, Page, Section, Table, environment, fmt

# column, label, direction: +1 when a rise is worse, -1 when a fall is worse.
METRICS = (
    ("p50_us", "p50 µs", 1),
    ("p99_us", "p99 µs", 1),
    ("msgs_per_s", "msgs/s", -1),
    ("server_rss_per_conn_bytes", "RSS bytes per conn", 1),
)
# "topology": what sits before the target (tables.topology_names): a hop is never matched
# with the direct point.
MATCH_KEYS = ["target", "topology", "scenario", "users", "options", "kernel_profile"]
ENV_SECTIONS = ("machine", "versions", "sysctls", "rlimits", "suite")
CHANGE_COLUMNS = ("point", "metric", "a", "b", "change_pct", "worse_pct", "regression",
                  "saturated")  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    a: Run
    b: Run
    threshold_pct: float
    keys: list[str]
    changes: pd.DataFrame  # long: one row per matched point x metric
    unmatched: pd.DataFrame  # point_id, run (A or B), status, why
    environment: pd.DataFrame  # section, key, a, b (differing values only)
    shared: int = 0  # points present in both runs, whatever their status
    compared: int = 0  # of those, the points ok in both: the ones whose metrics are compared

    @property
    def in_common(self) -> str:
        """'3 points in common, 2 compared (ok in both)', for the console and the page."""
        points = "point" if self.shared == 1 else "points"
        return f"{self.shared} {points} in common, {self.compared} compared (ok in both)"

    @property
    def regressed(self) -> bool:
        return bool(self.changes["regression"].any()) if not self.changes.empty else False

    @property
    def regressions(self) -> pd.DataFrame:
        return self.changes[self.changes["regression"]]


def match_keys(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """The kernel profile is part of the key unless each run has one, different profile."""
    pa, pb = set(a["kernel_profile"].dropna()), set(b["kernel_profile"].dropna())
    if len(pa) == 1 and len(pb) == 1 and pa != pb:
        return MATCH_KEYS[:-1]
    return MATCH_KEYS


def change_pct(a: Any, b: Any) -> float | None:
    """(b - a) / a in %; None when either is missing or a is zero."""
    if a is None or b is None or pd.isna(a) or pd.isna(b) or a == 0:
        return None
    return 100.0 * (float(b) - float(a)) / abs(float(a))


def compare(a: Run, b: Run, threshold_pct: float = 10.0) -> Comparison:
    points_a = a.points.assign(topology=tables.topology_names(a.points))
    points_b = b.points.assign(topology=tables.topology_names(b.points))
    keys = match_keys(points_a, points_b)
    merged = points_a.merge(points_b, on=keys, how="outer", suffixes=("_a", "_b"),
                            indicator=True)  # fmt: skip
    both = merged["_merge"] == "both"
    both_ok = both & (merged["status_a"] == tables.OK) & (merged["status_b"] == tables.OK)
    rows = []
    for _, m in merged[both_ok].iterrows():
        label = _label(m, keys)
        saturated = bool(m["generator_saturated_a"]) or bool(m["generator_saturated_b"])
        for column, metric, direction in METRICS:
            va, vb = m[f"{column}_a"], m[f"{column}_b"]
            change = change_pct(va, vb)
            worse = None if change is None else direction * change
            rows.append((label, metric, va, vb, change, worse,
                         worse is not None and worse > threshold_pct, saturated))  # fmt: skip
    changes = pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))
    return Comparison(a, b, threshold_pct, keys, changes, _unmatched(merged, both_ok),
                      environment_diff(a.meta, b.meta), shared=int(both.sum()),
                      compared=int(both_ok.sum()))  # fmt: skip


def _label(row: pd.Series, keys: list[str]) -> str:
    hop = f" · {row['topology']}" if row.get("topology") else ""
    label = f"{row['target']}{hop} {row['scenario']} {int(row['users'])} conn"
    if row["options"]:
        label += f" {row['options']}"
    if "kernel_profile" in keys:
        label += f" · {row['kernel_profile']}"
    return label


def _unmatched(merged: pd.DataFrame, both_ok: pd.Series) -> pd.DataFrame:
    rows = []
    for _, m in merged[~both_ok].iterrows():
        if m["_merge"] == "left_only":
            rows.append((m["point_id_a"], "A", m["status_a"], "no matching point in B"))
        elif m["_merge"] == "right_only":
            rows.append((m["point_id_b"], "B", m["status_b"], "no matching point in A"))
        else:
            why = f"status {m['status_a']} in A, {m['status_b']} in B"
            rows.append((m["point_id_a"], "A and B", f"{m['status_a']}/{m['status_b']}", why))
    return pd.DataFrame(rows, columns=["point_id", "run", "status", "why"])


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: " ".join(map(str, value)) if isinstance(value, list) else str(value)}


def environment_diff(meta_a: dict[str, Any], meta_b: dict[str, Any]) -> pd.DataFrame:
    """Provenance values that differ between the runs (absent on one side shows as '–')."""
    rows = []
    for section in ENV_SECTIONS:
        fa, fb = _flatten(meta_a.get(section) or {}), _flatten(meta_b.get(section) or {})
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key) != fb.get(key):
                rows.append((section, key, fa.get(key, "–"), fb.get(key, "–")))
    return pd.DataFrame(rows, columns=["section", "key", "a", "b"])


def names(a: Run, b: Run) -> tuple[str, str]:
    """The runs' ids, or their folder paths when the ids are the same (a copied run)."""
    return (a.run_id, b.run_id) if a.run_id != b.run_id else (str(a.path), str(b.path))


def build_page(result: Comparison) -> Page:
    """The comparison page: verdict first, per point changes, chart, unmatched, env diff."""
    a, b = result.a, result.b
    name_a, name_b = names(a, b)
    changes = result.changes
    verdict = (f"{len(result.regressions)} regression(s) beyond {result.threshold_pct:g} %"
               if result.regressed else
               f"no regression beyond {result.threshold_pct:g} %")  # fmt: skip
    verdict = f"{verdict}; {result.in_common}"
    warnings = [f"REGRESSION {r['point']}: {r['metric']} {fmt(r['a'])} → {fmt(r['b'])} "
                f"({r['change_pct']:+.1f} %)" + (" — generator saturated, figure unreliable"
                                                 if r["saturated"] else "")
                for _, r in result.regressions.iterrows()]  # fmt: skip
    if not result.compared:  # "no regression" would then be said of nothing
        warnings.insert(0, f"NOTHING COMPARED: {result.in_common}")
    sections = [Section("changes", "Change per point",
                        intro=f"A = {a.path}, B = {b.path}. Points matched on "
                        f"{', '.join(result.keys)}. Positive ‘worse’ means B is worse.",
                        charts=[_change_chart(result)])]  # fmt: skip
    if not result.unmatched.empty:
        sections.append(Section("unmatched", "Points not compared", tables=[Table(
            "unmatched", "", "Points present in one run only, or not ok "
            "in both.", ["point", "run", "status", "why"],
            [("", list(map(str, r))) for r in result.unmatched.itertuples(index=False)],
            result.unmatched)]))  # fmt: skip
    sections.append(Section("environment-diff", "Environment differences", tables=[Table(
        "environment-diff", "", "Machine, versions, kernel settings "
        "(host snapshot), limits and suite commit that differ between A and B; identical "
        "values are not shown.", ["section", "key", "A", "B"],
        [("", list(map(str, r))) for r in result.environment.itertuples(index=False)],
        result.environment)]))  # fmt: skip
    return Page(
        title=f"wsbench comparison: {name_a} → {name_b}",
        subtitle=verdict,
        warnings=warnings,
        summary=_changes_table(changes, result.threshold_pct),
        sections=sections,
        environment=[(f"A: {heading}", rows) for heading, rows in environment(a.meta, a.profiles)
                     if heading == "Run"] + [(f"B: {heading}", rows) for heading, rows in
                                             environment(b.meta, b.profiles)
                                             if heading == "Run"],
        no_warnings=f"No regression beyond {result.threshold_pct:g} %.",
    )  # fmt: skip


def _change_chart(result: Comparison) -> Chart:
    return Chart(
        "changes",
        f"How much worse B is than A per point and metric, in %; bars past the dotted line "
        f"({result.threshold_pct:g} %) are regressions (red). Negative bars are improvements.",
        charts.change_chart(result.changes, result.threshold_pct,
                            "{} → {}: change for the worse".format(*names(result.a, result.b))),
        {"": result.changes},
    )  # fmt: skip


def _changes_table(changes: pd.DataFrame, threshold_pct: float) -> Table:
    header = ["point", *(f"{metric}: A → B (Δ)" for _, metric, _direction in METRICS)]
    rows = []
    for point, group in changes.groupby("point", sort=False):
        by_metric = group.set_index("metric")
        cells = [str(point)]
        for _, metric, _direction in METRICS:
            r = by_metric.loc[metric]
            change = "" if pd.isna(r["change_pct"]) else f" ({r['change_pct']:+.1f} %)"
            cells.append(f"{fmt(r['a'])} → {fmt(r['b'])}{change}")
        css = "regression" if group["regression"].any() else \
            "saturated" if group["saturated"].any() else ""  # fmt: skip
        rows.append((css, cells))
    return Table("changes-table", "", f"B against A; rows in red have a metric worse "
                 f"by more than {threshold_pct:g} %; amber rows had a saturated generator in "
                 "either run.", header, rows, changes)  # fmt: skip
