"""Headless Chromium for tests that look at a rendered page.

    chromium = require_chromium()            # skips here, fails in CI when it is missing
    shot = screenshot(chromium, page, tmp_path / "page.png")
    dom = dump_dom(chromium, page, tmp_path)

Each call starts a fresh browser with an empty profile, no network services and a
timeout, and returns what the browser wrote (the screenshot's path, or the DOM)
with its stderr for the test to check.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.required import missing

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_S = 60
# Lines Chromium writes when a page's resource did not load.
LOAD_FAILURES = ("Failed to load", "Not allowed to load local resource", "net::ERR_")


@dataclass(frozen=True)
class BrowserRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def load_failures(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if any(f in line for f in LOAD_FAILURES)]


def require_chromium() -> Path:
    """Chromium's path; a skip with the reason, or a failure when CI is set."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    missing(
        f"{CHROMIUM} is not installed (apt-get install chromium); "
        "the HTML report's rendering is not checked",
        f"{CHROMIUM} is missing: Chromium is required in CI to test the HTML report "
        "(`make test` installs it)",
    )


def _run(chromium: Path, page: Path, *flags: str, window: tuple[int, int]) -> BrowserRun:
    with tempfile.TemporaryDirectory(prefix="servelab-chromium-") as profile:
        command = [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            *flags,
            page.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"Chromium did not finish within {TIMEOUT_S} s on {page}")
    return BrowserRun(done.returncode, done.stdout, done.stderr)


def screenshot(
    chromium: Path, page: Path, out: Path, window: tuple[int, int] = (1280, 3000)
) -> BrowserRun:
    """Render `page` into the PNG `out` at the given window size."""
    return _run(chromium, page, f"--screenshot={out}", window=window)


def dump_dom(chromium: Path, page: Path, window: tuple[int, int] = (1280, 3000)) -> BrowserRun:
    """The DOM of `page` after it loaded (in the returned stdout)."""
    return _run(chromium, page, "--dump-dom", window=window)
