"""`wsbench ui`: a point's topology around Locust's web UI, and every test run there stored.

The parts are `run`'s (harness/topology.py): namespaces with the kernel profile, sampling,
broker, target, and Locust, here with its web UI (with a kernel profile it is inside client
namespace 0, and harness/forward.py brings its port to the host). Each test started and
stopped in the UI is a session that Locust writes into WORKSPACE/sessions/session-N
(scenarios/sessions.py); this module watches that folder and, for each:

- when it starts, reads the kernel counters on every side and notes the target's idle RSS
  and where the target's and Locust's logs are;
- when it has stopped, stores it as a run like `wsbench run` does: a run folder with meta.json
  (kind "ui", provenance), the point folder with Locust's files, the samples, counters and log
  lines of the session's time, the point's status from what was measured, and the report; then
  writes session-N/stored.json, which the UI links;

and once a second writes WORKSPACE/sessions/live.json, the server and kernel figures the UI's
tabs show (scenarios/webui.py): the target's samples, and the counters that moved since the
session started (or since the UI started, between sessions).
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import WsbenchError
from common.schema import (
    KERNEL_JSON,
    LOCUST_LOG,
    LOCUST_PREFIX,
    RESOURCES_CSV,
    TARGET_LOG,
    PointStatus,
    RunStatus,
    utc_now,
    write_json,
)
from harness import execute, forward, procs, sampling, topology
from harness.plan import Point, fd_limit, nofile_of, sized
from harness.store import RunStore, new_run_id, start_meta
from harness.topology import counter_extra, snapshots, store_counters
from kernel import counters

POLL_S = 0.25
STOP_WAIT_S = 30.0  # a running test's stop at Ctrl-C: Locust's stop, its files, our store
LIVE_EVERY_S = 1.0
LIVE_SAMPLES = 900  # the server chart's span: 15 min of 1 Hz samples
SESSIONS = "sessions"
# scenarios/sessions.py's file names (the harness does not import Locust's side).
STARTED, STOPPED, STORED, LIVE = "started.json", "stopped.json", "stored.json", "live.json"

Say = Callable[[str], None]
Stored = Callable[[RunStore], Path | None]  # writes a stored run's report; its path


@dataclass(frozen=True)
class Reading:
    """The kernel counters, the target's RSS and the logs' lengths at one moment."""

    unix_s: float
    counters: dict[str, counters.Snapshot]
    target_rss: int | None
    log_sizes: dict[str, int]


@dataclass
class Session:
    """One test run from the UI, from its start as this module saw it."""

    folder: Path
    started: dict[str, Any]
    before: Reading  # what it is measured from
    stored: bool = False

    @property
    def number(self) -> int:
        return int(self.started.get("session") or self.folder.name[8:])


@dataclass
class UiServer:
    """The running parts of `wsbench ui` and the sessions it has seen."""

    run: topology.PointRun
    sampler: sampling.Sampler
    target: procs.Target
    out: Path | None
    say: Say
    stored_hook: Stored
    sessions: dict[str, Session] = field(default_factory=dict)
    baseline: dict[str, counters.Snapshot] = field(default_factory=dict)
    idle_sockets: int = 0  # the target's, before Locust started
    started_unix_s: float = field(default_factory=time.time)
    _live_at: float = 0.0
    _readings: deque[Reading] = field(default_factory=lambda: deque(maxlen=2))

    @property
    def folder(self) -> Path:
        return self.run.pdir / SESSIONS

    def tick(self) -> None:
        """New sessions begun, stopped ones stored, the live file refreshed when due.

        Between sessions the counters and the target's RSS are read at every tick: a session's
        users connect as soon as it starts, before this sees it, so what it is measured from
        is the last reading before it started."""
        if self.running() is None:
            self._readings.append(Reading(
                time.time(), snapshots(self.run.sides, counter_extra(self.run)),
                self.sampler.rss_bytes("target"),
                {name: _size(self.run.pdir / name) for name in (LOCUST_LOG, TARGET_LOG)},
            ))  # fmt: skip
        for path in sorted(self.folder.glob("session-*")):
            seen = self.sessions.get(path.name)
            if seen is None and (path / STARTED).exists():
                seen = self.sessions[path.name] = self._begin(path)
            if seen is not None and not seen.stored and (path / STOPPED).exists():
                seen.stored = True
                self._store(seen)
        if time.monotonic() - self._live_at >= LIVE_EVERY_S:
            self._live_at = time.monotonic()
            self._write_live()

    def _begin(self, path: Path) -> Session:
        started = json.loads((path / STARTED).read_text())
        began_s = float(started["started_unix_s"])
        # The newest reading from before the start (this tick's may be from after it).
        before = [r for r in self._readings if r.unix_s < began_s] or list(self._readings)
        reading = before[-1] if before else Reading(0.0, {}, None, {})
        session = Session(path, started, reading)
        self.say(f"session {session.number}: started, {started.get('users')} users at "
                 f"{started.get('spawn_rate'):g}/s")  # fmt: skip
        return session

    def running(self) -> Session | None:
        return next((s for s in self.sessions.values() if not s.stored), None)

    def _store(self, session: Session) -> None:
        """The session as a run folder; a failure to store it is said, not fatal to the UI."""
        try:
            outcome, store = self._store_run(session)
        except (OSError, ValueError, WsbenchError) as exc:
            self.say(f"session {session.number}: not stored: {exc}")
            write_json(session.folder / STORED, {"status": "not stored", "reason": str(exc)})
            return
        self.say(f"session {session.number}: {execute.describe(outcome)}")
        for warning in outcome.warnings:
            self.say(f"  warning: {warning}")
        report = self.stored_hook(store)
        write_json(session.folder / STORED, {
            "run_dir": str(store.root.resolve()), "status": outcome.status,
            "reason": outcome.reason, "report": str(report.resolve()) if report else None,
        })  # fmt: skip
        self.say(f"  stored: {store.root}" + (f" (report: {report})" if report else ""))

    def _store_run(self, session: Session) -> tuple[execute.Outcome, RunStore]:
        started = session.started
        stopped_s = json.loads((session.folder / STOPPED).read_text())["stopped_unix_s"]
        began_s = float(started["started_unix_s"])
        point = self._point_of(started, max(stopped_s - began_s, 0.001))
        root = self.out / new_run_id("ui") if self.out is not None else None
        store = RunStore.create(root, "ui")
        start_meta(store, "ui", [point], session=session.number,
                   web_ui={"users": started.get("users"), "spawn_rate": started.get("spawn_rate"),
                           "run_time_s": started.get("run_time_s")})  # fmt: skip
        pdir = store.point_dir(point.point_id)
        for path in session.folder.glob(f"{LOCUST_PREFIX}_*"):
            shutil.copy2(path, pdir / path.name)
        for name, offset in session.before.log_sizes.items():
            _copy_tail(self.run.pdir / name, offset, pdir / name)
        sub = topology.PointRun(point, pdir, self.say, bed=self.run.bed, sides=self.run.sides,
                                target=self.target, target_idle_rss=session.before.target_rss,
                                broker=self.run.broker, command=self.run.command,
                                proxy=self.run.proxy)  # fmt: skip
        sub.samples = [s for s in self.sampler.samples if began_s <= s.unix_s <= stopped_s]
        _write_samples(pdir / RESOURCES_CSV, sub.samples)
        sub.counter_record = store_counters(self.run.sides, session.before.counters, pdir,
                                            counter_extra(self.run))  # fmt: skip
        if self.run.bed is not None:
            self._record_kernel(store, pdir, point)
        now = time.monotonic()
        sub.locust_started, sub.locust_ended = now - (time.time() - began_s), now
        sub.locust_ended -= time.time() - stopped_s
        outcome = execute.Outcome(point, PointStatus.OK)
        if not (pdir / execute.FINAL_STATS_JSON).exists():
            outcome = execute.Outcome(point, PointStatus.FAILED, "Locust wrote no final totals")
        execute.conclude(outcome, sub, [])
        store.write_point(point.point_id, {
            **outcome.as_dict(), "started": _iso(began_s), "ended": _iso(stopped_s),
            "command": self.run.command,
        })  # fmt: skip
        store.update_meta(ended=utc_now(), status=RunStatus.COMPLETE)
        return outcome, store

    def _point_of(self, started: dict[str, Any], duration_s: float) -> Point:
        """The planned point with what the form asked for and how long the session lasted."""
        point = self.run.point
        users = int(started.get("users") or point.workload.users)
        spawn = float(started.get("spawn_rate") or point.workload.spawn_rate)
        point = point.with_workload(users=users, spawn_rate=spawn, duration_s=duration_s)
        host = started.get("host")
        if host and host != self.run.host:  # the form's host field was changed
            point = point.with_topology(target=host)
        return point

    def _record_kernel(self, store: RunStore, pdir: Path, point: Point) -> None:
        bed = self.run.bed
        info = {**bed.profile.as_dict(), "in_force": bed.in_force,
                "client_hosts": point.topology.client_hosts,
                "client_addresses": point.topology.client_addresses,
                "nofile": nofile_of(point.topology) or fd_limit()}  # fmt: skip
        write_json(pdir / KERNEL_JSON, info)
        store.update_meta(kernel_profiles={point.topology.kernel_profile: info})

    def _write_live(self) -> None:
        session = self.running()
        since = session.before.counters if session else self.baseline
        since_s = float(session.started["started_unix_s"]) if session else self.started_unix_s
        kernel = _kernel(self.run.sides, since, since_s, counter_extra(self.run))
        live = {"updated_unix_s": time.time(), "server": self._server(session), "kernel": kernel}
        partial = self.folder / f".{LIVE}"
        partial.write_text(json.dumps(live))
        partial.replace(self.folder / LIVE)

    def _server(self, session: Session | None) -> dict[str, Any]:
        idle = session.before.target_rss if session else self.run.target_idle_rss
        mine = [s for s in self.sampler.samples if s.role == "target"]
        rows = []
        for s in mine[-LIVE_SAMPLES:]:
            # What it holds with no client (listeners, its workers' pipes) is no connection.
            connections = max(s.sockets - self.idle_sockets, 0)
            above = s.rss_bytes - idle if idle is not None else None
            rows.append({"t_s": round(s.unix_s - self.started_unix_s, 1), "unix_s": s.unix_s,
                         "cpu_pct": s.cpu_pct, "rss_bytes": s.rss_bytes,
                         "processes": s.processes, "connections": connections,
                         "bytes_per_connection": round(above / connections)
                         if connections and above is not None and above > 0 else None})  # fmt: skip
        return {"target": self.target.url, "idle_rss_bytes": idle, "samples": rows}


def _kernel(sides: dict[str, Path], since: dict[str, counters.Snapshot], since_s: float,
            extra: Callable[[], dict[str, dict[str, int]]] | None = None) -> dict[str, Any]:
    """The counters that moved on every side since `since`, each with what it means."""
    now = snapshots({side: sides[side] for side in since}, extra)
    pairs = {side: (since[side], now[side]) for side in since if side in now}
    if not pairs:
        return {"since_unix_s": since_s, "rows": [], "explain": []}
    record = counters.point_record(pairs)
    rows = [{"side": side, "counter": name, "change": change, "meaning": counters.meaning(name)}
            for side, values in counters.side_deltas(record).items()
            for name, change in values.items() if change]  # fmt: skip
    return {"since_unix_s": since_s, "rows": rows, "explain": counters.explain(record)}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _copy_tail(source: Path, offset: int, dest: Path) -> None:
    """What was appended to `source` after `offset`: a session's share of a long-lived log."""
    try:
        with source.open("rb") as f:
            f.seek(offset)
            dest.write_bytes(f.read())
    except OSError:
        return


def _write_samples(path: Path, samples: list[sampling.Sample]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, sampling.COLUMNS)
        writer.writeheader()
        for sample in samples:
            writer.writerow(asdict(sample))


def _iso(unix_s: float) -> str:
    """A unix time as point.json's started/ended (schema.utc_now's form)."""
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Listen:
    """Where the user's browser reaches the web UI."""

    host: str
    port: int

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("", "*", "0.0.0.0") else self.host
        return f"http://[{shown}]:{self.port}" if ":" in shown else f"http://{shown}:{self.port}"


def serve(point: Point, listen: Listen, out: Path | None, say: Say, stored_hook: Stored) -> int:
    """Run `wsbench ui` until Locust or the target exits, or Ctrl-C (KeyboardInterrupt, which
    is re-raised after everything stopped). Its working files are in a temporary folder,
    removed at the end unless something failed."""
    point, notes = sized(point)  # the runner checked it can be
    for note in notes:
        say(f"  {note}")
    workspace = Path(tempfile.mkdtemp(prefix="wsbench-ui-"))
    (workspace / SESSIONS).mkdir()
    run = topology.PointRun(point, workspace, say)
    status = 1
    try:
        status = _serve(run, listen, out, say, stored_hook)
    except KeyboardInterrupt:  # how a UI session ends: nothing failed
        status = 0
        raise
    finally:
        if status == 0:
            shutil.rmtree(workspace, ignore_errors=True)
        else:
            say(f"wsbench ui: its logs are kept in {workspace}")
    return status


def _serve(run: topology.PointRun, listen: Listen, out: Path | None, say: Say,
           stored_hook: Stored) -> int:  # fmt: skip
    with contextlib.ExitStack() as parts:
        bed = parts.enter_context(topology.testbed(run))
        sampler = parts.enter_context(topology.resource_sampling(run))
        parts.enter_context(topology.broker(run, sampler))
        target = parts.enter_context(topology.target(run, sampler))
        idle_sockets = sampler.sockets("target") or 0
        front = parts.enter_context(topology.proxy(run, target, sampler))
        # In a namespace Locust listens on its own loopback, and the forward brings it out.
        inner = listen if bed is None else Listen("127.0.0.1", listen.port)
        web = topology.WebUI(inner.host, inner.port, run.pdir / SESSIONS)
        locusts = parts.enter_context(topology.locust(run, front, sampler, web))
        if bed is not None:
            parts.enter_context(forward.forwarded(listen.host or "0.0.0.0", listen.port,
                                                  bed.clients[0].pid, inner.port))  # fmt: skip
        server = UiServer(run, sampler, target, out, say, stored_hook, idle_sockets=idle_sockets)
        server.baseline = snapshots(run.sides, counter_extra(run))
        say(f"target {run.point.topology.target} at {target.url}")
        say(f"web UI: {listen.url}  (Ctrl-C to stop; each test started there is stored as a "
            "run)")  # fmt: skip
        try:
            while locusts[0].poll() is None and target.exited() is None:
                server.tick()
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            _finish_running(server, locusts[0], listen.url, say)
            raise
        server.tick()
        if target.exited() is not None:
            say(f"target exited with status {target.exited()}")
            return 1
        say(f"Locust exited with status {locusts[0].returncode}")
        return 0 if locusts[0].returncode in (0, 1) else locusts[0].returncode


def _finish_running(server: UiServer, locust: Any, url: str, say: Say) -> None:
    """Ctrl-C while a test runs: stop it as the UI's STOP button does (a master waits for its
    workers' last figures), store it, then let the rest stop. If the UI does not answer,
    Locust is stopped with SIGTERM, which also writes the session."""
    running = server.running()
    if running is None:
        return
    say("wsbench ui: stopping the running test and storing it")
    try:
        urllib.request.urlopen(urllib.request.Request(f"{url}/stop", method="POST"),
                               timeout=STOP_WAIT_S).close()  # fmt: skip
    except OSError:
        procs.stop(locust)
    deadline = time.monotonic() + STOP_WAIT_S
    while not running.stored and time.monotonic() < deadline and locust.poll() is None:
        server.tick()
        time.sleep(POLL_S)
    procs.stop(locust)
    server.tick()
