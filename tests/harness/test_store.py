"""harness.store: atomic JSON files, the run folder layout, which points count as done."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness import store
from harness.store import SCHEMA_VERSION, RunStore, write_json


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
