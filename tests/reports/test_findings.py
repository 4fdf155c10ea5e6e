"""reports/findings.py: the answers of a run, from its points, each linked to its evidence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports import findings
from reports.load import (
    COUNTER_COLUMNS,
    FAILURE_COLUMNS,
    KERNEL_COLUMNS,
    LATENCY_COLUMNS,
    RESOURCE_COLUMNS,
    USER_COLUMNS,
    WINDOW_COLUMNS,
    Run,
    load_run,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _point(target: str, scenario: str, users: int, rate: float | None = None, **figures):
    rate_id = f"-r{rate:g}" if rate is not None else ""
    row = {
        "point_id": f"{target}-{scenario}-u{users}{rate_id}-{figures.pop('profile', 'host')}",
        "target": target, "scenario": scenario, "users": users, "rate": rate,
        "kernel_profile": "host", "options": "", "status": "ok", "reason": "",
        "msgs_per_s": rate, "p50_us": 100.0, "p99_us": 900.0, "main_error_rate": 0.0,
        "requests": 1000.0, "generator_saturated": False, "server_rss_per_conn_bytes": None,
        "kernel_explain": [], "kernel_stalls": [],
    }  # fmt: skip
    row.update(figures)
    row["kernel_profile"] = row["point_id"].rsplit("-", 1)[1]
    return row


def _run(rows: list[dict], slo: object = None, counters: list[tuple] = (),
         failures: list[dict] = ()) -> Run:  # fmt: skip
    def empty(columns):
        return pd.DataFrame(columns=list(columns))

    return Run(
        path=Path("run"), meta={"slo": slo} if slo is not None else {},
        points=pd.DataFrame(rows), latency=empty(LATENCY_COLUMNS),
        failures=pd.DataFrame(list(failures), columns=list(FAILURE_COLUMNS)),
        windows=empty(WINDOW_COLUMNS), users=empty(USER_COLUMNS),
        resources=empty(RESOURCE_COLUMNS),
        counters=pd.DataFrame(list(counters), columns=list(COUNTER_COLUMNS)),
        kernel=empty(KERNEL_COLUMNS), encoded={},
    )  # fmt: skip


def _cells(found: findings.Findings) -> dict[str, dict[str, findings.Cell]]:
    return {row[0].text: dict(zip(found.columns[1:], row[1:], strict=True)) for row in found.rows}


KNEE = "knee (msgs/s within SLO)"


def test_the_knee_is_the_last_step_within_the_slo_and_the_next_says_why() -> None:
    rows = [
        _point("raw", "echo_rate", 1000, 5000.0),
        _point("raw", "echo_rate", 1000, 10000.0, p99_us=4000.0),
        _point("raw", "echo_rate", 1000, 20000.0, p99_us=25000.0),
        _point("aiohttp", "echo_rate", 1000, 5000.0),
        _point("aiohttp", "echo_rate", 1000, 10000.0, generator_saturated=True),
        _point("websockets", "echo_rate", 1000, 5000.0),
        _point("websockets", "echo_rate", 1000, 10000.0, p99_us=30000.0,
               generator_saturated=True),
        _point("websockets", "echo_rate", 1000, 20000.0, status="skipped"),
    ]
    found = findings.build(_run(rows, slo={"p99_ms": 10.0, "error_rate": None}))
    cells = _cells(found)
    assert cells["raw"][KNEE].text == "10,000"
    assert cells["raw"][KNEE].href == "#point-raw-echo_rate-u1000-r10000-host"
    assert "p99 was 25.0 ms, over the 10 ms SLO" in cells["raw"][KNEE].title
    # A generator-bound step within the SLO still holds, but ends the series: a lower bound.
    assert cells["aiohttp"][KNEE].text == "≥ 10,000"
    assert any("the load generator reached its own limit there, so the server's knee is above"
               in s for s in found.sentences)  # fmt: skip
    assert any(s.startswith("raw's knee at 1,000 connections is 10,000 msgs/s") for s in
               found.sentences)  # fmt: skip
    # Over the SLO with the generator the limit: not the server's knee either.
    assert cells["websockets"][KNEE].text == "≥ 5,000"
    assert "with the load generator the limit" in cells["websockets"][KNEE].title


def test_a_knee_out_of_reach_says_how_busy_the_server_was_at_its_top_step() -> None:
    """A lower-bound knee carries the server's CPU there; a knee found does not need it."""
    rows = [
        _point("raw", "echo_rate", 1000, 5000.0, server_cpu_pct_mean=9.0,
               achieved_per_s=5000.0),
        _point("raw", "echo_rate", 1000, 15000.0, server_cpu_pct_mean=27.0,
               achieved_per_s=15000.0),
        _point("aiohttp", "echo_rate", 1000, 5000.0, server_cpu_pct_mean=80.0,
               achieved_per_s=5000.0),
        _point("aiohttp", "echo_rate", 1000, 15000.0, p99_us=40000.0,
               server_cpu_pct_mean=100.0, achieved_per_s=9000.0),
    ]  # fmt: skip
    found = findings.build(_run(rows))
    cells = _cells(found)
    assert cells["raw"][KNEE].text == "≥ 15,000 · server CPU 27%"
    assert "the server used 27% of a core there, 18.0 µs of CPU per message" in \
        cells["raw"][KNEE].title
    assert any(s.startswith("raw held every step up to 15,000 msgs/s") and "18.0 µs of CPU" in s
               for s in found.sentences)  # fmt: skip
    assert cells["aiohttp"][KNEE].text == "5,000"


def test_a_step_that_kept_too_few_sends_or_failed_is_past_the_knee() -> None:
    rows = [_point("raw", "echo_rate", 100, 100.0), _point("raw", "echo_rate", 100, 200.0),
            _point("raw", "echo_rate", 100, 400.0, main_error_rate=0.02)]  # fmt: skip
    counters = [("raw-echo_rate-u100-r200-host", "echo sends due", 1000),
                ("raw-echo_rate-u100-r200-host", "echo sends made", 900)]  # fmt: skip
    cells = _cells(findings.build(_run(rows, counters=counters)))
    assert cells["raw"][KNEE].text == "100"
    assert "90% of the scheduled sends" in cells["raw"][KNEE].title


def test_a_matrix_part_has_its_own_slo() -> None:
    rows = [_point("raw", "echo_rate", 10, 10.0, p99_us=3000.0),
            _point("raw", "echo_rate", 10, 20.0, p99_us=3000.0)]  # fmt: skip
    ids = [r["point_id"] for r in rows]
    strict = [{"part": "knee", "p99_ms": 2.0, "error_rate": None, "points": ids}]
    assert _cells(findings.build(_run(rows, slo=strict)))["raw"][KNEE].text == "< 10"
    loose = [{"part": "knee", "p99_ms": 5.0, "error_rate": None, "points": ids}]
    assert _cells(findings.build(_run(rows, slo=loose)))["raw"][KNEE].text == "≥ 20"


def test_latency_connect_memory_and_broadcast_columns() -> None:
    rows = [
        _point("raw", "echo_rate", 1000, 4000.0, p50_us=120.0, p99_us=1500.0),
        _point("raw", "echo_rate", 10000, 4000.0, p50_us=300.0, p99_us=9000.0),
        _point("raw", "connect", 50, 500.0, msgs_per_s=310.0, main_error_rate=0.12,
               profile="constrained",
               kernel_explain=["server: 40 ListenOverflows — the accept queue was full"]),
        _point("raw", "connect", 50, 500.0, msgs_per_s=500.0, profile="tuned",
               kernel_explain=["server: TCP_tw grew by 1,900 — sockets left in TIME-WAIT"]),
        _point("raw", "hold", 10000, server_rss_per_conn_bytes=2048.0),
        _point("raw", "broadcast", 1001, p99_us=2500.0, broadcast_expected=1000.0,
               broadcast_received=1000.0, options="--publishers 1"),
    ]  # fmt: skip
    found = findings.build(_run(rows))
    raw = _cells(found)["raw"]
    assert raw["echo p50 / p99 at 1,000 conns"].text == "120 µs / 1.5 ms"
    assert raw["echo p50 / p99 at 10,000 conns"].text == "300 µs / 9.0 ms"
    assert raw["connects/s · constrained"].text == "310 of 500 · 12% failed"
    assert raw["connects/s · constrained"].title.startswith("server: 40 ListenOverflows")
    assert raw["connects/s · tuned"].text == "500 of 500"
    assert raw["connects/s · tuned"].title == "nothing broke"  # TIME-WAIT is no breakage
    assert raw["memory per idle conn"].text == "2.0 KiB"
    assert raw["broadcast p99 · delivered"].text == "2.5 ms · 100.00%"
    assert any("under the constrained profile sustained 310 connects/s of 500 offered, 12.0% "
               "failed; server: 40 ListenOverflows" in s for s in found.sentences)
    assert any("to 1,000 subscribers" in s for s in found.sentences)
    text = "\n".join(findings.as_text(found))
    assert text.startswith("findings:") and "310 of 500" in text


def test_a_latency_tail_the_targets_gc_pause_made_is_named_in_its_cell() -> None:
    pause = ("Python's garbage collector stopped the target once in the measured windows, for "
             "306 ms (generation 2, ...)")  # fmt: skip
    rows = [
        _point("websockets", "echo_rate", 1000, 2500.0, p99_us=600.0, gc_pause_longest_ms=12.0,
               gc_pause_made_p99=False, gc_pauses="a short one"),
        _point("websockets", "echo_rate", 10000, 2500.0, p50_us=194.0, p99_us=271_900.0,
               gc_pause_longest_ms=305.6, gc_pause_made_p99=True, gc_pauses=pause),
    ]  # fmt: skip
    found = findings.build(_run(rows))
    cells = _cells(found)["websockets"]
    # A 12 ms pause under a 600 µs p99 held up fewer than 1 % of the messages: not the p99's.
    at_1k = cells["echo p50 / p99 at 1,000 conns"]
    assert at_1k.text == "100 µs / 600 µs"
    at_10k = cells["echo p50 / p99 at 10,000 conns"]
    assert at_10k.text == "194 µs / 271.9 ms · GC pause 305.6 ms"
    assert at_10k.title == pause
    assert any(s.startswith("websockets at 10,000 connections and 2,500 msgs/s: p50 194 µs, "
                            f"p99 271.9 ms; {pause}.") for s in found.sentences)  # fmt: skip


def test_a_run_that_answers_nothing_says_so() -> None:
    found = findings.build(load_run(FIXTURES / "sweep-small"))
    # The fixture has echo, connect and broadcast points, without rates: no knee, no latency
    # at a fixed rate, the connect column per profile, broadcast p99 without counted delivery.
    assert KNEE not in found.columns and "connects/s · host" in found.columns
    assert all(cell.href is None or cell.href.startswith("#point-") for r in found.rows
               for cell in r)  # fmt: skip
    assert "delivery not counted" in _cells(found)["raw"]["broadcast p99 · delivered"].text
    nothing = findings.build(_run([_point("raw", "echo", 10)]))
    assert findings.as_text(nothing) == [
        "findings: no point of this run answers the questions (see README)"]


def test_a_skip_ramp_points_rate_is_its_steady_windows() -> None:
    """The ramp's windows and the last one, cut short by the stop, are left out."""
    from common.schema import steady_per_s

    def row(start: float, name: str, count: int) -> dict[str, str]:
        return {"window_start_unix_s": str(start), "window_s": "1.0", "name": name,
                "count": str(count)}  # fmt: skip

    # The self-check writes rows without a name while Locust stops: not the name's last window.
    rows = [row(10.0, "echo corrected", 300), row(11.0, "echo corrected", 1000),
            row(11.0, "echo uncorrected", 1000), row(12.0, "echo corrected", 1004),
            row(12.0, "echo uncorrected", 1000), row(13.0, "echo corrected", 120),
            row(14.0, "", 0), row(15.0, "", 0)]  # fmt: skip
    assert steady_per_s(rows, ["echo corrected"], 11.0) == 1002.0
    assert steady_per_s(rows, ["echo corrected", "echo uncorrected"], 11.0) == 2002.0
    assert steady_per_s(rows, ["echo corrected"], None) is None
    assert steady_per_s(rows, ["echo corrected"], 13.0) is None  # nothing whole after it
