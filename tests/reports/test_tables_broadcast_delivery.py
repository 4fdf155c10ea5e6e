"""reports.tables.broadcast_delivery: the members' counted figures; old runs keep the estimate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from reports import tables
from reports.load import Run, load_run

HISTOGRAMS = "locust_latency_us_histograms.json"
# Counted by the members of each doctored point (published as stored in the fixture run).
COUNTED = {
    "raw-broadcast-u5-host": {"broadcast expected": 80, "broadcast received": 76,
                              "broadcast lost": 3, "broadcast in flight": 1,
                              "broadcast duplicated": 2, "broadcast out of order": 1,
                              "broadcast without end marker": 1},
    "raw-broadcast-u2-host": {"broadcast expected": 30, "broadcast received": 30,
                              "broadcast lost": 0, "broadcast in flight": 0,
                              "broadcast duplicated": 0, "broadcast out of order": 0,
                              "broadcast without end marker": 0},
}  # fmt: skip
NEW_COLUMNS = ("duplicated", "out_of_order", "in_flight")
OLD_COLUMNS = ("series", "users", "published", "received", "lost", "expected", "delivered_pct",
               "generator_saturated")  # fmt: skip


def counted_copy(copy_run: Callable[[Path, str], Path], sweep_dir: Path) -> Path:
    """sweep-small with the raw broadcast points' counters as a run of today would store them."""
    run_dir = copy_run(sweep_dir, "counted")
    for point_id, counters in COUNTED.items():
        path = run_dir / "points" / point_id / HISTOGRAMS
        document = json.loads(path.read_text())
        document["counters"].update(counters)
        path.write_text(json.dumps(document))
    return run_dir


def test_delivery_is_received_over_counted_expected(copy_run, sweep_dir) -> None:
    """Counted points: delivered % = received / expected as counted, every count in a column."""
    delivery = tables.broadcast_delivery(load_run(counted_copy(copy_run, sweep_dir)).points)
    assert set(OLD_COLUMNS + NEW_COLUMNS) <= set(delivery.columns)
    raw = delivery[delivery["series"] == "raw"].set_index("users")
    assert raw.loc[5, "expected"] == 80 and raw.loc[2, "expected"] == 30
    assert raw.loc[5, "delivered_pct"] == 100.0 * 76 / 80
    assert raw.loc[2, "delivered_pct"] == 100.0
    counts = ("lost", "in_flight", "duplicated", "out_of_order", "without_end_marker")
    assert tuple(raw.loc[5, list(counts)]) == (3, 1, 2, 1, 1)
    assert raw["expected_counted"].all()


def test_old_runs_without_counted_expected_keep_the_estimate(copy_run, sweep_dir) -> None:
    """Points lacking "broadcast expected" fall back to published x users per room, marked so."""
    delivery = tables.broadcast_delivery(load_run(counted_copy(copy_run, sweep_dir)).points)
    old = delivery[delivery["series"] == "aiohttp"]
    assert len(old) == 2 and not old["expected_counted"].any()
    assert np.allclose(old["expected"], old["published"] * old["users"])  # --rooms 1
    assert np.allclose(old["delivered_pct"], 100 * old["received"] / old["expected"])
    assert old["in_flight"].isna().all() and old["duplicated"].isna().all()


def test_fixture_run_is_all_estimated(sweep: Run) -> None:
    """A run stored before the counts: every point estimated, none claimed counted."""
    delivery = tables.broadcast_delivery(sweep.points)
    assert len(delivery) == 4 and not delivery["expected_counted"].any()
    assert delivery["delivered_pct"].notna().all()


def test_estimate_divides_by_rooms() -> None:
    """The old estimate spreads users over --rooms; counted expected is used as it is."""
    points = pd.DataFrame({
        "scenario": ["broadcast"] * 2, "status": ["ok"] * 2, "target": ["raw", "aiohttp"],
        "kernel_profile": ["host"] * 2, "users": [10, 10], "options": ["--rooms 2"] * 2,
        "generator_saturated": [False, True], "broadcast_published": [100, 100],
        "broadcast_received": [400, 400], "broadcast_expected": [np.nan, 450],
    })  # fmt: skip
    delivery = tables.broadcast_delivery(points).set_index("series")
    assert delivery.loc["raw", "expected"] == 100 * 10 / 2
    assert delivery.loc["aiohttp", "expected"] == 450
    assert delivery.loc["aiohttp", "delivered_pct"] == 100.0 * 400 / 450
    assert not delivery.loc["raw", "expected_counted"]
    assert delivery.loc["aiohttp", "expected_counted"]
