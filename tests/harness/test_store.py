"""harness.store: atomic JSON files, the run folder layout, which points count as done."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import schema
from common.schema import SCHEMA_VERSION, runner_fields, write_json
from harness import store
from harness.store import RunStore, StoreError


def test_write_json_leaves_only_the_file_it_wrote(tmp_path: Path) -> None:
    """After a write (and an overwrite) the folder holds the file and no temporary beside it."""
    path = tmp_path / "point.json"
    write_json(path, {"status": "interrupted"})
    write_json(path, {"status": "ok", "users": 10})
    assert [p.name for p in tmp_path.iterdir()] == ["point.json"]
    assert json.loads(path.read_text()) == {"status": "ok", "users": 10}


def test_write_json_replaces_the_file_rather_than_rewriting_it(tmp_path: Path) -> None:
    """write_json renames a new file over the old: a reader of the old one sees it whole."""
    path = tmp_path / "meta.json"
    write_json(path, {"status": "running", "plan": list(range(1000))})
    with path.open() as old:
        write_json(path, {"status": "complete"})
        assert json.loads(old.read()) == {"status": "running", "plan": list(range(1000))}
    assert json.loads(path.read_text()) == {"status": "complete"}


def test_write_json_keeps_the_old_file_when_the_data_cannot_be_written(tmp_path: Path) -> None:
    """If serialising fails, the previous file is untouched and no temporary is left."""
    path = tmp_path / "meta.json"
    write_json(path, {"status": "running"})
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(ValueError):
        write_json(path, loop)
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_write_json_stores_paths_and_other_objects_as_text(tmp_path: Path) -> None:
    """Values JSON has no type for (a Path) are written as their text, not a crash."""
    path = tmp_path / "x.json"
    write_json(path, {"out": tmp_path})
    assert json.loads(path.read_text()) == {"out": str(tmp_path)}


@pytest.mark.parametrize(
    ("status", "final"),
    [("ok", True), ("failed", False), ("skipped", True), ("interrupted", False), ("", False)],
)
def test_is_final_says_which_points_a_resumed_sweep_does_not_run_again(
    tmp_path: Path, status: str, final: bool
) -> None:
    """ok and skipped points are done; a failed or interrupted one is run again."""
    run = RunStore.create(tmp_path / "run", "sweep")
    run.write_point("raw-echo-u10-host", {"status": status})
    assert run.is_final("raw-echo-u10-host") is final


def test_a_point_without_point_json_is_not_final(tmp_path: Path) -> None:
    """A point folder with data but no point.json (the runner died in it) is run again."""
    run = RunStore.create(tmp_path / "run", "sweep")
    (run.point_dir("raw-echo-u10-host") / "locust_stats.csv").write_text("Type,Name\n")
    assert run.point_result("raw-echo-u10-host") is None
    assert not run.is_final("raw-echo-u10-host")
    assert not run.is_final("never-started")


def test_meta_and_points_carry_the_schema_version(tmp_path: Path) -> None:
    """meta.json and point.json start with schema_version, and updating meta keeps it."""
    run = RunStore.create(tmp_path / "run", "run")
    run.write_meta({"kind": "run", "status": "running"})
    run.update_meta(status="complete", ended="2024-01-01T00:00:00+00:00")
    meta = json.loads(run.meta_path.read_text())
    assert next(iter(meta)) == "schema_version"
    assert meta == {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "status": "complete",
        "ended": "2024-01-01T00:00:00+00:00",
    }
    point = json.loads(run.write_point("p", {"status": "ok"}).read_text())
    assert point == {"schema_version": SCHEMA_VERSION, "status": "ok"}
    assert isinstance(SCHEMA_VERSION, int) and SCHEMA_VERSION >= 1


def test_a_run_without_out_goes_to_results_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out a run goes to results/<stamp>-<kind>-<hex>/, unique per run."""
    monkeypatch.chdir(tmp_path)
    first = RunStore.create(None, "sweep")
    second = RunStore.create(None, "sweep")
    assert first.root.parent == store.RESULTS_DIR
    assert re.fullmatch(r"\d{8}T\d{6}-sweep-[0-9a-f]{4}", first.root.name)
    assert (tmp_path / first.root / "points").is_dir()
    assert first.root != second.root


# Nothing measured is lost (issue 10): folders that cannot be written, files that are not whole,
# runs whose runner was killed.


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder nothing can be written in, even by root (who ignores mode bits): a read-only
    tmpfs mounted there when root, mode 0555 otherwise."""
    path.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                       check=True)  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], check=True)
    else:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


def test_out_that_is_an_existing_file_is_a_store_error(tmp_path: Path) -> None:
    """--out naming a regular file: StoreError saying so; the file is left as it was."""
    out = tmp_path / "results.txt"
    out.write_text("mine")
    with pytest.raises(StoreError, match="is an existing file, not a folder"):
        RunStore.create(out, "run")
    assert out.read_text() == "mine"


@pytest.mark.parametrize("inside", [False, True])
def test_out_that_cannot_be_written_is_a_store_error(tmp_path: Path, inside: bool) -> None:
    """A read-only folder as --out, or a new --out inside one: StoreError, nothing created."""
    with read_only_folder(tmp_path / "ro") as ro:
        with pytest.raises(StoreError, match=f"cannot write results to {ro}"):
            RunStore.create(ro / "run" if inside else ro, "run")
        assert list(ro.iterdir()) == []


def test_a_truncated_point_json_reads_as_corrupt_and_is_run_again(tmp_path: Path) -> None:
    """Half a point.json: status "corrupt" naming the file, not final (a resume retries it)."""
    run = RunStore.create(tmp_path / "run", "sweep")
    path = run.write_point("raw-echo-u1-host", {"status": "ok", "summary": {"requests": 9}})
    path.write_text(path.read_text()[: len(path.read_text()) // 2])
    result = run.point_result("raw-echo-u1-host")
    assert result is not None and result["status"] == "corrupt"
    assert str(path) in result["reason"]
    assert not run.is_final("raw-echo-u1-host")


def test_a_truncated_meta_json_is_a_store_error(tmp_path: Path) -> None:
    """Half a meta.json on resume: StoreError naming the file, not a JSONDecodeError."""
    run = RunStore.create(tmp_path / "run", "sweep")
    run.meta_path.write_text('{"kind": "sweep", "sta')
    with pytest.raises(StoreError, match="meta.json is not readable JSON"):
        run.claim()


def _gone_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _running_meta(**runner: object) -> dict[str, object]:
    return {"kind": "sweep", "status": "running", "plan": [1, 2], **runner_fields(), **runner}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({}, "running"),  # this process: alive
        ({"runner_pid": "gone"}, "killed"),
        ({"runner_started_unix_s": 12.0}, "killed"),  # the pid now belongs to another process
        ({"runner_host": "elsewhere"}, "running"),  # another machine's run: cannot tell
    ],
)
def test_as_found_marks_a_running_run_whose_runner_is_gone_killed(
    change: dict[str, object], status: str
) -> None:
    """"running" with the runner gone (or its pid reused) is "killed"; all else as recorded."""
    if change.get("runner_pid") == "gone":
        change = {"runner_pid": _gone_pid()}
    meta = _running_meta(**change)
    found = schema.as_found(meta)
    assert found["status"] == status
    assert {k: v for k, v in found.items() if k not in ("status", "killed_noticed")} == {
        k: v for k, v in meta.items() if k != "status"
    }


def test_claim_records_a_killed_run_and_refuses_a_running_one(tmp_path: Path) -> None:
    """claim() writes "killed" for a dead runner's run; a live runner's run is a StoreError."""
    run = RunStore.create(tmp_path / "run", "sweep")
    run.write_meta(_running_meta(runner_pid=_gone_pid()))
    assert run.claim()["status"] == "killed"
    assert json.loads(run.meta_path.read_text())["status"] == "killed"
    run.write_meta(_running_meta())
    with pytest.raises(StoreError, match=rf"running wsbench \(pid {os.getpid()}\)"):
        run.claim()
