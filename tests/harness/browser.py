"""Debian's headless Chromium for tests that look at a page the way a person would.

`require_chromium()` installs `chromium` and `chromium-driver` with apt-get when they are missing
and this is root (CI is; `.ci/run` installs them up front), and skips the test otherwise.
`headless_chromium(profile_dir)` drives it with Selenium through Debian's own chromedriver, which
always matches the browser's version, so nothing is ever downloaded at run time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_PACKAGES = ("chromium", "chromium-driver")
INSTALL_TIMEOUT_S = 600.0
QUIT_TIMEOUT_S = 10.0
# Flags that work as root in a container with no display, GPU or network beyond loopback.
HEADLESS_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)  # fmt: skip


def _missing() -> list[str]:
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]


def _apt_get(*args: str) -> None:
    subprocess.run(
        ["apt-get", *args], check=True, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=INSTALL_TIMEOUT_S, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip


def require_chromium() -> None:
    """Make sure Debian's chromium and chromedriver are installed, or skip the calling test."""
    if not _missing():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"{', '.join(_missing())} missing and cannot install here (needs root and apt-get): "
            f"apt-get install {' '.join(APT_PACKAGES)}"
        )
    try:
        _apt_get("install", "-y", "-qq", *APT_PACKAGES)
    except subprocess.CalledProcessError:  # a fresh machine has no package lists yet
        _apt_get("update", "-qq")
        _apt_get("install", "-y", "-qq", *APT_PACKAGES)
    assert not _missing(), f"apt-get installed {APT_PACKAGES} but {_missing()} still missing"


@contextlib.contextmanager
def headless_chromium(
    profile_dir: Path, width: int = 1400, height: int = 1000
) -> Iterator[webdriver.Chrome]:
    """A Selenium driver on a fresh profile; on exit the browser and its helpers are gone."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*HEADLESS_FLAGS, f"--user-data-dir={profile_dir}",
                 f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        _reap_profile_processes(profile_dir)


def _reap_profile_processes(profile_dir: Path) -> None:
    """Chromium's renderers can outlive quit() for a moment; none may outlive the test."""
    marker = f"--user-data-dir={profile_dir}"
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    _, alive = psutil.wait_procs(left, timeout=QUIT_TIMEOUT_S)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """The page's console messages of level error (SEVERE) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def console_errors_within(driver: webdriver.Chrome, timeout_s: float = 5.0) -> list[str]:
    """The first console errors to reach the driver within `timeout_s` ([] if none did): the
    browser delivers its log asynchronously, so one read right after a load can miss them."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = console_errors(driver)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def screenshot_spread(path: Path) -> tuple[int, float]:
    """(distinct colours, share of the commonest colour) of a PNG: a blank page is (1, 1.0)."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
        commonest = max(count for count, _ in colours)
        return len(colours), commonest / (rgb.width * rgb.height)
