"""A run's folder, as the harness writes it: created, claimed on resume, one folder per point.

What the files are called and hold is common/schema.py's; this module decides where a run goes
and that a folder can be used (writable, not being written by another live runner).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from common import schema
from common.errors import BadInput
from common.schema import (
    PointResult,
    RunStatus,
    as_found,
    runner_alive,
    runner_fields,
    utc_now,
    write_json,
)
from harness import provenance

RESULTS_DIR = Path("results")


class StoreError(BadInput):
    """The results folder cannot be used; the message is one line for the user."""


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
            (root / schema.POINTS_DIR).mkdir(parents=True, exist_ok=True)
            # mkdir succeeds on a folder that exists: only writing a file tells (read-only
            # mounts, and modes, which root ignores).
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"cannot write results to {root}: {exc.strerror or exc}") from None
        return cls(root)

    @property
    def meta_path(self) -> Path:
        return self.root / schema.META

    def read_meta(self) -> dict[str, Any] | None:
        """meta.json as recorded, None if there is none; StoreError if it is not whole."""
        if not self.meta_path.exists():
            return None
        try:
            return schema.read_object(self.meta_path)
        except schema.ResultsError as exc:
            raise StoreError(f"{exc}; choose another --out") from None

    def claim(self) -> dict[str, Any] | None:
        """meta.json for a new start in this folder: None if there is none; recorded as
        "killed" if its runner was; StoreError if a runner is still writing it."""
        meta = self.read_meta()
        if meta is None:
            return None
        found = as_found(meta)
        if found is not meta:
            write_json(self.meta_path, found)
        elif meta.get("status") == RunStatus.RUNNING and runner_alive(meta):
            raise StoreError(f"{self.root} is being written by a running wsbench (pid "
                             f"{meta['runner_pid']}); wait for it, or choose another --out")
        return found

    def write_meta(self, meta: dict[str, Any]) -> None:
        schema.write_meta(self.root, meta)

    def update_meta(self, **changes: Any) -> None:
        meta = self.read_meta() or {}
        meta.update(changes)
        write_json(self.meta_path, meta)

    def point_dir(self, point_id: str) -> Path:
        path = self.root / schema.POINTS_DIR / point_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def point_result(self, point_id: str) -> PointResult | None:
        """The point's point.json, None if it has none, status "corrupt" if it is not whole."""
        return schema.point_as_found(self.root / schema.POINTS_DIR / point_id)

    def is_final(self, point_id: str) -> bool:
        result = self.point_result(point_id)
        return result is not None and _status(result).final

    def write_point(self, point_id: str, result: PointResult) -> Path:
        return schema.write_point(self.point_dir(point_id), result)


def _status(result: PointResult) -> schema.PointStatus:
    try:
        return schema.PointStatus(result.get("status"))
    except ValueError:
        return schema.PointStatus.CORRUPT


def start_meta(store: RunStore, kind: str, points: list[Any], **extra: Any) -> dict[str, Any]:
    """A new run's meta.json: what was asked, by which command, with the machine's provenance."""
    meta = {
        "kind": kind,
        "run_id": store.root.name,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "cwd": os.getcwd(),
        "started": utc_now(),
        "ended": None,
        "status": RunStatus.RUNNING,
        "plan": [p.as_dict() for p in points],
        **runner_fields(),  # so that a reader can tell a killed run from a running one
        **extra,
        **provenance.collect(),
    }
    store.write_meta(meta)
    return meta
