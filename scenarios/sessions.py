"""A web UI session written out like a headless run, for `wsbench ui` to store as a run.

With `--wsbench-sessions DIR` (wsbench ui passes it), the process that merges (the master, or
the single local process) writes for the n-th test started from the web UI:

    DIR/session-N/started.json   at test_start: the form's users, spawn rate and run time, the
                                 host, when (unix s)
    DIR/session-N/locust_*       at test_stop: the files a headless run's --csv PREFIX gets
                                 (µs totals, history, histograms, Locust's final totals)
    DIR/session-N/stopped.json   last, once those files are whole

wsbench ui (harness/session.py) watches DIR, turns each stopped session into a run folder, and
writes DIR/session-N/stored.json (the run folder, its status and report), which the web UI
links (scenarios/webui.py). A quit while a test runs (Ctrl-C) stops the users first, so the
session is still written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner

from common.schema import LOCUST_PREFIX
from scenarios import output
from scenarios.options import add_once

STARTED = "started.json"
STOPPED = "stopped.json"
STORED = "stored.json"
# A master's last windows arrive before its workers say they stopped; this bounds the wait
# for the stragglers of a worker that died meanwhile.
LAST_WINDOWS_WAIT_S = 3.0

logger = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def _sessions_argument(parser: Any, **_: object) -> None:
    add_once(parser, "--wsbench-sessions", default="", include_in_web_ui=False,
             help="Folder to write each web UI test into, started to stopped (wsbench ui "
             "stores each as a run)")  # fmt: skip


def session_dirs(root: Path) -> list[Path]:
    """The session folders under `root`, oldest first."""
    found = [p for p in root.glob("session-*") if p.is_dir() and p.name[8:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[8:]))


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """`data` as JSON at `path`, which a reader never sees half written."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data, indent=1))
    partial.replace(path)


class Sessions:
    """The sessions of one merging process."""

    def __init__(self, environment: Environment, measurement: Any, root: Path) -> None:
        self.environment = environment
        self.measurement = measurement
        self.root = root
        self.current: Path | None = None
        self.workers = 1

    def start(self) -> None:
        """A test begins: a new session folder, and what the form asked for."""
        root, options = self.root, self.environment.parsed_options
        root.mkdir(parents=True, exist_ok=True)
        previous = session_dirs(root)
        number = int(previous[-1].name[8:]) + 1 if previous else 1
        self.current = root / f"session-{number}"
        self.current.mkdir()
        runner = self.environment.runner
        self.workers = runner.worker_count if isinstance(runner, MasterRunner) else 1
        write_json_atomic(self.current / STARTED, {
            "session": number,
            "started_unix_s": time.time(),
            "users": int(getattr(options, "num_users", 0) or 0),
            "spawn_rate": float(getattr(options, "spawn_rate", 0) or 0),
            "run_time_s": getattr(options, "run_time", None),
            "host": self.environment.host,
            "workers": self.workers if isinstance(runner, MasterRunner) else 0,
        })  # fmt: skip
        logger.info("wsbench session %d started: %s", number, self.current)

    def stop(self) -> None:
        """The test ended: its files once the last windows are in, then the stopped marker."""
        if self.current is None:
            return
        deadline = time.monotonic() + LAST_WINDOWS_WAIT_S
        while (len(self.measurement.run_cpu_pct) < self.workers
               and time.monotonic() < deadline):  # fmt: skip
            gevent.sleep(0.1)
        folder, self.current = self.current, None
        measurement = self.measurement
        measurement.merger.finish_windows()
        result = output.RunResult.of(
            measurement.merger, measurement.run_cpu_pct, measurement.window_s,
            output.describe_measurement(self.environment, measurement.merger.counters),
        )  # fmt: skip
        prefix = str(folder / LOCUST_PREFIX)
        output.write_files(prefix, result)
        output.write_locust_final(prefix, self.environment.stats)
        write_json_atomic(folder / STOPPED, {"stopped_unix_s": time.time()})
        logger.info("wsbench session %s written: %s", folder.name[8:], folder)


def install(environment: Environment, measurement: Any) -> Sessions | None:
    """Write sessions when the process merges and --wsbench-sessions is given."""
    folder = getattr(environment.parsed_options, "wsbench_sessions", "") or ""
    if not folder or not measurement.merges:
        return None
    sessions = Sessions(environment, measurement, Path(folder))
    environment.events.test_start.add_listener(lambda **_: sessions.start())
    environment.events.test_stop.add_listener(lambda **_: sessions.stop())
    return sessions
