"""The answers a run gives, per target: one row each, every cell linked to its evidence.

The questions (README, "What make bench answers"): how fast can this server go before latency
passes the SLO (the knee of a rate-stepped echo series), what latency do messages see at 1,000
and 10,000 connections, how many connects per second does it sustain under each kernel profile
and what broke first, how much memory does an idle connection cost, how quickly does a
broadcast reach 1,000 subscribers; and, where the run has them, what each failover drill did
and what a broker costs a broadcast. Each answer is read from the stored points; a point whose
load generator was the limit (its self-check) answers nothing about the server and says so.
Sentences are built from the same figures, never written by hand; the drill and broker ones
link to their point (Findings.links).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from reports import tables
from reports.load import Run

OK = "ok"
DEFAULT_SLO_P99_MS = 10.0
KIB = 1024
# A rate step that kept fewer of its scheduled sends than this did not carry its offered load.
SENDS_KEPT_MIN = 0.95
CONNECT_LATENCY = "connect corrected"  # an open-model connect's latency from its intended start


@dataclass(frozen=True)
class Cell:
    text: str  # what the cell shows
    href: str | None = None  # evidence: "#point-<point_id>", "#chart-<slug>" or a CSV beside it
    title: str = ""  # tooltip


EMPTY = Cell("–", None, "not measured in this run")


@dataclass(frozen=True)
class Findings:
    columns: list[str]
    rows: list[list[Cell]]  # one per target
    sentences: list[str]  # one generated sentence per finding
    links: dict[str, str] = field(default_factory=dict)  # sentence -> its evidence (an href)


def build(run: Run) -> Findings:
    """The findings table of a run: the columns its points can answer, one row per target and
    topology (a target through nginx, or with deflate, is a row of its own: "raw · nginx");
    then a sentence per hop or feature against its direct, plain baseline."""
    run = with_variants(run)
    points = run.points
    targets = list(dict.fromkeys(points.loc[points["target"].notna(), "variant"]))
    columns: list[tuple[str, Callable[[str], tuple[Cell, str | None]]]] = []
    knees = knee_series(run)
    profiles = list(dict.fromkeys(profile for _, profile in knees))
    for profile in profiles:
        named = "knee (msgs/s within SLO)" + (f" · {profile}" if len(profiles) > 1 else "")
        columns.append((named, lambda t, p=profile: knee(run, knees, t, p, len(profiles) > 1)))
    latency_rate, latency_users = _latency_plan(run)
    for users in latency_users:
        columns.append((f"echo p50 / p99 at {users:,} conns",
                        lambda t, u=users: _latency(run, t, u, latency_rate)))  # fmt: skip
    for profile in _connect_profiles(points):
        columns.append((f"connects/s · {profile}", lambda t, p=profile: _connect(run, t, p)))
    held = _profiles(points, "hold")
    for profile in held:
        named = "memory per idle conn" + (f" · {profile}" if len(held) > 1 else "")
        columns.append((named, lambda t, p=profile: _memory(points, t, p, len(held) > 1)))
    if _has(points, "broadcast"):
        columns.append(("broadcast p99 · delivered", lambda t: _broadcast(points, t)))
    rows, sentences = [], []
    for target in targets:
        row = [Cell(str(target))]
        for _, answer in columns:
            cell, sentence = answer(target)
            row.append(cell)
            if sentence:
                sentences.append(sentence)
        rows.append(row)
    # A column no target answers (a drill run's hold points are no memory figure) is left out.
    names = [name for name, _ in columns]
    kept = [i for i in range(len(names)) if any(row[i + 1] != EMPTY for row in rows)]
    rows = [[row[0], *(row[i + 1] for i in kept)] for row in rows] if kept else []
    from reports import topology  # it builds on this module's answers (the knee's cells)

    links = dict(drills(run) + brokers(run) + topology.sentences(run))
    return Findings(["target", *(names[i] for i in kept)], rows, sentences + list(links),
                    links)  # fmt: skip


def as_text(findings: Findings) -> list[str]:
    """The table and its sentences as console lines."""
    if not findings.rows and not findings.sentences:
        return ["findings: no point of this run answers the questions (see README)"]
    table = [findings.columns, *([c.text for c in row] for row in findings.rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(findings.columns))]
    lines = ["findings:"]
    for n, cells in enumerate(table if findings.rows else []):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"- {s}" for s in findings.sentences]
    return lines


# -- helpers ---------------------------------------------------------------------------------


def with_variants(run: Run) -> Run:
    """The run with a `variant` column on its points: the target and its topology, what the
    findings' rows are keyed by (tables.variant_names)."""
    if "variant" in run.points:
        return run
    return replace(run, points=run.points.assign(variant=tables.variant_names(run.points)))


def _profiles(points: pd.DataFrame, scenario: str) -> list[str]:
    """The kernel profiles a scenario's points ran under, in run order."""
    return list(dict.fromkeys(points.loc[points["scenario"] == scenario, "kernel_profile"]
                              .dropna()))  # fmt: skip


def _link(point_id: str) -> str:
    return f"#point-{point_id}"


def _has(points: pd.DataFrame, scenario: str) -> bool:
    return bool((points["scenario"] == scenario).any())


def num(value: Any) -> float | None:
    """A cell as a float; None for missing, NaN and what is not a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def cpu_us_per_event(cpu_pct: Any, per_s: Any) -> float | None:
    """Mean CPU (% of a core) over events (messages, connects) per second, in µs of CPU
    per event; None without both."""
    cpu, rate = num(cpu_pct), num(per_s)
    return cpu * 10_000.0 / rate if cpu is not None and rate else None


def ms(us: float | None) -> str:
    """µs as the findings write them: '850 µs', '2.7 ms', '–' for missing."""
    if us is None:
        return "–"
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us:.0f} µs"


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _bound(point: pd.Series) -> bool:
    return bool(point.get("generator_saturated"))


def _not_ok(point: pd.Series) -> str:
    """Why a point answers nothing, or '' when it does."""
    if point["status"] != OK:
        return f"{point['status']}: {point.get('reason') or 'no reason stored'}"
    if _bound(point):
        return "the load generator was the limit (its self-check)"
    return ""


def _slo_p99_us(run: Run, point_id: str) -> float:
    """The SLO the point was run under (its matrix part's, else the run's), else 10 ms."""
    slo = run.meta.get("slo")
    parts = slo if isinstance(slo, list) else [slo] if isinstance(slo, dict) else []
    for part in parts:
        if "points" in part and point_id not in part["points"]:
            continue
        if num(part.get("p99_ms")) is not None:
            return float(part["p99_ms"]) * 1000
    return DEFAULT_SLO_P99_MS * 1000


def _sends_kept(run: Run, point: pd.Series) -> float | None:
    """Scheduled sends made / due of an open-model point, from its counters."""
    mine = run.counters[run.counters["point_id"] == point["point_id"]]
    due = mine[mine["counter"].str.endswith("sends due")]["value"].sum()
    made = mine[mine["counter"].str.endswith("sends made")]["value"].sum()
    return made / due if due else None


# -- the knee --------------------------------------------------------------------------------


Knees = dict[tuple[str, str], pd.DataFrame]  # (variant, kernel profile) -> its rate steps


def knee_series(run: Run) -> Knees:
    """Per target and topology (the `variant` of with_variants) and kernel profile, its
    rate-stepped echo_rate points at the most-stepped connection count."""
    p = with_variants(run).points
    stepped = p[(p["scenario"] == "echo_rate") & p["rate"].notna()]
    found = {}
    for (variant, profile), mine in stepped.groupby(["variant", "kernel_profile"], sort=False):
        users = mine.groupby("users")["rate"].nunique().idxmax()
        series = mine[mine["users"] == users].sort_values("rate")
        if len(series) >= 2:
            found[(str(variant), str(profile))] = series
    return found


def knee(
    run: Run, knees: Knees, target: str, profile: str, named: bool = False,
    headroom: bool = True,
) -> tuple[Cell, str | None]:
    """The highest offered rate within the SLO, and what ended the series.

    A measured p99 is an upper bound of the server's share of it: a step within the SLO is
    within it even when the generator was the limit (its self-check), but the series ends
    there, and the knee is then above what this machine can offer. A step over the SLO is
    the server's knee only when the generator was clean at it. A lower bound says how busy
    the server was at it (`headroom`: in the cell, the sentence and the tooltip).
    """
    series = knees.get((target, profile))
    if series is None:
        return EMPTY, None
    every = series
    target = f"{target} under the {profile} profile" if named else target
    series = series[series["status"] != "skipped"]  # after the sweep's own stop
    users = int(series["users"].iloc[0]) if not series.empty else 0
    best, end = knee_steps(run, series)
    slo_ms = _slo_p99_us(run, str(every["point_id"].iloc[0])) / 1000
    if best is None:
        if end is None:
            return EMPTY, None
        kind, point, why = end
        if kind == "generator":
            sentence = (f"{target} at {point['rate']:,.0f} msgs/s and {users:,} connections: "
                        f"{why}; no knee can be read below that on this machine.")  # fmt: skip
            return Cell("no answer", _link(point["point_id"]), why), sentence
        sentence = (f"{target} did not hold even {point['rate']:,.0f} msgs/s at {users:,} "
                    f"connections: {why}.")  # fmt: skip
        return Cell(f"< {point['rate']:,.0f}", _link(point["point_id"]), why), sentence
    rate, p99 = best["rate"], num(best["p99_us"])
    link = _link(best["point_id"])
    cpu_cell, cpu_said = _headroom(best) if headroom else ("", "")
    if end is None:
        sentence = (f"{target} held every step up to {rate:,.0f} msgs/s at {users:,} connections "
                    f"(p99 {ms(p99)}, SLO {slo_ms:g} ms): its knee is above what this run "
                    f"offered{cpu_said}.")  # fmt: skip
        return Cell(f"≥ {rate:,.0f}{cpu_cell}", link, f"p99 {ms(p99)}{cpu_said}"), sentence
    kind, point, why = end
    if kind == "past":
        sentence = (f"{target}'s knee at {users:,} connections is {rate:,.0f} msgs/s (p99 "
                    f"{ms(p99)}); at {point['rate']:,.0f} msgs/s {why}.")  # fmt: skip
        return Cell(f"{rate:,.0f}", link, f"next step: {why}"), sentence
    at = "there" if point is best else f"at {point['rate']:,.0f} msgs/s"
    sentence = (f"{target} held {rate:,.0f} msgs/s at {users:,} connections within the "
                f"{slo_ms:g} ms SLO (p99 {ms(p99)}); the load generator reached its own limit "
                f"{at}, so the server's knee is above what this machine can offer{cpu_said}.")
    return Cell(f"≥ {rate:,.0f}{cpu_cell}", link, f"the generator's limit: {why}{cpu_said}"), \
        sentence


def _headroom(step: pd.Series) -> tuple[str, str]:
    """How busy the server was at a knee that is only a lower bound (every step held, or the
    generator's limit came first): its CPU there, for the cell and for the sentence. A server
    at a third of a core at the top step has room the run could not reach; its CPU per
    message is the measured cost that compares targets whose knees are both out of reach."""
    cpu = num(step.get("server_cpu_pct_mean"))
    if cpu is None:
        return "", ""
    per = cpu_us_per_event(cpu, step.get("achieved_per_s"))
    per_msg = f", {per:.1f} µs of CPU per message" if per is not None else ""
    return f" · server CPU {cpu:.0f}%", f"; the server used {cpu:.0f}% of a core there{per_msg}"


def knee_steps(
    run: Run, series: pd.DataFrame
) -> tuple[pd.Series | None, tuple[str, pd.Series, str] | None]:
    """A rate series' knee: its highest step within the SLO before the series ended (None if
    none was), and the step that ended it, (kind, point, why) with kind "past" or
    "generator" or "limit" (None: every step was within the SLO)."""
    best, end = None, None
    for _, point in series[series["status"] != "skipped"].iterrows():
        kind, why = _step(run, point)
        if kind in ("within", "limit"):
            best = point
        if kind != "within":
            end = (kind, point, why)
            break
    return best, end


def _step(run: Run, point: pd.Series) -> tuple[str, str]:
    """A rate step's verdict: "within" the SLO, "limit" (within it, the generator at its
    limit), "generator" (over it, the generator the limit) or "past" (the server's knee)."""
    if point["status"] != OK:
        return "past", f"the point {point['status']} ({point.get('reason') or '?'})"
    bound = _bound(point)
    slo_us = _slo_p99_us(run, str(point["point_id"]))
    p99 = num(point["p99_us"])
    if p99 is not None and p99 > slo_us:
        over = f"p99 was {ms(p99)}, over the {slo_us / 1000:g} ms SLO"
        if bound:
            return "generator", f"{over}, with the load generator the limit (its self-check)"
        return "past", over
    failed = num(point.get("main_error_rate")) or 0.0
    if failed > 0:
        return "past", f"{failed:.1%} of the echoes failed"
    kept = _sends_kept(run, point)
    if kept is not None and kept < SENDS_KEPT_MIN:
        return "past", (f"only {kept:.0%} of the scheduled sends were made (the server held "
                        "them back)")
    if bound:
        return "limit", "the load generator was the limit (its self-check)"
    return "within", ""


# -- latency at fixed connection counts ------------------------------------------------------


def _latency_plan(run: Run) -> tuple[float | None, list[int]]:
    """The offered rate measured at several connection counts (in the default matrix 1,000 and
    10,000), and those counts: the same load, more connections."""
    p = run.points
    mine = p[(p["scenario"] == "echo_rate") & p["rate"].notna()]
    counts = mine.groupby("rate")["users"].nunique()
    common = counts[counts >= 2]
    if common.empty:
        return None, []
    rate = float(common.index.max())
    return rate, sorted(int(u) for u in mine[mine["rate"] == rate]["users"].unique())


def _latency(run: Run, target: str, users: int, rate: float | None) -> tuple[Cell, str | None]:
    p = run.points
    mine = p[(p["variant"] == target) & (p["scenario"] == "echo_rate") & (p["users"] == users)
             & (p["rate"] == rate)]  # fmt: skip
    if mine.empty:
        return EMPTY, None
    point = mine.iloc[0]
    why = _not_ok(point)
    if why:
        return Cell("no answer", _link(point["point_id"]), why), None
    p50, p99 = num(point["p50_us"]), num(point["p99_us"])
    sentence = (f"{target} at {users:,} connections and {rate:,.0f} msgs/s: p50 {ms(p50)}, "
                f"p99 {ms(p99)}.")  # fmt: skip
    text, title = f"{ms(p50)} / {ms(p99)}", ""
    pause_ms = num(point.get("gc_pause_longest_ms"))
    made = point.get("gc_pause_made_p99")
    if pause_ms is not None and pd.api.types.is_bool(made) and made:
        # The tail is the server's own stop: said in the cell, explained in the sentence.
        text += f" · GC pause {ms(pause_ms * 1e3)}"
        title = str(point.get("gc_pauses") or "")
        sentence = sentence[:-1] + f"; {title}."
    return Cell(text, _link(point["point_id"]), title), sentence


# -- connect storms per kernel profile -------------------------------------------------------


def _connect_profiles(points: pd.DataFrame) -> list[str]:
    mine = points[points["scenario"] == "connect"]
    return list(dict.fromkeys(mine["kernel_profile"].dropna()))


def _connect(run: Run, target: str, profile: str) -> tuple[Cell, str | None]:
    p = run.points
    mine = p[(p["variant"] == target) & (p["scenario"] == "connect")
             & (p["kernel_profile"] == profile)].sort_values("users")  # fmt: skip
    if mine.empty:
        return EMPTY, None
    point = mine.iloc[-1]
    if point["status"] not in (OK, "failed") or (point["status"] != OK and not point["requests"]):
        return Cell("no answer", _link(point["point_id"]), _not_ok(point)), None
    rate = num(point.get("achieved_per_s"))  # reports.load's choice of rate
    rate = num(point["msgs_per_s"]) if rate is None else rate
    offered = num(point.get("rate"))
    failed = num(point.get("main_error_rate")) or 0.0
    broke = first_broken(run, point)
    text = _count(rate) + (f" of {offered:,.0f}" if offered else "")
    if failed:
        text += f" · {failed:.0%} failed"
    if point["status"] != OK:  # measured, but not what it set out to: the cell says so
        text += " · point failed"
    if _bound(point):
        text += " (generator-bound)"
    offered_text = f" of {offered:,.0f} offered" if offered else ""
    verdict = f"the point failed: {point.get('reason')}; " if point["status"] != OK else ""
    sentence = (f"{target} under the {profile} profile sustained {_count(rate)} connects/s"
                f"{offered_text}, {failed:.1%} failed; {verdict}"
                f"{broke or 'nothing broke (no drop counter moved, no connect tail over 1 s)'}.")
    title = _not_ok(point) if point["status"] != OK else broke or "nothing broke"
    return Cell(text, _link(point["point_id"]), title), sentence


def first_broken(run: Run, point: pd.Series) -> str:
    """The first thing that broke at a point, in words: a stall's cause, a kernel counter that
    moved, or the commonest error; '' if nothing did."""
    stalls = point.get("kernel_stalls")
    if isinstance(stalls, list) and stalls:
        return str(stalls[0].get("cause") or "")
    explain = point.get("kernel_explain")
    # TIME-WAIT growth is the normal residue of closed connections, not something that broke.
    dropped = [line for line in explain if "TCP_tw grew" not in line] if isinstance(
        explain, list) else []  # fmt: skip
    if dropped:
        return str(dropped[0])
    errors = run.failures[run.failures["point_id"] == point["point_id"]]
    if not errors.empty:
        top = errors.sort_values("occurrences", ascending=False).iloc[0]
        return f"{int(top['occurrences']):,} × {top['error']} ({top['name']})"
    return ""


# -- memory and broadcast --------------------------------------------------------------------


def largest(
    points: pd.DataFrame, target: str, scenario: str, profile: str | None = None
) -> pd.Series | None:
    """The target's (a variant's) point of `scenario` with the most connections, if any, under
    `profile` when given; a failover drill's points are not asked (their figures include the
    fault)."""
    key = "variant" if "variant" in points else "target"
    mine = points[(points[key] == target) & (points["scenario"] == scenario)]
    if profile is not None:
        mine = mine[mine["kernel_profile"] == profile]
    if "faults" in mine:
        mine = mine[[not isinstance(f, list) or not f for f in mine["faults"]]]
    return None if mine.empty else mine.sort_values("users").iloc[-1]


def _memory(
    points: pd.DataFrame, target: str, profile: str | None = None, named: bool = False
) -> tuple[Cell, str | None]:
    point = largest(points, target, "hold", profile)
    if point is None:
        return EMPTY, None
    per_conn = num(point["server_rss_per_conn_bytes"])
    why = _not_ok(point) if point["status"] != OK else ""
    if why or per_conn is None:
        return Cell("no answer", _link(point["point_id"]), why or "no memory figure"), None
    users = int(point["users"])
    kib = per_conn / KIB
    under = f" under the {profile} profile" if named else ""
    sentence = (f"{target} holds an idle connection in {kib:.1f} KiB of server memory{under} "
                f"(measured at {users:,} connections).")  # fmt: skip
    return Cell(f"{kib:.1f} KiB", _link(point["point_id"]), f"at {users:,} connections"), sentence


def _broadcast(points: pd.DataFrame, target: str) -> tuple[Cell, str | None]:
    point = largest(points, target, "broadcast")
    if point is None:
        return EMPTY, None
    why = _not_ok(point)
    if why:
        return Cell("no answer", _link(point["point_id"]), why), None
    p99 = num(point["p99_us"])
    expected = num(point.get("broadcast_expected"))
    received = num(point.get("broadcast_received"))
    counted = bool(expected) and received is not None
    delivered = f"{received / expected:.2%}" if counted else "delivery not counted"
    subscribers = tables.subscribers(point["users"], point["options"])
    arrived = (f"{delivered} of the expected deliveries arrived (counted per member)" if counted
               else "this run did not count its deliveries")  # fmt: skip
    sentence = (f"{target} fans a message out to {subscribers:,} subscribers with p99 "
                f"{ms(p99)}; {arrived}.")  # fmt: skip
    return Cell(f"{ms(p99)} · {delivered}", _link(point["point_id"])), sentence


# -- failover drills and brokers -------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{round(value, 1):g} s"


def _reasons(reasons: Any) -> str:
    """'ws upgrade: connection refused', or with counts when there are several reasons."""
    if not isinstance(reasons, dict) or not reasons:
        return ""
    if len(reasons) == 1:
        return f" ({next(iter(reasons))})"
    return " (" + ", ".join(f"{why} × {int(n):,}" for why, n in reasons.items()) + ")"


def drill_sentence(point: pd.Series, drill: pd.Series) -> str:
    """One fault of a drill in words: what it dropped, how the users came back, what failed
    and why, the latency spike; for broadcast what was lost; for kill-broker whether the
    targets noticed."""
    users = num(drill["connections_before"]) or num(drill["users"]) or 0.0
    dropped = num(drill["dropped"]) or 0.0
    if dropped:
        back = num(drill["recovered_after_s"])
        opened = num(drill["open_at_end"])
        came = (f"all back within {_seconds(back)}" if back is not None else
                f"not all back by the end ({_count(opened)} of {_count(num(drill['users']))} "
                "connected)")  # fmt: skip
        parts = [f"{_count(dropped)} of {_count(users)} connections dropped, reconnects peaked "
                 f"at {_count(num(drill['reconnect_peak_per_s']))}/s, {came}"]  # fmt: skip
    else:
        parts = [f"no connection of {_count(users)} dropped"]
    failed = num(drill["failed_reconnects"]) or 0.0
    if failed:
        parts.append(f"{_count(failed)} reconnects failed{_reasons(drill['failed_reasons'])}")
    elif dropped:
        parts.append("no reconnect failed")
    before, peak = num(drill["p99_before_us"]), num(drill["p99_peak_us"])
    if before is not None and peak is not None:
        parts.append(f"{drill['latency_name']} p99 {ms(before)} → {ms(peak)}")
    if num(drill["lost"]) is not None:
        parts.append(f"{_count(num(drill['published_during']))} published during the outage, "
                     f"{_count(num(drill['lost']))} lost by subscribers")  # fmt: skip
    seen = drill["broker_lost_seen"]
    if seen is not None and not pd.isna(seen):  # kill-broker only
        parts.append("the targets noticed the broker was gone" if bool(seen) else
                     "the targets never said they lost the broker")  # fmt: skip
    if _bound(point):
        parts.append("the load generator was the limit (its self-check)")
    return f"{tables.setup_label(point)}, {drill['fault']}: " + "; ".join(parts) + "."


def drills(run: Run) -> list[tuple[str, str]]:
    """(sentence, link to the drill's box) per fault of every drill point, in run order."""
    points = run.points.set_index("point_id", drop=False)
    found = []
    for point_id in tables.drill_points(run):
        for _, drill in run.drills[run.drills["point_id"] == point_id].iterrows():
            found.append((drill_sentence(points.loc[point_id], drill), f"#drill-{point_id}"))
    return found


def _ratio(a: float | None, b: float | None) -> str:
    return f" ({a / b:.1f}×)" if a is not None and b else ""


def _per_msg(us: float | None) -> str:
    return "–" if us is None else f"{us:.1f} µs"


def brokers(run: Run) -> list[tuple[str, str]]:
    """(sentence, link to the broker point) per broadcast point with a broker that has a point
    without one of its target and subscribers to be compared with (one process, else the
    fewest): p99 and server CPU per delivered message, and their ratios."""
    frame = tables.broker_comparison(run.points)
    bound = run.points.set_index("point_id")["generator_saturated"]
    found = []
    for _, with_broker in frame[frame["broker"] != "none"].iterrows():
        alone = frame[(frame["broker"] == "none") & (frame["target"] == with_broker["target"])
                      & (frame["subscribers"] == with_broker["subscribers"])]  # fmt: skip
        if alone.empty:
            continue
        base = alone.sort_values("target_processes", kind="stable").iloc[0]
        n, m = int(with_broker["target_processes"]), int(base["target_processes"])
        p99, p99_base = num(with_broker["p99_us"]), num(base["p99_us"])
        cpu, cpu_base = num(with_broker["cpu_us_per_msg"]), num(base["cpu_us_per_msg"])
        sentence = (f"{with_broker['target']} broadcast to {int(with_broker['subscribers']):,} "
                    f"subscribers, {n} process{'es' if n != 1 else ''} + {with_broker['broker']} "
                    f"against {m} process{'es' if m != 1 else ''} without a broker: p99 "
                    f"{ms(p99)} vs {ms(p99_base)}{_ratio(p99, p99_base)}, server CPU per "
                    f"delivered message {_per_msg(cpu)} vs {_per_msg(cpu_base)}"
                    f"{_ratio(cpu, cpu_base)}")  # fmt: skip
        if not (with_broker["exact"] and base["exact"]):
            sentence += (f"; delivered {num(with_broker['delivered_pct']) or 0:.2f} % vs "
                         f"{num(base['delivered_pct']) or 0:.2f} %")  # fmt: skip
        if bound.get(with_broker["point_id"]) or bound.get(base["point_id"]):
            sentence += "; the load generator was the limit at one of them (its self-check)"
        found.append((sentence + ".", f"#point-{with_broker['point_id']}"))
    return found
