"""`wsbench ui` as a person uses it: a real process, Locust's web UI in headless Chromium, Ctrl-C.

Each test starts `python runner.py ui --target raw --scenario echo` on a free port, waits for the
page to answer, and on the way out stops it with a signal and checks that neither the target nor
Locust is left running and that nothing listens on their ports any more.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
from browser import console_errors, headless_chromium, require_chromium, screenshot_spread
from prometheus_client.parser import text_string_to_metric_families
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from kernel.netns import missing_privileges

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
SWARM_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
USERS = 4  # not the form's prefilled 10, so the test sees that its typing took effect
SPAWN_RATE = 4
# Every row of the page's tables as the text of its cells, read in one go (React re-renders them).
ROWS_JS = (
    "return Array.from(document.querySelectorAll('table tr'),"
    " r => Array.from(r.cells, c => c.innerText.trim()))"
)

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not (value := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.25)
    return value


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def _sigint_as_at_a_terminal() -> None:
    # A shell running us in the background may ignore SIGINT; Python then installs no handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class RunningUI:
    proc: subprocess.Popen[bytes]
    port: int
    log_dir: Path
    children: list[psutil.Process]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        """wsbench ui's stdout and stderr, then the logs of its target and Locust."""
        files = [self.log_dir / "out", self.log_dir / "err",
                 *self.log_dir.glob("wsbench-ui-*/*.log")]  # its workspace, kept on failure
        return "\n".join(f.read_text(errors="replace") for f in files)

    def child(self, module: str) -> psutil.Process:
        found = [p for p in self.children if module in p.cmdline()[1:4]]
        assert len(found) == 1, f"expected one {module} child, got {found}"
        return found[0]

    @property
    def target_url(self) -> str:
        lines = (self.log_dir / "out").read_text().splitlines()
        return next(line.split(" at ", 1)[1] for line in lines if line.startswith("target "))

    def locust_stats(self) -> dict:
        return self.get("stats/requests")

    def get(self, path: str) -> dict:
        """A JSON route of the web UI (Locust's, or wsbench's under /wsbench/)."""
        with urllib.request.urlopen(self.url + path, timeout=5) as reply:
            return json.load(reply)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"wsbench ui exited with status {self.proc.returncode}:\n{self.output()}")
        try:
            with urllib.request.urlopen(self.url, timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False


def listeners(port: int) -> set[tuple[str, int | None]]:
    return {
        (c.laddr.ip, c.pid)
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def assert_nothing_left(ui: RunningUI, target_url: str) -> None:
    _, alive = psutil.wait_procs(ui.children, timeout=5)
    assert not alive, f"children still running after wsbench ui exited: {alive}"
    web_port, target_port = str(ui.port), int(target_url.rsplit(":", 1)[1])
    strays = [
        p.info for p in psutil.process_iter(["pid", "cmdline"])
        if web_port in (p.info["cmdline"] or []) or target_url in (p.info["cmdline"] or [])
    ]  # fmt: skip
    assert not strays, f"processes left holding the UI's port or target: {strays}"
    assert not listeners(ui.port) and not listeners(target_port)


@contextlib.contextmanager
def running_ui(
    tmp_path: Path, *args: str, stop_with: signal.Signals = signal.SIGINT
) -> Iterator[RunningUI]:
    """`wsbench ui` answering on a free port; stopped with `stop_with`, which must leave nothing."""
    port = free_port()
    log_dir = tmp_path / "ui"
    log_dir.mkdir()
    with (log_dir / "out").open("wb") as out, (log_dir / "err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "runner.py", "ui", "--target", "raw", "--scenario", "echo",
             "--web-port", str(port), "--out", str(tmp_path / "results"), *args],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            env={**os.environ, "TMPDIR": str(log_dir)},  # the target's and Locust's logs
            preexec_fn=_sigint_as_at_a_terminal,
        )  # fmt: skip
    ui = RunningUI(proc, port, log_dir, [])
    try:
        wait_for(ui.answers, START_TIMEOUT_S, f"the web UI at {ui.url}")
        ui.children = psutil.Process(proc.pid).children(recursive=True)
        target_url = ui.target_url
        yield ui
        proc.send_signal(stop_with)
        status = proc.wait(STOP_TIMEOUT_S)
        assert status == 0, f"wsbench ui exited {status} on {stop_with.name}:\n{ui.output()}"
        assert "wsbench ui: stopped" in (log_dir / "out").read_text()
        assert_nothing_left(ui, target_url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in ui.children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@pytest.mark.parametrize(
    ("args", "address"),
    [((), "127.0.0.1"), (("--web-host", "0.0.0.0"), "0.0.0.0")],
    ids=["default", "opened"],
)
def test_ui_listens_on_loopback_unless_opened(
    tmp_path: Path, args: tuple[str, ...], address: str
) -> None:
    """The web UI listens on 127.0.0.1 only, unless --web-host 0.0.0.0; SIGTERM ends it cleanly."""
    with running_ui(tmp_path, *args, stop_with=signal.SIGTERM) as ui:
        assert listeners(ui.port) == {(address, ui.child("locust").pid)}
        target = ui.child("targets")
        assert {c.laddr.ip for c in target.net_connections("inet")
                if c.status == psutil.CONN_LISTEN} == {"127.0.0.1"}  # fmt: skip


def test_ui_refuses_a_busy_web_port() -> None:
    """A web port already in use is a one-line error and exit status 2, before anything starts."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "runner.py", "ui", "--target", "raw", "--scenario", "echo",
             "--web-port", str(port)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"{port}: Address already in use; choose another --web-port" in done.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--fault", "kill-target@5s"), "--fault is for run and sweep"),
        (("--kernel-profile", "default,tuned"), "wsbench ui takes one kernel profile"),
        (("--users", "0"), "users must be between 1 and"),
    ],
    ids=["fault", "two-profiles", "no-users"],
)
def test_ui_refuses_what_it_cannot_do(args: tuple[str, ...], said: str) -> None:
    """What a UI session cannot be is one line and exit 2, before anything starts."""
    done = subprocess.run(
        [sys.executable, "runner.py", "ui", "--target", "raw", "--scenario", "echo",
         "--web-port", str(free_port()), *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert said in done.stderr


def _type_into(page: WebDriver, name: str, value: int) -> None:
    field = page.find_element(By.NAME, name)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value))
    assert field.get_attribute("value") == str(value)


def _echo_row(page: WebDriver) -> dict[str, str] | None:
    """The statistics table's WS echo row once its request count is above zero."""
    header, *rows = page.execute_script(ROWS_JS) or [[]]
    for cells in rows:
        row = dict(zip(header, cells, strict=False))
        if (row.get("Type"), row.get("Name")) == ("WS", "echo"):
            requests = int(row["# Requests"].replace(",", "") or 0)
            return row if requests > 0 else None
    return None


def _click_button(page: WebDriver, label: str) -> None:
    buttons = [b for b in page.find_elements(By.TAG_NAME, "button") if b.text.upper() == label]
    assert buttons, f"no {label} button on the page"
    buttons[0].click()


def _open_tab(page: WebDriver, title: str) -> None:
    tabs = [t for t in page.find_elements(By.CSS_SELECTOR, "[role=tab]")
            if t.text.strip().upper() == title.upper()]  # fmt: skip
    assert tabs, f"no {title!r} tab on the page"
    tabs[0].click()


def _rows(page: WebDriver) -> list[dict[str, str]]:
    """The open tab's table as dicts by column title."""
    header, *rows = page.execute_script(ROWS_JS) or [[]]
    return [dict(zip(header, cells, strict=False)) for cells in rows]


def _number(text: str) -> float:
    return float(text.replace(",", "") or 0)


def _latency_row(page: WebDriver) -> dict[str, str] | None:
    """The Latency tab's echo row once its p50 is above zero."""
    for row in _rows(page):
        if row.get("Name") == "echo" and _number(row.get("p50 µs", "")) > 0:
            return row
    return None


def _server_row(page: WebDriver) -> dict[str, str] | None:
    """The Server tab's newest sample once it counts the users' connections."""
    rows = _rows(page)
    if rows and _number(rows[0].get("Open connections", "") or "0") >= USERS:
        return rows[0]
    return None


def _chart_drawn(page: WebDriver) -> bool:
    return bool(page.find_elements(By.CSS_SELECTOR, "#wsbench-charts svg path"))


def _check_tabs(page: WebDriver, ui: RunningUI) -> None:
    """Each wsbench tab shows live figures: µs latency and its spectrum, the target's
    connections and its chart, the kernel counters that moved, the generator's checks."""
    _open_tab(page, "Latency (microseconds)")
    row = wait_for(lambda: _latency_row(page), SWARM_TIMEOUT_S, "a µs p50 for echo")
    assert _number(row["# Samples"]) > 0 and _number(row["p99 µs"]) >= _number(row["p50 µs"])
    wait_for(lambda: _chart_drawn(page), SWARM_TIMEOUT_S, "the percentile spectrum")
    shot = ui.log_dir / "latency-tab.png"
    page.save_screenshot(str(shot))
    colours, commonest = screenshot_spread(shot)
    assert colours > 50 and commonest < 0.95, f"{shot} looks blank ({colours} colours)"

    _open_tab(page, "Server")
    row = wait_for(lambda: _server_row(page), SWARM_TIMEOUT_S, f"{USERS} open connections")
    assert _number(row["RSS MiB"]) > 0, row
    wait_for(lambda: _chart_drawn(page), SWARM_TIMEOUT_S, "the server chart")

    _open_tab(page, "Kernel")
    opens = {"ActiveOpens", "PassiveOpens"}  # both ends are on this host
    wait_for(lambda: opens <= {r.get("Counter") for r in _rows(page)}, SWARM_TIMEOUT_S,
             "the connects in the kernel tab")  # fmt: skip

    _open_tab(page, "Generator")
    checks = wait_for(lambda: {r.get("Check"): r.get("Value") for r in _rows(page)},
                      SWARM_TIMEOUT_S, "the generator checks")  # fmt: skip
    # The strip is on every tab, polled on its own: the same verdict, perhaps other numbers.
    strip = page.find_element(By.ID, "wsbench-verdict").text
    kind = checks["verdict"].split(":")[0]
    assert kind in ("GENERATOR-BOUND", "generator ok"), checks
    assert strip.startswith(f"Generator: {kind}: "), (strip, checks)
    assert checks["main latency"].startswith("echo p99 "), checks


def _stored(ui: RunningUI) -> dict | None:
    found = ui.get("wsbench/sessions")["sessions"]
    return found[-1] if found and found[-1]["state"] == "stored" else None


@pytest.mark.timeout(600)  # the first run may apt-get install chromium; each wait has its own bound
def test_ui_session_in_headless_chromium(tmp_path: Path) -> None:
    """In Chromium the form starts a test: the wsbench tabs show µs latency, the target's
    connections, the kernel counters and the generator verdict; stopped, it is a stored run
    whose report the page links; Ctrl-C then ends it all."""
    require_chromium()
    with running_ui(tmp_path) as ui, headless_chromium(tmp_path / "profile") as page:
        page.get(ui.url)
        assert page.title == "Locust"
        _type_into(page, "userCount", USERS)
        _type_into(page, "spawnRate", SPAWN_RATE)
        _click_button(page, "START")

        row = wait_for(lambda: _echo_row(page), SWARM_TIMEOUT_S, "a WS echo row with requests")
        assert row["# Fails"] == "0", row
        wait_for(lambda: ui.locust_stats()["user_count"] == USERS, SWARM_TIMEOUT_S,
                 f"{USERS} users, the number typed into the form")  # fmt: skip
        _check_tabs(page, ui)
        assert console_errors(page) == []
        with urllib.request.urlopen(ui.url + "metrics", timeout=5) as reply:
            scraped = list(text_string_to_metric_families(reply.read().decode()))
        echoes = [s.value for f in scraped if f.name == "wsbench_latency_us" for s in f.samples
                  if s.name.endswith("_count") and s.labels["name"] == "echo"]  # fmt: skip
        assert echoes and echoes[0] > 0, scraped

        _click_button(page, "STOP")
        wait_for(lambda: ui.locust_stats()["state"] == "stopped", SWARM_TIMEOUT_S, "stopped")
        session = wait_for(lambda: _stored(ui), SWARM_TIMEOUT_S, "the session stored as a run")
        link = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, "a.wsbench-report"),
                        SWARM_TIMEOUT_S, "the report link")  # fmt: skip
        assert link[0].get_attribute("href").endswith(session["report_url"])
        run_dir = Path(session["run_dir"])
        assert run_dir.parent == tmp_path / "results" and session["status"] == "ok", session
        meta = json.loads((run_dir / "meta.json").read_text())
        assert meta["kind"] == "ui" and meta["status"] == "complete" and meta["suite"]
        (point,) = (run_dir / "points").iterdir()
        result = json.loads((point / "point.json").read_text())
        assert result["point"]["users"] == USERS and result["status"] == "ok", result
        assert result["summary"]["main"]["successes"] > 0
        assert (point / "resources.csv").read_text().count("\n") > 2
        assert f"stored: {run_dir}" in (ui.log_dir / "out").read_text()

        page.get(ui.url.rstrip("/") + session["report_url"])
        assert point.name in page.find_element(By.TAG_NAME, "body").text
        assert console_errors(page) == []


def _swarm(ui: RunningUI, users: int) -> None:
    """Start a test as the form does (Locust's POST /swarm with the form's fields)."""
    form = urllib.parse.urlencode({"user_count": users, "spawn_rate": users,
                                   "host": ui.target_url}).encode()  # fmt: skip
    with urllib.request.urlopen(ui.url + "swarm", form, timeout=5) as reply:
        assert json.load(reply)["success"]


def _namespace_holders() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[:2] == ["unshare", "--net"]]  # fmt: skip


@pytest.mark.skipif(bool(missing_privileges()), reason="namespaces need root")
def test_ui_in_namespaces_with_workers_stores_the_test_running_at_ctrl_c(tmp_path: Path) -> None:
    """With a kernel profile Locust runs in a client namespace (its web UI forwarded to the
    host's loopback) as a master with 2 forked workers: the tabs show the workers' merged
    figures and both namespaces' counters; Ctrl-C during the test stores it, then nothing is
    left, namespaces included."""
    holders = set(_namespace_holders())
    with running_ui(tmp_path, "--kernel-profile", "default", "--processes", "2") as ui:
        assert ui.target_url.startswith("ws://198.18.0.1:")
        assert listeners(ui.port) == {("127.0.0.1", ui.proc.pid)}  # the forward, on the host
        _swarm(ui, USERS)
        latency = wait_for(lambda: [r for r in ui.get("wsbench/latency")["rows"]
                                    if r["name"] == "echo" and r["p50_us"] > 0],
                           SWARM_TIMEOUT_S, "merged echo latency")  # fmt: skip
        assert latency[0]["count"] > 0
        wait_for(lambda: (ui.get("wsbench/server")["samples"] or [{}])[-1].get(
            "connections", 0) >= USERS, SWARM_TIMEOUT_S, f"{USERS} connections at the target")
        sides = wait_for(lambda: {r["side"] for r in ui.get("wsbench/kernel")["rows"]
                                  if r["counter"] in ("ActiveOpens", "PassiveOpens")} or None,
                         SWARM_TIMEOUT_S, "the connects counted in the namespaces")  # fmt: skip
        assert sides == {"client", "server"}
        assert ui.get("wsbench/sessions")["sessions"][-1]["state"] == "running"
        # Until Locust's own table counts them too (workers report every 3 s), as a user would.
        wait_for(lambda: ui.locust_stats()["total_rps"] > 0, SWARM_TIMEOUT_S,
                 "Locust's statistics from its workers")  # fmt: skip
    out = (ui.log_dir / "out").read_text()
    assert "stopping the running test and storing it" in out
    (run_dir,) = (tmp_path / "results").iterdir()
    (point,) = (run_dir / "points").iterdir()
    result = json.loads((point / "point.json").read_text())
    assert result["status"] == "ok", result
    assert result["summary"]["main"]["successes"] >= latency[0]["count"]
    assert result["point"]["kernel_profile"] == "default"
    assert (point / "kernel.json").exists()
    counted = json.loads((point / "kernel_counters.json").read_text())
    assert counted["server"]["PassiveOpens"] >= USERS, counted["server"]
    assert set(_namespace_holders()) <= holders, "namespace holders left running"
