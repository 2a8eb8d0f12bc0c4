"""What the benchmarks that drive the real CLI share: the command, and the fake in its own
process (so that its CPU is never the client's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["COMMAND", "KEY", "SECRET", "start_fake"]

SCRIPT = Path(sys.executable).with_name("sailthru-destination")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sailthru_destination"]
"""The ``sailthru-destination`` command of this interpreter's environment."""
KEY, SECRET = "bench-key", "bench-secret"


def start_fake(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """``fake-server`` with ``flags`` on a free port, in its own process; and its URL."""
    process = subprocess.Popen(
        [*COMMAND, "fake-server", "--port", "0", *flags, "--api-key", KEY,
         "--api-secret", SECRET], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
    return process, url
