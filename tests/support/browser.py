"""Headless Debian Chromium driven by selenium through Debian's chromedriver.

No browser or driver is ever downloaded: the binaries come from the ``chromium`` and
``chromium-driver`` packages (scripts/install_browser.sh). Without them a test skips
with the reason, except under CI (``CI=true``), where a missing browser is a failure.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,1100")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (run scripts/install_browser.sh)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (run scripts/install_browser.sh)"
    return None


def require_browser() -> None:
    """Skip when no browser is here - unless CI is set, where that is a failure."""
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs headless Chromium: {reason}")
    pytest.skip(reason)


def chromium() -> Iterator[Any]:
    """A fresh headless Chromium session with its own profile folder (generator fixture body)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ledgerstream-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``predicate`` (test side only) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001  (stale elements while the page re-renders)
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_error}" if last_error else ""))


def screenshot(driver: Any, name: str) -> Path:
    """Save a PNG under docs/screenshots/ (full page height) and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # the height changes once the width is final
        height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, 900)")
        driver.set_window_size(1440, min(int(height) + 140, 3000))
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


class DashboardProcess:
    """``python -m ledgerstream.tools.dashboard`` on a free loopback port, for one test."""

    def __init__(self, bootstrap: str, prefix: str, workdir: Path, *extra: str) -> None:
        import socket
        import subprocess
        import sys

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.home, self.prefix = workdir, prefix
        self.tsa_ca = Path(extra[extra.index("--tsa-ca") + 1]) if "--tsa-ca" in extra else None
        self.log_path = workdir / f"dashboard-{self.port}.log"
        self._log = open(self.log_path, "ab")
        argv = [sys.executable, "-m", "ledgerstream.tools.dashboard", "--home", str(workdir), "--port", str(self.port),
                "--bootstrap", bootstrap, "--topic-prefix", prefix, *extra]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait_ready(self, timeout: float = 30.0) -> None:
        import urllib.error
        import urllib.request

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"dashboard exited {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2)
            except urllib.error.HTTPError:
                return True  # answering (401 with a token)
            except OSError:
                return False
            return True

        wait_for(up, timeout, "the dashboard to answer")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
        self._log.close()
