"""The results folder: what a run leaves behind, written so that a crash loses nothing measured.

    results/<run-id>/
        meta.json                   schema version, command, provenance, plan, start/end times
        points/<point-id>/
            point.json              parameters, status, reason, summary, warnings (written last)
            locust_stats.csv ...    Locust's CSVs (--csv prefix `locust`)
            locust_latency_us.csv   µs percentiles, and the encoded histograms beside it
            resources.csv           1 Hz samples of the target and Locust processes
            target.log, locust.log  their stderr

A point is complete when its point.json exists; files are written to a temporary name and
renamed, so a file that exists is whole.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULTS_DIR = Path("results")
META = "meta.json"
POINT = "point.json"
POINTS = "points"
LOCUST_PREFIX = "locust"
# Statuses of a point that a resumed sweep does not run again (a failed point is retried).
FINAL_STATUSES = ("ok", "skipped")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def new_run_id(kind: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{stamp}-{kind}-{secrets.token_hex(2)}"


class RunStore:
    """One run's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, out: Path | None, kind: str) -> RunStore:
        root = out if out is not None else RESULTS_DIR / new_run_id(kind)
        (root / POINTS).mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def meta_path(self) -> Path:
        return self.root / META

    def read_meta(self) -> dict[str, Any] | None:
        return read_json(self.meta_path) if self.meta_path.exists() else None

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_json(self.meta_path, {"schema_version": SCHEMA_VERSION, **meta})

    def update_meta(self, **changes: Any) -> None:
        meta = self.read_meta() or {}
        meta.update(changes)
        write_json(self.meta_path, meta)

    def point_dir(self, point_id: str) -> Path:
        path = self.root / POINTS / point_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def point_result(self, point_id: str) -> dict[str, Any] | None:
        path = self.root / POINTS / point_id / POINT
        return read_json(path) if path.exists() else None

    def is_final(self, point_id: str) -> bool:
        result = self.point_result(point_id)
        return result is not None and result.get("status") in FINAL_STATUSES

    def write_point(self, point_id: str, result: dict[str, Any]) -> Path:
        path = self.point_dir(point_id) / POINT
        write_json(path, {"schema_version": SCHEMA_VERSION, **result})
        return path
