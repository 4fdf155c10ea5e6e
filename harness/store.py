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
renamed, so a file that exists is whole. A point.json that is not whole all the same (a copy cut
short, a disk that filled) reads as status "corrupt", which a resumed sweep runs again.

meta.json names the runner writing it (pid, process start time, host): a "running" run whose
runner is gone was killed, and reads as status "killed" (see `as_found`).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

SCHEMA_VERSION = 1
RESULTS_DIR = Path("results")
META = "meta.json"
POINT = "point.json"
POINTS = "points"
LOCUST_PREFIX = "locust"
# Statuses of a point that a resumed sweep does not run again (a failed point is retried).
FINAL_STATUSES = ("ok", "skipped")
RUNNING = "running"
KILLED = "killed"
CORRUPT = "corrupt"
# psutil derives a start time from boot time and clock ticks: equal within this, same process.
SAME_START_S = 0.05


class StoreError(Exception):
    """The results folder cannot be used; the message is one line for the user."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _read_object(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The JSON object in `path`, or None and why it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path} is not readable JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"{path} does not hold a JSON object"
    return data, ""


def runner_fields() -> dict[str, Any]:
    """What identifies this process later, even after its pid is reused."""
    return {
        "runner_pid": os.getpid(),
        "runner_started_unix_s": psutil.Process().create_time(),
        "runner_host": socket.gethostname(),
    }


def runner_alive(meta: dict[str, Any]) -> bool | None:
    """Whether the runner meta.json names still runs; None when that cannot be told (no pid
    recorded, or another machine's run)."""
    pid, started = meta.get("runner_pid"), meta.get("runner_started_unix_s")
    if not isinstance(pid, int) or not isinstance(started, int | float):
        return None
    if meta.get("runner_host") != socket.gethostname():
        return None
    try:
        return abs(psutil.Process(pid).create_time() - started) < SAME_START_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # it exists, but is not ours to look at: assume it is the runner
        return True


def as_found(meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` as it stands: a "running" run whose runner is gone (or whose pid now belongs to
    another process) is "killed", every other field as recorded."""
    if meta.get("status") != RUNNING or runner_alive(meta) is not False:
        return meta
    return {**meta, "status": KILLED, "killed_noticed": utc_now()}


def new_run_id(kind: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{stamp}-{kind}-{secrets.token_hex(2)}"


class RunStore:
    """One run's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, out: Path | None, kind: str) -> RunStore:
        """The folder, made if need be; StoreError unless files can be written in it."""
        root = out if out is not None else RESULTS_DIR / new_run_id(kind)
        if root.exists() and not root.is_dir():
            raise StoreError(f"--out {root} is an existing file, not a folder; choose another")
        probe = root / f".write-test-{os.getpid()}"
        try:
            (root / POINTS).mkdir(parents=True, exist_ok=True)
            # mkdir succeeds on a folder that exists: only writing a file tells (read-only
            # mounts, and modes, which root ignores).
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"cannot write results to {root}: {exc.strerror or exc}") from None
        return cls(root)

    @property
    def meta_path(self) -> Path:
        return self.root / META

    def read_meta(self) -> dict[str, Any] | None:
        """meta.json as recorded, None if there is none; StoreError if it is not whole."""
        if not self.meta_path.exists():
            return None
        meta, why = _read_object(self.meta_path)
        if meta is None:
            raise StoreError(f"{why}; choose another --out")
        return meta

    def claim(self) -> dict[str, Any] | None:
        """meta.json for a new start in this folder: None if there is none; recorded as
        "killed" if its runner was; StoreError if a runner is still writing it."""
        meta = self.read_meta()
        if meta is None:
            return None
        found = as_found(meta)
        if found is not meta:
            write_json(self.meta_path, found)
        elif meta.get("status") == RUNNING and runner_alive(meta):
            raise StoreError(f"{self.root} is being written by a running wsbench (pid "
                             f"{meta['runner_pid']}); wait for it, or choose another --out")
        return found

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
        """The point's point.json, None if it has none, status "corrupt" if it is not whole."""
        path = self.root / POINTS / point_id / POINT
        if not path.exists():
            return None
        result, why = _read_object(path)
        return result if result is not None else {"status": CORRUPT, "reason": why}

    def is_final(self, point_id: str) -> bool:
        result = self.point_result(point_id)
        return result is not None and result.get("status") in FINAL_STATUSES

    def write_point(self, point_id: str, result: dict[str, Any]) -> Path:
        path = self.point_dir(point_id) / POINT
        write_json(path, {"schema_version": SCHEMA_VERSION, **result})
        return path
