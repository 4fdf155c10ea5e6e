"""What a point measured: its main measurement's figures, and whether they make it ok.

Each scenario names its main measurement under "measurement" in
PREFIX_latency_us_histograms.json: the request names whose successes it counts (the first is
the headline), a plural label for messages, the URL it connected to, and the requests still
waiting when its users were stopped. Runs stored before the scenarios wrote that key get the
per-scenario defaults below. Counts come from Locust's own final totals (PREFIX_final.json,
where num_requests includes failures, and PREFIX_final_failures.json).

A point is failed when its main measurement has no success, or when that measurement's error
rate (failures / requests of the main names only, so connects that worked do not dilute it)
passes the point's max_error_rate. The reason is one line naming the dominant error and the URL.
A measurement of connections (its main names include the upgrade: connect, hold) counts every
connection it tried to open: a TCP connect or TLS handshake that failed is a connection not
made, so its attempts are the first set-up phase's requests and those failures are its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.schema import FINAL_FAILURES_JSON, FINAL_STATS_JSON, HISTOGRAMS_JSON

TCP_CONNECT = "tcp connect"
WS_UPGRADE = "ws upgrade"
# Only for runs stored before the scenarios declared their measurement: names and label.
DEFAULT_MEASUREMENT: dict[str, tuple[tuple[str, ...], str]] = {
    "echo": (("echo",), "echo round trips"),
    "echo_rate": (("echo corrected",), "echo round trips"),
    "connect": ((WS_UPGRADE,), "upgrades"),
    "hold": ((WS_UPGRADE, "hold"), "connections held"),
    "broadcast": (("broadcast",), "deliveries"),
    "push": (("push",), "messages"),
}
# The path each scenario appends to a target URL that has none (the reference targets' paths).
DEFAULT_PATH = {"echo": "/echo", "echo_rate": "/echo", "connect": "/echo", "hold": "/echo",
                "broadcast": "/broadcast", "push": "/push"}  # fmt: skip
SETUP_PHASES = (TCP_CONNECT, "tls handshake", WS_UPGRADE)  # in the order a connection opens
# Scenarios whose connections are meant to stay open: one still opening at the end is one
# not held.
HOLDING = ("hold",)
# An open-model storm's arrivals (scenarios/connect.py) and the share of them it must start.
CONNECTS_DUE, CONNECTS_MADE = "connects due", "connects made"
MIN_ARRIVALS_MADE = 0.95
# How a reason names the requests of a set-up phase (or a secondary main name).
NOUNS = {
    TCP_CONNECT: "TCP connects",
    "tls handshake": "TLS handshakes",
    WS_UPGRADE: "upgrades",
    "hold": "held connections",
    "hold ping": "pings",
    "ws close": "closes",
}
# Locust stores an error as the exception's repr: HandshakeRejected('upgrade rejected: HTTP 404').
_REPR = re.compile(r"^[A-Za-z_]\w*\((?P<q>['\"])(?P<message>.*)(?P=q)\)$", re.S)


@dataclass(frozen=True)
class Measurement:
    """The scenario's declaration of its main measurement (or the defaults for old runs)."""

    scenario: str
    main: tuple[str, ...]
    label: str
    url: str
    unanswered_at_end: dict[str, int] = field(default_factory=dict)
    declared: bool = True  # False: filled in from DEFAULT_MEASUREMENT

    @property
    def headline(self) -> str:
        return self.main[0] if self.main else ""


@dataclass(frozen=True)
class Failure:
    name: str
    error: str  # the exception's message, unwrapped from Locust's repr
    occurrences: int


@dataclass(frozen=True)
class Counts:
    """Locust's final totals: per request name (requests incl. failures, failures), and errors."""

    per_name: dict[str, tuple[int, int]]
    failures: list[Failure]

    def requests(self, names: Sequence[str] | None = None) -> int:
        return sum(r for n, (r, _) in self.per_name.items() if names is None or n in names)

    def failed(self, names: Sequence[str] | None = None) -> int:
        return sum(f for n, (_, f) in self.per_name.items() if names is None or n in names)


def main_counts(measurement: Measurement, counts: Counts) -> tuple[int, int, list[str]]:
    """(requests, failures, the names they count) of the main measurement.

    A measurement of connections (WS_UPGRADE among its names) counts from the first set-up
    phase on: requests are the connections attempted, failures every one that did not open
    (at any phase) or was dropped later (the main names after the upgrade, e.g. "hold").
    """
    names = list(measurement.main)
    if WS_UPGRADE not in names:
        return counts.requests(names), counts.failed(names), names
    before = SETUP_PHASES[: SETUP_PHASES.index(WS_UPGRADE)]
    opening = [n for n in before if n not in names and counts.requests([n])]
    counted = opening + names
    # Still opening at the end: not held. Those still in the first phase are attempts its
    # requests do not count yet; the later ones are among them already.
    pending = still_opening(measurement)
    first = measurement.unanswered_at_end.get(counted[0], 0) if pending else 0
    attempts = counts.requests(counted[:1]) + first
    failures = counts.failed(counted) + pending
    return max(attempts, failures), failures, counted


def still_opening(measurement: Measurement) -> int:
    """Connections a holding scenario (HOLDING) was still opening when the run ended: not
    held, though within their timeout. A storm's users are stopped mid-connect as a matter of
    course, so its in-flight connects are not counted."""
    if measurement.scenario not in HOLDING:
        return 0
    return sum(c for n, c in measurement.unanswered_at_end.items() if n in SETUP_PHASES)


def histograms_document(point_dir: Path) -> dict[str, Any]:
    """The scenarios' PREFIX_latency_us_histograms.json, {} when absent or unreadable."""
    try:
        document = json.loads((point_dir / HISTOGRAMS_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def read_measurement(document: Mapping[str, Any], scenario: str, host: str) -> Measurement:
    """The declared measurement, else the scenario's defaults with the URL Locust was given."""
    declared = document.get("measurement")
    if isinstance(declared, dict) and declared.get("main"):
        unanswered = declared.get("unanswered_at_end") or {}
        return Measurement(
            scenario=str(declared.get("scenario") or scenario),
            main=tuple(str(n) for n in declared["main"]),
            label=str(declared.get("label") or "requests"),
            url=str(declared.get("url") or host),
            unanswered_at_end={str(k): int(v) for k, v in unanswered.items() if v},
        )
    names, label = DEFAULT_MEASUREMENT.get(scenario, ((), "requests"))
    return Measurement(scenario, names, label, default_url(host, scenario), declared=False)


def default_url(host: str, scenario: str) -> str:
    """The URL a scenario connects to: a host URL with a path as it is, else plus its path."""
    if not host or urlsplit(host).path not in ("", "/"):
        return host
    return host.rstrip("/") + DEFAULT_PATH.get(scenario, "")


def read_counts(point_dir: Path) -> Counts | None:
    """Locust's final per-name totals and failures by error; None when the run has none."""
    try:
        entries = json.loads((point_dir / FINAL_STATS_JSON).read_text())
        per_name: dict[str, tuple[int, int]] = {}
        for e in entries:
            requests, failures = per_name.get(str(e["name"]), (0, 0))
            per_name[str(e["name"])] = (requests + int(e["num_requests"]),
                                        failures + int(e["num_failures"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        rows = json.loads((point_dir / FINAL_FAILURES_JSON).read_text())
        failures = [Failure(str(r["name"]), error_message(str(r["error"])), int(r["occurrences"]))
                    for r in rows]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        failures = []  # the reason then names the failing request, not its error
    return Counts(per_name, failures)


def error_message(error: str) -> str:
    """Locust's error cell without the exception's repr around it."""
    match = _REPR.match(error.strip())
    return match.group("message") if match else error.strip()


def main_figures(
    measurement: Measurement, counts: Counts | None, measured_s: float | None
) -> dict[str, Any]:
    """The main measurement's summary keys (stored in point.json's summary as "main")."""
    requests, failures, _ = main_counts(measurement, counts) if counts else (0, 0, [])
    successes = requests - failures
    return {
        "scenario": measurement.scenario,
        "names": list(measurement.main),
        "label": measurement.label,
        "url": measurement.url,
        "declared": measurement.declared,
        "requests": requests,
        "failures": failures,
        "successes": successes,
        "error_rate": failures / requests if requests else None,
        "unanswered_at_end": dict(measurement.unanswered_at_end),
        "measured_s": measured_s,
        "successes_per_s": successes / measured_s if measured_s else None,
    }


def verdict(
    measurement: Measurement, counts: Counts | None, max_error_rate: float
) -> str | None:
    """Why the point failed (one line), or None when its main measurement says ok."""
    if counts is None:
        return f"no final statistics from Locust, so nothing measured ({measurement.url})"
    requests, failures, names = main_counts(measurement, counts)
    label, url = measurement.label, measurement.url
    if requests > failures:  # some success: the error rate decides
        rate = failures / requests
        if rate <= max_error_rate:
            return None
        worst = _dominant(counts, names)
        most = f"; most often {worst.error} ({worst.occurrences:,})" if worst and worst.error \
            else ""  # fmt: skip
        pending = still_opening(measurement)
        if pending:
            most += f"; {pending:,} still opening at the end"
        return (f"{failures:,} of {requests:,} {label} failed ({rate:.1%}, over "
                f"--max-error-rate {max_error_rate:g}){most} at {url}")  # fmt: skip
    worst = _dominant(counts, names) or _dominant(counts)
    if worst is not None:
        text = f"{_phrase(worst, counts, measurement)} at {url}"
        return text if worst.name in measurement.main else f"no {label} measured: {text}"
    waiting = {n: c for n, c in measurement.unanswered_at_end.items() if c > 0}
    if waiting:
        name = max(waiting, key=lambda n: waiting[n])
        return (f"no {label} measured: {waiting[name]:,} {_noun(name, measurement)} still "
                f"unanswered at the end ({url})")  # fmt: skip
    # Stored without the unanswered counts: the last set-up phase that worked says how far
    # the connections got before nothing came back.
    done = [n for n in SETUP_PHASES if counts.requests([n])]
    if done:
        made = counts.requests([done[-1]])
        return (f"no {label} measured: {made:,} {NOUNS[done[-1]]} succeeded, then nothing was "
                f"answered or failed ({url})")  # fmt: skip
    return f"no {label} measured: no request was answered or failed ({url})"


def arrivals_verdict(document: Mapping[str, Any], measurement: Measurement) -> str | None:
    """Why an open-model storm failed when it did not carry its offered rate, else None.

    Its users open connections on a schedule (scenarios/connect.py counts "connects due" and
    "connects made"); one waiting on a connect that does not complete starts none of its next
    ones, and those arrivals are in no latency figure and no failure count. Fewer than
    MIN_ARRIVALS_MADE of the due made: the figures describe the connects that got through.
    """
    found = document.get("counters") or {}
    due, made = found.get(CONNECTS_DUE), found.get(CONNECTS_MADE)
    if not isinstance(due, int) or not isinstance(made, int) or not due:
        return None
    if made >= MIN_ARRIVALS_MADE * due:
        return None
    opening = sum(c for n, c in measurement.unanswered_at_end.items() if n in SETUP_PHASES)
    stuck = f"; {opening:,} were still opening at the end" if opening else ""
    return (f"only {made:,} of {due:,} connects due were started ({made / due:.0%}): users "
            f"waited on connects that did not complete{stuck}, so the offered rate was not "
            f"carried ({measurement.url})")  # fmt: skip


def _dominant(counts: Counts, names: Sequence[str] | None = None) -> Failure | None:
    """The most frequent failure among `names` (any name when None)."""
    mine = [f for f in counts.failures if names is None or f.name in names]
    if mine:
        return max(mine, key=lambda f: f.occurrences)
    # No failures file (or it misses names): the name with the most failures, error unknown.
    failed = {n: f for n, (_, f) in counts.per_name.items() if f and (names is None or n in names)}
    if not failed:
        return None
    name = max(failed, key=lambda n: failed[n])
    return Failure(name, "", failed[name])


def _phrase(failure: Failure, counts: Counts, measurement: Measurement) -> str:
    """'35 of 35 upgrades rejected, HTTP 404', '40 of 40 TCP connects refused', ..."""
    requests = counts.per_name.get(failure.name, (0, 0))[0]
    many = f"{failure.occurrences:,} of {requests:,}" if requests >= failure.occurrences \
        else f"{failure.occurrences:,}"  # fmt: skip
    noun = _noun(failure.name, measurement)
    error = failure.error
    if error.startswith("upgrade rejected: "):
        return f"{many} {noun} rejected, {error.removeprefix('upgrade rejected: ')}"
    if error.startswith("refused"):
        return f"{many} {noun} refused"
    return f"{many} {noun} failed" + (f" ({error})" if error else "")


def _noun(name: str, measurement: Measurement) -> str:
    if name in NOUNS:
        return NOUNS[name]
    return measurement.label if name == measurement.headline else f"{name!r} requests"


def generator_figures(document: Mapping[str, Any], saturated: bool) -> dict[str, Any]:
    """Whether the generator bounded the point: its self-check when stored, else its CPU."""
    checked = document.get("generator") or {}
    if isinstance(checked, dict) and "bound" in checked:
        return {"generator_bound": bool(checked["bound"]),
                "generator_verdict": str(checked.get("verdict") or "")}  # fmt: skip
    return {"generator_bound": saturated, "generator_verdict": ""}
