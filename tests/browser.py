"""Headless Chromium for the tests that look at a page as a person would.

CI installs Debian's ``chromium`` (see ``.ci/run``). On a machine without it these tests fail
with a message saying how to install it: a page nobody looked at is not a tested page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Every console message of the page (our page writes none), e.g.
# [..:INFO:CONSOLE:1] "Uncaught ReferenceError: x is not defined", source: file:///...
_CONSOLE = re.compile(r"CONSOLE[^\]]*\]\s*(.*)")


@dataclass(frozen=True)
class Loaded:
    """A page after its scripts ran: the DOM as serialised, and its console messages."""

    dom: str
    console: list[str]


def chromium() -> str:
    """The browser's path; fails the test, saying how to install one, if there is none."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "the report page tests need headless Chromium: install it (Debian/Ubuntu: "
        "apt-get install chromium)",
        pytrace=False,
    )


def _run(page: Path, profile: Path, *flags: str, fragment: str = ""
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-extensions", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={profile}", *flags, page.resolve().as_uri() + fragment],
        capture_output=True, text=True, timeout=120, check=False,
    )


def load(page: Path, profile: Path, fragment: str = "") -> Loaded:
    """``page`` (with ``fragment``, e.g. ``#status=429``) opened in headless Chromium (no
    network: it is a file URL)."""
    done = _run(page, profile, "--dump-dom", fragment=fragment)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [m.group(1) for m in _CONSOLE.finditer(done.stderr)]
    return Loaded(done.stdout, console)


def screenshot(page: Path, profile: Path, out: Path, size: str = "1200,1600") -> Path:
    """A PNG of ``page`` as drawn at ``size`` (width,height)."""
    done = _run(page, profile, f"--screenshot={out}", f"--window-size={size}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file(), done.stderr[-2000:]
    return out
