"""Per target, its topology variants side by side: what each hop or feature costs.

A variant is what sits between client and target (a proxy, permessage-deflate, wss and where
TLS ended: tables.topology_names) and, when a target ran under several kernel profiles, the
profile. Firewall profiles (nftables and conntrack in the server namespace) make a variant of
their own even when the topology is the same. A target's baseline is its direct, uncompressed,
plain ws variant under its first profile without a firewall.

Per variant: the echo knee (findings' machinery), echo p50 / p99 and the server's CPU per
message (target and proxy apart) at one offered rate its variants share, connects/s in a
storm and the server's CPU per connect (what a wss handshake costs), memory per held
connection (target and proxy apart, each its growth over its idle size per connection), and
under a firewall profile the conntrack and firewall counters that moved.
Every figure keeps the point it came from (the page links each cell to it); the sentences are
generated from the same figures, and say nothing of a variant whose baseline is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports import findings, tables
from reports.findings import Cell, cpu_us_per_event
from reports.load import Run

OK = "ok"
KIB = 1024
DIRECT = "direct"
CONNTRACK_PREFIXES = ("Conntrack", "Firewall", "conntrack")  # kernel/counters.py's names
# One row per (target, variant): what the table and the charts show, and their evidence.
COLUMNS = ("target", "variant", "topology", "kernel_profile", "baseline", "via", "compression",
           "tls_at", "knee", "knee_msgs_per_s", "knee_point_id", "echo_users", "echo_msgs_per_s",
           "echo_point_id", "p50_us", "p99_us", "target_cpu_us_per_msg",
           "proxy_cpu_us_per_msg", "connects_per_s", "target_cpu_us_per_connect",
           "proxy_cpu_us_per_connect", "connect_point_id", "hold_users",
           "hold_point_id", "target_rss_per_conn_bytes", "proxy_rss_per_conn_bytes",
           "generator_saturated", "knee_generator_saturated", "connect_generator_saturated",
           "hold_generator_saturated", "echo_status", "connect_status", "hold_status",
           "failed", "counters")  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One variant of a target: its label, its points, and how it differs from the baseline."""

    target: str
    label: str  # "direct", "nginx", "deflate", "wss@proxy", "firewall", "nginx · tuned"
    topology: str  # tables.topology_names: "" for direct, plain, uncompressed
    profile: str
    points: pd.DataFrame
    baseline: bool = False

    @property
    def name(self) -> str:
        """Its findings row: the target and its topology ("raw · nginx")."""
        return self.target + (f" · {self.topology}" if self.topology else "")


def is_firewall_profile(run: Run, profile: str) -> bool:
    """A profile with a firewall: named so, or its points read the firewall's counters."""
    if "firewall" in profile:
        return True
    ids = run.points.loc[run.points["kernel_profile"] == profile, "point_id"]
    mine = run.kernel[run.kernel["point_id"].isin(ids)]
    return bool(mine["counter"].astype(str).str.startswith("Firewall").any())


def variants(run: Run) -> dict[str, list[Variant]]:
    """Per target (in run order), its variants: the baseline first, then in run order."""
    points = findings.with_variants(run).points
    points = points[points["target"].notna()].assign(topology=tables.topology_names(points))
    found: dict[str, list[Variant]] = {}
    for target, mine in points.groupby("target", sort=False):
        profiles = list(dict.fromkeys(mine["kernel_profile"]))
        plain = [p for p in profiles if not is_firewall_profile(run, p)]
        base_profile = plain[0] if plain else None
        several = mine["topology"].nunique() > 1
        plain_name = _baseline_name(mine) if several else DIRECT
        out = []
        for (topology, profile), rows in mine.groupby(["topology", "kernel_profile"], sort=False):
            parts = [topology or plain_name] if several else []
            parts += [profile] if len(profiles) > 1 else []
            out.append(Variant(str(target), " · ".join(parts) or DIRECT, str(topology),
                               str(profile), rows,
                               baseline=topology == "" and profile == base_profile))  # fmt: skip
        out.sort(key=lambda v: not v.baseline)
        found[str(target)] = out
    return found


def _baseline_name(points: pd.DataFrame) -> str:
    """What the plain variant is called among these: 'direct' when proxies vary,
    'uncompressed' when compression does, 'ws' for TLS; joined when several do."""
    words = [word for column, word in (("via", DIRECT), ("compression", "uncompressed"),
                                       ("tls", "ws"))
             if column in points and points[column].nunique(dropna=False) > 1]  # fmt: skip
    return " · ".join(words) or DIRECT


def compared(run: Run) -> dict[str, list[Variant]]:
    """The targets the topology section compares: those with two topologies or more, or with
    a firewall profile among two profiles or more."""
    out = {}
    for target, mine in variants(run).items():
        topologies = {v.topology for v in mine}
        profiles = {v.profile for v in mine}
        firewall = any(is_firewall_profile(run, p) for p in profiles)
        if len(topologies) > 1 or (firewall and len(profiles) > 1):
            out[target] = mine
    return out


# -- figures per variant ---------------------------------------------------------------------


def _num(value: Any) -> float | None:
    return findings.num(value)


def _ok(point: pd.Series | None) -> bool:
    return point is not None and point["status"] == OK


def _knee(run: Run, knees: findings.Knees, variant: Variant) -> tuple[float | None, Cell]:
    """The knee's rate (None when no step was within the SLO) and the findings table's cell
    of this variant ("≥ 200", "< 400", "no answer"), which links to the knee's point."""
    series = knees.get((variant.name, variant.profile))
    cell, _ = findings.knee(run, knees, variant.name, variant.profile, headroom=False)
    best = findings.knee_steps(run, series)[0] if series is not None else None
    return (_num(best["rate"]) if best is not None else None), cell


def _point_of(cell: Cell) -> str | None:
    """The point a findings cell links to ("#point-ID" -> "ID")."""
    return cell.href.removeprefix("#point-") if cell.href else None


def _shared_step(group: list[Variant]) -> tuple[float, float] | None:
    """The (connections, offered rate) of echo_rate that the most variants measured ok, the
    highest rate (then connections) of those; None when no two variants share one."""
    counts: dict[tuple[float, float], int] = {}
    for variant in group:
        p = variant.points
        mine = p[(p["scenario"] == "echo_rate") & (p["status"] == OK) & p["rate"].notna()]
        for key in set(zip(mine["users"].astype(float), mine["rate"].astype(float),
                           strict=True)):  # fmt: skip
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    most = max(counts.values())
    if most < 2 and len(group) > 1:
        return None
    users, rate = max((k for k, n in counts.items() if n == most), key=lambda k: (k[1], k[0]))
    return users, rate


def _echo_point(variant: Variant, step: tuple[float, float] | None) -> pd.Series | None:
    if step is None:
        return None
    p = variant.points
    mine = p[(p["scenario"] == "echo_rate") & (p["users"] == step[0]) & (p["rate"] == step[1])]
    return None if mine.empty else mine.iloc[0]


def _largest(variant: Variant, scenario: str) -> pd.Series | None:
    return findings.largest(variant.points, variant.name, scenario)


def comparison(run: Run) -> pd.DataFrame:
    """One row per compared target and variant (COLUMNS), the baseline first per target."""
    rows, knees = [], findings.knee_series(run)
    for group in compared(run).values():
        step = _shared_step(group)
        for variant in group:
            rows.append(_row(run, knees, variant, step))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(
    run: Run, knees: findings.Knees, variant: Variant, step: tuple[float, float] | None
) -> dict[str, Any]:
    knee, cell = _knee(run, knees, variant)
    echo = _echo_point(variant, step)
    ok = _ok(echo)
    connect = _largest(variant, "connect")
    hold = _largest(variant, "hold")
    first = variant.points.iloc[0]
    rate = _num(connect.get("achieved_per_s")) if connect is not None else None
    rate = _num(connect["msgs_per_s"]) if connect is not None and rate is None else rate
    held = _ok(hold)
    # What the point sustained (reports.load's choice: the harness's rate over its measured
    # time, or the steady windows'), the rate its CPU means are over.
    echoed = _num(echo.get("achieved_per_s")) if ok else None
    echoed = _num(echo["msgs_per_s"]) if ok and echoed is None else echoed
    return {
        "target": variant.target, "variant": variant.label, "topology": variant.topology,
        "kernel_profile": variant.profile, "baseline": variant.baseline,
        "via": first.get("via"), "compression": first.get("compression"),
        "tls_at": first.get("tls_at"),
        "knee": cell.text if cell != findings.EMPTY else None,  # "≥ 200": as findings says
        "knee_msgs_per_s": knee, "knee_point_id": _point_of(cell),
        "echo_users": step[0] if step else None, "echo_msgs_per_s": step[1] if step else None,
        "echo_point_id": echo["point_id"] if echo is not None else None,
        "p50_us": _num(echo["p50_us"]) if ok else None,
        "p99_us": _num(echo["p99_us"]) if ok else None,
        "target_cpu_us_per_msg": cpu_us_per_event(echo.get("target_cpu_pct_mean"), echoed)
        if ok else None,
        "proxy_cpu_us_per_msg": cpu_us_per_event(echo.get("proxy_cpu_pct_mean"), echoed)
        if ok else None,
        "connects_per_s": rate if connect is not None and connect["status"] in (OK, "failed")
        else None,
        # A connect's CPU (the TCP and TLS handshakes and the upgrade) over the storm's rate.
        "target_cpu_us_per_connect": cpu_us_per_event(connect.get("target_cpu_pct_mean"), rate)
        if _ok(connect) else None,
        "proxy_cpu_us_per_connect": cpu_us_per_event(connect.get("proxy_cpu_pct_mean"), rate)
        if _ok(connect) else None,
        "connect_point_id": connect["point_id"] if connect is not None else None,
        "hold_users": _num(hold["users"]) if hold is not None else None,
        "hold_point_id": hold["point_id"] if hold is not None else None,
        "target_rss_per_conn_bytes": _num(hold["server_rss_per_conn_bytes"]) if held else None,
        "proxy_rss_per_conn_bytes": _num(hold.get("proxy_rss_per_conn_bytes")) if held
        else None,
        "generator_saturated": bool(echo["generator_saturated"]) if echo is not None else False,
        # Whether the generator bounded the point each figure came from (its self-check).
        "knee_generator_saturated": _bound(variant.points, _point_of(cell)),
        "connect_generator_saturated": _bound(variant.points, connect),
        "hold_generator_saturated": _bound(variant.points, hold),
        "echo_status": echo["status"] if echo is not None else None,
        "connect_status": connect["status"] if connect is not None else None,
        "hold_status": hold["status"] if hold is not None else None,
        # What its points that did not measure what they set out to said: [(scenario, why)].
        "failed": [(str(p["scenario"]), str(p.get("reason") or p["status"]))
                   for p in (echo, connect, hold) if p is not None and p["status"] == "failed"],
        "counters": counters(run, variant),  # {name: (delta, point_id)}
    }  # fmt: skip


def _bound(points: pd.DataFrame, point: pd.Series | str | None) -> bool:
    """Whether a point (or the point of that id) was generator-bound (its self-check)."""
    if isinstance(point, str):
        mine = points[points["point_id"] == point]
        point = mine.iloc[0] if not mine.empty else None
    return bool(point["generator_saturated"]) if point is not None else False


def counters(run: Run, variant: Variant) -> dict[str, tuple[float, str]]:
    """Under a firewall profile: each conntrack or firewall counter that moved on the server,
    its largest change over the variant's points and that point; {} otherwise."""
    if not is_firewall_profile(run, variant.profile):
        return {}
    k = run.kernel
    mine = k[k["point_id"].isin(variant.points["point_id"]) & (k["side"] == "server")
             & k["counter"].astype(str).str.startswith(CONNTRACK_PREFIXES)
             & (k["delta"].fillna(0) != 0)]  # fmt: skip
    found = {}
    for counter, rows in mine.groupby("counter", sort=False):
        top = rows.loc[rows["delta"].abs().idxmax()]
        found[str(counter)] = (float(top["delta"]), str(top["point_id"]))
    return found


# -- sentences -------------------------------------------------------------------------------


def _ms(us: float | None) -> str:
    return findings.ms(us)


def _delta_ms(us: float) -> str:
    return f"{us / 1000:+.1f} ms" if abs(us) >= 1000 else f"{us:+.0f} µs"


def _subject(row: pd.Series, base: pd.Series) -> tuple[str, str]:
    """('nginx in front of raw', 'direct'), ('raw with permessage-deflate', 'uncompressed'),
    ('raw under the firewall-full profile', 'under tuned'): the variant and its baseline."""
    target = str(row["target"])
    via, compression, at = (row[c] if isinstance(row[c], str) and row[c] else ""
                            for c in ("via", "compression", "tls_at"))  # fmt: skip
    words, against = (f"{via} in front of {target}" if via else target), []
    if via:
        against.append(DIRECT)
    if compression:
        words += " with permessage-deflate" if compression == "deflate" else f" with {compression}"
        against.append("uncompressed")
    if "wss" in str(row["topology"]):
        words += f" over wss (TLS ended at the {at})" if at else " over wss"
        against.append("ws")
    if row["kernel_profile"] != base["kernel_profile"]:
        words += f" under the {row['kernel_profile']} profile"
        against.append(f"under {base['kernel_profile']}")
    return words, ", ".join(against) or str(base["variant"])


def _kib(value: float | None) -> str:
    return "–" if value is None else f"{value / KIB:.1f} KiB"


def sentence(row: pd.Series, base: pd.Series) -> str | None:
    """One variant's cost against its baseline, from the figures both have; None if none."""
    subject, against = _subject(row, base)
    parts = []
    knee, knee_base = _num(row["knee_msgs_per_s"]), _num(base["knee_msgs_per_s"])
    if knee is not None and knee_base is not None:  # the texts: a knee may be "≥ 200"
        parts.append(f"echo knee {row['knee']} vs {base['knee']} msgs/s {against}")
    p99, p99_base = _num(row["p99_us"]), _num(base["p99_us"])
    if p99 is not None and p99_base is not None and row["echo_msgs_per_s"] is not None:
        parts.append(f"echo p99 at {row['echo_msgs_per_s']:,.0f} msgs/s {_ms(p99)} vs "
                     f"{_ms(p99_base)} {against} ({_delta_ms(p99 - p99_base)})")  # fmt: skip
    parts += _cpu(row, base, "msg", "µs/msg")
    rate, rate_base = _num(row["connects_per_s"]), _num(base["connects_per_s"])
    if rate is not None and rate_base is not None:
        parts.append(f"{rate:,.0f} vs {rate_base:,.0f} connects/s")
    parts += _cpu(row, base, "connect", "µs per connect")
    mem, mem_base = _num(row["target_rss_per_conn_bytes"]), _num(base["target_rss_per_conn_bytes"])
    if mem is not None and mem_base is not None:
        parts.append(f"{_kib(mem)} vs {_kib(mem_base)} per held connection in the target")
    proxy_mem = _num(row["proxy_rss_per_conn_bytes"])
    if proxy_mem is not None and mem_base is not None:
        parts.append(f"{'+' if proxy_mem >= 0 else ''}{_kib(proxy_mem)} per held connection "
                     "in the proxy")  # fmt: skip
    parts += [f"its {scenario} point failed ({why})" for scenario, why in row["failed"]]
    moved = row["counters"]
    if moved:
        parts.append("the server's " + ", ".join(f"{name} {delta:+,.0f}" for name, (delta, _)
                                                 in moved.items()))  # fmt: skip
    if not parts:
        return None
    bound = bool(row["generator_saturated"]) or bool(base["generator_saturated"])
    tail = "; the load generator was the limit at one of the echo points (its self-check)" \
        if bound and p99 is not None and p99_base is not None else ""  # fmt: skip
    return f"{subject}: " + ", ".join(parts) + tail + "."


def _cpu(row: pd.Series, base: pd.Series, per: str, unit: str) -> list[str]:
    """['server CPU 58.0 vs 39.1 µs/msg (target 29.0 + proxy 29.0)'], or [] without both."""
    cpu, cpu_base = _cpu_total(row, per), _cpu_total(base, per)
    if cpu is None or cpu_base is None:
        return []
    proxy = _num(row[f"proxy_cpu_us_per_{per}"])
    split = (f" (target {_num(row[f'target_cpu_us_per_{per}']) or 0:.1f} + proxy {proxy:.1f})"
             if proxy is not None else "")  # fmt: skip
    return [f"server CPU {cpu:.1f} vs {cpu_base:.1f} {unit}{split}"]


def _cpu_total(row: pd.Series, per: str) -> float | None:
    target = _num(row[f"target_cpu_us_per_{per}"])
    if target is None:
        return None
    return target + (_num(row[f"proxy_cpu_us_per_{per}"]) or 0.0)


def anchor(target: str) -> str:
    """The topology table of a target: its id on the page ('table-topology-raw')."""
    return f"table-topology-{slug(target)}"


def slug(target: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", target).strip("-") or "target"


def sentences(run: Run) -> list[tuple[str, str]]:
    """(sentence, link to the target's topology table) per variant that is not its target's
    baseline, when the baseline is in the run; nothing for a run without variants."""
    frame = comparison(run)
    found = []
    for target, rows in frame.groupby("target", sort=False):
        base = rows[rows["baseline"]]
        if base.empty:
            continue
        for _, row in rows[~rows["baseline"]].iterrows():
            text = sentence(row, base.iloc[0])
            if text:
                found.append((text, f"#{anchor(str(target))}"))
    return found
